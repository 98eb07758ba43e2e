"""`ssdd experts` at smoke scale: the artifact, bit-identical resumption, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssdd.artifacts.files import ArtifactError
from ssdd.cli import main
from ssdd.config import ConfigError, load_config
from ssdd.distill.unroll import FlatModel
from ssdd.experts import ExpertsConfig, load_experts
from ssdd.experts.train import build_student, expert_seed, train_experts
from ssdd.run.runtime import file_sha256

pytestmark = pytest.mark.usefixtures("one_thread")

SMOKE = ["data.resolution=16", "num_experts=2", "epochs=3", "batch_size=16", "model.width=4", "model.depth=2",
         "device=cpu"]


def args(npz: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    return [f"teacher={teacher}", f"data.path={npz}", f"out_dir={out}", *SMOKE, *extra]


def smoke(npz: Path, teacher: Path, out: Path, *extra: str) -> ExpertsConfig:
    return load_config(ExpertsConfig, None, args(npz, teacher, out, *extra))


def expert_files(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {path.name: load_file(str(path)) for path in sorted(out.glob("expert-*.safetensors"))}


def assert_same_experts(a: Path, b: Path) -> None:
    files_a, files_b = expert_files(a), expert_files(b)
    assert list(files_a) == list(files_b) == ["expert-00001.safetensors", "expert-00002.safetensors"]
    for name in files_a:
        for key in ("trajectory", "sample_loss"):
            assert torch.equal(files_a[name][key], files_b[name][key]), (name, key)
        assert file_sha256(a / name) == file_sha256(b / name)
    manifest_a, manifest_b = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert [e["sha256"] for e in manifest_a["experts"]] == [e["sha256"] for e in manifest_b["experts"]]
    assert [e["epoch_losses"] for e in manifest_a["experts"]] == [e["epoch_losses"] for e in manifest_b["experts"]]


def test_experts_artifact(tiny_npz, tiny_teacher, tmp_path):
    cfg = smoke(tiny_npz, tiny_teacher, tmp_path / "e")
    assert train_experts(cfg, show_progress=False) == tmp_path / "e"
    manifest = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert manifest["kind"] == "ssdd.experts" and manifest["epochs"] == 3
    assert [e["file"] for e in manifest["experts"]] == ["expert-00001.safetensors", "expert-00002.safetensors"]
    assert manifest["model"]["name"] == "convnet_mtt" and manifest["source"]["images"] == 64
    experts = load_experts(tmp_path / "e")
    assert experts.count == 2 and experts.epochs == 3
    files = expert_files(tmp_path / "e")
    losses = []
    for i, entry in enumerate(manifest["experts"]):
        student = build_student(cfg, 16, 8, expert_seed(cfg.seed, i))
        flat = FlatModel(student)
        assert experts.parameters == flat.size and experts.layout == flat.layout()
        trajectory = files[entry["file"]]["trajectory"]
        assert trajectory.shape == (4, flat.size) and trajectory.dtype == torch.float32
        assert torch.equal(experts.snapshot(i, 0), flat.flatten())  # the seeded initialisation
        assert torch.equal(experts.snapshot(i, 3), trajectory[3])
        assert all((trajectory[k + 1] - trajectory[k]).abs().max() > 0 for k in range(3))  # trained every epoch
        assert entry["seed"] == expert_seed(cfg.seed, i) and len(entry["epoch_losses"]) == 3
        sample_loss = files[entry["file"]]["sample_loss"]
        assert sample_loss.shape == (64,) and bool((sample_loss >= 0).all())
        assert entry["final_loss"] == pytest.approx(float(sample_loss.mean()))
        losses.append(sample_loss)
    assert not torch.equal(experts.snapshot(0, 0), experts.snapshot(1, 0))  # one seed per expert
    scores = experts.sample_scores()
    assert scores.shape == (64,)  # one value per source image
    assert torch.allclose(scores, (losses[0] + losses[1]) / 2)
    with pytest.raises(ValueError, match="outside"):
        experts.snapshot(0, 4)


def test_interrupted_runs_resume_to_identical_experts(tiny_npz, tiny_teacher, tmp_path, monkeypatch, capsys):
    import ssdd.run.loop

    train_experts(smoke(tiny_npz, tiny_teacher, tmp_path / "full"), show_progress=False)

    # paused between experts: stop_after_experts=1, then `ssdd experts --resume`
    assert train_experts(smoke(tiny_npz, tiny_teacher, tmp_path / "paused", "stop_after_experts=1"),
                         show_progress=False) is None
    assert not (tmp_path / "paused" / "manifest.json").exists()
    assert [p.name for p in (tmp_path / "paused").glob("expert-*")] == ["expert-00001.safetensors"]
    assert main(["experts", "--no-progress", "--resume", *args(tiny_npz, tiny_teacher, tmp_path / "paused")]) == 0
    assert_same_experts(tmp_path / "full", tmp_path / "paused")

    # paused inside expert 1 by a time limit (0.6 ms: after its first epoch), then resumed
    capsys.readouterr()
    assert main(["experts", "--no-progress", *args(tiny_npz, tiny_teacher, tmp_path / "timed"),
                 "stop_after_minutes=0.00001"]) == 0
    assert "paused after 0 of 2 experts and 1 epoch of the next (stop_after_minutes=1e-05)" in capsys.readouterr().out
    assert main(["experts", "--no-progress", "--resume", *args(tiny_npz, tiny_teacher, tmp_path / "timed")]) == 0
    assert_same_experts(tmp_path / "full", tmp_path / "timed")

    # interrupted inside expert 1, right after its first epoch's checkpoint
    original, calls = ssdd.run.loop.save_checkpoint, []

    def save_then_interrupt(*a, **k):
        original(*a, **k)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(ssdd.run.loop, "save_checkpoint", save_then_interrupt)
    code = main(["experts", "--no-progress", *args(tiny_npz, tiny_teacher, tmp_path / "cut")])
    assert code != 0 and "interrupted" in capsys.readouterr().err
    assert not list((tmp_path / "cut").glob("expert-*")) and (tmp_path / "cut" / "checkpoint.pt").is_file()
    assert main(["experts", "--no-progress", "--resume", *args(tiny_npz, tiny_teacher, tmp_path / "cut")]) == 0
    assert len(calls) > 2
    assert_same_experts(tmp_path / "full", tmp_path / "cut")

    # a larger num_experts on resume adds experts and keeps the finished ones as they were
    before = file_sha256(tmp_path / "full" / "expert-00002.safetensors")
    train_experts(smoke(tiny_npz, tiny_teacher, tmp_path / "full", "num_experts=3"), resume=True, show_progress=False)
    assert load_experts(tmp_path / "full").count == 3
    assert file_sha256(tmp_path / "full" / "expert-00002.safetensors") == before


def test_one_line_errors(tiny_npz, tiny_teacher, tmp_path, capsys):
    out = tmp_path / "e"
    train_experts(smoke(tiny_npz, tiny_teacher, out, "num_experts=1", "epochs=1"), show_progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train_experts(smoke(tiny_npz, tiny_teacher, out, "num_experts=1", "epochs=1"), show_progress=False)
    assert main(["experts", "--no-progress", *args(tiny_npz, tiny_teacher, out, "num_experts=1", "epochs=1")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--resume" in err and len(err.splitlines()) == 1

    with pytest.raises(ConfigError, match="BatchNorm"):
        train_experts(smoke(tiny_npz, tiny_teacher, tmp_path / "bn", "model.name=convnet"), show_progress=False)
    assert not (tmp_path / "bn").exists()  # refused before any work

    path = out / "expert-00001.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        load_experts(out).snapshot(0, 0)
    with pytest.raises(FileNotFoundError, match="ssdd experts"):
        load_experts(tmp_path / "missing")


def test_a_batch_larger_than_the_source_is_refused_before_work(tiny_npz, tiny_teacher, tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["experts", "--no-progress", *args(tiny_npz, tiny_teacher, out, "batch_size=100000")]) == 2
    err = capsys.readouterr().err.strip()
    assert "batch_size=100000 exceeds the 64 source images" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_numerical_stop_advises_a_lower_lr_that_the_resume_accepts(tiny_npz, tiny_teacher, tmp_path, monkeypatch,
                                                                     capsys):
    import ssdd.experts.train as train_module

    real_mse, calls = train_module.F.mse_loss, {"n": 0}

    def nan_in_the_second_epoch(*a, **k):
        calls["n"] += 1
        return real_mse(*a, **k) * (float("nan") if calls["n"] > 4 else 1.0)  # 64 images / batch 16 = 4 steps

    monkeypatch.setattr(train_module.F, "mse_loss", nan_in_the_second_epoch)
    out = tmp_path / "e"
    assert main(["experts", "--no-progress", *args(tiny_npz, tiny_teacher, out)]) == 4
    line = capsys.readouterr().err.strip()
    assert "continue with --resume lr=<lower value> (from its state at expert 1, epoch 1" in line
    monkeypatch.setattr(train_module.F, "mse_loss", real_mse)
    assert main(["experts", "--no-progress", "--resume", *args(tiny_npz, tiny_teacher, out, "lr=0.05")]) == 0
    assert load_experts(out).count == 2


def test_a_kill_between_an_expert_s_last_epoch_and_its_file_resumes_to_the_same_experts(tiny_npz, tiny_teacher,
                                                                                         tmp_path, monkeypatch):
    import ssdd.run.loop

    train_experts(smoke(tiny_npz, tiny_teacher, tmp_path / "full"), show_progress=False)
    original = ssdd.run.loop.save_checkpoint

    def save_then_interrupt_before_the_file(path, state):
        original(path, state)
        current = state.get("current")
        if current is not None and len(current["losses"]) == 3:  # epochs=3: the expert's last epoch is saved
            raise KeyboardInterrupt

    monkeypatch.setattr(ssdd.run.loop, "save_checkpoint", save_then_interrupt_before_the_file)
    with pytest.raises(KeyboardInterrupt):
        train_experts(smoke(tiny_npz, tiny_teacher, tmp_path / "cut"), show_progress=False)
    assert not list((tmp_path / "cut").glob("expert-*"))
    monkeypatch.setattr(ssdd.run.loop, "save_checkpoint", original)
    train_experts(smoke(tiny_npz, tiny_teacher, tmp_path / "cut"), resume=True, show_progress=False)
    assert_same_experts(tmp_path / "full", tmp_path / "cut")
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["expert"], r["epoch"]) for r in rows] == [(i, e) for i in (1, 2) for e in (1, 2, 3)]
