"""`ssdd import-teacher`: turn a teacher checkpoint shared by another code base into an ssdd teacher artifact.

Formats (facts taken from the official code bases; the code here is our own):

- ``krr_st``: the Barlow Twins teachers of KRR-ST (github.com/db-Lee/selfsup_dd,
  ``teacher_ckpt/barlow_twins_resnet18_{cifar100,tinyimagenet,imagenet}.pt``). Its ``train.py`` builds
  ``torchvision.models.resnet18()``, sets ``fc = Identity``, ``conv1 = Conv2d(3, 64, 3, stride 1, padding 2,
  bias=False)``, ``maxpool = Identity`` and loads the file with a strict ``load_state_dict(torch.load(...))``:
  the file is a flat state dict with torchvision's key names and no ``fc.*``. Images are normalised with the
  dataset's MEAN/STD of its ``data/augmentation.py`` (keyed by image size), at 32 px for CIFAR-100 and 64 px
  for TinyImageNet and ImageNet (``train.py``).
- ``solo_learn``: a Lightning ``.ckpt`` of solo-learn (github.com/vturrisi/solo-learn): the weights are under
  ``state_dict``, the backbone's with the prefix ``backbone.`` (``encoder.`` in old checkpoints, as its
  ``main_linear.py`` handles); ``projector.*``, ``classifier.*`` and ``momentum_*`` are ignored. Its
  ``solo/methods/base.py`` gives torchvision's ResNet the same CIFAR stem as KRR-ST (3x3, stride 1, padding 2,
  no max-pool) for cifar10/cifar100 only; the statistics are its pre-training ones
  (``solo/data/pretrain_dataloader.py``, MEANS_N_STD).
- ``state_dict``: a flat state dict of any registered ssdd architecture; the keys must match exactly
  (``--prefix`` strips a prefix such as ``module.`` first).

Reading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` (or safetensors), unless the user
passes ``--trust-pickle`` for a file they trust.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssdd.artifacts.torchfile import check_file, load_torch_file
from ssdd.cli.import_teacher_args import FORMATS
from ssdd.config import DataConfig, ModelConfig
from ssdd.data.published_stats import KRR_ST_MEAN as _KRR_ST_MEAN
from ssdd.data.published_stats import KRR_ST_STD as _KRR_ST_STD
from ssdd.models import build_model, describe
from ssdd.run.folder import claim
from ssdd.run.progress import phase

SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


Stats = tuple[tuple[float, float, float], tuple[float, float, float]]

# KRR-ST, data/augmentation.py: MEAN[size][name], STD[size][name] live in ssdd.data.published_stats.
# KRR-ST, train.py: args.img_size per --data_name (the teachers' resolution).
_KRR_ST_RESOLUTION = {"cifar100": 32, "tinyimagenet": 64, "imagenet": 64}

# solo-learn, solo/data/pretrain_dataloader.py: MEANS_N_STD (imagenet*: timm's IMAGENET_DEFAULT_MEAN/STD).
_IMAGENET_DEFAULT: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_SOLO_LEARN_STATS: dict[str, Stats] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": ((0.4914, 0.4823, 0.4466), (0.247, 0.243, 0.261)),
    "imagenet100": _IMAGENET_DEFAULT,
    "imagenet": _IMAGENET_DEFAULT,
}
_SOLO_LEARN_RESOLUTION = {"cifar10": 32, "cifar100": 32, "stl10": 96, "imagenet100": 224, "imagenet": 224}

_SOURCE_ARCHITECTURE = {
    "krr_st": "torchvision resnet18, conv1 = Conv2d(3, 64, 3, stride 1, padding 2), maxpool and fc = Identity "
              "(KRR-ST train.py)",
    "solo_learn": "torchvision resnet18 with solo-learn's CIFAR stem: conv1 = Conv2d(3, 64, 3, stride 1, "
                  "padding 2), maxpool and fc = Identity (solo/methods/base.py)",
}


class TeacherImportError(ValueError):
    """A checkpoint that cannot be imported as asked (printed as one line by the CLI)."""


@dataclass
class ProbeData:
    """Where the linear probe's labelled images come from (a DataConfig without the resolution)."""

    path: str
    source: str = ""  # npz | folder | torchvision | digits; "" = from the path
    name: str = ""
    train_split: str = "train"
    test_split: str = "test"
    train_subset: int = 0  # 0 = every image
    test_subset: int = 0
    iterations: int = 5000
    seed: int = 0


