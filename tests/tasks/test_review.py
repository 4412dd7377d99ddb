"""Review loop: label-issue ranking, the request list, its CSV round trip, the gallery."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser import chromium, needs_chromium, screenshot
from typer.testing import CliRunner

from relabel import NUM_CLASSES
from relabel.cli import app
from relabel.tasks.demodata import generate_demo_data
from relabel.tasks.ingest import UNKNOWN, ingest, read_label_rows
from relabel.tasks.label_issues import find_label_issues, issue_precision
from relabel.tasks.label_requests import request_labels, write_requests_csv
from relabel.tasks.labels import CleanLabelStore, LabelError
from relabel.tasks.review import (
    GALLERY_HTML,
    ISSUES_CSV,
    REQUESTS_CSV,
    RUN_METRICS,
    RUN_PROBA,
    write_review,
)


def synthetic(
    n: int, noise_rate: float = 0.6, signal: float = 3.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Known noise model: true labels, 60% flipped (2/3 uniform, 1/3 to the next class).

    The "model" probabilities are softmax(signal * onehot(true) + N(0, 1)): about 90% accurate,
    and independent of the noisy label, as out-of-fold probabilities are.
    Returns (true_labels, noisy_labels, pred_probs float32, flipped mask).
    """
    rng = np.random.default_rng(seed)
    true = rng.integers(0, NUM_CLASSES, n)
    flipped = rng.random(n) < noise_rate
    pair = flipped & (rng.random(n) < 1 / 3)
    uniform = flipped & ~pair
    noisy = true.copy()
    noisy[pair] = (true[pair] + 1) % NUM_CLASSES
    noisy[uniform] = (true[uniform] + rng.integers(1, NUM_CLASSES, uniform.sum())) % NUM_CLASSES
    logits = rng.normal(0.0, 1.0, (n, NUM_CLASSES))
    logits[np.arange(n), true] += signal
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    return true, noisy, proba.astype(np.float32), flipped


@pytest.mark.parametrize("method", ["self_confidence", "normalized_margin"])
def test_ranking_finds_planted_flips(method: str) -> None:
    true, noisy, proba, flipped = synthetic(4000)
    issues = find_label_issues(noisy, proba, method=method)
    precision = issue_precision(issues, true, [100, 500, len(issues)])
    # The top of the list is almost surely wrong; the whole list nearly so.
    assert precision[100] >= 0.98 and precision[500] >= 0.97, precision
    assert precision[len(issues)] >= 0.93, precision
    recall = np.isin(np.flatnonzero(flipped) + 1, issues.image_ids).mean()
    assert recall >= 0.8, recall
    # Ranked: scores never increase down the list; ids are 1-based and unique.
    assert np.all(np.diff(issues.scores) <= 1e-12)
    assert issues.image_ids.min() >= 1 and len(set(issues.image_ids)) == len(issues)
    assert np.array_equal(issues.given_labels, noisy[issues.image_ids - 1])
    assert np.array_equal(issues.suggested_labels, proba[issues.image_ids - 1].argmax(axis=1))
    # Per-class estimates add up to about the planted number of flips.
    assert set(issues.per_class) == {
        "plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
    }
    assert abs(issues.estimated_total - flipped.sum()) <= 0.1 * flipped.sum()
    for c, name in enumerate(issues.per_class):
        planted = int((flipped & (noisy == c)).sum())
        assert abs(issues.per_class[name]["estimated_issues"] - planted) <= 0.2 * planted + 10


def test_ranking_beats_chance_on_a_subset_and_rejects_missing_rows() -> None:
    true, noisy, proba, flipped = synthetic(3000, seed=1)
    proba[:500] = np.nan  # images no fold predicted
    issues = find_label_issues(noisy, proba)
    assert issues.image_ids.min() > 500 and issues.num_candidates == 2500
    subset = np.arange(1000, 2000)
    only = find_label_issues(noisy, proba, indices=subset)
    assert set(only.image_ids - 1) <= set(subset)
    assert issue_precision(only, true, [50])[50] >= 0.95
    with pytest.raises(ValueError, match="image id 1 has no probabilities"):
        find_label_issues(noisy, proba, indices=np.arange(0, 20))
    with pytest.raises(ValueError, match="expected shape"):
        find_label_issues(noisy, proba[:, :5])


def test_precision_counts_only_known_truth() -> None:
    true, noisy, proba, _ = synthetic(1000, seed=2)
    issues = find_label_issues(noisy, proba)
    partial = true.copy()
    partial[issues.image_ids[0] - 1] = UNKNOWN
    with pytest.raises(ValueError, match="no known true label"):
        issue_precision(issues, partial, [10])


