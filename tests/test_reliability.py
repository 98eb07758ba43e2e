"""Nothing lost, nothing silently wrong (issue 11): bad inputs, tampered artifacts, numerical failures, kills.

Each case gives a one-line error with a documented exit code, or the correct result. Settings are tiny: the
suite runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import make_npz, make_teacher
from ssdd.artifacts.files import ArtifactError, NonFiniteError, load_tensors, save_tensors
from ssdd.cli import main
from ssdd.config import load_config
from ssdd.data import DataError, load_npz
from ssdd.distill import load_distilled
from ssdd.distill.config import DistillConfig
from ssdd.distill.run import run_distill
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.validate import validate_evaluate
from ssdd.run.runtime import file_sha256
from ssdd.teacher import load_teacher
from ssdd.teacher.config import TeacherConfig
from ssdd.teacher.train import train_teacher

pytestmark = pytest.mark.usefixtures("one_thread")

TEACHER = ["model.name=convnet", "model.width=4", "model.depth=2", "model.feature=pool", "projector=[16,16]",
           "optim.batch_size=16", "optim.epochs=2", "optim.warmup_epochs=1", "probe.iterations=10",
           "data.resolution=16", "device=cpu"]
DISTILL = ["data.resolution=16", "budget=10", "outer.steps=4", "outer.batch_size=8", "pool.size=1", "pool.max_steps=3",
           "outer.model.width=4", "outer.model.depth=2", "device=cpu", "log_every=2", "checkpoint_every=2"]
BOOST = ["data.resolution=16", "budget=3", "method=boost", "outer.steps=2", "outer.batch_size=8", "outer.lr=0.01",
         "pool.size=1", "pool.max_steps=3", "outer.model.width=4", "outer.model.depth=2", "device=cpu", "log_every=1",
         "checkpoint_every=2", "boost.image_bases=8", "boost.image_resolution=8", "boost.target_bases=4",
         "boost.approx_steps=10", "boost.approx_lr=1e-3"]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def teacher_cfg(npz: Path, out: Path, *extra: str) -> TeacherConfig:
    return load_config(TeacherConfig, None, [f"data.path={npz}", f"out_dir={out}", *TEACHER, *extra])


def distill_cfg(npz: Path, teacher: Path, out: Path, *extra: str, base: list[str] = DISTILL) -> DistillConfig:
    return load_config(DistillConfig, None, [f"data.path={npz}", f"teacher={teacher}", f"out_dir={out}", *base,
                                             *extra])


def evaluate_cfg(npz: Path, teacher: Path, out: Path, sets: list[Path], *extra: str) -> EvaluateConfig:
    return load_config(EvaluateConfig, None, [
        f"teacher={teacher}", f"source.path={npz}", f"out_dir={out}", "device=cpu", "cka_images=0",
        "full_data.enabled=false", f"targets=[{{source: npz, path: {npz}}}]", "seeds=1", "models=[{name: convnet, "
        "width: 4, depth: 2}]", f"distilled=[{', '.join(str(s) for s in sets)}]", *extra])


def rewrite_manifest(folder: Path, **changes: object) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


# ----------------------------------------------------------------------------- validate before work
@pytest.mark.parametrize("override, named", [
    ("save_dtype=bfloat16", "save_dtype"),
    ("optim.batch_size=0", "optim.batch_size"),
    ("optim.lr=nan", "optim.lr"),
    ("optim.epochs=0", "optim.epochs"),
    ("data.test_split=val", "split 'val' does not exist"),
    ("optim.batch_size=1024", "exceeds the 64 training images"),
    ("precision=fp8", "precision"),
    ("projector=[]", "projector"),
    ("optim.batch_size=1", "optim.batch_size=1: must be a whole number, at least 2"),
    ("seed=100000000000000000000", "seed=100000000000000000000: a seed is a whole number from 0 to 4,294,967,295"),
    ("seed=-1", "seed=-1: a seed is a whole number from 0"),
    ("probe.iterations=100000000000000000000", "probe.iterations=100000000000000000000: out of range (a 64-bit"),
    ("data.source=digits optim.batch_size=100000",  # known once loaded, still before anything is written
     "optim.batch_size=100000 exceeds the 1347 training images of digits [train]; lower optim.batch_size"),
])
def test_teacher_settings_fail_before_any_work(override, named, tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    data = [] if "data.source=digits" in override else [f"data.path={tiny_npz}"]  # digits reads no path
    assert main(["teacher", "--no-progress", *data, f"out_dir={out}", *TEACHER, *override.split()]) == 2
    assert named in one_error_line(capsys)
    assert not out.exists()  # nothing was written, nothing was trained


@pytest.mark.parametrize("device", ["mps", "meta", "xpu:1"])
def test_a_device_ssdd_does_not_run_on_is_one_line(device):
    from ssdd.config import ConfigError
    from ssdd.run.checks import check_device

    with pytest.raises(ConfigError, match=rf"^device={device}: ssdd runs on cpu and cuda only"):
        check_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(tiny_npz, tmp_path, capsys):
    assert main(["teacher", f"data.path={tiny_npz}", f"out_dir={tmp_path / 'o'}", *TEACHER, "device=cuda"]) == 2
    assert "device=cuda: CUDA is not available" in one_error_line(capsys)


def test_an_out_dir_that_cannot_be_created_is_one_line(tiny_npz, tmp_path, capsys):
    assert main(["teacher", f"data.path={tiny_npz}", f"out_dir={tiny_npz}/run", *TEACHER]) == 2
    assert "cannot be created" in one_error_line(capsys)


@pytest.mark.parametrize("override, named", [
    ("budget=inf", "budget=inf"),
    ("outer.batch_size=0", "outer.batch_size=0"),
    ("outer.steps=0", "outer.steps=0"),
    ("outer.lr=-1", "outer.lr=-1"),
    ("pool.size=0", "pool.size=0"),
    ("data.resolution=32", "set data.resolution=16"),
    ("outer.form=cholesky", "outer.form"),
    ("budget=100", "only 64 images"),
    ("outer.batch_size=100000000", "exceeds the 64 source images"),
    ("data.source=digits outer.batch_size=100000", "exceeds the 1347 source images"),  # known once loaded
])
def test_distill_settings_fail_before_any_work(override, named, tiny_npz, tiny_teacher, tmp_path, capsys):
    out = tmp_path / "d"
    data = [] if "data.source=digits" in override else [f"data.path={tiny_npz}"]  # digits reads no path
    args = [*data, f"teacher={tiny_teacher}", f"out_dir={out}", *DISTILL, "method=krr_st", *override.split()]
    assert main(["distill", "--no-progress", *args]) == 2
    assert named in one_error_line(capsys)
    assert not out.exists()


def test_boost_settings_fail_before_any_work(tiny_npz, tiny_teacher, tmp_path, capsys):
    args = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={tmp_path / 'b'}", *BOOST]
    assert main(["distill", "--no-progress", *args, "boost.approx_lr=nan"]) == 2
    assert "boost.approx_lr=nan" in one_error_line(capsys)
    assert main(["distill", "--no-progress", *args, "boost.approx_lr=0"]) == 2
    assert "boost.approx_lr=0" in one_error_line(capsys)


def bad_npz(kind: str, path: Path) -> Path:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not an archive\n")
    elif kind == "truncated":
        data = make_npz(path.with_name("whole.npz")).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero-size":
        np.savez(path, x_train=np.zeros((4, 0, 0, 3), np.uint8), y_train=np.zeros(4, np.int64),
                 x_test=np.zeros((4, 0, 0, 3), np.uint8), y_test=np.zeros(4, np.int64))
    elif kind == "float-images":
        np.savez(path, x_train=np.zeros((4, 8, 8, 3), np.float32), y_train=np.zeros(4, np.int64))
    elif kind == "empty-split":
        np.savez(path, x_train=np.zeros((0, 8, 8, 3), np.uint8), y_train=np.zeros(0, np.int64))
    return path


@pytest.mark.parametrize("kind, said", [
    ("empty", "not a readable .npz archive (an empty file)"),
    ("text", "not a readable .npz archive"),
    ("truncated", "not a readable .npz archive"),
    ("zero-size", "0x0 pixels"),
    ("float-images", "uint8"),
    ("empty-split", "the split is empty"),
])
def test_bad_data_files_are_one_line_for_every_command(kind, said, tmp_path, tiny_teacher, capsys):
    npz = bad_npz(kind, tmp_path / "bad.npz")
    assert main(["teacher", f"data.path={npz}", f"out_dir={tmp_path / 't'}", *TEACHER]) == 2
    line = one_error_line(capsys)
    assert str(npz) in line and said in line
    assert main(["distill", f"data.path={npz}", f"teacher={tiny_teacher}", f"out_dir={tmp_path / 'd'}", *DISTILL]) == 2
    assert said in one_error_line(capsys)
    with pytest.raises(DataError, match=r"bad\.npz"):  # the loader itself, for code that skips the checks
        load_npz(npz, "train", 16)


def test_check_reports_an_empty_or_corrupt_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    bad_npz("empty", tmp_path / "data" / "cifar100.npz")
    make_npz(tmp_path / "data" / "cifar10.npz")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] dataset" in out and "an empty file" in out
    assert "[ok  ] dataset" in out and "test 32, train 64 images at 16x16 px" in out
    teacher = make_teacher(tmp_path / "teacher")
    rewrite_manifest(teacher, resolution=32)
    assert main(["check"]) == 1
    assert "[FAIL] teacher" in capsys.readouterr().out


def test_check_finds_a_studys_teacher_and_reports_a_changed_shard_or_manifest(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    teacher = make_teacher(tmp_path / "runs" / "demo" / "teacher" / "teacher-0123abcd" / "teacher")  # 5 levels
    (tmp_path / ".venv" / "a").mkdir(parents=True)  # not searched
    assert main(["check"]) == 0
    assert f"[ok  ] teachers               {Path('runs/demo/teacher/teacher-0123abcd/teacher')}" in \
        capsys.readouterr().out
    shard = next(teacher.glob("backbone-*.safetensors"))
    whole = bytearray(shard.read_bytes())
    whole[-1] ^= 0xFF  # one byte of the weights changed
    shard.write_bytes(bytes(whole))
    assert main(["check"]) == 1
    assert "[FAIL] teacher" in (out := capsys.readouterr().out) and "checksum mismatch" in out
    (teacher / "manifest.json").write_text("{not json")
    assert main(["check"]) == 1
    assert "[FAIL] artifact" in (out := capsys.readouterr().out) and "cannot be read as a manifest" in out


def test_check_says_how_deep_it_searched_and_no_none_after_damaged_teachers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    teacher = make_teacher(tmp_path / "a" / "runs" / "demo" / "teacher" / "teacher-0123abcd" / "teacher")  # 6 levels
    assert main(["check"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "teachers" in x)
    assert "none within 5 levels below this folder" in line and "or below it" not in line
    monkeypatch.chdir(tmp_path / "a")  # 5 levels: found; then damaged, and "none" is not said
    (teacher / "manifest.json").write_text("{not json")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] artifact" in out and "none within" not in out and "] teachers" not in out


def test_check_decodes_every_image_of_an_image_folder(tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "images"
    for split in ("train", "test"):
        (folder / split / "cat").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 90, 20, 30)).save(folder / split / "cat" / f"{i}.png")
    assert main(["check", "--data", str(folder)]) == 0
    capsys.readouterr()
    png = folder / "train" / "cat" / "1.png"
    png.write_bytes(png.read_bytes()[:-30])  # the end of the image data cut off
    assert main(["check", "--data", str(folder)]) == 1
    assert "[FAIL] dataset" in (out := capsys.readouterr().out) and "1.png" in out


def test_check_fails_on_a_data_path_that_does_not_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no data/ here: without --data that is only a note
    missing = tmp_path / "nonexist"
    assert main(["check", "--data", str(missing)]) == 1
    out = capsys.readouterr().out
    assert f"[FAIL] dataset                {missing}: not found" in out and "datasets: none" not in out
    assert "Everything needed" not in out and f"{missing} (--data) does not exist" in out


def test_check_says_a_teacher_given_as_data_is_not_data_and_reads_a_null_manifest_as_damaged(tmp_path, monkeypatch,
                                                                                               capsys, tiny_teacher):
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--data", str(tiny_teacher)]) == 1
    out = capsys.readouterr().out
    assert f"{tiny_teacher} is an ssdd artifact folder (a teacher, a set), not data" in out
    (tiny_teacher / "manifest.json").write_text("null")
    assert main(["check"]) == 1
    assert "manifest.json cannot be read as a manifest" in capsys.readouterr().out


# ----------------------------------------------------------------------------- artifacts on save and on load
def test_committed_artifacts_still_load_with_their_function_fingerprint():
    root = Path(__file__).resolve().parents[1] / "artifacts"
    for folder in sorted((root / "teachers").iterdir()):
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["function_fingerprint"]
        assert load_teacher(folder).function_fingerprint == manifest["function_fingerprint"]
    for folder in sorted((root / "distilled").glob("*/*")):
        assert load_distilled(folder).training_pairs()[0].shape[0] > 0


@pytest.mark.parametrize("field, value", [
    ("model", {"name": "convnet", "width": 4, "depth": 2, "feature": "flatten"}),
    ("resolution", 32),
    ("normalization", {"mean": [0.4, 0.4, 0.4], "std": [0.25, 0.25, 0.25]}),
    ("feature_dim", 64),
])
def test_editing_what_defines_a_teachers_function_is_refused(field, value, tiny_teacher):
    rewrite_manifest(tiny_teacher, **{field: value})
    with pytest.raises(ArtifactError, match="function"):
        load_teacher(tiny_teacher)


def test_a_teacher_saved_before_function_fingerprints_still_loads(tiny_teacher):
    manifest = json.loads((tiny_teacher / "manifest.json").read_text())
    saved = manifest.pop("function_fingerprint")
    (tiny_teacher / "manifest.json").write_text(json.dumps(manifest))
    assert load_teacher(tiny_teacher).function_fingerprint == saved  # recomputed, the same
    rewrite_manifest(tiny_teacher, model={**manifest["model"], "feature": "flatten"})
    with pytest.raises(ArtifactError, match="feature_dim"):  # its weights still fit: the feature size does not
        load_teacher(tiny_teacher)


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/backbone.safetensors", ".."])
def test_shard_names_must_stay_inside_the_artifact_folder(name, tiny_teacher):
    manifest = json.loads((tiny_teacher / "manifest.json").read_text())
    manifest["shards"][0]["file"] = name
    (tiny_teacher / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="not a plain file name"):
        load_teacher(tiny_teacher)
    with pytest.raises(ArtifactError, match="not a plain file name"):
        load_tensors(tiny_teacher, manifest["shards"])


def test_non_finite_tensors_are_never_saved_nor_loaded(tmp_path):
    with pytest.raises(NonFiniteError, match="non-finite"):
        save_tensors(tmp_path / "a", {"w": torch.tensor([1.0, float("nan")])}, "t")
    assert not list((tmp_path / "a").glob("*.safetensors"))
    with pytest.raises(ArtifactError, match="overflows float16"):
        save_tensors(tmp_path / "b", {"w": torch.tensor([1e6])}, "t", dtype=torch.float16)
    (tmp_path / "c").mkdir()
    save_file({"w": torch.tensor([float("inf")])}, str(tmp_path / "c" / "t.safetensors"))
    shards = [{"file": "t.safetensors", "sha256": file_sha256(tmp_path / "c" / "t.safetensors"), "tensors": 1}]
    with pytest.raises(ArtifactError, match="non-finite"):
        load_tensors(tmp_path / "c", shards)


@pytest.fixture
def random_set(tiny_npz, tiny_teacher, tmp_path) -> Path:
    out = tmp_path / "random"
    run_distill(distill_cfg(tiny_npz, tiny_teacher, out, "method=random"), show_progress=False)
    return out


@pytest.mark.parametrize("changes, said", [
    ({"budget": 30.0}, "budget"),
    ({"image_shape": [3, 32, 32]}, "image"),
    ({"m": 3}, "'m' is 3"),
    ({"budget_counts": "images only", "budget": 8.0}, "budget"),
])
def test_a_distilled_manifest_that_disagrees_with_its_tensors_is_refused(changes, said, random_set, capsys):
    rewrite_manifest(random_set, **changes)
    with pytest.raises(ArtifactError, match=said):
        load_distilled(random_set)
    assert main(["show", str(random_set)]) == 2
    assert "does not describe its tensors" in one_error_line(capsys)


def test_a_distilled_manifest_with_edited_storage_is_refused(random_set):
    manifest = json.loads((random_set / "manifest.json").read_text())
    manifest["storage"]["image_equivalents"] *= 3
    (random_set / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="image-equivalents"):
        load_distilled(random_set)


def test_evaluate_refuses_sets_from_another_source_or_teacher_unless_told(random_set, tiny_npz, tiny_teacher,
                                                                          tmp_path, capsys):
    other_npz = make_npz(tmp_path / "other.npz", seed=1)
    with pytest.raises(ValueError, match="not from the evaluation source"):
        validate_evaluate(evaluate_cfg(other_npz, tiny_teacher, tmp_path / "e1", [random_set]))
    validate_evaluate(evaluate_cfg(other_npz, tiny_teacher, tmp_path / "e2", [random_set]), allow_mismatch=True)
    validate_evaluate(evaluate_cfg(tiny_npz, tiny_teacher, tmp_path / "e3", [random_set]))  # its own source: fine
    other_teacher = make_teacher(tmp_path / "other_teacher", seed=1)
    with pytest.raises(ValueError, match="not the evaluation teacher"):
        validate_evaluate(evaluate_cfg(tiny_npz, other_teacher, tmp_path / "e4", [random_set]))
    validate_evaluate(evaluate_cfg(tiny_npz, other_teacher, tmp_path / "e5", [random_set]), allow_mismatch=True)
    assert "--allow-mismatch" in capsys.readouterr().err
    args = [f"teacher={tiny_teacher}", f"source.path={other_npz}", f"out_dir={tmp_path / 'e6'}", "device=cpu",
            "cka_images=0", "full_data.enabled=false", f"targets=[{{source: npz, path: {tiny_npz}}}]"]
    assert main(["evaluate", "--no-progress", *args, "-d", str(random_set)]) == 2
    assert "--allow-mismatch" in one_error_line(capsys)


def test_the_other_source_refusal_names_the_source_read(random_set, tiny_npz, tiny_teacher, tmp_path, capsys):
    args = [f"teacher={tiny_teacher}", "source.source=digits", f"out_dir={tmp_path / 'e'}", "device=cpu",
            "cka_images=0", "full_data.enabled=false", f"targets=[{{source: npz, path: {tiny_npz}}}]"]
    assert main(["evaluate", "--no-progress", *args, "-d", str(random_set)]) == 2
    err = one_error_line(capsys)
    assert "not from the evaluation source digits [train]" in err and "cifar100.npz" not in err


def test_evaluate_refuses_a_set_holding_nan(random_set, tiny_npz, tiny_teacher, tmp_path):
    manifest = json.loads((random_set / "manifest.json").read_text())
    shard = random_set / manifest["shards"][0]["file"]
    from safetensors.torch import load_file

    tensors = load_file(str(shard))
    tensors["targets"][0, 0] = float("nan")
    save_file(tensors, str(shard))
    manifest["shards"][0]["sha256"] = file_sha256(shard)
    (random_set / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="non-finite"):
        load_distilled(random_set)


# ----------------------------------------------------------------------------- Boost: a diverging approximation fit
def test_a_diverging_approximation_fit_is_refused_and_refit_on_resume(tiny_npz, tiny_teacher, tmp_path, capsys):
    out = tmp_path / "boost"
    args = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={out}", *BOOST]
    assert main(["distill", "--no-progress", *args, "boost.approx_lr=1e30"]) == 4
    line = one_error_line(capsys)
    assert "approximation network" in line and "diverged" in line and "--resume boost.approx_lr" in line
    assert not (out / "manifest.json").exists()  # no NaN set was saved
    # the distillation itself is kept: the resume refits the networks only, and says so in the manifest
    assert main(["distill", "--no-progress", "--resume", *args, "boost.approx_lr=1e-3"]) == 0
    loaded = load_distilled(out)
    assert loaded.manifest["resumed_with_changes"] == [
        {"key": "boost.approx_lr", "from": 1e30, "to": 1e-3, "at": "step 2"}]
    assert all(torch.isfinite(t).all() for t in loaded.stored.values())
    # tampering with the views the targets are rebuilt for is refused
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["boost"]["views"] = manifest["boost"]["views"][:2]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="views"):
        load_distilled(out)
    # a large rate whose fit stays finite but useless (relative error far above the identity baseline)
    from ssdd.artifacts.integrity import ApproximationError, check_approximation

    with pytest.raises(ApproximationError, match="diverged"):
        check_approximation({"rot90": {"relative_error": 1.5e14, "relative_error_without_network": 0.8}}, 1e6, 2000)
    check_approximation({"rot90": {"relative_error": 0.3, "relative_error_without_network": 0.8}}, 1e-3, 2000)


# ----------------------------------------------------------------------------- nothing lost
def test_a_finished_teacher_can_be_saved_with_other_output_settings(tiny_npz, tmp_path):
    out = tmp_path / "t"
    assert train_teacher(teacher_cfg(tiny_npz, out, "stop_after_epochs=1"), show_progress=False) is None
    artifact = train_teacher(teacher_cfg(tiny_npz, out, "save_dtype=float16", "probe.iterations=5"), resume=True,
                             show_progress=False)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["dtype"] == "float16"
    assert {c["key"] for c in manifest["resumed_with_changes"]} == {"save_dtype", "probe.iterations"}
    with pytest.raises(ValueError, match=r"different config \(model.width"):  # what was computed may not change
        train_teacher(teacher_cfg(tiny_npz, out, "model.width=8"), resume=True, show_progress=False)


def test_after_a_numerical_stop_the_teacher_resumes_with_a_lower_rate(tiny_npz, tmp_path, monkeypatch, capsys):
    import ssdd.teacher.train as train_module

    real_loss, calls = train_module.barlow_twins_loss, {"n": 0}

    def nan_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 4 else loss  # 64 images / batch 16 = 4 steps per epoch

    monkeypatch.setattr(train_module, "barlow_twins_loss", nan_in_second_epoch)
    out = tmp_path / "t"
    args = [f"data.path={tiny_npz}", f"out_dir={out}", *TEACHER]
    assert main(["teacher", "--no-progress", *args]) == 4
    line = one_error_line(capsys)
    assert "epoch 2" in line and "checkpoint.pt, is intact" in line and "--resume optim.lr=" in line
    monkeypatch.setattr(train_module, "barlow_twins_loss", real_loss)
    assert main(["teacher", "--no-progress", "--resume", *args, "optim.lr=0.1"]) == 0
    manifest = json.loads((out / "teacher" / "manifest.json").read_text())
    assert manifest["resumed_with_changes"] == [{"key": "optim.lr", "from": 0.3, "to": 0.1, "at": "epoch 1"}]


def test_after_a_numerical_stop_distillation_resumes_with_a_lower_rate(tiny_npz, tiny_teacher, tmp_path,
                                                                       monkeypatch, capsys):
    import ssdd.distill.outer as outer

    real_loss, calls = outer.krr_loss, {"n": 0}

    def nan_after_the_checkpoint(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 2 else loss  # checkpoint_every=2

    monkeypatch.setattr(outer, "krr_loss", nan_after_the_checkpoint)
    out = tmp_path / "k"
    args = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={out}", *DISTILL, "method=krr_st"]
    assert main(["distill", "--no-progress", *args]) == 4
    assert "is intact: continue with --resume outer.lr=" in one_error_line(capsys)
    monkeypatch.setattr(outer, "krr_loss", real_loss)
    assert main(["distill", "--no-progress", "--resume", *args]) == 0  # the same rate is fine too
    shutil.rmtree(out)
    monkeypatch.setattr(outer, "krr_loss", nan_after_the_checkpoint)
    calls["n"] = 0
    assert main(["distill", "--no-progress", *args]) == 4
    monkeypatch.setattr(outer, "krr_loss", real_loss)
    assert main(["distill", "--no-progress", "--resume", *args, "outer.lr=5e-5"]) == 0
    changes = load_distilled(out).manifest["resumed_with_changes"]
    assert changes == [{"key": "outer.lr", "from": 1e-4, "to": 5e-5, "at": "step 2"}]
    capsys.readouterr()


def test_a_run_whose_images_blow_up_stops_at_a_sane_checkpoint_that_resumes(tiny_npz, tiny_teacher, tmp_path,
                                                                            capsys):
    """A huge rate: the distilled images leave their range long before the loss turns NaN. The run stops where a
    checkpoint would hold them, names the last sane checkpoint, and the advised resume finishes."""
    import re

    out = tmp_path / "k"
    args = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={out}", *DISTILL, "method=krr_st",
            "outer.steps=40", "log_every=2", "checkpoint_every=2"]
    assert main(["distill", "--no-progress", *args, "outer.lr=1"]) == 4
    line = one_error_line(capsys)
    assert "the distilled images reached" in line
    assert "checkpoint.pt, is intact: continue with --resume outer.lr=" in line
    kept = int(re.search(r"from its state at step (\d+)", line).group(1))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == kept and float(state["tensors"]["images"].abs().max()) <= 10  # OUTER_SANE_FACTOR
    assert main(["distill", "--no-progress", "--resume", *args, "outer.lr=0.01"]) == 0
    assert load_distilled(out).manifest["resumed_with_changes"] == [
        {"key": "outer.lr", "from": 1.0, "to": 0.01, "at": f"step {kept}"}]


def test_a_diverging_evaluation_is_refused_not_scored(random_set, tiny_npz, tiny_teacher, tmp_path, capsys):
    args = [f"teacher={tiny_teacher}", f"source.path={tiny_npz}", f"out_dir={tmp_path / 'e'}", "device=cpu",
            "cka_images=0", "full_data.enabled=false", f"targets=[{{source: npz, path: {tiny_npz}}}]", "seeds=1",
            "models=[{name: convnet, width: 4, depth: 2}]", "modes=[linear_probe]", "probe.iterations=5",
            "pretrain.epochs=1", "pretrain.max_iterations=2", "pretrain.lr=1e30"]
    assert main(["evaluate", "--no-progress", *args, "-d", str(random_set)]) == 4
    assert "pre-training on random@10 diverged" in one_error_line(capsys)
    from ssdd.artifacts.integrity import DivergedError
    from ssdd.evaluation.linear_probe import linear_probe

    features, labels = torch.randn(8, 4), torch.arange(8) % 2
    with pytest.raises(DivergedError, match="NaN or inf feature"):
        linear_probe(features * float("inf"), labels, features, labels, 2)
    with pytest.raises(DivergedError, match=r"lower probe\.lr"):
        linear_probe(features, labels, features, labels, 2, load_config(EvaluateConfig, None, ["probe.lr=1e38",
                                                                                           "probe.iterations=20"]).probe)


def test_a_nan_before_the_first_checkpoint_does_not_claim_one(tiny_npz, tiny_teacher, tmp_path, capsys):
    args = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={tmp_path / 'k'}", *DISTILL,
            "method=krr_st", "outer.lr=1e30"]
    assert main(["distill", "--no-progress", *args]) == 4
    line = one_error_line(capsys)
    assert "no checkpoint had been written" in line and "intact" not in line


def test_resume_refuses_a_replaced_teacher(tiny_npz, tmp_path):
    teacher = make_teacher(tmp_path / "teacher")
    out = tmp_path / "k"
    assert run_distill(distill_cfg(tiny_npz, teacher, out, "method=krr_st", "stop_after_steps=2"),
                       show_progress=False) is None
    shutil.rmtree(teacher)
    make_teacher(teacher, seed=1)  # another teacher in the same folder
    with pytest.raises(ValueError, match=r"teacher .* changed since this run started .* resume with the original "
                                         r"one \(the run's settings: -c .*k/config\.yaml\)"):
        run_distill(distill_cfg(tiny_npz, teacher, out, "method=krr_st"), resume=True, show_progress=False)


def test_an_evaluation_resume_refuses_a_replaced_teacher(random_set, tiny_npz, tmp_path):
    teacher = make_teacher(tmp_path / "teacher")
    out = tmp_path / "e"
    validate_evaluate(evaluate_cfg(tiny_npz, teacher, out, [random_set]), allow_mismatch=True)
    (out / "results.json").write_text("[]")  # an interrupted evaluation
    shutil.rmtree(teacher)
    make_teacher(teacher, seed=1)
    with pytest.raises(ValueError, match="changed since this run started"):
        validate_evaluate(evaluate_cfg(tiny_npz, teacher, out, [random_set]), resume=True, allow_mismatch=True)


def test_a_study_checks_every_stage_before_the_first_runs(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["reproduce", "--no-progress", "-c", "study_demo", f"out_dir={out}",
                 "distill=[{config: demo_distill, overrides: [outer.steps=0]}]"]) == 2
    line = one_error_line(capsys)
    assert "distill stage" in line and "outer.steps=0" in line
    assert not (out / "teacher").exists()  # the teacher was not trained for nothing


def test_stale_temporary_files_are_cleaned_and_a_truncated_checkpoint_is_one_line(tiny_npz, tiny_teacher, tmp_path,
                                                                                    capsys):
    out = tmp_path / "k"
    assert run_distill(distill_cfg(tiny_npz, tiny_teacher, out, "method=krr_st", "stop_after_steps=2"),
                       show_progress=False) is None
    stale = out / ".checkpoint.pt.k1ll3d.tmp"  # what a kill during torch.save leaves
    stale.write_bytes(b"half a checkpoint")
    ckpt = out / "checkpoint.pt"
    whole = ckpt.read_bytes()
    ckpt.write_bytes(whole[: len(whole) // 3])
    args = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={out}", *DISTILL, "method=krr_st"]
    assert main(["distill", "--no-progress", "--resume", *args]) == 2
    assert "not a readable ssdd checkpoint" in one_error_line(capsys)
    assert not stale.exists()
    ckpt.write_bytes(whole)
    assert main(["distill", "--no-progress", "--resume", *args]) == 0


def test_interrupt_messages_are_true(tiny_npz, tiny_teacher, tmp_path, monkeypatch, capsys):
    import ssdd.distill.run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_run_distill", interrupted)
    out = tmp_path / "k"
    args = ["distill", "--no-progress", f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={out}",
            *DISTILL, "method=krr_st"]
    assert main(args) == 130
    line = one_error_line(capsys)
    assert "before the first checkpoint" in line and "intact" not in line
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    assert main([*args, "--resume"]) == 130
    assert "is intact: continue with --resume" in one_error_line(capsys)


def test_an_interrupted_evaluation_on_several_processes_says_what_they_kept(tiny_npz, tiny_teacher, tmp_path,
                                                                           monkeypatch, capsys):
    """`ssdd evaluate --processes 2` interrupted: the launcher's line names what the processes kept, as one
    process's would (not "run it again", which the kept results then refuse without --resume)."""
    import ssdd.evaluation.launch as launch

    def interrupted(processes):
        raise KeyboardInterrupt

    monkeypatch.setattr(launch.subprocess, "Popen", lambda *args, **kwargs: None)
    monkeypatch.setattr(launch, "wait_for", interrupted)
    out = tmp_path / "e"
    args = ["evaluate", "--no-progress", "--processes", "2", f"teacher={tiny_teacher}", f"source.path={tiny_npz}",
            f"targets=[{{source: npz, path: {tiny_npz}, name: t}}]", "device=cpu", f"out_dir={out}"]
    assert main(args) == 130
    assert f"no cell had finished, nothing to keep: run the command again (out_dir {out})" in one_error_line(capsys)
    out.mkdir()
    (out / "results.json").write_text("[]")  # written before the first cell: a fresh run there is refused
    assert main(args) == 130
    assert f"no cell had finished: continue with --resume, which measures them all (out_dir {out})" in \
        one_error_line(capsys)
    (out / "results.json").write_text(json.dumps([{"label": "x"}]))
    assert main([*args, "--resume"]) == 130
    assert f"the finished cells are in {out / 'results.json'}: continue with --resume" in one_error_line(capsys)