@dataclass
class ImportOptions:
    path: str
    format: str
    out: str
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: str = ""
    mean: list[float] | None = None
    std: list[float] | None = None
    resolution: int = 0  # 0 = the format's default for the dataset (32 otherwise)
    prefix: str = ""  # state_dict only: strip this prefix (keys without it are ignored)
    trust_pickle: bool = False
    probe: ProbeData | None = None
    device: str = "auto"
    save_dtype: str = "float32"
    overwrite: bool = False


# --------------------------------------------------------------------------------------------- reading


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> tuple[Any, str]:
    """Load a checkpoint without running pickled code; returns (object, how it was read)."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), "safetensors"
        except (SafetensorError, OSError) as exc:
            raise TeacherImportError(f"{path}: not a readable safetensors file ({exc})") from None
    obj = load_torch_file(path, "PyTorch checkpoint", trust_pickle,
                          "; pass --trust-pickle only if you trust this file", TeacherImportError)
    return obj, f"torch.load(weights_only={not trust_pickle})"


def _tensor_mapping(obj: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):  # a whole pickled module (only readable with --trust-pickle)
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TeacherImportError(f"{where}: expected a dict of tensors, found {type(obj).__name__}")
    others = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        hint = ""
        if "state_dict" in obj:  # beside tensors of its own: not a plain wrapper
            hint = " (it looks like a training checkpoint: try --format solo_learn)"
        raise TeacherImportError(f"{where}: expected a flat dict of tensors, but {_few(others)} "
                                 f"{'is' if len(others) == 1 else 'are'} not tensors{hint}")
    return {str(k): v for k, v in obj.items()}


def _wrapped_state_dict(obj: Any) -> bool:
    """A dict whose 'state_dict' entry holds the tensors and whose other entries are none (epoch, optimiser, ...)."""
    return (isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)
            and not any(isinstance(v, torch.Tensor) for v in obj.values()))


def _few(names: list[str], count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return shown + (f" (+{len(names) - count} more)" if len(names) > count else "")


def extract_state(obj: Any, fmt: str, where: str, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The backbone's tensors of a loaded checkpoint, and how many tensors were ignored per top-level name."""
    if fmt not in FORMATS:
        raise TeacherImportError(f"unknown format '{fmt}' (choose {', '.join(FORMATS)})")
    if fmt == "solo_learn":
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            obj = obj["state_dict"]
        state = _tensor_mapping(obj, where)
        prefix = next((p for p in ("backbone.", "encoder.") if any(k.startswith(p) for k in state)), "")
        if not prefix:
            raise TeacherImportError(f"{where}: no 'backbone.' keys in the checkpoint's state_dict (found "
                                     f"{_few(sorted(state))}); is it a solo-learn checkpoint?")
    else:
        wrapped = _wrapped_state_dict(obj)
        if wrapped:  # a training loop's {'state_dict': {...}, 'epoch': ..., ...}: its weights
            obj = obj["state_dict"]
        state = _tensor_mapping(obj, where)
        if wrapped and not prefix and any(k.startswith("backbone.") for k in state):
            raise TeacherImportError(f"{where}: its state_dict holds backbone.* keys: it looks like a training "
                                     f"checkpoint of solo-learn: try --format solo_learn (or --prefix backbone.)")
    if not prefix:
        return state, {}
    kept = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not kept:
        raise TeacherImportError(f"{where}: no key starts with '{prefix}' (found {_few(sorted(state))})")
    ignored = Counter(k.split(".", 1)[0] for k in state if not k.startswith(prefix))
    return kept, dict(sorted(ignored.items()))


