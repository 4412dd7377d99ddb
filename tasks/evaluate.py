"""Scores of a model's predictions against true labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from relabel.constants import CLASS_NAMES, NUM_CLASSES


def evaluate(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """accuracy (fraction correct), macro_f1, per_class_f1 {class name: f1}, report (sklearn's
    classification_report text) and confusion (list of lists, [true][predicted] counts)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape}: need equal 1-D")
    if y_true.size == 0:
        raise ValueError("y_true is empty: nothing to evaluate")
    labels = list(range(NUM_CLASSES))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
        "per_class_f1": {name: float(f) for name, f in zip(CLASS_NAMES, per_class, strict=True)},
        "report": classification_report(
            y_true, y_pred, labels=labels, target_names=list(CLASS_NAMES), digits=4,
            zero_division=0,
        ),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
