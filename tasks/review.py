"""Close the loop: which given labels look wrong, and which images a person should label next.

Two ranked lists come out of one set of out-of-sample class probabilities (the clean model's
out-of-fold / fold-ensemble probabilities, `tasks.clean_model.combine_folds`):

* **Label issues**: images whose *given* (noisy) label is most likely wrong, found by
  cleanlab's confident learning (`cleanlab.filter.find_label_issues`), each with the label
  the model suggests and an issue score `1 - label quality` in [0, 1] (higher = more likely
  wrong). cleanlab also estimates how many given labels of each class are wrong.
* **Label requests**: images without a clean label, ranked by how much a person's label is
  expected to help: the uncertainty (entropy, nats) of the image's true label after combining
  the model's probabilities with its noisy label through the noise transition matrix, plus the
  disagreement between fold models (mutual information, nats) when per-fold probabilities are
  given. The list is class-balanced (round robin over the predicted classes, so any prefix a
  person labels stays balanced) and skips near-duplicates (tiny-image cosine similarity) of
  images already chosen or already labelled. It is written as an `image_id,label` CSV with the
  label column empty: fill it in and give it to `relabel labels add`.

`write_review` renders both lists for people: a self-contained HTML gallery (images embedded as
base64 PNG data URIs, upscaled) and PNG contact sheets. Every file is written atomically.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from relabel import CLASS_NAMES, NUM_CLASSES
from relabel.fileio import atomic_path, write_json_atomic, write_text_atomic
from relabel.tasks.ingest import Dataset

log = logging.getLogger(__name__)

IssueMethod = Literal["self_confidence", "normalized_margin"]
RequestStrategy = Literal["entropy", "margin", "random"]

ISSUES_CSV = "label_issues.csv"
REQUESTS_CSV = "label_requests.csv"  # image_id,label (label empty): `relabel labels add` input
REQUESTS_DETAIL_CSV = "label_requests_ranked.csv"
SUMMARY_JSON = "review_summary.json"
GALLERY_HTML = "review_gallery.html"
ISSUES_SHEET_PNG = "label_issues_sheet.png"
REQUESTS_SHEET_PNG = "label_requests_sheet.png"
# What `relabel review RUN_DIR` reads from a finished run's output folder (flows publish them).
RUN_PROBA = "clean_proba.npy"  # float32 [N, 10], combine_folds output (NaN rows: no prediction)
RUN_FOLD_PROBA = "clean_fold_proba.npy"  # optional float32 [F, N, 10], NaN where a fold did not
RUN_METRICS = "metrics.json"  # holds "dataset_dir" (and "cache_dir") of the run

# Near-duplicate test: cosine similarity of mean-centred 16x16 RGB thumbnails. On the
# reference set the 5 most similar of 2,000 x 18,000 pairs (0.967..0.986) were all visibly the
# same picture (re-crop, colour shift); the median best match of an image is 0.69.
DUPLICATE_SIMILARITY = 0.97
_THUMB = 16
_EPS = 1e-12


# ------------------------------------------------------------------------------ helpers


def _class_name(label: int) -> str:
    return CLASS_NAMES[label] if 0 <= label < NUM_CLASSES else "?"


def _check_proba(pred_probs: np.ndarray, name: str = "pred_probs") -> np.ndarray:
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or pred_probs.shape[1] != NUM_CLASSES:
        raise ValueError(f"{name}: expected shape [N, {NUM_CLASSES}], got {pred_probs.shape}")
    return pred_probs


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats along the last axis (0 for one-hot, ln 10 = 2.30 for uniform)."""
    return -(p * np.log(np.clip(p, _EPS, 1.0))).sum(axis=-1)


def label_posterior(
    pred_probs: np.ndarray, noisy_labels: np.ndarray, transition: np.ndarray
) -> np.ndarray:
    """P(true = c | image, noisy label) proportional to P(c | image) * T[c, noisy].

    `transition[i, j]` = P(noisy = j | true = i) (rows sum to 1). With 60% symmetric noise the
    noisy label still carries evidence (right 40% of the time vs 6.7% for each other class),
    so an image whose model prediction agrees with its noisy label is much less uncertain
    than the model's probabilities alone say.
    """
    pred_probs = _check_proba(pred_probs)
    transition = np.asarray(transition, dtype=np.float64)
    if transition.shape != (NUM_CLASSES, NUM_CLASSES):
        raise ValueError(f"transition: expected shape [10, 10], got {transition.shape}")
    joint = pred_probs * transition[:, np.asarray(noisy_labels)].T
    return joint / np.maximum(joint.sum(axis=1, keepdims=True), _EPS)


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


