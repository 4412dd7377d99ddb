"""Prediction with a trained model: one image -> class name, a batch -> class indices, and
the `label_prediction.csv` a user gets for a test folder."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from relabel.config import MODEL_TITLES
from relabel.constants import CLASS_NAMES, IMAGE_SHAPE
from relabel.fileio import atomic_path

PREDICTION_COLUMNS = tuple(MODEL_TITLES.values())


def _check_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images: expected shape [n, 32, 32, 3] (RGB uint8), got "
                         f"{images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images: expected dtype uint8 (0..255), got {images.dtype}")
    return images


def predict(model, image: np.ndarray, tta: bool = True) -> str:
    """The class name (e.g. "cat") of one RGB uint8 image of shape (32, 32, 3)."""
    image = np.asarray(image)
    if image.shape != IMAGE_SHAPE:
        raise ValueError(f"image: expected shape (32, 32, 3) (RGB uint8), got {image.shape}")
    return CLASS_NAMES[int(predict_batch(model, image[None], tta=tta)[0])]


def predict_batch(model, images: np.ndarray, tta: bool = True) -> np.ndarray:
    """Predicted class index of each image of `images` uint8 [n, 32, 32, 3], int64 [n]."""
    from relabel.tasks.train import predict_proba

    images = _check_batch(images)
    if images.shape[0] == 0:
        return np.empty(0, np.int64)
    return predict_proba(model, images, tta=tta).argmax(axis=1).astype(np.int64)


def predict_labels(kind: str, model_path: str | os.PathLike[str], images: np.ndarray,
                   features: np.ndarray | None, tta: bool = True) -> np.ndarray:
    """Class indices int64 [n] from a saved model of either kind: "sklearn" (the baseline, a
    joblib file; reads the colour-histogram `features`) or "keras" (a .keras file; reads the
    uint8 `images`, flip test-time augmentation with `tta`)."""
    if kind == "sklearn":
        import joblib

        from relabel.tasks.baseline import predict_baseline

        if features is None:
            raise ValueError("the baseline predicts from colour features; none were given")
        return predict_baseline(joblib.load(model_path), features)
    if kind == "keras":
        from relabel.tasks.train import load_model

        return predict_batch(load_model(model_path), images, tta=tta)
    raise ValueError(f"kind: expected 'sklearn' or 'keras', got {kind!r}")


def write_label_prediction_csv(path: str | os.PathLike[str],
                               columns: dict[str, np.ndarray]) -> Path:
    """Write `label_prediction.csv`: a header with the column names (normally "Baseline",
    "Model I", "Model II", in that order), then one row of class indices per test image,
    in test-file order. Written atomically."""
    if not columns:
        raise ValueError("columns: need at least one column of predictions")
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    lengths = {name: a.shape for name, a in arrays.items()}
    sizes = {a.shape[0] if a.ndim == 1 else -1 for a in arrays.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"columns: need 1-D arrays of equal length, got shapes {lengths}")
    for name, a in arrays.items():
        if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0
                       or a.max() >= len(CLASS_NAMES)):
            raise ValueError(f"column {name!r}: values must be class indices 0..9")
    path = Path(path)
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(list(arrays))
            rows = zip(*(a.astype(np.int64).tolist() for a in arrays.values()), strict=True)
            writer.writerows(rows)
    return path
