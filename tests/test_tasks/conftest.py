"""Fixtures shared by the stage tests: one small ingested demo dataset."""

from __future__ import annotations

import pytest

from relabel.tasks.demodata import generate_demo_data
from relabel.tasks.ingest import Dataset, ingest


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """1,200 generated training images (600 with clean labels) and 100 test images, loaded
    into memory. Tests read it; none may change it."""
    root = tmp_path_factory.mktemp("demo")
    data = generate_demo_data(root / "data", num_train=1200, num_clean=600, num_test=100)
    return ingest(data, root / "cache").load(mmap=False)