def _transition(noise_rate: float = 0.6) -> np.ndarray:
    t = np.full((NUM_CLASSES, NUM_CLASSES), noise_rate / (NUM_CLASSES - 1))
    np.fill_diagonal(t, 1 - noise_rate)
    return t


def test_request_list_never_contains_labelled_images() -> None:
    true, noisy, proba, _ = synthetic(3000, seed=3)
    rng = np.random.default_rng(3)
    clean = np.full(3000, UNKNOWN)
    labelled = rng.choice(3000, 1200, replace=False)
    clean[labelled] = true[labelled]
    proba[:100] = np.nan
    sent_out = np.arange(100, 150)
    for strategy in ("entropy", "margin", "random"):
        req = request_labels(
            proba, clean, 400, noisy_labels=noisy, transition=_transition(),
            strategy=strategy, exclude=sent_out,
        )
        idx = req.image_ids - 1
        assert len(req) == 400 and len(set(idx)) == 400
        assert np.all(clean[idx] == UNKNOWN), "an already-labelled image was requested"
        assert idx.min() >= 150, "a NaN row or an excluded image was requested"
    # Class-balanced round robin: every prefix of 10*r requests has r per predicted class.
    req = request_labels(proba, clean, 200, noisy_labels=noisy, transition=_transition())
    assert np.array_equal(
        np.bincount(req.suggested_labels[:50], minlength=10), np.full(10, 5)
    )
    # Asking for more than there are candidates returns them all, once each.
    everything = request_labels(proba, clean, 10_000)
    predicted = np.isfinite(proba).all(axis=1)
    assert len(everything) == int(((clean == UNKNOWN) & predicted).sum())
    assert len(set(everything.image_ids)) == len(everything)


def test_request_scores_prefer_uncertain_images() -> None:
    true, noisy, proba, _ = synthetic(2000, seed=4)
    clean = np.full(2000, UNKNOWN)
    req = request_labels(
        proba, clean, 100, noisy_labels=noisy, transition=_transition(), class_balanced=False
    )
    assert np.all(np.diff(req.scores) <= 1e-12)  # ranked by gain without balancing
    rest = np.setdiff1d(np.arange(2000), req.image_ids - 1)
    posterior_entropy_floor = req.scores.min()
    from relabel.tasks.label_requests import request_scores

    scores, _ = request_scores(proba, noisy_labels=noisy, transition=_transition())
    assert np.all(scores[rest] <= posterior_entropy_floor + 1e-12)
    # Fold disagreement adds gain: the image the folds argue about most rises to the top.
    folds = np.stack([proba, proba]).astype(np.float64)
    target = int(rest[0])
    folds[0, target] = np.eye(NUM_CLASSES)[0] * 0.98 + 0.002
    folds[1, target] = np.eye(NUM_CLASSES)[1] * 0.98 + 0.002
    with_folds = request_labels(
        proba, clean, 5, noisy_labels=noisy, transition=_transition(), fold_proba=folds,
        class_balanced=False,
    )
    assert with_folds.image_ids[0] == target + 1


def test_request_list_skips_near_duplicates() -> None:
    rng = np.random.default_rng(5)
    n = 400
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    # Predictions flatten as the id grows: the highest-gain images are the last ones.
    logits = np.zeros((n, NUM_CLASSES))
    logits[:, 0] = np.linspace(5.0, 0.0, n)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    clean = np.full(n, UNKNOWN)
    # Image 398 re-exposed copy of 399 (the top pick); 397 a copy of labelled image 0.
    images[398] = np.clip(images[399].astype(int) + 12, 0, 255).astype(np.uint8)
    images[397] = images[0]
    clean[0] = 3
    req = request_labels(proba, clean, 20, images=images, class_balanced=False)
    ids = set(req.image_ids - 1)
    assert 399 in ids and 398 not in ids and 397 not in ids
    assert req.skipped_duplicates == 2
    no_dedup = request_labels(proba, clean, 20, class_balanced=False)
    assert {398, 397} <= set(no_dedup.image_ids - 1)


def _fill(path: Path, rows: list[tuple[int, str]], header: str = "image_id,label") -> Path:
    path.write_text("\n".join([header, *(f"{i},{label}" for i, label in rows)]) + "\n")
    return path


