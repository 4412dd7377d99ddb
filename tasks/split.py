"""Splits of the clean labels: a validation set held out from every training step, and
k folds of the rest for the clean model's cross-fitting (k = 1: one model on all of them).

All indices are 0-based image indices into the dataset arrays, sorted ascending.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split


class SplitError(ValueError):
    """The clean labels cannot be split as asked (too few per class); says what to change."""


def validation_split(
    clean_labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of the images that have a clean label (`clean_labels >= 0`).

    Returns `(train_idx, val_idx)`: disjoint, sorted, int64; `val_idx` holds `fraction` of
    the clean images with the same class proportions. Images without a clean label are in
    neither. The validation images must never be trained on (not even with their noisy
    label): callers exclude `val_idx` everywhere. `fraction` 0 (a production run) trains on
    every clean image and leaves `val_idx` empty.
    """
    clean_labels = np.asarray(clean_labels, dtype=np.int64)
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    known = np.flatnonzero(clean_labels >= 0)
    if fraction == 0:
        return known.astype(np.int64), np.empty(0, np.int64)
    if known.size < 2:
        raise ValueError(f"need at least 2 clean labels to split, got {known.size}")
    try:
        train_idx, val_idx = train_test_split(
            known, test_size=fraction, random_state=seed, stratify=clean_labels[known]
        )
    except ValueError as exc:  # scikit-learn's reason: too few labels of some class
        raise SplitError(
            f"clean labels: {known.size} are too few to hold out a stratified validation "
            f"share of {fraction:g} ({exc}); add clean labels (relabel labels add)") from None
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)


def kfold_splits(
    indices: np.ndarray, labels: np.ndarray, k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold over `indices` (image indices) with `labels[i]` the label of
    `indices[i]`. Returns k `(train_idx, holdout_idx)` pairs of image indices; every index is
    in exactly one holdout. k = 1 is one model on every index: `[(indices, [])]`."""
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if indices.shape != labels.shape:
        raise ValueError(f"indices {indices.shape} and labels {labels.shape} differ in shape")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k == 1:
        return [(np.sort(indices), np.empty(0, np.int64))]
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    try:
        return [
            (np.sort(indices[train]), np.sort(indices[holdout]))
            for train, holdout in folds.split(indices, labels)
        ]
    except ValueError as exc:
        raise SplitError(f"clean labels: {indices.size} training labels cannot make {k} "
                         f"stratified folds ({exc}); use fewer folds or add clean "
                         "labels") from None


@dataclass(frozen=True)
class SplitPlan:
    """Every index set of one pipeline run (0-based image indices, sorted, int64).

    val_idx: clean images held out from all training (the reported accuracy);
    clean_train_idx: the other clean images (clean model folds, Model II);
    noisy_idx: images without a clean label (label correction, Model II);
    model1_idx: clean_train_idx + noisy_idx, trained on with their noisy labels (Model I);
    folds: k (train_idx, holdout_idx) splits of clean_train_idx.
    """

    val_idx: np.ndarray
    clean_train_idx: np.ndarray
    noisy_idx: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]

    @property
    def model1_idx(self) -> np.ndarray:
        return noisy_label_pool(self.clean_train_idx, self.noisy_idx)


def noisy_label_pool(clean_train_idx: np.ndarray, noisy_idx: np.ndarray) -> np.ndarray:
    """Images trained on with their noisy labels (baseline, Model I): the clean training
    images and the (capped) noisy ones, sorted; never a validation image."""
    return np.union1d(np.asarray(clean_train_idx, np.int64), np.asarray(noisy_idx, np.int64))


def plan_splits(
    clean_labels: np.ndarray,
    validation_fraction: float,
    folds: int,
    seed: int,
    max_noisy: int | None = None,
) -> SplitPlan:
    """Validation split, then k folds of the remaining clean images; `max_noisy` keeps only
    the first that many noisy images (smoke runs)."""
    clean_labels = np.asarray(clean_labels, dtype=np.int64)
    train_idx, val_idx = validation_split(clean_labels, validation_fraction, seed)
    noisy_idx = np.flatnonzero(clean_labels < 0).astype(np.int64)
    if max_noisy is not None:
        noisy_idx = noisy_idx[:max_noisy]
    return SplitPlan(
        val_idx=val_idx,
        clean_train_idx=train_idx,
        noisy_idx=noisy_idx,
        folds=kfold_splits(train_idx, clean_labels[train_idx], folds, seed),
    )
