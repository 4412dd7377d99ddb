"""Training and inference progress in the Prefect UI: one progress artifact per piece of
work (Model II's training, a fold's inference...), on the task run doing it.

relabel.progress reports (label, fraction done); this sink creates the artifact on the first
report inside a task run and updates it from then on. A failure to reach the API is logged
and ignored: progress never breaks the work it reports on.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from uuid import UUID

log = logging.getLogger(__name__)


def artifact_key(label: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "progress"


class PrefectProgressArtifacts:
    """A relabel.progress sink writing Prefect progress artifacts (percent done)."""

    def __init__(self) -> None:
        self._artifacts: dict[tuple[UUID, str], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, fraction: float) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact
        from prefect.context import TaskRunContext

        context = TaskRunContext.get()
        if context is None:
            return  # outside a task run there is nothing to attach it to
        key = (context.task_run.id, label)
        percent = round(100 * fraction, 1)
        with self._lock:
            artifact_id = self._artifacts.get(key)
        try:
            if artifact_id is None:
                artifact_id = create_progress_artifact(
                    progress=percent, key=artifact_key(label),
                    description=f"{label}: percent done")
                with self._lock:
                    self._artifacts[key] = artifact_id
            else:
                update_progress_artifact(artifact_id=artifact_id, progress=percent)
        except Exception as exc:  # the API is down or slow: keep training
            log.debug("progress artifact for %s not updated: %s", label, exc)
