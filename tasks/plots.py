"""Figures a run is judged by, as PNG files written atomically (matplotlib, Agg backend).

- `plot_sample_grid`: the old notebook's first figure, larger: training images with their
  noisy label and, where known, the true (clean) label; wrong noisy labels in red.
- `plot_training_curves`: per-epoch loss / accuracy / learning rate of one training run.
- `plot_confusion_matrix`: true x predicted counts, row-normalised colours, counts printed.

The noise-transition heat map and noise-rate bars live in `tasks.noise` (same conventions).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from relabel.constants import CLASS_NAMES
from relabel.fileio import atomic_path


def _figure(width: float, height: float):
    """A bare matplotlib Figure rendered by Agg. No pyplot: pyplot's global figure registry
    is not thread-safe, and Prefect runs tasks in threads."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(fig, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def _names(count: int) -> list[str]:
    return list(CLASS_NAMES) if count == len(CLASS_NAMES) else [str(i) for i in range(count)]


def plot_sample_grid(
    images: np.ndarray,
    noisy_labels: np.ndarray,
    clean_labels: np.ndarray | None,
    path: str | os.PathLike[str],
    rows: int = 6,
    cols: int = 10,
    seed: int = 0,
) -> Path:
    """`rows x cols` random training images (drawn with `seed`), each titled with its noisy
    label and, when a clean label is known, the clean one: green when they agree, red when
    the noisy label is wrong, grey when no clean label exists. Prefers images with a clean
    label so the grid shows how wrong the noisy labels are.

    images: uint8 [N, 32, 32, 3] RGB; labels: int [N] class indices, clean -1 = unknown.
    """
    images = np.asarray(images)
    noisy = np.asarray(noisy_labels, dtype=np.int64)
    if images.ndim != 4 or images.shape[0] != noisy.shape[0]:
        raise ValueError(f"images {images.shape} and noisy_labels {noisy.shape}: need [N, H, W, "
                         "3] and [N]")
    clean = (np.full_like(noisy, -1) if clean_labels is None
             else np.asarray(clean_labels, dtype=np.int64))
    if clean.shape != noisy.shape:
        raise ValueError(f"clean_labels {clean.shape} != noisy_labels {noisy.shape}")
    rng = np.random.default_rng(seed)
    count = min(rows * cols, len(noisy))
    known = np.flatnonzero(clean >= 0)
    unknown = np.flatnonzero(clean < 0)
    chosen = rng.permutation(known)[:count]
    if len(chosen) < count:
        chosen = np.concatenate([chosen, rng.permutation(unknown)[: count - len(chosen)]])
    chosen = np.sort(chosen)

    fig = _figure(cols * 1.9, rows * 2.15)
    axes = fig.subplots(rows, cols)
    wrong = int(sum(clean[i] >= 0 and clean[i] != noisy[i] for i in chosen))
    with_clean = int(sum(clean[i] >= 0 for i in chosen))
    for ax, index in zip(np.ravel(axes), [*chosen, *[None] * (rows * cols - count)],
                         strict=True):
        ax.axis("off")
        if index is None:
            continue
        ax.imshow(images[index], interpolation="nearest")
        noisy_name = CLASS_NAMES[noisy[index]]
        if clean[index] < 0:
            title, color = f"#{index + 1}\nnoisy: {noisy_name}", "dimgray"
        else:
            clean_name = CLASS_NAMES[clean[index]]
            color = "forestgreen" if clean[index] == noisy[index] else "crimson"
            title = f"#{index + 1}\nnoisy: {noisy_name}\nclean: {clean_name}"
        ax.set_title(title, fontsize=8, color=color)
    fig.suptitle(
        f"{count} training images: noisy label vs clean label "
        f"({wrong}/{with_clean} shown noisy labels are wrong; red = wrong)", fontsize=12,
    )
    return _save(fig, path)


def plot_training_curves(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    title: str = "training",
) -> Path:
    """Loss, accuracy (train and, when present, validation) and learning rate per epoch.

    history: {"loss": [...], "accuracy": [...], "val_accuracy": [...], "lr": [...]}, one
    value per epoch (epoch 1 first); any other keys get a panel of their own.
    """
    series = {k: list(map(float, v)) for k, v in history.items() if len(v)}
    if not series:
        raise ValueError(f"{title}: empty training history, nothing to plot")
    panels: list[tuple[str, list[str]]] = []
    loss_keys = [k for k in series if "loss" in k]
    acc_keys = [k for k in series if "accuracy" in k]
    lr_keys = [k for k in series if k in ("lr", "learning_rate")]
    for label, keys in (("loss", loss_keys), ("accuracy", acc_keys), ("learning rate", lr_keys)):
        if keys:
            panels.append((label, keys))
    used = {k for _, keys in panels for k in keys}
    panels += [(k, [k]) for k in series if k not in used]

    fig = _figure(4.5 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (label, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            epochs = np.arange(1, len(series[key]) + 1)
            ax.plot(epochs, series[key], marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if label == "accuracy":
            ax.set_ylim(0, 1)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    path: str | os.PathLike[str],
    title: str = "confusion matrix",
) -> Path:
    """Heat map of confusion[true][predicted] counts; colour = row-normalised share (recall
    per class on the diagonal), the count printed in every cell."""
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"{title}: confusion must be square, got shape {counts.shape}")
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    names = _names(counts.shape[0])
    accuracy = np.trace(counts) / max(1, counts.sum())

    fig = _figure(7.5, 6.5)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"{title} (accuracy {accuracy:.1%}, n={counts.sum()})")
    fig.colorbar(image, ax=ax, label="share of the true class")
    return _save(fig, path)
