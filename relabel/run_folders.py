"""Where a run's results go: its own folder, published whole, and `runs/latest`.

By default each run gets `runs/<YYYYmmdd-HHMMSS>-<run name>/` (a suffix -2, -3 ... when two
runs would share a name) and `runs/latest` is a relative symlink to the newest. A folder is
written in a hidden staging folder beside it and renamed into place in one step, so a run
folder is never half-written and never mixes two runs' files. An explicit output folder
(`relabel run --output-dir`, refused there when it already holds results unless
`--overwrite`) is replaced as a whole the same way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_RUNS_DIR = Path("runs")
LATEST = "latest"


def run_folder_name(started: dt.datetime, run_name: str) -> str:
    return f"{started:%Y%m%d-%H%M%S}-{run_name}"


def holds_results(folder: Path) -> bool:
    """True when `folder` exists and is not empty (another run's results, or anything)."""
    return folder.is_dir() and any(folder.iterdir())


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove the staging folders that killed runs left in `parent` (their process is gone);
    a live run's staging folder is never touched. Returns what was removed."""
    removed = []
    for folder in parent.glob(".*.partial"):
        try:
            pid = int(folder.name.rsplit(".", 3)[-3])
        except (ValueError, IndexError):
            continue
        if not _process_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def staging_folder(parent: Path, name: str) -> Iterator[Path]:
    """A hidden folder in `parent` to write a run folder into (named with this process id,
    so a later run can tell a killed run's leftover from a live one and removes it); removed
    if still there after."""
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".partial",
                                    dir=parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def claim_new_folder(staging: Path, runs_dir: Path, name: str) -> Path:
    """Rename `staging` to runs_dir/name, or name-2, name-3 ... if taken; never replaces."""
    for attempt in range(1, 1000):
        target = runs_dir / (name if attempt == 1 else f"{name}-{attempt}")
        if target.exists() or target.is_symlink():
            continue
        try:
            os.rename(staging, target)  # fails if another run took the name meanwhile
        except OSError:
            if target.exists():
                continue
            raise
        return target
    raise FileExistsError(f"{runs_dir / name}: 999 runs with this name already")


def replace_folder(staging: Path, target: Path) -> Path:
    """Put `staging` in place of `target` as a whole (the old contents are removed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return target


def point_latest(runs_dir: Path, folder: Path) -> Path | None:
    """Make runs_dir/latest a relative symlink to `folder` (atomically); None where the
    file system has no symlinks. A real `latest` folder (relabel before run folders) is
    kept, renamed to `latest-<its mtime>`."""
    link = runs_dir / LATEST
    if link.is_dir() and not link.is_symlink():
        stamp = dt.datetime.fromtimestamp(link.stat().st_mtime).strftime("%Y%m%d-%H%M%S")
        os.rename(link, runs_dir / f"{LATEST}-{stamp}")
    tmp = runs_dir / f".{LATEST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(folder, runs_dir), tmp)
    except (OSError, NotImplementedError):
        return None
    os.replace(tmp, link)
    return link


def portable_paths(value: Any, base: Path | None = None) -> Any:
    """`value` (JSON-like) with every absolute path string made relative to `base` (the
    folder relabel runs in, by default), so a run folder names no machine's layout."""
    base = Path.cwd() if base is None else base
    if isinstance(value, dict):
        return {key: portable_paths(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [portable_paths(item, base) for item in value]
    if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
        with contextlib.suppress(ValueError):  # another drive (Windows): keep it
            return os.path.relpath(value, base)
    return value
