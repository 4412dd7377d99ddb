"""The import contracts of .importlinter hold for the package as it installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(target: Path) -> Path:
    """Copy the source folders where pyproject's package-dir installs them (tasks/ becomes
    relabel/tasks/, ...): import-linter reads packages from the file system, and the
    source tree keeps tasks/ and flows/ at the top."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    ignore = shutil.ignore_patterns("__pycache__")
    for package, folder in sorted(package_dir.items(), key=lambda item: item[0].count(".")):
        shutil.copytree(ROOT / folder, target.joinpath(*package.split(".")), ignore=ignore)
    shutil.copy(ROOT / ".importlinter", target / ".importlinter")
    return target


def test_import_contracts_hold(tmp_path: Path) -> None:
    layout = installed_layout(tmp_path)
    assert (layout / "relabel" / "tasks" / "train.py").is_file()
    lint_imports = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint_imports)], cwd=layout, capture_output=True, text=True,
                         env={"PYTHONPATH": str(layout), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "2 kept, 0 broken" in run.stdout