# --------------------------------------------------------------------------- label issues


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

    pred_probs = _check_proba(pred_probs)
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


# ------------------------------------------------------------------------- label requests


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
    pred_probs = _check_proba(pred_probs)
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
    pred_probs = _check_proba(pred_probs)
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


# -------------------------------------------------------------------------------- outputs


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


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


@dataclass(frozen=True)
class Tile:
    """One image of a gallery or contact sheet, with its caption fields."""

    image_id: int
    given: int | None
    suggested: int
    score: float


def _tiles_for_issues(issues: LabelIssues, n: int) -> list[Tile]:
    return [
        Tile(int(i), int(g), int(s), float(sc))
        for i, g, s, sc in zip(
            issues.image_ids[:n], issues.given_labels[:n], issues.suggested_labels[:n],
            issues.scores[:n], strict=True,
        )
    ]


def _tiles_for_requests(requests: LabelRequests, n: int) -> list[Tile]:
    given = requests.given_labels
    return [
        Tile(int(i), None if given is None else int(given[k]), int(requests.suggested_labels[k]),
             float(requests.scores[k]))
        for k, i in enumerate(requests.image_ids[:n])
    ]


def _png_data_uri(image: np.ndarray, scale: int) -> str:
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _label_text(label: int | None) -> str:
    return "unknown" if label is None or label < 0 else f"{_class_name(label)} ({label})"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.tile{margin:0;padding:6px;background:#fff;border:1px solid #ddd;border-radius:6px;width:140px}
.tile img{display:block;width:128px;height:128px;image-rendering:pixelated}
.tile figcaption{font-size:12px;line-height:1.35;margin-top:4px}
.given{color:#b00} .suggested{color:#070} .score{color:#555}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ccc;padding:2px 8px}
"""

# Counts the images that really decoded, so a headless browser (and a person) can check
# that the page is intact.
_STATUS_JS = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('.tile img');
  var ok = 0;
  imgs.forEach(function (im) { if (im.complete && im.naturalWidth > 0) ok++; });
  var s = document.getElementById('status');
  s.textContent = ok + ' of ' + imgs.length + ' images loaded';
  s.setAttribute('data-loaded', ok);
  s.setAttribute('data-total', imgs.length);
});
"""


def render_gallery_html(
    images: np.ndarray,
    issue_tiles: list[Tile],
    request_tiles: list[Tile],
    *,
    title: str = "relabel review",
    per_class: dict[str, dict[str, float]] | None = None,
    scale: int = 4,
) -> str:
    """A self-contained HTML page: every image is an inline base64 PNG, no external files."""

    def section(section_id: str, heading: str, note: str, tiles: list[Tile], kind: str) -> str:
        figures = []
        for rank, t in enumerate(tiles, start=1):
            uri = _png_data_uri(np.asarray(images[t.image_id - 1]), scale)
            score_name = "issue score" if kind == "issue" else "gain"
            figures.append(
                f'<figure class="tile" data-kind="{kind}" data-image-id="{t.image_id}">'
                f'<img src="{uri}" alt="image {t.image_id}">'
                f"<figcaption>#{rank} &middot; image {t.image_id}<br>"
                f'<span class="given">given: {html.escape(_label_text(t.given))}</span><br>'
                f'<span class="suggested">suggested: {html.escape(_label_text(t.suggested))}'
                f"</span><br>"
                f'<span class="score">{score_name}: {t.score:.3f}</span></figcaption></figure>'
            )
        return (
            f'<section id="{section_id}"><h2>{html.escape(heading)} ({len(tiles)})</h2>'
            f"<p>{html.escape(note)}</p><div class=\"grid\">{''.join(figures)}</div></section>"
        )

    table = ""
    if per_class:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{v['estimated_issues']}</td>"
            f"<td>{v['estimated_noise_rate']:.1%}</td><td>{v['flagged']}</td></tr>"
            for name, v in per_class.items()
        )
        table = (
            "<h2>Estimated label issues per given class</h2><table><tr><th>class</th>"
            "<th>estimated wrong labels</th><th>estimated noise rate</th><th>flagged</th></tr>"
            f"{rows}</table>"
        )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p id=\"status\">loading images...</p>{table}"
        + section(
            "label-issues", "Suspected label issues",
            "Given labels most likely wrong (issue score = 1 - cleanlab label quality).",
            issue_tiles, "issue",
        )
        + section(
            "label-requests", "What to label next",
            "Unlabelled images whose label is expected to help most (gain in nats); fill in "
            "label_requests.csv and run `relabel labels add`.",
            request_tiles, "request",
        )
        + f"<script>{_STATUS_JS}</script></body></html>\n"
    )


