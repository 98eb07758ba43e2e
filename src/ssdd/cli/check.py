"""`ssdd check`: is the installation usable, which devices and data are there, and what to fix."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from ssdd.data.loaders import verify_image_folder
from ssdd.data.validate import describe_data
from ssdd.plugins import load_plugins, plugin_modules
from ssdd.run.runtime import versions
from ssdd.teacher.validate import teacher_manifest

DATA_FILES = ("cifar100.npz", "cifar10.npz", "flowers102_32.npz")  # the data.path of the presets, under data/
SEARCH_DEPTH = 5  # runs/demo/teacher/teacher-<key>/teacher/manifest.json, a study's teacher below its out_dir
SKIPPED = {"node_modules", "__pycache__", "site-packages", "venv", "env"}  # and every hidden folder (.venv, .git)


def _folders(root: Path, depth: int) -> list[Path]:
    """root's sub-folders at most `depth` levels below it, without hidden and environment folders."""
    found = []
    for folder, subfolders, _ in os.walk(root):
        level = len(Path(folder).relative_to(root).parts)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in SKIPPED) \
            if level < depth else []
        if level:
            found.append(Path(folder))
    return found


def find_teachers(root: Path, depth: int = SEARCH_DEPTH) -> tuple[list[str], list[str]]:
    """Teacher artifact folders at most `depth` levels below root, and the folders whose manifest.json is not
    valid JSON beside weight files (an artifact whose manifest is damaged)."""
    from ssdd.teacher.artifact import KIND

    found, damaged = [], []
    for folder in _folders(root, depth):
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            continue
        try:
            kind = json.loads(manifest.read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            if any(folder.glob("*.safetensors")):
                damaged.append(str(folder))
            continue
        if kind == KIND:
            found.append(str(folder))
    return sorted(found), sorted(damaged)


def check_teacher(folder: str) -> None:
    """The manifest checked (edited fields, shard names) and every shard present with its recorded SHA-256;
    ValueError naming what is wrong."""
    from ssdd.run.runtime import file_sha256

    teacher_manifest(folder)
    for shard in json.loads((Path(folder) / "manifest.json").read_text())["shards"]:
        path = Path(folder) / shard["file"]
        if not path.is_file():
            raise ValueError(f"{folder}: shard {shard['file']} is missing")
        if file_sha256(path) != shard["sha256"]:
            raise ValueError(f"{path}: checksum mismatch: the file was changed or damaged after it was written")


def _line(ok: bool | None, label: str, detail: str) -> None:
    mark = {True: "ok  ", False: "FAIL", None: "note"}[ok]
    print(f"[{mark}] {label:<22} {detail}")


def _smoke_step(device: torch.device) -> str:
    """One forward/backward of a small ResNet-18 and a ConvNet on random data."""
    from ssdd.config import ModelConfig
    from ssdd.models import build_model

    timings = []
    for cfg in (ModelConfig(name="resnet18", width=16), ModelConfig(name="convnet", width=32)):
        model = build_model(cfg, 32).to(device)
        x = torch.rand(8, 3, 32, 32, device=device)
        start = time.perf_counter()
        loss = model(x).pow(2).mean()
        loss.backward()
        if not torch.isfinite(loss):
            raise RuntimeError(f"{cfg.name} produced a non-finite loss")
        timings.append(f"{cfg.name} {1000 * (time.perf_counter() - start):.0f} ms")
    return ", ".join(timings)


def run_check(extra_data: list[str] | None = None) -> int:
    failures: list[str] = []
    info = versions()
    _line(True, "versions", ", ".join(f"{k} {v}" for k, v in info.items() if k != "platform"))
    _line(None, "platform", info["platform"])
    _line(None, "threads", f"torch uses {torch.get_num_threads()} CPU threads ({os.cpu_count()} cores)")
    named, plugins_import = plugin_modules(), True
    if named:  # before the smoke steps: building a network imports them, and their error is not torch's
        try:
            load_plugins()
            _line(True, "plugins", ", ".join(module for module, _ in named))
        except ValueError as exc:
            _line(False, "plugins", str(exc))
            failures.append("a plugin fails to import: fix it, or leave it out of SSDD_PLUGINS (or uninstall it)")
            plugins_import = False

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        _line(True, "cuda", f"{torch.cuda.device_count()} GPU(s): {names}")
    else:
        _line(None, "cuda", "no GPU visible: everything runs on the CPU (use the cpu presets)")
    for device in devices[:2] if plugins_import else []:
        try:
            _line(True, f"forward/backward {device.type}", _smoke_step(device))
        except Exception as exc:  # report any failure of the tiny step, whatever its type
            _line(False, f"forward/backward {device.type}", str(exc).splitlines()[0])
            failures.append(f"a forward/backward pass fails on {device}: reinstall torch for this machine")

    for module in ("safetensors", "omegaconf", "sklearn", "matplotlib", "tqdm"):
        try:
            __import__(module)
            _line(True, f"import {module}", "")
        except ImportError:
            _line(False, f"import {module}", "missing")
            failures.append(f"module {module} is missing: reinstall ssdd with its dependencies")

    given = [Path(p) for p in extra_data or []]
    for path in given:  # named with --data: its absence is a failure, not a note
        if not path.exists():
            _line(False, "dataset", f"{path}: not found")
            failures.append(f"{path} (--data) does not exist: check the path")
    found = [path for path in [Path("data") / f for f in DATA_FILES] + given if path.exists()]
    for path in found:  # read, not only found: an empty or corrupt file is a failure to fix
        if (path / "manifest.json").is_file():
            _line(False, "dataset", f"{path} is an ssdd artifact folder (a teacher, a set), not data")
            failures.append(f"{path} (--data): give an .npz file or an image folder tree")
            continue
        try:
            described = describe_data(path)
            if path.is_dir():
                verify_image_folder(path)  # every image decoded, not only counted
            _line(True, "dataset", described)
        except (ValueError, OSError) as exc:  # damaged, or unreadable (permissions)
            _line(False, "dataset", str(exc) if isinstance(exc, ValueError) else f"{path}: {exc}")
            failures.append(f"{path} cannot be used: write it again (or remove it)" if isinstance(exc, ValueError)
                            else f"{path} cannot be read: check its permissions")
    if not found and not given:
        _line(None, "datasets", "none at the presets' data.path (data/*.npz here) or --data: pass "
              "data.path=FILE.npz (ssdd's NumPy format, README), or data.source=torchvision data.name=cifar100 "
              "data.path=DIR data.download=true (folder and digits sources work too)")
    teachers, damaged = find_teachers(Path("."))
    for folder in damaged:
        _line(False, "artifact", f"{folder}/manifest.json cannot be read as a manifest (not a JSON object, or "
              f"unreadable)")
        failures.append(f"{folder} is damaged (its manifest.json cannot be read): restore it or make it again")
    intact = []
    for folder in teachers:  # manifests checked (edited fields, shard names) and every shard's SHA-256
        try:
            check_teacher(folder)
            intact.append(folder)
        except (ValueError, OSError) as exc:  # an unreadable shard too: a failure to fix, not an abort
            _line(False, "teacher", str(exc) if isinstance(exc, ValueError) else f"{folder}: {exc}")
            failures.append(f"teacher {folder} is damaged: restore it or train/import it again")
    if intact:
        _line(True, "teachers", ", ".join(intact))
    elif not damaged and not teachers:  # damaged ones were listed above: "none" would contradict them
        _line(None, "teachers", f"none within {SEARCH_DEPTH} levels below this folder: train one with 'ssdd "
              "teacher' or bring one with 'ssdd import-teacher', then pass teacher=PATH")

    if failures:
        print("\nTo fix:")
        for item in failures:
            print(f"  - {item}")
        return 1
    print("\nEverything needed to run ssdd is in place.")
    return 0
