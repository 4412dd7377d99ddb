"""Retraining when new clean labels arrive.

`retrain_on_new_labels` validates a file of new clean labels, merges it into the dataset's
versioned clean-label set (tasks/labels.py), then runs the pipeline again. Ingestion and
colour features come from the cache (their inputs did not change); everything downstream of
the clean labels (split, noise estimate, Model I, the clean model, correction, Model II,
scores) reruns on the new set. The `retrain-on-new-labels` deployment starts it on the
event `relabel.clean-labels.updated` (emitted by `relabel labels add` and the watcher).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from relabel.config import PipelineConfig
from relabel.flows.pipeline import pipeline
from relabel.flows.policies import IO_RETRIES, results_in
from relabel.flows.records import DatasetRef, PipelineSummary
from relabel.flows.stages import ingest_dataset
from relabel.storage import local_file


@task(name="Merge new clean labels", task_run_name="Merge new clean labels [{labels_file}]",
      cache_policy=NO_CACHE, **IO_RETRIES)
def merge_new_labels(
    labels_file: str, dataset: DatasetRef, cache_dir: Path, allow_changes: bool = False
) -> dict[str, Any]:
    """Validate the file and merge it into the clean-label set (nothing merged on any error).

    Returns the version now in force and what the merge did: added (images that had no
    clean label), confirmed (repeated an existing label), changed (replaced one).
    """
    from relabel.flows.artifacts import load_array
    from relabel.tasks.labels import CleanLabelStore

    store = CleanLabelStore(cache_dir, dataset.content_hash)
    dataset_labels = load_array(dataset.clean_labels)
    # An s3:// labels file is fetched again whenever it was rewritten under the same key.
    version, merge = store.add_file(local_file(labels_file, cache_dir), dataset_labels,
                                    allow_changes=allow_changes)
    return {
        "version": version.version if version else 0,
        "version_file": str(version.path) if version else dataset.clean_labels.path,
        "num_clean": merge.num_clean, "added": merge.added, "confirmed": merge.confirmed,
        "changed": merge.changed,
    }


def _run_name() -> str:
    """"retrain-<profile>-<labels file name>"."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    config = params.get("config") or {}
    profile = config.profile if isinstance(config, PipelineConfig) else config.get("profile")
    return f"retrain-{profile or 'smoke'}-{Path(str(params.get('labels_file'))).name}"


@flow(name="retrain-on-new-labels", log_prints=True, flow_run_name=_run_name)
def retrain_on_new_labels(
    labels_file: str,
    config: PipelineConfig = PipelineConfig(),  # noqa: B008
    allow_changes: bool = False,
) -> PipelineSummary:
    """Merge new clean labels (`image_id,label` CSV or an updated clean_labels.csv), then rerun
    the pipeline from the clean-label stages on (ingest and features come from cache)."""
    with results_in(config.cache_dir):
        data = ingest_dataset(config.data, config.cache_dir, config.ingest_workers)
        merged = merge_new_labels(labels_file, data, config.cache_dir, allow_changes)
    get_run_logger().info("clean labels now at version %s: %s", merged["version"], merged)
    return pipeline(config)
