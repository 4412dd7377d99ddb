"""Synthetic label-noise data and label files for the review and label-request tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relabel import NUM_CLASSES


def synthetic_predictions(
    n: int, noise_rate: float = 0.6, signal: float = 3.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Known noise model: true labels, 60% flipped (2/3 uniform, 1/3 to the next class).

    The "model" probabilities are softmax(signal * onehot(true) + N(0, 1)): about 90% accurate,
    and independent of the noisy label, as out-of-fold probabilities are.
    Returns (true_labels, noisy_labels, pred_probs float32, flipped mask).
    """
    rng = np.random.default_rng(seed)
    true = rng.integers(0, NUM_CLASSES, n)
    flipped = rng.random(n) < noise_rate
    pair = flipped & (rng.random(n) < 1 / 3)
    uniform = flipped & ~pair
    noisy = true.copy()
    noisy[pair] = (true[pair] + 1) % NUM_CLASSES
    noisy[uniform] = (true[uniform] + rng.integers(1, NUM_CLASSES, uniform.sum())) % NUM_CLASSES
    logits = rng.normal(0.0, 1.0, (n, NUM_CLASSES))
    logits[np.arange(n), true] += signal
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    return true, noisy, proba.astype(np.float32), flipped


def symmetric_transition(noise_rate: float = 0.6) -> np.ndarray:
    t = np.full((NUM_CLASSES, NUM_CLASSES), noise_rate / (NUM_CLASSES - 1))
    np.fill_diagonal(t, 1 - noise_rate)
    return t


def write_label_csv(path: Path, rows: list[tuple[int, str]],
                    header: str = "image_id,label") -> Path:
    """`header` then one `id,label` line per row, at `path`."""
    path.write_text("\n".join([header, *(f"{i},{label}" for i, label in rows)]) + "\n")
    return path
