"""Label correction on synthetic data with a known noise model."""

import numpy as np
import pytest

from relabel.tasks.correct import (
    Correction,
    correct_labels,
    correct_noisy_images,
    correction_accuracy,
    fit_temperature,
    fit_temperature_to_noisy_labels,
    temper,
    training_targets,
)


def _synthetic(n: int = 20_000, seed: int = 0):
    """A calibrated model's probabilities, true labels drawn from them, and noisy labels from
    a known noise model (60% symmetric noise), so Bayes' rule applies exactly."""
    rng = np.random.default_rng(seed)
    k = 10
    t = np.full((k, k), 0.6 / 9)
    np.fill_diagonal(t, 0.4)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), rng.integers(0, k, n)] += rng.uniform(0, 5, n)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    cumulative = proba.cumsum(axis=1)
    true = np.minimum((rng.random((n, 1)) > cumulative).sum(axis=1), k - 1)
    noisy = np.array([rng.choice(k, p=t[y]) for y in true])
    return true, noisy, t, proba


def test_posterior_correction_beats_both_the_noisy_label_and_the_model():
    true, noisy, t, proba = _synthetic()
    correction = correct_labels(proba, noisy, t, method="posterior")
    accuracy = correction_accuracy(correction, true)
    noisy_accuracy = np.mean(noisy == true)
    model_accuracy = np.mean(proba.argmax(1) == true)
    assert noisy_accuracy == pytest.approx(0.4, abs=0.02)
    assert accuracy > model_accuracy + 0.03
    assert model_accuracy > noisy_accuracy
    assert correction.targets.shape == (true.size, 10)
    np.testing.assert_allclose(correction.targets.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(correction.labels, correction.targets.argmax(1))
    assert correction.keep.all()


def test_threshold_rule_keeps_only_confident_predictions():
    true, noisy, t, proba = _synthetic()
    proba[: true.size // 2] = 0.1  # half the images: no confident class
    correction = correct_labels(proba, noisy, t, method="threshold", threshold=0.6)
    assert not correction.keep[: true.size // 2].any()
    confident = proba[true.size // 2:].max(axis=1) > 0.6
    assert 0 < confident.mean() < 1
    np.testing.assert_array_equal(correction.keep[true.size // 2:], confident)
    np.testing.assert_array_equal(correction.labels, proba.argmax(1))


def test_class_balanced_filtering_keeps_the_fraction_per_class():
    true, noisy, t, proba = _synthetic()
    correction = correct_labels(proba, noisy, t, keep_fraction=0.5)
    for c in range(10):
        in_class = correction.labels == c
        assert correction.keep[in_class].mean() == pytest.approx(0.5, abs=0.01)
    kept_accuracy = correction_accuracy(correction, true, kept_only=True)
    assert kept_accuracy > correction_accuracy(correction, true)


def test_temperature_fit_undoes_a_known_softening():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 10, 5000)
    logits = rng.normal(0, 1, (5000, 10))
    logits[np.arange(5000), true] += 3.0
    calibrated = temper(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 1.0)
    labels = np.array([rng.choice(10, p=p) for p in calibrated])  # labels drawn from the model
    softened = temper(calibrated, 2.5)
    assert fit_temperature(softened, labels) == pytest.approx(1 / 2.5, rel=0.15)


def test_noisy_label_likelihood_recovers_the_temperature_without_clean_labels():
    """The noisy labels alone calibrate the model: the fit undoes a known sharpening and a
    known softening, and agrees with the fit on the true labels."""
    true, noisy, t, proba = _synthetic(8000, seed=5)
    for factor in (0.5, 2.0):
        distorted = temper(proba, factor)
        fitted = fit_temperature_to_noisy_labels(distorted, noisy, t)
        assert fitted == pytest.approx(1 / factor, rel=0.15)
        assert fitted == pytest.approx(fit_temperature(distorted, true), rel=0.15)
    with pytest.raises(ValueError, match="noisy_labels"):
        fit_temperature_to_noisy_labels(proba, noisy[:10], t)


def test_bad_inputs_are_named():
    true, noisy, t, proba = _synthetic(n=50)
    with pytest.raises(ValueError, match="transition"):
        correct_labels(proba, noisy, t[:5])
    proba[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        correct_labels(proba, noisy, t)
    with pytest.raises(ValueError, match="method"):
        correct_labels(proba[:2], noisy[:2], t, method="vote")


def test_pipeline_correction_calibrates_on_the_noisy_images_and_reports_on_validation():
    true, noisy, t, proba = _synthetic(6000, seed=3)
    sharp = temper(proba, 0.5)  # an over-confident model: the fitted temperature undoes it
    clean = np.full(true.size, -1)
    clean[:3000] = true[:3000]
    val, noisy_idx = np.arange(2000, 3000), np.arange(3000, 6000)
    correction, metrics = correct_noisy_images(sharp, noisy, clean, t, noisy_idx, val)
    assert correction.labels.shape == (3000,)
    assert metrics["temperature"] == pytest.approx(2.0, rel=0.15)
    expected = correct_labels(proba[val], noisy[val], t)
    assert metrics["validation_correction_accuracy"] == pytest.approx(
        correction_accuracy(expected, true[val]), abs=0.02)
    assert metrics["validation_noisy_label_accuracy"] == pytest.approx(
        np.mean(noisy[val] == true[val]))
    assert metrics["corrected_images"] == 3000 and metrics["kept_images"] == 3000
    # A production run (no validation images) corrects the same, and claims no estimate.
    same, unmeasured = correct_noisy_images(sharp, noisy, clean, t, noisy_idx,
                                            np.empty(0, np.int64))
    np.testing.assert_array_equal(same.labels, correction.labels)
    assert not any(k.startswith("validation") for k in unmeasured)
    assert unmeasured["temperature"] == metrics["temperature"]



def _correction(rows: int) -> Correction:
    rng = np.random.default_rng(0)
    targets = rng.dirichlet(np.ones(10), rows).astype(np.float32)
    return Correction(targets=targets, labels=targets.argmax(1),
                      confidence=targets.max(1), keep=np.arange(rows) % 4 != 0)


def test_clean_rows_are_smoothed_and_corrected_rows_kept_as_they_are():
    labels = np.full(20, -1)
    labels[:6] = [0, 1, 2, 3, 4, 5]
    correction = _correction(8)
    noisy_idx = np.arange(10, 18)
    index, targets, weights = training_targets(np.arange(6), labels, noisy_idx, correction,
                                              clean_smoothing=0.2)
    np.testing.assert_array_equal(index, np.r_[np.arange(6), noisy_idx[correction.keep]])
    assert targets[0, 0] == pytest.approx(0.82) and targets[0, 1] == pytest.approx(0.02)
    np.testing.assert_allclose(targets[:6].sum(1), 1.0, rtol=1e-6)
    # The posterior already says how sure it is: no second smoothing on top.
    np.testing.assert_array_equal(targets[6:], correction.targets[correction.keep])
    np.testing.assert_array_equal(weights, np.ones(index.size, np.float32))
    with pytest.raises(ValueError, match="clean_smoothing"):
        training_targets(np.arange(6), labels, noisy_idx, correction, clean_smoothing=1.0)


def test_training_targets_refuse_overlapping_sets():
    labels = np.full(3002, -1)
    labels[:3] = 0
    correction = Correction(np.full((3, 10), 0.1, np.float32), np.zeros(3, np.int64),
                            np.ones(3, np.float32), np.ones(3, bool))
    with pytest.raises(ValueError, match="overlap"):
        training_targets(np.array([0, 1, 2]), labels, np.array([2, 3000, 3001]), correction)
