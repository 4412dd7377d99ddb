"""kill -9 at the worst moment of each kind of write, then a rerun: the results equal those of
a run that was never interrupted.

Every durable write in relabel goes to a temporary file that is then renamed into place
(relabel/fileio.py, flows/artifacts.py, tasks/train.save_model). The worst moment to die is
therefore just before that rename: the temporary file is complete, the destination not yet
there. The child process below replaces `os.replace`/`os.rename` with a version that sends
itself SIGKILL when the destination matches a pattern, so each test dies exactly there, for
one kind of file: the ingested dataset folder, a cache array, a model, label_prediction.csv
and metrics.json.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from relabel.tasks.demodata import generate_demo_data

pytestmark = pytest.mark.slow

_KILL_AT_RENAME = """
import fnmatch, os, signal, sys
pattern = sys.argv[1]
for name in ("replace", "rename"):
    original = getattr(os, name)
    def dying(src, dst, *args, _original=original, **kwargs):
        if fnmatch.fnmatch(os.fspath(dst), pattern):
            os.kill(os.getpid(), signal.SIGKILL)
        return _original(src, dst, *args, **kwargs)
    setattr(os, name, dying)
sys.argv = ["relabel", *sys.argv[2:]]
from relabel.cli import run_cli
run_cli()
"""


def _relabel(args: list[str], env: dict[str, str], kill_at: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    if kill_at is None:
        command = [str(Path(sys.executable).with_name("relabel")), *args]
    else:
        command = [sys.executable, "-c", _KILL_AT_RENAME, kill_at, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demo_data(tmp_path_factory.mktemp("crash") / "data", num_train=400,
                              num_clean=150, num_test=50)


def _no_temporaries_in_place(cache: Path) -> None:
    """Whatever a killed run left: every content-addressed artifact is complete."""
    from relabel.fileio import sha256_file

    for path in (cache / "artifacts").glob("*/*"):
        if not path.name.startswith("."):
            assert sha256_file(path).startswith(path.stem), path


def test_ingest_killed_before_the_dataset_folder_lands(data: Path, tmp_path: Path) -> None:
    from relabel.tasks.ingest import ingest

    env = dict(os.environ)  # ingest starts no server

    reference = ingest(data, tmp_path / "reference").load(mmap=False)
    cache = tmp_path / "cache"
    killed = _relabel(["ingest", str(data), "--cache-dir", str(cache)], env,
                      kill_at=f"{cache}/datasets/*")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    index = cache / "index"
    assert not index.exists() or not any(index.iterdir())  # no entry for a missing folder
    again = _relabel(["ingest", str(data), "--cache-dir", str(cache)], env)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = ingest(data, cache).load(mmap=False)
    assert resumed.content_hash == reference.content_hash
    for name in ("images", "noisy_labels", "clean_labels", "test_images"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(reference, name))


def test_pipeline_killed_at_each_kind_of_write_resumes_to_identical_results(
        data: Path, tmp_path: Path, prefect_api: str) -> None:
    """`relabel run` killed just before a model, a cache array, label_prediction.csv and
    metrics.json land, one kill after another on one cache (each rerun resumes from what
    the last one left); the run after the last kill publishes exactly what a
    never-interrupted run publishes. (The run folder's own rename: test_run_folders.)"""
    import json

    env = {**os.environ, "PREFECT_API_URL": prefect_api, "RELABEL_TRACKING": "0"}

    def run_args(cache: Path, out: Path) -> list[str]:
        return ["run", "--data", str(data), "--cache-dir", str(cache), "--output-dir",
                str(out), "--overwrite", "--profile", "smoke", "--models", "model1,model2"]

    reference = _relabel(run_args(tmp_path / "reference-cache", tmp_path / "reference"), env)
    assert reference.returncode == 0, reference.stderr[-3000:]

    cache, out = tmp_path / "cache", tmp_path / "out"
    for kind, pattern in (
        ("model", f"{cache.resolve()}/artifacts/models/[0-9a-f]*.keras"),
        ("array", f"{cache.resolve()}/artifacts/correction/[0-9a-f]*.npy"),
        ("csv", "*/label_prediction.csv"),
        ("metrics", "*/metrics.json"),
    ):
        killed = _relabel(run_args(cache, out), env, kill_at=pattern)
        assert killed.returncode == -signal.SIGKILL, (kind, killed.stderr[-3000:])
        _no_temporaries_in_place(cache)
        assert not out.exists(), kind  # nothing half-published
    final = _relabel(run_args(cache, out), env)
    assert final.returncode == 0, final.stderr[-3000:]

    resumed, reference = (np.loadtxt(folder / "label_prediction.csv", delimiter=",",
                                     skiprows=1, dtype=np.int64)
                          for folder in (out, tmp_path / "reference"))
    scores, expected = ({name: score["validation"]["accuracy"] for name, score in
                         json.loads((folder / "metrics.json").read_text())["scores"].items()}
                        for folder in (out, tmp_path / "reference"))
    # Every model, hence every prediction and score, is bit-identical to the reference:
    # training is seeded and deterministic, and a resumed stage starts from the same inputs.
    np.testing.assert_array_equal(resumed, reference)
    assert scores == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (tmp_path / "reference").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
