"""The Prefect flows on real Prefect: stage wrappers, the pipeline end to end, caching,
resuming a killed run, and the deployments on a real `prefect server` with a worker.

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
from browser import CHROMIUM, page_text_with, screenshot
from package_copy import ROOT

from relabel.config import PipelineConfig

RELABEL = str(Path(sys.executable).with_name("relabel"))
BEFORE_RETRAIN = {
    "Ingest dataset", "Resolve clean labels", "Split clean labels", "Explore label noise",
    "Extract colour features", "Train baseline", "Train Model I", "Train clean-model fold 0",
    "Train clean-model fold 1", "Combine clean-model folds", "Correct noisy labels",
    "Train student 0", "Train student 1", "Combine teacher and students",
    "Correct noisy labels again (teacher + students)",
}
FROM_RETRAIN = {"Retrain Model II", "Score Baseline", "Score Model I", "Score Model II",
                "Publish results"}
ALL_STAGES = BEFORE_RETRAIN | FROM_RETRAIN


@pytest.fixture(scope="module", autouse=True)
def no_tracking() -> Any:
    """These tests are about orchestration; MLflow in the flow has its own tests
    (test_tracking.py), and skipping it saves ~20 s per pipeline run here."""
    previous = os.environ.get("RELABEL_TRACKING")
    os.environ["RELABEL_TRACKING"] = "0"  # inherited by the subprocesses and the worker
    yield
    if previous is None:
        os.environ.pop("RELABEL_TRACKING", None)
    else:
        os.environ["RELABEL_TRACKING"] = previous


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from relabel.tasks.demodata import generate_demo_data

    root = tmp_path_factory.mktemp("flows")
    data = generate_demo_data(root / "data", num_train=600, num_clean=200, num_test=100)
    return {"root": root, "data": data, "cache": root / "cache"}


def make_config(workspace: dict[str, Path], out: str | None = "out",
                **overrides: Any) -> PipelineConfig:
    """`out`: an explicit output folder; None: each run its own folder in root/runs."""
    return PipelineConfig(data=str(workspace["data"]), cache_dir=workspace["cache"],
                          output_dir=workspace["root"] / out if out else None,
                          runs_dir=workspace["root"] / "runs", profile="smoke", **overrides)


def absolute_paths(value: Any) -> list[str]:
    """Every absolute path string in a JSON-like value."""
    if isinstance(value, dict):
        return [p for item in value.values() for p in absolute_paths(item)]
    if isinstance(value, list):
        return [p for item in value for p in absolute_paths(item)]
    return [value] if isinstance(value, str) and value.startswith("/") else []


def stage_states(*flow_run_ids: UUID, finished: bool = True,
                 expected: set[str] = frozenset()) -> dict[str, str]:
    """{stage name (run name without the "[profile hash]" suffix): state name}. With
    `finished` (the flow returned), wait until every task run's final state has arrived,
    and every `expected` stage is there."""
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
    from prefect.states import StateType

    # Task run states reach the API asynchronously: after the flow returned, wait (up to
    # 120 s on a busy machine) until none is pending or running, so a stage is never read
    # early.
    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(task_run_filter=TaskRunFilter(
                flow_run_id=TaskRunFilterFlowRunId(any_=list(flow_run_ids))))
            unsettled = finished and [r for r in runs if r.state is None or r.state.type in (
                StateType.PENDING, StateType.SCHEDULED, StateType.RUNNING)]
            unsettled = unsettled or not expected <= {r.name.split(" [")[0] for r in runs}
            if not unsettled or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    return {run.name.split(" [")[0]: run.state.name for run in runs}


# ------------------------------------------------------------------ stage wrappers (.fn)


def test_ingest_and_label_stages_pass_artifacts_by_reference(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    from relabel.fileio import sha256_file
    from relabel.flows.artifacts import load_array
    from relabel.flows.new_labels import merge_new_labels
    from relabel.flows.stages import ingest_dataset, resolve_clean_labels, split_clean_labels

    cache = tmp_path / "cache"
    data = ingest_dataset.fn(str(workspace["data"]), cache)
    assert data.summary["num_images"] == 600 and data.summary["num_test"] == 100
    for ref in (data.images, data.noisy_labels, data.clean_labels, data.test_images):
        assert Path(ref.path).is_file() and sha256_file(ref.path) == ref.sha256
    assert len(data.model_dump_json()) < 4000  # a reference, not the arrays
    assert resolve_clean_labels.fn(data, cache) == data.clean_labels

    # New labels for three images without one: a new version, which the pipeline then uses.
    noisy_only = np.flatnonzero(load_array(data.clean_labels) < 0)[:3]
    new = tmp_path / "new.csv"
    new.write_text("image_id,label\n" + "".join(f"{i + 1},4\n" for i in noisy_only))
    merged = merge_new_labels.fn(str(new), data, cache)
    assert merged["version"] == 1 and merged["added"] == 3 and merged["num_clean"] == 203
    current = resolve_clean_labels.fn(data, cache)
    assert current != data.clean_labels and np.all(load_array(current)[noisy_only] == 4)
    assert merge_new_labels.fn(str(new), data, cache)["version"] == 1  # idempotent

    split = split_clean_labels.fn(current, 0.2, 2, 0, 100, cache)
    train, val = load_array(split.train_idx), load_array(split.val_idx)
    assert len(train) + len(val) == 203 and not set(train) & set(val)
    noisy = load_array(split.noisy_idx)  # capped at 100, none with a clean label
    assert len(noisy) == 100 and np.all(load_array(current)[noisy] < 0)
    holdouts = np.sort(np.concatenate([load_array(h) for _, h in split.folds]))
    assert np.array_equal(holdouts, np.sort(train))


def test_make_task_runner_follows_the_config() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    from relabel.flows.runners import make_task_runner

    runner = make_task_runner(PipelineConfig(profile="smoke"))
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert type(make_task_runner(PipelineConfig(task_runner="dask"))).__name__ == "DaskTaskRunner"


@pytest.mark.slow
def test_watcher_announces_each_new_content_once(
    tmp_path: Path, prefect_api: str
) -> None:
    from relabel.flows.watch import CLEAN_LABELS_UPDATED, emit_labels_updated, watch_clean_labels

    config = PipelineConfig(cache_dir=tmp_path / "cache")
    labels = tmp_path / "inbox.csv"
    assert watch_clean_labels(str(labels), config) == []  # nothing there yet
    labels.write_text("image_id,label\n5,1\n")
    assert watch_clean_labels(str(labels), config) == [str(labels.resolve())]
    assert watch_clean_labels(str(labels), config) == []  # same content: no new event
    labels.write_text("image_id,label\n5,1\n6,2\n")
    assert watch_clean_labels(str(labels), config) == [str(labels.resolve())]

    event = emit_labels_updated(str(labels), config, "abc")
    assert event is not None and event.event == CLEAN_LABELS_UPDATED
    assert event.resource.id.startswith("relabel.clean-labels.")
    assert PipelineConfig.model_validate(event.payload["config"]) == config


@pytest.mark.slow
def test_watcher_and_retrain_read_labels_from_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str
) -> None:
    """An S3 prefix of label CSVs on a real S3-compatible store (SeaweedFS on 127.0.0.1):
    each new or rewritten CSV is announced once; the retrain flow downloads the object."""
    from live_servers import SeaweedFS

    from relabel.flows.new_labels import local_labels_file
    from relabel.flows.watch import watch_clean_labels
    from relabel.storage import StorageError

    with SeaweedFS(tmp_path / "weed", tmp_path / "weed.log") as server:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        client = server.client()
        client.create_bucket(Bucket="labels")
        client.put_object(Bucket="labels", Key="inbox/batch1.csv", Body=b"image_id,label\n5,1\n")
        client.put_object(Bucket="labels", Key="inbox/notes.txt", Body=b"not labels")
        config = PipelineConfig(cache_dir=tmp_path / "cache")
        source = "s3://labels/inbox/"
        assert watch_clean_labels(source, config) == ["s3://labels/inbox/batch1.csv"]
        assert watch_clean_labels(source, config) == []
        client.put_object(Bucket="labels", Key="inbox/batch2.csv", Body=b"image_id,label\n6,2\n")
        client.put_object(Bucket="labels", Key="inbox/batch1.csv", Body=b"image_id,label\n5,3\n")
        assert watch_clean_labels(source, config) == [
            "s3://labels/inbox/batch1.csv", "s3://labels/inbox/batch2.csv"]

        local = local_labels_file("s3://labels/inbox/batch1.csv", config.cache_dir)
        assert local.name == "batch1.csv" and local.read_text() == "image_id,label\n5,3\n"
        with pytest.raises(StorageError, match="labels/inbox/missing.csv"):
            local_labels_file("s3://labels/inbox/missing.csv", config.cache_dir)


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
    # The UI shows each training's and inference's progress as a progress artifact.
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[first.state_details.flow_run_id])))
    progress = {a.key: a.data for a in artifacts if a.type == "progress"}
    for key in ("model-i", "clean-model-fold-0", "clean-model-fold-1", "student-0",
                "student-1", "model-ii", "decoding-training-images"):
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


def _new_labels_file(workspace: dict[str, Path], path: Path, count: int = 40) -> Path:
    """True labels (demo data's true_labels.csv) of `count` images without a clean label."""
    true = np.loadtxt(workspace["data"] / "true_labels.csv", dtype=np.int64, delimiter=",",
                      skiprows=1, usecols=-1, ndmin=1)
    ids = np.arange(201, 201 + count)  # demo data: images 1..200 have clean labels
    path.write_text("image_id,label\n" + "".join(f"{i},{true[i - 1]}\n" for i in ids))
    return path


def _wait_for_deployment_run(client: Any, deployment_id: UUID, timeout: float) -> Any:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])))
        finished = [r for r in runs if r.state and r.state.is_final()]
        if finished:
            return finished[0]
        time.sleep(1)
    raise AssertionError(f"no run of deployment {deployment_id} finished within {timeout} s")


