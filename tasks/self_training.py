"""Cross-fitted self-training: better label evidence than the teacher alone, never from a
model that saw the labels it judges.

The noisy images are cut into two halves. Student A trains on the clean labels plus half
A's corrected labels and predicts half B (and the validation images); student B does the
reverse. A student learns from ~3.5x as many images as the teacher, so it predicts the
other half better than the teacher did, and it has not seen that half's noisy labels, so
Bayes' rule with the noise model may count those labels once more. Each noisy image's new
evidence is the geometric mix of the teacher's and its student's probabilities; the
correction (tasks/correct.py) then runs again on it.

With `profile.neighbour_votes` = k, each student also finds, in its own embedding, the k
nearest neighbours of every image it judges among the other half (never the image itself),
and their noisy labels vote on the image's class (tasks/neighbours.py): half B's noisy
labels, which no student trained on, then inform each other, not only themselves.

Later rounds (`profile.self_training_rounds`) train each half's student further, from its
own weights, on its half's newly corrected labels. Those labels came partly from the other
half's student, so a later-round student learns, second hand, from a model that saw the
other half's noisy labels: it never trains on them, but the separation is looser than in
round one, where nothing it learns from has seen them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from relabel.config import TrainProfile
from relabel.constants import NUM_CLASSES

if TYPE_CHECKING:
    from relabel.tasks.neighbours import NeighbourVotes
    from relabel.tasks.train import TrainResult

HALVES = 2


def student_name(half: int, round_number: int = 1) -> str:
    """"student 0", "student 0 round 2": progress, model records and tracking runs."""
    return f"student {half}" + (f" round {round_number}" if round_number > 1 else "")


def split_in_halves(noisy_idx: np.ndarray, seed: int) -> list[np.ndarray]:
    """Two disjoint random halves of `noisy_idx` (sorted image indices), the same for the
    same seed; their union is `noisy_idx`."""
    noisy_idx = np.asarray(noisy_idx, dtype=np.int64)
    order = np.random.default_rng([seed, 0x5E1F]).permutation(noisy_idx.size)
    cut = noisy_idx.size // 2
    return [np.sort(noisy_idx[order[:cut]]), np.sort(noisy_idx[order[cut:]])]


@dataclass
class StudentResult:
    """half: which half of the noisy images the student trained on (0 or 1);
    predict_idx / predict_proba: the images it scored (the other half, then the validation
    images) and its probabilities [p, 10]; train: its TrainResult; neighbour_idx: with
    `profile.neighbour_votes`, the ids [p, k] of each scored image's nearest neighbours among
    the other half in the student's embedding (tasks/neighbours.py)."""

    half: int
    predict_idx: np.ndarray
    predict_proba: np.ndarray
    train: TrainResult | None
    neighbour_idx: np.ndarray | None = None


