"""Loaders: the project's NumPy format, torchvision datasets, ImageFolder trees, scikit-learn digits.

All of them return an ImageDataset (uint8 (N,3,R,R) images resized to the configured resolution).
`load_split(cfg, split)` is the single entry point the rest of the package uses.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from ssdd.config import PATHLESS_SOURCES, DataConfig, dataset_name
from ssdd.data.dataset import (
    DataError,
    ImageDataset,
    check_arrays,
    check_label_array,
    check_no_empty_class,
    pil_to_uint8,
    resize_uint8,
    to_nchw_uint8,
)
from ssdd.run.progress import bar, phase

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


# ----------------------------------------------------------------------------- NumPy format
def missing_npz(path: Path, key: str = "data") -> DataError:
    """The error for a `.npz` path that is not a file: a folder there is most likely an image folder tree."""
    if path.is_dir():
        return DataError(f"{path}: a folder, not a .npz file; for an image folder tree DIR/<split>/<class>/<image> "
                         f"pass {key}.source=folder")
    return DataError(f"{path}: file not found; pass {key}.path=FILE.npz, a .npz in ssdd's NumPy format "
                     f"(README, 'Data formats'), or {key}.source=torchvision {key}.name=cifar100 {key}.path=DIR "
                     f"{key}.download=true (other sources: folder, digits)")


def load_npz(path: str | Path, split: str, resolution: int, name: str = "") -> ImageDataset:
    """`x_<split>` uint8 (N,H,W,3), `y_<split>` int64 (N,), optional `classes` (C,) strings."""
    path = Path(path)
    if not path.is_file():
        raise missing_npz(path)
    if not zipfile.is_zipfile(path):  # 0 bytes, text, a lone .npy, a pickle: np.load would try to unpickle it
        size = path.stat().st_size
        what = "an empty file" if size == 0 else f"{size} bytes, not a zip"
        raise DataError(f"{path}: not a readable .npz archive ({what}); write one with ssdd.data.save_npz or "
                        f"numpy.savez")
    try:
        archive = np.load(path, allow_pickle=False)
        keys = set(archive.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    splits = sorted(k[2:] for k in keys if k.startswith("x_"))
    if f"x_{split}" not in keys:
        raise DataError(f"{path}: split '{split}' does not exist (available: {', '.join(splits) or 'none'})")
    try:
        x = archive[f"x_{split}"]
        y = archive[f"y_{split}"] if f"y_{split}" in keys else None  # no labels: unlabelled images
        classes_raw = archive["classes"] if "classes" in keys and y is not None else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: split '{split}' cannot be read, the file is corrupt ({exc})") from None
    if classes_raw is not None:
        classes = tuple(str(c) for c in classes_raw.tolist())
    elif y is not None:
        classes = tuple(str(i) for i in range(label_count((archive[k] for k in keys if k.startswith("y_")), path)))
    else:
        classes = ()
    images, labels = checked_arrays(x, y, len(classes), f"{path}[{split}]")
    return ImageDataset(resize_uint8(images, resolution), labels, classes, split, name or path.stem)


MANY_CLASSES = 100_000  # more classes than any labelled image dataset in this field (ImageNet-21k: 21,841)


def label_count(labels: Iterable[np.ndarray], where: str | Path = "") -> int:
    """The classes a file without class names has: its largest integer label plus one, over every split. More
    classes than labels, and over MANY_CLASSES, is a DataError: labels that are ids, not class indices 0 to C - 1
    (a head with one output per class might not fit in memory)."""
    labels = [y for y in labels if np.issubdtype(y.dtype, np.integer) and y.size]
    count = 1 + max((int(y.max()) for y in labels), default=-1)
    given = sum(y.size for y in labels)
    if count > max(given, MANY_CLASSES):
        raise DataError(f"{where}: labels up to {count - 1:,} for {given:,} labelled images: labels are class "
                        f"indices 0 to C - 1 (np.unique(y, return_inverse=True) renumbers them)")
    return count


def checked_arrays(x: np.ndarray, y: np.ndarray | None, num_classes: int, where: str
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A split's arrays as (N,3,H,W) uint8 images and (N,) int64 labels (None for none), checked (DataError naming
    `where`): what load_npz reads and save_npz writes."""
    images = to_nchw_uint8(x, where)
    if y is None:
        check_arrays(images, None, 0, where)
        return images, None
    check_label_array(y.shape, y.dtype, images.shape[0], where)
    labels = torch.from_numpy(np.ascontiguousarray(y).astype(np.int64)).reshape(-1)
    check_arrays(images, labels, num_classes, where)
    return images, labels


