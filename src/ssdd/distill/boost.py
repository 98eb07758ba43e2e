"""Boost (Yu, Yao, Chiu, ICLR 2025; docs/method.md section 4): KRR-ST's loop over a low-rank parameterisation,
predefined views and approximation networks.

Stored tensors (names are the artifact's):
- image side: `image_bases` (U, 3rr), `image_mean` (3rr), `image_coefficients` (m, U); or `images`
  (m, 3, H, W) when U = 0. X = Up(reshape(C_x B_x + mu_x)).
- target side: `target_bases` (V, d), `target_mean` (d), `target_coefficients` (m, V); or `targets` (m, d)
  when V = 0. The "codes" of a target are its coefficients (or the target itself when V = 0).
- extra views k = 1..K: `approx.<view>.{w1,b1,w2,b2}` (one MLP each; Y^(k) = Y^(0) + A_k(code) in code
  space, or Y^(0) + A_k(Y^(0)) with approx_space=representations); or, with approximation=off, every
  view's codes in `view_target_coefficients` (K, m, V).
With U = V = 0, one view and nothing else, the artifact is KRR-ST's (`images`, `targets`).
`boost_views` turns these tensors into the m(K+1) training pairs, during distillation and at load time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ssdd.artifacts.files import ArtifactError
from ssdd.artifacts.integrity import check_approximation
from ssdd.artifacts.storage import BudgetError, image_floats
from ssdd.augment import to_float
from ssdd.distill.approx import PARTS, apply_approx, fit_approx, relative_error
from ssdd.distill.lowrank import PCABasis, downsample, fit_pca, images_from_coefficients, project
from ssdd.distill.outer import RealViews, Support, outer_loop
from ssdd.distill.registry import (
    DistillContext,
    DistillMethod,
    DistillResult,
    ManifestMismatch,
    StoredSet,
    register_method,
)
from ssdd.distill.selection import kmeans_indices, random_indices
from ssdd.distill.views import apply_views, check_views, describe_view, encode_view
from ssdd.run import distributed as D
from ssdd.run.checks import non_negative, positive, whole
from ssdd.run.progress import phase

CHOICES = {"basis_init": ("pca", "random"), "coefficient_init": ("real", "random"), "selection": ("random", "kmeans"),
           "kernel_views": ("all", "identity"), "real_views": ("predefined", "crop_flip"),
           "approximation": ("posthoc", "joint", "off"), "approx_space": ("coefficients", "representations")}


@dataclass
class BoostConfig:
    """Boost's parameterisation, views and approximation networks. The outer loop (steps, lr, real batch,
    pool) is `outer`/`pool`; the Boost presets set docs/method.md's T = 30,000 at lr 1e-3 there."""

    image_bases: int = 200  # U (0 = store pixel images: parameterisation off on the image side)
    image_resolution: int = 16  # r: the image bases live at r x r and are bilinearly upsampled
    target_bases: int = 200  # V, at most the teacher's d (0 = store full representations)
    basis_init: str = "pca"  # pca | random (random orthonormal bases around the data means)
    coefficient_init: str = "real"  # real (project chosen real images) | random (Gaussian, the data's spread)
    selection: str = "random"  # which real images initialise the coefficients: random | kmeans
    learn_means: bool = False  # also learn the mean image and mean representation (open point 5)
    basis_lr_scale: float = 1.0  # lr of bases and means relative to outer.lr
    augmentations: list[str] = field(default_factory=lambda: ["identity", "rot90", "rot180", "rot270"])
    kernel_views: str = "all"  # all | identity: other views only train the pool models (open point 1)
    real_views: str = "predefined"  # predefined: crop+flip then one random view per real image | crop_flip
    approximation: str = "posthoc"  # posthoc | joint | off (store every view's target)
    approx_hidden: int = 4  # h of the MLP V -> h -> V (16 for 64 px sources)
    approx_space: str = "coefficients"  # coefficients | representations (open point 3)
    approx_steps: int = 2000  # full-batch Adam steps of each post-hoc fit
    approx_lr: float = 1e-3


