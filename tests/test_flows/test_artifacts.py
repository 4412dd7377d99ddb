"""New clean labels: validation, merging into versioned sets, and artifact references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from relabel.flows.artifacts import Artifact, ArtifactMissingError, load_array, save_array


def test_artifacts_are_content_addressed(tmp_path: Path) -> None:
    a = save_array(tmp_path, "things", np.arange(10))
    b = save_array(tmp_path, "things", np.arange(10))
    c = save_array(tmp_path, "things", np.arange(11))
    assert a == b and a.sha256 != c.sha256
    assert Path(a.path).name == f"{a.sha256[:16]}.npy"
    assert np.array_equal(load_array(a), np.arange(10))
    assert not list(Path(a.path).parent.glob(".tmp-*"))  # no temp files left behind
    Path(c.path).unlink()
    with pytest.raises(ArtifactMissingError, match="--refresh-cache"):
        load_array(c)
    with pytest.raises(TypeError, match="object arrays"):
        save_array(tmp_path, "things", np.array([object()]))
    assert Artifact.model_validate_json(a.model_dump_json()) == a
