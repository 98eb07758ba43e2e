"""The package as a user gets it: a wheel installed into a fresh virtual environment, run outside the checkout.

Builds the wheel from this checkout, installs it with `pip --no-deps` into a new venv whose only other
packages are the dependencies of the running interpreter (reached through a path entry, so the checkout's
editable install is not visible), and runs the `ssdd` command of that venv from a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import make_npz

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _package_files() -> list[str]:
    """The checkout's files that a wheel is built from (tracked or new, not ignored): the package and its metadata."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "src", "pyproject.toml",
                             "README.md", "LICENSE"], capture_output=True, text=True, cwd=REPO, check=True)
    return [name for name in listed.stdout.splitlines() if (REPO / name).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin/` folder of a fresh venv holding only the built wheel of ssdd."""
    root = tmp_path_factory.mktemp("installed")
    wheels, source = root / "wheels", root / "source"
    for name in _package_files():  # only what the checkout holds: no build/ left by an earlier build
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, cwd=root)
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("ssdd-*.whl"))
    with zipfile.ZipFile(wheel) as archive:  # the wheel holds exactly the package's modules, none left over
        modules = sorted(n for n in archive.namelist() if n.startswith("ssdd/") and n.endswith(".py"))
    assert modules == sorted(n.removeprefix("src/") for n in _package_files() if n.startswith("src/ssdd/")
                             and n.endswith(".py"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    # dependencies (torch, numpy, ...) from the running interpreter: a plain path line does not execute the
    # .pth files there, so the checkout's editable install of ssdd stays invisible
    (site / "ssdd_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return bin_dir


def ssdd(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SSDD_TRACEBACK")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([str(bin_dir / "ssdd"), *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_the_wheel_is_what_runs(installed, tmp_path):
    code = "import ssdd, pathlib; print(pathlib.Path(ssdd.__file__).resolve())"
    where = subprocess.run([str(installed / "python"), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert REPO not in Path(where.stdout.strip()).parents


def test_presets_from_outside_the_checkout(installed, tmp_path):
    listing = ssdd(installed, tmp_path, "presets")
    assert listing.returncode == 0, listing.stderr
    for name in ("cifar100", "teacher_cifar100", "evaluate_full", "demo_teacher"):
        assert name in listing.stdout
    printed = ssdd(installed, tmp_path, "distill", "-c", "cifar100", "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert "method: boost" in printed.stdout
    missing = ssdd(installed, tmp_path, "distill", "-c", "no_such_preset", "--print-config")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_import_a_krr_st_teacher(installed, tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18()
    net.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    net.maxpool, net.fc = torch.nn.Identity(), torch.nn.Identity()
    torch.save(net.state_dict(), tmp_path / "barlow_twins_resnet18_cifar100.pt")
    result = ssdd(installed, tmp_path, "import-teacher", "barlow_twins_resnet18_cifar100.pt", "--format", "krr_st",
                  "--dataset", "cifar100", "--out", "teacher")
    assert result.returncode == 0, result.stderr
    assert "512" in result.stdout and (tmp_path / "teacher" / "manifest.json").is_file()


def test_tiny_pipeline_end_to_end(installed, tmp_path):
    data = make_npz(tmp_path / "tiny.npz")
    common = [f"data.path={data}", "data.resolution=16", "device=cpu"]
    teacher = ssdd(installed, tmp_path, "teacher", "--no-progress", *common, "out_dir=t", "model.name=convnet",
                   "model.width=4", "model.depth=2", "model.feature=pool", "projector=[32,32]", "optim.epochs=1",
                   "optim.batch_size=16", "optim.warmup_epochs=0", "probe.iterations=5")
    assert teacher.returncode == 0, teacher.stderr
    distill = ssdd(installed, tmp_path, "distill", "--no-progress", *common, "teacher=t/teacher", "out_dir=d",
                   "method=krr_st", "budget=10", "outer.steps=4", "outer.batch_size=16", "pool.size=2",
                   "pool.max_steps=5", "outer.model.width=4", "outer.model.depth=2")
    assert distill.returncode == 0, distill.stderr
    evaluate = ssdd(installed, tmp_path, "evaluate", "--no-progress", "-d", "d", "--", "teacher=t/teacher",
                    "out_dir=e", f"source.path={data}", "source.resolution=16", "seeds=1",
                    "models=[{name: convnet, width: 4, depth: 2}]",
                    f"targets=[{{source: npz, path: {data}, name: tiny, resolution: 16}}]", "pretrain.epochs=2",
                    "full_data.epochs=1", "full_data.batch_size=16", "finetune.small_iterations=3",
                    "probe.iterations=5", "cka_images=16", "device=cpu")
    assert evaluate.returncode == 0, evaluate.stderr
    assert (tmp_path / "e" / "summary.md").is_file() and "krr_st@10" in evaluate.stdout
