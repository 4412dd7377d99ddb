"""Run folders: published whole, never overwriting another run, runs/latest the newest."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from relabel.run_folders import (
    claim_new_folder,
    holds_results,
    point_latest,
    portable_paths,
    replace_folder,
    run_folder_name,
    staging_folder,
)

STARTED = dt.datetime(2026, 12, 2, 14, 3, 5)


def _publish(runs: Path, name: str, files: dict[str, str]) -> Path:
    with staging_folder(runs, name) as staging:
        for file_name, text in files.items():
            (staging / file_name).write_text(text)
        folder = claim_new_folder(staging, runs, name)
        point_latest(runs, folder)
    return folder


def test_each_run_gets_its_own_folder_and_latest_follows(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    name = run_folder_name(STARTED, "demo-0123456789ab")
    assert name == "20261202-140305-demo-0123456789ab"
    first = _publish(runs, name, {"metrics.json": "1", "noise.png": "a"})
    second = _publish(runs, name, {"metrics.json": "2"})
    assert (first.name, second.name) == (name, f"{name}-2")
    assert (first / "metrics.json").read_text() == "1" and (first / "noise.png").is_file()
    assert sorted(p.name for p in second.iterdir()) == ["metrics.json"]
    latest = runs / "latest"
    assert latest.is_symlink() and os.readlink(latest) == second.name  # relative: movable
    assert (latest / "metrics.json").read_text() == "2"
    assert sorted(p.name for p in runs.iterdir()) == sorted([name, f"{name}-2", "latest"])


def test_a_failed_publish_leaves_nothing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError), staging_folder(runs, "x") as staging:
        (staging / "metrics.json").write_text("half")
        raise RuntimeError("disk full")
    assert list(runs.iterdir()) == []


def test_an_explicit_folder_is_replaced_as_a_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old-plot.png").write_text("from another run")
    assert holds_results(target) and not holds_results(tmp_path / "missing")
    with staging_folder(tmp_path, "out") as staging:
        (staging / "metrics.json").write_text("new")
        replace_folder(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["metrics.json"]  # never mixed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_legacy_latest_folder_is_kept_under_another_name(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "latest").mkdir(parents=True)
    (runs / "latest" / "metrics.json").write_text("old")
    folder = _publish(runs, "new", {"metrics.json": "new"})
    kept = [p for p in runs.iterdir() if p.name.startswith("latest-")]
    assert len(kept) == 1 and (kept[0] / "metrics.json").read_text() == "old"
    assert (runs / "latest").resolve() == folder.resolve()


def test_portable_paths_are_relative_to_the_project(tmp_path: Path) -> None:
    value = {"a": str(tmp_path / "runs" / "x" / "m.json"), "b": ["s3://bucket/k", 0.5],
             "c": {"d": str(tmp_path.parent / "data")}, "e": "plain"}
    assert portable_paths(value, base=tmp_path) == {
        "a": "runs/x/m.json", "b": ["s3://bucket/k", 0.5], "c": {"d": "../data"},
        "e": "plain"}


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    runs = tmp_path / "runs"
    runs.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    left = runs / f".20261202-140305-demo-x.{dead}.abc123.partial"
    (left / "half").mkdir(parents=True)
    live = runs / f".20261202-140305-demo-y.{os.getpid()}.def456.partial"
    live.mkdir()
    folder = _publish(runs, "next", {"metrics.json": "1"})
    assert not left.exists() and live.is_dir()  # a live run's staging folder is kept
    assert folder.is_dir()
