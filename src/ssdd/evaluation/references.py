"""The reference rows of an evaluation (docs/protocol.md, "The reference rows") and which full-data row
retention divides by. A module of its own, imported by both the summary and `ssdd report`."""

from __future__ import annotations

from collections.abc import Iterable

NO_PRETRAIN = "no_pretrain"
FULL_DATA = "full_data"  # the tuned row: crop + flip, targets per augmented batch, cosine lr (full_data.*)
FULL_DATA_SAME_RECIPE = "full_data_same_recipe"  # every source image, trained by the distilled rows' pretrain.*
FULL_DATA_METHODS = (FULL_DATA_SAME_RECIPE, FULL_DATA)  # in order of preference as the retention denominator
REFERENCE_METHODS = (NO_PRETRAIN, *FULL_DATA_METHODS)


def retention_reference(labels: Iterable[str]) -> str | None:
    """The full-data row that retention (and the pre-training speed-up) divides by, among the labels present:
    the row trained with the distilled rows' recipe when there is one, else the tuned row, else None."""
    present = set(labels)
    return next((label for label in FULL_DATA_METHODS if label in present), None)