@dataclass(frozen=True)
class BoostSpec:
    """What rebuilding the training pairs needs besides the tensors (saved in the manifest as `boost`)."""

    views: tuple[str, ...]
    resolution: int  # r of the image bases
    size: int  # H = W of the source images
    approx_space: str = "coefficients"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "views": list(self.views)}


def _to_rep(t: Mapping[str, torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    """Target codes -> representations (the codes are the representations when there is no basis)."""
    return codes @ t["target_bases"] + t["target_mean"] if "target_bases" in t else codes


def boost_views(t: Mapping[str, torch.Tensor], spec: BoostSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (image, target) view: (m(K+1), 3, H, W) images and (m(K+1), d) targets, view-major."""
    if "images" in t:
        x0 = t["images"].float()
    else:
        x0 = images_from_coefficients(t["image_coefficients"], t["image_bases"], t["image_mean"], spec.resolution,
                                      spec.size)
    codes0 = t["target_coefficients"] if "target_coefficients" in t else t["targets"]
    y0 = _to_rep(t, codes0)
    ys = [y0]
    for k, name in enumerate(spec.views[1:]):
        if "view_target_coefficients" in t:
            ys.append(_to_rep(t, t["view_target_coefficients"][k]))
            continue
        params = {part: t[f"approx.{name}.{part}"] for part in PARTS}
        if spec.approx_space == "coefficients":
            ys.append(_to_rep(t, codes0 + apply_approx(params, codes0)))
        else:
            ys.append(y0 + apply_approx(params, y0))
    return apply_views(x0, spec.views), torch.cat(ys).float()


def boost_layout(b: BoostConfig, image_shape: tuple[int, int, int], target_dim: int, m: int
                 ) -> dict[str, tuple[int, ...]]:
    """Shapes of every stored tensor for m samples (the storage accountant counts exactly these)."""
    channels, height, width = image_shape
    views = list(b.augmentations)
    flat = channels * b.image_resolution**2
    shapes: dict[str, tuple[int, ...]] = {}
    if b.image_bases:
        shapes.update(image_bases=(b.image_bases, flat), image_mean=(flat,), image_coefficients=(m, b.image_bases))
    else:
        shapes["images"] = (m, channels, height, width)
    code = b.target_bases or target_dim
    if b.target_bases:
        shapes.update(target_bases=(b.target_bases, target_dim), target_mean=(target_dim,),
                      target_coefficients=(m, b.target_bases))
    else:
        shapes["targets"] = (m, target_dim)
    if len(views) > 1:
        if b.approximation == "off":
            shapes["view_target_coefficients"] = (len(views) - 1, m, code)
        else:
            dim = code if b.approx_space == "coefficients" else target_dim
            for name in views[1:]:
                shapes.update({f"approx.{name}.w1": (b.approx_hidden, dim), f"approx.{name}.b1": (b.approx_hidden,),
                               f"approx.{name}.w2": (dim, b.approx_hidden), f"approx.{name}.b2": (dim,)})
    return shapes


def _floats(shapes: Mapping[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes.values())


def boost_samples(b: BoostConfig, image_shape: tuple[int, int, int], target_dim: int, budget: float,
                  available: int | None = None) -> tuple[int, int, int]:
    """(m, fixed floats, floats per sample): m = floor((N * 3HW - fixed) / per sample)."""
    fixed = _floats(boost_layout(b, image_shape, target_dim, 0))
    per_sample = _floats(boost_layout(b, image_shape, target_dim, 1)) - fixed
    per_image = image_floats(image_shape)
    m = math.floor((budget * per_image - fixed) / per_sample + 1e-9)
    if m < 1:
        raise BudgetError(f"Boost's fixed tensors (bases, means, approximation networks) take {fixed / per_image:.2f} "
                          f"image-equivalents and each sample {per_sample / per_image:.3f}: a budget of {budget:g} "
                          f"holds no sample; lower boost.image_bases/target_bases/image_resolution or raise the budget")
    if available is not None and m > available:
        raise BudgetError(f"a budget of {budget:g} image-equivalents means {m} Boost samples, but the source has only "
                          f"{available} images")
    return m, fixed, per_sample


def normalise_boost(b: BoostConfig) -> None:
    """Accepted spellings fixed in place: YAML reads a bare `off` as a boolean."""
    if str(b.approximation).lower() in ("false", "off", "none"):
        b.approximation = "off"


def check_boost_config(b: BoostConfig, image_shape: tuple[int, int, int], target_dim: int, n_source: int) -> list[str]:
    """The Boost settings that need the image shape, the teacher's d and the source size (changes nothing;
    `normalise_boost` first); returns the views."""
    for key, allowed in CHOICES.items():
        if getattr(b, key) not in allowed:
            raise ValueError(f"boost.{key} must be one of {', '.join(allowed)}, got '{getattr(b, key)}'")
    views = check_views(b.augmentations, image_shape)
    size = image_shape[-1]
    if b.image_bases:
        if not 1 <= b.image_resolution <= size:
            raise ValueError(f"boost.image_resolution must lie in [1, {size}] (the source size), "
                             f"got {b.image_resolution}")
        limit = min(image_shape[0] * b.image_resolution**2, n_source)
        if not 0 < b.image_bases <= limit:
            raise ValueError(f"boost.image_bases must lie in [1, {limit}] (3 r^2 and the source size) or be 0, "
                             f"got {b.image_bases}")
    if b.target_bases and not 0 < b.target_bases <= min(target_dim, n_source):
        raise ValueError(f"boost.target_bases must lie in [1, {min(target_dim, n_source)}] (the teacher's d = "
                         f"{target_dim}) or be 0, got {b.target_bases}")
    if b.image_bases < 0 or b.target_bases < 0 or b.approx_hidden < 1 or b.approx_steps < 0:
        raise ValueError("boost.image_bases and target_bases must be >= 0, approx_hidden >= 1, approx_steps >= 0")
    return views


def _random_orthonormal(rank: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, rank, generator=generator, dtype=torch.float64))
    return q.T.contiguous()


def _basis(data: torch.Tensor, rank: int, init: str, seed: int, generator: torch.Generator,
           what: str = "samples") -> PCABasis:
    """PCA of (N, D) data, or random orthonormal components around the data mean (basis_init=random)."""
    if init == "pca":
        return fit_pca(data, rank, seed=seed, what=what)
    mean = data.double().mean(0).to(data.dtype)
    components = _random_orthonormal(rank, data.shape[1], generator).to(data.dtype)
    centred = data - mean
    return PCABasis(mean, components, (centred @ components.T).var(0),
                    float(centred.double().pow(2).sum() / max(1, data.shape[0] - 1)))


def _codes(chosen: torch.Tensor, all_data: torch.Tensor, basis: PCABasis | None, init: str,
           generator: torch.Generator) -> torch.Tensor:
    """Codes of the chosen samples: their projection (init=real), or Gaussian noise with the per-component
    spread of the whole data's codes (init=random)."""
    if init == "real":
        return project(chosen, basis) if basis is not None else chosen.clone()
    spread = (project(all_data, basis) if basis is not None else all_data).std(0)
    return torch.randn(chosen.shape[0], spread.shape[0], generator=generator, dtype=spread.dtype) * spread


def _low_resolution(images_u8: torch.Tensor, resolution: int, chunk: int = 4096) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, 3 r r) float32 on the CPU (the space the image bases live in)."""
    parts = [downsample(to_float(images_u8[i : i + chunk]), resolution).flatten(1).cpu()
             for i in range(0, images_u8.shape[0], chunk)]
    return torch.cat(parts)


def _storage_split(shapes: Mapping[str, tuple[int, ...]], per_image: int) -> dict[str, float]:
    groups = {"bases": ("image_bases", "target_bases"), "means": ("image_mean", "target_mean"),
              "coefficients": ("image_coefficients", "target_coefficients", "view_target_coefficients"),
              "pixels_and_targets": ("images", "targets")}
    split = {g: sum(math.prod(shapes[k]) for k in keys if k in shapes) / per_image for g, keys in groups.items()}
    approx = sum(math.prod(s) for k, s in shapes.items() if k.startswith("approx."))
    split["approximation_networks"] = approx / per_image
    return {k: v for k, v in split.items() if v}


def _initialise(ctx: DistillContext, views: list[str], m: int, spec: BoostSpec, cpu_gen: torch.Generator
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any]]:
    """Bases and means from the whole source, codes of m chosen real images (docs/method.md 4.1), each view's
    target codes from g(a_k(x)) (4.2), and in joint mode the networks fitted to those; on ctx.device."""
    cfg, b, device, teacher = ctx.cfg, ctx.cfg.boost, ctx.device, ctx.teacher
    images_u8 = ctx.source.images
    n_source, image_shape = images_u8.shape[0], tuple(images_u8.shape[1:])
    init_gen = torch.Generator().manual_seed(cfg.seed + 2)  # bases, random codes, approximation networks
    features = None
    if b.target_bases or b.selection == "kmeans":
        with phase(f"teacher features of the {n_source:,} source images"):
            features = teacher.encode(images_u8).cpu()
    if b.selection == "kmeans":
        index, _ = kmeans_indices(features, m, cfg.kmeans_iterations, cfg.seed)
    else:
        index = random_indices(n_source, m, cpu_gen)
    chosen_u8 = images_u8[index.to(images_u8.device)]

    values: dict[str, torch.Tensor] = {}
    info: dict[str, Any] = {}
    if b.image_bases:
        with phase(f"down-sampling the {n_source:,} source images to {b.image_resolution} px"):
            low = _low_resolution(images_u8, b.image_resolution)
        image_basis = _basis(low, b.image_bases, b.basis_init, cfg.seed, init_gen, f"{b.image_resolution} px images")
        coefficients = _codes(low[index], low, image_basis, b.coefficient_init, init_gen)
        values.update(image_bases=image_basis.components, image_mean=image_basis.mean, image_coefficients=coefficients)
        info["image_pca_explained"] = float(image_basis.explained_variance.sum()) / image_basis.total_variance
        del low
    else:
        values["images"] = to_float(chosen_u8).cpu() if b.coefficient_init == "real" else \
            torch.rand((m, *image_shape), generator=init_gen)
    with phase(f"teacher targets of the {m:,} chosen images x {len(views)} view(s)"):
        view_features = [encode_view(teacher, chosen_u8, name).cpu() for name in views]  # g(a_k(x)), exact views
    info["view_parameters"] = {name: describe_view(name) for name in views}
    target_basis = None
    if b.target_bases:
        target_basis = _basis(features, b.target_bases, b.basis_init, cfg.seed + 1, init_gen, "teacher features")
        values.update(target_bases=target_basis.components, target_mean=target_basis.mean)
        info["target_pca_explained"] = float(target_basis.explained_variance.sum()) / target_basis.total_variance
    reference = features if features is not None else view_features[0]
    view_codes = [_codes(f, reference, target_basis, b.coefficient_init, init_gen) for f in view_features]
    values["target_coefficients" if b.target_bases else "targets"] = view_codes[0]
    if len(views) > 1 and b.approximation in ("posthoc", "off"):
        values["view_target_coefficients"] = torch.stack(view_codes[1:])
    values = {k: v.float().to(device).contiguous() for k, v in values.items()}
    if len(views) > 1 and b.approximation == "joint":  # start A_k at its post-hoc fit to the initial views
        fitted, errors = _fit_all(values, torch.stack(view_codes[1:]).float().to(device), spec, b, cfg.seed)
        values.update(fitted)
        if not ctx.resume:
            _log_errors(ctx, errors, 0)
    return values, index, info


def _log_errors(ctx: DistillContext, errors: Mapping[str, Mapping[str, float]], step: int) -> None:
    """TensorBoard: approximation/<view>/relative_error (and .../relative_error_without_network)."""
    ctx.log.scalars({f"{view}/{key}": value for view, entry in errors.items() for key, value in entry.items()}, step,
                    prefix="approximation/")


def _initialise_on_main(ctx: DistillContext, views: list[str], m: int, spec: BoostSpec, cpu_gen: torch.Generator
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any]]:
    """_initialise run by rank 0 alone and handed to every torchrun process, with cpu_gen's state after it: the
    PCA and the teacher features of the whole source are computed once (not once per process), and every
    process starts from the same bits whatever its own device's rounding."""
    def compute() -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any], torch.Tensor]:
        values, index, info = _initialise(ctx, views, m, spec, cpu_gen)
        return {k: v.cpu() for k, v in values.items()}, index, info, cpu_gen.get_state()

    values, index, info, generator_state = D.on_main(compute)
    cpu_gen.set_state(generator_state)
    return {k: v.to(ctx.device) for k, v in values.items()}, index, info


