"""Scale-out: the clean-model folds run the same on every task runner.

`config.task_runner` picks threads, Dask or Ray (flows/runners.py). The slow tests train the
real clean-model folds (smoke profile, small demo data) once on the thread runner and once on
a real local Dask cluster of 2 worker processes bound to 127.0.0.1, and checks that both runs
produce the same fold probabilities for the same seed, with the folds spread over both Dask
workers; a sequential run (one thread) is the reference both must match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from relabel.config import PROFILES, PipelineConfig
from relabel.flows.runners import local_dask_cluster_kwargs

# --------------------------------------------------------------- the real fan-out


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from relabel.tasks.demodata import generate_demo_data

    return generate_demo_data(tmp_path_factory.mktemp("scaleout") / "data", num_train=600,
                              num_clean=400, num_test=50, seed=3)


def _run_folds(config: PipelineConfig) -> list:
    from relabel.flows.scaleout import clean_folds

    return clean_folds(config)


def _config(demo_data: Path, cache_dir: Path, **overrides: object) -> PipelineConfig:
    # The folds start from Model I (trained once, in the flow's process): from scratch, the
    # workers' other thread counts make first steps differ by more than summation order.
    return PipelineConfig(data=str(demo_data), profile="smoke", seed=7, cache_dir=cache_dir,
                          overrides={"clean_init": "model1", "model1_width": None},
                          **overrides)


@pytest.fixture(scope="module")
def sequential_folds(demo_data: Path, tmp_path_factory: pytest.TempPathFactory,
                     prefect_api: str) -> list:
    """The reference: the folds one after another (a one-thread runner) in this process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("relabel.flows.scaleout.make_task_runner",
                      lambda config: ThreadPoolTaskRunner(max_workers=1))
        return _run_folds(_config(demo_data, tmp_path_factory.mktemp("sequential")))


@pytest.fixture(scope="module")
def dask_folds(demo_data: Path, tmp_path_factory: pytest.TempPathFactory,
               prefect_api: str) -> tuple[list, set[str], set[str]]:
    """The folds on a real local Dask cluster of 2 worker processes, started with the same
    settings the runner uses for its own local cluster, reached through `dask_address`.
    Returns (folds, worker addresses, addresses of the workers that ran a task)."""
    from distributed import Client, LocalCluster, get_task_stream

    folds = PROFILES["smoke"].folds
    assert folds == 2
    with LocalCluster(**local_dask_cluster_kwargs(folds)) as cluster, Client(cluster) as client:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        workers = set(client.scheduler_info()["workers"])
        with get_task_stream(client) as stream:
            result = _run_folds(_config(demo_data, tmp_path_factory.mktemp("dask"),
                                        task_runner="dask",
                                        dask_address=cluster.scheduler_address))
        used = {record["worker"] for record in stream.data}
    return result, workers, used


def _assert_same_folds(left_folds: list, right_folds: list) -> None:
    from relabel.flows.artifacts import load_array

    assert [f.fold for f in left_folds] == [f.fold for f in right_folds] == [0, 1]
    for a, b in zip(left_folds, right_folds, strict=True):
        # Different cache dirs: each run really trained (no result was shared between them).
        assert a.predict_proba.path != b.predict_proba.path
        for name in ("holdout_idx", "predict_idx"):
            np.testing.assert_array_equal(load_array(getattr(a, name)),
                                          load_array(getattr(b, name)))
        for name in ("holdout_proba", "predict_proba"):
            left, right = load_array(getattr(a, name)), load_array(getattr(b, name))
            assert left.shape == right.shape and np.isfinite(left).all()
            # Equal up to float summation order: Dask workers run TensorFlow with their share
            # of the cores (TF_NUM_INTRAOP_THREADS), this process with all of them.
            np.testing.assert_allclose(left, right, rtol=0, atol=1e-5)
            np.testing.assert_array_equal(left.argmax(axis=1), right.argmax(axis=1))


@pytest.mark.slow
def test_dask_fans_the_folds_out_over_both_loopback_workers(dask_folds) -> None:
    _, workers, used = dask_folds
    assert len(workers) == 2
    assert all(address.startswith("tcp://127.0.0.1:") for address in workers)
    assert used == workers, "the two folds did not run on both workers"


@pytest.mark.slow
def test_dask_folds_equal_sequential_folds(dask_folds, sequential_folds) -> None:
    _assert_same_folds(sequential_folds, dask_folds[0])


@pytest.mark.slow
def test_threaded_folds_equal_dask_folds(demo_data: Path, tmp_path: Path, prefect_api: str,
                                         dask_folds) -> None:
    threaded = _run_folds(_config(demo_data, tmp_path / "threads"))  # the default runner
    _assert_same_folds(threaded, dask_folds[0])