def test_an_interrupt_while_torch_imports_is_one_line(monkeypatch, capsys):
    """Ctrl-C during torch's import leaves it half imported: the message must not import it again."""
    import sys

    import ssdd.cli.commands as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_presets", interrupted)
    monkeypatch.setitem(sys.modules, "ssdd.run.guard", None)  # importing it now fails, as a half-imported torch does
    assert main(["presets"]) == 130
    assert one_error_line(capsys) == "ssdd presets: interrupted (before any work began: run the command again)"


# ----------------------------------------------------------------------------- one line for every error
def test_every_exception_type_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import ssdd.cli.commands as cli

    def boom(args):
        raise RuntimeError("device-side assert\nwith a second line")

    monkeypatch.setattr(cli, "_cmd_presets", boom)
    assert main(["presets"]) == 1
    line = one_error_line(capsys)
    assert "unexpected RuntimeError: device-side assert" in line and "--debug" in line
    with pytest.raises(RuntimeError):
        main(["presets", "--debug"])
    monkeypatch.setenv("SSDD_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(["presets"])
    monkeypatch.delenv("SSDD_TRACEBACK")

    def missing(args):
        raise KeyError("shards")

    monkeypatch.setattr(cli, "_cmd_presets", missing)
    assert main(["presets"]) == 1
    assert "missing key 'shards'" in one_error_line(capsys)

    def full_disk(args):
        raise OSError(28, "No space left on device", "/runs/x/checkpoint.pt")

    monkeypatch.setattr(cli, "_cmd_presets", full_disk)
    assert main(["presets"]) == 1
    assert "no space left on device while writing /runs/x/checkpoint.pt" in one_error_line(capsys)

    def offline(args):  # torchvision's download without a network: an OSError, but not of the file system
        from urllib.error import URLError

        raise URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(cli, "_cmd_presets", offline)
    assert main(["presets"]) == 1
    line = one_error_line(capsys)
    assert "a network operation failed ([Errno -2] Name or service not known): for a download, check the " \
           "network" in line
    assert "file-system" not in line

    def reset(args):
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(cli, "_cmd_presets", reset)
    assert main(["presets"]) == 1
    assert "a network operation failed ([Errno 104] Connection reset by peer)" in one_error_line(capsys)


def test_the_readme_documents_the_exit_codes_and_docs_the_reliability_table():
    root = Path(__file__).resolve().parents[1]
    section = (root / "README.md").read_text().split("## Reliability", 1)[1]
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 130 |"):
        assert code in section
    assert "docs/reliability.md" in section
    assert os.path.basename(__file__) in (root / "docs" / "reliability.md").read_text()


@pytest.mark.slow
def test_a_real_sigkill_during_distillation_loses_nothing(tiny_npz, tiny_teacher, tmp_path):
    """SIGKILL a running `ssdd distill` once it has checkpointed; --resume then gives the uninterrupted result."""
    import signal
    import subprocess
    import sys
    import time

    from ssdd.distill import load_distilled

    common = ["distill", "--no-progress", f"data.path={tiny_npz}", f"teacher={tiny_teacher}", "data.resolution=16",
              "budget=10", "outer.steps=150", "outer.batch_size=16", "pool.size=2", "pool.max_steps=5",
              "outer.model.width=4", "outer.model.depth=2", "device=cpu", "log_every=5", "checkpoint_every=5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ssdd", *common, f"out_dir={killed}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "ssdd", *common, f"out_dir={killed}", "--resume"], env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run([sys.executable, "-m", "ssdd", *common, f"out_dir={tmp_path / 'whole'}"], env=env,
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    a, b = load_distilled(killed).training_pairs(), load_distilled(tmp_path / "whole").training_pairs()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not list(killed.glob("*.tmp")) and not list(killed.glob(".*.tmp"))


@pytest.fixture
def finished_evaluation(random_set, tiny_npz, tiny_teacher, tmp_path) -> tuple[Path, list[str]]:
    out = tmp_path / "eval"
    args = [f"teacher={tiny_teacher}", f"source.path={tiny_npz}", f"out_dir={out}", "device=cpu", "cka_images=0",
            "full_data.enabled=false", "full_data.same_recipe=false", f"targets=[{{source: npz, path: {tiny_npz}}}]",
            "seeds=1", "models=[{name: convnet, width: 4, depth: 2}]", "pretrain.epochs=1",
            "finetune.small_iterations=2", "probe.iterations=2", "-d", str(random_set)]
    assert main(["evaluate", "--no-progress", *args]) == 0
    return out, args


@pytest.mark.parametrize("content, said", [
    ('[{"label": "random@10", ', "not valid JSON ("),
    ("NaN", "holds NaN, not a list of result rows"),
    ('"some text"', 'holds "some text", not a list of result rows'),
    ('{"rows": []}', "holds an object, not a list of result rows"),
    ("ROW_TOP1_NAN", "row 1 has 'top1' NaN, not a finite number"),
    ("ROW_TEXT", 'row 1 is "a row", not a result row'),
    ("ROW_NO_LABEL", "row 1 lacks 'label'"),
])
def test_a_damaged_results_json_is_one_line_naming_it(content, said, finished_evaluation, capsys):
    out, args = finished_evaluation
    results = out / "results.json"
    rows = json.loads(results.read_text())
    if content == "ROW_TOP1_NAN":
        content = json.dumps([{**rows[0], "top1": float("nan")}, *rows[1:]])
    elif content == "ROW_TEXT":
        content = json.dumps(["a row", *rows[1:]])
    elif content == "ROW_NO_LABEL":
        content = json.dumps([{k: v for k, v in rows[0].items() if k != "label"}, *rows[1:]])
    results.write_text(content)
    capsys.readouterr()
    for argv in (["evaluate", "--report-only", f"out_dir={out}"], ["report", str(out)],
                 ["evaluate", "--no-progress", "--resume", *args]):
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        assert f"{results}: {said}" in line and "please report" not in line, line
    assert results.read_text() == content  # nothing rewritten


def test_an_empty_results_json_is_the_same_one_line_for_both_reports(finished_evaluation, capsys):
    out, _ = finished_evaluation
    results = out / "results.json"
    results.write_text("[]\n")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    lines = []
    for argv in (["evaluate", "--report-only", f"out_dir={out}"], ["report", str(out)]):
        assert main(argv) == 2, argv
        lines.append(one_error_line(capsys))
        assert f"{results}: holds no rows" in lines[-1] and "please report" not in lines[-1], lines[-1]
    assert lines[0].split(": error: ")[1] == lines[1].split(": error: ")[1]  # one reader, one sentence
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing written


@pytest.mark.parametrize("writer", ["checkpoint", "weights"])
def test_a_full_disk_is_one_line_saying_so(writer, tiny_npz, tiny_teacher, tmp_path, monkeypatch, capsys):
    import safetensors.torch

    import ssdd.artifacts.files

    out = tmp_path / "d"
    args = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={out}", *DISTILL, "method=krr_st"]
    if writer == "checkpoint":  # what torch's zip writer raises when the device fills during torch.save
        def full(*_: object, **__: object) -> None:
            raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 4544 vs 4440")

        monkeypatch.setattr(torch, "save", full)
        written = out / "checkpoint.pt"
    else:  # and what safetensors raises for the artifact's weights
        def full(*_: object, **__: object) -> None:
            raise safetensors.SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                              'message: "No space left on device" })')

        monkeypatch.setattr(ssdd.artifacts.files, "save_file", full)
        written = out / "distilled-00001-of-00001.safetensors"
    assert main(["distill", "--no-progress", *args]) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"ssdd distill: error: no space left on device while writing {out}")
    assert "please report" not in line and "unexpected pos" not in line
    if writer == "checkpoint":
        assert str(written) in line
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


