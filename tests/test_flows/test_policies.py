"""Task policies: what is retried, how compute stages are cached, where results persist."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from prefect.states import Completed, Failed

from relabel.flows.artifacts import Artifact, load_array, save_array
from relabel.flows.policies import IO_RETRIES, compute, results_in
from relabel.storage import StorageError
from relabel.tasks.ingest import IngestError


@pytest.mark.parametrize(("error", "retried"), [
    (OSError("connection reset"), True),
    (FileNotFoundError("nfs hiccup"), True),
    (NotADirectoryError(20, "Not a directory", "results/out"), False),  # stays wrong
    (PermissionError(13, "Permission denied", "runs"), False),
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


def _damage(fault: str, artifact: Artifact, results: Path) -> None:
    """Break one cached stage result the way a pruned cache, a crash or a full disk does."""
    path = Path(artifact.path)
    if fault == "artifact deleted":
        path.unlink()
    elif fault == "artifact truncated":
        path.write_bytes(path.read_bytes()[:-8])
    elif fault == "artifact rewritten, same size":
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
    else:  # "result file truncated": the record of the stage that wrote `artifact`
        record = next(p for p in results.iterdir() if artifact.sha256 in p.read_text())
        record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["artifact deleted", "artifact truncated",
                                   "artifact rewritten, same size", "result file truncated"])
def test_a_cached_result_that_cannot_be_used_is_a_logged_miss_of_its_stage_only(
    tmp_path: Path, prefect_api: str, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    """The stage that wrote the damaged result recomputes (the same artifact, by content),
    says so in its log, and the stage after it, keyed on that artifact, stays cached."""
    from prefect import flow, task

    cache = tmp_path / "cache"
    calls: list[str] = []

    @task(**compute("data"))
    def squares(n: int, cache_dir: Path) -> Artifact:
        calls.append("squares")
        return save_array(cache_dir, "squares", np.arange(n) ** 2)

    @task(**compute("baseline"))
    def total(values: Artifact) -> int:
        calls.append("total")
        return int(load_array(values).sum())

    @flow
    def two_stages(n: int) -> tuple[Artifact, int, str]:
        with results_in(cache) as folder:
            values = squares(n, cache)
            return values, total(values), str(folder)

    first, first_total, results = two_stages(10)
    _damage(fault, first, Path(results))
    with caplog.at_level(logging.WARNING):
        healed, healed_total, _ = two_stages(10)
    assert calls == ["squares", "total", "squares"]  # only the damaged stage recomputed
    assert healed == first and healed_total == first_total == 285 and healed.fault() is None
    warnings = [r for r in caplog.records if "cached result not used" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].task_run_name.startswith("squares")
    assert ("does not decode" if fault == "result file truncated"
            else first.path) in warnings[0].getMessage()
    assert two_stages(10)[:2] == (first, 285) and len(calls) == 3  # healed: a plain hit again


def test_results_in_needs_a_running_flow(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="inside a running flow"), results_in(tmp_path):
        pass
