"""relabel: train image classifiers when most labels are wrong.

Importing the package sets the offline, quiet defaults the whole project relies on
(`relabel.settings.apply_offline_defaults`), so every entry point (CLI, flows, tests,
benchmarks) behaves the same without the user exporting anything.
"""

from pathlib import Path

from relabel.settings import apply_offline_defaults

apply_offline_defaults()

CLASS_NAMES: tuple[str, ...] = (
    "plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)
# Light constants the CLI needs before any heavy import (relabel.config imports pydantic).
PROFILE_NAMES: tuple[str, ...] = ("smoke", "demo", "cpu", "gpu")
# The models a run can train, in pipeline order (relabel.config.MODEL_TITLES: their names).
MODEL_KEYS: tuple[str, ...] = ("baseline", "model1", "model2")
DEFAULT_CACHE_DIR = Path(".relabel-cache")

__version__ = "0.1.0"


def predict(images, model=None) -> list[str]:  # noqa: ANN001 - see relabel.serving.predict
    """Class names of uint8 RGB images [n, 32, 32, 3] or of PNG files/folders, predicted by
    the registry's champion (default), a run folder or a .keras file."""
    from relabel.serving import predict as predict_with

    return predict_with(images, model)
