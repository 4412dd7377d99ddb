"""Close the loop: render the label issues (tasks/label_issues.py) and the label requests
(tasks/label_requests.py) of a run for people, and write them as files.

`write_review` writes both lists: CSVs, a JSON summary, a self-contained HTML gallery (images
embedded as base64 PNG data URIs, upscaled) and PNG contact sheets; every file atomically.
`review_dataset` is the whole review of one dataset (what `relabel review` runs).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from relabel.constants import CLASS_NAMES, NUM_CLASSES
from relabel.fileio import atomic_path, write_json_atomic, write_text_atomic
from relabel.tasks.ingest import Dataset
from relabel.tasks.label_issues import (
    IssueMethod,
    LabelIssues,
    check_proba,
    class_name,
    find_label_issues,
)
from relabel.tasks.label_requests import (
    LabelRequests,
    RequestStrategy,
    request_labels,
    write_requests_csv,
)

log = logging.getLogger(__name__)


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


# -------------------------------------------------------------------------------- outputs


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
    return "unknown" if label is None or label < 0 else f"{class_name(label)} ({label})"


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
        given = "?" if t.given is None or t.given < 0 else class_name(t.given)
        ax.set_title(
            f"#{t.image_id}\n{given} -> {class_name(t.suggested)}\n{score_name} {t.score:.3f}",
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
            [r, int(i), int(g), class_name(int(g)), int(s), class_name(int(s)), f"{sc:.6f}"]
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
             int(requests.suggested_labels[k]), class_name(int(requests.suggested_labels[k])),
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
    return ReviewOutputs(
        out, issues_csv, requests_csv, detail_csv, summary_json, gallery, issues_png,
        requests_png, num_issues=len(issues), num_requests=len(requests),
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
    pred_probs = check_proba(pred_probs, "probabilities")
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
