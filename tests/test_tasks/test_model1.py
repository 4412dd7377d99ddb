"""Model I: the noisy-labels-only model, forward-corrected by the noise model."""

import numpy as np
import pytest

from relabel.config import PROFILES
from relabel.tasks.model1 import train_model1
from relabel.tasks.models import build_model
from relabel.tasks.noise import estimate_transition

SMOKE = PROFILES["smoke"]


def test_an_unknown_loss_is_refused_before_training(demo):
    with pytest.raises(ValueError, match="loss must be 'forward' or 'ce'"):
        train_model1(demo.images[:16], demo.noisy_labels[:16], np.eye(10), SMOKE, seed=0,
                     loss="mae")


@pytest.mark.slow
def test_model1_trains_at_its_own_width_with_either_loss(demo):
    n = 256
    transition = estimate_transition(demo.clean_labels, demo.noisy_labels)
    profile = SMOKE.model_copy(update={"width": 0.5, "model1_width": 0.25})
    forward = train_model1(demo.images[:n], demo.noisy_labels[:n], transition, profile,
                           seed=0)
    assert np.isfinite(forward.history["loss"]).all()
    assert forward.epochs == profile.noisy_epochs
    assert forward.model.count_params() == build_model("airbench", 0.25).count_params()
    plain = train_model1(demo.images[:n], demo.noisy_labels[:n], transition, profile, seed=0,
                         loss="ce", epochs=1)
    assert np.isfinite(plain.history["loss"]).all() and plain.epochs == 1
