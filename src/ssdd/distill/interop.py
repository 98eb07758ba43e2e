"""Distilled sets in and out of ssdd: `ssdd import-distilled` and `ssdd export`.

Import turns a set made elsewhere into an ordinary distilled artifact of method `imported` (images + targets,
or images + labels), which the storage accountant counts and `ssdd evaluate` scores like any other set:

- KRR-ST's official files `x_syn.pt` / `y_syn.pt` (github.com/db-Lee/selfsup_dd). What that code writes
  (`utils.Logger.save_objects`: `torch.save(tensor, f"{name}.pt")`, from `train.py`):
  * x_syn: one float32 tensor (N, 3, H, W), a leaf with requires_grad saved from the GPU, in the network's
    *normalised* input space: `algorithms/distill.py`, `algorithms/pretrain_krr_st.py` and `model_pool.py`
    feed x_syn to the networks as it is, while every real image passes `K.Normalize(MEAN[size][data],
    STD[size][data])` (`data/augmentation.py`, values copied below). N x H: cifar100 1000 x 32, tinyimagenet
    2000 x 64, imagenet (64 x 64) 1000 x 64, imagenette 10 x 224.
  * y_syn: float32 (N, d), the learned target representations, initialised to the teacher's: a CIFAR-stem
    ResNet-18 with fc = Identity (d = 512, `teacher_ckpt/barlow_twins_resnet18_<data>.pt`), a ResNet-50 for
    imagenette (d = 2048). The baselines shipped in the same layout (random, kmeans, dsa, dm, mtt) hold int64
    class labels (N,) instead (`test.py`).
  Import maps the images back to [0, 1] (x * std + mean, not clamped) and records that mean/std as the set's
  normalisation, so the networks `ssdd evaluate` pre-trains see exactly x_syn.
- A folder of PNG/JPG images (sorted by file name) with a targets `.npy` (N x d float; or N int labels): `--targets`,
  else the folder's own targets.npy or labels.npy (what `ssdd export` writes), else `--teacher` computes the
  targets (stored and counted like the random subset's); `--targets teacher` has the teacher compute them even
  where the folder holds a file.

The manifest's `origin` records the format, every source file with its SHA-256, and where the targets and
the normalisation came from. `teacher` is the artifact the user named with `--teacher` (target dimension and
resolution checked, so `ssdd evaluate` applies its usual fingerprint check), or unknown: evaluate then scores
the set and says in one line that nothing ties its targets to the evaluation teacher (`evaluation_note`).

Export writes every stored view of any artifact (Boost's rebuilt views included) as PNG, `targets.npy` /
`labels.npy` and `index.json`.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssdd.artifacts.files import read_manifest
from ssdd.artifacts.storage import storage_of
from ssdd.artifacts.torchfile import load_torch_file
from ssdd.data.published_stats import KRR_ST_MEAN, KRR_ST_STD
from ssdd.distill.artifact import DistilledSet, load_distilled, save_distilled
from ssdd.distill.registry import DistillContext, DistillMethod, DistillResult, register_method
from ssdd.run.folder import claim_output
from ssdd.run.runtime import file_sha256, versions, write_json

METHOD = "imported"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FOLDER_TARGETS = ("targets.npy", "labels.npy")  # what `ssdd export` writes beside the PNGs
TEACHER_TARGETS = "teacher"  # --targets teacher: the teacher's representations, whatever the folder holds
EXPORT_KIND = "ssdd.export"

# classes of KRR-ST's source datasets (its NUM_CLASSES), for sets whose y_syn holds labels
KRR_ST_CLASSES = {"svhn": 10, "cifar10": 10, "cifar100": 100, "tinyimagenet": 200, "imagenet": 1000, "imagenette": 10}
# train-split sizes of the sources KRR-ST distils, for the compression ratio in evaluation reports
SOURCE_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "tinyimagenet": 100_000}


class InteropError(ValueError):
    """Input that import-distilled or export cannot use (shape, dtype, count, unsafe pickle)."""


# --- the `imported` method: only rebuilds training pairs ------------------------------------------------------

def _not_distillable(ctx: DistillContext) -> DistillResult:
    raise ValueError("method 'imported' is written by `ssdd import-distilled`, not by `ssdd distill`")


def reconstruct_imported(stored: dict[str, torch.Tensor], manifest: dict[str, Any]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(images in [0,1] float32, targets float32 or labels int64); uint8 images are exact pixels."""
    images = stored["images"]
    images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if "labels" in stored:
        return images, stored["labels"].long()
    return images, stored["targets"].float()


