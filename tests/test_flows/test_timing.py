"""Wall time per stage, read from Prefect's task runs by task key."""

from __future__ import annotations

import time

import pytest

from relabel.flows.timing import stage_seconds


def test_outside_a_flow_run_there_are_no_timings() -> None:
    assert stage_seconds({"anything": "model2"}) == {}


@pytest.mark.slow
def test_stages_sum_their_task_runs_and_ignore_other_tasks(prefect_api: str) -> None:
    from prefect import flow, task

    @task
    def slow_part(seconds: float) -> None:
        time.sleep(seconds)

    @task
    def untracked() -> None:
        time.sleep(0.2)

    @flow
    def run() -> dict[str, float]:
        slow_part(0.3)
        slow_part(0.2)
        untracked()
        return stage_seconds({slow_part.task_key: "model2"})

    seconds = run()
    assert set(seconds) == {"model2"}
    assert 0.5 <= seconds["model2"] < 5