# ----------------------------------------------------------------------------- never another command's folder
def folder_state(folder: Path) -> dict[str, bytes]:
    """Every file below folder with its bytes: what 'nothing touched' compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def evaluation_folder(tiny_npz, tiny_teacher, random_set, tmp_path) -> Path:
    """An evaluation's folder as `ssdd evaluate` leaves it (its config, its inputs and a results.json)."""
    from ssdd.config import save_config

    out = tmp_path / "eval"
    cfg = evaluate_cfg(tiny_npz, tiny_teacher, out, [random_set])
    validate_evaluate(cfg, allow_mismatch=True)
    save_config(cfg, out / "config.yaml")
    (out / "results.json").write_text("[]\n")
    return out


def test_distill_and_teacher_refuse_an_evaluation_folder(evaluation_folder, tiny_npz, tiny_teacher, capsys):
    before = folder_state(evaluation_folder)
    distill = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={evaluation_folder}", *DISTILL,
               "method=random"]
    assert main(["distill", "--no-progress", *distill]) == 2
    assert "holds an evaluation" in one_error_line(capsys)
    teacher = [f"data.path={tiny_npz}", f"out_dir={evaluation_folder}", *TEACHER]
    assert main(["teacher", "--no-progress", *teacher]) == 2
    assert "holds an evaluation" in one_error_line(capsys)
    assert folder_state(evaluation_folder) == before  # its config.yaml, results and inputs untouched


