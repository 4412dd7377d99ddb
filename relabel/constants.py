"""Constants every layer reads: the classes, the image shape, the model and profile names,
the package version. The bottom of the layers (.importlinter): it imports nothing of
relabel, so any module may import it without pulling another layer in (the package root
also re-exports them, next to its convenience `relabel.predict()`)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

CLASS_NAMES: tuple[str, ...] = (
    "plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)
PROFILE_NAMES: tuple[str, ...] = ("smoke", "demo", "cpu", "gpu")
# The models a run can train, in pipeline order (relabel.config.MODEL_TITLES: their names).
MODEL_KEYS: tuple[str, ...] = ("baseline", "model1", "model2")
DEFAULT_CACHE_DIR = Path(".relabel-cache")

try:  # pyproject.toml's version, as installed
    VERSION = importlib.metadata.version("relabel")
except importlib.metadata.PackageNotFoundError:  # a copy of the code, e.g. a served model's
    VERSION = "0+unknown"
