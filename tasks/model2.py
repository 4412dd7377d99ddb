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

from relabel.config import TrainProfile
from relabel.tasks.correct import Correction, training_targets
from relabel.tasks.train import TrainResult, train_classifier


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
    index, targets, weights = training_targets(
        clean_train_idx, clean_labels, noisy_idx, correction, weight_by_confidence,
        clean_smoothing=profile.label_smoothing)
    kwargs.setdefault("epochs", profile.retrain_epochs)
    kwargs.setdefault("progress_label", "Model II")
    kwargs.setdefault("label_smoothing", 0.0)  # applied above, to the clean rows only
    if profile.retrain_mixup_alpha is not None:
        kwargs.setdefault("mixup_alpha", profile.retrain_mixup_alpha)
    return train_classifier(
        np.asarray(images)[index], targets, profile, seed=seed, sample_weight=weights,
        **kwargs,
    )
