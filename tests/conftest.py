"""Shared test set-up: an isolated Prefect home, and one Prefect API for the whole session.

Importing this file (pytest does it first) points PREFECT_HOME at a fresh temporary folder
and drops any PREFECT_API_URL / PREFECT_PROFILE from the environment, so no test touches the
user's ~/.prefect or talks to their server; MLflow's default store becomes a SQLite file in
that folder too (tests that need a server set MLFLOW_TRACKING_URI themselves). Child
processes inherit the same isolation.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="relabel-test-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
for _name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
    os.environ.pop(_name, None)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_PREFECT_HOME}/mlflow.db"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
# The pipeline tracks every run in MLflow: keep test runs out of the user's store/server
# (default ./mlflow.db) in the same throwaway folder; tests that need a server set their own.
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_PREFECT_HOME}/mlflow.db"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A throwaway Prefect API (temporary SQLite database) for the whole test session.

    Yields its URL (pass it as PREFECT_API_URL to subprocesses that should report to it).
    Flows called in tests run against it; `some_task.fn(...)` needs no API at all.
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # A cold temporary server needs ~20 s on a busy 2-core machine; the default is 30 s.
    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())
