"""Review-loop benchmark: are the flagged labels really wrong, and do requested labels help?

    .venv/bin/python benchmarks/review.py [--data ../shared/data/course] [--epochs 8] ...

Uses only the images whose true label is known (the reference set's clean images 1..10,000),
so every claim can be checked against the truth:

1. Split them (stratified, seeded) into KNOWN (the labels we pretend to have, default 5,000),
   HELD-OUT (never trained on, for accuracy, default 2,000) and POOL (the rest: true labels
   hidden, only their noisy labels visible, like the 40,000 unlabelled images in a real run).
2. Cross-fit the clean model on KNOWN (`tasks.clean_model.train_clean_fold`, k folds) and
   combine (`combine_folds`): out-of-fold probabilities on KNOWN, fold-ensemble probabilities
   on POOL and HELD-OUT. All are out-of-sample.
3. Table A: precision of the top-N of cleanlab's label-issue ranking (`find_label_issues`)
   over all these images: the share of flagged images whose noisy label really is wrong
   (chance = the noise rate), plus the recall of the whole flagged list and cleanlab's
   estimated count of wrong labels vs the true count.
4. Table B: an annotation round. For each budget K the request list (`request_labels`:
   label-posterior entropy + fold disagreement, class-balanced, deduplicated) picks K images
   from POOL, or K are drawn at random; their true labels are revealed, a fresh classifier is
   trained on KNOWN + revealed with the same seed and schedule, and its HELD-OUT accuracy is
   reported (K = 0: KNOWN only). Differences between rows are paired: same held-out images,
   same seed, same schedule; only the K chosen images differ.

Budget (CPU is shared and scarce): a small network and few epochs (see the printed
profile); absolute accuracies are far below what the full `cpu` profile reaches, the
comparison between rows is the point. Every step is seeded; rerunning gives the same tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from relabel.quiet import parse_args_quietly

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = ROOT.parent / "shared" / "data" / "course"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _splits(true: np.ndarray, known: int, heldout: int, seed: int):
    """Stratified KNOWN / POOL / HELD-OUT index arrays (0-based into the clean subset)."""
    from sklearn.model_selection import train_test_split

    everything = np.arange(len(true))
    rest, held = train_test_split(everything, test_size=heldout, random_state=seed,
                                  stratify=true)
    known_idx, pool = train_test_split(rest, train_size=known, random_state=seed + 1,
                                       stratify=true[rest])
    return np.sort(known_idx), np.sort(pool), np.sort(held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REFERENCE))
    parser.add_argument("--cache-dir", default=str(ROOT / ".relabel-cache"))
    parser.add_argument("--known", type=int, default=5000)
    parser.add_argument("--heldout", type=int, default=2000)
    parser.add_argument("--budgets", default="500,1000", help="comma-separated K values")
    parser.add_argument("--top-n", default="100,500,1000,2000")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8, help="epochs of every training")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--architecture", default="airbench")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parse_args_quietly(parser)

    from relabel.config import PROFILES
    from relabel.constants import CLASS_NAMES, NUM_CLASSES
    from relabel.tasks.clean_model import combine_folds, train_clean_fold
    from relabel.tasks.ingest import ingest
    from relabel.tasks.label_issues import find_label_issues, issue_precision
    from relabel.tasks.label_requests import request_labels
    from relabel.tasks.noise import estimate_transition
    from relabel.tasks.split import kfold_splits
    from relabel.tasks.train import predict_proba, train_classifier

    started = time.perf_counter()
    profile = PROFILES["smoke"].model_copy(update={
        "name": "bench-review", "architecture": args.architecture, "width": args.width,
        "batch_size": args.batch_size, "folds": args.folds, "clean_epochs": args.epochs,
        "max_train_images": None,
    })
    _log(f"profile: {profile.model_dump()}")
    dataset = ingest(args.data, args.cache_dir).load()
    subset = dataset.clean_indices  # the images whose truth is known
    images = np.ascontiguousarray(dataset.images[subset])
    true = dataset.clean_labels[subset]
    noisy = dataset.noisy_labels[subset]
    n = len(subset)
    known, pool, held = _splits(true, args.known, args.heldout, args.seed)
    _log(f"{n} images with known truth: known {len(known)}, pool {len(pool)}, "
         f"held-out {len(held)}; noise rate {np.mean(true != noisy):.3f}")

    # ---- cross-fitted clean model on KNOWN
    visible = np.full(n, -1, dtype=np.int64)
    visible[known] = true[known]
    outside = np.concatenate([pool, held])
    folds = []
    for f, (train_idx, holdout_idx) in enumerate(
        kfold_splits(known, true[known], args.folds, args.seed)
    ):
        t0 = time.perf_counter()
        folds.append(train_clean_fold(images, visible, train_idx, holdout_idx, outside,
                                      profile, args.seed, f))
        _log(f"fold {f}: trained on {len(train_idx)} in {time.perf_counter() - t0:.0f} s")
    proba = combine_folds(folds, n)
    fold_proba = np.full((len(folds), n, NUM_CLASSES), np.nan, dtype=np.float32)
    for f, fold in enumerate(folds):
        fold_proba[f, fold.predict_idx] = fold.predict_proba
        fold_proba[f, fold.holdout_idx] = fold.holdout_proba
    oof_acc = float(np.mean(proba[known].argmax(1) == true[known]))
    ens_acc = float(np.mean(proba[held].argmax(1) == true[held]))
    _log(f"clean model: out-of-fold accuracy {oof_acc:.4f} on KNOWN, "
         f"fold-ensemble accuracy {ens_acc:.4f} on HELD-OUT")

    # ---- Table A: label-issue precision
    top_n = [int(v) for v in args.top_n.split(",")]
    wrong_total = int(np.sum(true != noisy))
    table_a = []
    for method in ("self_confidence", "normalized_margin"):
        issues = find_label_issues(noisy, proba, method=method)
        precision = issue_precision(issues, true, [*top_n, len(issues)])
        flagged_wrong = np.sum(true[issues.image_ids - 1] != issues.given_labels)
        suggested_right = np.mean(true[issues.image_ids - 1] == issues.suggested_labels)
        table_a.append({
            "method": method, **{f"p@{k}": precision[k] for k in top_n},
            "flagged": len(issues), "precision_all": precision[len(issues)],
            "recall": float(flagged_wrong / wrong_total),
            "estimated_wrong": issues.estimated_total, "true_wrong": wrong_total,
            "suggested_label_accuracy": float(suggested_right),
        })

    # ---- Table B: one annotation round
    transition = estimate_transition(true[known], noisy[known], NUM_CLASSES)
    budgets = [int(v) for v in args.budgets.split(",")]

    def retrain(extra: np.ndarray) -> tuple[float, float]:
        train_idx = np.sort(np.concatenate([known, extra]))
        t0 = time.perf_counter()
        result = train_classifier(images[train_idx], true[train_idx], profile, args.epochs,
                                  args.seed)
        pred = predict_proba(result.model, images[held], tta=profile.tta).argmax(1)
        return float(np.mean(pred == true[held])), time.perf_counter() - t0

    table_b = []
    acc0, secs = retrain(np.empty(0, dtype=np.int64))
    _log(f"K=0: held-out accuracy {acc0:.4f} ({secs:.0f} s)")
    table_b.append({"K": 0, "strategy": "known only", "heldout_accuracy": acc0})
    rng = np.random.default_rng(args.seed)
    for k in budgets:
        requests = request_labels(
            proba, visible, k, noisy_labels=noisy, transition=transition,
            fold_proba=fold_proba, images=images, exclude=held, seed=args.seed,
        )
        chosen = {
            "request list": requests.image_ids - 1,
            "random": np.sort(rng.choice(pool, size=k, replace=False)),
        }
        for strategy, picked in chosen.items():
            assert np.isin(picked, pool).all() and len(picked) == k
            acc, secs = retrain(picked)
            row = {
                "K": k, "strategy": strategy, "heldout_accuracy": acc,
                "gain_vs_known_only": acc - acc0,
                "model_wrong_on_picked": float(np.mean(proba[picked].argmax(1) != true[picked])),
                "noisy_wrong_on_picked": float(np.mean(noisy[picked] != true[picked])),
                "class_counts": np.bincount(true[picked], minlength=NUM_CLASSES).tolist(),
            }
            table_b.append(row)
            _log(f"K={k} {strategy}: held-out accuracy {acc:.4f} ({secs:.0f} s)")
        table_b[-2]["skipped_duplicates"] = requests.skipped_duplicates

    # ---- print
    print()
    print(f"Table A: top-N label-issue precision on {n} images with known truth "
          f"(chance = noise rate {wrong_total / n:.3f}); clean model OOF accuracy "
          f"{oof_acc:.3f}")
    head = "  ".join(f"p@{k:<5}" for k in top_n)
    print(f"{'method':<18} {head}  flagged  prec(all)  recall  est.wrong  true.wrong  "
          f"suggested.acc")
    for r in table_a:
        vals = "  ".join(f"{r[f'p@{k}']:<7.3f}" for k in top_n)
        print(f"{r['method']:<18} {vals}  {r['flagged']:<7d}  {r['precision_all']:<9.3f}  "
              f"{r['recall']:<6.3f}  {r['estimated_wrong']:<9d}  {r['true_wrong']:<10d}  "
              f"{r['suggested_label_accuracy']:.3f}")
    print()
    print(f"Table B: one annotation round; held-out accuracy on {len(held)} images after "
          f"retraining on {len(known)} known + K revealed labels (from a pool of {len(pool)})")
    print(f"{'K':>5}  {'strategy':<13} {'held-out acc':>12}  {'vs K=0':>7}  "
          f"{'model wrong on picks':>20}  classes of picks")
    for r in table_b:
        if r["K"] == 0:
            print(f"{0:>5}  {r['strategy']:<13} {r['heldout_accuracy']:>12.4f}")
            continue
        print(f"{r['K']:>5}  {r['strategy']:<13} {r['heldout_accuracy']:>12.4f}  "
              f"{r['gain_vs_known_only']:>+7.4f}  {r['model_wrong_on_picked']:>20.3f}  "
              f"{r['class_counts']}")
    total = time.perf_counter() - started
    print()
    print(f"budget: {args.folds} folds + {1 + 2 * len(budgets)} retrainings, "
          f"{args.architecture} width {args.width}, {args.epochs} epochs each, batch "
          f"{args.batch_size}, seed {args.seed}; total {total / 60:.1f} min on this machine")
    print(f"classes: {', '.join(CLASS_NAMES)}")
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()}, "oof_accuracy": oof_acc,
            "ensemble_heldout_accuracy": ens_acc, "table_a": table_a, "table_b": table_b,
            "seconds": total,
        }, indent=2))


if __name__ == "__main__":
    main()
