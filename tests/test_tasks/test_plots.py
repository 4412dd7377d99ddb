"""Plots: valid PNGs of the promised size, written atomically, clear errors on bad input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from relabel.tasks.plots import plot_confusion_matrix, plot_sample_grid, plot_training_curves


def _png_shape(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path).shape[:2]


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_sample_grid_is_large_and_marks_wrong_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(200, 32, 32, 3), dtype=np.uint8)
    noisy = rng.integers(0, 10, size=200)
    clean = np.where(np.arange(200) < 50, rng.integers(0, 10, size=200), -1)
    path = plot_sample_grid(images, noisy, clean, tmp_path / "grid.png", rows=6, cols=10)
    height, width = _png_shape(path)
    assert width > 1500 and height > 1000  # 60 images, each readable with its two labels
    assert _no_temp_files(tmp_path)
    # Same seed, same picture (reproducible runs log identical artifacts).
    again = plot_sample_grid(images, noisy, clean, tmp_path / "again.png", rows=6, cols=10)
    assert again.read_bytes() == path.read_bytes()
    with pytest.raises(ValueError, match="clean_labels"):
        plot_sample_grid(images, noisy, clean[:10], tmp_path / "bad.png")


def test_training_curves_and_confusion(tmp_path: Path) -> None:
    history = {"loss": [2.0, 1.5, 1.2], "accuracy": [0.2, 0.4, 0.5],
               "val_accuracy": [0.25, 0.35, 0.45], "lr": [0.1, 0.2, 0.05]}
    curves = plot_training_curves(history, tmp_path / "curves.png", title="Model II")
    assert _png_shape(curves)[1] > 2.5 * _png_shape(curves)[0]  # three panels side by side
    confusion = np.diag(np.full(10, 9)) + 1
    heat = plot_confusion_matrix(confusion, tmp_path / "confusion.png")
    assert min(_png_shape(heat)) > 500
    with pytest.raises(ValueError, match="empty training history"):
        plot_training_curves({"loss": []}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((3, 4)), tmp_path / "y.png")
    assert _no_temp_files(tmp_path)


@pytest.mark.slow
def test_plots_from_threads(tmp_path: Path) -> None:
    """Prefect runs tasks in threads: concurrent plots must not mix figures."""
    confusions = [np.eye(10, dtype=int) * (k + 1) for k in range(6)]
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda k: plot_confusion_matrix(
            confusions[k], tmp_path / f"c{k}.png", title=f"run {k}"), range(6)))
    serial = plot_confusion_matrix(confusions[2], tmp_path / "serial.png", title="run 2")
    assert paths[2].read_bytes() == serial.read_bytes()
