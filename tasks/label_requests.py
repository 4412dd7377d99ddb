"""Label requests: which images a person should label next.

Images without a clean label are ranked by how much a person's label is expected to help:
the uncertainty (entropy, nats) of the image's true label after combining the model's
probabilities with its noisy label through the noise transition matrix
(`tasks.correct.label_posterior`), plus the disagreement between fold models (mutual
information, nats) when per-fold probabilities are given. The list is class-balanced (round
robin over the predicted classes, so any prefix a person labels stays balanced) and skips
near-duplicates (tiny-image cosine similarity) of images already chosen or already labelled.
It is written as an `image_id,label` CSV with the label column empty: fill it in and give it
to `relabel labels add`.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from relabel.constants import NUM_CLASSES
from relabel.fileio import write_text_atomic
from relabel.tasks.correct import label_posterior
from relabel.tasks.label_issues import check_proba

log = logging.getLogger(__name__)

RequestStrategy = Literal["entropy", "margin", "random"]

# Near-duplicate test: cosine similarity of mean-centred 16x16 RGB thumbnails. On the
# reference set the 5 most similar of 2,000 x 18,000 pairs (0.967..0.986) were all visibly the
# same picture (re-crop, colour shift); the median best match of an image is 0.69.
DUPLICATE_SIMILARITY = 0.97
_THUMB = 16
_EPS = 1e-12


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats along the last axis (0 for one-hot, ln 10 = 2.30 for uniform)."""
    return -(p * np.log(np.clip(p, _EPS, 1.0))).sum(axis=-1)


def tiny_image_features(images: np.ndarray) -> np.ndarray:
    """Unit-norm, mean-centred 16x16 RGB thumbnails (float32 [N, 768]) for near-duplicate checks.

    Centring each thumbnail removes overall brightness, so a re-exposed copy still matches.
    """
    images = np.asarray(images)
    thumbs = np.empty((len(images), _THUMB * _THUMB * 3), dtype=np.float32)
    for start in range(0, len(images), 4096):
        block = images[start : start + 4096]
        small = np.stack(
            [cv2.resize(im, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA) for im in block]
        ).reshape(len(block), -1).astype(np.float32)
        small -= small.mean(axis=1, keepdims=True)
        small /= np.maximum(np.linalg.norm(small, axis=1, keepdims=True), 1e-6)
        thumbs[start : start + len(block)] = small
    return thumbs


@dataclass(frozen=True)
class LabelRequests:
    """Images a person should label next, highest expected gain first (a balanced prefix).

    `scores` are the expected gains in nats (true-label entropy, plus fold disagreement when
    per-fold probabilities were given; random strategy: 0). `suggested_labels` is the most
    likely true label, shown to the person as a hint only.
    """

    image_ids: np.ndarray  # int64 [k], 1-based
    scores: np.ndarray  # float64 [k]
    suggested_labels: np.ndarray  # int64 [k]
    given_labels: np.ndarray | None  # int64 [k], the noisy labels when known
    strategy: str
    skipped_duplicates: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_ids)


