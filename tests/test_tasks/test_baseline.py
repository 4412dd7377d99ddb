"""The logistic-regression baseline on colour-histogram features."""

import numpy as np
import pytest

from relabel.tasks.baseline import fit_baseline, predict_baseline
from relabel.tasks.features import rgb_histogram


def test_baseline_learns_colour_and_is_reproducible():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    # Class 1 images are bright, class 0 dark: histograms separate them perfectly.
    images = np.where(labels[:, None, None, None] == 1,
                      rng.integers(150, 256, (400, 32, 32, 3)),
                      rng.integers(0, 100, (400, 32, 32, 3))).astype(np.uint8)
    features = rgb_histogram(images)
    first = predict_baseline(fit_baseline(features[:300], labels[:300], seed=3), features[300:])
    second = predict_baseline(fit_baseline(features[:300], labels[:300], seed=3),
                              features[300:])
    assert first.dtype == np.int64
    np.testing.assert_array_equal(first, second)
    assert np.mean(first == labels[300:]) > 0.95


def test_mismatched_features_and_labels_are_named():
    with pytest.raises(ValueError, match=r"features \(10, 4\) and labels \(9,\)"):
        fit_baseline(np.zeros((10, 4)), np.zeros(9, np.int64), seed=0)
    with pytest.raises(ValueError, match="need \\[n, d\\]"):
        fit_baseline(np.zeros(10), np.zeros(10, np.int64), seed=0)
