"""GPU check: train a profile for a fixed small budget and print images/s and accuracy.

Run it through `infra/gpu-check.sh` on a GPU worker (or in the GPU image) to see that the
worker really trains on its GPUs and how fast. The data is generated on the spot with
`tasks.demodata` (nothing is downloaded) unless `--data` names a dataset folder; the model
is trained on the true labels, so accuracy reflects the hardware/software stack, not label
noise.

Figures printed:
  images_per_second         training images per second over the whole run, as
                            `tasks.train.TrainResult.images_per_second` reports it
  steady_images_per_second  same, over epochs 2.. only (model set-up and epoch 1 include
                            graph tracing and XLA compilation)
  test_accuracy             top-1 accuracy of the trained model on the held-out test images
  gpus                      GPUs TensorFlow sees (>1: MirroredStrategy replicas)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import relabel  # noqa: E402,F401  (offline environment defaults)
from relabel.config import PROFILES  # noqa: E402

EXIT_NO_GPU = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gpu")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (budget)")
    parser.add_argument("--train-images", type=int, default=20000,
                        help="generated training images (ignored with --data)")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=None,
                        help="a dataset folder in relabel's layout; trains on its clean labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run even when no GPU is visible (tiny CPU smoke runs)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check imports and devices and print the plan; train nothing")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.train_images < 16 or args.test_images < 10:
        parser.error("need --epochs >= 1, --train-images >= 16, --test-images >= 10")
    return args


def visible_gpus() -> list[str]:
    import tensorflow as tf

    return [device.name for device in tf.config.list_physical_devices("GPU")]


def load_training_data(args: argparse.Namespace, workdir: Path):
    """(train_images, train_labels, test_images, test_labels) with true labels."""
    import numpy as np

    from relabel.tasks.ingest import ingest

    if args.data is None:
        from relabel.tasks.demodata import generate_demo_data

        data_dir = generate_demo_data(
            workdir / "data", num_train=args.train_images, num_clean=args.train_images,
            num_test=args.test_images, seed=args.seed,
        )
    else:
        data_dir = args.data
    dataset = ingest(data_dir, workdir / "cache").load(mmap=False)
    clean = dataset.clean_indices
    if clean.size < 20:
        raise SystemExit(f"error: {data_dir} has {clean.size} clean labels; need at least 20")
    if dataset.test_labels is not None:
        return (dataset.images[clean], dataset.clean_labels[clean], dataset.test_images,
                dataset.test_labels)
    # No labelled test set (e.g. the reference data): hold out a seeded fifth of the clean.
    order = np.random.default_rng(args.seed).permutation(clean)
    cut = len(order) // 5
    held, train = order[:cut], order[cut:]
    return (dataset.images[train], dataset.clean_labels[train], dataset.images[held],
            dataset.clean_labels[held])


def run(args: argparse.Namespace) -> dict[str, float | int | str]:
    gpus = visible_gpus()
    profile = PROFILES[args.profile]
    plan = {"profile": profile.name, "architecture": profile.architecture,
            "width": profile.width, "batch_size": profile.batch_size, "epochs": args.epochs,
            "gpus": len(gpus)}
    print(f"visible GPUs: {gpus or 'none'}", flush=True)
    print(f"plan: {json.dumps(plan)}", flush=True)
    if not gpus and not (args.allow_cpu or args.dry_run):
        print("error: TensorFlow sees no GPU. Check the NVIDIA driver (nvidia-smi), that the "
              "container got a GPU (docker --gpus / nvidia.com/gpu limit) and that the image "
              "has the CUDA build (the project's `gpu` extra).", file=sys.stderr)
        raise SystemExit(EXIT_NO_GPU)
    if args.dry_run:
        import relabel.tasks.train  # noqa: F401  (the training module imports cleanly)

        return {**plan, "dry_run": 1}

    import numpy as np

    from relabel.tasks.train import predict_proba, train_classifier

    with tempfile.TemporaryDirectory(prefix="relabel-gpu-check-") as tmp:
        started = time.perf_counter()
        images, labels, test_images, test_labels = load_training_data(args, Path(tmp))
        print(f"data: {len(images)} training and {len(test_images)} test images "
              f"({time.perf_counter() - started:.1f} s to prepare)", flush=True)

    epoch_ends: list[float] = []

    def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:  # epoch is 1-based
        epoch_ends.append(time.perf_counter())
        print(f"epoch {epoch}/{args.epochs}: {json.dumps(logs)}", flush=True)

    train_start = time.perf_counter()
    result = train_classifier(images, labels, profile, args.epochs, args.seed,
                              on_epoch_end=on_epoch_end)
    proba = predict_proba(result.model, test_images, tta=profile.tta)
    accuracy = float(np.mean(np.argmax(proba, axis=1) == test_labels))

    figures: dict[str, float | int | str] = {
        **plan,
        "train_images": len(images),
        "seconds": round(result.seconds, 2),
        "images_per_second": round(result.images_per_second, 1),
        "test_accuracy": round(accuracy, 4),
    }
    if len(epoch_ends) >= 2:
        # Images one epoch trains on: whole global batches (tasks.train drops the remainder).
        replicas = len(gpus) if len(gpus) > 1 else 1
        global_batch = min(profile.batch_size * replicas, len(images))
        per_epoch = len(images) // global_batch * global_batch
        steady = per_epoch * (len(epoch_ends) - 1) / (epoch_ends[-1] - epoch_ends[0])
        figures["steady_images_per_second"] = round(steady, 1)
    figures["setup_and_first_epoch_seconds"] = round(
        (epoch_ends[0] if epoch_ends else time.perf_counter()) - train_start, 2)
    if result.gflops_per_second is not None:
        figures["gflops_per_second"] = round(result.gflops_per_second, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = run(args)
    for key in ("images_per_second", "steady_images_per_second", "test_accuracy", "seconds"):
        if key in figures:
            print(f"{key}: {figures[key]}")
    print(json.dumps(figures), flush=True)
    if args.out is not None:
        from relabel.fileio import write_json_atomic

        write_json_atomic(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
