"""Noise-transition estimation and its plots."""

import numpy as np
import pytest

from relabel.tasks.noise import (
    estimate_transition,
    noise_rates,
    overall_noise_rate,
    plot_noise_rates,
    plot_transition,
)


def _known_transition(k: int = 10) -> np.ndarray:
    """60% noise, uniform over the other classes, plus a pair flip for class 3 -> 5."""
    t = np.full((k, k), 0.6 / (k - 1))
    np.fill_diagonal(t, 0.4)
    t[3] = 0.02
    t[3, 3], t[3, 5] = 0.5, 0.5 - 0.02 * (k - 2)
    return t


def test_transition_is_recovered_from_samples():
    rng = np.random.default_rng(0)
    true_t = _known_transition()
    true = rng.integers(0, 10, 60_000)
    noisy = np.array([rng.choice(10, p=true_t[y]) for y in true])
    estimate = estimate_transition(true, noisy, smoothing=1.0)
    assert estimate.shape == (10, 10)
    np.testing.assert_allclose(estimate.sum(axis=1), 1.0)
    assert np.abs(estimate - true_t).max() < 0.02
    np.testing.assert_allclose(noise_rates(estimate), 1 - np.diag(estimate))
    assert overall_noise_rate(estimate) == pytest.approx(1 - np.diag(true_t).mean(), abs=0.01)


def test_unknown_labels_are_ignored_and_smoothing_fills_empty_rows():
    true = np.array([0, 0, -1, -1, 1])
    noisy = np.array([0, 1, 2, 2, 1])
    t = estimate_transition(true, noisy, num_classes=3, smoothing=1.0)
    np.testing.assert_allclose(t[0], [2 / 5, 2 / 5, 1 / 5])
    np.testing.assert_allclose(t[2], [1 / 3] * 3)  # no class-2 pairs: uniform
    with pytest.raises(ValueError, match="smoothing=0"):
        estimate_transition(true, noisy, num_classes=3, smoothing=0.0)
    with pytest.raises(ValueError, match="same length"):
        estimate_transition(true, noisy[:3])


def test_plots_are_written_as_png(tmp_path):
    t = _known_transition()
    for path in (plot_transition(t, tmp_path / "t.png"),
                 plot_noise_rates(noise_rates(t), tmp_path / "rates.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rates.png", "t.png"]