def write_contact_sheet(
    path: str | os.PathLike[str],
    images: np.ndarray,
    tiles: list[Tile],
    title: str,
    *,
    columns: int = 8,
    score_name: str = "score",
) -> Path:
    """A PNG grid of the tiles, each captioned with image id, given/suggested label and score."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(1, -(-len(tiles) // columns))
    fig = Figure(figsize=(columns * 1.6, rows * 2.0 + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=12)
    for k in range(rows * columns):
        ax = fig.add_subplot(rows, columns, k + 1)
        ax.set_axis_off()
        if k >= len(tiles):
            continue
        t = tiles[k]
        ax.imshow(np.asarray(images[t.image_id - 1]), interpolation="nearest")
        given = "?" if t.given is None or t.given < 0 else _class_name(t.given)
        ax.set_title(
            f"#{t.image_id}\n{given} -> {_class_name(t.suggested)}\n{score_name} {t.score:.3f}",
            fontsize=7,
        )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


@dataclass(frozen=True)
class ReviewOutputs:
    """Where `write_review` put everything (log these as MLflow artifacts)."""

    out_dir: Path
    issues_csv: Path  # rank,image_id,given_label,...,score: every flagged image
    requests_csv: Path  # image_id,label (empty): fill in, then `relabel labels add`
    requests_detail_csv: Path  # the same images with scores and suggested labels
    summary_json: Path  # counts, per-class estimates, parameters
    gallery_html: Path  # self-contained page of the top issues and the requests
    issues_sheet_png: Path
    requests_sheet_png: Path
    num_issues: int = 0
    num_requests: int = 0
    # Flat numbers for MLflow: review.flagged, review.estimated_wrong_labels,
    # review.estimated_wrong.<class>, review.requests, review.skipped_duplicates.
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def artifact_paths(self) -> list[Path]:
        return [
            self.issues_csv, self.requests_csv, self.requests_detail_csv, self.summary_json,
            self.gallery_html, self.issues_sheet_png, self.requests_sheet_png,
        ]


def write_review(
    out_dir: str | os.PathLike[str],
    images: np.ndarray,
    issues: LabelIssues,
    requests: LabelRequests,
    *,
    top_n: int = 64,
    gallery_requests: int | None = None,
    extra_summary: dict[str, Any] | None = None,
) -> ReviewOutputs:
    """Write both lists (CSV), a summary (JSON), the HTML gallery and two contact sheets.

    The gallery and sheets show the top `top_n` issues and the first `gallery_requests`
    requests (default `top_n`); the CSVs hold the full lists.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gallery_requests = top_n if gallery_requests is None else gallery_requests
    issues_csv = _write_csv(
        out / ISSUES_CSV,
        ["rank", "image_id", "given_label", "given_class", "suggested_label",
         "suggested_class", "issue_score"],
        [
            [r, int(i), int(g), _class_name(int(g)), int(s), _class_name(int(s)), f"{sc:.6f}"]
            for r, (i, g, s, sc) in enumerate(
                zip(issues.image_ids, issues.given_labels, issues.suggested_labels,
                    issues.scores, strict=True), start=1,
            )
        ],
    )
    requests_csv = write_requests_csv(out / REQUESTS_CSV, requests)
    given = requests.given_labels
    known = requests.suggested_labels[requests.suggested_labels >= 0]
    detail_csv = _write_csv(
        out / REQUESTS_DETAIL_CSV,
        ["rank", "image_id", "noisy_label", "suggested_label", "suggested_class", "gain"],
        [
            [k + 1, int(i), "" if given is None else int(given[k]),
             int(requests.suggested_labels[k]), _class_name(int(requests.suggested_labels[k])),
             f"{requests.scores[k]:.6f}"]
            for k, i in enumerate(requests.image_ids)
        ],
    )
    summary = {
        "label_issues": {
            "method": issues.method,
            "num_examined": issues.num_candidates,
            "num_flagged": len(issues),
            "estimated_total": issues.estimated_total,
            "per_class": issues.per_class,
        },
        "label_requests": {
            "strategy": requests.strategy,
            "num_requested": len(requests),
            "skipped_duplicates": requests.skipped_duplicates,
            "predicted_class_balance": {
                name: int(c) for name, c in zip(
                    CLASS_NAMES, np.bincount(known, minlength=NUM_CLASSES), strict=True
                )
            },
            **requests.params,
        },
        "gallery": {"top_issues": min(top_n, len(issues)),
                    "top_requests": min(gallery_requests, len(requests))},
        **(extra_summary or {}),
    }
    summary_json = write_json_atomic(out / SUMMARY_JSON, summary)
    issue_tiles = _tiles_for_issues(issues, top_n)
    request_tiles = _tiles_for_requests(requests, gallery_requests)
    gallery = write_text_atomic(
        out / GALLERY_HTML,
        render_gallery_html(images, issue_tiles, request_tiles, per_class=issues.per_class),
    )
    issues_png = write_contact_sheet(
        out / ISSUES_SHEET_PNG, images, issue_tiles,
        f"Top {len(issue_tiles)} suspected label issues (given -> suggested)",
        score_name="issue",
    )
    requests_png = write_contact_sheet(
        out / REQUESTS_SHEET_PNG, images, request_tiles,
        f"Top {len(request_tiles)} images to label next (noisy -> likely)", score_name="gain",
    )
    metrics = {
        "review.examined": float(issues.num_candidates),
        "review.flagged": float(len(issues)),
        "review.estimated_wrong_labels": float(issues.estimated_total),
        **{f"review.estimated_wrong.{name}": float(v["estimated_issues"])
           for name, v in issues.per_class.items()},
        "review.requests": float(len(requests)),
        "review.skipped_duplicates": float(requests.skipped_duplicates),
    }
    return ReviewOutputs(
        out, issues_csv, requests_csv, detail_csv, summary_json, gallery, issues_png,
        requests_png, num_issues=len(issues), num_requests=len(requests), metrics=metrics,
    )