def test_request_csv_round_trip_through_labels_add(tmp_path: Path) -> None:
    true, noisy, proba, _ = synthetic(1000, seed=6)
    dataset_clean = np.full(1000, UNKNOWN)
    dataset_clean[:300] = true[:300]
    req = request_labels(proba, dataset_clean, 50, noisy_labels=noisy, transition=_transition())
    path = write_requests_csv(tmp_path / "requests.csv", req)
    assert path.read_text().splitlines()[0] == "image_id,label"
    ids, labels = read_label_rows(path, allow_empty_label=True)
    assert np.array_equal(ids, req.image_ids) and np.all(labels == UNKNOWN)
    # A person fills in the first 30 rows, leaves 20 for later, and hands the file back.
    filled = _fill(tmp_path / "filled.csv", [
        (int(i), str(true[i - 1]) if k < 30 else "") for k, i in enumerate(req.image_ids)
    ])
    store = CleanLabelStore(tmp_path / "cache", "ab" * 32)
    with pytest.raises(LabelError, match="no labels filled in"):
        store.add_file(path, dataset_clean)  # the list as written: nothing answered yet
    version, merge = store.add_file(filled, dataset_clean)
    assert version is not None and merge.added == 30 and merge.changed == 0
    merged = store.current(dataset_clean)
    newly = req.image_ids[:30] - 1
    assert np.array_equal(merged[newly], true[newly])
    assert np.array_equal(merged[:300], true[:300])
    assert int((merged >= 0).sum()) == 330
    # The next request list asks for none of the labelled images again.
    again = request_labels(proba, merged, 100, noisy_labels=noisy, transition=_transition())
    assert not set(again.image_ids - 1) & set(np.flatnonzero(merged >= 0))


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
    store.add_file(_fill(tmp_path / "good.csv", [(20, "1"), (21, "2")]), dataset_clean)
    before = store.current(dataset_clean).copy()
    # A good row first: a bad file must not merge even its good rows.
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], "30,5", *lines[1:]]) + "\n")
    with pytest.raises(LabelError, match=re.escape(message)) as raised:
        store.add_file(bad, dataset_clean)
    assert "bad.csv" in str(raised.value)
    assert np.array_equal(store.current(dataset_clean), before)
    assert len(store.versions()) == 1


class _Tiles(HTMLParser):
    """Counts gallery tiles per section and reads the page's load status."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.tiles: dict[str, list[int]] = {}
        self.status: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.section = a.get("id")
            self.tiles[self.section or ""] = []
        if tag == "figure" and "tile" in (a.get("class") or "").split():
            self.tiles[self.section or ""].append(int(a["data-image-id"] or 0))
        if tag == "p" and a.get("id") == "status":
            self.status = {k: v or "" for k, v in a.items()}


@pytest.fixture()
def review_outputs(tmp_path: Path):
    true, noisy, proba, _ = synthetic(600, seed=7)
    rng = np.random.default_rng(7)
    # Recognisable images: a block of a class colour on noise.
    images = rng.integers(0, 80, (600, 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(true):
        images[i, 8:24, 8:24] = (25 * c, 255 - 25 * c, 128)
    clean = np.full(600, UNKNOWN)
    clean[:100] = true[:100]
    issues = find_label_issues(noisy, proba)
    req = request_labels(proba, clean, 40, noisy_labels=noisy, transition=_transition(),
                         images=images)
    out = write_review(tmp_path / "review", images, issues, req, top_n=12, gallery_requests=7)
    return out, issues, req


def test_review_files_are_complete(review_outputs) -> None:
    out, issues, req = review_outputs
    assert all(p.is_file() and p.stat().st_size > 0 for p in out.artifact_paths)
    assert out.num_issues == len(issues) and out.num_requests == 40
    rows = out.issues_csv.read_text().splitlines()
    assert len(rows) == len(issues) + 1 and rows[1].startswith(f"1,{issues.image_ids[0]},")
    # No temporary files left behind by the atomic writes.
    assert not [p for p in out.out_dir.iterdir() if p.name.startswith(".")]
    for sheet in (out.issues_sheet_png, out.requests_sheet_png):
        image = cv2.imread(str(sheet))
        assert image is not None and image.shape[0] > 200 and image.std() > 10
    text = out.gallery_html.read_text()
    assert "src=\"http" not in text and "href=" not in text  # nothing external to fetch
    assert text.count("data:image/png;base64,") == 12 + 7


@pytest.mark.slow
@needs_chromium
def test_gallery_in_headless_chromium(review_outputs, tmp_path: Path) -> None:
    out, issues, req = review_outputs
    url = out.gallery_html.resolve().as_uri()
    dom = chromium(tmp_path, "--dump-dom", url).stdout
    parsed = _Tiles()
    parsed.feed(dom)
    assert parsed.tiles["label-issues"] == [int(i) for i in issues.image_ids[:12]]
    assert parsed.tiles["label-requests"] == [int(i) for i in req.image_ids[:7]]
    # The page's own script ran after load and found every embedded PNG decoded.
    assert parsed.status.get("data-loaded") == "19" and parsed.status.get("data-total") == "19"
    shot = screenshot(tmp_path, url, "review-gallery")
    pixels = cv2.imread(str(shot))
    assert pixels is not None and pixels.std() > 10  # rendered something, not a blank page


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
    answered = _fill(tmp_path / "answered.csv", [
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
