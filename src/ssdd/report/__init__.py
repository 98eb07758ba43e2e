"""`ssdd report`: the readable report of an evaluation (report.md and a self-contained report.html).

    from ssdd.report import build_report
    md_path, html_path = build_report("runs/eval", teacher="runs/teacher/teacher", distilled=[...])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_report"]


def build_report(eval_dir: str | Path, out_dir: str | Path | None = None, teacher: str | Path | None = None,
                 distilled: Sequence[str | Path] | None = None) -> tuple[Path, Path]:
    """See `ssdd.report.build.build_report` (imported lazily: `ssdd.report.formats` stays light)."""
    from ssdd.report.build import build_report as build

    return build(eval_dir, out_dir, teacher, distilled)