def distill_boost(ctx: DistillContext) -> DistillResult:
    cfg, outer, b, device, teacher = ctx.cfg, ctx.cfg.outer, ctx.cfg.boost, ctx.device, ctx.teacher
    images_u8 = ctx.source.images
    n_source, image_shape = images_u8.shape[0], tuple(images_u8.shape[1:])
    d = teacher.feature_dim
    normalise_boost(b)
    views = check_boost_config(b, image_shape, d, n_source)
    m, fixed, per_sample = boost_samples(b, image_shape, d, cfg.budget, available=n_source)
    spec = BoostSpec(tuple(views), b.image_resolution, image_shape[-1], b.approx_space)
    cpu_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    values, index, info = _initialise_on_main(ctx, views, m, spec, cpu_gen)

    frozen_means = () if b.learn_means else ("image_mean", "target_mean")
    learned = {k: v.requires_grad_(True) for k, v in values.items() if k not in frozen_means}
    basis_keys = ("image_bases", "target_bases", "image_mean", "target_mean")
    scales = {k: b.basis_lr_scale for k in basis_keys}

    # crop + flip, then (predefined) one of the views per real image
    real_views = RealViews(outer.real_crop_padding, tuple(views) if b.real_views == "predefined" else ())
    kernel_rows = m if b.kernel_views == "identity" else None
    loop = outer_loop(ctx, "boost", learned, lambda: Support(*boost_views(values, spec), kernel_rows), real_views,
                      cpu_gen, aug_gen, scales)

    values = {k: v.detach() for k, v in values.items()}
    if len(views) > 1 and b.approximation == "posthoc":
        learned_views = values.pop("view_target_coefficients")
        fitted, errors = _fit_all(values, learned_views, spec, b, cfg.seed)
        values.update(fitted)
        info["approximation_error"] = errors
        if loop.finished:
            _log_errors(ctx, errors, loop.steps_done)
    elif len(views) > 1 and b.approximation == "joint":
        info["approximation_error"] = "none: joint mode distils the targets the networks produce"
    layout = boost_layout(b, image_shape, d, m)
    stored = {k: values[k].cpu() for k in layout}
    assert {k: tuple(v.shape) for k, v in stored.items()} == layout, "stored tensors differ from the layout"
    per_image = image_floats(image_shape)
    info.update({
        "m": m, "views": len(views), "training_pairs": m * len(views), "kernel_rows": kernel_rows or m * len(views),
        "boost": spec.as_dict(),
        "storage_split": {"fixed_image_equivalents": fixed / per_image,
                          "per_sample_image_equivalents": per_sample / per_image,
                          **_storage_split(layout, per_image)},
        "steps": outer.steps, **loop.info(), "init_indices": index.tolist(),
    })
    return DistillResult(stored, info, finished=loop.finished)


