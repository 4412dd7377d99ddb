"""The baseline: logistic regression on RGB-histogram features, trained on the noisy labels.

This is the old notebook's first model (about 24% accuracy on clean labels), kept so users
see how much the neural models add. Features are standardised first (the raw counts span
0..1024, which makes the solver converge slowly); the fit is deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


def fit_baseline(features: np.ndarray, labels: np.ndarray, seed: int) -> Pipeline:
    """Fit multinomial logistic regression on `features` [n, d] with int `labels` [n]."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"features {features.shape} and labels {labels.shape}: need [n, d] and [n]"
        )
    model = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed)
    )
    model.fit(features, labels)
    return model


def predict_baseline(model: Pipeline, features: np.ndarray) -> np.ndarray:
    """Predicted class per row of `features`, int64 [n]."""
    return np.asarray(model.predict(np.asarray(features, dtype=np.float64)), dtype=np.int64)
