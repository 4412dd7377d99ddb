"""Ingestion: every validation error names its culprit; RGB order; cache; round trip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from package_copy import ROOT, installed_layout, run_in_copy

from relabel import IMAGE_SHAPE
from relabel.fileio import sha256_file
from relabel.tasks.demodata import generate_demo_data
from relabel.tasks.ingest import (
    UNKNOWN,
    IngestError,
    clean_labels_from_rows,
    ingest,
    load_dataset,
    read_label_rows,
)

REFERENCE = ROOT.parent / "shared" / "data" / "course"


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demo_data(
        tmp_path_factory.mktemp("demo") / "data", num_train=300, num_clean=100, num_test=50
    )


@pytest.fixture()
def data(demo_source: Path, tmp_path: Path) -> Path:
    """A private, mutable copy of the demo dataset."""
    return Path(shutil.copytree(demo_source, tmp_path / "data"))


def _expect_error(data: Path, tmp_path: Path, *fragments: str) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(IngestError) as info:
        ingest(data, cache)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    # Nothing partial is left behind: no dataset folder, no index entry.
    assert not (cache / "datasets").exists() or not any((cache / "datasets").iterdir())
    assert not (cache / "index").exists()


def test_round_trip_on_demo_data(data: Path, tmp_path: Path) -> None:
    result = ingest(data, tmp_path / "cache")
    ds = result.load()
    assert ds.images.shape == (300, *IMAGE_SHAPE) and ds.images.dtype == np.uint8
    assert ds.test_images is not None and ds.test_images.shape == (50, *IMAGE_SHAPE)
    np.testing.assert_array_equal(ds.noisy_labels, np.loadtxt(data / "noisy_labels.csv", int))
    truth = np.loadtxt(data / "true_labels.csv", dtype=int)
    np.testing.assert_array_equal(ds.clean_labels[:100], truth[:100])
    assert (ds.clean_labels[100:] == UNKNOWN).all()
    np.testing.assert_array_equal(ds.test_labels, np.loadtxt(data / "test_labels.csv", int))
    summary = result.summary
    assert summary["num_images"] == 300 and summary["num_clean"] == 100
    assert summary["num_test"] == 50
    expected_noise = float((ds.noisy_labels[:100] != truth[:100]).mean())
    assert summary["noise_rate"] == pytest.approx(expected_noise)
    assert sum(summary["noisy_class_balance"].values()) == 300
    assert ds.content_hash == result.content_hash


def test_pixels_are_rgb_not_bgr(data: Path, tmp_path: Path) -> None:
    rgb = np.zeros(IMAGE_SHAPE, np.uint8)
    rgb[..., 0] = 200  # pure red in RGB
    rgb[..., 2] = 10
    cv2.imwrite(str(data / "images" / "00001.png"), rgb[..., ::-1])  # OpenCV writes BGR
    ds = ingest(data, tmp_path / "cache").load()
    np.testing.assert_array_equal(ds.images[0], rgb)


def test_grayscale_and_opaque_rgba_are_converted(data: Path, tmp_path: Path) -> None:
    gray = np.full(IMAGE_SHAPE[:2], 77, np.uint8)
    cv2.imwrite(str(data / "images" / "00002.png"), gray)
    bgra = np.dstack([np.full(IMAGE_SHAPE[:2], v, np.uint8) for v in (1, 2, 3, 255)])
    cv2.imwrite(str(data / "images" / "00003.png"), bgra)
    ds = ingest(data, tmp_path / "cache").load()
    assert (ds.images[1] == 77).all()
    np.testing.assert_array_equal(ds.images[2][0, 0], [3, 2, 1])


def test_transparent_rgba_is_refused(data: Path, tmp_path: Path) -> None:
    bgra = np.zeros((*IMAGE_SHAPE[:2], 4), np.uint8)
    bgra[..., 3] = 128
    cv2.imwrite(str(data / "images" / "00004.png"), bgra)
    _expect_error(data, tmp_path, "00004.png", "transparent")


def test_wrong_size_names_file(data: Path, tmp_path: Path) -> None:
    cv2.imwrite(str(data / "images" / "00005.png"), np.zeros((28, 30, 3), np.uint8))
    _expect_error(data, tmp_path, "00005.png", "30x28", "expected 32x32")


def test_corrupt_png_names_file(data: Path, tmp_path: Path) -> None:
    (data / "images" / "00006.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _expect_error(data, tmp_path, "00006.png", "corrupt")


def test_missing_image_names_file(data: Path, tmp_path: Path) -> None:
    (data / "images" / "00007.png").unlink()
    _expect_error(data, tmp_path, "00007.png", "missing")


def test_extra_image_is_a_count_mismatch(data: Path, tmp_path: Path) -> None:
    shutil.copy(data / "images" / "00001.png", data / "images" / "00301.png")
    _expect_error(data, tmp_path, "noisy_labels.csv", "300 labels but 301 images")


def test_unexpected_file_in_image_folder(data: Path, tmp_path: Path) -> None:
    (data / "images" / "notes.txt").write_text("hello")
    _expect_error(data, tmp_path, "notes.txt", "unexpected")


def test_empty_image_folder(data: Path, tmp_path: Path) -> None:
    shutil.rmtree(data / "images")
    (data / "images").mkdir()
    _expect_error(data, tmp_path, "images", "no images")


def test_label_count_mismatch(data: Path, tmp_path: Path) -> None:
    lines = (data / "noisy_labels.csv").read_text().splitlines()
    (data / "noisy_labels.csv").write_text("\n".join(lines[:-2]) + "\n")
    _expect_error(data, tmp_path, "noisy_labels.csv", "298 labels but 300 images")


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [("12", "label 12 is out of range 0..9"), ("-1", "label -1 is out of range"),
     ("3.5", "'3.5' is not an integer"), ("", "empty line"), (" ", "'(empty)' is not an integer")],
)
def test_bad_label_names_line(data: Path, tmp_path: Path, bad: str, fragment: str) -> None:
    lines = (data / "noisy_labels.csv").read_text().splitlines()
    lines[41] = bad  # line 42 of the file
    (data / "noisy_labels.csv").write_text("\n".join(lines) + "\n")
    _expect_error(data, tmp_path, "noisy_labels.csv:42", fragment)


def test_header_line_is_accepted(data: Path, tmp_path: Path) -> None:
    path = data / "clean_labels.csv"
    path.write_text("label\n" + path.read_text())
    ds = ingest(data, tmp_path / "cache").load()
    truth = np.loadtxt(data / "true_labels.csv", dtype=int)
    np.testing.assert_array_equal(ds.clean_labels[:100], truth[:100])


def test_more_clean_labels_than_images(data: Path, tmp_path: Path) -> None:
    (data / "clean_labels.csv").write_text("1\n" * 301)
    _expect_error(data, tmp_path, "clean_labels.csv", "301 clean labels but only 300 images")


def test_test_label_count_mismatch(data: Path, tmp_path: Path) -> None:
    (data / "test_labels.csv").write_text("1\n" * 49)
    _expect_error(data, tmp_path, "test_labels.csv", "49 labels but 50 images")


def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="dataset folder not found"):
        ingest(tmp_path / "nope", tmp_path / "cache")


def test_id_label_rows_and_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text("image_id,label\n5,3\n9,1\n5,3\n")
    ids, labels = read_label_rows(path)
    clean = clean_labels_from_rows(ids, labels, 10, path)
    assert clean[4] == 3 and clean[8] == 1 and (clean[[0, 1, 2, 3, 5, 6, 7, 9]] == UNKNOWN).all()
    path.write_text("image_id,label\n5,3\n5,4\n")
    ids, labels = read_label_rows(path)
    with pytest.raises(IngestError, match="image id 5 has conflicting labels 3 and 4"):
        clean_labels_from_rows(ids, labels, 10, path)
    path.write_text("image_id,label\n11,3\n")
    ids, labels = read_label_rows(path)
    with pytest.raises(IngestError, match=r"new.csv:2: image id 11 is not in 1..10"):
        clean_labels_from_rows(ids, labels, 10, path)


def test_reingest_is_served_from_cache(data: Path, tmp_path: Path) -> None:
    first = ingest(data, tmp_path / "cache")
    second = ingest(data, tmp_path / "cache")
    assert not first.from_cache and second.from_cache
    assert second.dataset_dir == first.dataset_dir
    # Touching a file changes the fingerprint but not the content: same artifact, re-verified.
    os.utime(data / "images" / "00001.png", ns=(1, 1))
    third = ingest(data, tmp_path / "cache")
    assert third.content_hash == first.content_hash and third.from_cache
    # Changing a label changes the content hash.
    lines = (data / "noisy_labels.csv").read_text().splitlines()
    lines[0] = str((int(lines[0]) + 1) % 10)
    (data / "noisy_labels.csv").write_text("\n".join(lines) + "\n")
    fourth = ingest(data, tmp_path / "cache")
    assert fourth.content_hash != first.content_hash and not fourth.from_cache


_INGEST_IN_COPY = """
import json
from relabel.tasks import ingest
result = ingest.ingest(sys.argv[1], sys.argv[2])
print(json.dumps({"from_cache": result.from_cache, "dataset_dir": str(result.dataset_dir),
                  "content_hash": result.content_hash, "ingest_py": ingest.__file__}))
