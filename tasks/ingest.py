"""Ingestion: validate a user's dataset folder and turn it into a content-addressed artifact.

Layout read (the one users hand over)::

    DATA/images/00001.png ...        N training images, 1-based, zero-padded
    DATA/noisy_labels.csv            N lines, one label per image (header line optional)
    DATA/clean_labels.csv            M <= N lines: true labels of images 1..M,
                                     or "image_id,label" rows for any subset
    DATA/images_test/test00001.png   optional test folder
    DATA/test_labels.csv             optional, one label per test image

Images are decoded with OpenCV on a thread pool (`cv2.imdecode` and `hashlib` release the
GIL, so threads use every core with no copies between processes) straight into one
preallocated `uint8 [N, 32, 32, 3]` RGB array. Grayscale images and RGBA images whose alpha
is fully opaque are converted to RGB; RGBA with any transparency, 16-bit images and any
size other than 32x32 are refused, since there is no faithful way to convert them.

Everything is validated before anything is written; every error names the file or the CSV
line. The artifact is a folder of `.npy` files (memory-mappable: re-loading is instant)
named by a SHA-256 over every input byte (the data hash runs are named by) and by the
fingerprint of the code that wrote it (this module, every relabel module it imports and
the package version: `ingest_code_fingerprint`), so an edited ingest writes a new folder
and never serves arrays another version decoded, nor overwrites them. A stat fingerprint
(names, sizes, mtimes, and the code fingerprint) maps an unchanged folder to its artifact
without reading the images again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from relabel.code_fingerprint import module_fingerprint
from relabel.constants import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES
from relabel.fileio import atomic_directory, sha256_file, sha256_text, write_json_atomic
from relabel.progress import track

log = logging.getLogger(__name__)

TRAIN_DIR, TEST_DIR = "images", "images_test"
NOISY_CSV, CLEAN_CSV, TEST_LABELS_CSV = "noisy_labels.csv", "clean_labels.csv", "test_labels.csv"
TRAIN_NAME = re.compile(r"^(\d+)\.png$")
TEST_NAME = re.compile(r"^test(\d+)\.png$")
UNKNOWN = -1  # label value for "no clean label known"
MAX_LISTED_ERRORS = 10
# Files that file managers leave in folders; ignored wherever they appear (dotfiles too).
OS_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})
# Part of the data hash: bump when the arrays' format changes. (Any edit of the ingest code
# already re-ingests: the cache keys on `ingest_code_fingerprint`.)
ARTIFACT_VERSION = "1"


class IngestError(ValueError):
    """Bad input. The message names the file (and line) at fault."""


@dataclass(frozen=True)
class Dataset:
    """A validated dataset. Image ids are 1-based: `images[i]` is image id `i + 1`."""

    images: np.ndarray  # uint8 [N, 32, 32, 3], RGB
    noisy_labels: np.ndarray  # int64 [N]
    clean_labels: np.ndarray  # int64 [N], UNKNOWN (-1) where no clean label exists
    test_images: np.ndarray | None = None  # uint8 [T, 32, 32, 3]
    test_labels: np.ndarray | None = None  # int64 [T] when a test-labels file was given
    content_hash: str = ""
    path: Path | None = None

    @property
    def clean_mask(self) -> np.ndarray:
        return self.clean_labels >= 0

    @property
    def clean_indices(self) -> np.ndarray:
        return np.flatnonzero(self.clean_mask)

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])



@dataclass(frozen=True)
class IngestResult:
    dataset_dir: Path
    content_hash: str
    summary: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False

    def load(self, mmap: bool = True) -> Dataset:
        return load_dataset(self.dataset_dir, mmap=mmap)


# ---------------------------------------------------------------------------- label CSVs


def _looks_like_header(fields: Sequence[str]) -> bool:
    return any(re.search(r"[A-Za-z]", f) for f in fields)


def read_label_rows(
    path: str | os.PathLike[str], *, allow_empty_label: bool = False
) -> tuple[np.ndarray | None, np.ndarray]:
    """Parse a label CSV: one label per line, or `image_id,label` rows; header optional.

    Returns `(ids, labels)`; `ids` is None for the one-column form (labels are positional).
    With `allow_empty_label`, an empty label becomes UNKNOWN (request lists to fill in).
    Raises IngestError naming `path:line` for anything that is not an integer in 0..9.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: label file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror})") from None
    # Windows (CRLF) and old-Mac (CR-only) line endings count as line ends.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    rows = list(csv.reader(io.StringIO(text)))
    while rows and not any(f.strip() for f in rows[-1]):
        rows.pop()  # trailing blank lines
    first = 0
    if rows and _looks_like_header(rows[0]):
        first = 1
        header = [f.strip().lower() for f in rows[0]]
        if len(header) == 2 and "label" in header[0] and "id" in header[1]:
            raise IngestError(f"{path}:1: columns are in the wrong order: header "
                              f"{','.join(rows[0])!r}, expected 'image_id,label'")
    if len(rows) <= first:
        raise IngestError(f"{path}: no labels in file")
    width = len(rows[first])
    if width not in (1, 2):
        raise IngestError(
            f"{path}:{first + 1}: expected 1 column (label) or 2 (image_id,label), got {width}"
        )
    ids = np.empty(len(rows) - first, dtype=np.int64) if width == 2 else None
    labels = np.empty(len(rows) - first, dtype=np.int64)
    for k, row in enumerate(rows[first:]):
        line = first + k + 1
        if not row:
            raise IngestError(f"{path}:{line}: empty line, expected a label")
        if len(row) != width:
            raise IngestError(f"{path}:{line}: expected {width} column(s), got {len(row)}")
        if ids is not None:
            ids[k] = _parse_int(row[0], path, line, "image id")
        raw = row[-1].strip()
        if raw == "" and allow_empty_label:
            labels[k] = UNKNOWN
            continue
        value = _parse_int(raw, path, line, "label")
        if not 0 <= value < NUM_CLASSES:
            raise IngestError(
                f"{path}:{line}: label {value} is out of range 0..{NUM_CLASSES - 1}"
            )
        labels[k] = value
    return ids, labels


