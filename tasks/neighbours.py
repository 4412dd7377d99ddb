"""Neighbour votes: the noisy labels of an image's nearest neighbours as more evidence of
its class, for the images a self-training student judges.

A student's embedding (the input of its last layer) puts images of one class near each
other, so an image's nearest neighbours among the other half's images mostly share its
class, and each neighbour's noisy label names that class with probability T[y, y] (0.40 on
the reference data) against ~0.067 for any other class: fifty of them say a lot. They are
labels nothing in the chain trained on (a student never sees the other half's noisy
labels), and the image's own noisy label is never among them, so Bayes' rule still counts
every noisy label once. With rho the share of neighbours of the image's own class and pi
the noisy labels' frequencies:

    log E(y) = sum_j log(rho T[y, n_j] + (1 - rho) pi[n_j])
    p'(y | x) ∝ p(y | x)^(1/t) · E(y)^alpha

alpha < 1 because the votes are not independent of the model's own prediction (both read
the same embedding). t, alpha and rho are fitted by maximising the likelihood of the images'
own noisy labels under p' (as the correction fits its temperature): no clean label is spent.
On the reference data (k=50, the cpu profile's students, 2,000 validation images, paired)
the corrected labels gained +0.75 ± 0.34 points with one run's students and +0.10 with
another's (an offline fit on that run's students: +0.40 ± 0.23); Model II trained on the
voted labels was not better (87.10% against the run without votes' 88.00%), so the profiles
leave the votes off (`neighbour_votes`: 0) and only the smoke profile exercises them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from relabel.tasks.correct import temper

# Rows the fit of (t, alpha, rho) reads: a seeded sample is as good as all and ~4x faster.
FIT_ROWS = 12_000


@dataclass(frozen=True)
class NeighbourVotes:
    """How neighbour votes enter the evidence (see the module docstring): the model's
    temperature, the votes' weight alpha and the share rho of neighbours of the same class."""

    temperature: float
    weight: float
    same_class_share: float


def nearest_neighbours(query: np.ndarray, query_ids: np.ndarray, reference: np.ndarray,
                       reference_ids: np.ndarray, k: int) -> np.ndarray:
    """Image ids int64 [n, k]: for each query row (embedding), its `k` nearest reference
    rows by cosine similarity, nearest first, never the query image itself (an image among
    the references is skipped by id). `k` shrinks to what the references hold."""
    from sklearn.neighbors import NearestNeighbors

    query, reference = np.asarray(query, np.float32), np.asarray(reference, np.float32)
    query_ids = np.asarray(query_ids, np.int64)
    reference_ids = np.asarray(reference_ids, np.int64)
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(f"embeddings {query.shape} and {reference.shape}: need [n, d] and "
                         "[m, d] with one d")
    if query_ids.shape != (len(query),) or reference_ids.shape != (len(reference),):
        raise ValueError("one id per embedding row")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, len(reference) - 1)
    if k < 1:
        raise ValueError(f"{len(reference)} reference images: too few for neighbours")
    index = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute")
    _, rows = index.fit(reference).kneighbors(query)
    ids = reference_ids[rows]
    skip = ids == query_ids[:, None]
    skip[~skip.any(axis=1), -1] = True  # not among its own neighbours: drop the farthest
    return ids[~skip].reshape(len(query), k)


def vote_log_evidence(neighbour_labels: np.ndarray, transition: np.ndarray,
                      label_frequencies: np.ndarray, same_class_share: float) -> np.ndarray:
    """log E(y) float64 [n, classes] from the neighbours' noisy labels [n, k]."""
    transition = np.asarray(transition, np.float64)
    table = np.log(same_class_share * transition
                   + (1 - same_class_share) * np.asarray(label_frequencies, np.float64))
    # table[y, label]; sum over each row's neighbours for every y
    return table[:, np.asarray(neighbour_labels, np.int64)].sum(axis=2).T


def with_votes(proba: np.ndarray, neighbour_labels: np.ndarray, transition: np.ndarray,
               label_frequencies: np.ndarray, votes: NeighbourVotes) -> np.ndarray:
    """p' ∝ temper(p, t) · E^alpha, float64 [n, classes], rows sum to 1."""
    log_p = np.log(temper(proba, votes.temperature)) + votes.weight * vote_log_evidence(
        neighbour_labels, transition, label_frequencies, votes.same_class_share)
    log_p -= log_p.max(axis=1, keepdims=True)
    p = np.exp(log_p)
    return p / p.sum(axis=1, keepdims=True)


def fit_votes(proba: np.ndarray, noisy_labels: np.ndarray, neighbour_labels: np.ndarray,
              transition: np.ndarray, label_frequencies: np.ndarray,
              seed: int = 0) -> NeighbourVotes:
    """(t, alpha, rho) maximising the likelihood of the images' own noisy labels,
    P(ñ | x, neighbours) = sum_y p'(y) T[y, ñ], over images whose model never saw their
    noisy labels and whose neighbours exclude themselves (`nearest_neighbours`)."""
    proba = np.asarray(proba, np.float64)
    noisy_labels = np.asarray(noisy_labels, np.int64)
    neighbour_labels = np.asarray(neighbour_labels, np.int64)
    n = len(proba)
    if proba.ndim != 2 or noisy_labels.shape != (n,) or neighbour_labels.ndim != 2 \
            or len(neighbour_labels) != n or not n:
        raise ValueError(f"proba {proba.shape}, noisy_labels {noisy_labels.shape}, "
                         f"neighbour_labels {neighbour_labels.shape}: need [n, c], [n], [n, k]")
    if n > FIT_ROWS:
        rows = np.sort(np.random.default_rng([seed, 0xA11CE]).choice(n, FIT_ROWS, False))
        proba, noisy_labels, neighbour_labels = (proba[rows], noisy_labels[rows],
                                                 neighbour_labels[rows])
    transition = np.asarray(transition, np.float64)

    def unpack(params: np.ndarray) -> NeighbourVotes:
        log_t, log_weight, logit_share = params
        return NeighbourVotes(float(np.exp(log_t)), float(np.exp(log_weight)),
                              float(1 / (1 + np.exp(-logit_share))))

    def nll(params: np.ndarray) -> float:
        p = with_votes(proba, neighbour_labels, transition, label_frequencies, unpack(params))
        noisy_proba = np.einsum("nc,nc->n", p, transition[:, noisy_labels].T)
        return float(-np.log(noisy_proba + 1e-12).mean())

    # Start: the model as it is, one neighbour's worth of votes, half the neighbours alike.
    start = np.array([0.0, np.log(1.0 / neighbour_labels.shape[1]), 0.0])
    fit = minimize(nll, start, method="Nelder-Mead",
                   options={"maxiter": 400, "xatol": 1e-3, "fatol": 1e-7})
    return unpack(fit.x)