def train_student(
    images: np.ndarray,
    clean_train_idx: np.ndarray,
    clean_labels: np.ndarray,
    noisy_idx: np.ndarray,
    noisy_targets: np.ndarray,
    val_idx: np.ndarray,
    half: int,
    profile: TrainProfile,
    seed: int,
    round_number: int = 1,
    **kwargs: Any,
) -> StudentResult:
    """Train on the clean-train images (one-hot clean labels, smoothed by the profile) and
    half `half` of `noisy_idx` with their corrected soft targets (`noisy_targets`, rows
    following `noisy_idx`), for `profile.student_epochs` (in rounds 2 and later, which
    continue the round before's student: `profile.refine_epochs`); score the other half and
    `val_idx`. `kwargs` go to `train_classifier`."""
    # Imported here: TensorFlow takes ~10 s to import, and a run whose students come from
    # the cache (or the flow, for HALVES) never needs it.
    from relabel.tasks.correct import Correction, training_targets
    from relabel.tasks.neighbours import nearest_neighbours
    from relabel.tasks.train import (
        predict_proba,
        predict_proba_and_embeddings,
        train_classifier,
    )

    noisy_idx = np.asarray(noisy_idx, dtype=np.int64)
    noisy_targets = np.asarray(noisy_targets, dtype=np.float32)
    if noisy_targets.shape != (noisy_idx.size, NUM_CLASSES):
        raise ValueError(f"noisy_targets {noisy_targets.shape}: expected "
                         f"({noisy_idx.size}, {NUM_CLASSES}), one row per noisy image")
    if half not in range(HALVES):
        raise ValueError(f"half must be 0 or 1, got {half}")
    if round_number < 1:
        raise ValueError(f"round_number counts from 1, got {round_number}")
    halves = split_in_halves(noisy_idx, seed)
    mine, other = halves[half], halves[1 - half]
    rows = np.searchsorted(noisy_idx, mine)
    targets = noisy_targets[rows]
    labels = targets.argmax(axis=1)
    correction = Correction(targets=targets, labels=labels,
                            confidence=targets[np.arange(labels.size), labels],
                            keep=np.ones(labels.size, bool))
    index, soft, weights = training_targets(clean_train_idx, clean_labels, mine, correction,
                                            clean_smoothing=profile.label_smoothing)
    name = student_name(half, round_number)
    kwargs.setdefault("epochs",
                      profile.refine_epochs if round_number > 1 else profile.student_epochs)
    kwargs.setdefault("progress_label", name)
    kwargs.setdefault("label_smoothing", 0.0)  # clean rows are smoothed above
    result = train_classifier(np.asarray(images)[index], soft, profile,
                              seed=seed + 7919 * (half + 1) + 104729 * (round_number - 1),
                              sample_weight=weights, **kwargs)
    predict_idx = np.concatenate([other, np.asarray(val_idx, dtype=np.int64)])
    predict_images = np.asarray(images)[predict_idx]
    if not profile.neighbour_votes:
        return StudentResult(
            half=half, predict_idx=predict_idx,
            predict_proba=predict_proba(result.model, predict_images, tta=profile.tta,
                                        progress_label=f"{name} predicts"),
            train=result)
    proba, embeddings = predict_proba_and_embeddings(
        result.model, predict_images, tta=profile.tta, progress_label=f"{name} predicts")
    # The references are the other half (the first rows); an image is never its own.
    neighbour_idx = nearest_neighbours(embeddings, predict_idx, embeddings[:other.size], other,
                                       profile.neighbour_votes)
    return StudentResult(half=half, predict_idx=predict_idx, predict_proba=proba,
                         train=result, neighbour_idx=neighbour_idx)


def mix_probabilities(teacher: np.ndarray, student: np.ndarray,
                      teacher_weight: float) -> np.ndarray:
    """Geometric mix p ∝ teacher^w · student^(1-w), rows sum to 1 (float64)."""
    if not 0 <= teacher_weight <= 1:
        raise ValueError(f"teacher_weight must be in [0, 1], got {teacher_weight}")
    log_mix = (teacher_weight * np.log(np.clip(np.asarray(teacher, np.float64), 1e-12, 1))
               + (1 - teacher_weight) * np.log(np.clip(np.asarray(student, np.float64),
                                                       1e-12, 1)))
    log_mix -= log_mix.max(axis=1, keepdims=True)
    mixed = np.exp(log_mix)
    return mixed / mixed.sum(axis=1, keepdims=True)


# The teacher weights `fit_teacher_weight` tries: a grid keeps the choice easy to read in
# the log, and the likelihood is flat enough near its optimum that finer steps change
# almost no label.
TEACHER_WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))


def fit_teacher_weight(teacher_proba: np.ndarray, students: list[StudentResult],
                       val_idx: np.ndarray, noisy_labels: np.ndarray,
                       transition: np.ndarray) -> tuple[float, dict[float, float]]:
    """The teacher weight of the mix (`mix_probabilities`) that, each at its own fitted
    temperature, makes the noisy labels of the noisy images the students judged most
    likely (`noisy_label_nll`): how much the teacher adds to a student is measured on the
    labels being corrected, no clean label spent. Returns (weight, {weight: NLL})."""
    from relabel.tasks.correct import (
        fit_temperature_to_noisy_labels,
        noisy_label_nll,
        temper,
    )

    # Each student's noisy rows: the half it never saw (validation images stay out).
    rows = [~np.isin(s.predict_idx, np.asarray(val_idx, dtype=np.int64)) for s in students]
    idx = np.concatenate([s.predict_idx[r] for s, r in zip(students, rows, strict=True)])
    teacher = np.asarray(teacher_proba, dtype=np.float64)[idx]
    student = np.concatenate([s.predict_proba[r] for s, r in zip(students, rows, strict=True)])
    labels = np.asarray(noisy_labels, dtype=np.int64)[idx]
    if not idx.size or np.isnan(teacher).any():
        raise ValueError("fitting the teacher weight needs noisy images the teacher and a "
                         "student both scored")
    nll: dict[float, float] = {}
    for weight in TEACHER_WEIGHT_GRID:
        mixed = mix_probabilities(teacher, student, weight)
        temperature = fit_temperature_to_noisy_labels(mixed, labels, transition)
        nll[float(weight)] = noisy_label_nll(temper(mixed, temperature), labels, transition)
    return min(nll, key=nll.__getitem__), nll