def _fit_all(values: Mapping[str, torch.Tensor], view_codes: torch.Tensor, spec: BoostSpec, b: BoostConfig,
             seed: int) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, float]]]:
    """Fit A_k for every extra view on the m pairs (codes of Y^(0) -> codes of Y^(k)); returns the
    parameters and, per view, the relative error of the rebuilt Y^(k) (and of using Y^(0) for it)."""
    codes0 = values["target_coefficients"] if "target_coefficients" in values else values["targets"]
    y0 = _to_rep(values, codes0)
    fitted: dict[str, torch.Tensor] = {}
    errors: dict[str, dict[str, float]] = {}
    with phase(f"fitting {len(spec.views) - 1} approximation network(s) on {codes0.shape[0]:,} samples "
               f"({b.approx_steps:,} Adam steps each)") as fitting:
        for k, name in enumerate(spec.views[1:]):
            yk = _to_rep(values, view_codes[k])
            inputs, shifts = (codes0, view_codes[k] - codes0) if spec.approx_space == "coefficients" else (y0, yk - y0)
            params = fit_approx(inputs, shifts, b.approx_hidden, b.approx_steps, b.approx_lr, seed + 100 + k,
                                desc=f"approximation network {name}")
            fitted.update({f"approx.{name}.{part}": p for part, p in params.items()})
        with torch.no_grad():
            _, rebuilt = boost_views({**values, **fitted}, spec)
        m = codes0.shape[0]
        for k, name in enumerate(spec.views[1:]):
            yk = _to_rep(values, view_codes[k])
            errors[name] = {"relative_error": relative_error(rebuilt[(k + 1) * m : (k + 2) * m], yk),
                            "relative_error_without_network": relative_error(y0, yk)}
        fitting.detail = "relative error " + ", ".join(f"{name} {e['relative_error']:.3f}"
                                                       for name, e in errors.items())
    check_approximation(errors, b.approx_lr, b.approx_steps, posthoc=b.approximation == "posthoc")  # no diverged fit
    return fitted, errors


