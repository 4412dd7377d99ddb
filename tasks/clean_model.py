"""The clean model (the teacher): k models, each trained on k-1 folds of the clean
training labels, or one model on all of them (k = 1, the default: more labels per model).

Each fold's model predicts the clean images it did not see (its holdout: out-of-fold
probabilities, what `relabel review` reads to find wrong clean labels; a one-model teacher
has no holdout) and every noisy and validation image (averaged over folds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from relabel.config import TrainProfile
from relabel.tasks.train import TrainResult, predict_proba, train_classifier


@dataclass
class FoldResult:
    """fold: 0-based fold number; holdout_idx / holdout_proba: clean images this fold did not
    train on and their predicted probabilities [h, 10]; predict_idx / predict_proba: other
    images scored by this fold [p, 10]; train: the fold's TrainResult."""

    fold: int
    holdout_idx: np.ndarray
    holdout_proba: np.ndarray
    predict_idx: np.ndarray
    predict_proba: np.ndarray
    train: TrainResult | None


def train_clean_fold(
    images: np.ndarray,
    clean_labels: np.ndarray,
    train_idx: np.ndarray,
    holdout_idx: np.ndarray,
    predict_idx: np.ndarray,
    profile: TrainProfile,
    seed: int,
    fold: int,
    **kwargs: Any,
) -> FoldResult:
    """Train on `images[train_idx]` with `clean_labels[train_idx]` for
    `profile.clean_epochs` epochs, then score `holdout_idx` and `predict_idx` (image indices
    into `images`, e.g. every noisy training image). Batch: `profile.clean_batch_size`.
    `kwargs` go to `train_classifier`; pass `initial_model=<Model I's model>` when
    `profile.clean_init == "model1"` (fine-tuning from features learnt on all noisy labels
    beats training from scratch on the small clean set at the same budget)."""
    train_idx, holdout_idx, predict_idx = (
        np.asarray(i, dtype=np.int64) for i in (train_idx, holdout_idx, predict_idx))
    clean_labels = np.asarray(clean_labels, dtype=np.int64)
    if np.intersect1d(train_idx, holdout_idx).size:
        raise ValueError(f"fold {fold}: train_idx and holdout_idx overlap")
    if (clean_labels[train_idx] < 0).any() or (clean_labels[holdout_idx] < 0).any():
        raise ValueError(f"fold {fold}: train/holdout images must all have clean labels")
    kwargs.setdefault("epochs", profile.clean_epochs)
    kwargs.setdefault("batch_size", profile.clean_batch_size)
    kwargs.setdefault("progress_label", f"clean model fold {fold}" if holdout_idx.size
                      else "clean model")
    result = train_classifier(
        images[train_idx], clean_labels[train_idx], profile, seed=seed + 1000 * (fold + 1),
        **kwargs,
    )
    return FoldResult(
        fold=fold,
        holdout_idx=holdout_idx,
        holdout_proba=predict_proba(result.model, images[holdout_idx], tta=profile.tta,
                                    progress_label=f"fold {fold} predicts its holdout"),
        predict_idx=predict_idx,
        predict_proba=predict_proba(result.model, images[predict_idx], tta=profile.tta,
                                    progress_label=f"{kwargs['progress_label']} predicts"),
        train=result,
    )


def fold_prediction_idx(noisy_idx: np.ndarray, val_idx: np.ndarray) -> np.ndarray:
    """Images every fold scores besides its holdout: the noisy images (to correct them) and
    the validation images (scoring is not training: it measures the correction where the
    truth is known)."""
    return np.union1d(np.asarray(noisy_idx, np.int64), np.asarray(val_idx, np.int64))


def combine_folds(folds: list[FoldResult], num_images: int) -> np.ndarray:
    """float32 [num_images, 10]: the out-of-fold probabilities for holdout images, the mean
    over folds elsewhere (images several folds predicted), NaN rows for images no fold
    scored. A holdout prediction wins over any other fold's prediction of the same image."""
    if not folds:
        raise ValueError("combine_folds: no folds")
    k = folds[0].holdout_proba.shape[1]
    total = np.zeros((num_images, k), np.float64)
    count = np.zeros(num_images, np.int64)
    for f in folds:
        np.add.at(total, f.predict_idx, f.predict_proba)
        np.add.at(count, f.predict_idx, 1)
    combined = np.full((num_images, k), np.nan, np.float32)
    seen = count > 0
    combined[seen] = (total[seen] / count[seen, None]).astype(np.float32)
    for f in folds:
        combined[f.holdout_idx] = f.holdout_proba
    return combined


def stack_folds(folds: list[FoldResult], num_images: int) -> np.ndarray:
    """float32 [F, num_images, 10]: each fold's own predictions (holdout and others), NaN
    where that fold predicted nothing; what `relabel review` reads for fold disagreement."""
    if not folds:
        raise ValueError("stack_folds: no folds")
    k = folds[0].holdout_proba.shape[1]
    stacked = np.full((len(folds), num_images, k), np.nan, dtype=np.float32)
    for row, fold in enumerate(folds):
        stacked[row, fold.holdout_idx] = fold.holdout_proba
        stacked[row, fold.predict_idx] = fold.predict_proba
    return stacked
