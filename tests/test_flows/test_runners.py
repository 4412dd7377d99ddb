"""Task runners: threads by default (one TensorFlow training at a time), Dask on loopback
workers that report to the flow's own API, Ray only with its extra."""

from __future__ import annotations

import os
import sys

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from relabel.config import PipelineConfig
from relabel.flows.runners import local_dask_cluster_kwargs, make_task_runner


def test_make_task_runner_follows_the_config() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    from relabel.flows.runners import make_task_runner

    runner = make_task_runner(PipelineConfig(profile="smoke"))
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert type(make_task_runner(PipelineConfig(task_runner="dask"))).__name__ == "DaskTaskRunner"


def test_threads_is_the_default_and_runs_one_fold_at_a_time() -> None:
    runner = make_task_runner(PipelineConfig(profile="cpu"))
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert runner._max_workers == 1  # two TensorFlow trainings in one process crash


def test_dask_uses_the_scheduler_address_when_given() -> None:
    runner = make_task_runner(
        PipelineConfig(task_runner="dask", dask_address="tcp://10.0.0.5:8786"))
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == "tcp://10.0.0.5:8786"
    assert runner.cluster_kwargs == {}


def test_dask_local_cluster_is_loopback_only_and_sized_to_the_folds() -> None:
    config = PipelineConfig(task_runner="dask", profile="cpu")
    runner = make_task_runner(config)
    assert isinstance(runner, DaskTaskRunner) and runner.address is None
    kwargs = runner.cluster_kwargs
    expected = local_dask_cluster_kwargs(config.train.folds)
    expected["env"].update({"PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
                           if "PREFECT_API_URL" in os.environ else {})
    assert kwargs == expected
    assert kwargs["n_workers"] == config.train.folds
    assert kwargs["threads_per_worker"] == 1 and kwargs["processes"] is True
    # Nothing listens beyond this machine: scheduler and workers on loopback, no dashboard.
    assert kwargs["host"] == "127.0.0.1" and kwargs["dashboard_address"] is None
    # Each worker process gets its share of the cores for TensorFlow's kernels.
    threads = int(kwargs["env"]["TF_NUM_INTRAOP_THREADS"])
    assert threads == max(1, (os.cpu_count() or 1) // config.train.folds)


@pytest.mark.slow
def test_local_dask_workers_report_to_the_flows_own_api(prefect_api: str) -> None:
    """Inside a flow, the workers get the API the flow reports to (also `relabel run`'s
    temporary one), so they never start temporary servers of their own."""
    from prefect import flow

    @flow
    def make_runner_in_a_flow() -> dict:
        return make_task_runner(PipelineConfig(task_runner="dask")).cluster_kwargs

    assert make_runner_in_a_flow()["env"]["PREFECT_API_URL"] == prefect_api.rstrip("/")


def test_ray_without_its_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import prefect_ray` raise ImportError, as when not installed.
    monkeypatch.setitem(sys.modules, "prefect_ray", None)
    with pytest.raises(RuntimeError, match=r"relabel\[ray\]"):
        make_task_runner(PipelineConfig(task_runner="ray"))
