"""Watch for new clean labels and announce them as a Prefect event.

The watcher compares content hashes: of a local labels file (SHA-256 of its bytes), or of
every object under an S3 prefix (ETags, via relabel.storage). Each file it has not seen with
this content before becomes one `relabel.clean-labels.updated` event whose payload names the
file and carries the pipeline config, which is what the `retrain-on-new-labels` deployment's
trigger passes on to the retrain flow. The hashes it has seen are kept under
`CACHE_DIR/watch/`, so the deployment can run it on an interval with no other state.

A file seen for the first time counts as new: merging labels that are already in force adds
nothing and the pipeline is then served from cache, so an extra event costs seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from relabel.config import PipelineConfig
from relabel.fileio import sha256_file, sha256_text, write_json_atomic
from relabel.flows.policies import IO_RETRIES

CLEAN_LABELS_UPDATED = "relabel.clean-labels.updated"


def current_hashes(source: str) -> dict[str, str]:
    """{file or s3 URI: content hash} for a local file or every object under an S3 prefix."""
    if source.startswith("s3://"):
        from relabel.storage import list_prefix, parse_s3_uri

        bucket = parse_s3_uri(source).bucket
        return {f"s3://{bucket}/{obj.key}": f"{obj.etag}:{obj.size}"
                for obj in list_prefix(source) if obj.key.endswith(".csv")}
    path = Path(source)
    return {str(path.resolve()): sha256_file(path)} if path.is_file() else {}


def emit_labels_updated(
    labels_file: str, config: PipelineConfig, content_hash: str, **extra: Any
) -> Any:
    """Emit `relabel.clean-labels.updated` for one labels file. Returns the Event (None when
    events are disabled)."""
    from prefect.events import emit_event

    return emit_event(
        event=CLEAN_LABELS_UPDATED,
        resource={
            "prefect.resource.id": f"relabel.clean-labels.{sha256_text(labels_file)[:16]}",
            "prefect.resource.name": labels_file,
        },
        payload={"labels_file": labels_file, "sha256": content_hash,
                 "config": config.model_dump(mode="json"), **extra},
    )


@task(name="Look for new clean labels", task_run_name="Look for new clean labels [{source}]",
      cache_policy=NO_CACHE, **IO_RETRIES)
def find_new_labels(source: str, state_file: Path) -> dict[str, str]:
    """Files under `source` whose content hash differs from the last look (or is new)."""
    seen = json.loads(state_file.read_text()) if state_file.is_file() else {}
    return {name: h for name, h in current_hashes(source).items() if seen.get(name) != h}


@flow(name="watch-clean-labels", flow_run_name="watch-{source}", log_prints=True)
def watch_clean_labels(
    source: str = "demo-data/new_clean_labels.csv",
    config: PipelineConfig = PipelineConfig(),  # noqa: B008
) -> list[str]:
    """Emit one `relabel.clean-labels.updated` event per new or changed labels file under
    `source` (a local CSV, or an s3://bucket/prefix of CSVs). Returns the files announced."""
    state_file = Path(config.cache_dir) / "watch" / f"{sha256_text(source)[:16]}.json"
    new = find_new_labels(source, state_file)
    for labels_file, content_hash in new.items():
        emit_labels_updated(labels_file, config, content_hash)
        get_run_logger().info("new clean labels: %s (%s)", labels_file, content_hash[:12])
    if new:
        # Remember only after the events are out: a crash in between re-announces, never loses.
        seen = json.loads(state_file.read_text()) if state_file.is_file() else {}
        write_json_atomic(state_file, {**seen, **new})
    return sorted(new)
