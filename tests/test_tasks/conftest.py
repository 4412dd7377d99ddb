"""Fixtures shared by the stage tests: one small ingested demo dataset."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

from relabel.tasks.demodata import generate_demo_data
from relabel.tasks.ingest import Dataset, ingest


def _arrays(dataset: Dataset) -> list[np.ndarray]:
    return [a for a in (dataset.images, dataset.noisy_labels, dataset.clean_labels,
                        dataset.test_images, dataset.test_labels) if a is not None]


def _digest(dataset: Dataset) -> str:
    digest = hashlib.sha256()
    for array in _arrays(dataset):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataset]:
    """1,200 generated training images (600 with clean labels) and 100 test images, loaded
    into memory. Tests read it; none may change it: the arrays are read-only (a numpy write
    raises), and the content is checked at the end (a write from native code fails there),
    because a changed array would show up as "nondeterministic" training in later tests."""
    root = tmp_path_factory.mktemp("demo")
    data = generate_demo_data(root / "data", num_train=1200, num_clean=600, num_test=100)
    dataset = ingest(data, root / "cache").load(mmap=False)
    for array in _arrays(dataset):
        array.setflags(write=False)
    before = _digest(dataset)
    yield dataset
    assert _digest(dataset) == before, "a test changed the shared demo dataset in place"
