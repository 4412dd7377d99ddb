"""Model II: retraining on the clean labels plus the corrected noisy labels."""

import numpy as np
import pytest

from relabel.config import PROFILES
from relabel.tasks.correct import Correction
from relabel.tasks.model2 import retrain_model2

SMOKE = PROFILES["smoke"]


def kept_as_labelled(labels: np.ndarray) -> Correction:
    """A correction that keeps every image with its given label, one-hot."""
    targets = np.eye(10, dtype=np.float32)[labels]
    return Correction(targets=targets, labels=targets.argmax(1), confidence=targets.max(1),
                      keep=np.ones(len(labels), bool))


@pytest.mark.slow
def test_model2_trains_for_the_profile_epochs_on_disjoint_clean_and_noisy_sets(demo):
    clean_train_idx, noisy_idx = np.arange(64), np.arange(100, 164)
    correction = kept_as_labelled(demo.noisy_labels[noisy_idx])
    result = retrain_model2(demo.images, clean_train_idx, demo.clean_labels, noisy_idx,
                            correction, SMOKE, seed=0)
    assert result.epochs == SMOKE.retrain_epochs
    assert len(result.history["loss"]) == SMOKE.retrain_epochs
    assert np.isfinite(result.history["loss"]).all()
    with pytest.raises(ValueError, match="overlap"):  # image 60-63 in both sets
        retrain_model2(demo.images, np.arange(64), demo.clean_labels, np.arange(60, 124),
                       correction, SMOKE, seed=0)


@pytest.mark.slow
def test_model2_mixes_with_its_own_alpha_when_the_profile_gives_one(demo):
    clean_train_idx, noisy_idx = np.arange(128), np.arange(200, 328)
    correction = kept_as_labelled(demo.noisy_labels[noisy_idx])

    def trained_loss(**fields: float | None) -> float:
        profile = SMOKE.model_copy(update=fields)
        result = retrain_model2(demo.images, clean_train_idx, demo.clean_labels, noisy_idx,
                                correction, profile, seed=0)
        return result.history["loss"][-1]

    assert SMOKE.mixup_alpha > 0 and SMOKE.retrain_mixup_alpha is None
    inherited = trained_loss()
    assert trained_loss(retrain_mixup_alpha=SMOKE.mixup_alpha) == inherited
    assert trained_loss(retrain_mixup_alpha=0.0) != inherited
    assert trained_loss(mixup_alpha=0.0, retrain_mixup_alpha=0.0) \
        == trained_loss(mixup_alpha=0.4, retrain_mixup_alpha=0.0)
