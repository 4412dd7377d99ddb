"""Model I: learns from the noisy labels alone (plus the noise model as weak supervision).

With `loss="forward"` the loss is forward-corrected by the estimated transition matrix T
(see tasks/train.py), so the network's softmax estimates the clean class even though every
target is a noisy label. `loss="ce"` is plain cross-entropy on the noisy labels, the old
notebook's Model I, for comparison.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from relabel.config import TrainProfile
from relabel.tasks.train import TrainResult, train_classifier


def train_model1(
    images: np.ndarray,
    noisy_labels: np.ndarray,
    transition: np.ndarray,
    profile: TrainProfile,
    seed: int,
    loss: Literal["forward", "ce"] = "forward",
    **kwargs: Any,
) -> TrainResult:
    """Train on `images` [n, 32, 32, 3] with their `noisy_labels` [n] for
    `profile.noisy_epochs` epochs at `profile.model1_width` (the first
    `profile.max_train_images` images only, when the profile caps them). Callers pass
    only images outside the validation split.
    `kwargs` go to `train_classifier` (eval_images, on_epoch_end, ...)."""
    if loss not in ("forward", "ce"):
        raise ValueError(f"loss must be 'forward' or 'ce', got {loss!r}")
    images = np.asarray(images)
    noisy_labels = np.asarray(noisy_labels)
    if profile.max_train_images is not None:
        images = images[: profile.max_train_images]
        noisy_labels = noisy_labels[: profile.max_train_images]
    if profile.model1_width is not None:
        profile = profile.model_copy(update={"width": profile.model1_width})
    kwargs.setdefault("epochs", profile.noisy_epochs)
    kwargs.setdefault("progress_label", "Model I")
    if loss == "forward":
        # Smoothing the noisy targets as well would double-count the noise T already models.
        kwargs.setdefault("label_smoothing", 0.0)
    kwargs.setdefault("mixup_alpha", 0.0)  # Model I stays the plain noisy-labels comparison
    return train_classifier(
        images, noisy_labels, profile, seed=seed,
        transition=transition if loss == "forward" else None, **kwargs,
    )
