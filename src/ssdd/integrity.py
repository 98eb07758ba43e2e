"""What every artifact must satisfy, checked when it is saved and when it is loaded.

- A teacher's `function_fingerprint` covers what defines the function it computes: its shards (by SHA-256),
  the architecture (`model`, including `feature`), `feature_dim`, `resolution` and `normalization`. A
  manifest whose fields were edited after saving no longer matches and is refused. Teachers saved before
  the field existed load as before (their `function_fingerprint` is computed from the manifest as it is).
- A distilled set's manifest is recomputed from its tensors: shapes, m, views, image shape, storage and the
  budget (m must follow from the budget for the methods whose m does), so an edited `budget`,
  `image_shape` or Boost `views` cannot silently change a label, a storage figure or the training pairs.
- Boost's approximation networks must fit: a post-hoc fit far worse than using the identity view's target
  (or not finite) is refused (`ApproximationError`).
Tensors are checked for NaN/inf in `ssdd.artifacts` (save_tensors and load_tensors).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import torch

from ssdd.artifacts import MANIFEST, ArtifactError, shard_path

FUNCTION_FIELDS = ("model", "feature_dim", "resolution", "normalization")


class ApproximationError(FloatingPointError):
    """A Boost approximation network whose fit diverged (it would store garbage targets)."""


class DivergedError(FloatingPointError):
    """A network trained or probed during evaluation holds or computes NaN/inf (it would score as chance)."""


# ----------------------------------------------------------------------------- teacher
def shard_fingerprint(shards: list[dict[str, Any]]) -> str:
    """The teacher's `fingerprint`: the first 8 hex digits of every shard's SHA-256, joined by '+'."""
    return "+".join(str(s["sha256"])[:8] for s in shards)


def function_fingerprint(manifest: Mapping[str, Any]) -> str:
    """16 hex digits over the shards' SHA-256 and the manifest fields that define the teacher's function."""
    fields = {"shards": [str(s.get("sha256")) for s in manifest.get("shards") or []],
              **{key: manifest.get(key) for key in FUNCTION_FIELDS}}
    text = json.dumps(json.loads(json.dumps(fields, default=str)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stats_ok(values: Any) -> bool:
    return (isinstance(values, list) and len(values) == 3
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values))


def verify_teacher_manifest(directory: Any, manifest: Mapping[str, Any]) -> str:
    """Check a teacher manifest without reading its weights; returns its function fingerprint."""
    where = f"{directory}/{MANIFEST}"
    model = manifest.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise ArtifactError(f"{where}: 'model' must describe the architecture (name, width, depth, feature)")
    resolution, feature_dim = manifest.get("resolution"), manifest.get("feature_dim")
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise ArtifactError(f"{where}: 'resolution' must be a positive integer, found {resolution!r}")
    if feature_dim is not None and (not isinstance(feature_dim, int) or feature_dim < 1):
        raise ArtifactError(f"{where}: 'feature_dim' must be a positive integer, found {feature_dim!r}")
    stats = manifest.get("normalization")
    if not isinstance(stats, dict) or not _stats_ok(stats.get("mean")) or not _stats_ok(stats.get("std")) \
            or min(stats["std"]) <= 0:
        raise ArtifactError(f"{where}: 'normalization' must hold 3 finite means and 3 positive stds, found {stats!r}")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards or not all(isinstance(s, dict) and "sha256" in s for s in shards):
        raise ArtifactError(f"{where}: 'shards' must list the weight files with their sha256; the manifest is damaged")
    for shard in shards:
        shard_path(directory, shard.get("file"))
    recorded = manifest.get("fingerprint")
    if recorded is not None and recorded != shard_fingerprint(shards):
        raise ArtifactError(f"{where}: 'fingerprint' {recorded} does not match its shards "
                            f"({shard_fingerprint(shards)}); the manifest was edited: restore it")
    computed = function_fingerprint(manifest)
    saved = manifest.get("function_fingerprint")
    if saved is not None and saved != computed:
        raise ArtifactError(f"{where}: the fields that define the teacher's function ({', '.join(FUNCTION_FIELDS)}) "
                            f"changed after it was saved (function_fingerprint {saved}, now {computed}); restore "
                            f"the original manifest or import the weights again as a new teacher")
    return computed


# ----------------------------------------------------------------------------- distilled sets
def _fail(where: str, text: str) -> ArtifactError:
    return ArtifactError(f"{where}: {text}; the manifest does not describe its tensors (edited or damaged): "
                         f"restore it or distil the set again")


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def verify_distilled(directory: Any, manifest: Mapping[str, Any], stored: Mapping[str, torch.Tensor]) -> None:
    """Recompute from the tensors what the manifest says about them; ArtifactError on any disagreement."""
    from ssdd.storage import storage_of

    where = f"{directory}/{MANIFEST}"
    method = manifest.get("method")
    shape = manifest.get("image_shape")
    if (not isinstance(shape, list) or len(shape) != 3 or shape[0] != 3
            or not all(isinstance(s, int) and s >= 1 for s in shape) or shape[1] != shape[2]):
        raise _fail(where, f"'image_shape' must be [3, H, H], found {shape!r}")
    image_shape = (shape[0], shape[1], shape[2])
    budget = manifest.get("budget")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise _fail(where, f"'budget' must be a positive number, found {budget!r}")
    if not stored:
        raise _fail(where, "no tensors")
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    if "budget" in config and not _close(config["budget"], budget):
        raise _fail(where, f"'budget' is {budget:g} but the run was configured with budget={config['budget']:g}")

    # storage recomputed from the tensors
    report = storage_of(stored, image_shape)
    recorded = manifest.get("storage")
    if isinstance(recorded, dict):
        if "floats" in recorded and int(recorded["floats"]) != report.floats:
            raise _fail(where, f"storage says {recorded['floats']} stored values, the tensors hold {report.floats}")
        if "image_equivalents" in recorded and not _close(recorded["image_equivalents"], report.image_equivalents):
            raise _fail(where, f"storage says {recorded['image_equivalents']:.4g} image-equivalents, the tensors "
                               f"occupy {report.image_equivalents:.4g} at image shape {list(image_shape)}")
        for name, entry in (recorded.get("tensors") or {}).items():
            actual = stored.get(name)
            if actual is None or list(entry.get("shape", [])) != list(actual.shape):
                raise _fail(where, f"tensor '{name}' is listed with shape {entry.get('shape')}, found "
                                   f"{None if actual is None else list(actual.shape)}")
    counts_images_only = manifest.get("budget_counts") == "images only"
    counted = {k: v for k, v in stored.items() if not (counts_images_only and k == "targets")}
    used = storage_of(counted, image_shape).image_equivalents
    if used > budget + 1e-9:
        raise _fail(where, f"the tensors occupy {used:.4g} image-equivalents, over the budget of {budget:g}")

    m = manifest.get("m")
    rows = _rows(stored)
    if m is not None and rows is not None and m != rows:
        raise _fail(where, f"'m' is {m} but the tensors hold {rows} samples")
    if "images" in stored and list(stored["images"].shape[1:]) != list(image_shape):
        raise _fail(where, f"'image_shape' is {list(image_shape)} but the images are "
                           f"{list(stored['images'].shape[1:])}")
    teacher = manifest.get("teacher") if isinstance(manifest.get("teacher"), dict) else {}
    d = teacher.get("feature_dim")
    if "targets" in stored and method != "boost" and d is not None and stored["targets"].shape[-1] != d:
        raise _fail(where, f"the targets have d = {stored['targets'].shape[-1]}, the teacher's feature_dim is {d}")
    if method == "boost":
        _verify_boost(where, manifest, stored, image_shape, config, d)
    elif (method in ("krr_st", "mkdt", "random", "kmeans", "high_loss", "random_supervised") and rows is not None
          and config):
        _verify_m_from_budget(where, method, manifest, rows, image_shape, budget, d, counts_images_only)


def _rows(stored: Mapping[str, torch.Tensor]) -> int | None:
    for key in ("images", "image_coefficients", "labels", "targets", "target_coefficients"):
        if key in stored and stored[key].ndim >= 1:
            return int(stored[key].shape[0])
    return None


def _verify_m_from_budget(where: str, method: str, manifest: Mapping[str, Any], rows: int,
                          image_shape: tuple[int, int, int], budget: float, d: int | None,
                          images_only: bool) -> None:
    from ssdd.distill.budget import samples_for_budget
    from ssdd.storage import BudgetError

    dim = 1 if method == "random_supervised" else d
    if dim is None:
        return
    try:
        expected = samples_for_budget(budget, image_shape, dim, not images_only)
    except BudgetError:
        expected = 0
    if expected != rows:
        raise _fail(where, f"a budget of {budget:g} means m = {expected} for {method}, the tensors hold {rows}")


def _verify_boost(where: str, manifest: Mapping[str, Any], stored: Mapping[str, torch.Tensor],
                  image_shape: tuple[int, int, int], config: Mapping[str, Any], d: int | None) -> None:
    from ssdd.distill.approx import PARTS

    spec = manifest.get("boost")
    if not isinstance(spec, dict) or not isinstance(spec.get("views"), list) or not spec["views"]:
        raise _fail(where, "'boost' must name the views")
    views = [str(v) for v in spec["views"]]
    if views[0] != "identity":
        raise _fail(where, f"the first Boost view must be 'identity', found {views}")
    if spec.get("size") != image_shape[-1]:
        raise _fail(where, f"boost.size is {spec.get('size')} but 'image_shape' is {list(image_shape)}")
    if "image_bases" in stored:
        r = spec.get("resolution")
        if not isinstance(r, int) or stored["image_bases"].shape[-1] != image_shape[0] * r * r:
            raise _fail(where, f"boost.resolution {r!r} does not fit image bases of width "
                               f"{stored['image_bases'].shape[-1]}")
    extra = views[1:]
    if "view_target_coefficients" in stored:
        if stored["view_target_coefficients"].shape[0] != len(extra):
            raise _fail(where, f"{len(views)} views listed, the tensors hold targets of "
                               f"{stored['view_target_coefficients'].shape[0] + 1}")
    else:
        networks = sorted({k[len("approx."):].rsplit(".", 1)[0] for k in stored if k.startswith("approx.")})
        if sorted(extra) != networks:
            raise _fail(where, f"views {views} listed, the tensors hold approximation networks for {networks}")
        missing = [f"approx.{v}.{p}" for v in extra for p in PARTS if f"approx.{v}.{p}" not in stored]
        if missing:
            raise _fail(where, f"approximation network tensors missing: {', '.join(missing[:4])}")
        check_approximation_scale(where, spec, stored)
    m = _rows(stored)
    if manifest.get("views") is not None and manifest["views"] != len(views):
        raise _fail(where, f"'views' is {manifest['views']} but boost.views lists {len(views)}")
    if m is not None and manifest.get("training_pairs") is not None and manifest["training_pairs"] != m * len(views):
        raise _fail(where, f"'training_pairs' is {manifest['training_pairs']}, the tensors give {m} x {len(views)}")
    boost_cfg = config.get("boost") if isinstance(config.get("boost"), dict) else None
    if boost_cfg is None:
        return
    if list(boost_cfg.get("augmentations", views)) != views:
        raise _fail(where, f"boost.views {views} differ from the configured augmentations "
                           f"{boost_cfg.get('augmentations')}")
    if d is None or m is None:
        return
    from ssdd.distill.boost import boost_samples
    from ssdd.distill.config import BoostConfig
    from ssdd.storage import BudgetError

    try:
        expected = boost_samples(BoostConfig(**boost_cfg), image_shape, d, float(manifest["budget"]))[0]
    except (TypeError, ValueError, BudgetError):
        return  # a config of another version: the shape and storage checks above still hold
    if expected != m:
        raise _fail(where, f"a budget of {manifest['budget']:g} means m = {expected} Boost samples, the tensors "
                           f"hold {m}")


# ----------------------------------------------------------------------------- Boost approximation networks
def check_approximation(errors: Mapping[str, Mapping[str, float]], lr: float, steps: int,
                        posthoc: bool = True) -> None:
    """A post-hoc fit starts at 'no shift' (the identity view's target); ending far above that error means it
    diverged. Refuse it instead of storing networks that rebuild garbage targets."""
    for view, entry in errors.items():
        fitted, baseline = entry["relative_error"], entry["relative_error_without_network"]
        if not math.isfinite(fitted) or fitted > 2.0 * baseline + 0.05:
            raise ApproximationError(
                f"the approximation network of view '{view}' diverged (relative error {fitted:.3g}, against "
                f"{baseline:.3g} without a network) at boost.approx_lr={lr:g}, boost.approx_steps={steps}: nothing was "
                f"saved; " + ("refit with a lower rate without repeating the distillation: --resume "
                              "boost.approx_lr=<lower>" if posthoc else "run again with a lower boost.approx_lr"))


# A Boost approximation network predicts, for each sample, the shift from the identity view's target code to
# another view's: the difference of two codes of one image, so of the order of the codes themselves; and
# check_approximation refuses a fit whose error exceeds about twice the error of 'no shift'. A network whose
# shifts are orders of magnitude above the codes it shifts cannot come from an accepted fit: the set was damaged
# or edited, or written by a fit that diverged. The limit is far above what any accepted fit gives.
APPROX_SHIFT_LIMIT = 1e3


def check_approximation_scale(where: str, spec: Mapping[str, Any], stored: Mapping[str, torch.Tensor]) -> None:
    """Each stored approximation network, applied to the stored identity codes, gives finite shifts whose RMS is
    at most APPROX_SHIFT_LIMIT times the codes' RMS; ArtifactError otherwise (before a run trains on them)."""
    from ssdd.distill.approx import PARTS, apply_approx
    from ssdd.distill.boost import _to_rep

    t = {k: v.float() for k, v in stored.items()}
    codes = t["target_coefficients"] if "target_coefficients" in t else t.get("targets")
    if codes is None:
        return
    inputs = codes if spec.get("approx_space", "coefficients") == "coefficients" else _to_rep(t, codes)
    scale = float(inputs.double().pow(2).mean().sqrt())
    for view in [str(v) for v in spec["views"][1:]]:
        with torch.no_grad():
            shifts = apply_approx({p: t[f"approx.{view}.{p}"] for p in PARTS}, inputs).double()
        size = float(shifts.pow(2).mean().sqrt())
        if not math.isfinite(size) or size > APPROX_SHIFT_LIMIT * max(scale, 1e-12):
            raise ArtifactError(f"{where}: the approximation network of view '{view}' shifts the targets by "
                                f"{size:.3g} (RMS), {APPROX_SHIFT_LIMIT:g}+ times the targets' own scale {scale:.3g}: "
                                f"the set is damaged or its fit diverged; distil it again (or refit its networks "
                                f"with --resume boost.approx_lr=<lower> while the run's checkpoint exists)")


# ----------------------------------------------------------------------------- trained networks
def check_trained(module: torch.nn.Module, what: str, lr_key: str, resolution: int | None = None) -> None:
    """A network trained during evaluation (or a probe head) must have finite weights and, given a resolution,
    compute finite features (checked on a few fixed random inputs, without touching any global RNG); NaN
    would score as chance level without a word."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DivergedError(f"{what} diverged ('{name}' holds NaN or inf), so its accuracy would be "
                                     f"meaningless: lower {lr_key}")
    if resolution is None:
        return
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    probe = torch.randn(4, 3, resolution, resolution, generator=torch.Generator().manual_seed(0)).to(device)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        finite = bool(torch.isfinite(module(probe)).all())
    module.train(was_training)
    if not finite:
        raise DivergedError(f"{what} diverged (its features are NaN or inf), so its accuracy would be "
                                 f"meaningless: lower {lr_key}")


def check_features(features: torch.Tensor) -> None:
    """Frozen features must be finite before a linear probe is trained on them."""
    bad = int((~torch.isfinite(features)).sum())
    if bad:
        raise DivergedError(f"the frozen encoder computes {bad} NaN or inf feature value(s), so a linear probe would "
                            f"be meaningless: the encoder diverged, or its weights do not fit float16 (a teacher "
                            f"saved with save_dtype=float16: --resume save_dtype=float32)")
