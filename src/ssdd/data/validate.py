"""Checks of the data a command will read, before work: the splits exist and hold uint8 images of at least one
pixel (read from the .npz headers, no pixel is loaded), labels fit the images; `ssdd check` on a data file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ssdd.config import DataConfig
from ssdd.data.dataset import DataError, check_label_array
from ssdd.run.checks import choice, first_line, whole

SOURCES = ("npz", "torchvision", "folder", "digits")


def npz_arrays(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of a .npz, read from the .npy headers (no pixel is loaded)."""
    from numpy.lib import format as npy

    path = Path(path)
    if not zipfile.is_zipfile(path):
        size = path.stat().st_size
        what = "an empty file" if size == 0 else f"{size} bytes that are not a zip of .npy arrays"
        raise DataError(f"{path}: not a readable .npz archive ({what}); write one with ssdd.data.save_npz or "
                        f"numpy.savez")
    arrays: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as handle:
                    version = npy.read_magic(handle)
                    reader = getattr(npy, "_read_array_header", None)
                    if reader is not None:
                        shape, _, dtype = reader(handle, version)
                    elif version == (1, 0):
                        shape, _, dtype = npy.read_array_header_1_0(handle)
                    else:
                        shape, _, dtype = npy.read_array_header_2_0(handle)
                arrays[name[:-4]] = (tuple(int(s) for s in shape), np.dtype(dtype))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(f"{path}: the archive is corrupt ({first_line(exc)}); write it again") from None
    return arrays