def request_scores(
    pred_probs: np.ndarray,
    *,
    noisy_labels: np.ndarray | None = None,
    transition: np.ndarray | None = None,
    fold_proba: np.ndarray | None = None,
    strategy: RequestStrategy = "entropy",
    disagreement_weight: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected gain of labelling each image, and its most likely true label.

    entropy: H(P(true | image, noisy label)) in nats, + `disagreement_weight` x the fold
    models' mutual information H(mean) - mean(H(fold)) when `fold_proba` [F, N, 10] is given
    (NaN rows of a fold are ignored). margin: 1 - (p1 - p2) of the same posterior. random: a
    seeded uniform draw (the benchmark's baseline). Rows of NaN probabilities score NaN.
    """
    pred_probs = check_proba(pred_probs)
    posterior = pred_probs
    if transition is not None:
        if noisy_labels is None:
            raise ValueError("a transition matrix needs the noisy labels too")
        posterior = label_posterior(pred_probs, noisy_labels, transition)
    suggested = np.where(
        np.isfinite(posterior).all(axis=1), np.nan_to_num(posterior).argmax(axis=1), -1
    ).astype(np.int64)
    if strategy == "random":
        scores = np.random.default_rng(seed).random(len(pred_probs))
        scores[~np.isfinite(pred_probs).all(axis=1)] = np.nan
        return scores, suggested
    if strategy == "entropy":
        scores = _entropy(posterior)
    elif strategy == "margin":
        top2 = np.sort(posterior, axis=1)[:, -2:]
        scores = 1.0 - (top2[:, 1] - top2[:, 0])
    else:
        raise ValueError(f"strategy must be entropy, margin or random, got {strategy!r}")
    if fold_proba is not None and disagreement_weight > 0:
        fold_proba = np.asarray(fold_proba, dtype=np.float64)
        if fold_proba.ndim != 3 or fold_proba.shape[1:] != pred_probs.shape:
            raise ValueError(
                f"fold_proba: expected shape [F, {len(pred_probs)}, {NUM_CLASSES}], "
                f"got {fold_proba.shape}"
            )
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(fold_proba, axis=0)
            mutual_info = _entropy(mean) - np.nanmean(
                np.where(np.isfinite(fold_proba).all(axis=2), _entropy(fold_proba), np.nan), axis=0
            )
        scores = scores + disagreement_weight * np.nan_to_num(np.maximum(mutual_info, 0.0))
    return scores.astype(np.float64), suggested


def request_labels(
    pred_probs: np.ndarray,
    clean_labels: np.ndarray,
    num_requests: int,
    *,
    noisy_labels: np.ndarray | None = None,
    transition: np.ndarray | None = None,
    fold_proba: np.ndarray | None = None,
    images: np.ndarray | None = None,
    features: np.ndarray | None = None,
    strategy: RequestStrategy = "entropy",
    class_balanced: bool = True,
    duplicate_similarity: float | None = DUPLICATE_SIMILARITY,
    disagreement_weight: float = 1.0,
    exclude: np.ndarray | None = None,
    seed: int = 0,
) -> LabelRequests:
    """Choose up to `num_requests` images without a clean label for a person to label.

    Only images with `clean_labels == -1`, finite probabilities and not in `exclude` (0-based
    indices, e.g. images already sent out for labelling) are candidates. Scores come from
    `request_scores`. With `class_balanced`, selection is round robin over the predicted
    classes (each round takes every class's best remaining candidate, best class first), so
    uncertain images of one confusing class cannot crowd out the rest. With
    `duplicate_similarity` and `images` (or precomputed unit-norm `features`), a candidate
    whose cosine similarity to an already chosen or already clean-labelled image exceeds the
    threshold is skipped: a second label of the same picture teaches little.
    """
    pred_probs = check_proba(pred_probs)
    clean_labels = np.asarray(clean_labels, dtype=np.int64)
    if clean_labels.shape != (len(pred_probs),):
        raise ValueError(
            f"clean_labels has {clean_labels.shape} entries, pred_probs has {len(pred_probs)} rows"
        )
    if num_requests < 0:
        raise ValueError(f"num_requests must be >= 0, got {num_requests}")
    scores, suggested = request_scores(
        pred_probs, noisy_labels=noisy_labels, transition=transition, fold_proba=fold_proba,
        strategy=strategy, disagreement_weight=disagreement_weight, seed=seed,
    )
    candidate = (clean_labels < 0) & np.isfinite(scores)
    if exclude is not None:
        candidate[np.asarray(exclude, dtype=np.int64)] = False
    cand = np.flatnonzero(candidate)
    # Best first; ties broken by image id so the order is reproducible.
    cand = cand[np.lexsort((cand, -scores[cand]))]

    if features is None and images is not None and duplicate_similarity is not None:
        features = tiny_image_features(images)
    check_duplicates = features is not None and duplicate_similarity is not None
    chosen_feats = (
        np.empty((num_requests, features.shape[1]), np.float32) if check_duplicates else None
    )
    labelled_feats = (
        features[np.flatnonzero(clean_labels >= 0)].astype(np.float32) if check_duplicates else None
    )

    def is_duplicate(i: int, n_chosen: int) -> bool:
        if not check_duplicates:
            return False
        f = features[i].astype(np.float32)
        if n_chosen and float((chosen_feats[:n_chosen] @ f).max()) > duplicate_similarity:
            return True
        return bool(len(labelled_feats)) and (
            float((labelled_feats @ f).max()) > duplicate_similarity
        )

    if class_balanced:
        queues = [list(cand[suggested[cand] == c]) for c in range(NUM_CLASSES)]
    else:
        queues = [list(cand)]
    heads = [0] * len(queues)
    chosen: list[int] = []
    skipped = 0
    while len(chosen) < num_requests:
        # One round: each class with candidates left offers its best; best offers go first.
        offers = []
        for q, queue in enumerate(queues):
            while heads[q] < len(queue):
                i = int(queue[heads[q]])
                heads[q] += 1
                if is_duplicate(i, len(chosen)):
                    skipped += 1
                    continue
                offers.append(i)
                break
            if not class_balanced:
                # Without balancing, one "round" is just the next best candidate.
                break
        if not offers:
            break
        for i in sorted(offers, key=lambda j: (-scores[j], j)):
            if len(chosen) >= num_requests:
                break
            if check_duplicates:
                # Offers of one round can duplicate each other.
                if len(chosen) and float((chosen_feats[: len(chosen)] @ features[i]).max()) > (
                    duplicate_similarity
                ):
                    skipped += 1
                    continue
                chosen_feats[len(chosen)] = features[i]
            chosen.append(i)
    idx = np.asarray(chosen, dtype=np.int64)
    return LabelRequests(
        image_ids=idx + 1,
        scores=scores[idx] if strategy != "random" else np.zeros(len(idx)),
        suggested_labels=suggested[idx],
        given_labels=None if noisy_labels is None else np.asarray(noisy_labels)[idx],
        strategy=strategy,
        skipped_duplicates=skipped,
        params={
            "num_requests": num_requests,
            "class_balanced": class_balanced,
            "duplicate_similarity": duplicate_similarity if check_duplicates else None,
            "uses_transition": transition is not None,
            "uses_fold_disagreement": fold_proba is not None,
            "disagreement_weight": disagreement_weight,
            "num_candidates": int(len(cand)),
            "seed": seed,
        },
    )


def write_requests_csv(path: str | os.PathLike[str], requests: LabelRequests) -> Path:
    """`image_id,label` rows in priority order with the label empty, for a person to fill in.

    Exactly the format `tasks.ingest.read_label_rows(path, allow_empty_label=True)` and
    `relabel labels add` read back (rows still empty are ignored there).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image_id", "label"])
    for image_id in requests.image_ids:
        writer.writerow([int(image_id), ""])
    return write_text_atomic(path, buffer.getvalue())