def judged_rows(student: StudentResult, val_idx: np.ndarray) -> np.ndarray:
    """bool mask over `student.predict_idx`: the rows whose judgement is used. Student 0's
    all; the other's without the validation images, so that each validation image has what
    each noisy image has: one student that never saw it."""
    if student.half == 0:
        return np.ones(student.predict_idx.size, bool)
    return ~np.isin(student.predict_idx, np.asarray(val_idx, dtype=np.int64))


def combine_students(teacher_proba: np.ndarray, students: list[StudentResult],
                     val_idx: np.ndarray, teacher_weight: float) -> np.ndarray:
    """float32 [N, 10]: the teacher's probabilities (`teacher_proba`, N rows) with every
    noisy image a student scored replaced by the mix of teacher and that student. The
    validation images take student 0's mix only (`judged_rows`)."""
    if sorted(s.half for s in students) != list(range(HALVES)):
        raise ValueError(f"need one student per half, got halves {[s.half for s in students]}")
    combined = np.array(teacher_proba, dtype=np.float32, copy=True)
    for student in students:
        keep = judged_rows(student, val_idx)
        idx = student.predict_idx[keep]
        teacher = np.asarray(teacher_proba[idx], dtype=np.float64)
        if np.isnan(teacher).any():
            raise ValueError(f"student {student.half} scored images the teacher did not")
        combined[idx] = mix_probabilities(teacher, student.predict_proba[keep], teacher_weight)
    return combined


def add_neighbour_votes(
    proba: np.ndarray, students: list[StudentResult], val_idx: np.ndarray,
    noisy_labels: np.ndarray, transition: np.ndarray, seed: int = 0,
) -> tuple[np.ndarray, NeighbourVotes]:
    """`proba` [N, 10] (combine_students' mix) with each image a student judged
    (`judged_rows`: the other half, the validation images from student 0 only) multiplied
    by its neighbours' votes (tasks/neighbours.py); the votes' parameters are fitted to the
    noisy labels of the judged noisy images, never to a clean label."""
    from relabel.tasks.neighbours import fit_votes, with_votes

    val_idx = np.asarray(val_idx, dtype=np.int64)
    noisy_labels = np.asarray(noisy_labels, dtype=np.int64)
    if any(s.neighbour_idx is None for s in students):
        raise ValueError("neighbour votes need every student's neighbour_idx "
                         "(profile.neighbour_votes > 0)")
    rows, neighbours = [], []
    for student in sorted(students, key=lambda s: s.half):
        keep = judged_rows(student, val_idx)
        rows.append(student.predict_idx[keep])
        neighbours.append(np.asarray(student.neighbour_idx)[keep])
    idx, neighbour_labels = np.concatenate(rows), noisy_labels[np.concatenate(neighbours)]
    judged = ~np.isin(idx, val_idx)  # fitted on noisy images only: val labels stay unseen
    frequencies = np.bincount(noisy_labels[idx[judged]], minlength=proba.shape[1])
    frequencies = frequencies / frequencies.sum()
    votes = fit_votes(proba[idx[judged]], noisy_labels[idx[judged]], neighbour_labels[judged],
                      transition, frequencies, seed=seed)
    out = np.array(proba, dtype=np.float32, copy=True)
    out[idx] = with_votes(proba[idx], neighbour_labels, transition, frequencies, votes)
    return out, votes
