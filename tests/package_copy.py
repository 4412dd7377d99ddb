"""A copy of the package outside the checkout, in the layout it installs in, and a child
interpreter that imports relabel from it: for tests that edit the code and must not touch
the checkout (nor see it through the editable install)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# First lines of a script run in the copy: the editable install's import hook would find
# the checkout before PYTHONPATH does.
WITHOUT_EDITABLE_HOOK = """import sys
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
"""


def installed_layout(target: Path) -> Path:
    """Copy the source folders where pyproject's package-dir installs them (tasks/ becomes
    relabel/tasks/, ...): the source tree keeps tasks/ and flows/ at the top."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    ignore = shutil.ignore_patterns("__pycache__")
    for package, folder in sorted(package_dir.items(), key=lambda item: item[0].count(".")):
        shutil.copytree(ROOT / folder, target.joinpath(*package.split(".")), ignore=ignore)
    return target


def run_in_copy(src: Path, script: str, *args: str, cwd: Path) -> Any:
    """Run `script` (after WITHOUT_EDITABLE_HOOK) with relabel imported from `src`; return
    the JSON it prints last. `cwd` must not be the checkout: `python -c` imports from it."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_EDITABLE_HOOK + script, *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(src)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
