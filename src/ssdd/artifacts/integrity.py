"""What every artifact must satisfy, checked when it is saved and when it is loaded.

- A teacher's `function_fingerprint` covers what defines the function it computes: its shards (by SHA-256),
  the architecture (`model`, including `feature`), `feature_dim`, `resolution` and `normalization`. A
  manifest whose fields were edited after saving no longer matches and is refused. Teachers saved before
  the field existed load as before (their `function_fingerprint` is computed from the manifest as it is).
- A distilled set's manifest is recomputed from its tensors in `ssdd.distill.verify` (with the method's own
  checks: each method knows what its folder must hold).
- Boost's approximation networks must fit: a post-hoc fit far worse than using the identity view's target
  (or not finite) is refused (`ApproximationError`).
Tensors are checked for NaN/inf in `ssdd.artifacts.files` (save_tensors and load_tensors).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import torch

from ssdd.artifacts.files import MANIFEST, ArtifactError, shard_path

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
