import numpy as np
import pytest

from relabel.tasks.correct import label_posterior, temper
from relabel.tasks.neighbours import (
    fit_votes,
    nearest_neighbours,
    vote_log_evidence,
    with_votes,
)
from relabel.tasks.self_training import StudentResult, add_neighbour_votes
from tests.synthetic_labels import symmetric_transition

T = symmetric_transition(0.6)
UNIFORM = np.full(10, 0.1)


def test_neighbours_are_the_nearest_by_cosine_and_never_the_image_itself():
    rng = np.random.default_rng(0)
    reference, reference_ids = rng.normal(size=(40, 8)), np.arange(100, 140)
    # Queries: five of the reference images themselves, and three new images.
    query = np.r_[reference[:5], rng.normal(size=(3, 8))]
    query_ids = np.r_[reference_ids[:5], [7, 8, 9]]
    ids = nearest_neighbours(query, query_ids, reference, reference_ids, k=6)
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    for row, (q, qid) in enumerate(zip(query, query_ids, strict=True)):
        order = reference_ids[np.argsort(-unit @ (q / np.linalg.norm(q)))]
        assert list(ids[row]) == [i for i in order if i != qid][:6]
    assert ids.shape == (8, 6) and ids.dtype == np.int64
    # k shrinks to what the references hold (never the image itself).
    assert nearest_neighbours(query, query_ids, reference[:4], reference_ids[:4], 10).shape \
        == (8, 3)
    with pytest.raises(ValueError, match="one id per embedding row"):
        nearest_neighbours(query, query_ids[:3], reference, reference_ids, 6)
    with pytest.raises(ValueError, match="too few"):
        nearest_neighbours(query, query_ids, reference[:1], reference_ids[:1], 6)


def test_votes_favour_the_class_the_neighbours_noisy_labels_name():
    neighbour_labels = np.array([[3, 3, 3, 1, 7], [2, 5, 8, 0, 4]])
    evidence = vote_log_evidence(neighbour_labels, T, UNIFORM, same_class_share=0.8)
    assert evidence.shape == (2, 10) and evidence[0].argmax() == 3
    # Neighbours of unrelated classes (share 0) say nothing: the evidence is flat.
    flat = vote_log_evidence(neighbour_labels, T, UNIFORM, same_class_share=0.0)
    np.testing.assert_allclose(flat, flat[:, :1].repeat(10, axis=1))


def _clustered(n: int, k: int, purity: float, signal: float, seed: int):
    """True classes, noisy labels (60% symmetric noise), a weak model independent of the
    noisy labels, and k neighbours per image that share its class with prob. `purity`."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 10, n)
    noisy = np.where(rng.random(n) < 0.6, (true + rng.integers(1, 10, n)) % 10, true)
    logits = rng.normal(size=(n, 10))
    logits[np.arange(n), true] += signal
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    by_class = [np.flatnonzero(true == c) for c in range(10)]
    neighbours = np.empty((n, k), np.int64)
    for i in range(n):
        same = rng.random(k) < purity
        neighbours[i] = np.where(same, rng.choice(by_class[true[i]], k),
                                 rng.integers(0, n, k))
        neighbours[i][neighbours[i] == i] = (i + 1) % n  # never itself
    return true, noisy, proba, neighbours


def _accuracy(proba, noisy, true):
    return float((label_posterior(proba, noisy, T).argmax(1) == true).mean())


def test_fitted_votes_correct_labels_the_model_alone_gets_wrong():
    true, noisy, proba, neighbours = _clustered(6000, 30, purity=0.8, signal=1.5, seed=1)
    votes = fit_votes(proba, noisy, noisy[neighbours], T, UNIFORM)
    alone = _accuracy(proba, noisy, true)
    voted = _accuracy(with_votes(proba, noisy[neighbours], T, UNIFORM, votes), noisy, true)
    assert voted > alone + 0.1, (alone, voted, votes)
    assert votes.weight > 0.1  # (weight and share trade off: neither alone is identified)


def test_votes_of_unrelated_neighbours_do_no_harm():
    true, noisy, proba, _ = _clustered(6000, 30, purity=0.8, signal=2.0, seed=2)
    random_neighbours = np.random.default_rng(3).integers(0, 6000, (6000, 30))
    votes = fit_votes(proba, noisy, noisy[random_neighbours], T, UNIFORM)
    alone = _accuracy(temper(proba, votes.temperature), noisy, true)
    voted = _accuracy(with_votes(proba, noisy[random_neighbours], T, UNIFORM, votes), noisy,
                      true)
    assert voted > alone - 0.01, (alone, voted, votes)
    assert votes.weight < 1e-3  # the fit switches them off


def test_votes_read_only_the_other_half_and_never_a_validation_label():
    true, noisy, proba, _ = _clustered(400, 8, purity=0.9, signal=1.0, seed=4)
    halves, val = [np.arange(0, 180), np.arange(180, 360)], np.arange(360, 400)
    rng = np.random.default_rng(5)
    students = []
    for half in (0, 1):
        other = halves[1 - half]
        idx = np.r_[other, val] if half == 0 else other
        students.append(StudentResult(
            half=half, predict_idx=idx, predict_proba=proba[idx], train=None,
            neighbour_idx=rng.choice(other, (idx.size, 8))))
    out, votes = add_neighbour_votes(proba, students, val, noisy, T)
    assert not np.allclose(out[:360], proba[:360]) and not np.allclose(out[val], proba[val])
    # The validation images' own noisy labels are never read: changing them changes nothing.
    changed = noisy.copy()
    changed[val] = (changed[val] + 1) % 10
    again, votes_again = add_neighbour_votes(proba, students, val, changed, T)
    np.testing.assert_array_equal(again, out)
    assert votes_again == votes
    students[1].neighbour_idx = None
    with pytest.raises(ValueError, match="neighbour_idx"):
        add_neighbour_votes(proba, students, val, noisy, T)
