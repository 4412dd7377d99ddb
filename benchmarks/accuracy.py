"""Held-out accuracy of the shipped pipeline, from the flow itself.

    .venv/bin/python benchmarks/accuracy.py --data ../shared/data/course --profile cpu \
        [--seed 0] [--validation-size 0.2] [--output-dir runs/bench] [--cache-dir .relabel-cache]
    .venv/bin/python benchmarks/accuracy.py --from-run runs/cpu-reference   # report only

Runs `relabel.flows.pipeline.pipeline` (what `relabel run` runs: same stages, cache and
tracking) and reads the run's metrics.json; `--from-run` reads the metrics.json of a run
that already finished (for example one `relabel run` made) instead of training. Prints:

- per model, the accuracy on the validation split (clean labels that no training step
  sees, not even with their noisy label) with its binomial standard error, and on the
  test folder when it has labels (the only measure of a `--validation-size 0` run);
- the accuracy of the corrected labels Model II trains on, estimated on the validation
  images (corrected exactly as the noisy images are), and the noisy labels' own accuracy;
- wall time per stage, training images/s and GFLOP/s per model;
- this machine's matmul ceiling in float32 and bfloat16, measured in the same process, and
  the fraction of it each model's training reaches.

Writes the same figures as JSON next to the run's metrics.json (accuracy-report.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from relabel.config import PROFILES, PipelineConfig
from relabel.fileio import write_json_atomic
from relabel.quiet import parse_args_quietly


def standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on `n` independent images."""
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / n) if n else float("nan")


def matmul_ceiling(dtype: str, size: int = 2048, seconds: float = 3.0) -> float:
    """Sustained GFLOP/s of a square `size` matmul in `dtype` on this machine's CPU/GPU."""
    import tensorflow as tf

    a = tf.random.stateless_normal([size, size], [0, 1], dtype=tf.float32)
    b = tf.random.stateless_normal([size, size], [1, 2], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)

    @tf.function
    def product(x, y):
        return tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32))

    product(a, b).numpy()  # trace and warm up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        product(a, b).numpy()
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started) / 1e9


def run_pipeline(args: argparse.Namespace) -> Path:
    """Run the shipped flow; return the folder holding its metrics.json."""
    from relabel.flows.pipeline import pipeline

    config = PipelineConfig(data=str(args.data), profile=args.profile, seed=args.seed,
                            validation_size=args.validation_size, output_dir=args.output_dir,
                            cache_dir=args.cache_dir)
    state = pipeline(config=config, return_state=True)
    if not state.is_completed():
        raise SystemExit(f"error: pipeline {state.name}: {state.message}")
    return Path(args.output_dir)


def _accuracy(evaluation: dict[str, Any] | None) -> tuple[float | None, float | None, int]:
    """(accuracy, its standard error, images) of one score (tasks.evaluate); Nones and 0
    when the run has no such score (no validation split, an unlabelled test folder)."""
    if not evaluation:
        return None, None, 0
    n = int(sum(map(sum, evaluation["confusion"])))
    accuracy = float(evaluation["accuracy"])
    return accuracy, standard_error(accuracy, n), n


def report(run_dir: Path, ceilings: dict[str, float]) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_val = int(metrics["counts"]["validation"])
    # What trained; runs from before train_profile was recorded do not say (their profile
    # may have changed since), so they get no fraction of the ceiling.
    precision = (metrics.get("train_profile") or {}).get("precision", "not recorded")
    ceiling = {"mixed_bfloat16": ceilings["bfloat16"], "float32": ceilings["float32"]}.get(
        precision)
    models = []
    n_test = 0
    for name, score in metrics["scores"].items():
        trained = metrics["models"].get(name, {}).get("metrics", {})
        accuracy, error, _ = _accuracy(score.get("validation"))
        test, test_error, n_test = _accuracy(score.get("test"))
        gflops = trained.get("gflops_per_second")
        models.append({
            "model": name, "validation_accuracy": accuracy, "standard_error": error,
            "test_accuracy": test, "test_standard_error": test_error,
            "train_seconds": trained.get("seconds"),
            "images_per_second": trained.get("images_per_second"),
            "gflops_per_second": gflops,
            "fraction_of_ceiling": gflops / ceiling if gflops and ceiling else None,
        })
    correction = (metrics.get("correction") or {}).get("metrics", {})
    corrected = correction.get("validation_correction_accuracy")
    noisy = correction.get("validation_noisy_label_accuracy")
    return {
        "run_dir": str(run_dir), "run_name": metrics["run_name"], "profile": metrics["profile"],
        "seed": metrics["config"]["seed"], "counts": metrics["counts"],
        "validation_images": n_val, "test_images": n_test, "models": models,
        "corrected_label_accuracy": corrected,
        "corrected_label_standard_error": (standard_error(corrected, n_val)
                                           if corrected is not None else None),
        "noisy_label_accuracy": noisy, "correction": correction,
        "teacher_label_accuracy": (metrics.get("teacher_correction") or {}).get(
            "validation_correction_accuracy"),
        "round_label_accuracies": [r.get("validation_correction_accuracy")
                                   for r in metrics.get("round_corrections") or []],
        "noise_rate": metrics["noise"]["overall_noise_rate"],
        "stage_seconds": metrics.get("stage_seconds", {}),
        "matmul_gflops": ceilings, "training_precision": precision,
    }


