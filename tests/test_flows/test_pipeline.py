"""The pipeline flow on real Prefect: end to end, reruns from the cache, which stages a
changed profile field or an edited task module recomputes, and resuming a killed run.

Tiny demo data (600 training images, 200 clean, 100 test) and the smoke profile keep the
whole module to a few minutes on 2 cores. The module shares one cache dir, so later tests
reuse what earlier ones computed, as a user's reruns would; each test still stands alone.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from flow_runs import RELABEL, make_config, stage_states
from package_copy import ROOT

from relabel.config import PipelineConfig

BEFORE_RETRAIN = {
    "Ingest dataset", "Resolve clean labels", "Split clean labels", "Explore label noise",
    "Extract colour features", "Train baseline", "Train Model I", "Train clean-model fold 0",
    "Train clean-model fold 1", "Combine clean-model folds", "Correct noisy labels",
    "Train student 0", "Train student 1", "Combine teacher and students",
    "Correct noisy labels again (teacher + students)",
    # the smoke profile's second self-training round
    "Train student 0 round 2", "Train student 1 round 2", "Combine teacher and students round 2",
    "Correct noisy labels again (teacher + students) round 2",
}
FROM_RETRAIN = {"Retrain Model II", "Score Baseline", "Score Model I", "Score Model II",
                "Publish results"}
ALL_STAGES = BEFORE_RETRAIN | FROM_RETRAIN








def absolute_paths(value: Any) -> list[str]:
    """Every absolute path string in a JSON-like value."""
    if isinstance(value, dict):
        return [p for item in value.values() for p in absolute_paths(item)]
    if isinstance(value, list):
        return [p for item in value for p in absolute_paths(item)]
    return [value] if isinstance(value, str) and value.startswith("/") else []




# ------------------------------------------------------------------ stage wrappers (.fn)


# ----------------------------------------------------------------- the pipeline flow


@pytest.mark.slow
def test_pipeline_completes_then_reruns_from_cache(
    workspace: dict[str, Path], prefect_api: str
) -> None:
    from relabel.flows.pipeline import pipeline

    config = make_config(workspace)
    first = pipeline(config=config, return_state=True)
    assert first.is_completed(), first.message
    summary = first.result()
    assert set(stage_states(first.state_details.flow_run_id, expected=ALL_STAGES)) == ALL_STAGES

    rows = list(csv.reader((config.output_dir / "label_prediction.csv").open()))
    assert rows[0] == ["Baseline", "Model I", "Model II"] and len(rows) == 101
    assert all(0 <= int(v) <= 9 for row in rows[1:] for v in row)
    metrics = json.loads((config.output_dir / "metrics.json").read_text())
    assert metrics["data_hash"] == summary.data_hash and metrics["dataset_dir"]
    assert set(metrics["scores"]) == {"Baseline", "Model I", "Model II"}
    assert np.load(config.output_dir / "clean_proba.npy").shape == (600, 10)
    assert summary.run_name == f"smoke-{summary.data_hash[:12]}"
    assert summary.models["Model II"].history["loss"]  # per-epoch curves for trackers
    # Two self-training rounds: round 2 continues each half's round-1 student for
    # refine_epochs; each round's correction is reported, the last is what Model II learns.
    assert [(s.round_number, s.half) for s in summary.students] == [(1, 0), (1, 1), (2, 0),
                                                                      (2, 1)]
    assert {s.model.metrics["epochs"] for s in summary.students[2:]} == {1.0}
    assert len(metrics["round_corrections"]) == 2
    last_round = metrics["round_corrections"][-1]
    assert metrics["correction"]["metrics"].items() <= last_round.items()
    # smoke counts neighbour votes: each round reports their fitted parameters
    assert 0 < last_round["neighbour_votes_same_class_share"] < 1
    assert all(s.neighbour_idx is not None for s in summary.students)
    # The UI shows each training's and inference's progress as a progress artifact.
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[first.state_details.flow_run_id])))
    progress = {a.key: a.data for a in artifacts if a.type == "progress"}
    for key in ("model-i", "clean-model-fold-0", "clean-model-fold-1", "student-0",
                "student-1", "student-0-round-2", "student-1-round-2", "model-ii",
                "decoding-training-images"):
        assert progress.get(key) == 100, (key, progress)
    table = summary.results_table().splitlines()  # what `relabel run` ends with
    assert table[0].split()[:2] == ["model", "validation"] and "test folder" in table[0]
    accuracy = summary.scores["Model II"].validation["accuracy"]
    assert table[3].startswith("Model II") and f"{100 * accuracy:.1f}% ± " in table[3]

    assert not absolute_paths(metrics), absolute_paths(metrics)  # relative to the project
    assert sorted(p.name for p in config.output_dir.iterdir()) == sorted(summary.outputs)

    # The default: each run its own folder under runs/, runs/latest the newest.
    second = pipeline(config=make_config(workspace, out=None), return_state=True)
    assert second.is_completed(), second.message
    states = stage_states(second.state_details.flow_run_id, expected=ALL_STAGES)
    cached = {n for n, s in states.items() if s == "Cached"}
    assert cached == ALL_STAGES - {"Publish results"}, states
    assert states["Publish results"] == "Completed"  # outputs are always re-written
    assert second.result().headline() == summary.headline()
    runs = workspace["root"] / "runs"
    second_dir = Path(second.result().run_dir)
    assert second_dir.parent == runs and second_dir.name.endswith(summary.run_name)

    # Another model set changes nothing upstream, and never touches the other run's folder.
    third = pipeline(config=make_config(workspace, out=None, models=["baseline"]),
                     return_state=True)
    states = stage_states(third.state_details.flow_run_id,
                          expected={"Train baseline", "Score Baseline", "Publish results"})
    assert states["Train baseline"] == "Cached" and "Train Model I" not in states
    third_dir = Path(third.result().run_dir)
    assert third_dir != second_dir and (runs / "latest").resolve() == third_dir.resolve()
    assert (third_dir / "label_prediction.csv").read_text().startswith("Baseline\n")
    assert (second_dir / "label_prediction.csv").read_text().startswith(
        "Baseline,Model I,Model II\n")
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]  # no staging left


AFTER_CORRECTION = {
    "Correct noisy labels", "Train student 0", "Train student 1",
    "Combine teacher and students", "Correct noisy labels again (teacher + students)",
    "Train student 0 round 2", "Train student 1 round 2", "Combine teacher and students round 2",
    "Correct noisy labels again (teacher + students) round 2",
    "Retrain Model II", "Score Model II", "Publish results",
}


@pytest.mark.slow
def test_a_changed_profile_field_reruns_only_the_stages_that_read_it(
    workspace: dict[str, Path], prefect_api: str
) -> None:
    from relabel.flows.pipeline import pipeline

    pipeline(config=make_config(workspace))  # served from the cache when run after the others
    longer = pipeline(config=make_config(workspace, out="longer-retrain",
                                         overrides={"retrain_epochs": 3}), return_state=True)
    assert longer.is_completed(), longer.message
    states = stage_states(longer.state_details.flow_run_id)
    recomputed = {n for n, s in states.items() if s == "Completed"}
    assert recomputed == {"Retrain Model II", "Score Model II", "Publish results"}, states
    assert {n for n, s in states.items() if s == "Cached"} == ALL_STAGES - recomputed
    assert longer.result().models["Model II"].metrics["epochs"] == 3


_RUN_IN_COPY = """
import json, sys
# The copy, not the editable install: drop the install's import hook before importing.
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
from relabel.config import PipelineConfig
from relabel.flows.pipeline import pipeline
import relabel.tasks.correct
state = pipeline(config=PipelineConfig.model_validate_json(sys.argv[1]), return_state=True)
print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id),
                  "completed": state.is_completed(),
                  "correct_py": relabel.tasks.correct.__file__}))