register_method(DistillMethod(METHOD, _not_distillable, reconstruct_imported, written_by="`ssdd import-distilled`"))


def evaluation_note(manifest: dict[str, Any]) -> str | None:
    """One line for `ssdd evaluate` about an imported set whose targets no known teacher vouches for; None for
    every other set (those get the usual teacher-fingerprint check)."""
    origin = manifest.get("origin")
    if not origin or (manifest.get("teacher") or {}).get("fingerprint"):
        return None
    if origin.get("targets") == "labels":
        return (f"imported set ({origin.get('format')}) holds class labels: no teacher is involved; it is "
                f"pre-trained with cross-entropy")
    return (f"imported set ({origin.get('format')}) has targets from an unknown teacher "
            f"(d = {origin.get('target_dim')}): scored as given, nothing ties them to the evaluation teacher "
            f"(import it with --teacher DIR to have that checked)")


def _same_dataset(a: str, b: str) -> bool:
    def key(name: str) -> str:
        return name.strip().lower().replace("-", "_")

    return key(a) == key(b)


def declared_source_mismatch(path: str | Path, manifest: dict[str, Any], source_cfg: Any) -> str | None:
    """For an imported set that declares the dataset it was distilled from (--dataset, or guessed from its path):
    a sentence naming both when that is not the evaluation's source (`source_cfg`, a DataConfig); None otherwise.
    `ssdd evaluate` refuses the set on it unless --allow-mismatch."""
    from ssdd.data.loaders import dataset_name, source_description

    if manifest.get("origin") is None:
        return None
    declared = (manifest.get("source") or {}).get("name")
    evaluation = dataset_name(source_cfg)
    if not declared or _same_dataset(str(declared), evaluation):
        return None
    where = source_description(source_cfg)
    evaluated = evaluation if where == evaluation else f"{evaluation} ({where})"
    return (f"{path} was imported as distilled from {declared}, not from the evaluation source {evaluated}: rows "
            f"would not be comparable; pass source.path=<its source> (source.name={declared} if the source is "
            f"that dataset under another file name)")


def compression_source_images(manifest: dict[str, Any], evaluation_images: int, source_cfg: Any) -> int | None:
    """The source images a set's compression ratio divides (None when unknown). A distilled set: what its
    distillation read, as its manifest records. An imported set: None when its declared source is not the
    evaluation's (`source_cfg`, a DataConfig; scored under --allow-mismatch, neither size describes what it was
    distilled from); else the evaluation source's size (`evaluation_images`, 0 when the evaluation did not read its
    train split), else its declared count."""
    from ssdd.data.loaders import dataset_name

    source = manifest.get("source") or {}
    if manifest.get("origin") is None:
        return source.get("images") or evaluation_images or None
    declared = source.get("name")
    if declared and not _same_dataset(str(declared), dataset_name(source_cfg)):
        return None
    if evaluation_images:
        return evaluation_images
    if declared and source.get("images"):
        return int(source["images"])
    return None


# --- reading inputs -----------------------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_tensor_file(path: str | Path) -> torch.Tensor:
    """One tensor saved with torch.save, loaded with weights_only=True (never arbitrary unpickling)."""
    value = load_torch_file(path, "torch.save file", refusal_hint="; ssdd reads only plain tensors saved with "
                                                                   "torch.save(tensor, path)", error=InteropError)
    if not isinstance(value, torch.Tensor):
        raise InteropError(f"{path}: expected one tensor (torch.save(tensor, path)), found {type(value).__name__}")
    return value.detach().cpu()