def print_report(result: dict[str, Any]) -> None:
    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    def accuracy(value: float | None, error: float | None) -> str:
        return "-" if value is None else f"{value:.2%} ± {error:.2%}"

    with_test = any(m.get("test_accuracy") is not None for m in result["models"])
    print(f"\nrun {result['run_name']} (profile {result['profile']}, seed {result['seed']}): "
          f"{result['validation_images']} held-out clean validation images"
          + (f", {result['test_images']} labelled test images" if with_test else ""))
    print(f"{'model':<10} {'held-out accuracy':>20}" + (f" {'test folder':>20}" if with_test
                                                         else "")
          + f" {'train s':>8} {'img/s':>7} {'GFLOP/s':>8} {'of ceiling':>10}")
    for m in result["models"]:
        acc = format(accuracy(m["validation_accuracy"], m["standard_error"]), ">20")
        if with_test:
            acc += " " + format(accuracy(m.get("test_accuracy"), m.get("test_standard_error")),
                                ">20")
        print(f"{m['model']:<10} {acc} {fmt(m['train_seconds'], '.0f'):>8} "
              f"{fmt(m['images_per_second'], '.0f'):>7} {fmt(m['gflops_per_second'], '.0f'):>8} "
              f"{fmt(m['fraction_of_ceiling'], '.1%'):>10}")
    if result["corrected_label_accuracy"] is not None:
        print(f"corrected labels Model II trains on: {result['corrected_label_accuracy']:.2%} "
              f"± {result['corrected_label_standard_error']:.2%} right (noisy labels: "
              f"{result['noisy_label_accuracy']:.2%}; temperature "
              f"{result['correction'].get('temperature', float('nan')):.3f})")
    teacher = result.get("teacher_label_accuracy")
    if teacher is not None:
        print(f"  (the teacher alone, before self-training: {teacher:.2%} ± "
              f"{standard_error(teacher, result['validation_images']):.2%})")
    rounds = result.get("round_label_accuracies") or []
    if len(rounds) > 1:
        print("  (after each self-training round: " + ", ".join(
            f"{a:.2%}" for a in rounds if a is not None) + ")")
    print(f"estimated noise rate: {result['noise_rate']:.2%}")
    if result["stage_seconds"]:
        stages = ", ".join(f"{k} {v / 60:.1f}" for k, v in result["stage_seconds"].items())
        print(f"wall minutes per stage: {stages}")
    c = result["matmul_gflops"]
    print(f"matmul ceiling (2048², this machine): float32 {c['float32']:.0f} GFLOP/s, "
          f"bfloat16 {c['bfloat16']:.0f} GFLOP/s; training runs in {result['training_precision']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/course"))
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-size", type=float, default=0.2)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/accuracy-benchmark"))
    parser.add_argument("--cache-dir", type=Path, default=Path(".relabel-cache"))
    parser.add_argument("--from-run", type=Path, default=None,
                        help="report on this finished run's metrics.json; train nothing")
    args = parse_args_quietly(parser)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    run_dir = args.from_run if args.from_run is not None else run_pipeline(args)
    wall = time.perf_counter() - started
    ceilings = {dtype: matmul_ceiling(dtype) for dtype in ("float32", "bfloat16")}
    result = report(run_dir, ceilings)
    if args.from_run is None:
        result["benchmark_wall_seconds"] = wall
    write_json_atomic(run_dir / "accuracy-report.json", result)
    print_report(result)
    if "benchmark_wall_seconds" in result:
        print(f"whole run: {wall / 60:.1f} min")


if __name__ == "__main__":
    main()
