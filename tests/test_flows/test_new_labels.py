"""The deployments on a real `prefect server` with a worker: `train` runs from the API, and
new clean labels trigger `retrain-on-new-labels` (and the UI shows it)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from browser import CHROMIUM, page_text_with, screenshot
from flow_runs import RELABEL, make_config, stage_states


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