def load_npy(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    try:
        value = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InteropError(f"{path}: not a plain numeric .npy array ({_first_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise InteropError(f"{path}: not a readable .npy file ({_first_line(exc)})") from None
    if not isinstance(value, np.ndarray):
        value.close()
        raise InteropError(f"{path}: expected one array (.npy, written by numpy.save), found a zip archive (an .npz, "
                           f"or a torch .pt file: numpy.save(path, tensor.numpy()) writes the .npy)")
    if value.dtype.kind not in "biuf":
        raise InteropError(f"{path}: expected numbers, found dtype {value.dtype}")
    return value


def read_image_folder(folder: str | Path) -> tuple[torch.Tensor, list[Path]]:
    """Every PNG/JPG file directly in `folder`, sorted by name, as uint8 RGB (N, 3, H, W)."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not found (expected a folder of PNG/JPG images)")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.name)
    if not files:
        raise InteropError(f"{folder}: no PNG or JPG images in this folder")
    arrays: list[np.ndarray] = []
    for file in files:
        try:
            with Image.open(file) as image:
                array = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise InteropError(f"{file}: not a readable image ({_first_line(exc)})") from None
        if arrays and array.shape != arrays[0].shape:
            raise InteropError(f"{file}: {array.shape[1]}x{array.shape[0]} px, but {files[0].name} is "
                               f"{arrays[0].shape[1]}x{arrays[0].shape[0]} px (all images must have one size)")
        arrays.append(array)
    if arrays[0].shape[0] != arrays[0].shape[1]:
        raise InteropError(f"{folder}: images are {arrays[0].shape[1]}x{arrays[0].shape[0]} px; ssdd sets are square")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), files


def _check_images(x: torch.Tensor, where: str) -> None:
    if not x.is_floating_point():
        raise InteropError(f"{where}: expected float images, found dtype {str(x.dtype).replace('torch.', '')}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise InteropError(f"{where}: expected images of shape (N, 3, H, W), found {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[2] != x.shape[3]:
        raise InteropError(f"{where}: expected N > 0 square images, found {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise InteropError(f"{where}: images hold NaN or infinite values")


def _targets(y: torch.Tensor, n: int, where: str, images_where: str) -> tuple[str, torch.Tensor]:
    """('targets', float32 (N, d)) or ('labels', int64 (N,)), checked against the N images."""
    if y.ndim == 2 and y.dtype != torch.bool:
        kind, value = "targets", y.float()
    elif y.ndim == 1 and (not y.is_floating_point() or bool((y == y.round()).all())) and y.dtype != torch.bool:
        kind, value = "labels", y.long()
    else:
        raise InteropError(f"{where}: expected targets (N, d) or integer labels (N,), found shape {tuple(y.shape)} "
                           f"dtype {str(y.dtype).replace('torch.', '')}")
    if kind == "labels":
        _check_label_range(y, where)
    if value.shape[0] != n:
        raise InteropError(f"{where} holds {value.shape[0]} rows but {images_where} holds {n} images")
    if kind == "targets" and (value.shape[1] == 0 or not torch.isfinite(value).all()):
        raise InteropError(f"{where}: targets must have d > 0 finite values per row")
    return kind, value


def _check_label_range(labels: torch.Tensor, where: str) -> None:
    """Labels from 0 up to int64's range, judged on the values as stored (before any conversion could wrap a
    uint64 or a huge float), and reported with those values."""
    if labels.numel() == 0:
        return
    values = labels.numpy()
    low, high = values.min().item(), values.max().item()  # Python ints (any size) or floats: the true values
    if low < 0:
        raise InteropError(f"{where}: labels must be >= 0, found {low:g}" if isinstance(low, float)
                           else f"{where}: labels must be >= 0, found {low}")
    if high > torch.iinfo(torch.int64).max:
        shown = f"{high:g}" if isinstance(high, float) else str(high)
        raise InteropError(f"{where}: labels go up to {shown}, beyond any number of classes (int64)")


def _stats(values: tuple[float, ...] | list[float] | None, name: str) -> list[float] | None:
    if values is None:
        return None
    values = [float(v) for v in values]
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InteropError(f"--{name} needs 3 finite numbers (one per channel), got {values}")
    if name == "std" and min(values) <= 0:
        raise InteropError(f"--std values must be positive, got {values}")
    return values


def _explicit_stats(mean: Any, std: Any) -> tuple[list[float], list[float]] | None:
    mean, std = _stats(mean, "mean"), _stats(std, "std")
    if (mean is None) != (std is None):
        raise InteropError("give --mean and --std together (3 numbers each, one per channel, in [0, 1] pixel units), "
                           "or neither")
    return (mean, std) if mean is not None and std is not None else None


def krr_st_stats(dataset: str, size: int) -> tuple[list[float], list[float]]:
    """KRR-ST's normalisation mean/std for `dataset` at `size` px (its data/augmentation.py)."""
    table = KRR_ST_MEAN.get(size, {})
    if dataset not in table:
        known = ", ".join(f"{s} px: {'/'.join(sorted(KRR_ST_MEAN[s]))}" for s in sorted(KRR_ST_MEAN))
        raise InteropError(f"KRR-ST's code has no mean/std for '{dataset}' at {size} px ({known}); "
                           f"pass --mean and --std")
    return list(table[dataset]), list(KRR_ST_STD[size][dataset])


def guess_dataset(path: Path) -> str | None:
    """The dataset named by a folder above `path` (KRR-ST's layout: synthetic_data/<dataset>/<method>/x_syn.pt)."""
    known = {name for table in KRR_ST_MEAN.values() for name in table}
    for parent in path.resolve().parents:
        if parent.name.lower() in known:
            return parent.name.lower()
    return None


def _teacher_info(teacher: str | Path | None, target_dim: int | None, resolution: int) -> dict[str, Any]:
    """The teacher the user named (target dimension and resolution checked) or an unknown one."""
    if teacher is None:
        return {"path": None, "fingerprint": None, "feature_dim": None, "known": False}
    manifest = read_manifest(teacher, "ssdd.teacher")
    feature_dim, teacher_resolution = manifest.get("feature_dim"), manifest.get("resolution")
    if target_dim is not None and feature_dim != target_dim:
        raise InteropError(f"the targets have d = {target_dim} but teacher {teacher} has feature_dim {feature_dim}: "
                           f"they cannot come from it")
    if teacher_resolution != resolution:
        raise InteropError(f"the images are {resolution} px but teacher {teacher} is {teacher_resolution} px")
    return {"path": str(teacher), "fingerprint": manifest.get("fingerprint"), "feature_dim": feature_dim,
            "known": True, "linear_probe_top1": (manifest.get("linear_probe") or {}).get("top1")}


def _file_entry(path: Path, role: str) -> dict[str, Any]:
    """A source file by name and content (never its absolute path: the manifest says nothing of the machine)."""
    return {"role": role, "file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


# --- import -------------------------------------------------------------------------------------------------

def _check_out(out: Path, budget: float | None, source_images: int | None, num_classes: int | None) -> None:
    """Refuse, before anything is read or written, an --out that holds something (another run's folder, a set
    already there) and numbers that make no set."""
    from ssdd.run.folder import claim

    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    claim(out, "distill", flag=None, key="--out")  # never another run's folder, never a set already there
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise InteropError(f"--budget must be a positive number of image-equivalents, got {budget}")
    for flag, count in (("--source-images", source_images), ("--num-classes", num_classes)):
        if count is not None and count <= 0:
            raise InteropError(f"{flag} must be a positive number, got {count}")


def _save_import(out: Path, stored: dict[str, torch.Tensor], *, name: str, fmt: str, files: list[dict[str, Any]],
                 targets_from: str, normalization: tuple[list[float], list[float]], normalization_from: str,
                 teacher: dict[str, Any], dataset: str | None, source_images: int | None, budget: float | None,
                 count_targets: bool, num_classes: int | None) -> DistilledSet:
    image_shape = tuple(int(s) for s in stored["images"].shape[1:])
    counted = stored if count_targets else {k: v for k, v in stored.items() if k != "targets"}
    occupied = storage_of(counted, image_shape).image_equivalents  # type: ignore[arg-type]
    if budget is None:  # the budget the set occupies, rounded up to 1/100 image-equivalent
        budget = math.ceil(occupied * 100 - 1e-6) / 100
    source: dict[str, Any] = {"name": dataset}
    images_in_source = source_images if source_images is not None else SOURCE_IMAGES.get(dataset or "")
    if images_in_source is not None:
        source["images"] = int(images_in_source)
    target_dim = int(stored["targets"].shape[1]) if "targets" in stored else None
    manifest: dict[str, Any] = {
        "name": name,
        "teacher": teacher,
        "normalization": {"mean": normalization[0], "std": normalization[1]},
        "source": source,
        "m": int(stored["images"].shape[0]),
        "origin": {"format": fmt, "files": files, "targets": targets_from, "target_dim": target_dim,
                   "normalization_from": normalization_from,
                   "teacher": "named with --teacher" if teacher.get("known") else "unknown"},
        "wall_clock_s": None,
        "device": None,
        "versions": versions(),
    }
    if num_classes is not None:
        manifest["num_classes"] = num_classes
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return save_distilled(out, METHOD, stored, image_shape, budget, count_targets, manifest)  # type: ignore[arg-type]
    except BaseException:
        if created:  # a refused set leaves no empty folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _num_classes(labels: torch.Tensor, given: int | None, dataset: str | None, where: str) -> int:
    needed = int(labels.max()) + 1
    count = given if given is not None else KRR_ST_CLASSES.get(dataset or "", needed)
    if count < needed:
        raise InteropError(f"{where}: labels go up to {needed - 1} but there are {count} classes (--num-classes)")
    return count


def import_krr_st(x_path: str | Path, out: str | Path, y_path: str | Path | None = None, *,
                  dataset: str | None = None, mean: Any = None, std: Any = None, teacher: str | Path | None = None,
                  budget: float | None = None, count_targets: bool = True, name: str | None = None,
                  source_images: int | None = None, num_classes: int | None = None) -> DistilledSet:
    """KRR-ST's x_syn.pt (normalised images) + y_syn.pt (targets or labels) -> an `imported` artifact."""
    x_path, out = Path(x_path), Path(out)
    y_path = Path(y_path) if y_path is not None else x_path.with_name("y_syn.pt")
    _check_out(out, budget, source_images, num_classes)
    x = load_tensor_file(x_path)
    y = load_tensor_file(y_path)
    _check_images(x, str(x_path))
    kind, y = _targets(y, x.shape[0], str(y_path), str(x_path))
    size = int(x.shape[-1])
    if kind == "labels" and teacher is not None:
        raise InteropError(f"{y_path} holds class labels: they come from no teacher, drop --teacher")
    # the teacher first: a resolution that does not match it says more than a missing statistics table
    teacher_info = _teacher_info(teacher, int(y.shape[1]) if kind == "targets" else None, size)
    dataset = dataset.lower() if dataset else guess_dataset(x_path)
    explicit = _explicit_stats(mean, std)
    if explicit is not None:
        stats, stats_from = explicit, "--mean/--std"
    elif dataset is not None:
        stats, stats_from = krr_st_stats(dataset, size), f"KRR-ST's data/augmentation.py ({dataset}, {size} px)"
    else:
        raise InteropError(f"cannot tell which dataset {x_path} was normalised for: pass --dataset "
                           f"(one of {', '.join(sorted(KRR_ST_MEAN[32]))}, ...) or --mean and --std")
    mean_t, std_t = torch.tensor(stats[0]).view(1, 3, 1, 1), torch.tensor(stats[1]).view(1, 3, 1, 1)
    images = (x.float() * std_t + mean_t).contiguous()  # [0, 1] units; not clamped (learned images may leave it)
    stored = {"images": images, kind: y}
    classes = _num_classes(y, num_classes, dataset, str(y_path)) if kind == "labels" else None
    files = [_file_entry(x_path, "x_syn"), _file_entry(y_path, "y_syn")]
    return _save_import(out, stored, name=name or f"imported_{x_path.resolve().parent.name}", fmt="krr_st",
                        files=files, targets_from="labels" if kind == "labels" else "y_syn",
                        normalization=stats, normalization_from=stats_from, teacher=teacher_info, dataset=dataset,
                        source_images=source_images, budget=budget, count_targets=count_targets, num_classes=classes)


def _export_index(folder: Path) -> dict[str, Any] | None:
    """The index.json of a folder `ssdd export` wrote, or None."""
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return index if isinstance(index, dict) and index.get("kind") == EXPORT_KIND else None


def _export_teacher_fingerprint(folder: Path) -> str | None:
    """The fingerprint of the teacher whose representations an export's targets are (None: not an export, or
    none recorded)."""
    index = _export_index(folder)
    teacher = (index or {}).get("teacher")
    return teacher.get("fingerprint") if isinstance(teacher, dict) else None


def default_import_name(folder: Path) -> str:
    """The label name of an imported image folder without --name: `imported_<folder>`, or for a folder written by
    `ssdd export` `<the exported set's name>-imported`, so that it never takes the original's label."""
    index = _export_index(folder)
    if index is not None:
        original = index.get("name") or index.get("method")
        if isinstance(original, str) and original:
            return f"{original}-imported"
    return f"imported_{folder.resolve().name}"


def folder_targets(folder: Path) -> Path | None:
    """The targets.npy or labels.npy that an image folder holds beside its images (an `ssdd export` folder), or
    None; a folder holding both is refused (which one is meant cannot be told)."""
    found = [folder / name for name in FOLDER_TARGETS if (folder / name).is_file()]
    if len(found) > 1:
        raise InteropError(f"{folder} holds both {' and '.join(FOLDER_TARGETS)}: pass --targets with the one to use "
                           f"(or --targets {TEACHER_TARGETS} for the teacher's representations)")
    return found[0] if found else None


def _targets_file(folder: Path, targets: str | Path | None, teacher: str | Path | None) -> Path | None:
    """The targets file an image folder import reads (None: the teacher computes the targets): `targets`, else the
    folder's own (folder_targets), else None; `targets` = TEACHER_TARGETS asks for the teacher's even then."""
    if targets is None:
        return folder_targets(folder)
    if str(targets) != TEACHER_TARGETS:
        return Path(targets)
    if teacher is None:
        raise InteropError(f"--targets {TEACHER_TARGETS} computes the targets with a teacher: pass --teacher DIR")
    return None


def import_image_folder(folder: str | Path, out: str | Path, targets: str | Path | None = None, *,
                        dataset: str | None = None, mean: Any = None, std: Any = None,
                        teacher: str | Path | None = None, budget: float | None = None, count_targets: bool = True,
                        name: str | None = None, source_images: int | None = None, num_classes: int | None = None,
                        device: str = "cpu") -> DistilledSet:
    """PNG/JPG images (sorted by name) + a targets .npy (`targets`, else the folder's own targets.npy or
    labels.npy), or + the named teacher's representations of them (no file, or `targets` = TEACHER_TARGETS)."""
    from ssdd.data import channel_stats

    folder, out = Path(folder), Path(out)
    _check_out(out, budget, source_images, num_classes)
    images, image_files = read_image_folder(folder)
    size = int(images.shape[-1])
    dataset = dataset.lower() if dataset else None
    files = [_file_entry(f, "image") for f in image_files]
    targets_path = _targets_file(folder, targets, teacher)
    if targets_path is not None:
        array = load_npy(targets_path)
        kind, values = _targets(torch.from_numpy(np.ascontiguousarray(array)), images.shape[0], str(targets_path),
                                str(folder))
        if kind == "labels" and teacher is not None:
            raise InteropError(f"{targets_path} holds class labels: they come from no teacher, drop --teacher (or "
                               f"pass --targets {TEACHER_TARGETS} to store the teacher's representations instead)")
        teacher_info = _teacher_info(teacher, int(values.shape[1]) if kind == "targets" else None, size)
        exported_by = _export_teacher_fingerprint(folder) if targets is None else None
        if teacher_info.get("fingerprint") and exported_by and exported_by != teacher_info["fingerprint"]:
            raise InteropError(f"{folder} is an export whose targets are the representations of teacher "
                               f"{exported_by}, not of --teacher {teacher} ({teacher_info['fingerprint']}): pass that "
                               f"teacher, or --targets {TEACHER_TARGETS} to compute this one's")
        files.append(_file_entry(targets_path, "targets" if kind == "targets" else "labels"))
        targets_from = "labels" if kind == "labels" else "npy"
    elif teacher is None:
        raise InteropError(f"{folder}: images without targets need --targets FILE.npy or --teacher DIR (ssdd "
                           f"pre-trains by regressing targets: the teacher's representations of the images)")
    else:
        from ssdd.run.runtime import resolve_device
        from ssdd.teacher import load_teacher

        teacher_info = _teacher_info(teacher, None, size)
        encoder = load_teacher(teacher, resolve_device(device))
        kind, values = "targets", encoder.encode(images.to(encoder.mean.device)).float().cpu()
        teacher_info["feature_dim"] = int(values.shape[1])
        targets_from = "teacher at import"
    explicit = _explicit_stats(mean, std)
    if explicit is not None:
        stats, stats_from = explicit, "--mean/--std"
    elif teacher_info.get("known"):
        teacher_manifest = read_manifest(teacher, "ssdd.teacher")  # type: ignore[arg-type]
        norm = teacher_manifest["normalization"]
        stats, stats_from = (list(norm["mean"]), list(norm["std"])), "teacher"
    elif dataset is not None:
        stats, stats_from = krr_st_stats(dataset, size), f"KRR-ST's data/augmentation.py ({dataset}, {size} px)"
    else:
        stats, stats_from = channel_stats(images), "the imported images' own channel statistics"
    stored = {"images": images, kind: values}
    classes = _num_classes(values, num_classes, dataset, str(targets_path)) if kind == "labels" else None
    return _save_import(out, stored, name=name or default_import_name(folder), fmt="image_folder",
                        files=files, targets_from=targets_from, normalization=stats, normalization_from=stats_from,
                        teacher=teacher_info, dataset=dataset, source_images=source_images, budget=budget,
                        count_targets=count_targets, num_classes=classes)


def detect_format(source: str | Path) -> str:
    """'krr_st' for an x_syn .pt file or a folder holding x_syn.pt, 'images' for any other folder."""
    source = Path(source)
    if source.is_file():
        if source.suffix in (".pt", ".pth"):
            return "krr_st"
        raise InteropError(f"{source}: expected KRR-ST's x_syn.pt, a folder holding x_syn.pt and y_syn.pt, "
                           f"or a folder of images")
    if not source.exists():
        raise FileNotFoundError(f"{source}: not found")
    return "krr_st" if (source / "x_syn.pt").is_file() else "images"


def import_distilled(source: str | Path, out: str | Path, fmt: str = "auto", **options: Any) -> DistilledSet:
    """Import KRR-ST's files or an image folder (see import_krr_st / import_image_folder for the options)."""
    source = Path(source)
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt == "krr_st":
        if options.pop("targets", None) is not None:
            raise InteropError("--targets is for image folders; KRR-ST's targets are y_syn.pt (--y-syn)")
        options.pop("device", None)
        x_path = source / "x_syn.pt" if source.is_dir() else source
        return import_krr_st(x_path, out, options.pop("y_path", None), **options)
    if fmt == "images":
        if options.pop("y_path", None) is not None:
            raise InteropError("--y-syn is for KRR-ST's files; an image folder takes --targets FILE.npy")
        return import_image_folder(source, out, options.pop("targets", None), **options)
    raise InteropError(f"unknown import format '{fmt}' (auto, krr_st, images)")


# --- export -------------------------------------------------------------------------------------------------

def _view_names(manifest: dict[str, Any], views: int) -> list[str]:
    names = list((manifest.get("boost") or {}).get("views") or [])
    if len(names) == views:
        return [str(n) for n in names]
    return ["identity"] if views == 1 else [f"view{k}" for k in range(views)]


def export_distilled(directory: str | Path, out: str | Path) -> dict[str, Any]:
    """Write every stored view of the artifact at `directory` as PNG (uint8 after clamping to [0,1]) into `out`,
    with targets.npy (float32) or labels.npy (int64) and index.json; returns the index."""
    from PIL import Image

    directory, out = Path(directory), Path(out)
    distilled = load_distilled(directory)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: a file, not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not an empty folder; choose another --out")
    claim_output(out)  # never inside an artifact (the set exported included)
    manifest = distilled.manifest
    images, targets = distilled.training_pairs()
    images = images.detach().float().cpu()
    total = int(images.shape[0])
    m = int(manifest.get("m") or total)
    if m <= 0 or total % m:
        m = total
    views = _view_names(manifest, total // m)
    clamped = images.clamp(0.0, 1.0)
    pixels = (clamped * 255.0).round().to(torch.uint8)
    error_in_range = float(((pixels.float() / 255.0) - clamped).abs().max()) if total else 0.0
    clipped = int((images != clamped).sum())
    width = max(5, len(str(total - 1)))
    out.mkdir(parents=True, exist_ok=True)
    source_indices = manifest.get("source_indices")
    entries = []
    for row in range(total):
        view, image = divmod(row, m)
        file = f"{row:0{width}d}_{views[view]}.png"  # the row first, so sorted names follow the target rows
        Image.fromarray(pixels[row].permute(1, 2, 0).numpy()).save(out / file)
        entry: dict[str, Any] = {"file": file, "image_index": image, "view": views[view], "target_row": row}
        if isinstance(source_indices, list) and len(source_indices) == m:
            entry["source_index"] = int(source_indices[image])
        entries.append(entry)
    if targets.is_floating_point():
        values_file, values = "targets.npy", targets.detach().float().cpu().numpy().astype(np.float32)
    else:
        values_file, values = "labels.npy", targets.detach().cpu().numpy().astype(np.int64)
    np.save(out / values_file, values)
    label = f"{manifest.get('name') or distilled.method}@{manifest['budget']:g}"
    index: dict[str, Any] = {
        "kind": EXPORT_KIND, "format_version": 1, "artifact": str(directory), "method": distilled.method,
        "name": manifest.get("name") or "", "label": label, "budget": manifest["budget"],
        "budget_counts": manifest.get("budget_counts"), "storage": manifest.get("storage"),
        "image_shape": list(distilled.image_shape), "m": m, "views": views, "entries": entries,
        ("targets" if values_file == "targets.npy" else "labels"): {
            "file": values_file, "shape": list(values.shape), "dtype": str(values.dtype),
            **({"num_classes": manifest.get("num_classes")} if values_file == "labels.npy" else {})},
        "normalization": manifest.get("normalization"), "teacher": manifest.get("teacher"),
        "png": {"dtype": "uint8", "quantization": "PNG stores 8-bit pixels: each float value was clamped to [0, 1] "
                "and rounded to the nearest multiple of 1/255, so the PNGs are not the exact float images "
                "(error at most 0.5/255 inside [0, 1]; values outside [0, 1] are clipped)",
                "max_abs_error_in_range": error_in_range, "clipped_values": clipped,
                "values": int(images.numel())},
        "note": "one PNG per stored view (Boost's views rebuilt from what it stores), targets row i = entry i; "
                "storage is the artifact's, as counted by ssdd.artifacts.storage.storage_of, not the size of this "
                "folder",
    }
    write_json(out / "index.json", index)
    return index


def _values_origin(origin: dict[str, Any]) -> str:
    """`, targets from FILE` (or labels), `, targets computed by the teacher`, or "" (KRR-ST's y_syn)."""
    if origin["targets"] == "teacher at import":
        return ", targets computed by the teacher"
    read = [f["file"] for f in origin["files"] if f["role"] in ("targets", "labels")]
    kind = "labels" if origin["targets"] == "labels" else "targets"
    return f", {kind} from {read[0]}" if read else ""


def import_summary(distilled: DistilledSet, out: str | Path) -> str:
    """The lines `ssdd import-distilled` prints: storage by tensor, the budget it occupies, the teacher."""
    manifest, report = distilled.manifest, distilled.storage()
    split = ", ".join(f"{t.name} {t.image_equivalents:.2f}" for t in report.tensors)
    teacher = manifest["teacher"]
    if teacher.get("known"):
        said = f"teacher {teacher['path']} (fingerprint {teacher['fingerprint']})"
    elif manifest["origin"]["targets"] == "labels":
        said = "class labels, no teacher"
    else:
        said = "targets from an unknown teacher (ssdd evaluate will say so)"
    said += _values_origin(manifest["origin"])
    return (f"{manifest.get('name')}: {report.image_equivalents:.2f} image-equivalents ({split}; "
            f"{report.bytes / 1024:.1f} KiB) for a budget of {manifest['budget']:g} "
            f"({manifest['budget_counts']}); m = {manifest['m']}, {said}; saved to {out}")