def _first_data_line(path: Path) -> int:
    """1-based line number of the first label row of a CSV that read_label_rows accepted:
    2 after a header line, else 1."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        first = next(csv.reader(io.StringIO(handle.readline().replace("\r", "\n"))), [])
    return 2 if _looks_like_header(first) else 1


def _parse_int(raw: str, path: Path, line: int, what: str) -> int:
    raw = raw.strip()
    try:
        value = int(raw)
    except ValueError:
        shown = raw if raw else "(empty)"
        raise IngestError(f"{path}:{line}: {what} {shown!r} is not an integer") from None
    if abs(value) >= 2**62:
        raise IngestError(f"{path}:{line}: {what} {raw} is too large")
    return value


def clean_labels_from_rows(
    ids: np.ndarray | None, labels: np.ndarray, num_images: int, path: Path
) -> np.ndarray:
    """Full-length clean-label vector (UNKNOWN where not given) from parsed rows."""
    clean = np.full(num_images, UNKNOWN, dtype=np.int64)
    if ids is None:
        if len(labels) > num_images:
            raise IngestError(
                f"{path}: {len(labels)} clean labels but only {num_images} images"
            )
        clean[: len(labels)] = labels
        return clean
    first_line = _first_data_line(path)
    bad = np.flatnonzero((ids < 1) | (ids > num_images))
    if bad.size:
        raise IngestError(
            f"{path}:{bad[0] + first_line}: image id {ids[bad[0]]} is not in 1..{num_images}"
        )
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(np.diff(ids[order]) == 0)
    for d in dup:
        a, b = order[d], order[d + 1]
        if labels[a] != labels[b]:
            raise IngestError(
                f"{path}: image id {ids[a]} has conflicting labels {labels[a]} and "
                f"{labels[b]} (lines {a + first_line} and {b + first_line})"
            )
    clean[ids - 1] = labels
    return clean


# ------------------------------------------------------------------------ image folders


def _list_numbered_pngs(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """The folder's PNGs sorted by number, checking that they are exactly 1..K."""
    if not folder.is_dir():
        raise IngestError(f"{folder}: image folder not found")
    numbered: dict[int, Path] = {}
    unexpected: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise IngestError(f"{folder}: cannot list the image folder ({exc.strerror})") from None
    for entry in entries:
        if entry.name.startswith(".") or entry.name.lower() in OS_JUNK_FILES:
            continue
        match = pattern.match(entry.name)
        if match is None:
            unexpected.append(entry.name)
            continue
        try:
            regular = entry.is_file()  # follows links: a dangling link is not a file
        except OSError:  # a link loop
            regular = False
        if not regular:
            kind = "a broken or looping link" if entry.is_symlink() else "not a regular file"
            raise IngestError(f"{folder / entry.name}: {kind}, expected a PNG image")
        number = int(match.group(1))
        if number in numbered:
            raise IngestError(f"{numbered[number]} and {folder / entry.name} both name image "
                              f"{number}: keep one")
        numbered[number] = Path(entry.path)
    if unexpected:
        shown = ", ".join(unexpected[:MAX_LISTED_ERRORS])
        rule = ("test<number>.png, e.g. test00001.png" if pattern is TEST_NAME
                else "<number>.png, e.g. 00001.png")
        raise IngestError(
            f"{folder}: {len(unexpected)} unexpected file(s): {shown}. Image files must be "
            f"named {rule}; hidden files and OS files ({', '.join(sorted(OS_JUNK_FILES))}) "
            "are ignored; move anything else out of the folder"
        )
    if not numbered:
        raise IngestError(f"{folder}: no images in folder")
    count = len(numbered)
    missing = [i for i in range(1, count + 1) if i not in numbered]
    if missing:
        extra = sorted(i for i in numbered if i > count)
        raise IngestError(
            f"{folder}: images are not numbered 1..{count}: missing "
            f"{_names(folder, pattern, missing)}; beyond the end: "
            f"{_names(folder, pattern, extra)}"
        )
    return [numbered[i] for i in range(1, count + 1)]


