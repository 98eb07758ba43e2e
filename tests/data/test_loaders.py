"""Data loaders: the project's .npz format, ImageFolder trees, scikit-learn digits, torchvision datasets."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from ssdd.config import DataConfig
from ssdd.data import (
    DataError,
    ImageDataset,
    channel_stats,
    dataset_name,
    load_digits,
    load_image_folder,
    load_npz,
    load_split,
    load_torchvision,
    save_npz,
)
from ssdd.data.validate import check_split


def _images(n: int, h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _write_npz(path, classes=("a", "b", "c"), n_train: int = 6, n_test: int = 3, size: int = 8):
    y_train = np.arange(n_train, dtype=np.int64) % len(classes)
    y_test = np.arange(n_test, dtype=np.int64) % len(classes)
    splits = {"train": (_images(n_train, size, size, 0), y_train), "test": (_images(n_test, size, size, 1), y_test)}
    return save_npz(path, splits, list(classes)), splits


# ----------------------------------------------------------------------------- npz round trip
def test_npz_round_trip(tmp_path):
    path, splits = _write_npz(tmp_path / "sub" / "toy.npz")
    ds = load_npz(path, "train", 8)
    assert isinstance(ds, ImageDataset)
    assert ds.images.shape == (6, 3, 8, 8) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64
    assert ds.classes == ("a", "b", "c")
    assert ds.split == "train" and ds.name == "toy"
    x, y = splits["train"]
    assert torch.equal(ds.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert ds.labels.tolist() == y.tolist()
    test = load_npz(path, "test", 8)
    assert len(test) == 3 and torch.equal(test.images, torch.from_numpy(splits["test"][0]).permute(0, 3, 1, 2))


def test_npz_resize_to_other_resolution(tmp_path):
    path, _ = _write_npz(tmp_path / "toy.npz")
    ds = load_npz(path, "train", 5)
    assert ds.images.shape == (6, 3, 5, 5) and ds.images.dtype == torch.uint8
    assert ds.resolution == 5
    big = load_npz(path, "train", 16)
    assert big.images.shape == (6, 3, 16, 16)


def test_npz_resize_of_constant_image_is_constant(tmp_path):
    x = np.full((2, 8, 8, 3), 77, dtype=np.uint8)
    path = save_npz(tmp_path / "c.npz", {"train": (x, np.array([0, 1]))}, ["a", "b"])
    ds = load_npz(path, "train", 3)
    assert (ds.images == 77).all()


def test_npz_grayscale_becomes_three_identical_channels(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, size=(4, 6, 6), dtype=np.uint8)
    path = save_npz(tmp_path / "g.npz", {"train": (gray, np.array([0, 1, 0, 1]))}, ["a", "b"])
    ds = load_npz(path, "train", 6)
    assert ds.images.shape == (4, 3, 6, 6)
    for c in range(3):
        assert torch.equal(ds.images[:, c], torch.from_numpy(gray))


def test_npz_without_classes_infers_from_all_splits(tmp_path):
    path = tmp_path / "noclass.npz"
    np.savez(path, x_train=_images(2), y_train=np.array([0, 1]), x_test=_images(1), y_test=np.array([4]))
    ds = load_npz(path, "train", 8)
    assert ds.classes == ("0", "1", "2", "3", "4")


def test_npz_empty_split_without_classes_is_a_data_error(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, x_train=np.zeros((0, 4, 4, 3), np.uint8), y_train=np.zeros((0,), np.int64))
    with pytest.raises(DataError, match="empty"):
        load_npz(path, "train", 4)


# ----------------------------------------------------------------------------- npz errors
def test_npz_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(DataError, match="not found") as info:
        load_npz(path, "train", 8)
    assert str(path) in str(info.value)


def test_npz_garbage_file(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"this is not a zip archive at all" * 10)
    with pytest.raises(DataError, match="not a readable") as info:
        load_npz(path, "train", 8)
    assert str(path) in str(info.value)


def test_npz_truncated_file(tmp_path):
    path, _ = _write_npz(tmp_path / "trunc.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        load_npz(path, "train", 8)
    assert str(path) in str(info.value)


def test_npz_corrupt_member_data(tmp_path):
    path, splits = _write_npz(tmp_path / "flip.npz", n_train=30, size=16)
    raw = bytearray(path.read_bytes())
    pixels = splits["train"][0].tobytes()
    start = bytes(raw).find(pixels[:64])
    assert start > 0
    for i in range(start + 100, start + 200):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt") as info:
        load_npz(path, "train", 16)
    assert str(path) in str(info.value)


def test_npz_missing_split_lists_available(tmp_path):
    path, _ = _write_npz(tmp_path / "toy.npz")
    with pytest.raises(DataError, match="split 'val' does not exist") as info:
        load_npz(path, "val", 8)
    msg = str(info.value)
    assert str(path) in msg and "test" in msg and "train" in msg


def test_a_split_without_labels_is_unlabelled_images(tmp_path):
    path = save_npz(tmp_path / "nolabels.npz", {"train": (_images(3), None), "test": (_images(2), np.array([0, 1]))},
                    ["a", "b"])
    train, test = load_npz(path, "train", 8), load_npz(path, "test", 8)
    assert not train.labelled and train.classes == () and len(train) == 3 and train.subset(2, 0).labels is None
    assert test.labelled and test.classes == ("a", "b")
    assert train.fingerprint() != load_npz(path, "test", 8).fingerprint()
    assert check_split(DataConfig(path=str(path)), "train_split") == 3  # usable where no labels are needed
    with pytest.raises(DataError, match=r"nolabels\.npz\[train\] has no labels, and a probe needs them"):
        check_split(DataConfig(path=str(path)), "train_split", needs_labels="a probe")
    with pytest.raises(DataError, match=r"nolabels\[train\]: has no labels, and method=x needs them"):
        train.require_labels("method=x")


def test_an_image_folder_split_without_class_folders_is_unlabelled(tmp_path):
    root = _make_folder(tmp_path / "tree", {"train": {"x": 3}})
    for file in (root / "train" / "x").iterdir():
        file.rename(root / "train" / file.name)
    (root / "train" / "x").rmdir()
    train = load_image_folder(root, "train", 4)
    assert not train.labelled and len(train) == 3
    cfg = DataConfig(source="folder", path=str(root))
    assert check_split(cfg, "train_split") == 3
    with pytest.raises(DataError, match="has no labels"):
        check_split(cfg, "train_split", needs_labels="a target")


def test_npz_float_images_rejected(tmp_path):
    path = tmp_path / "float.npz"
    np.savez(path, x_train=np.zeros((2, 8, 8, 3), np.float32), y_train=np.array([0, 1]), classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match="uint8") as info:
        load_npz(path, "train", 8)
    assert str(path) in str(info.value) and "float32" in str(info.value)


@pytest.mark.parametrize("shape", [(2, 8, 8, 5), (2, 8), (2, 1, 8, 8, 3)])
def test_npz_wrong_shape_rejected(tmp_path, shape):
    path = tmp_path / "shape.npz"
    np.savez(path, x_train=np.zeros(shape, np.uint8), y_train=np.array([0, 1]), classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match="shape") as info:
        load_npz(path, "train", 8)
    assert str(path) in str(info.value) and str(shape[-1]) in str(info.value)


def test_npz_float_labels_rejected(tmp_path):
    path = tmp_path / "flabels.npz"
    np.savez(path, x_train=_images(2), y_train=np.array([0.0, 1.0]), classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match="integers") as info:
        load_npz(path, "train", 8)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("labels, said", [([0, 2], r"labels must lie in \[0, 1\], found values in \[0, 2\]"),
                                         ([-1, 0], "labels are class indices from 0, found -1")])
def test_npz_labels_out_of_range(tmp_path, labels, said):
    path = tmp_path / "range.npz"  # written by hand: save_npz refuses it (below)
    np.savez(path, x_train=_images(2), y_train=np.array(labels), classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match=said) as info:
        load_npz(path, "train", 8)
    assert f"{path}[train]" in str(info.value)  # the message names the file and the split


def test_npz_length_mismatch(tmp_path):
    path = tmp_path / "len.npz"
    np.savez(path, x_train=_images(3), y_train=np.array([0, 1]), classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match="3 images but 2 labels") as info:
        load_npz(path, "train", 8)
    assert f"{path}[train]" in str(info.value)


@pytest.mark.parametrize(("x", "y", "message"), [
    (_images(2).astype(np.float32) / 255, np.array([0, 1]), r"uint8 pixels in \[0, 255\], got dtype float32 \(float "
                                                              r"images in \[0, 1\]: np.round\(x \* 255\)"),
    (_images(2), np.array([0.0, 1.0]), "labels must be integers"),
    (_images(3), np.array([0, 1]), "3 images but 2 labels"),
    (_images(2), np.array([0, 2]), r"labels must lie in \[0, 1\]"),
    (_images(2)[..., :2], np.array([0, 1]), "images"),
    (_images(2), np.array(["cat", "dog"]), r"got dtype <U3 \(class names: names, y = np.unique\(y, return_inverse"),
    (_images(2), np.eye(2, dtype=np.int64), r"labels must have shape \(N,\), got \(2, 2\) \(one-hot rows: y.argmax"),
    (_images(2), np.array([-1, 1]), "labels are class indices from 0, found -1"),
], ids=["float_images", "float_labels", "lengths", "label_range", "two_channels", "names", "one_hot", "negative"])
def test_save_npz_refuses_what_the_reader_would_and_writes_nothing(tmp_path, x, y, message):
    """A float array cast to uint8 would be zeroed or wrapped (the file then reads as valid black images)."""
    with pytest.raises(DataError, match=message):
        save_npz(tmp_path / "bad.npz", {"train": (x, y)}, ["a", "b"])
    assert not (tmp_path / "bad.npz").exists()


def test_load_split_empty_train_class(tmp_path):
    x, y = _images(4), np.array([0, 1, 0, 1])
    path = save_npz(tmp_path / "holes.npz", {"train": (x, y), "test": (x, np.array([0, 1, 2, 2]))},
                    ["cat", "dog", "emu"])
    cfg = DataConfig(source="npz", path=str(path), resolution=8)
    with pytest.raises(DataError, match="1 class") as info:
        load_split(cfg, "train")
    assert "emu" in str(info.value) and f"{path}[train]" in str(info.value)
    # only the training split must cover every class
    assert len(load_split(cfg, "test")) == 4
    # no class missing in the test split here, but a class missing from test is fine too
    cfg2 = DataConfig(source="npz", path=str(path), resolution=8, train_split="test", test_split="train")
    assert load_split(cfg2, "train").classes == ("cat", "dog", "emu")


def test_load_split_rejects_bad_resolution_and_source(tmp_path):
    path, _ = _write_npz(tmp_path / "toy.npz")
    with pytest.raises(DataError, match="resolution"):
        load_split(DataConfig(source="npz", path=str(path), resolution=0), "train")
    with pytest.raises(DataError, match=r"unknown data\.source 'zip'"):
        load_split(DataConfig(source="zip", path=str(path), resolution=8), "train")


def test_load_split_subset_is_deterministic(tmp_path):
    path, splits = _write_npz(tmp_path / "toy.npz", n_train=30)
    cfg = DataConfig(source="npz", path=str(path), resolution=8, subset=7)
    a = load_split(cfg, "train", seed=3)
    b = load_split(cfg, "train", seed=3)
    c = load_split(cfg, "train", seed=4)
    assert len(a) == 7 and a.classes == ("a", "b", "c")
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    # every kept image is one of the originals, with its own label
    full = torch.from_numpy(splits["train"][0]).permute(0, 3, 1, 2)
    labels = splits["train"][1]
    for img, label in zip(a.images, a.labels, strict=True):
        matches = [i for i in range(len(full)) if torch.equal(full[i], img)]
        assert len(matches) == 1 and labels[matches[0]] == int(label)
    # the test split is never subsampled
    assert len(load_split(cfg, "test", seed=3)) == 3
    # subset 0 keeps everything
    assert len(load_split(DataConfig(source="npz", path=str(path), resolution=8), "train")) == 30
    # a file of just the kept images, in their order, loads as the same tensors under the same subset
    # (benchmarks/gpu/prepare_cpu_studies.py carries CIFAR-10 to a GPU this way)
    kept = load_split(DataConfig(source="npz", path=str(path), resolution=8, subset=15), "train", seed=3)
    assert set(kept.labels.tolist()) == {0, 1, 2}  # (a cut file's train split must hold every class)
    cut = tmp_path / "cut.npz"
    np.savez(cut, x_train=kept.images.permute(0, 2, 3, 1).numpy(), y_train=kept.labels.numpy(),
             x_test=splits["test"][0], y_test=splits["test"][1], classes=np.array(kept.classes))
    assert load_split(DataConfig(source="npz", path=str(cut), resolution=8, subset=15), "train",
                      seed=3).fingerprint() == kept.fingerprint()


# ----------------------------------------------------------------------------- ImageFolder
def _make_folder(root, spec: dict[str, dict[str, int]]):
    """spec: split -> class -> number of images; images have varied sizes and a per-image colour."""
    sizes = [(10, 12), (12, 10), (7, 9)]
    count = 0
    for split, classes in spec.items():
        for cls, n in classes.items():
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                w, h = sizes[i % len(sizes)]
                color = (10 * count % 256, 200, (30 + 7 * count) % 256)
                Image.new("RGB", (w, h), color).save(folder / f"img{i}.png")
                count += 1
    return root


def test_image_folder_loads_sorted_classes(tmp_path):
    root = _make_folder(tmp_path / "tree", {"train": {"zebra": 2, "ant": 3, "mole": 1}, "test": {"ant": 1, "mole": 1,
                                                                                                 "zebra": 1}})
    (root / "train" / "ant" / "notes.txt").write_text("ignored: not an image")
    ds = load_image_folder(root, "train", 6)
    assert ds.classes == ("ant", "mole", "zebra")
    assert ds.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert ds.images.shape == (6, 3, 6, 6) and ds.images.dtype == torch.uint8
    assert ds.name == "tree" and ds.split == "train"
    # each image is a single colour, so the resized image is that colour
    assert (ds.images[:, 1] == 200).all()
    test = load_image_folder(root, "test", 4)
    assert test.images.shape == (3, 3, 4, 4) and test.labels.tolist() == [0, 1, 2]


def test_a_class_missing_from_one_split_shifts_no_label_of_another(tmp_path):
    spec = {"train": {"ant": 1, "mole": 1, "zebra": 1}, "test": {"mole": 1, "zebra": 1}}
    root = _make_folder(tmp_path / "tree", spec)
    (root / "test" / ".ipynb_checkpoints").mkdir()  # hidden folders are no class
    test = load_split(DataConfig(source="folder", path=str(root), resolution=4), "test")
    assert test.classes == ("ant", "mole", "zebra") and test.labels.tolist() == [1, 2]


def test_a_class_only_a_test_split_has_is_refused_naming_it(tmp_path):
    root = _make_folder(tmp_path / "tree", {"train": {"ant": 1}, "test": {"ant": 1, "bee": 1}})
    (root / "__MACOSX" / "train").mkdir(parents=True)  # a stray folder beside the splits changes nothing
    assert load_split(DataConfig(source="folder", path=str(root), resolution=4), "train").classes == ("ant",)
    with pytest.raises(DataError, match=r"test: class folder\(s\) bee that .*train does not have"):
        load_split(DataConfig(source="folder", path=str(root), resolution=4), "test")


def test_class_folders_without_split_folders_say_where_they_go(tmp_path):
    root = _make_folder(tmp_path / "flat", {"ant": {"x": 1}, "bee": {"x": 1}})  # flat/<class>/x/img0.png
    for cls in ("ant", "bee"):
        (root / cls / "x" / "img0.png").rename(root / cls / "img0.png")
        (root / cls / "x").rmdir()
    with pytest.raises(DataError, match=r"split 'train' does not exist; its folders \(ant, bee\) hold images: .*"
                                         r"move class folders into .*train/\), or DIR/<split>/<image>"):
        load_image_folder(root, "train", 4)


def test_an_npz_path_that_is_a_folder_points_at_the_folder_source(tmp_path):
    with pytest.raises(DataError, match=r"a folder, not a \.npz file; .* pass data\.source=folder"):
        load_npz(tmp_path, "train", 4)


def test_image_folder_through_load_split(tmp_path):
    root = _make_folder(tmp_path / "tree", {"train": {"b": 2, "a": 2}, "test": {"a": 1, "b": 1}})
    ds = load_split(DataConfig(source="folder", path=str(root), name="mine", resolution=5), "train")
    assert ds.name == "mine" and ds.classes == ("a", "b") and ds.images.shape == (4, 3, 5, 5)


def test_image_folder_grayscale_png_becomes_rgb(tmp_path):
    folder = tmp_path / "tree" / "train" / "c"
    folder.mkdir(parents=True)
    Image.new("L", (9, 9), 123).save(folder / "g.png")
    ds = load_image_folder(tmp_path / "tree", "train", 4)
    assert ds.images.shape == (1, 3, 4, 4) and (ds.images == 123).all()


def test_image_folder_missing_split_lists_subfolders(tmp_path):
    root = _make_folder(tmp_path / "tree", {"train": {"a": 1}, "validation": {"a": 1}})
    with pytest.raises(DataError, match="split 'test' does not exist") as info:
        load_image_folder(root, "test", 4)
    msg = str(info.value)
    assert str(root) in msg and "train" in msg and "validation" in msg


def test_image_folder_empty_class(tmp_path):
    root = _make_folder(tmp_path / "tree", {"train": {"a": 1}})
    (root / "train" / "b").mkdir()
    with pytest.raises(DataError, match="empty class") as info:
        load_image_folder(root, "train", 4)
    assert str(root / "train" / "b") in str(info.value)


def test_image_folder_no_class_folders(tmp_path):
    (tmp_path / "tree" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders and no images"):
        load_image_folder(tmp_path / "tree", "train", 4)


def test_image_folder_corrupt_image(tmp_path):
    root = _make_folder(tmp_path / "tree", {"train": {"a": 2}})
    bad = root / "train" / "a" / "x.png"
    bad.write_bytes(b"\x00garbage, not a png\xff" * 5)
    with pytest.raises(DataError, match="corrupt or unreadable") as info:
        load_image_folder(root, "train", 4)
    assert str(bad) in str(info.value)


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(DataError, match="folder not found") as info:
        load_image_folder(tmp_path / "absent", "train", 4)
    assert str(tmp_path / "absent") in str(info.value)


# ----------------------------------------------------------------------------- digits
def test_digits_split_sizes_disjoint_and_deterministic():
    train = load_digits("train", 8)
    test = load_digits("test", 8)
    assert len(train) + len(test) == 1797
    assert 0.2 * 1797 < len(test) < 0.3 * 1797
    assert train.num_classes == test.num_classes == 10 and train.classes == tuple(str(i) for i in range(10))
    assert train.images.shape[1:] == (3, 8, 8)
    # stratified: every class in both splits
    assert (torch.bincount(train.labels, minlength=10) > 0).all()
    assert (torch.bincount(test.labels, minlength=10) > 0).all()
    # disjoint: the two splits together hold every image exactly as often as the full set
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    full = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    full_keys = sorted(x.tobytes() + bytes([y]) for x, y in zip(full, bunch.target, strict=True))
    split_keys = sorted(
        img[0].numpy().tobytes() + bytes([int(lab)])
        for ds in (train, test)
        for img, lab in zip(ds.images, ds.labels, strict=True)
    )
    assert split_keys == full_keys
    # deterministic across calls
    assert load_digits("test", 8).fingerprint() == test.fingerprint()
    # channels are identical copies of the grey digit
    assert torch.equal(train.images[:, 0], train.images[:, 2])


def test_digits_resolution_and_unknown_split():
    ds = load_digits("test", 16)
    assert ds.images.shape[1:] == (3, 16, 16) and ds.resolution == 16
    with pytest.raises(DataError, match="split 'val' does not exist"):
        load_digits("val", 8)


def test_digits_through_load_split():
    ds = load_split(DataConfig(source="digits", resolution=8, subset=50), "train", seed=0)
    assert len(ds) == 50 and ds.name == "digits"


# ----------------------------------------------------------------------------- torchvision
def test_torchvision_unknown_name_lists_available(tmp_path):
    with pytest.raises(DataError, match="unknown torchvision dataset 'not_a_dataset'") as info:
        load_torchvision("not_a_dataset", tmp_path, "train", 32, download=False)
    assert "cifar10" in str(info.value) and "flowers102" in str(info.value)


def test_torchvision_unknown_split(tmp_path):
    with pytest.raises(DataError, match="split 'val' does not exist") as info:
        load_torchvision("cifar10", tmp_path, "val", 32, download=False)
    assert "train" in str(info.value) and "test" in str(info.value)


def test_torchvision_missing_files_without_download(tmp_path):
    with pytest.raises(DataError, match=r"data\.download") as info:
        load_torchvision("cifar10", tmp_path, "train", 32, download=False)
    assert str(tmp_path) in str(info.value)


class _FakeCifar:
    calls: ClassVar[list[dict]] = []

    def __init__(self, root, download, train):
        type(self).calls.append({"root": root, "download": download, "train": train})
        n = 5 if train else 3
        rng = np.random.default_rng(0 if train else 1)
        self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 2 for i in range(n)]
        self.classes = ["airplane", "automobile"]

    def __getitem__(self, index):  # pragma: no cover - the fast path must not iterate
        raise AssertionError("fast path should not index images one by one")

    def __len__(self):
        return len(self.data)


def test_torchvision_fast_path(tmp_path, monkeypatch):
    import torchvision.datasets

    _FakeCifar.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCifar)
    ds = load_torchvision("CIFAR10", tmp_path, "test", 32, download=True)
    assert _FakeCifar.calls == [{"root": str(tmp_path), "download": True, "train": False}]
    ref = _FakeCifar(str(tmp_path), True, False)
    assert ds.name == "cifar10" and ds.split == "test"
    assert ds.classes == ("airplane", "automobile")
    assert torch.equal(ds.images, torch.from_numpy(ref.data).permute(0, 3, 1, 2))
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [0, 1, 0]
    small = load_torchvision("cifar10", tmp_path, "train", 16, download=False)
    assert small.images.shape == (5, 3, 16, 16)


class _FakeDTD:
    def __init__(self, root, download, split):
        self.split = split
        self.sizes = [(20, 30), (31, 17), (8, 8), (50, 40)]
        self.labels_ = [2, 0, 1, 2]

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, index):
        w, h = self.sizes[index]
        return Image.new("RGB", (w, h), (index * 40, 100, 250)), self.labels_[index]


def test_torchvision_slow_path_resizes_and_keeps_labels(tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "DTD", _FakeDTD)
    ds = load_torchvision("dtd", tmp_path, "val", 12, download=False)
    assert ds.images.shape == (4, 3, 12, 12) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [2, 0, 1, 2]
    assert ds.classes == ("0", "1", "2")  # no .classes attribute: names from the labels
    for i in range(4):
        assert (ds.images[i, 0] == i * 40).all() and (ds.images[i, 1] == 100).all() and (ds.images[i, 2] == 250).all()


def test_torchvision_slow_path_unreadable_image(tmp_path, monkeypatch):
    import torchvision.datasets

    class Broken(_FakeDTD):
        def __getitem__(self, index):
            if index == 2:
                raise OSError("truncated file")
            return super().__getitem__(index)

    monkeypatch.setattr(torchvision.datasets, "DTD", Broken)
    with pytest.raises(DataError, match="image 2") as info:
        load_torchvision("dtd", tmp_path, "train", 8, download=False)
    assert "truncated file" in str(info.value)


# ----------------------------------------------------------------------------- stats and fingerprint
def test_channel_stats_matches_numpy():
    images = torch.randint(0, 256, (7, 3, 5, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(images, chunk=3)  # chunking must not change the result
    arr = images.numpy().astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, arr.mean(axis=(0, 2, 3)), atol=1e-6, rtol=0)
    np.testing.assert_allclose(std, arr.std(axis=(0, 2, 3)), atol=1e-6, rtol=0)
    # the channels differ, so a mix-up of channels would be caught
    skewed = images.clone()
    skewed[:, 0] = 0
    m2, s2 = channel_stats(skewed)
    assert m2[0] == 0.0 and s2[0] < 1e-5 and m2[1] == pytest.approx(mean[1])


def test_fingerprint_changes_with_one_pixel():
    images = torch.zeros((3, 3, 4, 4), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0])
    a = ImageDataset(images, labels, ("x", "y"), "train", "t")
    same = ImageDataset(images.clone(), labels.clone(), ("x", "y"), "train", "t")
    assert a.fingerprint() == same.fingerprint()
    changed = images.clone()
    changed[2, 1, 3, 0] = 1
    assert ImageDataset(changed, labels, ("x", "y"), "train", "t").fingerprint() != a.fingerprint()
    relabelled = ImageDataset(images, torch.tensor([0, 1, 1]), ("x", "y"), "train", "t")
    assert relabelled.fingerprint() != a.fingerprint()


def test_dataset_name_is_the_name_a_loaded_split_carries(tmp_path):
    npz, _ = _write_npz(tmp_path / "toy.npz")
    folder = _make_folder(tmp_path / "tree", {"train": {"a": 1, "b": 1}, "test": {"a": 1, "b": 1}})
    for cfg in (DataConfig(path=str(npz), resolution=8), DataConfig(path=str(npz), name="renamed", resolution=8),
                DataConfig(source="folder", path=str(folder) + "/", resolution=8),
                DataConfig(source="digits", resolution=8)):
        assert dataset_name(cfg) == load_split(cfg, "test").name, cfg
    assert [dataset_name(DataConfig(path=str(npz))), dataset_name(DataConfig(source="folder", path=str(folder)))] \
        == ["toy", "tree"]


def test_a_subset_larger_than_the_train_split_is_refused_before_work(tmp_path):
    from ssdd.data.validate import check_split

    path, _ = _write_npz(tmp_path / "s.npz", n_train=6)
    assert check_split(DataConfig(source="npz", path=str(path), resolution=8, subset=4)) == 4
    assert check_split(DataConfig(source="npz", path=str(path), resolution=8, subset=6)) == 6
    with pytest.raises(DataError, match=r"^data\.subset=7: split 'train' holds only 6 images \(a subset of at most 6, "
                                        r"or 0 for all of them\)$"):
        check_split(DataConfig(source="npz", path=str(path), resolution=8, subset=7))


def test_save_npz_returns_the_file_it_wrote_and_may_leave_the_class_names_out(tmp_path):
    from ssdd.data import load_npz, save_npz

    x, y = np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 2, 0, 1])
    written = save_npz(tmp_path / "plain", {"train": (x, y)})  # numpy.savez adds .npz: the path says so
    assert written == tmp_path / "plain.npz" and written.is_file()
    assert load_npz(written, "train", 8).classes == ("0", "1", "2")  # named by the reader, from the labels
    assert save_npz(tmp_path / "named.npz", {"train": (x, y)}, ["a", "b", "c"]) == tmp_path / "named.npz"


def test_torch_needs_tensors_and_a_resolution_of_at_least_one_pixel(tmp_path):
    from ssdd.data import DataError, ImageDataset, load_npz, save_npz

    images, labels = torch.zeros((4, 3, 8, 8), dtype=torch.uint8), torch.tensor([0, 1, 0, 1])
    with pytest.raises(DataError, match=r"^m\[train\]: images must be a torch tensor, got numpy\.ndarray "
                                        r"\(torch\.from_numpy;"):
        ImageDataset(images.numpy(), labels, ("a", "b"), "train", "m")
    with pytest.raises(DataError, match=r"^m\[train\]: labels must be a torch tensor, got numpy\.ndarray"):
        ImageDataset(images, labels.numpy(), ("a", "b"), "train", "m")
    path = save_npz(tmp_path / "d.npz", {"train": (np.zeros((4, 8, 8, 3), np.uint8), labels.numpy())})
    for resolution in (0, -8, "16"):
        with pytest.raises(DataError, match=rf"^resolution must be a whole number of pixels, at least 1; got "
                                            rf"{resolution!r}$"):
            load_npz(path, "train", resolution)


def test_labels_that_are_ids_not_class_indices_are_refused_before_they_size_a_head(tmp_path):
    path = tmp_path / "ids.npz"
    np.savez(path, x_train=_images(2), y_train=np.array([0, 9_000_000_000]))  # no class names: C = max + 1
    with pytest.raises(DataError, match=r"labels up to 9,000,000,000 for 2 labelled images: labels are class indices"):
        load_npz(path, "train", 8)
    with pytest.raises(DataError, match="labels up to 9,000,000,000"):
        save_npz(tmp_path / "again.npz", {"train": (_images(2), np.array([0, 9_000_000_000]))})


def test_loose_images_beside_class_folders_are_refused_and_hidden_files_are_no_images(tmp_path):
    root = _make_folder(tmp_path / "tree", {"train": {"a": 2}})
    Image.new("RGB", (4, 4)).save(root / "train" / "a" / ".hidden.png")  # macOS's ._x.png: skipped
    (root / "train" / "a" / "._x.png").write_bytes(b"not an image")
    assert len(load_image_folder(root, "train", 4)) == 2
    Image.new("RGB", (4, 4)).save(root / "train" / "loose.png")
    with pytest.raises(DataError, match="holds class folders and images beside them"):
        load_image_folder(root, "train", 4)


def test_a_folder_given_as_dot_is_named_by_the_folder_it_is(tmp_path, monkeypatch):
    root = _make_folder(tmp_path / "pets", {"train": {"a": 1}})
    monkeypatch.chdir(root)
    assert dataset_name(DataConfig(source="folder", path=".")) == "pets"
    assert load_image_folder(".", "train", 4).name == "pets"


def test_class_names_without_any_labels_are_refused(tmp_path):
    with pytest.raises(DataError, match="class names given, but no split has labels"):
        save_npz(tmp_path / "x.npz", {"train": (_images(2), None)}, ["a", "b"])
