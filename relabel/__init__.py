"""relabel: train image classifiers when most labels are wrong.

Importing the package sets the offline, quiet defaults the whole project relies on
(`relabel.settings.apply_offline_defaults`), so every entry point (CLI, flows, tests,
benchmarks) behaves the same without the user exporting anything.
"""

from relabel.constants import (
    CLASS_NAMES,
    DEFAULT_CACHE_DIR,
    IMAGE_SHAPE,
    MODEL_KEYS,
    NUM_CLASSES,
    PROFILE_NAMES,
    VERSION,
)
from relabel.settings import apply_offline_defaults

apply_offline_defaults()

__version__ = VERSION
__all__ = ["CLASS_NAMES", "DEFAULT_CACHE_DIR", "IMAGE_SHAPE", "MODEL_KEYS", "NUM_CLASSES",
           "PROFILE_NAMES", "__version__", "predict"]


def predict(images, model=None) -> list[str]:  # noqa: ANN001 - see relabel.serving.predict
    """Class names of uint8 RGB images [n, 32, 32, 3] or of PNG files/folders, predicted by
    the registry's champion (default), a run folder or a .keras file."""
    from relabel.serving import predict as predict_with

    return predict_with(images, model)
