"""A distilled set's manifest recomputed from its tensors, when it is saved and when it is loaded: shapes, m,
image shape, storage and the budget, then what the method checks itself (its `verify` hook: m from the budget
for the methods whose m follows from it, Boost's views and approximation networks), so an edited `budget`,
`image_shape` or Boost `views` cannot silently change a label, a storage figure or the training pairs.
Tensors are checked for NaN/inf in `ssdd.artifacts.files` (save_tensors and load_tensors)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ssdd.artifacts.files import MANIFEST, ArtifactError
from ssdd.artifacts.storage import BudgetError, storage_of
from ssdd.distill.budget import samples_for_budget
from ssdd.distill.registry import ManifestMismatch, StoredSet, find_method


def _fail(where: str, text: str, saving: bool = False) -> ArtifactError:
    if saving:  # the method just made these tensors: they, not a manifest, are at fault
        return ArtifactError(f"{where}: {text}; the set the method made does not pass its checks, nothing was "
                             f"written (a plugin's method: see its distill hook)")
    return ArtifactError(f"{where}: {text}; the manifest does not describe its tensors (edited or damaged): "
                         f"restore it or distil the set again")


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def sample_rows(stored: Mapping[str, torch.Tensor]) -> int | None:
    """The number of samples the tensors hold (None when no tensor says)."""
    for key in ("images", "image_coefficients", "labels", "targets", "target_coefficients"):
        if key in stored and stored[key].ndim >= 1:
            return int(stored[key].shape[0])
    return None


def verify_distilled(directory: Any, manifest: Mapping[str, Any], stored: Mapping[str, torch.Tensor],
                     saving: bool = False) -> None:
    """Recompute from the tensors what the manifest says about them; ArtifactError on any disagreement (`saving`:
    a set about to be written, whose message blames the tensors the method made, not an edited manifest)."""
    where = f"{directory}/{MANIFEST}"

    def fail(where: str, text: str) -> ArtifactError:
        return _fail(where, text, saving)

    shape = manifest.get("image_shape")
    if (not isinstance(shape, list) or len(shape) != 3 or shape[0] != 3
            or not all(isinstance(s, int) and s >= 1 for s in shape) or shape[1] != shape[2]):
        raise fail(where, f"'image_shape' must be [3, H, H], found {shape!r}")
    image_shape = (shape[0], shape[1], shape[2])
    budget = manifest.get("budget")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise fail(where, f"'budget' must be a positive number, found {budget!r}")
    if not stored:
        raise fail(where, "no tensors")
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    if "budget" in config and not _close(config["budget"], budget):
        raise fail(where, f"'budget' is {budget:g} but the run was configured with budget={config['budget']:g}")

    # storage recomputed from the tensors
    report = storage_of(stored, image_shape)
    recorded = manifest.get("storage")
    if isinstance(recorded, dict):
        if "floats" in recorded and int(recorded["floats"]) != report.floats:
            raise fail(where, f"storage says {recorded['floats']} stored values, the tensors hold {report.floats}")
        if "image_equivalents" in recorded and not _close(recorded["image_equivalents"], report.image_equivalents):
            raise fail(where, f"storage says {recorded['image_equivalents']:.4g} image-equivalents, the tensors "
                               f"occupy {report.image_equivalents:.4g} at image shape {list(image_shape)}")
        for name, entry in (recorded.get("tensors") or {}).items():
            actual = stored.get(name)
            if actual is None or list(entry.get("shape", [])) != list(actual.shape):
                raise fail(where, f"tensor '{name}' is listed with shape {entry.get('shape')}, found "
                                   f"{None if actual is None else list(actual.shape)}")
    counts_images_only = manifest.get("budget_counts") == "images only"
    counted = {k: v for k, v in stored.items() if not (counts_images_only and k == "targets")}
    used = storage_of(counted, image_shape).image_equivalents
    if used > budget + 1e-9:
        raise fail(where, f"the tensors occupy {used:.4g} image-equivalents, over the budget of {budget:g}")

    m = manifest.get("m")
    rows = sample_rows(stored)
    if (m is None and rows is None) or (m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1)):
        raise fail(where, f"'m' (the number of samples) must be a positive whole number, found {m!r}")
    normalization = manifest.get("normalization")
    stats = [normalization.get(k) for k in ("mean", "std")] if isinstance(normalization, dict) else []
    if len(stats) != 2 or not all(isinstance(v, list) and len(v) == 3 and
                                  all(isinstance(x, (int, float)) and math.isfinite(x) for x in v) for v in stats) \
            or not all(x > 0 for x in stats[1]):
        raise fail(where, f"'normalization' must hold 3 means and 3 positive stds, found {normalization!r}")
    if m is not None and rows is not None and m != rows:
        raise fail(where, f"'m' is {m} but the tensors hold {rows} samples")
    if "images" in stored and list(stored["images"].shape[1:]) != list(image_shape):
        raise fail(where, f"'image_shape' is {list(image_shape)} but the images are "
                           f"{list(stored['images'].shape[1:])}")
    teacher = manifest.get("teacher") if isinstance(manifest.get("teacher"), dict) else {}
    found = StoredSet(where, manifest, stored, image_shape, float(budget), not counts_images_only, config,
                      teacher.get("feature_dim"), rows)
    method = find_method(manifest.get("method"))
    try:
        (method.verify if method is not None and method.verify is not None else verify_targets)(found)
    except ManifestMismatch as exc:
        raise fail(where, str(exc)) from None


# ----------------------------------------------------------------------------- verify hooks methods share
def verify_targets(s: StoredSet) -> None:
    """Stored targets have the teacher's d."""
    d = s.feature_dim
    if "targets" in s.stored and d is not None and s.stored["targets"].shape[-1] != d:
        raise ManifestMismatch(f"the targets have d = {s.stored['targets'].shape[-1]}, the teacher's feature_dim "
                               f"is {d}")


def _m_from_budget(s: StoredSet, dim: int | None) -> None:
    if dim is None or s.rows is None or not s.config:
        return
    try:
        expected = samples_for_budget(s.budget, s.image_shape, dim, s.counts_targets)
    except BudgetError:
        expected = 0
    if expected != s.rows:
        raise ManifestMismatch(f"a budget of {s.budget:g} means m = {expected} for {s.manifest.get('method')}, "
                               f"the tensors hold {s.rows}")


def _holds(s: StoredSet, *names: str) -> None:
    missing = [name for name in names if name not in s.stored]
    if missing:
        raise ManifestMismatch(f"no {' or '.join(missing)} tensor among the stored ones ({', '.join(s.stored)})")


def verify_teacher_targets(s: StoredSet) -> None:
    """m images with one teacher target each: both are stored, d matches and m follows from the budget."""
    _holds(s, "images", "targets")
    verify_targets(s)
    _m_from_budget(s, s.feature_dim)


def verify_labels(s: StoredSet) -> None:
    """m images with one class label each: both are stored, m follows from the budget (a label costs one value)."""
    _holds(s, "images", "labels")
    verify_targets(s)
    _m_from_budget(s, 1)
