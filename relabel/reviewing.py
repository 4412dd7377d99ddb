"""Review a finished run: what `relabel review` does, without the command line.

Finds the run's out-of-sample probabilities and dataset (its metrics.json names them),
loads the current clean labels (those merged by `relabel labels add` count as known, so
they are never requested again) and hands everything to `tasks.review.review_dataset`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from relabel.constants import DEFAULT_CACHE_DIR
from relabel.storage import local_folder
from relabel.tasks.ingest import IngestError, ingest, load_dataset
from relabel.tasks.labels import CleanLabelStore
from relabel.tasks.review import (
    RUN_FOLD_PROBA,
    RUN_METRICS,
    RUN_PROBA,
    ReviewOutputs,
    review_dataset,
)


@dataclass(frozen=True)
class RunReview:
    """outputs: the files written; data: the user's dataset location (what
    `relabel labels add --data` takes); cache_dir: the artifact cache the run used."""

    outputs: ReviewOutputs
    data: str
    cache_dir: Path

    def next_step(self) -> str:
        return (f"fill in {self.outputs.requests_csv}, then: relabel labels add "
                f"{self.outputs.requests_csv} --data {self.data} --cache-dir {self.cache_dir}")


def review_run(
    run_dir: Path | None = None,
    *,
    proba: Path | None = None,
    data: str | None = None,
    out: Path | None = None,
    fold_proba: Path | None = None,
    cache_dir: Path | None = None,
    num_requests: int = 500,
    top_n: int = 64,
    method: Literal["self_confidence", "normalized_margin"] = "self_confidence",
    strategy: Literal["entropy", "margin", "random"] = "entropy",
    include_clean: bool = False,
    seed: int = 0,
) -> RunReview:
    """Review the run in `run_dir` (or the explicit `proba` + `data`); explicit arguments
    win over what the run folder holds. Raises IngestError naming what is missing."""
    run_info: dict = {}
    source = data
    if run_dir is not None:
        if not run_dir.is_dir():
            raise IngestError(f"{run_dir}: run folder not found")
        if (run_dir / RUN_METRICS).is_file():
            run_info = json.loads((run_dir / RUN_METRICS).read_text())
        proba = proba or run_dir / RUN_PROBA
        if fold_proba is None and (run_dir / RUN_FOLD_PROBA).is_file():
            fold_proba = run_dir / RUN_FOLD_PROBA
        # The user's dataset (what `labels add --data` takes); the run's ingested copy.
        source = data or run_info.get("config", {}).get("data")
        data = data or run_info.get("dataset_dir")
        out = out or run_dir / "review"
    if proba is None or data is None:
        raise IngestError(
            "give a run folder, or both --proba and --data"
            + (f" ({run_dir / RUN_METRICS} names no dataset_dir)" if run_dir else ""))
    cache = Path(cache_dir or run_info.get("cache_dir", DEFAULT_CACHE_DIR))
    for path in (proba, fold_proba):
        if path is not None and not path.is_file():
            raise IngestError(f"{path}: probabilities file not found")
    folder = local_folder(data, cache)
    if (folder / "images.npy").is_file():  # an ingested artifact folder
        dataset = load_dataset(folder)
    else:
        dataset = ingest(folder, cache).load()
    clean = CleanLabelStore(cache, dataset.content_hash).current(dataset.clean_labels)
    outputs = review_dataset(
        dataset, np.load(proba), out or Path("review"), num_requests=num_requests,
        top_n=top_n, method=method, strategy=strategy,
        fold_proba=None if fold_proba is None else np.load(fold_proba),
        clean_labels=clean, include_clean=include_clean, seed=seed,
    )
    return RunReview(outputs=outputs, data=str(source or data), cache_dir=cache)
