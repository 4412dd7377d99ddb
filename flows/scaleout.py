"""The clean-model folds on their own: the part of the pipeline that fans out.

`clean_folds(config)` ingests the data, splits the clean labels and trains the k clean-model
folds as concurrent task runs on the runner `config.task_runner` selects (threads, Dask or
Ray; flows/runners.py). The same stages as flows/pipeline.py, nothing else, so the test in
tests/test_scaleout.py and benchmarks/fanout.py can compare runners on exactly the work that
is distributed.

With a Dask or Ray cluster on other machines, `config.cache_dir` must be a path every worker
sees (a shared filesystem): fold tasks read their inputs from, and write their outputs to,
artifact files under it.
"""

from __future__ import annotations

from prefect import flow

from flows.runners import make_task_runner
from flows.stages import (
    FoldRef,
    ingest_dataset,
    resolve_clean_labels,
    results_in,
    run_labels,
    split_clean_labels,
    train_clean_model,
)
from relabel.config import PipelineConfig


@flow(name="relabel-clean-folds", log_prints=True)
def clean_folds(config: PipelineConfig = PipelineConfig()) -> list[FoldRef]:  # noqa: B008
    """Train the clean model's k folds in parallel on `config.task_runner`; return them in
    fold order (probabilities as artifacts under `config.cache_dir`)."""
    cache, profile, seed = config.cache_dir, config.train, config.seed
    with results_in(cache):
        data = ingest_dataset(config.data, cache, config.ingest_workers)
        with run_labels(config.profile, data.content_hash):
            clean = resolve_clean_labels(data, cache)
            split = split_clean_labels(clean, config.validation_size, profile.folds, seed, cache)
            return train_clean_model(make_task_runner(config), data.images, clean, split,
                                     profile, seed, cache)
