"""Artifacts: how large arrays and models travel between Prefect tasks.

A stage never returns an array or a model to Prefect. It writes the object to a file under
the cache dir and returns an `Artifact` (the file's path and the SHA-256 of its bytes). Prefect
persists that small record as its task result (JSON, readable), and the next stage's cache
key hashes the record: two short strings, no matter how large the file. Files are named by
their content hash and written atomically (temp file + rename), so a killed run never leaves
a half-written file where a later run would take it for a finished one; and a cached result
whose file was deleted or changed since is a cache miss (`Artifact.fault`, checked by
flows/policies.SelfHealing), so that stage recomputes.

Layout::

    CACHE_DIR/artifacts/<kind>/<sha256[:16]><suffix>
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from relabel.fileio import sha256_file


class ArtifactMissingError(FileNotFoundError):
    """A stage's input file vanished while the run used it. (A cached result whose file is
    gone or changed never gets this far: policies.SelfHealing recomputes that stage.)"""


class Artifact(BaseModel):
    """A file produced by a stage: where it is and the SHA-256 of its bytes."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str

    @property
    def short(self) -> str:
        """First 12 hex digits of the content hash, for run names and logs."""
        return self.sha256[:12]

    def local_path(self) -> Path:
        """The file, after checking it still exists."""
        path = Path(self.path)
        if not path.is_file():
            # The stage that wrote it checked it moments ago (policies.SelfHealing), so it
            # was deleted during this run; the next run recomputes it.
            raise ArtifactMissingError(
                f"{path}: artifact missing (sha256 {self.short}): deleted while this run "
                "was using it (was the cache dir pruned?); run again: the stage that "
                "writes it recomputes it"
            )
        return path

    def fault(self) -> str | None:
        """What is wrong with the file (missing, or its bytes changed), or None.

        A full SHA-256, not only existence and size: the record holds no size, and a
        same-size overwrite would pass a size check. Measured here (2-core EPYC, SHA-NI,
        warm page cache): 0.10-0.20 s for a 154 MB image array (the 50,000-image course
        set), paid once per cached stage result per run; a cold cache adds a disk read.
        """
        path = Path(self.path)
        if not path.is_file():
            return f"{path} is missing"
        actual = sha256_file(path)
        if actual != self.sha256:
            return f"{path} has changed (sha256 {actual[:12]}, recorded {self.short})"
        return None


def artifacts_in(value: Any) -> Iterator[Artifact]:
    """Every `Artifact` inside a stage result: in records, lists, tuples and dicts, nested."""
    if isinstance(value, Artifact):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from artifacts_in(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from artifacts_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from artifacts_in(item)


def _store(
    cache_dir: str | os.PathLike[str], kind: str, suffix: str, write: Callable[[Path], Any]
) -> Artifact:
    """Write via `write(tmp_path)`, hash the bytes, rename to the content-addressed name."""
    folder = Path(cache_dir).resolve() / "artifacts" / kind
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        digest = sha256_file(tmp)
        destination = folder / f"{digest[:16]}{suffix}"
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    return Artifact(path=str(destination), sha256=digest)


def save_array(cache_dir: str | os.PathLike[str], kind: str, array: np.ndarray) -> Artifact:
    """Store one array as `.npy` (no pickle; equal arrays give equal files and hashes)."""
    array = np.ascontiguousarray(array)
    if array.dtype == object:
        raise TypeError(f"{kind}: object arrays would need pickle; convert to a numeric dtype")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    return _store(cache_dir, kind, ".npy", write)


def load_array(artifact: Artifact, mmap: bool = False) -> np.ndarray:
    """Load an array artifact; `mmap` maps it read-only instead of reading it into memory."""
    return np.load(artifact.local_path(), mmap_mode="r" if mmap else None, allow_pickle=False)


def reference_file(path: str | os.PathLike[str]) -> Artifact:
    """An Artifact for a file that already sits in an immutable place (e.g. an ingested
    dataset folder), hashed where it is."""
    path = Path(path).resolve()
    return Artifact(path=str(path), sha256=sha256_file(path))


def save_file(
    cache_dir: str | os.PathLike[str], kind: str, suffix: str, write: Callable[[Path], Any]
) -> Artifact:
    """Store whatever `write(path)` writes (a model, a plot, a CSV) as a content-addressed
    artifact. `write` must write to exactly the path it is given."""
    return _store(cache_dir, kind, suffix, write)
