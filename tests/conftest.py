"""Shared fixtures: tiny real-format datasets built on the fly (tests never read ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ssdd.data import save_npz

torch.set_num_threads(min(2, torch.get_num_threads()))


def make_npz(path: Path, n_train: int = 64, n_test: int = 32, classes: int = 4, size: int = 16,
             seed: int = 0) -> Path:
    """Class-dependent coloured noise so a probe can learn something; every class present."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % classes
        base = rng.integers(0, 256, size=(classes, 1, 1, 3))
        noise = rng.integers(-40, 40, size=(n, size, size, 3))
        images = np.clip(base[labels] + noise, 0, 255).astype(np.uint8)
        return images, labels.astype(np.int64)

    return save_npz(path, {"train": split(n_train), "test": split(n_test)}, [f"class{i}" for i in range(classes)])


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    return make_npz(tmp_path / "tiny.npz")
