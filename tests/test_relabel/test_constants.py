"""The constants every layer reads, and the package version."""

import tomllib

from package_copy import ROOT

import relabel
from relabel import constants


def test_the_version_is_pyprojects_as_installed() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert constants.VERSION == pyproject["project"]["version"] == relabel.__version__


def test_the_package_root_reexports_the_same_constants() -> None:
    for name in ("CLASS_NAMES", "NUM_CLASSES", "IMAGE_SHAPE", "MODEL_KEYS", "PROFILE_NAMES",
                 "DEFAULT_CACHE_DIR"):
        assert getattr(relabel, name) is getattr(constants, name)
    assert constants.NUM_CLASSES == len(constants.CLASS_NAMES) == 10
