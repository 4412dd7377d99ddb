"""Predict new images with a trained model: the registry's champion, a finished run, or a
saved .keras file. What `relabel predict` and `relabel.predict` call.

Images are read and validated exactly as ingestion reads them (32x32 RGB PNG; grayscale and
opaque RGBA converted; every bad file named), predicted in batches with flip test-time
augmentation, and reported per file: class id, class name, confidence.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from relabel.config import MODEL_TITLES
from relabel.constants import CLASS_NAMES
from relabel.fileio import write_text_atomic

DEFAULT_MODEL = "champion"
PREDICTION_HEADER = ("file", "class_id", "class_name", "confidence")


class PredictError(ValueError):
    """A model source or an image that cannot be used. The message names it."""


@dataclass
class Predictions:
    """One row per image: `files`, `class_ids` int64 [n], `confidence` float32 [n] (the
    predicted class's probability); `model` says where the model came from."""

    files: list[str]
    class_ids: np.ndarray
    confidence: np.ndarray
    model: str
    seconds: float

    @property
    def class_names(self) -> list[str]:
        return [CLASS_NAMES[int(c)] for c in self.class_ids]

    @property
    def images_per_second(self) -> float:
        return len(self.files) / self.seconds if self.seconds else float("inf")

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(PREDICTION_HEADER)
        for file, class_id, name, conf in zip(self.files, self.class_ids, self.class_names,
                                              self.confidence, strict=True):
            writer.writerow([file, int(class_id), name, f"{float(conf):.4f}"])
        return buffer.getvalue()

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table atomically (temp file + rename)."""
        return write_text_atomic(path, self.to_csv())


def image_files(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """PNG files named directly, plus every *.png in the folders named (sorted by name)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() == ".png")
            if not found:
                raise PredictError(f"{item}: no .png files in folder")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise PredictError(f"{item}: no such file or folder")
    if not files:
        raise PredictError("no images given")
    return files


def load_classifier(source: str | os.PathLike[str] | None = None) -> tuple[Any, str]:
    """(Keras model, description) from `source`: a registry alias of `relabel-model2`
    ("champion", the default, or "challenger"), a `models:/...` URI, a run's output folder
    (its metrics.json names Model II's file), or a .keras file."""
    from relabel.tasks.train import load_model

    source = str(source or DEFAULT_MODEL)
    path = Path(source)
    if path.is_dir():
        metrics_file = path / "metrics.json"
        if not metrics_file.is_file():
            raise PredictError(f"{path}: not a run folder (no metrics.json)")
        models = json.loads(metrics_file.read_text()).get("models", {})
        model2 = models.get(MODEL_TITLES["model2"])
        if model2 is None:
            raise PredictError(f"{metrics_file}: this run trained no {MODEL_TITLES['model2']}")
        keras_file = Path(model2["model"]["path"])
        if not keras_file.is_file():
            raise PredictError(f"{keras_file}: model file missing (named by {metrics_file})")
        return load_model(keras_file), f"{MODEL_TITLES['model2']} of run {path}"
    if path.suffix == ".keras":
        if not path.is_file():
            raise PredictError(f"{path}: no such model file")
        return load_model(path), str(path)
    return _registry_model(source)


def _registry_model(source: str) -> tuple[Any, str]:
    import mlflow
    from mlflow.exceptions import MlflowException

    from relabel.registry import MODEL_NAME
    from relabel.tracking import tracking_uri

    uri = source if source.startswith("models:/") else f"models:/{MODEL_NAME}@{source}"
    mlflow.set_tracking_uri(tracking_uri())
    try:
        classifier = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except (MlflowException, OSError) as exc:
        raise PredictError(f"{uri}: cannot load the model from {tracking_uri()} "
                           f"({str(exc).splitlines()[0]}); train one with `relabel run`, or "
                           "pass --model RUN_DIR") from None
    return classifier.keras_model, f"{uri} ({tracking_uri()})"


def predict_images(images: np.ndarray, model: Any, batch_size: int = 1024,
                   tta: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(class ids int64 [n], confidence float32 [n]) of uint8 RGB images [n, 32, 32, 3]."""
    from relabel.tasks.train import predict_proba

    proba = predict_proba(model, images, batch_size=batch_size, tta=tta)
    ids = proba.argmax(axis=1).astype(np.int64)
    return ids, proba[np.arange(len(ids)), ids].astype(np.float32)


def predict_files(inputs: Sequence[str | os.PathLike[str]],
                  model: str | os.PathLike[str] | None = None,
                  batch_size: int = 1024) -> Predictions:
    """Read, validate and predict PNG files and folders (see `image_files`)."""
    from relabel.tasks.ingest import decode_images

    files = image_files(inputs)
    images, _ = decode_images(files)  # IngestError names every bad file
    keras_model, description = load_classifier(model)
    started = time.perf_counter()
    ids, confidence = predict_images(images, keras_model, batch_size)
    return Predictions([str(f) for f in files], ids, confidence, description,
                       time.perf_counter() - started)


def predict(images: Any, model: str | os.PathLike[str] | None = None) -> list[str]:
    """Class names of `images`: a uint8 RGB array [n, 32, 32, 3] (or one image [32, 32, 3]),
    or PNG paths / folders. `model`: see `load_classifier` (default: the champion)."""
    if isinstance(images, (str, os.PathLike)) or (
            isinstance(images, (list, tuple)) and images
            and all(isinstance(i, (str, os.PathLike)) for i in images)):
        items = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        return predict_files(items, model).class_names
    array = np.asarray(images)
    if array.shape == (32, 32, 3):
        array = array[None]
    if array.ndim != 4 or array.shape[1:] != (32, 32, 3) or array.dtype != np.uint8:
        raise PredictError(f"images: expected uint8 [n, 32, 32, 3] RGB, got {array.dtype} "
                           f"{array.shape}")
    keras_model, _ = load_classifier(model)
    ids, _ = predict_images(array, keras_model)
    return [CLASS_NAMES[int(c)] for c in ids]