def test_resume_on_another_commands_folder_names_what_it_holds(tiny_npz, tiny_teacher, tmp_path, capsys):
    out = tmp_path / "k"
    assert run_distill(distill_cfg(tiny_npz, tiny_teacher, out, "method=krr_st", "stop_after_steps=2"),
                       show_progress=False) is None  # a distillation paused at its checkpoint
    before = folder_state(out)
    assert main(["teacher", "--resume", "--no-progress", f"data.path={tiny_npz}", f"out_dir={out}", *TEACHER]) == 2
    assert "holds a distilled set or distillation run, not a teacher run" in one_error_line(capsys)
    assert main(["experts", "--resume", "--no-progress", f"teacher={tiny_teacher}", f"data.path={tiny_npz}",
                 f"out_dir={out}", "data.resolution=16", "model.width=4", "model.depth=2", "device=cpu"]) == 2
    assert "holds a distilled set or distillation run, not an expert-trajectories run" in one_error_line(capsys)
    assert main(["evaluate", "--resume", "--no-progress", "-c", "demo_evaluate", f"teacher={tiny_teacher}",
                 f"out_dir={out}"]) == 2
    assert "holds a distilled set or distillation run" in one_error_line(capsys)
    assert folder_state(out) == before


def test_import_teacher_overwrite_replaces_only_a_teacher(random_set, tmp_path, capsys):
    from ssdd.config import ModelConfig
    from ssdd.models import build_model

    model = build_model(ModelConfig(name="convnet", width=8, depth=2, feature="pool"), 16)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "convnet.safetensors"))
    before = folder_state(random_set)
    assert main(["import-teacher", str(tmp_path / "convnet.safetensors"), "-f", "state_dict", "-o", str(random_set),
                 "--overwrite", "--model", "convnet", "--width", "8", "--depth", "2", "--feature", "pool",
                 "--resolution", "16", "--mean", "0.4", "0.45", "0.5", "--std", "0.2", "0.25", "0.3",
                 "--device", "cpu"]) == 2
    assert "holds a distilled set or distillation run, not a teacher artifact" in one_error_line(capsys)
    assert folder_state(random_set) == before


