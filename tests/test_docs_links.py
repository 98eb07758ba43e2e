"""Every relative link in README.md and docs/*.md points to a file or folder that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(text: str) -> list[str]:
    return [target for target in LINK.findall(text)
            if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


def test_relative_links_finds_files_and_skips_urls_and_anchors():
    text = "[a](docs/cli.md#ssdd-teacher) [b](https://x.org/y) [c](#here) [d](../LICENSE)"
    assert relative_links(text) == ["docs/cli.md#ssdd-teacher", "../LICENSE"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_path(doc):
    missing = [target for target in relative_links(doc.read_text())
               if not (doc.parent / target.split("#", 1)[0]).exists()]
    assert missing == []


def test_the_readme_stays_a_five_minute_read():
    """README.md holds what a newcomer needs first; the reference lives in docs/ (issue 28: at most 200 lines)."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
