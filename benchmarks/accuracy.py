"""The whole relabel chain on a dataset, scored on a held-out split of its clean labels.

    .venv/bin/python benchmarks/accuracy.py --data ../shared/data/course --profile cpu \
        [--seed 0] [--validation-size 0.2] [--with-ce] [--out benchmarks/results]

Calls the tasks/ functions in pipeline order (baseline -> noise model -> Model I -> k-fold
clean model -> label correction -> Model II) and prints one table: per model the accuracy on
the validation split (clean labels no training step ever sees, not even with their noisy
label), wall time, training images/s and GFLOP/s; then the label-correction accuracy on the
clean-train images (out of fold, where the truth is known) and the estimated noise rate.
Writes the same figures as JSON to --out.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from relabel.config import PROFILES
from relabel.fileio import write_json_atomic

log = logging.getLogger("accuracy")


@dataclass
class Row:
    name: str
    accuracy: float | None = None
    seconds: float = 0.0
    images_per_second: float | None = None
    gflops_per_second: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


class Clock:
    """Wall time per named stage."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.started = time.perf_counter()

    def time(self, name: str):
        clock = self

        class _Stage:
            def __enter__(self):
                self.t = time.perf_counter()
                log.info("stage %s ...", name)

            def __exit__(self, *exc):
                clock.stages[name] = time.perf_counter() - self.t
                log.info("stage %s: %.1f s", name, clock.stages[name])

        return _Stage()


def run(data: Path, profile_name: str, seed: int, validation_size: float, with_ce: bool,
        cache: Path) -> dict:
    from relabel.tasks.baseline import fit_baseline, predict_baseline
    from relabel.tasks.clean_model import combine_folds, train_clean_fold
    from relabel.tasks.correct import correct_labels, correction_accuracy, fit_temperature
    from relabel.tasks.evaluate import evaluate
    from relabel.tasks.features import rgb_histogram
    from relabel.tasks.ingest import ingest
    from relabel.tasks.model1 import train_model1
    from relabel.tasks.noise import estimate_transition, noise_rates, overall_noise_rate
    from relabel.tasks.retrain import retrain_model2
    from relabel.tasks.split import plan_splits
    from relabel.tasks.train import predict_proba

    profile = PROFILES[profile_name]
    clock = Clock()
    rows: list[Row] = []
    with clock.time("ingest"):
        dataset = ingest(data, cache).load(mmap=False)
    images, noisy, clean = dataset.images, dataset.noisy_labels, dataset.clean_labels
    plan = plan_splits(clean, validation_size, profile.folds, seed, profile.max_train_images)
    val, val_true = plan.val_idx, clean[plan.val_idx]
    model1_idx = plan.model1_idx

    def val_accuracy(model) -> float:
        proba = predict_proba(model, images[val], tta=profile.tta)
        return evaluate(val_true, proba.argmax(1))["accuracy"]

    with clock.time("baseline"):
        features = rgb_histogram(images)
        baseline = fit_baseline(features[model1_idx], noisy[model1_idx], seed)
        acc = evaluate(val_true, predict_baseline(baseline, features[val]))["accuracy"]
    rows.append(Row("Baseline (histogram + logistic regression)", acc,
                    clock.stages["baseline"]))

    with clock.time("noise"):
        transition = estimate_transition(clean[plan.clean_train_idx],
                                         noisy[plan.clean_train_idx])
    rates = noise_rates(transition)

    with clock.time("model1"):
        model1 = train_model1(images[model1_idx], noisy[model1_idx], transition, profile, seed)
        acc = val_accuracy(model1.model)
    rows.append(Row("Model I (forward loss, noisy labels)", acc, clock.stages["model1"],
                    model1.images_per_second, model1.gflops_per_second,
                    f"{model1.epochs} ep"))
    if with_ce:
        with clock.time("model1_ce"):
            ce = train_model1(images[model1_idx], noisy[model1_idx], transition, profile, seed,
                              loss="ce")
            acc = val_accuracy(ce.model)
        rows.append(Row("Model I (plain CE, noisy labels)", acc, clock.stages["model1_ce"],
                        ce.images_per_second, ce.gflops_per_second, f"{ce.epochs} ep"))

    init = model1.model if profile.clean_init == "model1" else None
    with clock.time("clean_folds"):
        predict_idx = np.union1d(plan.noisy_idx, val)  # scoring val is not training on it
        folds = [
            train_clean_fold(images, clean, train, holdout, predict_idx, profile, seed, fold,
                             initial_model=init, batch_size=profile.clean_batch_size)
            for fold, (train, holdout) in enumerate(plan.folds)
        ]
        proba = combine_folds(folds, dataset.num_images)
    oof = plan.clean_train_idx
    oof_acc = float(np.mean(proba[oof].argmax(1) == clean[oof]))
    ens_acc = float(np.mean(proba[val].argmax(1) == val_true))
    fold_ips = float(np.mean([f.train.images_per_second for f in folds]))
    fold_gflops = float(np.mean([f.train.gflops_per_second for f in folds]))
    rows.append(Row(f"Clean model ({profile.folds}-fold ensemble)", ens_acc,
                    clock.stages["clean_folds"], fold_ips, fold_gflops,
                    f"OOF acc {oof_acc:.4f}; init {profile.clean_init}"))

    with clock.time("correct"):
        temperature = fit_temperature(proba[oof], clean[oof])
        kw = dict(temperature=temperature, keep_fraction=profile.keep_fraction)
        oof_corr = correct_labels(proba[oof], noisy[oof], transition, **kw)
        threshold_corr = correct_labels(proba[oof], noisy[oof], transition,
                                        method="threshold", threshold=0.85)
        correction = correct_labels(proba[plan.noisy_idx], noisy[plan.noisy_idx], transition,
                                    **kw)
    correction_figures = {
        "temperature": temperature,
        "noisy_label_accuracy_oof": float(np.mean(noisy[oof] == clean[oof])),
        "clean_model_accuracy_oof": oof_acc,
        "posterior_accuracy_oof": correction_accuracy(oof_corr, clean[oof]),
        "posterior_kept_accuracy_oof": correction_accuracy(oof_corr, clean[oof], True),
        "posterior_kept_fraction": oof_corr.kept_fraction,
        "threshold_0.85_kept_accuracy_oof": correction_accuracy(
            threshold_corr, clean[oof], True),
        "threshold_0.85_kept_fraction": threshold_corr.kept_fraction,
        "noisy_images_kept_fraction": correction.kept_fraction,
        "noisy_images_mean_confidence": float(correction.confidence.mean()),
    }

    init = model1.model if profile.retrain_init == "model1" else None
    with clock.time("retrain"):
        model2 = retrain_model2(images, plan.clean_train_idx, clean, plan.noisy_idx,
                                correction, profile, seed, initial_model=init,
                                weight_by_confidence=profile.weight_by_confidence)
        acc = val_accuracy(model2.model)
    chain = sum(clock.stages[s] for s in ("clean_folds", "correct", "retrain"))
    rows.append(Row("Model II (clean folds -> correction -> retrain)", acc,
                    clock.stages["retrain"], model2.images_per_second,
                    model2.gflops_per_second,
                    f"{model2.epochs} ep; chain {chain / 60:.1f} min"))
    return {
        "profile": profile.model_dump(),
        "seed": seed,
        "validation_images": int(val.size),
        "rows": [r.__dict__ for r in rows],
        "stages_seconds": clock.stages,
        "total_seconds": time.perf_counter() - clock.started,
        "model2_chain_seconds": chain,
        "correction": correction_figures,
        "noise_rate_mean": float(rates.mean()),
        "noise_rate_overall": overall_noise_rate(transition),
        "noise_rates": rates.tolist(),
        "split_sizes": {"val": int(val.size), "clean_train": int(plan.clean_train_idx.size),
                        "noisy": int(plan.noisy_idx.size)},
    }


