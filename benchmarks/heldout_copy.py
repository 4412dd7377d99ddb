"""A copy of a dataset whose validation images become a labelled test folder.

    .venv/bin/python benchmarks/heldout_copy.py --data ../shared/data/course --out DIR
    relabel run --profile cpu --data DIR                      # holds out 20% of the rest
    relabel run --profile cpu --data DIR --validation-size 0  # a production run

A production run (`--validation-size 0`) trains on every clean label, so nothing in the run
can measure it. This copy moves the images that `relabel run --validation-size F --seed S`
would hold out (the same stratified split, `tasks.split.validation_split`) into
`images_test/` with their clean labels in `test_labels.csv`; the rest keep their order
(clean images first, as the layout requires) with their noisy and clean labels. Both runs
above then score the same held-out images, so their test-folder accuracies compare paired:
what folding the validation labels back in is worth.

The copy is written to a temporary folder beside DIR and renamed into place: it is all
there or not at all. Images are hard-linked where the file system allows, else copied.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from relabel.fileio import atomic_directory  # noqa: E402 - after the path set-up above
from relabel.tasks.ingest import (  # noqa: E402
    CLEAN_CSV,
    NOISY_CSV,
    TEST_LABELS_CSV,
    read_label_rows,
)
from relabel.tasks.split import validation_split  # noqa: E402


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, target)


def make_heldout_copy(data: Path, out: Path, fraction: float = 0.2, seed: int = 0) -> dict:
    """Write the copy (see the module docstring) to `out`, which must not exist. Returns
    the counts: training images, clean labels among them, test images."""
    data, out = Path(data), Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; choose a new folder")
    if (data / "images_test").exists():
        raise ValueError(f"{data}: already has a test folder; this copy makes its own")
    _, noisy = read_label_rows(data / NOISY_CSV)
    ids, clean = read_label_rows(data / CLEAN_CSV)
    if ids is not None:
        raise ValueError(f"{data / CLEAN_CSV}: image_id,label rows are not supported here; "
                         "give the clean labels of images 1..M, one per line")
    known = np.full(noisy.size, -1, np.int64)
    known[:clean.size] = clean
    train_clean, test_idx = validation_split(known, fraction, seed)
    order = np.concatenate([train_clean, np.arange(clean.size, noisy.size)])
    with atomic_directory(out) as staging:
        (staging / "images").mkdir()
        (staging / "images_test").mkdir()
        for new, old in enumerate(order, start=1):
            _link_or_copy(data / "images" / f"{old + 1:05d}.png",
                          staging / "images" / f"{new:05d}.png")
        for new, old in enumerate(test_idx, start=1):
            _link_or_copy(data / "images" / f"{old + 1:05d}.png",
                          staging / "images_test" / f"test{new:05d}.png")
        np.savetxt(staging / NOISY_CSV, noisy[order], fmt="%d")
        np.savetxt(staging / CLEAN_CSV, clean[train_clean], fmt="%d")
        np.savetxt(staging / TEST_LABELS_CSV, clean[test_idx], fmt="%d")
    return {"train_images": int(order.size), "clean_labels": int(train_clean.size),
            "test_images": int(test_idx.size)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "course")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--validation-size", type=float, default=0.2,
                        help="the share of the clean labels to move to the test folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_heldout_copy(args.data, args.out, args.validation_size, args.seed)
    print(f"{args.out}: {counts['train_images']} training images ({counts['clean_labels']} "
          f"with clean labels), {counts['test_images']} labelled test images")


if __name__ == "__main__":
    main()
