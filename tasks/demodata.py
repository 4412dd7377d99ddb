"""Deterministic demo data in exactly the layout users hand over.

Each class is a procedural pattern a CNN can learn but not trivially: a shape or texture
(disc, square, triangle, stripes, ring, cross, checkerboard, diagonal, dots, bars) drawn in a
class-tinted but jittered colour, at a random position and scale, over a noisy background.
Noisy labels follow a configurable noise model: with probability `noise_rate` the label is
replaced, by the next class (`pair_flip_fraction` of those flips: class-pair confusion) or by
a uniformly chosen other class (the rest: symmetric noise, as in the reference data).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from relabel.constants import NUM_CLASSES
from relabel.fileio import atomic_directory

# Base RGB tints per class; pairs of classes share a tint so shape must be learned too.
_TINTS = np.array(
    [[200, 60, 60], [60, 60, 200], [60, 170, 60], [200, 60, 60], [200, 180, 50],
     [60, 60, 200], [60, 170, 60], [160, 80, 190], [200, 180, 50], [160, 80, 190]],
    dtype=np.float32,
)


def _draw(label: int, rng: np.random.Generator) -> np.ndarray:
    """One 32x32 RGB uint8 image of class `label`."""
    background = rng.uniform(20, 110, size=3)
    image = np.clip(
        background + rng.normal(0, 18, size=(32, 32, 3)), 0, 255
    ).astype(np.float32)
    color = tuple(float(c) for c in np.clip(_TINTS[label] + rng.normal(0, 35, 3), 0, 255))
    cx, cy = (int(v) for v in rng.integers(10, 23, size=2))
    r = int(rng.integers(6, 11))
    canvas = np.zeros((32, 32), np.uint8)
    if label == 0:
        cv2.circle(canvas, (cx, cy), r, 255, -1)
    elif label == 1:
        cv2.rectangle(canvas, (cx - r, cy - r), (cx + r, cy + r), 255, -1)
    elif label == 2:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(canvas, [pts], 255)
    elif label == 3:
        period = int(rng.integers(4, 7))
        canvas[(np.arange(32) // (period // 2)) % 2 == 0, :] = 255
    elif label == 4:
        cv2.circle(canvas, (cx, cy), r, 255, 2)
    elif label == 5:
        t = max(2, r // 3)
        cv2.rectangle(canvas, (cx - r, cy - t), (cx + r, cy + t), 255, -1)
        cv2.rectangle(canvas, (cx - t, cy - r), (cx + t, cy + r), 255, -1)
    elif label == 6:
        size = int(rng.integers(3, 6))
        yy, xx = np.mgrid[0:32, 0:32]
        canvas[((yy // size) + (xx // size)) % 2 == 0] = 255
    elif label == 7:
        for offset in range(-32, 32, int(rng.integers(6, 9))):
            cv2.line(canvas, (offset, 0), (offset + 32, 32), 255, 2)
    elif label == 8:
        for _ in range(int(rng.integers(5, 9))):
            x, y = (int(v) for v in rng.integers(3, 29, size=2))
            cv2.circle(canvas, (x, y), 2, 255, -1)
    else:
        period = int(rng.integers(4, 7))
        canvas[:, (np.arange(32) // (period // 2)) % 2 == 0] = 255
    mask = (canvas.astype(np.float32) / 255.0)[..., None]
    image = image * (1 - mask) + np.array(color, np.float32) * mask
    image += rng.normal(0, 10, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_noisy_labels(
    labels: np.ndarray, noise_rate: float, pair_flip_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Corrupt `labels`: a `noise_rate` share is wrong, some to the next class, rest uniform."""
    noisy = labels.copy()
    flip = rng.random(len(labels)) < noise_rate
    pair = flip & (rng.random(len(labels)) < pair_flip_fraction)
    uniform = flip & ~pair
    noisy[pair] = (labels[pair] + 1) % NUM_CLASSES
    # A uniformly chosen *other* class: shift by 1..K-1.
    shift = rng.integers(1, NUM_CLASSES, size=int(uniform.sum()))
    noisy[uniform] = (labels[uniform] + shift) % NUM_CLASSES
    return noisy


def generate_demo_data(
    out_dir: str | os.PathLike[str],
    num_train: int = 5000,
    num_clean: int = 1500,
    num_test: int = 1000,
    noise_rate: float = 0.6,
    pair_flip_fraction: float = 0.0,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a demo dataset to `out_dir` (atomically: all of it or nothing)."""
    if not 0 <= noise_rate < 1 or not 0 <= pair_flip_fraction <= 1:
        raise ValueError("noise_rate must be in [0, 1) and pair_flip_fraction in [0, 1]")
    if not 0 < num_clean <= num_train:
        raise ValueError(f"num_clean={num_clean} must be in 1..num_train={num_train}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out_dir}: folder exists and is not empty")
    rng = np.random.default_rng(seed)
    true_labels = np.arange(num_train) % NUM_CLASSES
    rng.shuffle(true_labels)
    test_labels = np.arange(num_test) % NUM_CLASSES
    rng.shuffle(test_labels)
    noisy = make_noisy_labels(true_labels, noise_rate, pair_flip_fraction, rng)

    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    with atomic_directory(staging) as tmp:
        (tmp / "images").mkdir()
        (tmp / "images_test").mkdir()
        for i, label in enumerate(true_labels, start=1):
            cv2.imwrite(str(tmp / "images" / f"{i:05d}.png"), _draw(int(label), rng)[..., ::-1])
        for i, label in enumerate(test_labels, start=1):
            cv2.imwrite(
                str(tmp / "images_test" / f"test{i:05d}.png"), _draw(int(label), rng)[..., ::-1]
            )
        np.savetxt(tmp / "noisy_labels.csv", noisy, fmt="%d")
        np.savetxt(tmp / "clean_labels.csv", true_labels[:num_clean], fmt="%d")
        np.savetxt(tmp / "test_labels.csv", test_labels, fmt="%d")
        # Demo-only ground truth of every training image, for measuring label correction.
        np.savetxt(tmp / "true_labels.csv", true_labels, fmt="%d")
    # The staging folder is complete: swap it in.
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(staging, out_dir)
    return out_dir
