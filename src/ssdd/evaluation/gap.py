"""Gap closed: the share of the distance from no pre-training to full-data pre-training that a row covers.

One function, used by the evaluation summary, `ssdd report` and the generated README and docs/results.md
tables (docs/protocol.md, "Metrics")."""

from __future__ import annotations


def gap_closed(value: float, none: float, full: float) -> float | None:
    """(value - none) / (full - none), as a fraction (1.0 = as good as full data, 0.0 = no better than no
    pre-training); None when full data is no better than no pre-training (there is no gap to close)."""
    span = full - none
    if not span > 0:
        return None
    return (value - none) / span
