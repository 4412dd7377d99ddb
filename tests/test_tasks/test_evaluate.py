"""Scores of predictions: accuracy, F1 and the confusion matrix agree with a count by hand."""

from __future__ import annotations

import numpy as np
import pytest

from relabel import CLASS_NAMES
from relabel.tasks.evaluate import evaluate


def test_scores_match_a_count_by_hand() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    y_pred = np.array([0, 1, 1, 1, 2, 0, 3, 3])
    scores = evaluate(y_true, y_pred)
    assert scores["accuracy"] == pytest.approx(6 / 8)
    confusion = np.array(scores["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 8
    assert confusion[0, 1] == 1 and confusion[2, 0] == 1  # [true][predicted]
    np.testing.assert_array_equal(np.diag(confusion)[:4], [1, 2, 1, 2])
    # class 0: precision 1/2, recall 1/2; class 1: precision 2/3, recall 1
    assert scores["per_class_f1"]["plane"] == pytest.approx(0.5)
    assert scores["per_class_f1"]["car"] == pytest.approx(0.8)
    assert scores["per_class_f1"]["truck"] == 0.0  # absent class: 0, not a warning
    assert scores["macro_f1"] == pytest.approx(np.mean(list(scores["per_class_f1"].values())))
    assert list(scores["per_class_f1"]) == list(CLASS_NAMES)
    assert "plane" in scores["report"]


@pytest.mark.parametrize(("y_true", "y_pred", "message"), [
    ([0, 1], [0], "need equal 1-D"),
    ([[0, 1]], [[0, 1]], "need equal 1-D"),
    ([], [], "nothing to evaluate"),
])
def test_mismatched_or_empty_inputs_are_refused(y_true: list, y_pred: list,
                                                message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(np.array(y_true), np.array(y_pred))
