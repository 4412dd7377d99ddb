"""Fixtures of the flow tests: tracking off, and a small demo workspace per module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module", autouse=True)
def no_tracking() -> Any:
    """These tests are about orchestration; MLflow in the flow has its own tests
    (tests/test_relabel/test_tracking.py), and skipping it saves ~20 s per pipeline run here."""
    previous = os.environ.get("RELABEL_TRACKING")
    os.environ["RELABEL_TRACKING"] = "0"  # inherited by the subprocesses and the worker
    yield
    if previous is None:
        os.environ.pop("RELABEL_TRACKING", None)
    else:
        os.environ["RELABEL_TRACKING"] = previous


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from relabel.tasks.demodata import generate_demo_data

    root = tmp_path_factory.mktemp("flows")
    data = generate_demo_data(root / "data", num_train=600, num_clean=200, num_test=100)
    return {"root": root, "data": data, "cache": root / "cache"}
