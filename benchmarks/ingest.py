"""Ingestion benchmark: decode throughput, cached re-ingest and peak memory.

    .venv/bin/python benchmarks/ingest.py [--data ../shared/data/course]

Compares the old notebook's loop (one `cv2.imread` at a time into a float64 array) with
relabel's parallel decoder (threads writing into one uint8 array) on 1 and on all cores,
then times a cached re-ingest. Each variant runs in a fresh subprocess so that its peak
resident memory is its own: "peak extra MB" is the peak RSS minus the RSS before the work
started (after imports), compared with the size of the uint8 array.
Defaults to the reference dataset when present, else generates demo data.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REFERENCE = ROOT.parent / "shared" / "data" / "course"


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _variant(name: str, data: str, cache: str, workers: int) -> dict[str, float]:
    import cv2
    import numpy as np

    from relabel.tasks.ingest import (
        TRAIN_DIR,
        TRAIN_NAME,
        _list_numbered_pngs,
        decode_images,
        ingest,
    )

    paths = _list_numbered_pngs(Path(data) / TRAIN_DIR, TRAIN_NAME)
    rss_before = _current_rss_mb()
    started = time.perf_counter()
    if name == "notebook loop":
        images = np.empty((len(paths), 32, 32, 3))  # float64, as the old notebook held them
        for i, path in enumerate(paths):
            images[i] = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    elif name == "parallel decode":
        images, _ = decode_images(paths, workers)
    elif name in ("full ingest", "cached re-ingest"):
        ingest(data, cache, workers)
        images = None
    seconds = time.perf_counter() - started
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "images": len(paths),
        "peak_extra_mb": max_rss - rss_before,
        "array_mb": (images.nbytes / 2**20) if images is not None else float("nan"),
    }


def _run(name: str, data: Path, cache: Path, workers: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--data", str(data), "--cache", str(cache),
         "--workers", str(workers)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_variant(args.child, str(args.data), str(args.cache), args.workers)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="relabel-bench-"))
    data = args.data or (REFERENCE if REFERENCE.is_dir() else None)
    if data is None:
        from relabel.tasks.demodata import generate_demo_data

        data = generate_demo_data(tmp / "demo")
    cache = args.cache or tmp / "cache"
    uint8_mb = None
    rows = []
    # Warm the page cache once so every variant reads from memory, not disk.
    _run("parallel decode", data, cache, args.workers)
    for name, workers in [("notebook loop", 1), ("parallel decode", 1),
                          ("parallel decode", args.workers), ("full ingest", args.workers),
                          ("cached re-ingest", args.workers)]:
        result = _run(name, data, cache, workers)
        rows.append((name, workers, result))
        if name == "parallel decode":
            uint8_mb = result["array_mb"]
    loop_seconds = rows[0][2]["seconds"]
    print(f"data: {data}  ({rows[0][2]['images']} images, uint8 array {uint8_mb:.0f} MB)")
    print(f"{'variant':<20}{'workers':>8}{'seconds':>9}{'images/s':>11}{'vs loop':>9}"
          f"{'peak extra MB':>15}{'x uint8 array':>15}")
    for name, workers, r in rows:
        print(f"{name:<20}{workers:>8}{r['seconds']:>9.2f}{r['images'] / r['seconds']:>11.0f}"
              f"{loop_seconds / r['seconds']:>8.1f}x{r['peak_extra_mb']:>15.0f}"
              f"{r['peak_extra_mb'] / uint8_mb:>14.2f}x")


if __name__ == "__main__":
    main()
