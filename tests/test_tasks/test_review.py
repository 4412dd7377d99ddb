"""Review outputs: the CSVs, the contact sheets and the HTML gallery (in headless Chromium)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser import chromium, needs_chromium, screenshot
from synthetic_labels import symmetric_transition, synthetic_predictions

from relabel.tasks.ingest import UNKNOWN
from relabel.tasks.label_issues import find_label_issues
from relabel.tasks.label_requests import request_labels
from relabel.tasks.review import (
    write_review,
)


class _Tiles(HTMLParser):
    """Counts gallery tiles per section and reads the page's load status."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.tiles: dict[str, list[int]] = {}
        self.status: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.section = a.get("id")
            self.tiles[self.section or ""] = []
        if tag == "figure" and "tile" in (a.get("class") or "").split():
            self.tiles[self.section or ""].append(int(a["data-image-id"] or 0))
        if tag == "p" and a.get("id") == "status":
            self.status = {k: v or "" for k, v in a.items()}


@pytest.fixture()
def review_outputs(tmp_path: Path):
    true, noisy, proba, _ = synthetic_predictions(600, seed=7)
    rng = np.random.default_rng(7)
    # Recognisable images: a block of a class colour on noise.
    images = rng.integers(0, 80, (600, 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(true):
        images[i, 8:24, 8:24] = (25 * c, 255 - 25 * c, 128)
    clean = np.full(600, UNKNOWN)
    clean[:100] = true[:100]
    issues = find_label_issues(noisy, proba)
    req = request_labels(proba, clean, 40, noisy_labels=noisy, transition=symmetric_transition(),
                         images=images)
    out = write_review(tmp_path / "review", images, issues, req, top_n=12, gallery_requests=7)
    return out, issues, req


def test_review_files_are_complete(review_outputs) -> None:
    out, issues, req = review_outputs
    assert all(p.is_file() and p.stat().st_size > 0 for p in out.artifact_paths)
    assert out.num_issues == len(issues) and out.num_requests == 40
    rows = out.issues_csv.read_text().splitlines()
    assert len(rows) == len(issues) + 1 and rows[1].startswith(f"1,{issues.image_ids[0]},")
    # No temporary files left behind by the atomic writes.
    assert not [p for p in out.out_dir.iterdir() if p.name.startswith(".")]
    for sheet in (out.issues_sheet_png, out.requests_sheet_png):
        image = cv2.imread(str(sheet))
        assert image is not None and image.shape[0] > 200 and image.std() > 10
    text = out.gallery_html.read_text()
    assert "src=\"http" not in text and "href=" not in text  # nothing external to fetch
    assert text.count("data:image/png;base64,") == 12 + 7


@pytest.mark.slow
@needs_chromium
def test_gallery_in_headless_chromium(review_outputs, tmp_path: Path) -> None:
    out, issues, req = review_outputs
    url = out.gallery_html.resolve().as_uri()
    dom = chromium(tmp_path, "--dump-dom", url).stdout
    parsed = _Tiles()
    parsed.feed(dom)
    assert parsed.tiles["label-issues"] == [int(i) for i in issues.image_ids[:12]]
    assert parsed.tiles["label-requests"] == [int(i) for i in req.image_ids[:7]]
    # The page's own script ran after load and found every embedded PNG decoded.
    assert parsed.status.get("data-loaded") == "19" and parsed.status.get("data-total") == "19"
    shot = screenshot(tmp_path, url, "review-gallery")
    pixels = cv2.imread(str(shot))
    assert pixels is not None and pixels.std() > 10  # rendered something, not a blank page
