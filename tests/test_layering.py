"""The import contracts of .importlinter hold for the package as it installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from package_copy import ROOT, installed_layout


def test_import_contracts_hold(tmp_path: Path) -> None:
    # import-linter reads packages from the file system, as they install.
    layout = installed_layout(tmp_path)
    shutil.copy(ROOT / ".importlinter", layout / ".importlinter")
    assert (layout / "relabel" / "tasks" / "train.py").is_file()
    lint_imports = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint_imports)], cwd=layout, capture_output=True, text=True,
                         env={"PYTHONPATH": str(layout), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "2 kept, 0 broken" in run.stdout
