"""Wall time per pipeline stage, read from the running flow's Prefect task runs.

Task runs are matched to stages by their task key (the task function's identity,
`Task.task_key`), never by display names, so renaming a task run changes nothing here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)


def stage_seconds(stage_of_task: Mapping[str, str]) -> dict[str, float]:
    """Wall seconds per stage of the running flow run, summed over its finished task runs;
    `stage_of_task` maps a task key to its stage. A task served from the cache counts ~0 s.
    Empty outside a flow run or when the API cannot say: timing is never fatal."""
    try:
        from prefect import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.runtime import flow_run

        if not flow_run.id:
            return {}
        with get_client(sync_client=True) as client:
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    except Exception as exc:  # noqa: BLE001 - timing is nice to have, never fatal
        log.debug("no Prefect task timings: %s", exc)
        return {}
    seconds: dict[str, float] = {}
    for task_run in task_runs:
        stage = stage_of_task.get(task_run.task_key)
        if stage is None or task_run.end_time is None:
            continue  # another flow's task, or not finished
        took = (0.0 if task_run.start_time is None  # served from the cache, never ran
                else (task_run.end_time - task_run.start_time).total_seconds())
        seconds[stage] = seconds.get(stage, 0.0) + took
    return seconds