def review_dataset(
    dataset: Dataset,
    pred_probs: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    num_requests: int = 500,
    top_n: int = 64,
    method: IssueMethod = "self_confidence",
    strategy: RequestStrategy = "entropy",
    fold_proba: np.ndarray | None = None,
    transition: np.ndarray | None = None,
    clean_labels: np.ndarray | None = None,
    include_clean: bool = False,
    seed: int = 0,
) -> ReviewOutputs:
    """Both lists and the gallery for one dataset and its out-of-sample probabilities.

    `clean_labels` (int64 [N], -1 = unknown) overrides the dataset's own, e.g. the newest set
    merged by `relabel labels add`, so labelled images are never requested again. Label issues
    are looked for among images without a clean label (their noisy label is the one training
    relies on); `include_clean` examines every image. The transition matrix for the request
    scores is estimated from the clean labels when not given.
    """
    clean = dataset.clean_labels if clean_labels is None else np.asarray(clean_labels, np.int64)
    if clean.shape != (dataset.num_images,):
        raise ValueError(f"clean_labels: expected {dataset.num_images} entries, got {clean.shape}")
    clean_mask = clean >= 0
    pred_probs = _check_proba(pred_probs, "probabilities")
    if len(pred_probs) != dataset.num_images:
        raise ValueError(
            f"probabilities have {len(pred_probs)} rows but the dataset has "
            f"{dataset.num_images} images: were they computed on this dataset?"
        )
    finite = np.isfinite(pred_probs).all(axis=1)
    examine = finite if include_clean else finite & ~clean_mask
    issues = find_label_issues(
        dataset.noisy_labels, pred_probs, indices=np.flatnonzero(examine), method=method
    )
    if transition is None and clean_mask.any():
        from relabel.tasks.noise import estimate_transition

        transition = estimate_transition(
            clean[clean_mask], dataset.noisy_labels[clean_mask], NUM_CLASSES
        )
    requests = request_labels(
        pred_probs, clean, num_requests, noisy_labels=dataset.noisy_labels,
        transition=transition, fold_proba=fold_proba, images=dataset.images,
        strategy=strategy, seed=seed,
    )
    log.info(
        "review: %d of %d examined labels flagged (cleanlab estimates %d wrong); %d requests",
        len(issues), issues.num_candidates, issues.estimated_total, len(requests),
    )
    return write_review(
        out_dir, dataset.images, issues, requests, top_n=top_n,
        extra_summary={"dataset": {"content_hash": dataset.content_hash,
                                   "num_images": dataset.num_images,
                                   "num_clean": int(clean_mask.sum())}},
    )
