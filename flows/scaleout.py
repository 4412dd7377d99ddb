"""The clean-model folds on their own: the part of the pipeline that fans out.

`clean_folds(config)` runs the stages the folds depend on (ingest, clean labels, split, and
Model I when the folds start from it) and then trains the k clean-model folds as concurrent
task runs on the runner `config.task_runner` selects (threads, Dask or Ray;
flows/runners.py). The same stages and arguments as flows/pipeline.py, nothing else, so
tests/test_scaleout.py and benchmarks/fanout.py compare runners on exactly the work that is
distributed.

With a Dask or Ray cluster on other machines, `config.cache_dir` must be a path every worker
sees (a shared filesystem): fold tasks read their inputs from, and write their outputs to,
artifact files under it.
"""

from __future__ import annotations

from typing import NamedTuple

from prefect import flow

from relabel.config import PipelineConfig
from relabel.flows.artifacts import Artifact
from relabel.flows.policies import results_in
from relabel.flows.records import DatasetRef, FoldRef, SplitRef, TrainedModel
from relabel.flows.runners import make_task_runner
from relabel.flows.stages import (
    explore_noise,
    ingest_dataset,
    resolve_clean_labels,
    run_labels,
    split_clean_labels,
    train_clean_model,
    train_model1,
)


class FoldInputs(NamedTuple):
    data: DatasetRef
    clean: Artifact
    split: SplitRef
    model1: TrainedModel | None  # the folds' starting weights when profile.clean_init == "model1"


def fold_inputs(config: PipelineConfig) -> FoldInputs:
    """Run (inside the current flow, as cached tasks) every stage the clean folds need."""
    cache, profile, seed = config.cache_dir, config.train, config.seed
    data = ingest_dataset(config.data, cache, config.ingest_workers)
    clean = resolve_clean_labels(data, cache)
    split = split_clean_labels(clean, config.validation_size, profile.folds, seed,
                               profile.max_train_images, cache)
    model1 = None
    if profile.clean_init == "model1":
        noise = explore_noise(clean, data.noisy_labels, split, cache)
        model1 = train_model1(data.images, data.noisy_labels, noise, split, profile, seed, cache)
    return FoldInputs(data, clean, split, model1)


def fan_out_folds(config: PipelineConfig, inputs: FoldInputs) -> list[FoldRef]:
    """The k folds as parallel task runs on `config.task_runner`, in fold order."""
    return train_clean_model(make_task_runner(config), inputs.data.images, inputs.clean,
                             inputs.split, inputs.model1, config.train, config.seed,
                             config.cache_dir)


@flow(name="relabel-clean-folds", log_prints=True)
def clean_folds(config: PipelineConfig = PipelineConfig()) -> list[FoldRef]:  # noqa: B008
    """Train the clean model's k folds in parallel on `config.task_runner`; return them in
    fold order (probabilities as artifacts under `config.cache_dir`)."""
    with results_in(config.cache_dir):
        inputs = fold_inputs(config)
        with run_labels(config.profile, inputs.data.content_hash):
            return fan_out_folds(config, inputs)
