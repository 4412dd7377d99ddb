"""New clean labels: validation, merging into versioned sets, and artifact references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from relabel.fileio import sha256_file
from relabel.flows.artifacts import (
    Artifact,
    ArtifactMissingError,
    artifacts_in,
    load_array,
    save_array,
)
from relabel.flows.records import SplitRef


def test_artifacts_are_content_addressed(tmp_path: Path) -> None:
    a = save_array(tmp_path, "things", np.arange(10))
    b = save_array(tmp_path, "things", np.arange(10))
    c = save_array(tmp_path, "things", np.arange(11))
    assert a == b and a.sha256 != c.sha256
    assert Path(a.path).name == f"{a.sha256[:16]}.npy"
    assert np.array_equal(load_array(a), np.arange(10))
    assert not list(Path(a.path).parent.glob(".tmp-*"))  # no temp files left behind
    Path(c.path).unlink()
    with pytest.raises(ArtifactMissingError, match="deleted while this run was using it"):
        load_array(c)
    with pytest.raises(TypeError, match="object arrays"):
        save_array(tmp_path, "things", np.array([object()]))
    assert Artifact.model_validate_json(a.model_dump_json()) == a


def test_fault_names_a_missing_or_changed_file(tmp_path: Path) -> None:
    a = save_array(tmp_path, "things", np.arange(1000))
    path = Path(a.path)
    assert a.fault() is None
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # same size, one bit: only the hash notices
    path.write_bytes(bytes(data))
    changed = sha256_file(path)[:12]
    assert a.fault() == f"{path} has changed (sha256 {changed}, recorded {a.short})"
    path.unlink()
    assert a.fault() == f"{path} is missing"


def test_artifacts_in_finds_every_artifact_of_a_record(tmp_path: Path) -> None:
    idx = [save_array(tmp_path, "split", np.arange(n)) for n in range(6)]
    split = SplitRef(train_idx=idx[0], val_idx=idx[1], noisy_idx=idx[2],
                     folds=[(idx[3], idx[4]), (idx[4], idx[5])], counts={"clean_train": 0})
    assert list(artifacts_in(split)) == [*idx[:5], idx[4], idx[5]]
    assert list(artifacts_in({"a": [split.val_idx], "b": None, "c": 3})) == [idx[1]]
