"""`ssdd check`: is the installation usable, which devices and data are there, and what to fix."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from ssdd.data.validate import describe_data
from ssdd.runtime import versions
from ssdd.teacher.validate import teacher_manifest

DATA_FILES = ("cifar100.npz", "cifar10.npz", "flowers102_32.npz")  # the data.path of the presets, under data/
TEACHER_DEPTH = 4  # runs/demo/teacher/teacher/manifest.json


def find_teachers(root: Path, depth: int = TEACHER_DEPTH) -> list[str]:
    """Teacher artifact folders at most `depth` levels below root (hidden folders skipped)."""
    from ssdd.teacher.artifact import KIND

    found = []
    for level in range(1, depth + 1):
        for manifest in root.glob("/".join(["*"] * level) + "/manifest.json"):
            if any(part.startswith(".") for part in manifest.relative_to(root).parts):
                continue
            try:
                kind = json.loads(manifest.read_text()).get("kind")
            except (OSError, ValueError, AttributeError):
                continue
            if kind == KIND:
                found.append(str(manifest.parent))
    return sorted(found)


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

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        _line(True, "cuda", f"{torch.cuda.device_count()} GPU(s): {names}")
    else:
        _line(None, "cuda", "no GPU visible: everything runs on the CPU (use the cpu presets)")
    for device in devices[:2]:
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

    candidates = [Path("data") / f for f in DATA_FILES] + [Path(p) for p in extra_data or []]
    found = [path for path in candidates if path.exists()]
    for path in found:  # read, not only found: an empty or corrupt file is a failure to fix
        try:
            _line(True, "dataset", describe_data(path))
        except ValueError as exc:
            _line(False, "dataset", str(exc))
            failures.append(f"{path} cannot be used: write it again (or remove it)")
    if not found:
        _line(None, "datasets", "none at the presets' data.path (data/*.npz here) or --data: pass "
              "data.path=FILE.npz (ssdd's NumPy format, README), or data.source=torchvision data.name=cifar100 "
              "data.path=DIR data.download=true (folder and digits sources work too)")
    teachers = find_teachers(Path("."))
    intact = []
    for folder in teachers:  # manifests checked (edited fields, shard names, shards present), weights not read
        try:
            teacher_manifest(folder)
            missing = [s["file"] for s in json.loads((Path(folder) / "manifest.json").read_text())["shards"]
                       if not (Path(folder) / s["file"]).is_file()]
            if missing:
                raise ValueError(f"{folder}: shard {missing[0]} is missing")
            intact.append(folder)
        except ValueError as exc:
            _line(False, "teacher", str(exc))
            failures.append(f"teacher {folder} is damaged: restore it or train/import it again")
    _line(None if not intact else True, "teachers", ", ".join(intact) or
          "none in this folder: train one with 'ssdd teacher' or bring one with 'ssdd import-teacher', "
          "then pass teacher=PATH")

    if failures:
        print("\nTo fix:")
        for item in failures:
            print(f"  - {item}")
        return 1
    print("\nEverything needed to run ssdd is in place.")
    return 0