def test_an_evaluation_resumes_with_its_teacher_moved_but_not_replaced(evaluation_folder, tiny_npz, tiny_teacher,
                                                                       random_set, tmp_path):
    from ssdd.evaluation.schedule import previous_rows

    moved = tmp_path / "moved" / "teacher"
    shutil.copytree(tiny_teacher, moved)  # the same teacher at another path (a moved or copied study)
    cfg = evaluate_cfg(tiny_npz, moved, evaluation_folder, [random_set])
    validate_evaluate(cfg, resume=True, allow_mismatch=True)  # fingerprints compared: the same
    assert previous_rows(evaluation_folder, cfg, resume=True) == []
    other = make_teacher(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="changed since this run started"):
        validate_evaluate(evaluate_cfg(tiny_npz, other, evaluation_folder, [random_set]), resume=True,
                          allow_mismatch=True)


def test_a_boost_set_with_huge_finite_approximation_weights_is_refused_on_load(tiny_npz, tiny_teacher, tmp_path,
                                                                               capsys):
    from ssdd.artifacts.files import write_manifest

    out = tmp_path / "boost"
    assert main(["distill", "--no-progress", f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={out}",
                 *BOOST]) == 0
    loaded = load_distilled(out)
    stored = dict(loaded.stored)
    view = loaded.manifest["boost"]["views"][1]
    stored[f"approx.{view}.w2"] = stored[f"approx.{view}.w2"] + 1e9  # finite, far beyond any fit
    for shard in loaded.manifest["shards"]:
        (out / shard["file"]).unlink()
    manifest = dict(loaded.manifest, shards=save_tensors(out, stored, "distilled"))  # checksums that match
    write_manifest(out, manifest)
    with pytest.raises(ArtifactError, match=f"approximation network of view '{view}'"):
        load_distilled(out)
    evaluation = tmp_path / "e"
    assert main(["evaluate", "--no-progress", f"teacher={tiny_teacher}", f"source.path={tiny_npz}",
                 f"out_dir={evaluation}", "device=cpu", "cka_images=0", "full_data.enabled=false",
                 f"targets=[{{source: npz, path: {tiny_npz}}}]", "seeds=1",
                 "models=[{name: convnet, width: 4, depth: 2}]", "--distilled", str(out)]) == 2
    assert "damaged or its fit diverged" in one_error_line(capsys)
    assert not evaluation.exists()


