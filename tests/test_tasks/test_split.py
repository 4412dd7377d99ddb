"""Validation split and folds: the held-out clean images never reach any training set."""

import numpy as np
import pytest

from relabel.tasks.correct import Correction, training_targets
from relabel.tasks.split import SplitError, kfold_splits, plan_splits, validation_split


def _clean_labels(n: int = 5000, known: int = 1500, seed: int = 0) -> np.ndarray:
    labels = np.full(n, -1)
    labels[:known] = np.random.default_rng(seed).integers(0, 10, known)
    return labels


def test_validation_split_is_stratified_disjoint_and_reproducible():
    labels = _clean_labels()
    train, val = validation_split(labels, 0.2, seed=1)
    assert np.intersect1d(train, val).size == 0
    np.testing.assert_array_equal(np.union1d(train, val), np.arange(1500))
    assert val.size == 300
    train_share = np.bincount(labels[train], minlength=10) / train.size
    val_share = np.bincount(labels[val], minlength=10) / val.size
    assert np.abs(train_share - val_share).max() < 0.01
    again = validation_split(labels, 0.2, seed=1)
    np.testing.assert_array_equal(val, again[1])
    assert not np.array_equal(val, validation_split(labels, 0.2, seed=2)[1])


def test_a_production_split_trains_on_every_clean_image():
    labels = _clean_labels()
    plan = plan_splits(labels, 0.0, folds=2, seed=0)
    np.testing.assert_array_equal(plan.clean_train_idx, np.arange(1500))
    assert plan.val_idx.size == 0 and plan.val_idx.dtype == np.int64
    np.testing.assert_array_equal(np.sort(np.concatenate([h for _, h in plan.folds])),
                                  np.arange(1500))
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\)"):
        validation_split(labels, 1.0, seed=0)


def test_kfold_covers_every_index_once():
    labels = _clean_labels()
    idx = np.arange(1500)
    folds = kfold_splits(idx, labels[idx], k=4, seed=0)
    holdouts = np.concatenate([h for _, h in folds])
    np.testing.assert_array_equal(np.sort(holdouts), idx)
    for train, holdout in folds:
        assert np.intersect1d(train, holdout).size == 0
        np.testing.assert_array_equal(np.union1d(train, holdout), idx)


def test_one_fold_is_one_model_on_every_clean_training_image():
    labels = _clean_labels()
    plan = plan_splits(labels, 0.2, folds=1, seed=0)
    [(train, holdout)] = plan.folds
    np.testing.assert_array_equal(train, plan.clean_train_idx)
    assert holdout.size == 0 and holdout.dtype == np.int64
    with pytest.raises(ValueError, match="k must be >= 1"):
        kfold_splits(np.arange(10), np.zeros(10, np.int64), k=0, seed=0)


def test_validation_images_never_reach_a_training_set():
    labels = _clean_labels()
    plan = plan_splits(labels, 0.2, folds=3, seed=0)
    val = set(plan.val_idx.tolist())
    training_sets = [plan.clean_train_idx, plan.noisy_idx, plan.model1_idx]
    for train, holdout in plan.folds:
        training_sets += [train, holdout]
    for indices in training_sets:
        assert val.isdisjoint(indices.tolist())
    # Model II's retraining set (built from the plan) excludes them too.
    n_noisy = plan.noisy_idx.size
    correction = Correction(
        targets=np.full((n_noisy, 10), 0.1, np.float32),
        labels=np.zeros(n_noisy, np.int64),
        confidence=np.full(n_noisy, 0.1, np.float32),
        keep=np.ones(n_noisy, bool),
    )
    index, targets, weights = training_targets(
        plan.clean_train_idx, labels, plan.noisy_idx, correction)
    assert val.isdisjoint(index.tolist())
    assert index.size == targets.shape[0] == weights.size == 1200 + n_noisy


def test_too_few_clean_labels_per_class_is_a_split_error_that_says_what_to_do():
    labels = np.full(100, -1)
    labels[:20] = np.r_[np.repeat(np.arange(9), 2), 9, 9]
    labels[0] = 9  # class 0 now has a single clean label
    with pytest.raises(SplitError, match="20 are too few to hold out a stratified "
                                         "validation share of 0.2.*add clean labels"):
        validation_split(labels, 0.2, seed=0)
    with pytest.raises(SplitError, match="cannot make 5 stratified folds.*fewer folds"):
        kfold_splits(np.arange(20), labels[:20], 5, seed=0)
