"""Stage wrappers called directly (`.fn`): ingest, clean labels and split pass artifacts by
reference and content hash."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest


def test_ingest_and_label_stages_pass_artifacts_by_reference(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    from relabel.fileio import sha256_file
    from relabel.flows.artifacts import load_array
    from relabel.flows.new_labels import merge_new_labels
    from relabel.flows.stages import ingest_dataset, resolve_clean_labels, split_clean_labels

    cache = tmp_path / "cache"
    data = ingest_dataset.fn(str(workspace["data"]), cache)
    assert data.summary["num_images"] == 600 and data.summary["num_test"] == 100
    for ref in (data.images, data.noisy_labels, data.clean_labels, data.test_images):
        assert Path(ref.path).is_file() and sha256_file(ref.path) == ref.sha256
    assert len(data.model_dump_json()) < 4000  # a reference, not the arrays
    assert resolve_clean_labels.fn(data, cache) == data.clean_labels

    # New labels for three images without one: a new version, which the pipeline then uses.
    noisy_only = np.flatnonzero(load_array(data.clean_labels) < 0)[:3]
    new = tmp_path / "new.csv"
    new.write_text("image_id,label\n" + "".join(f"{i + 1},4\n" for i in noisy_only))
    merged = merge_new_labels.fn(str(new), data, cache)
    assert merged["version"] == 1 and merged["added"] == 3 and merged["num_clean"] == 203
    current = resolve_clean_labels.fn(data, cache)
    assert current != data.clean_labels and np.all(load_array(current)[noisy_only] == 4)
    assert merge_new_labels.fn(str(new), data, cache)["version"] == 1  # idempotent

    split = split_clean_labels.fn(current, 0.2, 2, 0, 100, cache)
    train, val = load_array(split.train_idx), load_array(split.val_idx)
    assert len(train) + len(val) == 203 and not set(train) & set(val)
    noisy = load_array(split.noisy_idx)  # capped at 100, none with a clean label
    assert len(noisy) == 100 and np.all(load_array(current)[noisy] < 0)
    holdouts = np.sort(np.concatenate([load_array(h) for _, h in split.folds]))
    assert np.array_equal(holdouts, np.sort(train))


def test_the_correction_stage_logs_how_many_validation_labels_it_gets_right(
    workspace: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from relabel.flows.artifacts import save_array
    from relabel.flows.records import CleanModelRef
    from relabel.flows.stages import (
        correct_noisy_labels,
        explore_noise,
        ingest_dataset,
        split_clean_labels,
    )

    cache = tmp_path / "cache"
    data = ingest_dataset.fn(str(workspace["data"]), cache)
    split = split_clean_labels.fn(data.clean_labels, 0.2, 1, 0, 100, cache)
    noise = explore_noise.fn(data.clean_labels, data.noisy_labels, split, cache)
    # A clean model 91% sure of every true label: the validation labels all come out right.
    truth = np.loadtxt(workspace["data"] / "true_labels.csv", dtype=np.int64)
    proba = np.eye(10, dtype=np.float32)[truth] * 0.9 + 0.01
    model = CleanModelRef(proba=save_array(cache, "clean-model", proba))
    from relabel.config import PROFILES

    # Importing Prefect (above) reconfigured the root logger, so caplog listens here.
    logger = logging.getLogger("relabel.flows.stages")
    caplog.set_level(logging.INFO, logger=logger.name)
    logger.addHandler(caplog.handler)
    try:
        correct_noisy_labels.fn(model, data.noisy_labels, data.clean_labels, noise, split,
                                "posterior", 0.85, PROFILES["smoke"], cache,
                                evidence="students", round_number=2)
    finally:
        logger.removeHandler(caplog.handler)
    assert any("labels corrected from self-training round 2: 100.00% right on the "
               "validation images" in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "rewritten, same size"])
def test_a_damaged_dataset_folder_is_ingested_again(
    tmp_path: Path, prefect_api: str, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """The ingest cache's index still names the folder, so re-running ingest alone would
    serve the damaged folder: the stage builds it again, and the arrays' hashes come back."""
    from prefect import flow

    from relabel.flows.policies import results_in
    from relabel.flows.records import DatasetRef
    from relabel.flows.stages import ingest_dataset
    from relabel.tasks.demodata import generate_demo_data

    data = generate_demo_data(tmp_path / "data", num_train=60, num_clean=20, num_test=10)
    cache = tmp_path / "cache"

    @flow
    def ingest_only() -> DatasetRef:
        with results_in(cache):
            return ingest_dataset(str(data), cache)

    first = ingest_only()
    images = Path(first.images.path)
    if damage == "deleted":
        images.unlink()
    else:
        content = bytearray(images.read_bytes())
        content[-1] ^= 0xFF
        images.write_bytes(bytes(content))
    with caplog.at_level(logging.WARNING):
        again = ingest_only()
    # The same arrays, by content (the summary differs only in ingest_seconds).
    assert again.model_dump(exclude={"summary"}) == first.model_dump(exclude={"summary"})
    assert again.images.fault() is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and getattr(r, "task_run_name", "").startswith("Ingest dataset")]
    assert [r.getMessage().split(":")[0] for r in warnings] == [
        "cached result not used", "ingested dataset damaged"]
    assert all(str(images) in r.getMessage() for r in warnings)
