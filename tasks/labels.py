"""New clean labels: validate a file of them and merge it into a versioned clean-label set.

Labellers hand back either `image_id,label` rows (ids 1-based, as in `images/00017.png`) or an
updated `clean_labels.csv` (one label per line for images 1..M, or the same two columns). A
file is validated completely before anything is written: unknown image ids, the same id given
two different labels, labels outside 0..9, the wrong number or names of columns, and labels
that contradict an existing clean label all raise `LabelError` naming the file and line, and
the clean-label set is left as it was.

The merged sets live next to the dataset artifact they belong to::

    CACHE_DIR/clean-labels/<dataset hash[:16]>/manifest.json      versions, newest last
    CACHE_DIR/clean-labels/<dataset hash[:16]>/v0002-<sha12>.npy  int64 [N], -1 = unknown

Each version is a complete label vector (not a diff), written atomically before the manifest
that names it, so readers only ever see finished versions. Merging a file that adds nothing
creates no new version, which makes a repeated `relabel labels add FILE` harmless.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relabel.fileio import atomic_path, sha256_array, write_json_atomic
from relabel.tasks.ingest import (
    UNKNOWN,
    IngestError,
    _looks_like_header,
    clean_labels_from_rows,
    read_label_rows,
)

MAX_LISTED = 10
ID_COLUMN_NAMES = {"image_id", "id", "image", "imageid", "image id"}
LABEL_COLUMN_NAMES = {"label", "clean_label", "class", "labels"}


class LabelError(IngestError):
    """A new-labels file that cannot be merged. The message names the file and line."""


@dataclass(frozen=True)
class LabelMerge:
    """The result of merging new labels into the current clean-label vector.

    `labels` is int64 [N] (-1 = unknown). `added` counts images that had no clean label and
    now have one; `confirmed` those whose existing clean label the file repeats; `changed`
    those whose clean label the file replaced (only with `allow_changes`).
    """

    labels: np.ndarray
    added: int
    confirmed: int
    changed: int

    @property
    def num_clean(self) -> int:
        return int((self.labels >= 0).sum())


@dataclass(frozen=True)
class LabelVersion:
    """One stored clean-label set. `version` counts from 1; `path` is its `.npy` file."""

    version: int
    path: Path
    sha256: str
    num_clean: int
    added: int
    changed: int
    source: str
    created: str

    def load(self) -> np.ndarray:
        return np.load(self.path, allow_pickle=False)


def _check_header(path: Path) -> bool:
    """Whether the file has a header; if so, its column names must say image id and label."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        first = next(csv.reader(handle), [])
    if not first or not _looks_like_header(first):
        return False
    names = [name.strip().lower() for name in first]
    if len(names) == 1 and names[0] in LABEL_COLUMN_NAMES:
        return True
    if len(names) == 2 and names[0] in ID_COLUMN_NAMES and names[1] in LABEL_COLUMN_NAMES:
        return True
    raise LabelError(f"{path}:1: columns {first!r}; expected 'image_id,label' (image id first)"
                     " or a single 'label' column")


def read_new_labels(path: str | os.PathLike[str], num_images: int) -> np.ndarray:
    """Parse and validate a new-labels file into a full int64 [N] vector (-1 where not given).

    Rows whose label is empty are skipped: a request list (`relabel review`) that a person
    filled in only partly merges the filled rows. Reuses ingestion's parser, so the same
    rules (and messages) hold as for clean_labels.csv.
    """
    path = Path(path)
    try:
        ids, labels = read_label_rows(path, allow_empty_label=True)
        first_line = 2 if _check_header(path) else 1
        filled = labels != UNKNOWN
        if not filled.any():
            raise LabelError(f"{path}: no labels filled in (every label is empty)")
        if ids is None:
            return clean_labels_from_rows(None, labels, num_images, path)
        lines = np.arange(len(ids)) + first_line
        bad = np.flatnonzero((ids < 1) | (ids > num_images))
        if bad.size:
            raise LabelError(
                f"{path}:{lines[bad[0]]}: image id {ids[bad[0]]} is not in 1..{num_images}"
            )
        # Only filled rows count: an id listed once empty and once filled is no conflict.
        ids, labels, lines = ids[filled], labels[filled], lines[filled]
        order = np.argsort(ids, kind="stable")
        for a, b in zip(order[:-1], order[1:], strict=True):
            if ids[a] == ids[b] and labels[a] != labels[b]:
                raise LabelError(
                    f"{path}: image id {ids[a]} has conflicting labels {labels[a]} and "
                    f"{labels[b]} (lines {lines[a]} and {lines[b]})"
                )
        full = np.full(num_images, UNKNOWN, dtype=np.int64)
        full[ids - 1] = labels
        return full
    except LabelError:
        raise
    except IngestError as exc:
        raise LabelError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not a UTF-8 text file ({exc.reason})") from None


