"""Label issues: which given labels look wrong.

cleanlab's confident learning (`cleanlab.filter.find_label_issues`) on out-of-sample class
probabilities (the clean model's out-of-fold / fold-ensemble probabilities,
`tasks.clean_model.combine_folds`) ranks the images whose *given* (noisy) label is most likely
wrong, each with the label the model suggests and an issue score `1 - label quality` in
[0, 1] (higher = more likely wrong); cleanlab also estimates how many given labels of each
class are wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from relabel.constants import CLASS_NAMES, NUM_CLASSES

log = logging.getLogger(__name__)

IssueMethod = Literal["self_confidence", "normalized_margin"]


def class_name(label: int) -> str:
    """The class name of a label, "?" for anything outside 0..9 (e.g. unknown)."""
    return CLASS_NAMES[label] if 0 <= label < NUM_CLASSES else "?"


def check_proba(pred_probs: np.ndarray, name: str = "pred_probs") -> np.ndarray:
    """`pred_probs` as float64 [N, 10], or a ValueError naming it."""
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or pred_probs.shape[1] != NUM_CLASSES:
        raise ValueError(f"{name}: expected shape [N, {NUM_CLASSES}], got {pred_probs.shape}")
    return pred_probs


@dataclass(frozen=True)
class LabelIssues:
    """Given labels that are probably wrong, most likely wrong first.

    `image_ids` are 1-based (image id `i` is `images[i - 1]`); `scores` are `1 - label quality`
    of the given label under cleanlab's ranking method, in [0, 1]; `per_class` maps each class
    name to cleanlab's estimate of how many given labels of that class are wrong
    (`estimated_issues`, `estimated_noise_rate`) and how many were flagged here (`flagged`).
    """

    image_ids: np.ndarray  # int64 [m]
    given_labels: np.ndarray  # int64 [m]
    suggested_labels: np.ndarray  # int64 [m], argmax of the probabilities
    scores: np.ndarray  # float64 [m]
    per_class: dict[str, dict[str, float]]
    num_candidates: int  # images examined
    method: str

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def estimated_total(self) -> int:
        return int(sum(v["estimated_issues"] for v in self.per_class.values()))

    def top(self, n: int) -> LabelIssues:
        return LabelIssues(
            self.image_ids[:n], self.given_labels[:n], self.suggested_labels[:n],
            self.scores[:n], self.per_class, self.num_candidates, self.method,
        )


def find_label_issues(
    noisy_labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    indices: np.ndarray | None = None,
    method: IssueMethod = "self_confidence",
    filter_by: str = "prune_by_noise_rate",
) -> LabelIssues:
    """Rank the given labels most likely wrong, with cleanlab's confident learning.

    `pred_probs` must be out-of-sample for every examined image (a model never trained on that
    image's label), e.g. `combine_folds` output. `indices` (0-based) restricts the examination
    to some images; by default every image whose probability row is finite is examined (rows
    of NaN are images no model predicted).
    """
    import cleanlab.dataset
    import cleanlab.filter
    import cleanlab.rank

    pred_probs = check_proba(pred_probs)
    noisy_labels = np.asarray(noisy_labels, dtype=np.int64)
    if noisy_labels.shape != (len(pred_probs),):
        raise ValueError(
            f"noisy_labels has {noisy_labels.shape} entries, pred_probs has {len(pred_probs)} rows"
        )
    if method not in ("self_confidence", "normalized_margin"):
        raise ValueError(f"method must be self_confidence or normalized_margin, got {method!r}")
    finite = np.isfinite(pred_probs).all(axis=1)
    if indices is None:
        indices = np.flatnonzero(finite)
    else:
        indices = np.asarray(indices, dtype=np.int64)
        if not finite[indices].all():
            bad = indices[~finite[indices]][0]
            raise ValueError(f"image id {bad + 1} has no probabilities (NaN row) but was asked for")
    if len(indices) < NUM_CLASSES:
        raise ValueError(
            f"need at least {NUM_CLASSES} images to find label issues, got {len(indices)}"
        )
    labels = noisy_labels[indices]
    probs = pred_probs[indices]
    # Renormalise: float32 softmax averages sum to 1 only to ~1e-6, cleanlab expects exact rows.
    probs = probs / probs.sum(axis=1, keepdims=True)

    # n_jobs=1: cleanlab's multiprocessing costs more than it saves on small shared machines.
    ranked = cleanlab.filter.find_label_issues(
        labels, probs, return_indices_ranked_by=method, filter_by=filter_by, n_jobs=1
    )
    quality = cleanlab.rank.get_label_quality_scores(labels, probs, method=method)
    classes = cleanlab.dataset.rank_classes_by_label_quality(labels, probs)
    flagged = np.bincount(labels[ranked], minlength=NUM_CLASSES)
    per_class: dict[str, dict[str, float]] = {}
    for _, row in classes.sort_values("Class Index").iterrows():
        c = int(row["Class Index"])
        per_class[CLASS_NAMES[c]] = {
            "estimated_issues": int(row["Label Issues"]),
            "estimated_noise_rate": round(float(row["Label Noise"]), 4),
            "flagged": int(flagged[c]),
        }
    return LabelIssues(
        image_ids=indices[ranked] + 1,
        given_labels=labels[ranked],
        suggested_labels=probs[ranked].argmax(axis=1).astype(np.int64),
        scores=1.0 - quality[ranked],
        per_class=per_class,
        num_candidates=int(len(indices)),
        method=method,
    )


def issue_precision(issues: LabelIssues, true_labels: np.ndarray, top_n: Sequence[int]) -> dict:
    """Share of the top-n flagged images whose given label really is wrong, for each n.

    `true_labels` is full-length (-1 where unknown); only images with a known true label count,
    so call `find_label_issues` with `indices` = the images whose truth is known.
    """
    wrong = true_labels[issues.image_ids - 1] != issues.given_labels
    known = true_labels[issues.image_ids - 1] >= 0
    if not known.all():
        raise ValueError("issue_precision: some flagged images have no known true label")
    out = {}
    for n in top_n:
        n_eff = min(n, len(wrong))
        out[n] = float(wrong[:n_eff].mean()) if n_eff else float("nan")
    return out
