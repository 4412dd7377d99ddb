"""Label correction: decide what each noisy image's label most probably is.

`posterior` (default) combines two independent pieces of evidence about the true class y of
an image x with noisy label ñ, by Bayes' rule with the noise model T[y, ñ] = P(ñ | y):

    P(y | x, ñ)  ∝  p(y | x) · T[y, ñ]

where p(y | x) is the clean model's (calibrated) prediction. On the reference data T has
0.40 on the diagonal and ~0.067 elsewhere, so a noisy label multiplies the odds of its class
by ~6: it decides the close calls the model alone gets wrong. The targets are the full
posterior (soft labels), so a doubtful image teaches the retrained model little.

`threshold` is the old notebook's rule, kept for comparison: the model's top class, kept
only when its probability exceeds `threshold` (0.85); the noisy label is ignored.

`training_targets` turns a correction into a training set (clean rows + corrected rows), as
Model II and the self-training students train on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from relabel.constants import NUM_CLASSES


@dataclass
class Correction:
    """targets: float32 [n, k] soft labels (rows sum to 1); labels: int64 [n] their argmax;
    confidence: float32 [n] the probability of that label; keep: bool [n] rows to train on."""

    targets: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    keep: np.ndarray

    @property
    def kept_fraction(self) -> float:
        return float(self.keep.mean()) if self.keep.size else 0.0


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale probabilities as softmax(log p / temperature); rows sum to 1."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def label_posterior(proba: np.ndarray, noisy_labels: np.ndarray,
                    transition: np.ndarray) -> np.ndarray:
    """P(y | x, ñ) ∝ p(y | x) · T[y, ñ] (see the module docstring), float64 [n, k]; rows of
    NaN probabilities (images no model scored) stay NaN."""
    proba = np.asarray(proba, dtype=np.float64)
    transition = np.asarray(transition, dtype=np.float64)
    k = proba.shape[1] if proba.ndim == 2 else -1
    if transition.shape != (k, k):
        raise ValueError(f"transition: expected shape ({k}, {k}), got {transition.shape}")
    joint = proba * transition[:, np.asarray(noisy_labels, dtype=np.int64)].T
    return joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-12)


def _fit_log_temperature(nll: Callable[[float], float]) -> float:
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def fit_temperature(proba: np.ndarray, labels: np.ndarray) -> float:
    """Temperature that minimises the negative log-likelihood of the true `labels` under
    `temper(proba, t)`; needs images whose truth is known and that the model never saw.

    Models trained with label smoothing are under-confident (t < 1 sharpens them), which
    would otherwise let the noisy label outvote the model too often.
    """
    proba = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(labels.size)
    return _fit_log_temperature(
        lambda log_t: float(-np.log(temper(proba, np.exp(log_t))[rows, labels] + 1e-12).mean()))


def fit_temperature_to_noisy_labels(proba: np.ndarray, noisy_labels: np.ndarray,
                                    transition: np.ndarray) -> float:
    """Temperature that maximises the likelihood of the *noisy* labels,
    P(ñ | x) = sum_y temper(p, t)(y | x) T[y, ñ], over images the model never trained on.

    It calibrates the model on exactly the images it will correct (no out-of-fold models
    and no clean labels spent on calibration), as long as the model has not seen those
    images' noisy labels: a model that had would look over-confident in them.
    """
    proba = np.asarray(proba, dtype=np.float64)
    noisy_labels = np.asarray(noisy_labels, dtype=np.int64)
    transition = np.asarray(transition, dtype=np.float64)
    if proba.ndim != 2 or noisy_labels.shape != (proba.shape[0],) or not proba.shape[0]:
        raise ValueError(f"proba {proba.shape} and noisy_labels {noisy_labels.shape}: need "
                         "[n, k] and [n], n > 0")
    return _fit_log_temperature(
        lambda log_t: noisy_label_nll(temper(proba, np.exp(log_t)), noisy_labels, transition))


def noisy_label_nll(proba: np.ndarray, noisy_labels: np.ndarray,
                    transition: np.ndarray) -> float:
    """Mean negative log-likelihood of the noisy labels under p(y | x) = `proba` and the
    noise model: -log sum_y p(y | x) T[y, ñ]."""
    noisy_proba = np.asarray(proba, dtype=np.float64) @ np.asarray(transition, np.float64)
    rows = np.arange(len(noisy_labels))
    return float(-np.log(noisy_proba[rows, np.asarray(noisy_labels, np.int64)] + 1e-12).mean())


def _class_balanced_keep(labels: np.ndarray, confidence: np.ndarray, fraction: float,
                         num_classes: int) -> np.ndarray:
    """Keep the `fraction` most confident rows of each predicted class, so filtering does
    not shift the class balance towards the easy classes."""
    keep = np.zeros(labels.size, dtype=bool)
    for c in range(num_classes):
        rows = np.flatnonzero(labels == c)
        if rows.size == 0:
            continue
        count = int(np.ceil(fraction * rows.size))
        best = rows[np.argsort(-confidence[rows], kind="stable")[:count]]
        keep[best] = True
    return keep


def correct_labels(
    proba: np.ndarray,
    noisy_labels: np.ndarray,
    transition: np.ndarray,
    method: Literal["posterior", "threshold"] = "posterior",
    threshold: float = 0.85,
    *,
    temperature: float = 1.0,
    keep_fraction: float = 1.0,
) -> Correction:
    """Corrected labels for images with model probabilities `proba` [n, k] (p(true | x)) and
    noisy labels [n].

    posterior: targets = P(y | x, ñ) (see the module docstring) after tempering `proba` by
    `temperature`; keep = per class, the top `keep_fraction` by confidence.
    threshold: one-hot argmax of `proba`, keep = max > threshold.
    """
    proba = np.asarray(proba, dtype=np.float64)
    noisy_labels = np.asarray(noisy_labels, dtype=np.int64)
    transition = np.asarray(transition, dtype=np.float64)
    n, k = proba.shape if proba.ndim == 2 else (-1, -1)
    if proba.ndim != 2 or noisy_labels.shape != (n,):
        raise ValueError(f"proba {proba.shape} and noisy_labels {noisy_labels.shape}: "
                         "need [n, k] and [n]")
    if transition.shape != (k, k):
        raise ValueError(f"transition: expected shape ({k}, {k}), got {transition.shape}")
    if np.isnan(proba).any():
        raise ValueError("proba contains NaN rows (images no clean model predicted)")
    if n and (noisy_labels.min() < 0 or noisy_labels.max() >= k):
        raise ValueError(f"noisy_labels must be in 0..{k - 1}")
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")

    if method == "posterior":
        posterior = label_posterior(temper(proba, temperature), noisy_labels, transition)
        labels = posterior.argmax(axis=1)
        confidence = posterior[np.arange(n), labels]
        keep = np.ones(n, dtype=bool)
        if keep_fraction < 1:
            keep = _class_balanced_keep(labels, confidence, keep_fraction, k)
        targets = posterior
    elif method == "threshold":
        labels = proba.argmax(axis=1)
        confidence = proba[np.arange(n), labels]
        keep = confidence > threshold
        targets = np.eye(k)[labels]
    else:
        raise ValueError(f"method must be 'posterior' or 'threshold', got {method!r}")
    return Correction(
        targets=targets.astype(np.float32),
        labels=labels.astype(np.int64),
        confidence=confidence.astype(np.float32),
        keep=np.asarray(keep, dtype=bool),
    )


def correction_accuracy(correction: Correction, true_labels: np.ndarray,
                        kept_only: bool = False) -> float:
    """Fraction of corrected labels equal to the truth, over rows whose `true_labels >= 0`
    (and, with `kept_only`, that the correction keeps). NaN when there are none."""
    true_labels = np.asarray(true_labels, dtype=np.int64)
    if true_labels.shape != correction.labels.shape:
        raise ValueError(f"true_labels {true_labels.shape} vs {correction.labels.shape} "
                         "corrected labels")
    rows = true_labels >= 0
    if kept_only:
        rows &= correction.keep
    if not rows.any():
        return float("nan")
    return float(np.mean(correction.labels[rows] == true_labels[rows]))


def correct_noisy_images(
    proba: np.ndarray,
    noisy_labels: np.ndarray,
    clean_labels: np.ndarray,
    transition: np.ndarray,
    noisy_idx: np.ndarray,
    val_idx: np.ndarray,
    method: Literal["posterior", "threshold"] = "posterior",
    threshold: float = 0.85,
    keep_fraction: float = 1.0,
) -> tuple[Correction, dict[str, float]]:
    """The pipeline's correction step on whole-dataset arrays (`proba` [N, k] from the clean
    model, labels [N], -1 = no clean label): fit the temperature to the noisy labels of
    `noisy_idx` (`fit_temperature_to_noisy_labels`), correct them, and measure the same
    correction on `val_idx` (true labels known there, never trained on; no validation
    metrics when it is empty). Returns the correction of the noisy images and its metrics."""
    proba, noisy_labels = np.asarray(proba), np.asarray(noisy_labels, np.int64)
    clean_labels = np.asarray(clean_labels, np.int64)
    noisy_idx, val_idx = np.asarray(noisy_idx, np.int64), np.asarray(val_idx, np.int64)
    temperature = fit_temperature_to_noisy_labels(proba[noisy_idx], noisy_labels[noisy_idx],
                                                  transition)

    def correct(idx: np.ndarray) -> Correction:
        return correct_labels(proba[idx], noisy_labels[idx], transition, method, threshold,
                              temperature=temperature, keep_fraction=keep_fraction)

    correction = correct(noisy_idx)
    metrics = {
        "temperature": temperature,
        "corrected_images": float(len(noisy_idx)),
        "kept_images": float(correction.keep.sum()),
        "changed_from_noisy": float((correction.labels != noisy_labels[noisy_idx]).mean())
        if len(noisy_idx) else 0.0,
    }
    if len(val_idx):  # a production run (no validation images) has no estimate to report
        metrics["validation_correction_accuracy"] = correction_accuracy(
            correct(val_idx), clean_labels[val_idx])
        metrics["validation_noisy_label_accuracy"] = float(
            (noisy_labels[val_idx] == clean_labels[val_idx]).mean())
    return correction, metrics


def training_targets(
    clean_train_idx: np.ndarray,
    clean_labels: np.ndarray,
    noisy_idx: np.ndarray,
    correction: Correction,
    weight_by_confidence: bool = False,
    clean_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image indices, soft targets float32 [m, 10], sample weights [m]) of a training set
    built on a correction (Model II's, a self-training student's): clean-train images first
    (one-hot labels smoothed by `clean_smoothing`), then the kept noisy images with their
    corrected soft targets. Rows of `correction` follow `noisy_idx`."""
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
