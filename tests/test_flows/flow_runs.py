"""Helpers of the flow tests: a smoke-profile config on a workspace, and the stage states
of flow runs as the Prefect API reports them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from relabel.config import PipelineConfig

RELABEL = str(Path(sys.executable).with_name("relabel"))


def make_config(workspace: dict[str, Path], out: str | None = "out",
                **overrides: Any) -> PipelineConfig:
    """`out`: an explicit output folder; None: each run its own folder in root/runs."""
    return PipelineConfig(data=str(workspace["data"]), cache_dir=workspace["cache"],
                          output_dir=workspace["root"] / out if out else None,
                          runs_dir=workspace["root"] / "runs", profile="smoke", **overrides)


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