def _ssdd_process(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ssdd", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_second_run_in_a_folder_that_a_run_holds_is_refused_in_one_line(tiny_npz, tiny_teacher, tmp_path,
                                                                          capsys):
    """A teacher run holds its out_dir: a second one there, --resume or not, and a distillation, are refused
    (they used to run side by side, interleaving metrics.jsonl and overwriting each other's files)."""
    out = tmp_path / "held"
    first = _ssdd_process("teacher", "--no-progress", f"data.path={tiny_npz}", f"out_dir={out}", *TEACHER,
                          "optim.epochs=500")
    try:
        _wait_for(lambda: (out / "checkpoint.pt").is_file() or first.poll() is not None)
        busy = f"{out} is in use by another ssdd run that has not ended (it holds a lock on the folder)"
        for command in (["teacher", f"data.path={tiny_npz}", *TEACHER, "--resume"],
                        ["distill", f"data.path={tiny_npz}", f"teacher={tiny_teacher}", *DISTILL]):
            assert main([command[0], "--no-progress", *command[1:], f"out_dir={out}"]) == 2
            assert busy in one_error_line(capsys)
    finally:
        first.kill()
        first.wait()
    # the lock went with the killed process: the folder is free for its --resume (paused at once here)
    assert main(["teacher", "--no-progress", f"data.path={tiny_npz}", *TEACHER, "optim.epochs=500",
                 "stop_after_minutes=0.0001", "--resume", f"out_dir={out}"]) == 0