def image_layout(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(N, H, W) of an image array in one of the layouts the loader accepts; None for any other."""
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3):
        return shape[0], shape[1], shape[2]
    if len(shape) == 4 and shape[1] in (1, 3):
        return shape[0], shape[2], shape[3]
    return None


def _npz_split(path: Path, split: str, key: str, which: str) -> int:
    arrays = npz_arrays(path)
    splits = sorted(k[2:] for k in arrays if k.startswith("x_"))
    if f"x_{split}" not in arrays:
        raise DataError(f"{path}: split '{split}' does not exist (available: {', '.join(splits) or 'none'}); "
                        f"set {key}.{which}=<one of them>")
    where = f"{path}[{split}]"
    shape, dtype = arrays[f"x_{split}"]
    if dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8 pixels in [0, 255], got dtype {dtype}")
    layout = image_layout(shape)
    if layout is None:
        raise DataError(f"{where}: images must have shape (N, H, W, 3) (or (N, H, W), (N, H, W, 1), (N, 3, H, W)), "
                        f"got {shape}")
    n, height, width = layout
    if n == 0:
        raise DataError(f"{where}: the split is empty")
    if height < 1 or width < 1:
        raise DataError(f"{where}: the images are {height}x{width} pixels; every image needs at least one pixel")
    if f"y_{split}" in arrays:  # else: images without labels
        labels_shape, labels_dtype = arrays[f"y_{split}"]
        check_label_array(tuple(labels_shape), labels_dtype, n, where)
    return n


def has_labels(cfg: DataConfig, which: str = "train_split") -> bool:
    """Whether the split `cfg.<which>` has labels, read from the file's headers or the folder tree (digits and
    torchvision's datasets have them); True where the split cannot be read (its own check says why)."""
    split = getattr(cfg, which)
    try:
        if cfg.source == "npz":
            return f"y_{split}" in npz_arrays(Path(cfg.path))
        if cfg.source == "folder":
            from ssdd.data.loaders import folder_class_dirs

            return bool(folder_class_dirs(cfg.path, split))
    except (DataError, OSError):
        return True
    return True


def check_split(cfg: DataConfig, which: str = "train_split", key: str = "data", needs_labels: str = "") -> int | None:
    """The split `cfg.<which>` exists and looks usable; its number of images (after data.subset for the train
    split) when that is cheap to know, else None. `needs_labels` (what needs them): a split without labels (an
    .npz without y_<split>, an image folder without class folders) is a DataError saying so."""
    from ssdd.data.loaders import image_files

    choice(f"{key}.source", cfg.source, SOURCES)
    whole(f"{key}.resolution", cfg.resolution, 1)
    whole(f"{key}.subset", cfg.subset, 0)
    split = getattr(cfg, which)
    count: int | None = None
    if cfg.source == "npz":
        path = Path(cfg.path)
        if not path.is_file():
            from ssdd.data.loaders import missing_npz

            raise missing_npz(path, key)
        count = _npz_split(path, split, key, which)
    elif cfg.source == "folder":
        from ssdd.data.loaders import folder_class_dirs

        # no class folders: the split's images lie in its folder, without labels
        classes = folder_class_dirs(cfg.path, split, f"{key}.{which}") or [Path(cfg.path) / split]
        count = 0
        for folder in classes:
            files = len(image_files(folder))
            if not files:
                raise DataError(f"{folder}: empty class, no image files")
            count += files
    elif cfg.source == "digits":
        if split not in ("train", "test"):
            raise DataError(f"digits: split '{split}' does not exist (available: train, test); set {key}.{which}")
    else:
        from ssdd.data.torchvision_sets import TORCHVISION_DATASETS

        spec = TORCHVISION_DATASETS.get(cfg.name)
        if spec is None:
            raise DataError(f"{key}.name={cfg.name!r}: not a torchvision dataset ssdd knows (available: "
                            f"{', '.join(sorted(TORCHVISION_DATASETS))})")
        if split not in spec.split_kwargs:
            raise DataError(f"torchvision {cfg.name}: split '{split}' does not exist (available: "
                            f"{', '.join(spec.split_kwargs)}); set {key}.{which}")
    if needs_labels and not has_labels(cfg, which):
        raise DataError(f"{cfg.path}[{split}] has no labels, and {needs_labels} needs them (an .npz with "
                        f"y_{split}, or an image folder with class folders)")
    if count is not None and which == "train_split" and cfg.subset > 0:
        if cfg.subset > count:
            raise DataError(f"{key}.subset={cfg.subset:,}: split '{cfg.train_split}' holds only {count:,} images (a "
                            f"subset of at most {count:,}, or 0 for all of them)")
        count = cfg.subset
    return count


def describe_data(path: str | Path) -> str:
    """`ssdd check`: a .npz (every split checked from its headers, every member against its CRC) or an
    ImageFolder root (every split); one line on what it holds, or DataError."""
    path = Path(path)
    if path.is_dir():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not splits:
            raise DataError(f"{path}: no split folders (expected {path}/<split>/<class>/<image>)")
        from ssdd.data.loaders import folder_class_dirs

        counts = [f"{s} {check_split(DataConfig(source='folder', path=str(path), train_split=s), 'train_split'):,}"
                  + ("" if folder_class_dirs(path, s) else " (no labels)") for s in splits]
        return f"{path}: {', '.join(counts)} images"
    if not path.is_file():
        raise DataError(f"{path}: not found")
    arrays = npz_arrays(path)
    splits = sorted(k[2:] for k in arrays if k.startswith("x_"))
    if not splits:
        raise DataError(f"{path}: no x_<split> arrays; not in ssdd's NumPy format (README, 'Data formats')")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: the archive is corrupt ({first_line(exc)}); write it again") from None
    if broken is not None:
        raise DataError(f"{path}: member {broken} is corrupt (CRC mismatch); write the file again")
    counts = [f"{s} {_npz_split(path, s, 'data', 'train_split'):,}" + ("" if f"y_{s}" in arrays else " (no labels)")
              for s in splits]
    layout = image_layout(arrays[f"x_{splits[0]}"][0])
    size = f" at {layout[1]}x{layout[2]} px" if layout else ""
    return f"{path}: {', '.join(counts)} images{size}"
