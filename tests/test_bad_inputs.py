"""Bad input, table-driven: every case goes through the real entry point (`run_cli`, what
the `relabel` command runs) on a fresh copy of a small generated dataset, and must

- exit 2 with one `error: ...` message that names the culprit (file, line, option, URL),
- print no traceback,
- write nothing: no dataset in the cache, no merged label version, no run folder, no
  tracking store,
- and leave everything usable: the same command on good input succeeds right after.

`pytest tests/test_bad_inputs.py` runs the matrix (62 cases, about half a minute).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from relabel.cli import run_cli
from relabel.tasks.demodata import generate_demo_data

NUM_TRAIN, NUM_CLEAN, NUM_TEST = 60, 20, 6


@dataclass(frozen=True)
class Case:
    """`command` is ingest, labels (labels add), run or predict; `mutate(data, work)` breaks
    the dataset copy `data` (or writes files into `work`) and returns extra arguments."""

    id: str
    command: str
    mutate: Callable[[Path, Path], list[str]]
    expect: tuple[str, ...]
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write_lines(path: Path, lines: list[str], end: str = "\n") -> None:
    path.write_text(end.join(lines) + end)


def _set_line(name: str, index: int, value: str) -> Callable[[Path, Path], list[str]]:
    def mutate(data: Path, work: Path) -> list[str]:
        lines = _lines(data / name)
        lines[index] = value
        _write_lines(data / name, lines)
        return []

    return mutate


def _image(name: str, array: np.ndarray) -> Callable[[Path, Path], list[str]]:
    def mutate(data: Path, work: Path) -> list[str]:
        cv2.imwrite(str(data / name), array)
        return []

    return mutate


def _bytes(name: str, content: bytes | Callable[[bytes], bytes]) -> Callable[[Path, Path],
                                                                            list[str]]:
    def mutate(data: Path, work: Path) -> list[str]:
        path = data / name
        path.write_bytes(content(path.read_bytes()) if callable(content) else content)
        return []

    return mutate


def _do(action: Callable[[Path], object]) -> Callable[[Path, Path], list[str]]:
    def mutate(data: Path, work: Path) -> list[str]:
        action(data)
        return []

    return mutate


def _clean_rows(*rows: str, header: str = "image_id,label") -> Callable[[Path, Path],
                                                                           list[str]]:
    """clean_labels.csv in the id,label form (`header=""`: without a header): the first 20
    images' labels, then `rows`."""
    def mutate(data: Path, work: Path) -> list[str]:
        labels = _lines(data / "clean_labels.csv")
        good = [f"{i},{label}" for i, label in enumerate(labels, start=1)]
        _write_lines(data / "clean_labels.csv", [header, *good, *rows] if header
                     else [*good, *rows])
        return []

    return mutate


def _new_labels(text: str) -> Callable[[Path, Path], list[str]]:
    """A labels file for `relabel labels add` (its path becomes the first argument)."""
    def mutate(data: Path, work: Path) -> list[str]:
        path = work / "new_labels.csv"
        path.write_text(text)
        return [str(path)]

    return mutate


def _link(name: str, target: str) -> Callable[[Path, Path], list[str]]:
    def mutate(data: Path, work: Path) -> list[str]:
        (data / name).unlink()
        (data / name).symlink_to(data / target)
        return []

    return mutate


def _cache_is_a_file(data: Path, work: Path) -> list[str]:
    (work / "cache").write_text("not a folder")
    return []


def _nothing(data: Path, work: Path) -> list[str]:
    return []


ZEROS = np.zeros((32, 32, 3), np.uint8)

