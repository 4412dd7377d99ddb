"""The clean model: folds give out-of-fold and ensemble probabilities (smoke profile)."""

import numpy as np
import pytest

from relabel.config import PROFILES
from relabel.tasks.clean_model import combine_folds, stack_folds, train_clean_fold
from relabel.tasks.split import plan_splits

SMOKE = PROFILES["smoke"]


@pytest.mark.slow
def test_clean_folds_give_out_of_fold_and_ensemble_probabilities(demo):
    plan = plan_splits(demo.clean_labels, 0.2, folds=2, seed=0)
    predict_idx = plan.noisy_idx[:100]
    folds = [
        train_clean_fold(demo.images, demo.clean_labels, train, holdout, predict_idx, SMOKE,
                         seed=0, fold=i, epochs=1)
        for i, (train, holdout) in enumerate(plan.folds)
    ]
    combined = combine_folds(folds, demo.num_images)
    assert combined.shape == (demo.num_images, 10)
    for fold in folds:
        np.testing.assert_array_equal(combined[fold.holdout_idx], fold.holdout_proba)
    mean = (folds[0].predict_proba + folds[1].predict_proba) / 2
    np.testing.assert_allclose(combined[predict_idx], mean, rtol=1e-6)
    scored = np.union1d(plan.clean_train_idx, predict_idx)
    assert np.isnan(combined[np.setdiff1d(np.arange(demo.num_images), scored)]).all()
    assert not np.isnan(combined[scored]).any()
    stacked = stack_folds(folds, demo.num_images)
    assert stacked.shape == (2, demo.num_images, 10)
    for row, fold in enumerate(folds):
        np.testing.assert_array_equal(stacked[row, fold.holdout_idx], fold.holdout_proba)
        np.testing.assert_array_equal(stacked[row, predict_idx], fold.predict_proba)
        unseen = np.setdiff1d(np.arange(demo.num_images),
                              np.union1d(fold.holdout_idx, predict_idx))
        assert np.isnan(stacked[row, unseen]).all()
    with pytest.raises(ValueError, match="overlap"):
        train_clean_fold(demo.images, demo.clean_labels, plan.folds[0][0], plan.folds[0][0],
                         predict_idx, SMOKE, seed=0, fold=0)
