"""How the pipeline's tasks are cached, retried and where their results live.

- deterministic compute (`compute(stage)`): cache key = hash of the task's inputs (artifact
  references, plain parameters) + the profile fields the stage reads + the code it runs
  (the wrapper and every relabel module it imports; flows/code_keys.py), no retries: a
  rerun with unchanged data, config and code is served from the cache; an edited task
  module or a changed profile field recomputes the stages that use it and everything
  downstream (their output artifacts get new hashes), and nothing upstream;
- I/O (`IO_RETRIES`): reading the dataset, writing results: retried with exponential
  backoff, because a network filesystem or S3 hiccup is not a reason to fail a long run;
- `results_in(cache_dir)`: task results (records, JSON) persist beside the artifacts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, CachePolicy
from prefect.tasks import exponential_backoff

from relabel.flows.code_keys import stage_code_and_profile_key


def compute(stage: str) -> dict[str, Any]:
    """Task options of a deterministic stage named `stage` (its STAGE_OF_TASK name). The
    profile is keyed field by field (flows.code_keys), not as a whole. Results are JSON:
    small, readable, never pickled arrays."""
    return dict(
        cache_policy=(INPUTS - "profile")
        + CachePolicy.from_cache_key_fn(stage_code_and_profile_key(stage)),
        persist_result=True, result_serializer="json",
    )


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: OS/network errors and storage faults, not bad input
    (IngestError/LabelError are ValueErrors) or bugs."""
    from relabel.storage import StorageError

    try:
        state.result()
    except (OSError, StorageError):
        return True
    except Exception:  # noqa: BLE001 - anything else is permanent
        return False
    return False


# I/O: three retries after 2 s, 4 s, 8 s (+-20% jitter so parallel retries do not align).
IO_RETRIES: dict[str, Any] = dict(
    retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.2, retry_condition_fn=_transient,
)


@contextlib.contextmanager
def results_in(cache_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Persist every task result inside this block under `CACHE_DIR/prefect-results`.

    Results (artifact records) and the artifacts they point at then live and die together:
    deleting the cache dir can never leave a cached result pointing at a missing file. The
    cache dir is a run parameter, so this is set on the running flow's context rather than
    in the decorators; thread, Dask and Ray runners all carry the context to their tasks.
    """
    from prefect.context import FlowRunContext
    from prefect.filesystems import LocalFileSystem

    folder = Path(cache_dir).resolve() / "prefect-results"
    folder.mkdir(parents=True, exist_ok=True)
    context = FlowRunContext.get()
    if context is None:
        raise RuntimeError("results_in() must be used inside a running flow")
    store = context.result_store.model_copy(
        update={"result_storage": LocalFileSystem(basepath=str(folder)), "metadata_storage": None}
    )
    with context.model_copy(update={"result_store": store}):
        yield folder