def _check_prefect_ui(port: int, run: Any, pools: list[str], tmp_path: Path) -> None:
    """What a user must see in the UI served on a non-default port."""
    import urllib.request

    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    from relabel import prefect_server as stack

    ui = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{ui}/ui-settings", timeout=10) as response:
        assert json.loads(response.read())["api_url"] == f"{ui}/api"  # not :4200
    if not CHROMIUM.is_file():
        return
    text = page_text_with(tmp_path, f"{ui}/deployments", "At 03:00 AM every day")
    assert "Can't connect" not in text, text[:2000]
    expected = ["train", "watch-clean-labels", "retrain-on-new-labels"]
    expected += ["train-gpu"] if stack.GPU_POOL in pools else []
    assert f"{len(expected)} Deployments" in text, text[:2000]
    for name in expected:
        assert f" {name} " in text, (name, text[:2000])
    # prefect.yaml's schedules: train nightly (declared off), the watcher every 5 minutes.
    assert "At 03:00 AM every day" in text and "Every 5 minutes" in text, text[:2000]
    screenshot(tmp_path, f"{ui}/deployments", "prefect-ui-deployments")

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            flow_run_id=TaskRunFilterFlowRunId(any_=[run.id])))
    page = f"{ui}/runs/flow-run/{run.id}"
    text = page_text_with(tmp_path, page, run.name, f"{len(task_runs)} Task runs")
    assert run.name in text and "Completed" in text, text[:2000]
    assert f"{len(task_runs)} Task runs" in text, (len(task_runs), text[:2000])
    screenshot(tmp_path, page, "prefect-ui-flow-run")