def reconstruct_boost(stored: dict[str, torch.Tensor], manifest: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    raw = manifest["boost"]
    spec = BoostSpec(tuple(raw["views"]), int(raw["resolution"]), int(raw["size"]), raw.get("approx_space",
                                                                                            "coefficients"))
    with torch.no_grad():
        images, targets = boost_views({k: v.float() for k, v in stored.items()}, spec)
    return images, targets


# ----------------------------------------------------------------------------- what ssdd asks Boost
def check_boost_settings(cfg: Any) -> None:
    """Boost's settings that need no file (the outer loop's are checked for every method that runs it)."""
    b = cfg.boost
    positive("boost.approx_lr", b.approx_lr)
    whole("boost.approx_steps", b.approx_steps, 0)
    whole("boost.approx_hidden", b.approx_hidden, 1)
    non_negative("boost.basis_lr_scale", b.basis_lr_scale)


def _normalise(cfg: Any) -> None:
    normalise_boost(cfg.boost)


def _samples(cfg: Any, image_shape: tuple[int, int, int], target_dim: int, available: int | None) -> int:
    check_boost_config(cfg.boost, image_shape, target_dim, available if available is not None else 2**62)
    return boost_samples(cfg.boost, image_shape, target_dim, cfg.budget, available=available)[0]


def _resumable_keys(cfg: Any) -> tuple[str, ...]:
    """The post-hoc fit of the approximation networks runs after the loop: a resume may refit them."""
    return ("boost.approx_lr", "boost.approx_steps") if cfg.boost.approximation == "posthoc" else ()


# A Boost approximation network predicts, for each sample, the shift from the identity view's target code to
# another view's: the difference of two codes of one image, so of the order of the codes themselves; and
# check_approximation refuses a fit whose error exceeds about twice the error of 'no shift'. A network whose
# shifts are orders of magnitude above the codes it shifts cannot come from an accepted fit: the set was damaged
# or edited, or written by a fit that diverged. The limit is far above what any accepted fit gives.
APPROX_SHIFT_LIMIT = 1e3


def check_approximation_scale(where: str, spec: Mapping[str, Any], stored: Mapping[str, torch.Tensor]) -> None:
    """Each stored approximation network, applied to the stored identity codes, gives finite shifts whose RMS is
    at most APPROX_SHIFT_LIMIT times the codes' RMS; ArtifactError otherwise (before a run trains on them)."""
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


def verify_boost(s: StoredSet) -> None:
    """A saved Boost set: views, bases and approximation networks as listed, m from the budget."""
    stored, manifest, image_shape, d = s.stored, s.manifest, s.image_shape, s.feature_dim
    spec = manifest.get("boost")
    if not isinstance(spec, dict) or not isinstance(spec.get("views"), list) or not spec["views"]:
        raise ManifestMismatch("'boost' must name the views")
    views = [str(v) for v in spec["views"]]
    if views[0] != "identity":
        raise ManifestMismatch(f"the first Boost view must be 'identity', found {views}")
    if spec.get("size") != image_shape[-1]:
        raise ManifestMismatch(f"boost.size is {spec.get('size')} but 'image_shape' is {list(image_shape)}")
    if "image_bases" in stored:
        r = spec.get("resolution")
        if not isinstance(r, int) or stored["image_bases"].shape[-1] != image_shape[0] * r * r:
            raise ManifestMismatch(f"boost.resolution {r!r} does not fit image bases of width "
                                   f"{stored['image_bases'].shape[-1]}")
    extra = views[1:]
    if "view_target_coefficients" in stored:
        if stored["view_target_coefficients"].shape[0] != len(extra):
            raise ManifestMismatch(f"{len(views)} views listed, the tensors hold targets of "
                                   f"{stored['view_target_coefficients'].shape[0] + 1}")
    else:
        networks = sorted({k[len("approx."):].rsplit(".", 1)[0] for k in stored if k.startswith("approx.")})
        if sorted(extra) != networks:
            raise ManifestMismatch(f"views {views} listed, the tensors hold approximation networks for {networks}")
        missing = [f"approx.{v}.{p}" for v in extra for p in PARTS if f"approx.{v}.{p}" not in stored]
        if missing:
            raise ManifestMismatch(f"approximation network tensors missing: {', '.join(missing[:4])}")
        check_approximation_scale(s.where, spec, stored)
    m = s.rows
    if manifest.get("views") is not None and manifest["views"] != len(views):
        raise ManifestMismatch(f"'views' is {manifest['views']} but boost.views lists {len(views)}")
    if m is not None and manifest.get("training_pairs") is not None and manifest["training_pairs"] != m * len(views):
        raise ManifestMismatch(f"'training_pairs' is {manifest['training_pairs']}, the tensors give {m} x "
                               f"{len(views)}")
    boost_cfg = s.config.get("boost") if isinstance(s.config.get("boost"), dict) else None
    if boost_cfg is None:
        return
    if list(boost_cfg.get("augmentations", views)) != views:
        raise ManifestMismatch(f"boost.views {views} differ from the configured augmentations "
                               f"{boost_cfg.get('augmentations')}")
    if d is None or m is None:
        return
    try:
        expected = boost_samples(BoostConfig(**boost_cfg), image_shape, d, float(manifest["budget"]))[0]
    except (TypeError, ValueError, BudgetError):
        return  # a config of another version: the shape and storage checks above still hold
    if expected != m:
        raise ManifestMismatch(f"a budget of {manifest['budget']:g} means m = {expected} Boost samples, the tensors "
                               f"hold {m}")


register_method(DistillMethod(
    "boost", distill_boost, reconstruct_boost, parallel=True, check=check_boost_settings, normalise=_normalise,
    samples=_samples, verify=verify_boost, resumable_keys=_resumable_keys, outer_loop=True,
    note="Boost: low-rank bases, predefined views, approximation networks", colour="tab:blue"))
