"""Progress reports: sinks get fractions, plain output stays sparse, failures are ignored."""

from __future__ import annotations

import logging

import pytest

from relabel import progress


def test_sinks_get_the_start_a_step_a_second_and_the_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    seen: list[tuple[str, float]] = []
    with progress.reporting_to(lambda label, fraction: seen.append((label, fraction))), \
            progress.track("Model II", 1000, "batches") as tracker:
        for step in range(1000):
            clock[0] = step * 0.05  # 50 s in all: 20 steps, 2 percent, a second
            tracker.advance()
    fractions = [f for _, f in seen]
    assert {label for label, _ in seen} == {"Model II"}
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and 49 <= len(fractions) <= 52
    with progress.track("outside", 10, "images") as tracker:
        tracker.advance(10)
    assert len(seen) == len(fractions)  # the sink only hears reports made inside its block
    seen.clear()
    with progress.reporting_to(lambda label, fraction: seen.append((label, fraction))), \
            progress.track("fast", 100, "batches") as tracker:
        tracker.advance(100)  # no time passes: the start and the end only
    assert [f for _, f in seen] == [0.0, 1.0]


def test_a_failing_sink_never_breaks_the_work() -> None:
    def broken(label: str, fraction: float) -> None:
        raise ConnectionError("API down")

    with progress.reporting_to(broken), progress.track("x", 3, "steps") as tracker:
        tracker.advance(3)
    assert tracker.done == 3


def test_plain_output_is_one_line_a_minute_with_rate_and_time_left(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(progress, "_interactive", lambda: False)
    caplog.set_level(logging.INFO, logger="relabel.progress")
    with progress.track("clean model fold 1", 300, "batches") as tracker:
        tracker.describe("epoch 2/20")
        for _ in range(300):
            clock[0] += 1.0  # one batch a second: 5 minutes in all
            tracker.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4  # at 60, 120, 180 and 240 s; none at the end
    assert lines[0] == ("clean model fold 1 · epoch 2/20: 60/300 batches, 1.0 batches/s, "
                        "240 s left")


def test_work_in_a_thread_started_inside_a_stoppable_block_stops_at_its_next_step() -> None:
    import contextvars
    import threading

    steps: list[int] = []
    errors: list[BaseException] = []
    first_step = threading.Event()

    def work() -> None:
        try:
            with progress.track("teacher", 1_000_000, "batches") as tracker:
                for step in range(1_000_000):
                    steps.append(step)
                    first_step.set()
                    tracker.advance()
        except progress.WorkStopped as exc:
            errors.append(exc)

    with progress.stoppable() as stop:
        worker = threading.Thread(target=contextvars.copy_context().run, args=(work,))
        worker.start()
        assert first_step.wait(30)
        stop.set()
        worker.join(30)
    assert not worker.is_alive()
    assert len(errors) == 1 and "teacher" in str(errors[0]) and "as asked" in str(errors[0])
    assert len(steps) < 1_000_000
    with progress.track("after the block", 3, "steps") as tracker:
        tracker.advance(3)  # the switch belonged to the block: later work is not stopped


def test_an_outer_stop_also_stops_work_in_an_inner_block() -> None:
    with progress.stoppable() as outer, progress.stoppable(), \
            progress.track("student 0", 10, "batches") as tracker:
        tracker.advance()
        outer.set()
        with pytest.raises(progress.WorkStopped, match="student 0: stopped at 1/10"):
            tracker.advance()