def _names(folder: Path, pattern: re.Pattern[str], numbers: list[int]) -> str:
    prefix = "test" if pattern is TEST_NAME else ""
    shown = [f"{prefix}{n:05d}.png" for n in numbers[:MAX_LISTED_ERRORS]]
    more = f" (+{len(numbers) - len(shown)} more)" if len(numbers) > len(shown) else ""
    return (", ".join(shown) or "none") + more


def _to_rgb(decoded: np.ndarray | None, path: Path) -> np.ndarray:
    if decoded is None:
        raise IngestError(f"{path}: unreadable or corrupt image (OpenCV could not decode it)")
    if decoded.dtype != np.uint8:
        raise IngestError(f"{path}: {decoded.dtype} pixels; only 8-bit images are accepted")
    if decoded.shape[:2] != IMAGE_SHAPE[:2]:
        h, w = decoded.shape[:2]
        raise IngestError(
            f"{path}: image is {w}x{h}, expected {IMAGE_SHAPE[1]}x{IMAGE_SHAPE[0]}"
        )
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    channels = decoded.shape[2]
    if channels == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if channels == 4:
        if decoded[..., 3].min() < 255:
            raise IngestError(
                f"{path}: RGBA image with transparent pixels; flatten it onto a background first"
            )
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    raise IngestError(f"{path}: {channels}-channel image; expected RGB")