@pytest.mark.slow
def test_deployments_train_and_retrain_on_new_labels_event(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    """A real `prefect server` on a free loopback port: pools, `prefect deploy --all`, a
    worker; run `train` the way the UI's Run button does; its UI in headless Chromium shows
    the deployments and the completed run; `relabel labels add` -> event ->
    `retrain-on-new-labels` runs."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from relabel import prefect_server as stack
    from relabel.fileio import sha256_file
    from relabel.tasks.labels import CleanLabelStore

    port = stack.free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = stack.stack_env(api_url, PREFECT_HOME=str(tmp_path / "prefect-home"),
                          PREFECT_WORKER_QUERY_SECONDS="2")
    server = worker = None
    try:
        server = stack.start_server(port, env, log_file=tmp_path / "server.log", ui=True)
        stack.wait_for_api(api_url, timeout=120, process=server)
        pools = stack.ensure_pools(env)
        assert stack.LOCAL_POOL in pools
        stack.deploy_all(env, pools)
        worker = stack.start_worker(env, log_file=tmp_path / "worker.log")

        config = make_config(workspace, out="deployed").model_dump(mode="json")
        with temporary_settings({PREFECT_API_URL: api_url}):
            # POST /deployments/{id}/create_flow_run: the call behind the UI's Run button.
            run = run_deployment("relabel-pipeline/train", parameters={"config": config},
                                 timeout=300, poll_interval=1)
            assert run.state.is_completed(), (run.state, (tmp_path / "worker.log").read_text())
            assert (workspace["root"] / "deployed" / "label_prediction.csv").is_file()
            _check_prefect_ui(port, run, pools, tmp_path)

            labels = _new_labels_file(workspace, tmp_path / "new_labels.csv")
            retrain_out = workspace["root"] / "retrained"
            added = subprocess.run(
                [RELABEL, "labels", "add", str(labels), "--data", str(workspace["data"]),
                 "--cache-dir", str(workspace["cache"]), "--output-dir", str(retrain_out),
                 "--models", "model2", "--profile", "smoke"],
                env=env, capture_output=True, text=True, timeout=120,
            )
            assert added.returncode == 0, added.stderr
            assert json.loads(added.stdout[: added.stdout.rindex("}") + 1])["added"] == 40
            assert "event relabel.clean-labels.updated sent" in added.stdout

            with get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name(
                    "retrain-on-new-labels/retrain-on-new-labels")
                retrain = _wait_for_deployment_run(client, deployment.id, timeout=300)
                assert retrain.state.is_completed(), (
                    retrain.state, (tmp_path / "worker.log").read_text()[-5000:])
                assert retrain.parameters["labels_file"] == str(labels.resolve())
                children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[retrain.id])))
            states = stage_states(retrain.id, *(c.id for c in children))
        # Ingestion and features come from the cache; everything on the clean labels reruns.
        assert states["Ingest dataset"] == states["Extract colour features"] == "Cached"
        for stage in ("Split clean labels", "Train clean-model fold 0", "Retrain Model II"):
            assert states[stage] == "Completed", states
        # The event's config: --models model2 (Model I trains only as the folds' start).
        assert "Train baseline" not in states and "Score Model I" not in states
        assert (retrain_out / "label_prediction.csv").read_text().startswith("Model II\n")
        metrics = json.loads((retrain_out / "metrics.json").read_text())
        store = CleanLabelStore(workspace["cache"], metrics["data_hash"])
        assert store.latest().num_clean == 240
        assert metrics["clean_labels_sha256"] == sha256_file(store.latest().path)
        assert metrics["counts"]["clean_train"] + metrics["counts"]["validation"] == 240
    finally:
        stack.stop_process(worker)
        stack.stop_process(server)