CASES = [
    # images/
    Case("missing image", "ingest", _do(lambda d: (d / "images/00007.png").unlink()),
         ("images", "missing 00007.png")),
    Case("empty png", "ingest", _bytes("images/00003.png", b""),
         ("images/00003.png", "empty file (0 bytes)")),
    Case("random bytes", "ingest", _bytes("images/00004.png", os.urandom(300)),
         ("images/00004.png", "corrupt")),
    Case("truncated png", "ingest", _bytes("images/00005.png", lambda b: b[:100]),
         ("images/00005.png", "corrupt")),
    Case("wrong size", "ingest", _image("images/00006.png", np.zeros((31, 32, 3), np.uint8)),
         ("images/00006.png", "expected 32x32")),
    Case("transparent rgba", "ingest", _image("images/00009.png", np.zeros((32, 32, 4),
                                                                           np.uint8)),
         ("images/00009.png", "transparent")),
    Case("16-bit png", "ingest", _image("images/00010.png", ZEROS.astype(np.uint16)),
         ("images/00010.png", "8-bit")),
    Case("two files, one id", "ingest",
         _do(lambda d: shutil.copy(d / "images/00007.png", d / "images/7.png")),
         ("images/00007.png", "images/7.png", "both name image 7")),
    Case("stray file", "ingest", _do(lambda d: (d / "images/notes.txt").write_text("x")),
         ("notes.txt", "must be named <number>.png")),
    Case("stray folder", "ingest", _do(lambda d: (d / "images/extra").mkdir()),
         ("extra", "unexpected")),
    Case("no images folder", "ingest", _do(lambda d: shutil.rmtree(d / "images")),
         ("images", "image folder not found")),
    Case("dangling link", "ingest", _link("images/00011.png", "nowhere.png"),
         ("images/00011.png", "broken or looping link")),
    Case("link loop", "ingest", _link("images/00012.png", "images/00012.png"),
         ("images/00012.png", "broken or looping link")),
    Case("gap in ids", "ingest",
         _do(lambda d: (d / "images/00060.png").rename(d / "images/00061.png")),
         ("missing 00060.png", "00061.png")),
    Case("more images than labels", "ingest",
         _do(lambda d: shutil.copy(d / "images/00001.png", d / "images/00061.png")),
         ("noisy_labels.csv", "60 labels but 61 images")),
    # images_test/
    Case("corrupt test image", "ingest", _bytes("images_test/test00003.png", b"nope"),
         ("images_test/test00003.png", "corrupt")),
    Case("stray test file", "ingest",
         _do(lambda d: (d / "images_test/readme.md").write_text("x")),
         ("readme.md", "test<number>.png")),
    # noisy_labels.csv
    Case("no noisy labels", "ingest", _do(lambda d: (d / "noisy_labels.csv").unlink()),
         ("noisy_labels.csv", "label file not found")),
    Case("label 12", "ingest", _set_line("noisy_labels.csv", 6, "12"),
         ("noisy_labels.csv:7", "label 12 is out of range 0..9")),
    Case("label -1", "ingest", _set_line("noisy_labels.csv", 6, "-1"),
         ("noisy_labels.csv:7", "out of range")),
    Case("label word", "ingest", _set_line("noisy_labels.csv", 6, "cat"),
         ("noisy_labels.csv:7", "'cat' is not an integer")),
    Case("label float", "ingest", _set_line("noisy_labels.csv", 6, "3.5"),
         ("noisy_labels.csv:7", "'3.5' is not an integer")),
    Case("blank line", "ingest", _set_line("noisy_labels.csv", 6, ""),
         ("noisy_labels.csv:7", "empty line")),
    Case("a row short", "ingest",
         _do(lambda d: _write_lines(d / "noisy_labels.csv", _lines(d / "noisy_labels.csv")[:-1])),
         ("noisy_labels.csv", "59 labels but 60 images")),
    Case("a row long", "ingest",
         _do(lambda d: _write_lines(d / "noisy_labels.csv",
                                    [*_lines(d / "noisy_labels.csv"), "3"])),
         ("noisy_labels.csv", "61 labels but 60 images")),
    Case("second column", "ingest", _set_line("noisy_labels.csv", 6, "3,4"),
         ("noisy_labels.csv:7", "expected 1 column(s), got 2")),
    Case("empty label file", "ingest", _bytes("noisy_labels.csv", b""),
         ("noisy_labels.csv", "no labels in file")),
    Case("binary label file", "ingest", _bytes("noisy_labels.csv", b"\x00\xff\x00\x12"),
         ("noisy_labels.csv", "not a UTF-8 text file")),
    Case("CR line endings + bad label", "ingest",
         _do(lambda d: _write_lines(d / "noisy_labels.csv",
                                    ["3"] * 4 + ["x"] + ["3"] * 55, end="\r")),
         ("noisy_labels.csv:5", "'x' is not an integer")),
    # clean_labels.csv
    Case("clean label 12", "ingest", _set_line("clean_labels.csv", 3, "12"),
         ("clean_labels.csv:4", "label 12 is out of range")),
    Case("more clean labels than images", "ingest",
         _do(lambda d: _write_lines(d / "clean_labels.csv", ["1"] * 61)),
         ("clean_labels.csv", "61 clean labels but only 60 images")),
    Case("clean id too large", "ingest", _clean_rows("99999999999999999999999,3"),
         ("clean_labels.csv:22", "too large")),
    Case("clean id out of range", "ingest", _clean_rows("61,3"),
         ("clean_labels.csv:22", "image id 61 is not in 1..60")),
    Case("clean id zero", "ingest", _clean_rows("0,3"),
         ("clean_labels.csv:22", "image id 0 is not in 1..60")),
    Case("clean id conflict", "ingest", _clean_rows("1,0", "1,1"),
         ("clean_labels.csv", "conflicting labels")),
    Case("clean columns swapped", "ingest", _clean_rows(header="label,image_id"),
         ("clean_labels.csv:1", "columns are in the wrong order")),
    Case("clean id word", "ingest", _clean_rows("seven,3"),
         ("clean_labels.csv:22", "'seven'")),
    Case("clean rows without header, label 12", "ingest", _clean_rows("21,12", header=""),
         ("clean_labels.csv:21", "12")),
    Case("clean three columns", "ingest", _clean_rows("21,3,4"),
         ("clean_labels.csv:22", "got 3")),
    # the command's own options
    Case("data is a file", "ingest", _nothing, ("noisy_labels.csv", "dataset folder not found"),
         extra=["--data-is-file"]),
    Case("cache dir is a file", "ingest", _cache_is_a_file, ("cache", "Not a directory")),
    # relabel labels add
    Case("new id out of range", "labels", _new_labels("image_id,label\n61,3\n"),
         ("new_labels.csv:2", "image id 61 is not in 1..60")),
    Case("new label out of range", "labels", _new_labels("image_id,label\n30,10\n"),
         ("new_labels.csv:2", "label 10 is out of range")),
    Case("new label word", "labels", _new_labels("image_id,label\n30,dog\n"),
         ("new_labels.csv:2", "'dog' is not an integer")),
    Case("new labels contradict clean ones", "labels", _new_labels("image_id,label\n1,{flip}\n"),
         ("new_labels.csv", "contradict existing clean labels", "--allow-changes")),
    Case("new labels conflict", "labels", _new_labels("image_id,label\n30,1\n30,2\n"),
         ("new_labels.csv", "image id 30 has conflicting labels 1 and 2 (lines 2 and 3)")),
    Case("new labels empty", "labels", _new_labels(""), ("new_labels.csv", "no labels")),
    Case("new labels swapped", "labels", _new_labels("label,image_id\n3,30\n"),
         ("new_labels.csv:1", "wrong order")),
    Case("new id too large", "labels", _new_labels("image_id,label\n99999999999999999999,3\n"),
         ("new_labels.csv:2", "too large")),
    Case("new labels all blank", "labels", _new_labels("image_id,label\n30,\n"),
         ("new_labels.csv", "no labels filled in")),
    # relabel run: refused before any server or tracking store starts
    Case("run: bad label", "run", _set_line("noisy_labels.csv", 2, "11"),
         ("noisy_labels.csv:3", "out of range")),
    Case("run: unknown profile", "run", _nothing, ("profile", "huge"), extra=["--profile", "huge"]),
    Case("run: unknown model", "run", _nothing, ("models", "model3"), extra=["--models", "model3"]),
    Case("run: bad override", "run", _nothing, ("overrides.width", "greater than 0"),
         extra=["--set", "width=-1"]),
    Case("run: unknown field", "run", _nothing, ("no such profile field retrain_epoch",),
         extra=["--set", "retrain_epoch=3"]),
    Case("run: unknown runner", "run", _nothing, ("task_runner", "spark"),
         extra=["--task-runner", "spark"]),
    Case("run: no dataset folder", "run", _do(shutil.rmtree), ("dataset folder not found",)),
    Case("run: tracking server not answering", "run", _nothing,
         ("MLflow tracking server http://127.0.0.1:9", "not answering"),
         env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    Case("run: unreachable bucket", "run", _nothing, ("s3://relabel-missing/data",),
         extra=["--s3"], env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1",
                              "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}),
    Case("run: no credentials", "run", _nothing, ("s3://relabel-missing/data", "credentials"),
         extra=["--s3"], env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1",
                              "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                              "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                              "AWS_CONFIG_FILE": "/nonexistent"}),
    # relabel predict
    Case("predict: no such image", "predict", _nothing, ("nothing.png", "no such file"),
         extra=["nothing.png"]),
    Case("predict: corrupt image", "predict", _bytes("images_test/test00002.png", b"xx"),
         ("test00002.png", "corrupt"), extra=["images_test/test00002.png"]),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demo_data(tmp_path_factory.mktemp("bad-inputs") / "data",
                              num_train=NUM_TRAIN, num_clean=NUM_CLEAN, num_test=NUM_TEST)


def _relabel(args: list[str], capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Run the `relabel` entry point in-process: (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["relabel", *args])
    code = 0
    try:
        run_cli()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out = capsys.readouterr()
    return code, out.out + out.err


def _arguments(case: Case, data: Path, work: Path, from_mutation: list[str]) -> list[str]:
    cache = str(work / "cache")
    extra = [a for a in case.extra if a != "--data-is-file"]
    target = str(data / "noisy_labels.csv") if "--data-is-file" in case.extra else str(data)
    if case.command == "ingest":
        return ["ingest", target, "--cache-dir", cache, *extra]
    if case.command == "labels":
        return ["labels", "add", *from_mutation, "--data", str(data), "--cache-dir", cache,
                "--no-event"]
    if case.command == "run":
        source = "s3://relabel-missing/data" if "--s3" in extra else str(data)
        return ["run", "--data", source, "--cache-dir", cache, "--output-dir",
                str(work / "out"), "--profile", "smoke", *[a for a in extra if a != "--s3"]]
    if case.command == "predict":
        missing_model = str(work / "no-model.keras")
        paths = [str(data / a) if a.startswith("images") else str(work / a) for a in extra]
        return ["predict", *paths, "--model", missing_model, "--out", str(work / "pred.csv")]
    raise AssertionError(case.command)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_named_refused_and_leaves_nothing(
    case: Case, pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from relabel.tasks.ingest import ingest, load_dataset
    from relabel.tasks.labels import CleanLabelStore

    monkeypatch.chdir(tmp_path)  # a tracking store or run folder would appear here
    for key, value in case.env.items():
        if value:
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    data = Path(shutil.copytree(pristine, tmp_path / "data"))
    if case.command == "labels":  # labels are added to a dataset that ingests cleanly
        ingest(data, work / "cache")
    from_mutation = case.mutate(data, work)
    if case.command == "labels" and "{flip}" in (work / "new_labels.csv").read_text():
        first = int(_lines(data / "clean_labels.csv")[0])
        path = work / "new_labels.csv"
        path.write_text(path.read_text().replace("{flip}", str((first + 1) % 10)))
    args = _arguments(case, data, work, from_mutation)
    before = sorted(p.name for p in tmp_path.iterdir())

    code, output = _relabel(args, capsys, monkeypatch)

    assert code == 2, output
    assert "Traceback" not in output, output
    error_lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert error_lines, output
    message = output[output.index("error: "):]
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # Nothing written: no new top-level entry (mlflow.db, runs/, ...), no run outputs.
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (work / "out").exists() and not (work / "pred.csv").exists()
    cache = work / "cache"
    if case.command == "labels":
        dataset = load_dataset(next((cache / "datasets").iterdir()))
        assert CleanLabelStore(cache, dataset.content_hash).latest() is None
    elif cache.is_dir():
        assert not (cache / "index").exists() or not any((cache / "index").iterdir())
        assert not (cache / "datasets").exists() or not any((cache / "datasets").iterdir())

    # ... and the same command on good input works right after.
    if case.id == "cache dir is a file":
        (work / "cache").unlink()
    good = Path(shutil.copytree(pristine, tmp_path / "good"))
    if case.command == "labels":
        labels = work / "good_labels.csv"
        labels.write_text("image_id,label\n30,3\n")
        code, output = _relabel(["labels", "add", str(labels), "--data", str(good),
                                 "--cache-dir", str(cache), "--no-event"], capsys, monkeypatch)
    else:
        code, output = _relabel(["ingest", str(good), "--cache-dir", str(cache)], capsys,
                                monkeypatch)
    assert code == 0, output
