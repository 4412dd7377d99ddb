"""Model II's training set: which images, which targets, which weights."""

import numpy as np
import pytest

from relabel.tasks.correct import Correction
from relabel.tasks.model2 import retrain_targets


def _correction(rows: int) -> Correction:
    rng = np.random.default_rng(0)
    targets = rng.dirichlet(np.ones(10), rows).astype(np.float32)
    return Correction(targets=targets, labels=targets.argmax(1),
                      confidence=targets.max(1), keep=np.arange(rows) % 4 != 0)


def test_clean_rows_are_smoothed_and_corrected_rows_kept_as_they_are():
    labels = np.full(20, -1)
    labels[:6] = [0, 1, 2, 3, 4, 5]
    correction = _correction(8)
    noisy_idx = np.arange(10, 18)
    index, targets, weights = retrain_targets(np.arange(6), labels, noisy_idx, correction,
                                              clean_smoothing=0.2)
    np.testing.assert_array_equal(index, np.r_[np.arange(6), noisy_idx[correction.keep]])
    assert targets[0, 0] == pytest.approx(0.82) and targets[0, 1] == pytest.approx(0.02)
    np.testing.assert_allclose(targets[:6].sum(1), 1.0, rtol=1e-6)
    # The posterior already says how sure it is: no second smoothing on top.
    np.testing.assert_array_equal(targets[6:], correction.targets[correction.keep])
    np.testing.assert_array_equal(weights, np.ones(index.size, np.float32))
    with pytest.raises(ValueError, match="clean_smoothing"):
        retrain_targets(np.arange(6), labels, noisy_idx, correction, clean_smoothing=1.0)


def test_retrain_refuses_overlapping_sets():
    labels = np.full(3002, -1)
    labels[:3] = 0
    correction = Correction(np.full((3, 10), 0.1, np.float32), np.zeros(3, np.int64),
                            np.ones(3, np.float32), np.ones(3, bool))
    with pytest.raises(ValueError, match="overlap"):
        retrain_targets(np.array([0, 1, 2]), labels, np.array([2, 3000, 3001]), correction)
