"""benchmarks/gpu/checkpoint_parts.py: a run's checkpoint as parts and back; exact by default, lossy codecs
within their recorded error, a resume from the rebuilt checkpoint equal to an uninterrupted run."""

from __future__ import annotations

import importlib.util
import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from ssdd.teacher.train import train_teacher

ROOT = Path(__file__).resolve().parents[2]


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


parts = load("checkpoint_parts", ROOT / "benchmarks" / "gpu" / "checkpoint_parts.py")
teacher_tests = load("teacher_test_train", ROOT / "tests" / "teacher" / "test_train.py")  # its smoke settings
smoke_config, backbone_state = teacher_tests.smoke_config, teacher_tests.backbone_state
distill_smoke = load("distill_test_run", ROOT / "tests" / "distill" / "test_run.py").smoke


def same(a, b, where="") -> int:
    """Equal structures (types, key order, state_dict metadata) with bit-identical tensors; the tensor count."""
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
        return 1
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b) and getattr(a, "_metadata", None) == getattr(b, "_metadata", None), where
        return sum(same(a[k], b[k], f"{where}.{k}") for k in a)
    if isinstance(a, list | tuple):
        assert len(a) == len(b), where
        return sum(same(x, y, f"{where}.{i}") for i, (x, y) in enumerate(zip(a, b, strict=True)))
    assert a == b, (where, a, b)
    return 0


def test_a_teacher_resumed_from_exact_parts_ends_as_the_uninterrupted_run(tiny_npz, tmp_path):
    full, cut, moved = tmp_path / "full", tmp_path / "cut", tmp_path / "moved"
    train_teacher(smoke_config(tiny_npz, full, "optim.epochs=3"), show_progress=False)
    assert train_teacher(smoke_config(tiny_npz, cut, "optim.epochs=3", "stop_after_epochs=1"),
                         show_progress=False) is None
    index = parts.pack(cut, tmp_path / "parts", part_mib=0.01)  # small parts: tensors span several
    assert index["exact"] and len(index["parts"]) > 1
    assert all(p["bytes"] <= 0.01 * 2**20 for p in index["parts"])
    assert any(piece["chunks"] > 1 for e in index["tensors"].values() for piece in e["pieces"].values())
    parts.unpack(tmp_path / "parts", moved)
    original = torch.load(cut / "checkpoint.pt", weights_only=True)
    assert same(original, torch.load(moved / "checkpoint.pt", weights_only=True)) > 10
    assert isinstance(original["model"], OrderedDict) and isinstance(next(iter(original["optimizer"]["state"])), int)
    assert {"config.yaml", "inputs.json", "metrics.jsonl"} <= {p.name for p in moved.iterdir()}
    assert json.loads((moved / "carried.json").read_text()) == [
        {"source_sha256": index["source_sha256"], "exact": True, "rules": [], "dropped": [],
         "largest_relative_error": 0.0, "epoch": 1}]
    train_teacher(smoke_config(tiny_npz, moved, "optim.epochs=3"), resume=True, show_progress=False)
    a, b = backbone_state(full), backbone_state(moved)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(("codec", "bound"), [("fp16", 2.0**-11), ("int8", 0.5 / 127)])
def test_lossy_codecs_stay_within_their_bound_and_record_their_error(codec, bound):
    torch.manual_seed(0)
    tensor = torch.randn(64, 3, 8, 8) * torch.logspace(-6, 2, 64).reshape(64, 1, 1, 1)  # rows of many scales
    stored, entry = parts.store(tensor, codec)
    restored = parts.restore(stored, entry)
    error = (restored - tensor).abs()
    assert float(error.max()) == entry["max_abs_error"] > 0
    assert entry["max_rel_error"] == pytest.approx(float(error.max()) / float(tensor.abs().max()))
    if codec == "int8":  # relative to each row's largest magnitude
        rows = tensor.reshape(64, -1).abs().amax(1)
        assert bool((error.reshape(64, -1).amax(1) <= bound * rows * 1.0001).all())
        assert sum(t.numel() * t.element_size() for t in stored.values()) < tensor.numel() * 1.1
    else:
        assert bool((error <= bound * tensor.abs() + 2.0**-24 * float(tensor.abs().max())).all())
    assert parts.codec_for("model.w", tensor, [("model.*", codec)]) == codec
    assert parts.codec_for("optimizer.m", tensor, [("model.*", codec)]) == "exact"
    assert parts.codec_for("model.b", torch.zeros(10), [("model.*", codec)]) == "exact"  # too small to bother


def test_a_changed_part_is_refused_and_the_cli_says_so_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": 3, "tensors": {"x": torch.arange(10.0)}, "history": [{"loss": float("nan")}]},
               run / "checkpoint.pt")
    assert parts.main(["pack", str(run), str(tmp_path / "p")]) == 0
    rebuilt = parts.unpack(tmp_path / "p", tmp_path / "back")
    assert rebuilt["step"] == 3 and torch.equal(rebuilt["tensors"]["x"], torch.arange(10.0))
    part = tmp_path / "p" / "part-00.safetensors"
    part.write_bytes(part.read_bytes()[:-1] + b"\0")
    assert parts.main(["unpack", str(tmp_path / "p"), str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SHA-256 differs" in err[0]


def test_a_distillation_carried_without_its_pool_warm_starts_a_fresh_one_and_says_where(tiny_npz, tiny_teacher,
                                                                                         tmp_path, capsys):
    from ssdd.distill.run import run_distill

    extra = ("method=krr_st", "outer.lr=0.01")
    cut, moved = tmp_path / "cut", tmp_path / "moved"
    assert run_distill(distill_smoke(tiny_npz, tiny_teacher, cut, *extra, "stop_after_steps=5"),
                       show_progress=False) is None
    with pytest.raises(ValueError, match=r"--drop pool\.membres: no such key"):
        parts.pack(cut, tmp_path / "typo", drop=["pool.membres"])
    index = parts.pack(cut, tmp_path / "parts", drop=["pool.members", "pool.optimizers"])
    assert not index["exact"] and index["dropped"] == ["pool.members", "pool.optimizers"]
    state = parts.unpack(tmp_path / "parts", moved)
    assert set(state["pool"]) == {"counters", "resets", "generator"}
    assert json.loads((moved / "carried.json").read_text())[0]["dropped"] == ["pool.members", "pool.optimizers"]
    capsys.readouterr()
    resumed = run_distill(distill_smoke(tiny_npz, tiny_teacher, moved, *extra), resume=True, show_progress=False)
    assert "holds no pool members" in capsys.readouterr().err
    assert resumed.manifest["pool_rebuilt_at"] == [5] and resumed.manifest["steps_done"] == 12
    assert all(torch.isfinite(t).all() for t in resumed.stored.values())
    whole = run_distill(distill_smoke(tiny_npz, tiny_teacher, tmp_path / "whole", *extra), show_progress=False)
    assert "pool_rebuilt_at" not in whole.manifest
    assert not torch.equal(whole.stored["images"], resumed.stored["images"])  # a fresh pool: another path on


def test_more_parts_than_a_call_brings_back_is_refused_naming_the_largest_tensors(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"big": torch.zeros(300_000), "small": torch.zeros(3)}, run / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"over --max-parts 2 .*big 1\.1 MiB"):
        parts.pack(run, tmp_path / "p", part_mib=0.5, max_parts=2)
    assert not (tmp_path / "p").exists()
    assert len(parts.pack(run, tmp_path / "p", part_mib=0.5, max_parts=3)["parts"]) == 3
