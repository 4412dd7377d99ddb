"""Histogram features: the old per-image loop vs the vectorized version.

    .venv/bin/python benchmarks/features.py --data ../shared/data/course [--repeats 3]

Prints the wall time of each on the dataset's training images (best of `--repeats`), the
speed-up, and checks that both give the same integers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from relabel.tasks.features import rgb_histogram, rgb_histogram_loop
from relabel.tasks.ingest import ingest


def best_time(fn, images: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn(images)
        best = min(best, time.perf_counter() - started)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/course", help="dataset folder")
    parser.add_argument("--cache", default=".relabel-cache", help="ingestion cache folder")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = np.array(ingest(Path(args.data), Path(args.cache)).load().images)  # in memory
    loop_s, slow = best_time(rgb_histogram_loop, images, 1)
    fast_s, fast = best_time(rgb_histogram, images, args.repeats)
    identical = np.array_equal(slow, fast)
    print(f"images: {images.shape[0]:,} ({images.nbytes / 1e6:.0f} MB)")
    print(f"{'method':<12} {'seconds':>9} {'MB/s':>9}")
    for name, seconds in (("loop", loop_s), ("vectorized", fast_s)):
        print(f"{name:<12} {seconds:>9.3f} {images.nbytes / 1e6 / seconds:>9.0f}")
    print(f"speed-up: {loop_s / fast_s:.0f}x; bit-identical: {identical}")
    if not identical:
        raise SystemExit("vectorized histogram differs from the loop")


if __name__ == "__main__":
    main()