"""


@pytest.mark.slow
def test_edited_ingest_code_reingests_and_unedited_code_is_served_from_cache(
    data: Path, tmp_path: Path
) -> None:
    """A copy of the package ingests into the same cache as this checkout's code; between
    its runs, a comment in the copy's tasks/ingest.py changes."""
    cache = tmp_path / "cache"
    first = ingest(data, cache)
    written = {p.name: sha256_file(p) for p in first.dataset_dir.iterdir()}
    src = installed_layout(tmp_path / "src")

    def ingest_in_copy() -> dict[str, object]:
        report = run_in_copy(src, _INGEST_IN_COPY, str(data), str(cache), cwd=tmp_path)
        assert str(report["ingest_py"]).startswith(str(src))
        return report

    # The same source elsewhere is the same code.
    unedited = ingest_in_copy()
    assert unedited["from_cache"] and unedited["dataset_dir"] == str(first.dataset_dir)
    ingest_py = src / "relabel" / "tasks" / "ingest.py"
    ingest_py.write_text(ingest_py.read_text() + "# edited\n")
    edited = ingest_in_copy()
    assert not edited["from_cache"]
    assert edited["content_hash"] == first.content_hash  # the data hash names the data
    assert edited["dataset_dir"] != str(first.dataset_dir)
    assert {p.name: sha256_file(p) for p in first.dataset_dir.iterdir()} == written
    rerun = ingest_in_copy()
    assert rerun["from_cache"] and rerun["dataset_dir"] == edited["dataset_dir"]
    # The checkout's code still finds its own artifact.
    assert ingest(data, cache).dataset_dir == first.dataset_dir


