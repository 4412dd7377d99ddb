"""New clean labels: validation, merging into versioned sets, and artifact references."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from synthetic_labels import write_label_csv

from relabel.tasks.ingest import UNKNOWN
from relabel.tasks.labels import CleanLabelStore, LabelError, merge_labels, read_new_labels

N = 50
DATASET_HASH = "ab" * 32


def dataset_labels() -> np.ndarray:
    labels = np.full(N, UNKNOWN, dtype=np.int64)
    labels[:10] = np.arange(10)  # images 1..10 have clean labels 0..9
    return labels


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_merge_adds_versions_and_is_idempotent(tmp_path: Path) -> None:
    store = CleanLabelStore(tmp_path / "cache", DATASET_HASH)
    base = dataset_labels()
    assert store.latest() is None and np.array_equal(store.current(base), base)

    first = write(tmp_path / "a.csv", "image_id,label", "11,3", "12,4", "1,0")
    version, merge = store.add_file(first, base)
    assert version is not None and version.version == 1
    assert (merge.added, merge.confirmed, merge.changed) == (2, 1, 0)
    current = store.current(base)
    assert current[10] == 3 and current[11] == 4 and merge.num_clean == 12
    assert np.array_equal(current[:10], base[:10])

    again, merge = store.add_file(first, base)  # nothing new: no new version
    assert again == version and merge.added == 0 and len(store.versions()) == 1

    second = write(tmp_path / "b.csv", "13,5")  # no header
    version2, _ = store.add_file(second, base)
    assert version2.version == 2 and version2.path.name.startswith("v0002-")
    assert store.current(base)[12] == 5 and store.current(base)[10] == 3
    assert [v.num_clean for v in store.versions()] == [12, 13]


def test_updated_clean_labels_csv_one_column(tmp_path: Path) -> None:
    """An updated clean_labels.csv: labels of images 1..M, one per line."""
    store = CleanLabelStore(tmp_path / "cache", DATASET_HASH)
    path = write(tmp_path / "clean_labels.csv", *[str(i % 10) for i in range(15)])
    version, merge = store.add_file(path, dataset_labels())
    assert version is not None and merge.added == 5 and merge.confirmed == 10
    assert np.array_equal(store.current(dataset_labels())[:15], np.arange(15) % 10)


def test_partly_filled_request_list_merges_filled_rows(tmp_path: Path) -> None:
    store = CleanLabelStore(tmp_path / "cache", DATASET_HASH)
    path = write(tmp_path / "requests.csv", "image_id,label", "20,", "21,7", "20,2", "22,")
    _, merge = store.add_file(path, dataset_labels())
    current = store.current(dataset_labels())
    assert merge.added == 2 and current[19] == 2 and current[20] == 7 and current[21] == UNKNOWN
    with pytest.raises(LabelError, match="no labels filled in"):
        read_new_labels(write(tmp_path / "empty.csv", "image_id,label", "20,", "21,"), N)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["image_id,label", "11,3", "51,2"], "empty_or_bad.csv:3: image id 51 is not in 1..50"),
        (["image_id,label", "11,3", "0,2"], "image id 0 is not in 1..50"),
        (["image_id,label", "11,3", "12,4", "11,5"],
         "image id 11 has conflicting labels 3 and 5 (lines 2 and 4)"),
        (["image_id,label", "11,10"], "label 10 is out of range 0..9"),
        (["image_id,label", "11,dog"], "label 'dog' is not an integer"),
        (["label,image_id", "11,3"], "expected 'image_id,label'"),
        (["image_id,label,note", "11,3"], "expected 'image_id,label'"),
        (["image_id,label", "11,3", "12,3,x"], "empty_or_bad.csv:3: expected 2 column(s), got 3"),
        (["a,b,c", "1,2,3"], "expected 1 column (label) or 2 (image_id,label), got 3"),
        (["image_id,label", "11,3", "2,5"], "image 2: clean 1 vs new 5"),
    ],
)
def test_bad_files_raise_and_merge_nothing(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    store = CleanLabelStore(tmp_path / "cache", DATASET_HASH)
    store.add_file(write(tmp_path / "good.csv", "30,1"), dataset_labels())
    before = store.current(dataset_labels()).copy()
    with pytest.raises(LabelError) as raised:
        store.add_file(write(tmp_path / "empty_or_bad.csv", *lines), dataset_labels())
    assert message in str(raised.value)
    assert "empty_or_bad.csv" in str(raised.value)
    assert len(store.versions()) == 1
    assert np.array_equal(store.current(dataset_labels()), before)


def test_missing_file_and_allow_changes(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="nope.csv: label file not found"):
        read_new_labels(tmp_path / "nope.csv", N)
    merged = merge_labels(dataset_labels(), read_new_labels(
        write(tmp_path / "fix.csv", "2,5"), N), allow_changes=True)
    assert merged.changed == 1 and merged.labels[1] == 5


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["image_id,label", "50,3", "1001,2"], "image id 1001 is not in 1..1000"),
        (["image_id,label", "0,3"], "image id 0 is not in 1..1000"),
        (["image_id,label", "70,3", "70,4"], "conflicting labels 3 and 4"),
        (["image_id,label", "50,10"], "label 10 is out of range 0..9"),
        (["image_id,label", "50,-1"], "out of range"),
        (["image_id,label", "50,cat"], "'cat' is not an integer"),
        (["label,image_id", "50,3"], "expected 'image_id,label'"),
        (["image_id,label,comment", "50,3,sure"], "got 3"),
        (["image_id,label,comment", "50,3"], "image_id,label"),
        (["image_id,label", "50,3,sure"], "got 3"),
        (["image_id,label", "2,3"], "contradict existing clean labels"),
    ],
)
def test_labels_add_refuses_bad_input_and_merges_nothing(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    dataset_clean = np.full(1000, UNKNOWN)
    dataset_clean[:10] = 7  # image 2 is known to be class 7: a "3" for it contradicts
    store = CleanLabelStore(tmp_path / "cache", "cd" * 32)
    store.add_file(write_label_csv(tmp_path / "good.csv", [(20, "1"), (21, "2")]), dataset_clean)
    before = store.current(dataset_clean).copy()
    # A good row first: a bad file must not merge even its good rows.
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], "30,5", *lines[1:]]) + "\n")
    with pytest.raises(LabelError, match=re.escape(message)) as raised:
        store.add_file(bad, dataset_clean)
    assert "bad.csv" in str(raised.value)
    assert np.array_equal(store.current(dataset_clean), before)
    assert len(store.versions()) == 1
