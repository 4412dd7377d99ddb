"""Task policies: what is retried, how compute stages are cached, where results persist."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.states import Completed, Failed

from relabel.flows.policies import IO_RETRIES, compute, results_in
from relabel.storage import StorageError
from relabel.tasks.ingest import IngestError


@pytest.mark.parametrize(("error", "retried"), [
    (OSError("connection reset"), True),
    (FileNotFoundError("nfs hiccup"), True),
    (StorageError("s3://bucket/x: timed out"), True),
    (IngestError("labels.csv line 3: label 12 is out of range 0..9"), False),
    (KeyError("a bug"), False),
])
def test_only_faults_a_retry_can_fix_are_retried(error: Exception, retried: bool) -> None:
    should_retry = IO_RETRIES["retry_condition_fn"]
    assert should_retry(None, None, Failed(data=error)) is retried
    assert should_retry(None, None, Completed(data=1)) is False


@pytest.mark.slow
def test_a_compute_stage_persists_json_in_the_cache_and_reruns_from_it(
    tmp_path: Path, prefect_api: str
) -> None:
    from prefect import flow, task

    calls: list[int] = []

    @task(**compute("baseline"))
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    @flow
    def twice(x: int) -> tuple[int, str]:
        with results_in(tmp_path / "cache") as folder:
            return double(x), str(folder)

    first, folder = twice(21)
    again, _ = twice(21)
    assert first == again == 42 and calls == [21]  # the second run was served the result
    results = [p for p in Path(folder).iterdir() if p.is_file()]
    assert results and all(p.read_text().lstrip().startswith("{") for p in results)  # JSON
    assert twice(22)[0] == 44 and calls == [21, 22]


def test_results_in_needs_a_running_flow(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="inside a running flow"), results_in(tmp_path):
        pass
