"""Shared fixtures: tiny real-format datasets built on the fly (tests never read ../shared/data)."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions are dominated by thread hand-off on a busy machine; one thread is much faster. The
    processes a test starts (`ssdd evaluate --processes`) get one thread too, so that their sums run in the
    order of this one's whatever OMP_NUM_THREADS the suite was started with."""
    threads, before = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    return make_npz(tmp_path / "tiny.npz")


def make_teacher(path: Path, resolution: int = 16, width: int = 4, seed: int = 0) -> Path:
    """A random-init tiny teacher artifact (distillation tests need a teacher, not a good one)."""
    from ssdd.config import ModelConfig
    from ssdd.models import build_model, describe
    from ssdd.teacher import save_teacher

    torch.manual_seed(seed)
    model_cfg = ModelConfig(name="convnet", width=width, depth=2, feature="pool")
    backbone = build_model(model_cfg, resolution)
    manifest = {"model": describe(model_cfg), "feature_dim": backbone.feature_dim, "resolution": resolution,
                "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
                "linear_probe": {"top1": 0.0}, "epochs": 0}
    return save_teacher(path, backbone, manifest)


@pytest.fixture
def tiny_teacher(tmp_path: Path) -> Path:
    return make_teacher(tmp_path / "teacher")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_torchrun(args: list[str], nproc: int = 2, timeout: float = 300):
    """`torchrun --nproc_per_node=N -m ssdd ARGS` on the CPU (gloo, one thread per process, like the one_thread
    fixture); returns the finished process and fails the test on a non-zero exit code."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "ssdd", *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result
