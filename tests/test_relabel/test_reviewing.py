"""`relabel review` on a run: the issue and request lists and the gallery, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_labels import write_label_csv
from typer.testing import CliRunner

from relabel import NUM_CLASSES
from relabel.cli import app
from relabel.tasks.demodata import generate_demo_data
from relabel.tasks.ingest import UNKNOWN, ingest, read_label_rows
from relabel.tasks.labels import CleanLabelStore
from relabel.tasks.review import (
    GALLERY_HTML,
    ISSUES_CSV,
    REQUESTS_CSV,
    RUN_METRICS,
    RUN_PROBA,
)


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("review-demo")
    data = generate_demo_data(root / "data", num_train=400, num_clean=100, num_test=20)
    true = np.loadtxt(data / "true_labels.csv", dtype=np.int64)
    return data, true


@pytest.mark.slow
def test_cli_review_writes_lists_and_gallery(demo_dataset, tmp_path: Path) -> None:
    data, true = demo_dataset
    cache = tmp_path / "cache"
    dataset = ingest(data, cache).load()
    rng = np.random.default_rng(8)
    logits = rng.normal(0, 1, (len(true), NUM_CLASSES))
    logits[np.arange(len(true)), true] += 3
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    proba[:10] = np.nan
    np.save(tmp_path / "proba.npy", proba.astype(np.float32))
    out = tmp_path / "review"
    result = CliRunner().invoke(app, [
        "review", "--proba", str(tmp_path / "proba.npy"), "--data", str(data), "--out", str(out),
        "--cache-dir", str(cache), "--num-requests", "30", "--top-n", "8",
    ])
    assert result.exit_code == 0, result.output
    ids, labels = read_label_rows(out / REQUESTS_CSV, allow_empty_label=True)
    assert len(ids) == 30 and np.all(labels == UNKNOWN)
    assert np.all(dataset.clean_labels[ids - 1] == UNKNOWN)
    issue_rows = (out / ISSUES_CSV).read_text().splitlines()[1:]
    flagged = np.array([int(r.split(",")[1]) for r in issue_rows])
    assert np.all(dataset.clean_labels[flagged - 1] == UNKNOWN)  # examined: unlabelled only
    wrong = true[flagged - 1] != dataset.noisy_labels[flagged - 1]
    assert wrong.mean() >= 0.9
    assert (out / GALLERY_HTML).read_text().count('class="tile"') == 16

    # A finished run's folder: labels added since the run are never requested again.
    run = tmp_path / "run"
    run.mkdir()
    np.save(run / RUN_PROBA, proba.astype(np.float32))
    (run / RUN_METRICS).write_text(json.dumps(
        {"dataset_dir": str(dataset.path), "cache_dir": str(cache)}
    ))
    # A person answers 20 of the 30 requests in the written file, leaves 10 empty, and hands
    # it to `relabel labels add` (no Prefect server here: merge only, no event).
    answered = write_label_csv(tmp_path / "answered.csv", [
        (int(i), str(true[i - 1]) if k < 20 else "") for k, i in enumerate(ids)
    ])
    added = CliRunner().invoke(app, [
        "labels", "add", str(answered), "--data", str(data), "--cache-dir", str(cache),
        "--no-event",
    ])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["added"] == 20
    merged = CleanLabelStore(cache, dataset.content_hash).current(dataset.clean_labels)
    assert np.array_equal(merged[ids[:20] - 1], true[ids[:20] - 1])
    again = CliRunner().invoke(app, ["review", str(run), "--num-requests", "30", "--top-n", "4"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["num_label_requests"] == 30
    assert report["files"][REQUESTS_CSV] == str(run / "review" / REQUESTS_CSV)
    new_ids, _ = read_label_rows(run / "review" / REQUESTS_CSV, allow_empty_label=True)
    assert len(new_ids) == 30 and not set(new_ids) & set(ids[:20])
    assert set(ids[20:]) <= set(new_ids)  # the unanswered ones are still worth asking

    # Bad input is refused with the file named, and nothing is written.
    np.save(tmp_path / "short.npy", proba[:5])
    bad = CliRunner().invoke(app, [
        "review", "--proba", str(tmp_path / "short.npy"), "--data", str(dataset.path),
        "--out", str(tmp_path / "r2"), "--cache-dir", str(cache),
    ])
    assert bad.exit_code == 2 and "5 rows but the dataset has 400 images" in bad.output
    assert not (tmp_path / "r2").exists()
    missing = CliRunner().invoke(app, [
        "review", "--proba", str(tmp_path / "nope.npy"), "--data", str(dataset.path),
    ])
    assert missing.exit_code == 2 and "nope.npy: probabilities file not found" in missing.output
    neither = CliRunner().invoke(app, ["review"])
    assert neither.exit_code == 2 and "give a run folder, or both --proba and --data" in (
        neither.output
    )