def check_finite_weights(state: dict[str, torch.Tensor], where: str) -> None:
    """Refuse a file whose weights hold NaN or inf (naming the first such tensor): no network comes from it."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise TeacherImportError(f"{where}: the file holds non-finite weights: tensor '{name}' has {bad} NaN or "
                                     f"inf value(s) of {tensor.numel()}; it cannot be imported")


def fit_state(model: nn.Module, state: dict[str, torch.Tensor], where: str, hint: str = "") -> int:
    """Load `state` into `model` requiring the exact keys and shapes; returns the number of tensors loaded.

    BatchNorm's `num_batches_tracked` counters are optional (they never change an output)."""
    expected = model.state_dict()
    optional = ("num_batches_tracked",)
    missing = [k for k in expected if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in expected and not k.endswith(optional)]
    shapes = [f"{k} {tuple(state[k].shape)} in the file vs {tuple(v.shape)} in the model"
              for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {_few(missing)}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {_few(unexpected)}")
        if shapes:
            problems.append(f"wrong shape: {_few(shapes, 2)}")
        raise TeacherImportError(f"{where}: weights do not fit the architecture ({'; '.join(problems)}){hint}")
    loadable = {k: v.float() if v.is_floating_point() else v for k, v in state.items() if k in expected}
    model.load_state_dict(loadable, strict=False)
    return len(loadable)


def _stem_hint(fmt: str, state: dict[str, torch.Tensor], model_cfg: ModelConfig) -> str:
    conv1 = state.get("conv1.weight")
    if model_cfg.name.startswith("resnet") and conv1 is not None and conv1.ndim == 4 and conv1.shape[-1] == 7:
        return ("; the file has the ImageNet stem (7x7 conv1, max-pool), ssdd's ResNets have the CIFAR stem "
                "(solo-learn uses it for cifar10/cifar100 only)")
    if fmt != "state_dict" and any(k.startswith("fc.") for k in state):
        return "; the file still has a classifier (fc.*), the teacher checkpoints have fc = Identity"
    return ""


# ------------------------------------------------------------------------------------- normalisation


def resolve_normalization(fmt: str, dataset: str, mean: list[float] | None, std: list[float] | None,
                          resolution: int) -> tuple[list[float], list[float], int, str]:
    """(mean, std, resolution, where the statistics come from) for a format and dataset name."""
    if (mean is None) != (std is None):
        raise TeacherImportError("give both --mean and --std (three values each), or neither")
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) != 3:
            raise TeacherImportError(f"{name} needs 3 values (R G B), got {len(values)}")
    if std is not None and min(std) <= 0:
        raise TeacherImportError(f"--std must be positive, got {std}")
    key = dataset.lower()
    if not resolution:
        table = {"krr_st": _KRR_ST_RESOLUTION, "solo_learn": _SOLO_LEARN_RESOLUTION}.get(fmt, {})
        resolution = table.get(key, 32)
    if resolution <= 0:
        raise TeacherImportError(f"--resolution must be positive, got {resolution}")
    if mean is not None and std is not None:
        return list(mean), list(std), resolution, "given (--mean/--std)"
    if not dataset:
        names = {"krr_st": sorted(_KRR_ST_MEAN[32]), "solo_learn": sorted(_SOLO_LEARN_STATS)}.get(fmt)
        choices = f"--dataset ({', '.join(names)}) or " if names else ""
        raise TeacherImportError(f"the normalisation statistics the teacher was trained with are needed: "
                                 f"give {choices}--mean R G B --std R G B")
    if fmt == "krr_st":
        size = resolution
        if size not in _KRR_ST_MEAN:
            raise TeacherImportError(f"KRR-ST lists statistics at 32 and 64 px only, not {size}; give --mean and --std")
        if key not in _KRR_ST_MEAN[size]:
            raise TeacherImportError(f"KRR-ST lists no statistics for '{dataset}' (known: "
                                     f"{', '.join(sorted(_KRR_ST_MEAN[size]))}); give --mean and --std")
        return (list(_KRR_ST_MEAN[size][key]), list(_KRR_ST_STD[size][key]), resolution,
                f"KRR-ST data/augmentation.py MEAN/STD[{size}]['{key}']")
    if fmt == "solo_learn":
        if key not in _SOLO_LEARN_STATS:
            raise TeacherImportError(f"solo-learn lists no statistics for '{dataset}' (known: "
                                     f"{', '.join(sorted(_SOLO_LEARN_STATS))}); give --mean and --std")
        stats = _SOLO_LEARN_STATS[key]
        return (list(stats[0]), list(stats[1]), resolution,
                f"solo-learn solo/data/pretrain_dataloader.py MEANS_N_STD['{key}']")
    raise TeacherImportError("--format state_dict needs the statistics the teacher was trained with: "
                             "--mean R G B --std R G B")


