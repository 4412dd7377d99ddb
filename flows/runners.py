"""Task runners: where the clean model's parallel fold tasks run.

`PipelineConfig.task_runner` picks one: `threads` (default; one process, a thread per fold:
TensorFlow releases the GIL in its kernels), `dask` (a local Dask cluster, or the scheduler
at `PipelineConfig.dask_address`), `ray` (needs the `ray` extra). Add a backend by adding a
branch here; the flows only ever call `make_task_runner(config)`.
"""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from relabel.config import PipelineConfig


def make_task_runner(config: PipelineConfig) -> TaskRunner:
    """A fresh (not yet started) task runner for `config.task_runner`."""
    if config.task_runner == "threads":
        # One thread per fold: more would only queue, fewer would serialise the folds.
        return ThreadPoolTaskRunner(max_workers=config.train.folds)
    if config.task_runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:
            raise RuntimeError(
                "task_runner 'dask' needs prefect-dask: pip install 'relabel[dask]'"
            ) from exc
        if config.dask_address:
            return DaskTaskRunner(address=config.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": config.train.folds,
                                              "threads_per_worker": 1, "processes": True})
    if config.task_runner == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as exc:
            raise RuntimeError(
                "task_runner 'ray' needs prefect-ray: pip install 'relabel[ray]'"
            ) from exc
        return RayTaskRunner()
    raise ValueError(f"task_runner: unknown backend {config.task_runner!r}")
