"""`ssdd import-teacher`: checkpoints in exactly the layouts KRR-ST and solo-learn write, and plain state dicts."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models import resnet18

from ssdd.cli import main
from ssdd.config import ModelConfig
from ssdd.models import build_model
from ssdd.teacher import load_teacher
from ssdd.teacher.importers import TeacherImportError, read_checkpoint, resolve_normalization

KRR_ST_CIFAR100 = ([0.5071, 0.4866, 0.4409], [0.2673, 0.2564, 0.2762])  # KRR-ST data/augmentation.py, 32 px
SOLO_CIFAR100 = ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762])  # solo-learn pretrain_dataloader.py


def _randomise_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so a wrong mapping cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.data.copy_(1 + 0.1 * torch.randn(n, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(n, generator=generator))
    return model.eval()


def _krr_st_resnet18(seed: int = 0) -> nn.Module:
    """The teacher network exactly as KRR-ST's train.py builds it."""
    torch.manual_seed(seed)
    model = resnet18()
    model.fc = nn.Identity()
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    model.maxpool = nn.Identity()
    return _randomise_batchnorm(model, seed)


def _images01(count: int, resolution: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, resolution, resolution, generator=generator)


def _normalised(images01: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    return (images01 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _assert_same_features(teacher_dir: Path, original: nn.Module, mean: list[float], std: list[float],
                          resolution: int) -> None:
    teacher = load_teacher(teacher_dir)
    images = _images01(6, resolution)
    with torch.no_grad():
        expected = original.eval()(_normalised(images, mean, std))
        got = teacher(images)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("ssdd import-teacher: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def krr_st_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    model = _krr_st_resnet18()
    path = tmp_path_factory.mktemp("krr_st") / "barlow_twins_resnet18_cifar100.pt"
    torch.save(model.state_dict(), path)  # as KRR-ST's checkpoints are saved and loaded (strict load_state_dict)
    return path, model


def _lightning_checkpoint(backbone: nn.Module, **extra: object) -> dict[str, object]:
    """A solo-learn Barlow Twins LightningModule's checkpoint: backbone., projector. and classifier. keys."""
    projector = nn.Sequential(nn.Linear(512, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32))
    classifier = nn.Linear(512, 100)
    state: dict[str, torch.Tensor] = {}
    for prefix, module in (("backbone", backbone), ("projector", projector), ("classifier", classifier)):
        state.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
    return {"epoch": 7, "global_step": 1400, "pytorch-lightning_version": "2.0.2", "state_dict": state,
            "loops": {}, "callbacks": {}, "optimizer_states": [{"state": {}, "param_groups": []}],
            "lr_schedulers": [], **extra}


def test_krr_st_checkpoint_imports_with_identical_features(krr_st_checkpoint, tmp_path, capsys):
    path, original = krr_st_checkpoint
    out = tmp_path / "teacher"
    assert main(["import-teacher", str(path), "--format", "krr_st", "--dataset", "cifar100", "--out", str(out),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "(16, 512)" in printed and "max |diff|" in printed
    _assert_same_features(out, original, *KRR_ST_CIFAR100, resolution=32)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "ssdd.teacher"
    assert manifest["model"] == {"name": "resnet18", "width": 64, "depth": 0, "feature": "default"}
    assert manifest["resolution"] == 32 and manifest["feature_dim"] == 512
    assert manifest["normalization"]["mean"] == KRR_ST_CIFAR100[0]
    assert manifest["normalization"]["std"] == KRR_ST_CIFAR100[1]
    origin = manifest["origin"]
    assert origin["format"] == "krr_st" and origin["file"] == path.name
    assert origin["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert origin["tensors_imported"] == len(original.state_dict())
    assert origin["source_architecture_check"]["max_abs_diff"] < 1e-5
    assert manifest["linear_probe"]["top1"] is None
    assert manifest["features"]["shape"] == [16, 512]


def test_solo_learn_checkpoint_strips_backbone_and_ignores_heads(tmp_path, capsys):
    backbone = _krr_st_resnet18(seed=3)  # solo-learn's CIFAR stem is the same modification of torchvision's
    path = tmp_path / "barlow_twins-cifar100-ep=7.ckpt"
    torch.save(_lightning_checkpoint(backbone), path)
    out = tmp_path / "teacher"
    assert main(["import-teacher", str(path), "-f", "solo_learn", "--dataset", "cifar100", "-o", str(out),
                 "--device", "cpu"]) == 0
    assert "projector.* (9 tensors)" in capsys.readouterr().out
    _assert_same_features(out, backbone, *SOLO_CIFAR100, resolution=32)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["origin"]["ignored"] == {"classifier": 2, "projector": 9}
    assert manifest["epochs"] == 7


def test_pickled_objects_need_trust_pickle(tmp_path, capsys):
    backbone = _krr_st_resnet18(seed=4)
    path = tmp_path / "with_hparams.ckpt"
    torch.save(_lightning_checkpoint(backbone, hyper_parameters=argparse.Namespace(lr=0.3, method="barlow")), path)
    out = tmp_path / "teacher"
    _one_line_error(capsys, ["import-teacher", str(path), "-f", "solo_learn", "--dataset", "cifar100",
                             "-o", str(out)], "argparse.Namespace", "--trust-pickle")
    assert not out.exists()
    with pytest.raises(TeacherImportError, match="trust-pickle"):
        read_checkpoint(path)
    assert main(["import-teacher", str(path), "-f", "solo_learn", "--dataset", "cifar100", "-o", str(out),
                 "--device", "cpu", "--trust-pickle"]) == 0
    _assert_same_features(out, backbone, *SOLO_CIFAR100, resolution=32)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["origin"]["loaded_with"] == "torch.load(weights_only=False)"


def _small_convnet(seed: int = 5) -> tuple[nn.Module, list[str]]:
    torch.manual_seed(seed)
    model = _randomise_batchnorm(build_model(ModelConfig(name="convnet", width=8, depth=2, feature="pool"), 16), seed)
    flags = ["--model", "convnet", "--width", "8", "--depth", "2", "--feature", "pool", "--resolution", "16",
             "--mean", "0.4", "0.45", "0.5", "--std", "0.2", "0.25", "0.3", "--device", "cpu"]
    return model, flags


def test_state_dict_of_registered_model_with_probe(tmp_path, tiny_npz, capsys):
    model, flags = _small_convnet()
    path = tmp_path / "convnet.pt"
    torch.save(model.state_dict(), path)
    out = tmp_path / "teacher"
    assert main(["import-teacher", str(path), "-f", "state_dict", "-o", str(out), *flags,
                 "--probe-data", str(tiny_npz), "--probe-iterations", "50"]) == 0
    printed = capsys.readouterr().out
    assert "linear probe on" in printed and f"(32, {model.feature_dim})" in printed
    _assert_same_features(out, model, [0.4, 0.45, 0.5], [0.2, 0.25, 0.3], resolution=16)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == {"name": "convnet", "width": 8, "depth": 2, "feature": "pool"}
    assert 0.0 <= manifest["linear_probe"]["top1"] <= 100.0
    assert manifest["linear_probe"]["test_images"] == 32
    assert manifest["features"]["shape"] == [32, model.feature_dim]
    assert manifest["origin"]["source_architecture_check"] is None
    assert manifest["data_fingerprint"]


def test_state_dict_from_safetensors_and_with_prefix(tmp_path):
    model, flags = _small_convnet(seed=6)
    tensors = {f"module.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp_path / "convnet.safetensors"))
    out = tmp_path / "teacher"
    assert main(["import-teacher", str(tmp_path / "convnet.safetensors"), "-f", "state_dict", "-o", str(out),
                 "--prefix", "module.", *flags]) == 0
    _assert_same_features(out, model, [0.4, 0.45, 0.5], [0.2, 0.25, 0.3], resolution=16)
    assert main(["import-teacher", str(tmp_path / "convnet.safetensors"), "-f", "state_dict", "-o", str(out),
                 "--prefix", "module.", *flags]) == 2  # the folder already holds an artifact
    assert main(["import-teacher", str(tmp_path / "convnet.safetensors"), "-f", "state_dict", "-o", str(out),
                 "--prefix", "module.", "--overwrite", "--save-dtype", "float16", *flags]) == 0
    assert json.loads((out / "manifest.json").read_text())["dtype"] == "float16"
    # a shard of an earlier, larger teacher in the folder does not stay beside the new one
    stray = out / "backbone-00002-of-00002.safetensors"
    stray.write_bytes(next(out.glob("backbone-00001-*.safetensors")).read_bytes())
    assert main(["import-teacher", str(tmp_path / "convnet.safetensors"), "-f", "state_dict", "-o", str(out),
                 "--prefix", "module.", "--overwrite", *flags]) == 0
    assert not stray.exists() and sorted(p.name for p in out.iterdir()) == ["backbone-00001-of-00001.safetensors",
                                                                            "manifest.json"]
    # a training loop's checkpoint, {'state_dict': {...}, 'epoch': ...}: its state dict, with --prefix as before
    torch.save({"state_dict": tensors, "epoch": 3}, tmp_path / "wrapped.pt")
    assert main(["import-teacher", str(tmp_path / "wrapped.pt"), "-f", "state_dict", "-o", str(tmp_path / "w"),
                 "--prefix", "module.", *flags]) == 0
    _assert_same_features(tmp_path / "w", model, [0.4, 0.45, 0.5], [0.2, 0.25, 0.3], resolution=16)


def test_bad_keys_and_shapes_are_one_line_errors(krr_st_checkpoint, tmp_path, capsys):
    model, flags = _small_convnet(seed=7)
    state = model.state_dict()
    removed = "features.0.weight"
    del state[removed]
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad_keys.pt")
    _one_line_error(capsys, ["import-teacher", str(tmp_path / "bad_keys.pt"), "-f", "state_dict",
                             "-o", str(tmp_path / "a"), *flags], "missing 1", removed, "unexpected 1", "extra.weight")

    # torchvision's own stem (7x7 conv1) is not KRR-ST's
    torch.manual_seed(0)
    plain = resnet18()
    plain.fc = nn.Identity()
    torch.save(plain.state_dict(), tmp_path / "imagenet_stem.pt")
    _one_line_error(capsys, ["import-teacher", str(tmp_path / "imagenet_stem.pt"), "-f", "krr_st", "--dataset",
                             "cifar100", "-o", str(tmp_path / "b")], "wrong shape", "conv1.weight", "7x7")

    # a classifier left in the file
    path, original = krr_st_checkpoint
    with_fc = {**original.state_dict(), "fc.weight": torch.zeros(100, 512), "fc.bias": torch.zeros(100)}
    torch.save(with_fc, tmp_path / "with_fc.pt")
    _one_line_error(capsys, ["import-teacher", str(tmp_path / "with_fc.pt"), "-f", "krr_st", "--dataset",
                             "cifar100", "-o", str(tmp_path / "c")], "unexpected 2", "fc.weight", "fc = Identity")

    # a Lightning checkpoint given as krr_st; garbage; a missing file; statistics not given
    torch.save(_lightning_checkpoint(original), tmp_path / "lightning.ckpt")
    _one_line_error(capsys, ["import-teacher", str(tmp_path / "lightning.ckpt"), "-f", "krr_st", "--dataset",
                             "cifar100", "-o", str(tmp_path / "d")], "--format solo_learn")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all" * 4)
    _one_line_error(capsys, ["import-teacher", str(tmp_path / "garbage.pt"), "-f", "krr_st", "--dataset",
                             "cifar100", "-o", str(tmp_path / "e")], "not a PyTorch checkpoint")
    _one_line_error(capsys, ["import-teacher", str(tmp_path / "nope.pt"), "-f", "krr_st", "-o", str(tmp_path / "f")],
                    "not found")
    _one_line_error(capsys, ["import-teacher", str(path), "-f", "state_dict", "-o", str(tmp_path / "g")],
                    "--mean R G B --std R G B")
    for name in "abcdefg":
        assert not (tmp_path / name).exists()


def not_a_checkpoint(path: Path, case: str) -> Path:
    """Files that are not torch.save files, each the way a user meets it (shared with tests/distill/test_interop.py)."""
    import io
    import pickle

    if case == "text":
        path.write_text("hello, not a checkpoint\n")
    elif case == "raw_pickle":
        path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    elif case == "zeros":
        path.write_bytes(bytes(4096))
    elif case == "empty":
        path.write_bytes(b"")
    elif case in ("truncated_zip", "truncated_zip_end", "truncated_legacy"):
        buffer = io.BytesIO()
        torch.save({"w": torch.randn(64, 64)}, buffer, _use_new_zipfile_serialization=case != "truncated_legacy")
        data = buffer.getvalue()
        path.write_bytes(data[:-10] if case == "truncated_zip_end" else data[: len(data) // 2])
    elif case == "legacy_protocol4":  # readable by torch, but not by its safe unpickler
        torch.save({"w": torch.randn(4)}, path, _use_new_zipfile_serialization=False, pickle_protocol=4)
    elif case == "folder":
        path.mkdir()
    return path


NOT_A_CHECKPOINT = {"text": "not a PyTorch checkpoint (neither a torch zip archive nor a torch.save pickle)",
                    "raw_pickle": "not a PyTorch checkpoint (a pickle that is not a torch zip",
                    "zeros": "not a PyTorch checkpoint (neither", "empty": "not a PyTorch checkpoint (an empty file)",
                    "truncated_zip": "not a PyTorch checkpoint (truncated or corrupt)",
                    "truncated_zip_end": "not a PyTorch checkpoint (truncated or corrupt)",
                    "truncated_legacy": "not a PyTorch checkpoint (truncated or corrupt)",
                    "folder": "is a folder, not a checkpoint file",
                    "legacy_protocol4": "a legacy torch.save file (the format before PyTorch 1.6) with a pickle "
                                        "protocol that is not read without unpickling arbitrary objects; pass "
                                        "--trust-pickle only if you trust this file"}


@pytest.mark.parametrize("case", sorted(NOT_A_CHECKPOINT))
def test_files_that_are_not_checkpoints_get_one_clear_line(case, tmp_path, capsys, recwarn):
    path = not_a_checkpoint(tmp_path / "t.pt", case)
    err = _one_line_error(capsys, ["import-teacher", str(path), "-f", "krr_st", "--dataset", "cifar100",
                                   "-o", str(tmp_path / "out")], NOT_A_CHECKPOINT[case])
    assert "weights_only" not in err and "please report" not in err and len(err) < len(str(path)) + 230, err
    assert not [w for w in recwarn if "pickle" in str(w.message)]  # torch's protocol notice is not passed on
    assert not (tmp_path / "out").exists()


def test_non_finite_weights_are_named(krr_st_checkpoint, tmp_path, capsys):
    _, original = krr_st_checkpoint
    state = original.state_dict()
    state["layer2.0.bn1.running_var"] = state["layer2.0.bn1.running_var"].clone()
    state["layer2.0.bn1.running_var"][3] = float("inf")
    torch.save(state, tmp_path / "inf.pt")
    err = _one_line_error(capsys, ["import-teacher", str(tmp_path / "inf.pt"), "-f", "krr_st", "--dataset",
                                   "cifar100", "-o", str(tmp_path / "out")], "non-finite weights",
                          "layer2.0.bn1.running_var")
    assert "learning rate" not in err and "diverged" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value", [("--width", "-1"), ("--width", "0"), ("--resolution", "0"),
                                         ("--resolution", "-32"), ("--depth", "0")])
def test_sizes_must_be_positive(flag, value, krr_st_checkpoint, tmp_path, capsys):
    path, _ = krr_st_checkpoint
    _one_line_error(capsys, ["import-teacher", str(path), "-f", "krr_st", "--dataset", "cifar100", flag, value,
                             "-o", str(tmp_path / "out")], f"{flag} must be a positive number, got {value}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--probe-iterations", "-5"], "--probe-iterations must be a positive number, got -5"),
    (["--probe-iterations", "0"], "--probe-iterations must be a positive number, got 0"),
    (["--probe-subset", "-1", "5"], "--probe-subset TRAIN must be a positive number or 0 (all), got -1"),
    (["--probe-subset", "5", "-2"], "--probe-subset TEST must be a positive number or 0 (all), got -2")])
def test_probe_sizes_must_be_positive(flags, needle, krr_st_checkpoint, tiny_npz, tmp_path, capsys):
    path, _ = krr_st_checkpoint
    _one_line_error(capsys, ["import-teacher", str(path), "-f", "krr_st", "--dataset", "cifar100",
                             "--probe-data", str(tiny_npz), *flags, "-o", str(tmp_path / "out")], needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--probe-data", "nowhere"], "--probe-data nowhere: not found (an .npz in ssdd's NumPy format"),
    (["--device", "mps"], "--device=mps: ssdd runs on cpu and cuda only")])
def test_a_missing_probe_data_or_an_unsupported_device_is_one_line_naming_the_flag(flags, needle, krr_st_checkpoint,
                                                                                  tmp_path, capsys, monkeypatch):
    path, _ = krr_st_checkpoint
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, ["import-teacher", str(path), "-f", "krr_st", "--dataset", "cifar100", *flags,
                             "-o", str(tmp_path / "out")], needle)
    assert not (tmp_path / "out").exists()


def test_mean_and_std_take_commas_or_spaces(krr_st_checkpoint, tmp_path, capsys):
    path, original = krr_st_checkpoint
    mean, std = [0.4, 0.45, 0.5], [0.2, 0.25, 0.3]
    assert main(["import-teacher", "-f", "krr_st", "--mean", "0.4,0.45,0.5", "--std", "0.2", "0.25", "0.3",
                 str(path), "-o", str(tmp_path / "t"), "--device", "cpu"]) == 0
    assert load_teacher(tmp_path / "t").manifest["normalization"]["mean"] == mean
    _assert_same_features(tmp_path / "t", original, mean, std, 32)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:  # argparse's usage error
        main(["import-teacher", str(path), "-f", "krr_st", "--mean", "0.4,0.45", "--std", "0.2,0.25,0.3",
              "-o", str(tmp_path / "u")])
    assert info.value.code == 2 and "expected 3 numbers" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()


def test_format_defaults_for_normalisation():
    mean, std, resolution, origin = resolve_normalization("krr_st", "tinyimagenet", None, None, 0)
    assert (mean, std, resolution) == ([0.4802, 0.4481, 0.3975], [0.2770, 0.2691, 0.2821], 64)
    assert "augmentation.py" in origin
    mean, std, resolution, _ = resolve_normalization("krr_st", "cifar100", None, None, 0)
    assert (mean, std, resolution) == (*KRR_ST_CIFAR100, 32)
    mean, std, resolution, _ = resolve_normalization("solo_learn", "cifar100", None, None, 0)
    assert (mean, std, resolution) == (*SOLO_CIFAR100, 32)
    assert resolve_normalization("krr_st", "cifar100", [0.1] * 3, [0.2] * 3, 0)[:3] == ([0.1] * 3, [0.2] * 3, 32)
    with pytest.raises(TeacherImportError, match="--mean and --std"):
        resolve_normalization("krr_st", "stl10", None, None, 0)
    with pytest.raises(TeacherImportError, match="both"):
        resolve_normalization("state_dict", "", [0.1] * 3, None, 0)