# ------------------------------------------------------------------------------ source architecture


def source_reference(fmt: str, model_cfg: ModelConfig) -> nn.Module | None:
    """The module the source code base itself builds for this checkpoint (None when there is none to compare)."""
    if fmt not in _SOURCE_ARCHITECTURE or model_cfg.name != "resnet18" or (model_cfg.width or 64) != 64:
        return None
    from torchvision.models import resnet18

    model = resnet18()
    model.fc = nn.Identity()
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    model.maxpool = nn.Identity()
    return model.eval()


def _probe_images(count: int, resolution: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, resolution, resolution), dtype=torch.uint8, generator=generator)


# ------------------------------------------------------------------------------------------- import


def _load_probe_data(probe: ProbeData, resolution: int) -> tuple[Any, Any]:
    from ssdd.data import DataError, load_split

    source = probe.source
    if source in ("", "npz", "folder") and probe.path != "digits" and not Path(probe.path).exists():
        raise DataError(f"--probe-data {probe.path}: not found (an .npz in ssdd's NumPy format, or an image folder "
                        f"tree DIR/<split>/<class>/<image>)")
    if not source:
        if probe.path == "digits":
            source = "digits"
        elif probe.path.endswith(".npz"):
            source = "npz"
        elif Path(probe.path).is_dir():
            source = "folder"
        else:
            raise DataError(f"{probe.path}: cannot tell the probe data's format; give --probe-source "
                            f"(npz, folder, torchvision or digits)")
    cfg = DataConfig(source=source, path=probe.path, name=probe.name, train_split=probe.train_split,
                     test_split=probe.test_split, resolution=resolution, subset=probe.train_subset)
    train = load_split(cfg, probe.train_split, seed=probe.seed)
    test = load_split(cfg, probe.test_split, seed=probe.seed).subset(probe.test_subset, probe.seed)
    for split in (train, test):
        split.require_labels("the teacher's linear probe (--probe-data)")
    if train.num_classes != test.num_classes:
        raise DataError(f"{probe.path}: train and test splits have {train.num_classes} and {test.num_classes} "
                        f"classes")
    return train, test


