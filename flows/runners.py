"""Task runners: where the clean model's parallel fold tasks run.

`PipelineConfig.task_runner` picks one: `threads` (default; one process, the folds in
turn: TensorFlow cannot run two trainings at once in one process, see
tasks.train.TENSORFLOW_LOCK, and on a 2-core machine a fold already uses every core),
`dask` (a local Dask cluster, or the scheduler at `PipelineConfig.dask_address`), `ray`
(needs the `ray` extra). Add a backend by adding a branch here; the flows only ever call
`make_task_runner(config)`.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from relabel.config import PipelineConfig


def local_dask_cluster_kwargs(workers: int) -> dict[str, Any]:
    """`distributed.LocalCluster` settings for `workers` fold processes on this machine.

    Scheduler and workers listen on 127.0.0.1 only and there is no dashboard: a local
    cluster serves this one run. One task at a time per worker process, and TensorFlow's
    kernel thread pool sized to the worker's share of the cores (TF_NUM_INTRAOP_THREADS), so
    that k processes do not each start a pool as large as the whole machine.
    """
    cores = os.cpu_count() or 1
    return {
        "n_workers": workers, "threads_per_worker": 1, "processes": True,
        "host": "127.0.0.1", "dashboard_address": None,
        "env": {"TF_NUM_INTRAOP_THREADS": str(max(1, cores // workers))},
    }


def current_api_url() -> str | None:
    """The Prefect API this flow reports to, also when it is `relabel run`'s temporary
    one (None outside a flow without PREFECT_API_URL). Local Dask workers get it: without it
    each worker process would start a temporary server of its own, and the folds' task
    runs would be missing from the flow's API."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return os.environ.get("PREFECT_API_URL")
    with get_client(sync_client=True) as client:
        return str(client.api_url).rstrip("/")


def make_task_runner(config: PipelineConfig) -> TaskRunner:
    """A fresh (not yet started) task runner for `config.task_runner`."""
    if config.task_runner == "threads":
        # One fold at a time: concurrent TensorFlow trainings in one process crash.
        return ThreadPoolTaskRunner(max_workers=1)
    if config.task_runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise RuntimeError(
                "task_runner 'dask' needs prefect-dask: pip install 'relabel[dask]'"
            ) from exc
        if config.dask_address:
            return DaskTaskRunner(address=config.dask_address)
        kwargs = local_dask_cluster_kwargs(config.train.folds)
        if api_url := current_api_url():
            kwargs["env"]["PREFECT_API_URL"] = api_url
        return DaskTaskRunner(cluster_kwargs=kwargs)
    if config.task_runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as exc:
            raise RuntimeError(
                "task_runner 'ray' needs prefect-ray: pip install 'relabel[ray]'"
            ) from exc
        # ray.init() joins the cluster named by RAY_ADDRESS when it is set (Ray's own
        # convention), else starts a local one (its dashboard listens on 127.0.0.1 only).
        return RayTaskRunner()
    raise ValueError(f"task_runner: unknown backend {config.task_runner!r}")
