"""The label-request list: never labelled images, uncertain first, no near duplicates, CSV
round trip through `labels add`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_labels import symmetric_transition, synthetic_predictions, write_label_csv

from relabel import NUM_CLASSES
from relabel.tasks.ingest import UNKNOWN, read_label_rows
from relabel.tasks.label_requests import request_labels, write_requests_csv
from relabel.tasks.labels import CleanLabelStore, LabelError


def test_request_list_never_contains_labelled_images() -> None:
    true, noisy, proba, _ = synthetic_predictions(3000, seed=3)
    rng = np.random.default_rng(3)
    clean = np.full(3000, UNKNOWN)
    labelled = rng.choice(3000, 1200, replace=False)
    clean[labelled] = true[labelled]
    proba[:100] = np.nan
    sent_out = np.arange(100, 150)
    for strategy in ("entropy", "margin", "random"):
        req = request_labels(
            proba, clean, 400, noisy_labels=noisy, transition=symmetric_transition(),
            strategy=strategy, exclude=sent_out,
        )
        idx = req.image_ids - 1
        assert len(req) == 400 and len(set(idx)) == 400
        assert np.all(clean[idx] == UNKNOWN), "an already-labelled image was requested"
        assert idx.min() >= 150, "a NaN row or an excluded image was requested"
    # Class-balanced round robin: every prefix of 10*r requests has r per predicted class.
    req = request_labels(proba, clean, 200, noisy_labels=noisy, transition=symmetric_transition())
    assert np.array_equal(
        np.bincount(req.suggested_labels[:50], minlength=10), np.full(10, 5)
    )
    # Asking for more than there are candidates returns them all, once each.
    everything = request_labels(proba, clean, 10_000)
    predicted = np.isfinite(proba).all(axis=1)
    assert len(everything) == int(((clean == UNKNOWN) & predicted).sum())
    assert len(set(everything.image_ids)) == len(everything)


def test_request_scores_prefer_uncertain_images() -> None:
    true, noisy, proba, _ = synthetic_predictions(2000, seed=4)
    clean = np.full(2000, UNKNOWN)
    req = request_labels(
        proba, clean, 100, noisy_labels=noisy, transition=symmetric_transition(),
        class_balanced=False
    )
    assert np.all(np.diff(req.scores) <= 1e-12)  # ranked by gain without balancing
    rest = np.setdiff1d(np.arange(2000), req.image_ids - 1)
    posterior_entropy_floor = req.scores.min()
    from relabel.tasks.label_requests import request_scores

    scores, _ = request_scores(proba, noisy_labels=noisy, transition=symmetric_transition())
    assert np.all(scores[rest] <= posterior_entropy_floor + 1e-12)
    # Fold disagreement adds gain: the image the folds argue about most rises to the top.
    folds = np.stack([proba, proba]).astype(np.float64)
    target = int(rest[0])
    folds[0, target] = np.eye(NUM_CLASSES)[0] * 0.98 + 0.002
    folds[1, target] = np.eye(NUM_CLASSES)[1] * 0.98 + 0.002
    with_folds = request_labels(
        proba, clean, 5, noisy_labels=noisy, transition=symmetric_transition(), fold_proba=folds,
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


def test_request_csv_round_trip_through_labels_add(tmp_path: Path) -> None:
    true, noisy, proba, _ = synthetic_predictions(1000, seed=6)
    dataset_clean = np.full(1000, UNKNOWN)
    dataset_clean[:300] = true[:300]
    req = request_labels(proba, dataset_clean, 50, noisy_labels=noisy,
                         transition=symmetric_transition())
    path = write_requests_csv(tmp_path / "requests.csv", req)
    assert path.read_text().splitlines()[0] == "image_id,label"
    ids, labels = read_label_rows(path, allow_empty_label=True)
    assert np.array_equal(ids, req.image_ids) and np.all(labels == UNKNOWN)
    # A person fills in the first 30 rows, leaves 20 for later, and hands the file back.
    filled = write_label_csv(tmp_path / "filled.csv", [
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
    again = request_labels(proba, merged, 100, noisy_labels=noisy,
                           transition=symmetric_transition())
    assert not set(again.image_ids - 1) & set(np.flatnonzero(merged >= 0))