def save_npz(path: str | Path, splits: dict[str, tuple[np.ndarray, np.ndarray | None]],
             classes: list[str] | None = None) -> Path:
    """Write the project's NumPy format: splits maps name -> (uint8 (N,H,W,3), integer labels (N,), or None for
    unlabelled images); `classes`
    names the C classes (default: none stored, and the reader names them 0 to C - 1 from the labels). Each split is
    checked as the reader checks it (DataError, nothing written): uint8 pixels (a float array would be cast,
    wrapping or zeroing its values), a layout the reader takes, one label per image, labels within the classes.
    Returns the file written: `path`, with `.npz` added when it has another suffix, as numpy.savez does."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    given = [np.asarray(y) for _, y in splits.values() if y is not None]
    if classes is not None and not given:
        raise DataError(f"{path}: class names given, but no split has labels; leave `classes` out for images "
                        f"without labels")
    count = len(classes) if classes is not None else label_count(given, path)
    arrays: dict[str, np.ndarray] = {} if classes is None else {"classes": np.asarray(classes)}
    for split, (x, y) in splits.items():
        x, y = np.asarray(x), None if y is None else np.asarray(y)
        checked_arrays(x, y, count, f"{path}[{split}]")
        arrays[f"x_{split}"] = x
        if y is not None:
            arrays[f"y_{split}"] = y.astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# ----------------------------------------------------------------------------- ImageFolder
def folder_class_dirs(root: str | Path, split: str, setting: str = "") -> list[Path]:
    """The class folders of `root/<split>/`, sorted; DataError naming what to change when the tree is wrong
    (`setting`: the setting that names the split, e.g. data.train_split; the path's is beside it)."""
    root = Path(root)
    path_setting = setting.rsplit(".", 1)[0] + ".path" if "." in setting else ""
    if not root.is_dir():
        fix = f"pass {path_setting}=DIR, " if path_setting else "give "
        raise DataError(f"{root}: folder not found; {fix}an ImageFolder tree DIR/<split>/<class>/")
    split_dir = root / split
    if not split_dir.is_dir():
        found = _subfolders(root)
        name_it = f"set {setting}=<one of them>" if setting else "name one of them as the split"
        if found and all(_has_images(p) and not _subfolders(p) for p in found):  # DIR/<class>/<image>, maybe
            shown = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
            raise DataError(f"{root}: split '{split}' does not exist; its folders ({shown}) hold images: an image "
                            f"folder tree is DIR/<split>/<class>/<image> (move class folders into {split_dir}/), or "
                            f"DIR/<split>/<image> for images without labels ({name_it})")
        raise DataError(f"{root}: split '{split}' does not exist (expected {split_dir}/<class>/<image>; "
                        f"sub-folders found: {', '.join(p.name for p in found) or 'none'}); {name_it}")
    class_dirs = _subfolders(split_dir)
    if class_dirs and _has_images(split_dir):
        raise DataError(f"{split_dir}: holds class folders and images beside them; images with labels go into "
                        f"their class folder ({split_dir}/<class>/<image>), images without labels into a split of "
                        f"their own ({root}/<split>/<image>)")
    if not class_dirs and not _has_images(split_dir):
        raise DataError(f"{split_dir}: no class folders and no images (expected {split_dir}/<class>/<image>, or "
                        f"{split_dir}/<image> for images without labels)")
    return class_dirs  # none: the images lie in the split's folder, without labels


def _subfolders(folder: Path) -> list[Path]:
    """The folders in `folder`, sorted, without hidden ones (.ipynb_checkpoints, .DS_Store folders)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_image(path: Path) -> bool:
    """An image file, not a hidden one (macOS's ._x.png beside x.png)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def image_files(folder: Path) -> list[Path]:
    """The image files in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if _is_image(p))


def _has_images(folder: Path) -> bool:
    return any(_is_image(p) for p in folder.iterdir())


def load_image_folder(root: str | Path, split: str, resolution: int, name: str = "",
                      class_split: str | None = None) -> ImageDataset:
    """`root/<split>/<class>/<image>`; class names and their order come from the class folders of `class_split`
    (the training split; default: `split` itself), so that a class has one label in every split, also where a
    split lacks a class; a class no other split has is a DataError. `root/<split>/<image>` (no class folders):
    the split's images without labels."""
    root = Path(root)
    class_dirs = folder_class_dirs(root, split)
    split_dir = root / split
    name = name or root.resolve().name  # (`.` is the current folder's name)
    if not class_dirs:
        return ImageDataset(torch.stack(_read_images(split_dir, resolution)), None, (), split, name)
    named_by = root / (class_split or split)
    # the training split's classes; where it has none (or is not there), this split's own
    classes = tuple(p.name for p in (_subfolders(named_by) if named_by.is_dir() else []) or class_dirs)
    stray = [p.name for p in class_dirs if p.name not in classes]
    if stray:
        raise DataError(f"{split_dir}: class folder(s) {', '.join(stray[:4])} that {named_by} does not have (its "
                        f"classes name the labels of every split)")
    images: list[torch.Tensor] = []
    labels: list[int] = []
    for class_dir in bar(class_dirs, desc=f"reading {split_dir}", unit="class"):
        read = _read_images(class_dir, resolution)
        if not read:
            raise DataError(f"{class_dir}: empty class, no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        images += read
        labels += [classes.index(class_dir.name)] * len(read)
    return ImageDataset(torch.stack(images), torch.tensor(labels, dtype=torch.int64), classes, split, name)


def _read_images(folder: Path, resolution: int) -> list[torch.Tensor]:
    """Every image file of a folder, in name order, as (3, R, R) uint8; DataError naming a file that cannot be
    decoded."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for file in image_files(folder):
        try:
            with Image.open(file) as img:
                images.append(pil_to_uint8(img, resolution))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DataError(f"{file}: corrupt or unreadable image ({exc})") from None
    return images


def verify_image_folder(root: str | Path) -> int:
    """Decode every image of an ImageFolder tree (`ssdd check`); the number of images, or DataError naming the
    first file that cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    count = 0
    splits = _subfolders(Path(root))  # every image of a split, in its class folders or, without labels, in it
    for file in [f for s in splits for folder in (s, *_subfolders(s)) for f in image_files(folder)]:
        try:
            with Image.open(file) as img:
                img.load()  # decodes the pixels: a damaged or truncated file fails here, not in a later run
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"{file}: corrupt or unreadable image ({exc})") from None
        count += 1
    return count


# ----------------------------------------------------------------------------- scikit-learn digits
def load_digits(split: str, resolution: int, test_fraction: float = 0.25, seed: int = 0) -> ImageDataset:
    """scikit-learn's 1,797 handwritten 8x8 digits (ships with the package): the demo dataset.

    The fixed split is stratified and seeded so every run sees the same train/test images.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    if split not in ("train", "test"):
        raise DataError(f"digits: split '{split}' does not exist (available: train, test)")
    bunch = sk_load_digits()
    pixels = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8), values 0..16
    target = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(target), dtype=bool)
    for c in np.unique(target):
        members = np.flatnonzero(target == c)
        chosen = rng.choice(members, size=round(len(members) * test_fraction), replace=False)
        test_mask[chosen] = True
    keep = test_mask if split == "test" else ~test_mask
    images = to_nchw_uint8(pixels[keep], "digits")
    classes = tuple(str(c) for c in range(10))
    return ImageDataset(resize_uint8(images, resolution), torch.from_numpy(target[keep]), classes, split, "digits")


# ----------------------------------------------------------------------------- dispatch


def source_description(cfg: DataConfig) -> str:
    """Where `cfg` reads from, for messages: the npz file or image folder, `torchvision <name>`, or `digits`
    (whose `path` is unused)."""
    return {"digits": "digits", "torchvision": f"torchvision {cfg.name}"}.get(cfg.source, cfg.path)


def same_data(a: DataConfig, b: DataConfig) -> bool:
    """Whether two data settings name the same training split (whatever their resolution and subset): source,
    file or folder and split, and the name where it says which torchvision dataset it is. False says only that
    they are written differently (the same images can sit in two files): compare the splits' fingerprints."""
    def split(cfg: DataConfig) -> tuple[object, ...]:
        path = "" if cfg.source in PATHLESS_SOURCES else str(Path(cfg.path).expanduser().resolve())
        return (cfg.source, path, cfg.train_split, cfg.name if cfg.source == "torchvision" else "")

    return split(a) == split(b)


def load_split(cfg: DataConfig, split: str, seed: int = 0) -> ImageDataset:
    """Load one split as configured; the train split also checks that no class is empty."""
    from ssdd.data.torchvision_sets import load_torchvision

    if cfg.resolution <= 0:
        raise DataError(f"data.resolution must be positive, got {cfg.resolution}")
    where = source_description(cfg)
    with phase(f"loading {where} [{split}]") as loading:
        if cfg.source == "npz":
            dataset = load_npz(cfg.path, split, cfg.resolution, dataset_name(cfg))
        elif cfg.source == "folder":
            dataset = load_image_folder(cfg.path, split, cfg.resolution, dataset_name(cfg), cfg.train_split)
        elif cfg.source == "torchvision":
            dataset = load_torchvision(cfg.name, cfg.path, split, cfg.resolution, cfg.download)
        elif cfg.source == "digits":
            dataset = load_digits(split, cfg.resolution)
        else:
            raise DataError(f"unknown data.source '{cfg.source}' (choose npz, torchvision, folder or digits)")
        if split == cfg.train_split:
            check_no_empty_class(dataset, where=f"{cfg.path}[{split}]" if cfg.source != "digits" else "")
            dataset = dataset.subset(cfg.subset, seed)
        loading.detail = f"{len(dataset):,} images at {dataset.resolution} px"
    return dataset