def print_report(result: dict) -> None:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(f"\nprofile {result['profile']['name']}, seed {result['seed']}, held-out clean "
          f"validation images: {result['validation_images']}")
    print(f"{'model':<50} {'val acc':>8} {'wall s':>8} {'img/s':>7} {'GFLOP/s':>8}  note")
    for r in result["rows"]:
        print(f"{r['name']:<50} {fmt(r['accuracy'], '.4f'):>8} {r['seconds']:>8.0f} "
              f"{fmt(r['images_per_second'], '.0f'):>7} {fmt(r['gflops_per_second'], '.0f'):>8}"
              f"  {r['note']}")
    c = result["correction"]
    print("\nlabel correction on clean-train images (out of fold, truth known):")
    print(f"  noisy labels correct:            {c['noisy_label_accuracy_oof']:.4f}")
    print(f"  clean model argmax correct:      {c['clean_model_accuracy_oof']:.4f}")
    print(f"  posterior p(y|x)T[y,noisy]:      {c['posterior_accuracy_oof']:.4f} "
          f"(temperature {c['temperature']:.3f}, kept {c['posterior_kept_fraction']:.1%}, "
          f"kept-only {c['posterior_kept_accuracy_oof']:.4f})")
    print(f"  old rule (max p > 0.85):         {c['threshold_0.85_kept_accuracy_oof']:.4f} on "
          f"the {c['threshold_0.85_kept_fraction']:.1%} it keeps")
    print(f"estimated noise rate: {result['noise_rate_mean']:.4f} (mean of 1 - diag T); "
          f"per class {np.round(result['noise_rates'], 3).tolist()}")
    stages = ", ".join(f"{k} {v:.0f}" for k, v in result["stages_seconds"].items())
    print(f"wall seconds per stage: {stages}")
    print(f"Model II chain (clean folds + correction + retrain): "
          f"{result['model2_chain_seconds'] / 60:.1f} min; whole run "
          f"{result['total_seconds'] / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/course"))
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-size", type=float, default=0.2)
    parser.add_argument("--with-ce", action="store_true",
                        help="also train Model I with plain cross-entropy")
    parser.add_argument("--cache", type=Path, default=Path(".relabel-cache"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run(args.data, args.profile, args.seed, args.validation_size, args.with_ce,
                 args.cache)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    write_json_atomic(args.out / f"accuracy-{args.profile}-{stamp}.json", result)
    print_report(result)


if __name__ == "__main__":
    main()