def test_failed_reingest_keeps_previous_artifact(data: Path, tmp_path: Path) -> None:
    good = ingest(data, tmp_path / "cache")
    (data / "images" / "00010.png").write_bytes(b"garbage")
    with pytest.raises(IngestError, match="00010.png"):
        ingest(data, tmp_path / "cache")
    assert load_dataset(good.dataset_dir).num_images == 300


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/data/course is absent")
def test_reference_dataset(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A cache of its own: the project's .relabel-cache would be left behind in the tree.
    result = ingest(REFERENCE, tmp_path_factory.mktemp("reference-cache"))
    ds = result.load()
    assert ds.images.shape == (50000, *IMAGE_SHAPE)
    assert int(ds.clean_mask.sum()) == 10000 and ds.clean_mask[:10000].all()
    assert ds.noisy_labels.min() >= 0 and ds.noisy_labels.max() <= 9
    assert result.summary["noise_rate"] == pytest.approx(0.60, abs=0.02)
    means = ds.images[:5000].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(means, [125.3, 123.0, 113.9], atol=2.5)  # RGB order


def test_a_label_edit_that_keeps_size_and_mtime_is_seen(data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = ingest(data, cache)
    csv_path = data / "noisy_labels.csv"
    stat = csv_path.stat()
    lines = csv_path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.strip().isdigit())
    lines[row] = str((int(lines[row]) + 1) % 10)  # one digit for one digit: same size
    csv_path.write_text("\n".join(lines) + "\n")
    os.utime(csv_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert csv_path.stat().st_size == stat.st_size
    second = ingest(data, cache)
    assert not second.from_cache and second.content_hash != first.content_hash


def test_a_corrupt_cache_index_is_a_miss_not_a_failure(
        data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    first = ingest(data, cache)
    (index,) = (cache / "index").glob("*.json")
    index.write_text('{"content_ha')  # truncated by a crash
    with caplog.at_level("WARNING", logger="relabel.tasks.ingest"):
        again = ingest(data, cache)
    assert again.content_hash == first.content_hash
    assert [r.getMessage() for r in caplog.records
            if str(index) in r.getMessage() and "ingesting again" in r.getMessage()]
    assert ingest(data, cache).from_cache  # the index was rewritten


@pytest.mark.parametrize("unreadable", ["noisy_labels.csv", "images"])
def test_a_label_file_or_image_folder_the_os_refuses_is_named(
        data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unreadable: str) -> None:
    # Permission bits do not stop root (CI runs as root), so the OS's refusal is injected
    # where ingest reads: the same PermissionError a chmod 000 gives a normal user.
    import builtins

    refused = data / unreadable
    open_file, scandir = builtins.open, os.scandir

    def refuse(path: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(builtins, "open", lambda path, *args, **kwargs: refuse(path)
                        if Path(path) == refused else open_file(path, *args, **kwargs))
    monkeypatch.setattr(os, "scandir", lambda path=".": refuse(path)
                        if Path(path) == refused else scandir(path))
    with pytest.raises(IngestError, match=f"{refused}: cannot (read|list).*Permission denied"):
        ingest(data, tmp_path / "cache")
    assert not (tmp_path / "cache" / "index").exists() or not any(
        (tmp_path / "cache" / "index").iterdir())  # nothing cached for a failed ingest


def test_line_numbers_are_right_with_and_without_a_header(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    for text, line in (("5,3\n11,3\n", 2), ("image_id,label\n5,3\n11,3\n", 3)):
        path.write_text(text)
        ids, labels = read_label_rows(path)
        with pytest.raises(IngestError, match=rf"new.csv:{line}: image id 11 is not in 1..10"):
            clean_labels_from_rows(ids, labels, 10, path)
    path.write_text("5,3\n5,4\n")
    ids, labels = read_label_rows(path)
    with pytest.raises(IngestError, match=r"conflicting labels 3 and 4 \(lines 1 and 2\)"):
        clean_labels_from_rows(ids, labels, 10, path)


def test_columns_in_the_wrong_order_are_named(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text("label,image_id\n3,5\n")
    with pytest.raises(IngestError, match=r"new.csv:1: columns are in the wrong order"):
        read_label_rows(path)


def test_old_mac_line_endings_are_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes(b"3\r1\r4\r")
    assert read_label_rows(path)[1].tolist() == [3, 1, 4]


def test_an_id_too_large_for_an_integer_is_named(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text("image_id,label\n99999999999999999999999,3\n")
    with pytest.raises(IngestError, match=r"new.csv:2: image id 9+ is too large"):
        read_label_rows(path)


def test_an_empty_png_is_named(data: Path, tmp_path: Path) -> None:
    (data / "images" / "00003.png").write_bytes(b"")
    _expect_error(data, tmp_path, "00003.png", "empty file (0 bytes)")


def test_two_files_for_one_image_id_are_refused_naming_both(data: Path, tmp_path: Path) -> None:
    shutil.copy(data / "images" / "00002.png", data / "images" / "0002.png")
    _expect_error(data, tmp_path, "0002.png", "00002.png", "both name image 2")


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_a_broken_link_for_an_image_is_named(data: Path, tmp_path: Path, kind: str) -> None:
    image = data / "images" / "00004.png"
    image.unlink()
    if kind == "dangling":
        image.symlink_to(tmp_path / "gone.png")
    else:
        image.symlink_to(image)
    _expect_error(data, tmp_path, "00004.png", "broken or looping link")


def test_os_junk_is_ignored_and_other_strays_get_the_rule(data: Path, tmp_path: Path) -> None:
    for junk in ("Thumbs.db", "desktop.ini", ".DS_Store"):
        (data / "images" / junk).write_bytes(b"junk")
    assert ingest(data, tmp_path / "ok-cache").summary["num_images"] > 0
    (data / "images" / "notes.txt").write_text("x")
    _expect_error(data, tmp_path, "notes.txt", "must be named <number>.png, e.g. 00001.png")
