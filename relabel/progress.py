"""Progress of long work (training batches, inference, image decoding).

On a terminal: one rich bar per piece of work, with its stage and fold in the description,
the rate and the time left (on stderr, so stdout stays clean for data). Elsewhere (CI, a
log file, a Prefect worker): a plain line at most once a minute. Any sink registered with
`reporting_to` also receives (label, fraction done): the flows mirror that into Prefect
progress artifacts, so the UI shows the same progress. Work tracked inside a `stoppable`
block stops at its next step once the block's stop event is set. Pure Python and rich:
tasks/ use it without knowing about Prefect.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

log = logging.getLogger(__name__)

ProgressSink = Callable[[str, float], None]  # (label, fraction done 0..1)
_sinks: ContextVar[tuple[ProgressSink, ...]] = ContextVar("relabel_progress_sinks",
                                                          default=())
PLAIN_INTERVAL_S = 60.0  # plain mode: at most one line per tracker per minute
# Sinks (Prefect progress artifacts: one API call each) hear the start, then at most one
# whole-percent step per second, and the end: per-percent calls cost seconds of a short run.
SINK_INTERVAL_S = 1.0

_stop_events: ContextVar[tuple[threading.Event, ...]] = ContextVar("relabel_stop_events",
                                                                 default=())

_lock = threading.Lock()
_bars = None  # the shared rich Progress while any bar is open
_open_bars = 0


@contextlib.contextmanager
def reporting_to(sink: ProgressSink) -> Iterator[None]:
    """Send every report made inside this block (and the threads it starts) to `sink`."""
    token = _sinks.set((*_sinks.get(), sink))
    try:
        yield
    finally:
        _sinks.reset(token)


class WorkStopped(RuntimeError):
    """Tracked work left early: the `stoppable` block it runs in was asked to stop."""


@contextlib.contextmanager
def stoppable() -> Iterator[threading.Event]:
    """A stop switch for the work tracked inside this block, also in the threads it starts
    with its context (Prefect's thread runner copies it): once the event is set, each
    tracker's next `advance` raises WorkStopped. A thread cannot be interrupted from
    outside, and a thread pool's shutdown waits for the work it runs, so without this a
    Ctrl-C or SIGTERM during a fan-out waited for the running training to finish."""
    event = threading.Event()
    token = _stop_events.set((*_stop_events.get(), event))
    try:
        yield event
    finally:
        _stop_events.reset(token)


def _interactive() -> bool:
    return sys.stderr.isatty()


def _acquire_bars():  # noqa: ANN202 - rich is imported lazily
    global _bars, _open_bars
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with _lock:
        if _bars is None:
            _bars = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                TextColumn("left"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True, refresh_per_second=4,
            )
            _bars.start()
        _open_bars += 1
        return _bars


def _release_bars() -> None:
    global _bars, _open_bars
    with _lock:
        _open_bars -= 1
        if _open_bars == 0 and _bars is not None:
            _bars.stop()
            _bars = None


class Tracker:
    """Counts `total` units of one piece of work labelled `label` ("Model II", "clean
    fold 2"); `describe` sets what it is doing now ("epoch 3/7")."""

    def __init__(self, label: str, total: int, unit: str) -> None:
        self.label, self.total, self.unit = label, max(int(total), 1), unit
        self.done = 0
        self.detail = ""
        self._started = self._last_line = time.monotonic()
        self._last_sent = -1.0
        self._last_sent_at = -math.inf
        self._sinks = _sinks.get()
        self._stop_events = _stop_events.get()
        self._bars = _acquire_bars() if _interactive() else None
        self._bar = (self._bars.add_task(label, total=self.total, rate="")
                     if self._bars is not None else None)
        self._send()

    def describe(self, detail: str) -> None:
        self.detail = detail
        if self._bars is not None:
            self._bars.update(self._bar, description=self._title())

    def _title(self) -> str:
        return f"{self.label} · {self.detail}" if self.detail else self.label

    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, count: int = 1) -> None:
        if any(event.is_set() for event in self._stop_events):
            raise WorkStopped(f"{self._title()}: stopped at {self.done}/{self.total} "
                              f"{self.unit}, as asked")
        self.done = min(self.done + count, self.total)
        now = time.monotonic()
        if self._bars is not None:
            self._bars.update(self._bar, completed=self.done,
                              rate=f"{self.rate():.1f} {self.unit}/s")
        elif now - self._last_line >= PLAIN_INTERVAL_S and self.done < self.total:
            self._last_line = now
            rate = self.rate()
            left = (self.total - self.done) / rate if rate else float("nan")
            log.info("%s: %d/%d %s, %.1f %s/s, %.0f s left", self._title(), self.done,
                     self.total, self.unit, rate, self.unit, left)
        self._send()

    def _send(self) -> None:
        percent = 100 * self.done // self.total
        now = time.monotonic()
        due = now - self._last_sent_at >= SINK_INTERVAL_S or self.done == self.total
        if self._sinks and percent > self._last_sent and due:
            self._last_sent, self._last_sent_at = percent, now
            fraction = self.done / self.total
            for sink in self._sinks:
                try:
                    sink(self.label, fraction)
                except Exception:  # progress must never break the work it reports on
                    log.debug("progress sink failed", exc_info=True)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.remove_task(self._bar)
            self._bars = None
            _release_bars()


@contextlib.contextmanager
def track(label: str, total: int, unit: str = "steps") -> Iterator[Tracker]:
    """Report progress of `total` units of work labelled `label` while the block runs."""
    tracker = Tracker(label, total, unit)
    try:
        yield tracker
    finally:
        tracker.close()
