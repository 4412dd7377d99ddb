"""Progress in the Prefect UI: one progress artifact per piece of work, updated in place."""

from __future__ import annotations

import pytest

from relabel.flows.progress_artifacts import PrefectProgressArtifacts, artifact_key


def test_keys_are_what_prefect_accepts() -> None:
    assert artifact_key("Model II · epoch 3/6") == "model-ii-epoch-3-6"
    assert artifact_key("student 0 predicts") == "student-0-predicts"
    assert artifact_key("···") == "progress"


def test_outside_a_task_run_there_is_nothing_to_report_to() -> None:
    PrefectProgressArtifacts()("Model II", 0.5)  # no API, no task run: a no-op


@pytest.mark.slow
def test_a_task_gets_one_artifact_that_ends_at_the_last_report(prefect_api: str) -> None:
    from prefect import flow, get_client, task
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterTaskRunId
    from prefect.context import TaskRunContext

    sink = PrefectProgressArtifacts()

    @task
    def work() -> str:
        for fraction in (0.0, 0.25, 1.0):
            sink("Model II", fraction)
        return str(TaskRunContext.get().task_run.id)

    @flow
    def run() -> str:
        return work()

    task_run_id = run()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            task_run_id=ArtifactFilterTaskRunId(any_=[task_run_id])))
    assert len(artifacts) == 1
    assert artifacts[0].type == "progress" and float(artifacts[0].data) == 100.0
    assert artifacts[0].key == "model-ii"
