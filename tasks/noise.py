"""The noise model: how labels get corrupted, estimated from images that have both labels.

T[i, j] = P(noisy label = j | true label = i), estimated by counting (true, noisy) pairs on
the images with a clean label, with additive (Laplace) smoothing so that no transition is
ever exactly impossible. Rows sum to 1. On the reference data the diagonal is about 0.40
(60% of noisy labels are wrong) and the rest is spread almost uniformly (about 0.067 each).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from relabel.constants import CLASS_NAMES, NUM_CLASSES
from relabel.fileio import atomic_path


def estimate_transition(
    true_labels: np.ndarray,
    noisy_labels: np.ndarray,
    num_classes: int = NUM_CLASSES,
    smoothing: float = 1.0,
) -> np.ndarray:
    """Row-stochastic float64 [k, k]: (count of (true=i, noisy=j) + smoothing) / row total.

    Only pairs where `true_labels >= 0` are counted (-1 means "unknown").
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    noisy_labels = np.asarray(noisy_labels, dtype=np.int64)
    if true_labels.shape != noisy_labels.shape or true_labels.ndim != 1:
        raise ValueError(
            f"true_labels {true_labels.shape} and noisy_labels {noisy_labels.shape} must be "
            "1-D arrays of the same length"
        )
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    known = true_labels >= 0
    t, n = true_labels[known], noisy_labels[known]
    for name, values in (("true_labels", t), ("noisy_labels", n)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name}: values must be in 0..{num_classes - 1}")
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (t, n), 1.0)
    counts += smoothing
    totals = counts.sum(axis=1, keepdims=True)
    if np.any(totals == 0):
        missing = np.flatnonzero(totals[:, 0] == 0).tolist()
        raise ValueError(f"no pairs for true classes {missing} and smoothing=0: T undefined")
    return counts / totals


def noise_rates(transition: np.ndarray) -> np.ndarray:
    """Per true class, the probability its noisy label is wrong: 1 - diag(T), float64 [k]."""
    return 1.0 - np.diag(np.asarray(transition, dtype=np.float64))


def overall_noise_rate(transition: np.ndarray, class_prior: np.ndarray | None = None) -> float:
    """P(noisy != true) under `class_prior` (uniform when None)."""
    rates = noise_rates(transition)
    prior = np.full(rates.shape, 1.0 / rates.size) if class_prior is None else class_prior
    return float(np.dot(prior, rates))


def _save_figure(fig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_transition(transition: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Heat map of T with the probabilities printed in each cell (PNG, written atomically)."""
    # The Figure API, not pyplot: pyplot's global figure registry is not thread-safe, and
    # Prefect runs this task on a thread.
    from matplotlib.figure import Figure

    transition = np.asarray(transition)
    k = transition.shape[0]
    names = list(CLASS_NAMES) if k == len(CLASS_NAMES) else [str(i) for i in range(k)]
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    image = ax.imshow(transition, cmap="viridis", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            value = transition[i, j]
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.5 else "white")
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("noisy label")
    ax.set_ylabel("true label")
    ax.set_title("Noise transition T[true, noisy] = P(noisy | true)")
    fig.colorbar(image, ax=ax)
    return _save_figure(fig, path)


def plot_noise_rates(rates: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Bar chart of the per-class noise rate 1 - T[i, i] (PNG, written atomically)."""
    # The Figure API, not pyplot: pyplot's global figure registry is not thread-safe, and
    # Prefect runs this task on a thread.
    from matplotlib.figure import Figure

    rates = np.asarray(rates)
    names = list(CLASS_NAMES) if rates.size == len(CLASS_NAMES) else [
        str(i) for i in range(rates.size)
    ]
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    ax.bar(names, rates, color="tab:red")
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(noisy label wrong)")
    ax.set_title(f"Per-class noise rate (mean {rates.mean():.1%})")
    ax.tick_params(axis="x", rotation=45)
    return _save_figure(fig, path)
