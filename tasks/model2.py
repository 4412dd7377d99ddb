"""Model II: retrain on the clean labels plus the corrected labels of the noisy images.

Clean images get their clean label (one-hot, smoothed by the profile's `label_smoothing`)
with weight 1; each kept noisy image gets its corrected soft target (the label-correction
posterior, never smoothed again: it already says how sure it is) with weight 1, or its
confidence when `weight_by_confidence`. Most of Model II's accuracy comes from this step:
it is the only one that trains on all 50,000 images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from relabel import NUM_CLASSES
from relabel.config import TrainProfile
from relabel.tasks.correct import Correction
from relabel.tasks.train import TrainResult, train_classifier


def retrain_targets(
    clean_train_idx: np.ndarray,
    clean_labels: np.ndarray,
    noisy_idx: np.ndarray,
    correction: Correction,
    weight_by_confidence: bool = False,
    clean_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image indices, soft targets float32 [m, 10], sample weights [m]) of the retraining
    set: clean-train images first (one-hot labels smoothed by `clean_smoothing`), then the
    kept noisy images. Rows of `correction` follow `noisy_idx`."""
    clean_train_idx = np.asarray(clean_train_idx, dtype=np.int64)
    noisy_idx = np.asarray(noisy_idx, dtype=np.int64)
    clean_labels = np.asarray(clean_labels, dtype=np.int64)
    if correction.targets.shape[0] != noisy_idx.size:
        raise ValueError(f"correction has {correction.targets.shape[0]} rows for "
                         f"{noisy_idx.size} noisy images")
    if np.intersect1d(clean_train_idx, noisy_idx).size:
        raise ValueError("clean_train_idx and noisy_idx overlap")
    if (clean_labels[clean_train_idx] < 0).any():
        raise ValueError("clean_train_idx contains images without a clean label")
    if not 0 <= clean_smoothing < 1:
        raise ValueError(f"clean_smoothing must be in [0, 1), got {clean_smoothing}")
    keep = correction.keep
    index = np.concatenate([clean_train_idx, noisy_idx[keep]])
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[clean_labels[clean_train_idx]]
    targets = np.concatenate([
        (1.0 - clean_smoothing) * one_hot + clean_smoothing / NUM_CLASSES,
        correction.targets[keep].astype(np.float32),
    ])
    noisy_weight = correction.confidence[keep] if weight_by_confidence else np.ones(
        int(keep.sum()), np.float32)
    weights = np.concatenate([np.ones(clean_train_idx.size, np.float32),
                              noisy_weight.astype(np.float32)])
    return index, targets, weights


def retrain_model2(
    images: np.ndarray,
    clean_train_idx: np.ndarray,
    clean_labels: np.ndarray,
    noisy_idx: np.ndarray,
    correction: Correction,
    profile: TrainProfile,
    seed: int,
    *,
    weight_by_confidence: bool | None = None,
    **kwargs: Any,
) -> TrainResult:
    """Train Model II on clean-train images + kept corrected noisy images for
    `profile.retrain_epochs` epochs. Validation images must be in neither index set.
    `weight_by_confidence` defaults to the profile's. `kwargs` go to `train_classifier`
    (eval_images, on_epoch_end, ...); pass `initial_model=<Model I's model>` when
    `profile.retrain_init == "model1"`."""
    if weight_by_confidence is None:
        weight_by_confidence = profile.weight_by_confidence
    index, targets, weights = retrain_targets(
        clean_train_idx, clean_labels, noisy_idx, correction, weight_by_confidence,
        clean_smoothing=profile.label_smoothing)
    kwargs.setdefault("epochs", profile.retrain_epochs)
    kwargs.setdefault("progress_label", "Model II")
    kwargs.setdefault("label_smoothing", 0.0)  # applied above, to the clean rows only
    return train_classifier(
        np.asarray(images)[index], targets, profile, seed=seed, sample_weight=weights,
        **kwargs,
    )