def test_sigterm_stops_a_run_as_ctrl_c_does(tiny_npz, tmp_path):
    """`kill`, `timeout` or a scheduler's time limit (SIGTERM): one line saying what was kept, exit 143."""
    out = tmp_path / "t"
    run = _ssdd_process("teacher", "--no-progress", f"data.path={tiny_npz}", f"out_dir={out}", *TEACHER,
                        "optim.epochs=500")
    _wait_for(lambda: (out / "checkpoint.pt").is_file() or run.poll() is not None)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143
    assert err.strip().splitlines() == [f"ssdd teacher: terminated (SIGTERM) (the last checkpoint, "
                                        f"{out / 'checkpoint.pt'}, is intact: continue with --resume)"]


def test_sigterm_to_an_evaluation_on_several_processes_stops_them_all(tiny_npz, tiny_teacher, tmp_path):
    """The processes of `ssdd evaluate --processes` end with their launcher (they used to go on writing into
    out_dir after it was killed), and only the launcher speaks."""
    out = tmp_path / "e"
    run = _ssdd_process("evaluate", "--no-progress", "--processes", "2", f"teacher={tiny_teacher}",
                        f"source.path={tiny_npz}", "source.resolution=16", f"targets=[{{source: npz, path: "
                        f"{tiny_npz}, name: t}}]", "models=[{name: convnet, width: 4, depth: 2}]", "device=cpu",
                        "full_data.enabled=false", "full_data.same_recipe=false", "cka_images=0", "seeds=2",
                        "modes=[finetune]", "finetune.iterations=100000", "finetune.small_iterations=100000",
                        f"out_dir={out}")

    def workers() -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"SSDD_OUT_DIR_HELD={out.resolve()}".encode() in environ:
                found.append(pid)
        return found

    # the processes are linked and training once rank 0 has written its (empty) results.json (a SIGTERM during
    # their rendezvous also stops them, after torch's own warning about the interrupted connection)
    _wait_for(lambda: (len(workers()) == 2 and (out / "results.json").is_file()) or run.poll() is not None)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143 and workers() == []
    assert [line for line in err.splitlines() if line.startswith("ssdd")] == [
        f"ssdd evaluate: terminated (SIGTERM) (no cell had finished: continue with --resume, which measures them "
        f"all (out_dir {out}))"]