def decode_images(
    paths: Sequence[Path], workers: int | None = None, progress_label: str = "images"
) -> tuple[np.ndarray, bytes]:
    """Decode PNGs in parallel into one uint8 RGB array.

    Returns `(images, digests)`: `digests` is the concatenated SHA-256 of every file's bytes,
    in order, for the content hash. Raises IngestError listing up to 10 bad files.
    """
    count = len(paths)
    images = np.empty((count, *IMAGE_SHAPE), dtype=np.uint8)
    digests = bytearray(32 * count)
    workers = workers or os.cpu_count() or 1
    chunk = max(256, count // (workers * 8) or 1)
    starts = list(range(0, count, chunk))

    def decode_chunk(start: int) -> list[str]:
        errors = []
        for i in range(start, min(start + chunk, count)):
            path = paths[i]
            try:
                raw = path.read_bytes()
            except OSError as exc:
                errors.append(f"{path}: cannot read ({exc.strerror})")
                continue
            digests[32 * i : 32 * (i + 1)] = hashlib.sha256(raw).digest()
            if not raw:
                errors.append(f"{path}: empty file (0 bytes), expected a PNG image")
                continue
            try:
                decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
                images[i] = _to_rgb(decoded, path)
            except IngestError as exc:
                errors.append(str(exc))
            except cv2.error:
                errors.append(f"{path}: unreadable or corrupt image (OpenCV could not "
                              "decode it)")
        return errors

    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            track(f"decoding {progress_label}", count, "images") as tracker:
        for start, chunk_errors in zip(starts, pool.map(decode_chunk, starts), strict=True):
            errors.extend(chunk_errors)
            tracker.advance(min(chunk, count - start))
    if errors:
        listed = "\n  ".join(errors[:MAX_LISTED_ERRORS])
        more = f"\n  ... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > 10 else ""
        raise IngestError(f"{len(errors)} bad image(s):\n  {listed}{more}")
    return images, bytes(digests)


# ----------------------------------------------------------------------------- ingest


def _size_and_mtime(entry: os.DirEntry[str]) -> tuple[int, int]:
    """Of the file a link points at; of the link itself when it is broken or loops (the
    listing then refuses it, naming it)."""
    try:
        st = entry.stat()
    except OSError:
        st = entry.stat(follow_symlinks=False)
    return st.st_size, st.st_mtime_ns


def ingest_code_fingerprint() -> str:
    """SHA-256 over the source of this module and of every relabel module it imports, and
    the package version: the code that decodes and validates what the cache holds."""
    return module_fingerprint(__name__)


def stat_fingerprint(data_dir: Path) -> str:
    """Cheap identity of the input folder: names, sizes and mtimes of the images, and the
    content of the label CSVs (small: hashing them catches an edit that keeps the size and
    the timestamp); with the ingest code's fingerprint, so edited code misses."""
    parts = [ingest_code_fingerprint(), str(data_dir.resolve())]
    for sub in (TRAIN_DIR, TEST_DIR):
        folder = data_dir / sub
        if folder.is_dir():
            try:
                with os.scandir(folder) as entries:
                    stats = sorted((e.name, *_size_and_mtime(e)) for e in entries)
            except OSError as exc:
                raise IngestError(f"{folder}: cannot list the image folder "
                                  f"({exc.strerror})") from None
            parts.append(f"{sub}:{stats}")
    for name in (NOISY_CSV, CLEAN_CSV, TEST_LABELS_CSV):
        path = data_dir / name
        if path.is_file():
            try:
                parts.append(f"{name}:{sha256_file(path)}")
            except OSError as exc:
                raise IngestError(f"{path}: cannot read ({exc.strerror})") from None
    return sha256_text("\n".join(parts))


def ingest(
    data_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    workers: int | None = None,
) -> IngestResult:
    """Validate `data_dir` and write (or reuse) its dataset artifact under `cache_dir`."""
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    if not data_dir.is_dir():
        raise IngestError(f"{data_dir}: dataset folder not found")
    fingerprint = stat_fingerprint(data_dir)
    index_file = cache_dir / "index" / f"{fingerprint}.json"
    cached = _read_cache_index(index_file, cache_dir)
    if cached is not None:
        return cached

    started = time.perf_counter()
    dataset, digest_parts = _read_and_validate(data_dir, workers)
    content_hash = hashlib.sha256(b"".join(digest_parts)).hexdigest()
    dataset_dir = _dataset_dir(cache_dir, content_hash)
    summary = summarize(dataset, content_hash)
    summary["ingest_code"] = ingest_code_fingerprint()
    summary["source"] = str(data_dir.resolve())
    summary["ingest_seconds"] = round(time.perf_counter() - started, 3)
    from_cache = (dataset_dir / "summary.json").is_file()
    if not from_cache:
        with atomic_directory(dataset_dir) as tmp:
            np.save(tmp / "images.npy", dataset.images)
            np.save(tmp / "noisy_labels.npy", dataset.noisy_labels)
            np.save(tmp / "clean_labels.npy", dataset.clean_labels)
            if dataset.test_images is not None:
                np.save(tmp / "test_images.npy", dataset.test_images)
            if dataset.test_labels is not None:
                np.save(tmp / "test_labels.npy", dataset.test_labels)
            write_json_atomic(tmp / "summary.json", summary)
    write_json_atomic(index_file, {"content_hash": content_hash, "source": str(data_dir)})
    log.info("ingested %s -> %s (%.1f s)", data_dir, dataset_dir, summary["ingest_seconds"])
    return IngestResult(dataset_dir, content_hash, summary, from_cache=from_cache)


def _dataset_dir(cache_dir: Path, content_hash: str) -> Path:
    """Where this code keeps the artifact of `content_hash`: named by the data and by the
    ingest code, so a folder other code wrote (an older relabel, an edited ingest.py) is
    neither reused nor overwritten (cached runs may still point at it)."""
    return cache_dir / "datasets" / f"{content_hash[:16]}-{ingest_code_fingerprint()[:16]}"


def _read_cache_index(index_file: Path, cache_dir: Path) -> IngestResult | None:
    """The cached ingest of an unchanged folder, or None. A corrupt or truncated index or
    summary (a crash, a full disk) is a miss, logged, never a permanent failure: the
    dataset is ingested again and the index rewritten."""
    if not index_file.is_file():
        return None
    try:
        content_hash = json.loads(index_file.read_text())["content_hash"]
        dataset_dir = _dataset_dir(cache_dir, content_hash)
        if not (dataset_dir / "summary.json").is_file():
            return None
        summary = json.loads((dataset_dir / "summary.json").read_text())
    except (ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("ignoring unreadable ingest cache entry %s (%s): ingesting again",
                    index_file, exc)
        return None
    return IngestResult(dataset_dir, content_hash, summary, from_cache=True)


def _read_and_validate(data_dir: Path, workers: int | None) -> tuple[Dataset, list[bytes]]:
    noisy_path = data_dir / NOISY_CSV
    noisy_ids, noisy = read_label_rows(noisy_path)
    if noisy_ids is not None:
        noisy = clean_labels_from_rows(noisy_ids, noisy, len(noisy), noisy_path)
        if (noisy == UNKNOWN).any():
            raise IngestError(f"{noisy_path}: every image needs a noisy label")
    train_paths = _list_numbered_pngs(data_dir / TRAIN_DIR, TRAIN_NAME)
    if len(train_paths) != len(noisy):
        raise IngestError(
            f"{noisy_path}: {len(noisy)} labels but {len(train_paths)} images in "
            f"{data_dir / TRAIN_DIR}"
        )
    clean_path = data_dir / CLEAN_CSV
    if clean_path.is_file():
        clean_ids, clean_rows = read_label_rows(clean_path)
        clean = clean_labels_from_rows(clean_ids, clean_rows, len(noisy), clean_path)
        clean_bytes = clean_path.read_bytes()
    else:
        clean, clean_bytes = np.full(len(noisy), UNKNOWN, dtype=np.int64), b""

    test_dir = data_dir / TEST_DIR
    test_paths = _list_numbered_pngs(test_dir, TEST_NAME) if test_dir.is_dir() else []
    test_labels = None
    test_labels_path = data_dir / TEST_LABELS_CSV
    if test_labels_path.is_file():
        if not test_paths:
            raise IngestError(f"{test_labels_path}: test labels given but no {test_dir}")
        _, test_labels = read_label_rows(test_labels_path)
        if len(test_labels) != len(test_paths):
            raise IngestError(
                f"{test_labels_path}: {len(test_labels)} labels but {len(test_paths)} "
                f"images in {test_dir}"
            )

    images, train_digests = decode_images(train_paths, workers, "training images")
    test_images, test_digests = (
        decode_images(test_paths, workers, "test images") if test_paths else (None, b"")
    )
    parts = [
        ARTIFACT_VERSION.encode(),
        train_digests,
        test_digests,
        hashlib.sha256(noisy_path.read_bytes()).digest(),
        hashlib.sha256(clean_bytes).digest(),
        hashlib.sha256(
            test_labels_path.read_bytes() if test_labels is not None else b""
        ).digest(),
    ]
    dataset = Dataset(images, noisy, clean, test_images, test_labels)
    return dataset, parts


def load_dataset(dataset_dir: str | os.PathLike[str], mmap: bool = True) -> Dataset:
    """Load an ingested artifact; with `mmap` the image arrays are memory-mapped, read-only."""
    dataset_dir = Path(dataset_dir)
    summary_file = dataset_dir / "summary.json"
    if not summary_file.is_file():
        raise IngestError(f"{dataset_dir}: not an ingested dataset (no summary.json)")
    mode = "r" if mmap else None

    def optional(name: str) -> np.ndarray | None:
        path = dataset_dir / name
        return np.load(path, mmap_mode=mode) if path.is_file() else None

    return Dataset(
        images=np.load(dataset_dir / "images.npy", mmap_mode=mode),
        noisy_labels=np.load(dataset_dir / "noisy_labels.npy"),
        clean_labels=np.load(dataset_dir / "clean_labels.npy"),
        test_images=optional("test_images.npy"),
        test_labels=optional("test_labels.npy"),
        content_hash=json.loads(summary_file.read_text())["content_hash"],
        path=dataset_dir,
    )


def summarize(dataset: Dataset, content_hash: str) -> dict[str, Any]:
    """Counts, class balance and the observed noise rate where both labels are known."""
    mask = dataset.clean_mask
    both = int(mask.sum())
    disagree = dataset.noisy_labels[mask] != dataset.clean_labels[mask]

    def balance(labels: np.ndarray | None) -> dict[str, int] | None:
        if labels is None:
            return None
        counts = np.bincount(labels[labels >= 0], minlength=NUM_CLASSES)
        return {name: int(c) for name, c in zip(CLASS_NAMES, counts, strict=True)}

    return {
        "content_hash": content_hash,
        "num_images": dataset.num_images,
        "num_clean": both,
        "num_test": 0 if dataset.test_images is None else int(dataset.test_images.shape[0]),
        "has_test_labels": dataset.test_labels is not None,
        "image_shape": list(IMAGE_SHAPE),
        "noisy_class_balance": balance(dataset.noisy_labels),
        "clean_class_balance": balance(dataset.clean_labels),
        "test_class_balance": balance(dataset.test_labels),
        "noise_rate": float(disagree.mean()) if both else None,
    }
