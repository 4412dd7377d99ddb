"""Stage wrappers called directly (`.fn`): ingest, clean labels and split pass artifacts by
reference and content hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
