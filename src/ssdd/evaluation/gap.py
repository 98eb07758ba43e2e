"""Gap closed: the share of the distance from no pre-training to full-data pre-training that a row covers.

One function, used by the evaluation summary, `ssdd report` and the generated README and docs/results.md
tables (docs/protocol.md, "Metrics"); and how a summary shows it (`shown_gap_closed`): where full data is within
noise of no pre-training, the share of that distance is large and meaningless, so it is shown as WITHIN_NOISE
(the stored number stays as computed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ssdd.evaluation.references import NO_PRETRAIN

NOISE_FLOOR = 0.5  # top-1 points: full data closer than this to no pre-training is not told apart, seeds or not
WITHIN_NOISE = "n/a (within noise)"


def gap_closed(value: float, none: float, full: float) -> float | None:
    """(value - none) / (full - none), as a fraction (1.0 = as good as full data, 0.0 = no better than no
    pre-training); None when full data is no better than no pre-training (there is no gap to close)."""
    span = full - none
    if not span > 0:
        return None
    return (value - none) / span


def within_noise(none: dict[str, Any], full: dict[str, Any], floor: float = NOISE_FLOOR) -> bool:
    """Whether a full-data summary row is within noise of the no-pre-training one (top1_mean, top1_std over
    seeds): their distance below the larger of their spreads across seeds, or below `floor` points."""
    spread = max(none.get("top1_std") or 0.0, full.get("top1_std") or 0.0, floor)
    return abs(full["top1_mean"] - none["top1_mean"]) < spread


def shown_gap_closed(row: dict[str, Any], summary: list[dict[str, Any]], fmt: Callable[[float | None], str]) -> str:
    """A summary row's gap-closed cell: fmt(its gap_closed), or WITHIN_NOISE when, in `summary` (rows of any
    panels), its panel's full-data row (`retention_of`) is within noise of its no-pre-training row."""
    value = row.get("gap_closed")
    if value is not None:
        panel = (row["arch"], row["target"], row["mode"])
        references = {s["label"]: s for s in summary if (s["arch"], s["target"], s["mode"]) == panel}
        none, full = references.get(NO_PRETRAIN), references.get(row.get("retention_of"))
        if none is not None and full is not None and within_noise(none, full):
            return WITHIN_NOISE
    return fmt(value)
