"""Headless Chromium for the UI tests: the DOM after the page's scripts ran, and screenshots.

Debian's /usr/bin/chromium (`.ci/run` installs it); tests that need it skip without it.
Screenshots go to $RELABEL_TEST_ARTIFACTS when set (CI keeps them), else to the test's
temporary folder: they are evidence, never committed.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium "
    "(apt-get install -y chromium; .ci/run installs it)")


def chromium(profile_dir: Path, *args: str, budget_ms: int | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium; `budget_ms` lets a single-page app fetch and render first."""
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile_dir / 'chromium-profile'}",
    ]
    if budget_ms:
        flags.append(f"--virtual-time-budget={budget_ms}")
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True,
                          timeout=180, check=True)


def page_text(profile_dir: Path, url: str, budget_ms: int = 20000) -> str:
    """The visible text of `url` once rendered, tags stripped and whitespace collapsed."""
    dom = chromium(profile_dir, "--dump-dom", url, budget_ms=budget_ms).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def page_text_with(profile_dir: Path, url: str, *expected: str, attempts: int = 3,
                   budget_ms: int = 20000) -> str:
    """page_text, loaded again (with twice the budget) until every `expected` string shows:
    on a busy machine a single-page app may not have fetched its data within one budget."""
    text = ""
    for attempt in range(attempts):
        text = page_text(profile_dir, url, budget_ms=budget_ms * 2 ** attempt)
        if all(item in text for item in expected):
            break
    return text


def screenshot(profile_dir: Path, url: str, name: str, budget_ms: int = 20000) -> Path:
    """Save a 1400x900 screenshot of `url` as a test artifact; return its path."""
    folder = Path(os.environ.get("RELABEL_TEST_ARTIFACTS") or profile_dir / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / f"{name}.png"
    chromium(profile_dir, f"--screenshot={shot}", "--window-size=1400,900", url,
             budget_ms=budget_ms)
    return shot