"""


@pytest.mark.slow
def test_editing_a_task_module_recomputes_its_stage_and_what_follows_only(
    workspace: dict[str, Path], prefect_api: str, tmp_path: Path
) -> None:
    """A copy of the package (the installed layout: relabel/, relabel/tasks, relabel/flows)
    runs the pipeline twice on one cache; between the runs, tasks/correct.py changes."""
    import shutil

    root = ROOT
    src = tmp_path / "src"
    junk = shutil.ignore_patterns("__pycache__")
    shutil.copytree(root / "relabel", src / "relabel", ignore=junk)
    shutil.copytree(root / "tasks", src / "relabel" / "tasks", ignore=junk)
    shutil.copytree(root / "flows", src / "relabel" / "flows", ignore=junk)
    config = PipelineConfig(data=str(workspace["data"]), cache_dir=tmp_path / "cache",
                            output_dir=tmp_path / "edited", profile="smoke", seed=3)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": str(src)}

    def run() -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-c", _RUN_IN_COPY, config.model_dump_json()],
                              capture_output=True, text=True, env=env, timeout=600,
                              cwd=tmp_path)  # not the checkout: `python -c` imports from cwd
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["completed"] and report["correct_py"].startswith(str(src))
        return stage_states(UUID(report["flow_run_id"]))

    assert set(run().values()) == {"Completed"}
    correct_py = src / "relabel" / "tasks" / "correct.py"
    source = correct_py.read_text()
    edited = source.replace("np.log(20.0)", "np.log(19.0)")  # a real change of results
    assert edited != source
    correct_py.write_text(edited)
    states = run()
    assert {n for n, s in states.items() if s == "Completed"} == AFTER_CORRECTION, states
    assert {n for n, s in states.items() if s == "Cached"} == ALL_STAGES - AFTER_CORRECTION


def _wait_for_running_task(name: str, since: dt.datetime, process: subprocess.Popen,
                           timeout: float = 300) -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterStartTime,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    task_filter = TaskRunFilter(
        name=TaskRunFilterName(like_=name),
        state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING])),
        start_time=TaskRunFilterStartTime(after_=since),
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before reaching the stage"
            runs = client.read_task_runs(task_run_filter=task_filter)
            if runs:
                return runs[0]
            time.sleep(0.1)
    raise AssertionError(f"no task run {name!r} started within {timeout} s")


@pytest.mark.slow
def test_killed_run_resumes_at_the_interrupted_stage(
    workspace: dict[str, Path], prefect_api: str, tmp_path: Path
) -> None:
    """Kill `relabel run` (SIGKILL, like an OOM kill) while it retrains Model II; the rerun
    takes every earlier stage from the cache and re-executes from the retrain on."""
    from relabel.fileio import sha256_file
    from relabel.flows.artifacts import Artifact
    from relabel.flows.pipeline import pipeline

    config = make_config(workspace, out="resumed", seed=1)  # seed 1: nothing cached past ingest
    since = dt.datetime.now(dt.UTC)
    log = (tmp_path / "killed-run.log").open("wb")
    process = subprocess.Popen(
        [RELABEL, "run", "--data", str(config.data), "--cache-dir", str(config.cache_dir),
         "--output-dir", str(config.output_dir), "--seed", "1", "--profile", "smoke"],
        env={**os.environ, "PREFECT_API_URL": prefect_api}, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        retrain = _wait_for_running_task("Retrain Model II", since, process)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()
    killed = stage_states(retrain.flow_run_id, finished=False)
    assert killed["Retrain Model II"] == "Running", killed  # killed mid-stage, never finished
    assert "Score Model II" not in killed and not (config.output_dir / "metrics.json").exists()
    # Atomic writes: every artifact left behind is complete (its name is its content hash).
    for path in (config.cache_dir / "artifacts").glob("*/*"):
        if not path.name.startswith("."):
            assert sha256_file(path).startswith(path.stem), path

    rerun = pipeline(config=config, return_state=True)
    assert rerun.is_completed(), rerun.message
    states = stage_states(rerun.state_details.flow_run_id)
    assert {n for n, s in states.items() if s == "Cached"} == BEFORE_RETRAIN
    assert {n for n, s in states.items() if s == "Completed"} == FROM_RETRAIN
    model2 = rerun.result().models["Model II"].model
    assert isinstance(model2, Artifact) and Path(model2.path).is_file()


# ------------------------------------------------- deployments on a real Prefect server