def merge_labels(
    current: np.ndarray, new: np.ndarray, source: str | os.PathLike[str] = "new labels",
    *, allow_changes: bool = False,
) -> LabelMerge:
    """Merge `new` into `current` (both int64 [N], -1 = unknown).

    A new label that contradicts an existing clean label is an error unless `allow_changes`
    (a labeller correcting a clean label is rare enough to deserve an explicit opt-in).
    """
    current, new = np.asarray(current, np.int64), np.asarray(new, np.int64)
    if current.shape != new.shape:
        raise LabelError(f"{source}: {new.shape[0]} labels but the dataset has {current.shape[0]}")
    given = new != UNKNOWN
    known = current != UNKNOWN
    differs = given & known & (current != new)
    if differs.any() and not allow_changes:
        ids = np.flatnonzero(differs)
        shown = ", ".join(
            f"image {i + 1}: clean {current[i]} vs new {new[i]}" for i in ids[:MAX_LISTED]
        )
        more = f" (+{ids.size - MAX_LISTED} more)" if ids.size > MAX_LISTED else ""
        raise LabelError(
            f"{source}: {ids.size} label(s) contradict existing clean labels: {shown}{more}; "
            "nothing merged (use --allow-changes to replace them)"
        )
    merged = np.where(given, new, current)
    return LabelMerge(
        labels=merged,
        added=int((given & ~known).sum()),
        confirmed=int((given & known & (current == new)).sum()),
        changed=int(differs.sum()),
    )


class CleanLabelStore:
    """The versioned clean-label sets of one ingested dataset (see the module docstring)."""

    def __init__(self, cache_dir: str | os.PathLike[str], dataset_hash: str) -> None:
        if len(dataset_hash) < 16:
            raise ValueError(f"dataset_hash: expected a SHA-256 hex digest, got {dataset_hash!r}")
        self.root = Path(cache_dir) / "clean-labels" / dataset_hash[:16]
        self.manifest_path = self.root / "manifest.json"

    def versions(self) -> list[LabelVersion]:
        if not self.manifest_path.is_file():
            return []
        entries = json.loads(self.manifest_path.read_text())["versions"]
        return [LabelVersion(**{**e, "path": self.root / e["path"]}) for e in entries]

    def latest(self) -> LabelVersion | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def current(self, dataset_labels: np.ndarray) -> np.ndarray:
        """The newest merged set, or the dataset's own clean labels if none was merged yet."""
        latest = self.latest()
        return dataset_labels if latest is None else latest.load()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (a CLI `labels add` and a triggered flow may race)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def add_file(
        self, path: str | os.PathLike[str], dataset_labels: np.ndarray,
        *, allow_changes: bool = False,
    ) -> tuple[LabelVersion | None, LabelMerge]:
        """Validate `path` and merge it into the newest set.

        Returns `(version, merge)`; `version` is the new version, or the unchanged latest
        one (None if there is none) when the file added nothing.
        """
        new = read_new_labels(path, len(dataset_labels))
        with self._locked():
            current = self.current(dataset_labels)
            merge = merge_labels(current, new, path, allow_changes=allow_changes)
            if np.array_equal(merge.labels, current):
                return self.latest(), merge
            return self._append(merge, str(Path(path).resolve())), merge

    def _append(self, merge: LabelMerge, source: str) -> LabelVersion:
        versions = self.versions()
        number = versions[-1].version + 1 if versions else 1
        digest = sha256_array(merge.labels)
        name = f"v{number:04d}-{digest[:12]}.npy"
        with atomic_path(self.root / name) as tmp, open(tmp, "wb") as handle:
            np.save(handle, merge.labels, allow_pickle=False)
        version = LabelVersion(
            version=number, path=self.root / name, sha256=digest, num_clean=merge.num_clean,
            added=merge.added, changed=merge.changed, source=source,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        entries = [
            {**v.__dict__, "path": v.path.name} for v in [*versions, version]
        ]
        write_json_atomic(self.manifest_path, {"versions": entries})
        return version
