"""Atomic writes leave either the old file or the new one, never a half; content hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from relabel.fileio import (
    atomic_directory,
    atomic_path,
    sha256_array,
    sha256_file,
    sha256_text,
    write_json_atomic,
    write_text_atomic,
)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "sub" / "result.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.txt"]
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent  # same file system: the rename is atomic
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_json_is_sorted_and_ends_with_a_newline(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    text = path.read_text()
    assert text.endswith("\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": [1, 2], "b": 1}


def test_a_directory_lands_whole_or_not_at_all(tmp_path: Path) -> None:
    destination = tmp_path / "dataset"
    with pytest.raises(RuntimeError), atomic_directory(destination) as tmp:
        (tmp / "part").write_text("1")
        raise RuntimeError("crash")
    assert not destination.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(destination) as tmp:
        (tmp / "part").write_text("first")
    # Content-addressed folders are immutable: a second writer's copy is discarded.
    with atomic_directory(destination) as tmp:
        (tmp / "part").write_text("second")
    assert (destination / "part").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]


def test_hashes_are_sha256_of_the_content(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3000)
    assert sha256_file(path, chunk_size=1000) == hashlib.sha256(b"x" * 3000).hexdigest()
    assert sha256_text("abc") == hashlib.sha256(b"abc").hexdigest()


def test_array_hashes_see_dtype_shape_and_values_not_memory_layout() -> None:
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert sha256_array(a) == sha256_array(np.asfortranarray(a))
    assert sha256_array(a) != sha256_array(a.astype(np.int32))
    assert sha256_array(a) != sha256_array(a.reshape(4, 3))
    b = a.copy()
    b[2, 3] += 1
    assert sha256_array(a) != sha256_array(b)
