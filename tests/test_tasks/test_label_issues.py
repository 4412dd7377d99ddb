"""Label-issue ranking: planted flips are found, precision counts only known truth."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_labels import synthetic_predictions

from relabel.tasks.ingest import UNKNOWN
from relabel.tasks.label_issues import find_label_issues, issue_precision


@pytest.mark.parametrize("method", ["self_confidence", "normalized_margin"])
def test_ranking_finds_planted_flips(method: str) -> None:
    true, noisy, proba, flipped = synthetic_predictions(4000)
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
    true, noisy, proba, flipped = synthetic_predictions(3000, seed=1)
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
    true, noisy, proba, _ = synthetic_predictions(1000, seed=2)
    issues = find_label_issues(noisy, proba)
    partial = true.copy()
    partial[issues.image_ids[0] - 1] = UNKNOWN
    with pytest.raises(ValueError, match="no known true label"):
        issue_precision(issues, partial, [10])
