"""End-to-end teacher training at smoke scale: artifacts, resume equality, DDP with 2 processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssdd.cli import main
from ssdd.config import load_config
from ssdd.run.compiled import switch
from ssdd.teacher import load_teacher
from ssdd.teacher.config import TeacherConfig
from ssdd.teacher.train import train_teacher

SMOKE = ["model.name=convnet", "model.width=8", "model.depth=2", "model.feature=pool", "projector=[32,32]",
         "optim.batch_size=16", "optim.epochs=2", "optim.warmup_epochs=1", "probe.iterations=50",
         "data.resolution=16", "device=cpu"]


def smoke_config(npz: Path, out_dir: Path, *extra: str) -> TeacherConfig:
    return load_config(TeacherConfig, None, [f"data.path={npz}", f"out_dir={out_dir}", *SMOKE, *extra])


def backbone_state(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / "checkpoint.pt", weights_only=True)["model"]


def test_train_writes_artifact_and_teacher_loads(tiny_npz, tmp_path):
    out = tmp_path / "run"
    artifact = train_teacher(smoke_config(tiny_npz, out), show_progress=False)
    assert artifact == out / "teacher"
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["kind"] == "ssdd.teacher" and manifest["epochs"] == 2
    assert 0.0 <= manifest["linear_probe"]["top1"] <= 100.0
    assert manifest["config"]["optim"]["epochs"] == 2 and manifest["feature_dim"] == 16
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert (out / "config.yaml").is_file() and (out / "teacher_curves.png").is_file()
    teacher = load_teacher(artifact)
    features = teacher.encode(torch.randint(0, 255, (5, 3, 16, 16), dtype=torch.uint8))
    assert features.shape == (5, 16) and torch.isfinite(features).all()
    assert not any(p.requires_grad for p in teacher.parameters())
    # saved weights are exactly the trained backbone's
    saved = load_file(str(artifact / manifest["shards"][0]["file"]))
    trained = backbone_state(out)
    for key, value in saved.items():
        assert torch.equal(value, trained[f"backbone.{key}"])


@pytest.mark.parametrize("pause", ["stop_after_epochs=1", "stop_after_minutes=0.0001"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_npz, tmp_path, pause, capsys):
    """Paused after the first epoch by an epoch count or by a time limit (6 ms: one epoch is longer)."""
    full, split = tmp_path / "full", tmp_path / "split"
    train_teacher(smoke_config(tiny_npz, full, "optim.epochs=3"), show_progress=False)
    assert train_teacher(smoke_config(tiny_npz, split, "optim.epochs=3", pause), show_progress=False) is None
    assert ("(stop_after_minutes=0.0001)" in capsys.readouterr().out) == pause.startswith("stop_after_minutes")
    assert json.loads((split / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    train_teacher(smoke_config(tiny_npz, split, "optim.epochs=3"), resume=True, show_progress=False)
    a, b = backbone_state(full), backbone_state(split)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_probe_every_records_the_probe_curve_and_changes_no_weight(tiny_npz, tmp_path):
    plain, probed = tmp_path / "plain", tmp_path / "probed"
    train_teacher(smoke_config(tiny_npz, plain, "optim.epochs=3"), show_progress=False)
    train_teacher(smoke_config(tiny_npz, probed, "optim.epochs=3", "probe_every=1", "save_dtype=float32"),
                  show_progress=False)
    history = json.loads((probed / "history.json").read_text())
    assert [("probe_top1" in h) for h in history] == [True, True, True]
    manifest = json.loads((probed / "teacher" / "manifest.json").read_text())
    assert history[-1]["probe_top1"] == manifest["linear_probe"]["top1"]
    assert all("probe_top1" not in h for h in json.loads((plain / "history.json").read_text()))
    a, b = backbone_state(plain), backbone_state(probed)  # probing during training leaves it untouched
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_a_changed_config_and_fresh_run_refuses_existing_dir(tiny_npz, tmp_path):
    out = tmp_path / "run"
    train_teacher(smoke_config(tiny_npz, out, "stop_after_epochs=1"), show_progress=False)
    with pytest.raises(ValueError, match=r"optim\.lr"):
        train_teacher(smoke_config(tiny_npz, out, "optim.lr=0.5"), resume=True, show_progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train_teacher(smoke_config(tiny_npz, out), show_progress=False)
    with pytest.raises(FileNotFoundError):
        train_teacher(smoke_config(tiny_npz, tmp_path / "none"), resume=True, show_progress=False)


def test_channels_last_off_from_the_command_line(tiny_npz, tmp_path):
    assert train_teacher(smoke_config(tiny_npz, tmp_path / "o", "channels_last=off", "stop_after_epochs=1"),
                         show_progress=False) is None
    with pytest.raises(ValueError, match="channels_last"):
        train_teacher(smoke_config(tiny_npz, tmp_path / "x", "channels_last=maybe"), show_progress=False)


def test_batch_larger_than_dataset_is_rejected(tiny_npz, tmp_path):
    with pytest.raises(ValueError, match="exceeds"):
        train_teacher(smoke_config(tiny_npz, tmp_path / "r", "optim.batch_size=1024"), show_progress=False)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    code = main(["teacher", f"data.path={tmp_path / 'missing.npz'}", f"out_dir={tmp_path / 'o'}", "device=cpu"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.npz" in err[0] and "not found" in err[0]
    assert main(["teacher", "optim.epochz=3"]) == 2
    assert "optim.epochz" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tiny_npz, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "ssdd", "teacher", "--no-progress",
           f"data.path={tiny_npz}", f"out_dir={out}", *SMOKE]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    manifest = json.loads((out / "teacher" / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["aug_generator"]) == 2
    assert not torch.equal(state["aug_generator"][0], state["aug_generator"][1])  # ranks draw different views


def test_as_saved_rounds_weights_and_buffers_through_the_saved_dtype():
    from ssdd.teacher.train import as_saved

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    net[1].running_mean.normal_()
    rounded = as_saved(net, torch.float16)
    for (name, a), b in zip(net.state_dict().items(), rounded.state_dict().values(), strict=True):
        if a.is_floating_point():
            assert torch.equal(b, a.half().float()), name
    assert as_saved(net, torch.float32) is net
    assert not torch.equal(net[0].weight, rounded[0].weight)  # the original keeps its float32 weights


def test_the_fast_path_gives_the_plain_history_and_weights(tiny_npz, tmp_path):
    """fast=on on the CPU (branch-free jitter, foreach LARS, the step log read at the epoch's end) against the
    plain path (auto on the CPU): the same losses, monitor accuracies and weights, to float tolerance."""
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    train_teacher(smoke_config(tiny_npz, plain, "stop_after_epochs=2"), show_progress=False)
    train_teacher(smoke_config(tiny_npz, fast, "stop_after_epochs=2", "fast=on"), show_progress=False)
    read = [[json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] for out in (plain, fast)]
    assert len(read[0]) == len(read[1]) == 2
    for a, b in zip(*read, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["monitor_top1"] == pytest.approx(a["monitor_top1"])
    a, b = backbone_state(plain), backbone_state(fast)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-4, atol=1e-6), key


def test_a_nan_loss_on_the_fast_path_stops_naming_its_first_step(tiny_npz, tmp_path, monkeypatch):
    """The fast path reads the losses at the epoch's end (4 steps here): the stop names the step that went
    NaN, and the checkpoint of the epoch before stays."""
    import ssdd.teacher.train as train_module
    from ssdd.run.guard import NumericalStop

    real_loss, calls = train_module.barlow_twins_loss, {"n": 0}

    def nan_from_the_sixth_step(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 6 else loss  # epoch 2, step 1 (4 steps per epoch)

    monkeypatch.setattr(train_module, "barlow_twins_loss", nan_from_the_sixth_step)
    out = tmp_path / "nan"
    with pytest.raises(NumericalStop, match=r"loss became nan at epoch 2, step 1"):
        train_teacher(smoke_config(tiny_npz, out, "fast=on"), show_progress=False)
    assert calls["n"] == 8  # it went on to the epoch's end, where the losses were read
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["config"]["fast"]
    assert switch(saved, "fast", torch.device("cpu"))  # the fast path ran (YAML's on is saved as 'True')


@pytest.mark.parametrize(("override", "named"), [("fast=quick", "fast='quick'"), ("compile=maybe", "compile='maybe'")])
def test_bad_fast_and_compile_settings_are_refused_before_any_work(tiny_npz, tmp_path, override, named):
    with pytest.raises(ValueError, match=f"^{named}: must be one of auto, on, off$"):
        train_teacher(smoke_config(tiny_npz, tmp_path / "r", override), show_progress=False)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_a_compiled_fast_run_gives_the_plain_history(tiny_npz, tmp_path):
    """compile=on (inductor builds the model's and the views' kernels: minutes on 2 CPU cores) with fast=on
    against the plain path: the same losses to float tolerance (the views' bicubic resampling and the
    model's kernels round differently), so weights only close."""
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    train_teacher(smoke_config(tiny_npz, plain, "stop_after_epochs=1"), show_progress=False)
    train_teacher(smoke_config(tiny_npz, fast, "stop_after_epochs=1", "fast=on", "compile=on"), show_progress=False)
    a, b = ([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] for out in (plain, fast))
    assert b[0]["loss"] == pytest.approx(a[0]["loss"], rel=1e-3)
    for key, value in backbone_state(plain).items():
        assert torch.allclose(value.float(), backbone_state(fast)[key].float(), rtol=1e-2, atol=1e-4), key


def test_the_teacher_refuses_images_it_would_embed_wrongly(tiny_teacher):
    """uint8 pixels through teacher(x) (never scaled), floats through encode (scaled twice) and another resolution
    all ran before, giving other features without a word; each is now one line naming the right call."""
    auto = load_teacher(tiny_teacher, device="auto")  # a device name as the configs take it
    assert auto.mean.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    teacher = load_teacher(tiny_teacher, device="cpu")
    pixels = torch.randint(0, 255, (3, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(teacher.encode(pixels), teacher(pixels.float() / 255), atol=1e-5)
    with pytest.raises(ValueError, match=r"^Teacher\.encode takes uint8 pixels \(0 to 255\), got torch\.float32; "
                                         r"float images in \[0, 1\] go through teacher\(x\)$"):
        teacher.encode(pixels.float() / 255)
    with pytest.raises(ValueError, match=r"^teacher\(x\) takes float images in \[0, 1\], got torch\.uint8; uint8 "
                                         r"pixels go through Teacher\.encode$"):
        teacher(pixels)
    with pytest.raises(ValueError, match=r"^Teacher\.encode takes \(N, 3, 16, 16\) images \(the teacher's "
                                         r"resolution\), got \(3, 3, 32, 32\)$"):
        teacher.encode(torch.zeros((3, 3, 32, 32), dtype=torch.uint8))