def import_teacher(opts: ImportOptions, log: Any = print) -> Path:
    """Import a checkpoint as an ssdd teacher artifact in opts.out; returns that folder."""
    from ssdd.evaluation.linear_probe import ProbeConfig, extract_features, linear_probe
    from ssdd.run.checks import check_device
    from ssdd.run.runtime import file_sha256, resolve_device, versions
    from ssdd.teacher.artifact import Teacher, load_teacher, save_teacher

    start = time.perf_counter()
    if opts.format not in FORMATS:
        raise TeacherImportError(f"unknown format '{opts.format}' (choose {', '.join(FORMATS)})")
    if opts.save_dtype not in SAVE_DTYPES:
        raise TeacherImportError(f"--save-dtype must be float32 or float16, got '{opts.save_dtype}'")
    if opts.prefix and opts.format != "state_dict":
        raise TeacherImportError("--prefix applies to --format state_dict only")
    path = check_file(opts.path, "checkpoint")
    out = Path(opts.out)
    claim(out, "teacher artifact", opts.overwrite, flag="--overwrite", key="--out")  # only a teacher is replaced
    model_cfg = opts.model
    if opts.format != "state_dict" and model_cfg.name == "resnet18" and not model_cfg.width:
        model_cfg = ModelConfig(name="resnet18", width=64, depth=model_cfg.depth, feature=model_cfg.feature)
    mean, std, resolution, stats_origin = resolve_normalization(opts.format, opts.dataset, opts.mean, opts.std,
                                                                opts.resolution)
    check_device(opts.device, "--device")
    device = resolve_device(opts.device)

    obj, loaded_with = read_checkpoint(path, opts.trust_pickle)
    top_level = sorted(str(k) for k in obj) if isinstance(obj, Mapping) else []
    epoch = obj.get("epoch") if opts.format == "solo_learn" and isinstance(obj, Mapping) else None
    state, ignored = extract_state(obj, opts.format, str(path), opts.prefix)
    check_finite_weights(state, str(path))
    backbone = build_model(model_cfg, resolution)
    loaded = fit_state(backbone, state, str(path), _stem_hint(opts.format, state, model_cfg))
    backbone.eval()
    mean_t, std_t = torch.tensor(mean), torch.tensor(std)

    # the same weights in the source code base's own module must give the same features
    check_images = _probe_images(16, resolution, seed=0)
    features = extract_features(backbone, check_images, mean_t, std_t, device=torch.device("cpu"))
    if not torch.isfinite(features).all():
        raise TeacherImportError(f"{path}: the imported network gives non-finite features (NaN or inf)")
    reference_check: dict[str, Any] | None = None
    reference = source_reference(opts.format, model_cfg)
    if reference is not None:
        reference.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                                  strict=False)
        expected = extract_features(reference, check_images, mean_t, std_t, device=torch.device("cpu"))
        diff = (features - expected).abs().max().item()
        scale = expected.abs().max().item()
        if diff > 1e-4 * max(1.0, scale):
            raise TeacherImportError(f"{path}: ssdd's {model_cfg.name} disagrees with the source architecture "
                                     f"(max |diff| {diff:.3g}); this is a bug, please report it")
        reference_check = {"reference": _SOURCE_ARCHITECTURE[opts.format], "images": int(check_images.shape[0]),
                           "max_abs_diff": diff, "max_abs_feature": scale}

    log(f"imported {opts.format} checkpoint {path.name} ({loaded} tensors, {loaded_with}) as "
        f"{model_cfg.name} (width {model_cfg.width or 'default'}): {backbone.feature_dim}-d features at "
        f"{resolution} px")
    log(f"normalisation: mean {[round(m, 4) for m in mean]}, std {[round(s, 4) for s in std]} ({stats_origin})")
    if ignored:
        log("ignored: " + ", ".join(f"{name}.* ({count} tensors)" for name, count in ignored.items()))
    if reference_check is not None:
        log(f"same features as the source architecture: max |diff| {reference_check['max_abs_diff']:.3g} "
            f"on {reference_check['images']} random images")

    backbone = backbone.to(device)
    probe_result: dict[str, Any] = {"top1": None, "note": "not measured (no --probe-data)"}
    data_fingerprint = None
    feature_info: dict[str, Any] = {"shape": list(features.shape), "inputs": "16 random uint8 images"}
    if opts.probe is not None:
        train_set, test_set = _load_probe_data(opts.probe, resolution)
        probe_start = time.perf_counter()
        with phase(f"features of the {len(train_set) + len(test_set):,} probe images"):
            train_features = extract_features(backbone, train_set.images, mean_t, std_t, device=device)
            test_features = extract_features(backbone, test_set.images, mean_t, std_t, device=device)
        if not (torch.isfinite(train_features).all() and torch.isfinite(test_features).all()):
            raise TeacherImportError(f"{path}: the imported network gives non-finite features on the probe data")
        probe_cfg = ProbeConfig(iterations=opts.probe.iterations)
        with phase(f"linear probe ({probe_cfg.iterations:,} iterations)"):
            probe = linear_probe(train_features, train_set.labels, test_features, test_set.labels,
                                 train_set.num_classes, probe_cfg, seed=opts.probe.seed)
        probe_s = time.perf_counter() - probe_start
        probe_result = {"top1": probe["test_top1"], "train_top1": probe["train_top1"], "dataset": test_set.name,
                        "split": test_set.split, "train_images": len(train_set), "test_images": len(test_set),
                        "seconds": probe_s,
                        "method": f"SGD on frozen standardised features, {probe_cfg.iterations} iterations"}
        feature_info = {"shape": list(test_features.shape), "inputs": f"{test_set.name}[{test_set.split}]",
                        "mean": test_features.mean().item(), "std": test_features.std().item()}
        data_fingerprint = train_set.fingerprint()
        log(f"features: {tuple(test_features.shape)} on {test_set.name}[{test_set.split}] "
            f"(mean {feature_info['mean']:.4g}, std {feature_info['std']:.4g})")
        log(f"linear probe on {test_set.name}[{test_set.split}]: top-1 {probe['test_top1']:.2f}% "
            f"(train {probe['train_top1']:.2f}%, {len(train_set)} train / {len(test_set)} test images, "
            f"{probe_cfg.iterations} iterations, {probe_s:.1f} s)")
    else:
        log(f"features: {tuple(features.shape)} on 16 random images (give --probe-data for a linear probe)")

    manifest: dict[str, Any] = {
        "model": describe(model_cfg),
        "feature_dim": backbone.feature_dim,
        "resolution": resolution,
        "normalization": {"mean": mean, "std": std, "origin": stats_origin},
        "epochs": epoch if isinstance(epoch, int) else None,
        "linear_probe": probe_result,
        "features": feature_info,
        "origin": {
            "format": opts.format,
            "file": path.name,
            "sha256": file_sha256(path),
            "bytes": path.stat().st_size,
            "dataset": opts.dataset or None,
            "loaded_with": loaded_with,
            "top_level_keys": top_level[:20] if opts.format == "solo_learn" else None,
            "tensors_imported": loaded,
            "ignored": ignored,
            "source_architecture_check": reference_check,
        },
        "data_fingerprint": data_fingerprint,
        "wall_clock_s": time.perf_counter() - start,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "versions": versions(),
    }
    earlier = set(out.glob("backbone-*.safetensors"))  # the shards of a teacher that --overwrite replaces
    saved = save_teacher(out, backbone.cpu(), manifest, dtype=SAVE_DTYPES[opts.save_dtype])
    for stale in earlier - {saved / s["file"] for s in json.loads((saved / "manifest.json").read_text())["shards"]}:
        stale.unlink(missing_ok=True)  # none of the replaced teacher's weights stay beside the new one

    # the artifact on disk must give the features the imported network gave
    teacher: Teacher = load_teacher(out, "cpu")
    again = teacher.encode(check_images)
    tolerance = 0.0 if opts.save_dtype == "float32" else 1e-2 * max(1.0, features.abs().max().item())
    diff = (again - features).abs().max().item()
    if diff > tolerance + 1e-6 * max(1.0, features.abs().max().item()):
        raise TeacherImportError(f"{out}: the saved teacher's features differ from the imported network's "
                                 f"(max |diff| {diff:.3g})")
    log(f"teacher saved to {out} (reloaded with load_teacher: max |diff| {diff:.3g})")
    return out


