"""How the pipeline's tasks are cached, retried and where their results live.

- deterministic compute (`compute(stage)`): cache key = hash of the task's inputs (artifact
  references, plain parameters) + the profile fields the stage reads + the code it runs
  (the wrapper and every relabel module it imports; flows/code_keys.py), no retries: a
  rerun with unchanged data, config and code is served from the cache; an edited task
  module or a changed profile field recomputes the stages that use it and everything
  downstream (their output artifacts get new hashes), and nothing upstream;
- I/O (`IO_RETRIES`): reading the dataset, writing results: retried with exponential
  backoff, because a network filesystem or S3 hiccup is not a reason to fail a long run;
- `results_in(cache_dir)`: task results (records, JSON) persist beside the artifacts;
- self-healing (`SelfHealing`, around every cached stage's policy): a cached result whose
  file does not decode, or whose artifact file is missing or changed, is a logged miss.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import INPUTS, CachePolicy
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff

from relabel.flows.artifacts import artifacts_in
from relabel.flows.code_keys import stage_code_and_profile_key


@dataclass(kw_only=True)
class SelfHealing(CachePolicy):
    """`policy`'s cache keys, and a cached result that cannot be used is a miss, logged.

    Prefect takes a cached result when its file decodes (ResultStore.exists); it knows
    nothing of the artifact files our records point at, and skips an undecodable file
    without a word. So, once the key is known and before Prefect looks it up, this reads the
    record under it. A file that does not decode (truncated, corrupt), or a record with an
    artifact that is missing or whose bytes changed, is logged and deleted: the stage that
    produced it recomputes (same key, same content-addressed artifacts), and the stages
    after it, whose keys hash the artifacts' path and SHA-256, are still served from the
    cache. A policy rather than a ResultStore subclass set in `results_in`: the policy
    travels with the task to Dask and Ray workers, where Prefect rebuilds the flow's
    context, and its result store as a plain ResultStore.
    """

    policy: CachePolicy

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        key = self.policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        if key is not None and not _refreshing(task_ctx):
            _drop_unusable_result(task_ctx, key)
        return key


def _refreshing(task_ctx: TaskRunContext) -> bool:
    """--refresh-cache: every stage recomputes anyway; hashing its artifacts would be waste."""
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE

    refresh = task_ctx.task.refresh_cache
    return bool(PREFECT_TASKS_REFRESH_CACHE.value() if refresh is None else refresh)


def _drop_unusable_result(task_ctx: TaskRunContext, key: str) -> None:
    """Delete the cached result under `key` if it cannot be used, saying why in the task
    run's log (console and Prefect UI)."""
    from prefect.filesystems import LocalFileSystem
    from prefect.logging import get_run_logger
    from prefect.results import ResultRecord

    store = task_ctx.result_store
    storage = store.result_storage
    if store.metadata_storage is not None or not isinstance(storage, LocalFileSystem):
        return  # not where results_in keeps results: Prefect's own lookup only
    path = Path(storage._resolve_path(key))  # what ResultStore reads for this key
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return  # never cached: an ordinary miss
    try:
        record = ResultRecord.deserialize(content, backup_serializer=store.serializer)
    except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the file is bad
        fault: str | None = f"its result file {path} does not decode ({type(exc).__name__})"
    else:
        # The first fault is enough to recompute: no need to hash the remaining artifacts.
        fault = next(filter(None, (a.fault() for a in artifacts_in(record.result))), None)
    if fault is not None:
        # The task run's logger: the console line and the Prefect UI name the stage.
        get_run_logger().warning("cached result not used: %s; recomputing this stage", fault)
        path.unlink(missing_ok=True)


def compute(stage: str) -> dict[str, Any]:
    """Task options of a deterministic stage named `stage` (its STAGE_OF_TASK name). The
    profile is keyed field by field (flows.code_keys), not as a whole. Results are JSON:
    small, readable, never pickled arrays."""
    key = (INPUTS - "profile") + CachePolicy.from_cache_key_fn(stage_code_and_profile_key(stage))
    return dict(cache_policy=SelfHealing(policy=key), persist_result=True,
                result_serializer="json")


# A path that is wrong stays wrong: a file where a folder should be, no permission, a
# read-only file system. (ENOENT is retried: on a network file system it can be a hiccup.)
_PERMANENT_ERRNOS = frozenset({errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES,
                               errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP})


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: OS/network errors and storage faults, not a wrong
    path, bad input (IngestError/LabelError are ValueErrors) or bugs."""
    from relabel.storage import StorageError

    try:
        state.result()
    except OSError as exc:
        return exc.errno not in _PERMANENT_ERRNOS
    except StorageError:
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