# ---------------------------------------------------------------------------------------------- CLI


def options_from_args(args: argparse.Namespace) -> ImportOptions:
    if args.probe_iterations <= 0:
        raise TeacherImportError(f"--probe-iterations must be a positive number, got {args.probe_iterations}")
    for which, value in zip(("TRAIN", "TEST"), args.probe_subset, strict=True):
        if value < 0:
            raise TeacherImportError(f"--probe-subset {which} must be a positive number or 0 (all), got {value}")
    probe = None
    if args.probe_data is not None:
        probe = ProbeData(path=args.probe_data, source=args.probe_source, name=args.probe_name,
                          train_split=args.probe_splits[0], test_split=args.probe_splits[1],
                          train_subset=args.probe_subset[0], test_subset=args.probe_subset[1],
                          iterations=args.probe_iterations)
    elif args.probe_source or args.probe_name:
        raise TeacherImportError("--probe-source/--probe-name need --probe-data")
    for flag, value in (("--width", args.width), ("--depth", args.depth), ("--resolution", args.resolution)):
        if value is not None and value <= 0:
            raise TeacherImportError(f"{flag} must be a positive number, got {value} (leave it out for the default)")
    return ImportOptions(path=args.path, format=args.format, out=args.out,
                         model=ModelConfig(name=args.model, width=args.width or 0, depth=args.depth or 0,
                                           feature=args.feature),
                         dataset=args.dataset, mean=args.mean, std=args.std, resolution=args.resolution or 0,
                         prefix=args.prefix, trust_pickle=args.trust_pickle, probe=probe, device=args.device,
                         save_dtype=args.save_dtype, overwrite=args.overwrite)
