"""`ssdd import-distilled` and `ssdd export`: KRR-ST's x_syn.pt / y_syn.pt (written in exactly the official layout:
one torch.save'd float32 tensor each, a requires_grad leaf saved from the GPU, images in the normalised input
space), image folders with and without targets, export of every stored view, and one-line errors."""

from __future__ import annotations

import argparse
import csv
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.serialization
from PIL import Image

from ssdd.artifacts.storage import storage_of
from ssdd.cli import main
from ssdd.config import load_config
from ssdd.distill import load_distilled
from ssdd.distill.config import DistillConfig
from ssdd.distill.interop import KRR_ST_MEAN, KRR_ST_STD, evaluation_note, export_distilled
from ssdd.distill.run import run_distill
from ssdd.run.runtime import file_sha256
from ssdd.teacher import load_teacher

pytestmark = pytest.mark.usefixtures("one_thread")

D = 8  # the tiny teacher's feature dimension


def save_like_krr_st(tensor: torch.Tensor, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save(x_syn, path) as KRR-ST's Logger does it: a leaf with requires_grad, stored as a CUDA tensor."""
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(tensor.clone().requires_grad_(True), path)


def krr_st_files(root: Path, monkeypatch: pytest.MonkeyPatch, n: int = 12, size: int = 32, d: int = D,
                 dataset: str = "cifar100", seed: int = 0) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """synthetic_data/<dataset>/krr_st/{x_syn,y_syn}.pt with random values (x in normalised units)."""
    folder = root / "synthetic_data" / dataset / "krr_st"
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=generator)
    y = torch.randn(n, d, generator=generator)
    save_like_krr_st(x, folder / "x_syn.pt", monkeypatch)
    save_like_krr_st(y, folder / "y_syn.pt", monkeypatch)
    return folder, x, y


def error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ssdd {command}: error:") and "\n" not in err, err
    return err


def test_krr_st_files_import_and_load_back(tmp_path, monkeypatch, capsys):
    folder, x, y = krr_st_files(tmp_path, monkeypatch)
    assert torch.load(folder / "x_syn.pt", map_location="cpu", weights_only=True).requires_grad  # the layout
    out = tmp_path / "imported"
    assert main(["import-distilled", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    loaded = load_distilled(out)
    mean = torch.tensor(KRR_ST_MEAN[32]["cifar100"]).view(1, 3, 1, 1)  # guessed from the path
    std = torch.tensor(KRR_ST_STD[32]["cifar100"]).view(1, 3, 1, 1)
    images, targets = loaded.training_pairs()
    assert loaded.method == "imported" and images.dtype == torch.float32
    assert torch.allclose(images, x * std + mean, atol=1e-6)  # back in [0, 1] units
    assert torch.allclose((images - mean) / std, x, atol=1e-5)  # what evaluate's networks see: x_syn itself
    assert torch.equal(targets, y)
    manifest = loaded.manifest
    assert manifest["normalization"] == {"mean": list(KRR_ST_MEAN[32]["cifar100"]),
                                         "std": list(KRR_ST_STD[32]["cifar100"])}
    # counted by the one storage accountant: 12 images + 12 x 8 targets
    report = storage_of(loaded.stored, (3, 32, 32))
    assert report.floats == 12 * 3 * 32 * 32 + 12 * D
    assert manifest["storage"]["floats"] == report.floats
    assert manifest["budget"] == math.ceil(report.image_equivalents * 100) / 100 >= report.image_equivalents
    assert f"{report.image_equivalents:.2f} image-equivalents" in printed and f"budget of {manifest['budget']:g}" \
        in printed
    origin = manifest["origin"]
    assert origin["format"] == "krr_st" and origin["targets"] == "y_syn" and origin["target_dim"] == D
    assert [(f["role"], f["sha256"]) for f in origin["files"]] == [
        ("x_syn", file_sha256(folder / "x_syn.pt")), ("y_syn", file_sha256(folder / "y_syn.pt"))]
    assert manifest["teacher"]["known"] is False and manifest["teacher"]["fingerprint"] is None
    assert manifest["name"] == "imported_krr_st" and manifest["source"] == {"name": "cifar100", "images": 50_000}
    assert "unknown teacher" in evaluation_note(manifest)
    # KRR-ST's paper convention: the targets do not count against the budget (still reported)
    paper = tmp_path / "paper"
    assert main(["import-distilled", str(folder / "x_syn.pt"), "--out", str(paper), "--budget-counts", "images",
                 "--budget", "12"]) == 0
    paper_set = load_distilled(paper)
    assert paper_set.manifest["budget"] == 12 and paper_set.manifest["budget_counts"] == "images only"
    assert paper_set.storage().floats == report.floats


def test_overridden_statistics_and_labels(tmp_path, monkeypatch):
    folder, x, _ = krr_st_files(tmp_path, monkeypatch, n=6, size=16)
    labels = torch.tensor([0, 3, 1, 2, 3, 0])
    torch.save(labels, folder / "y_syn.pt")  # the supervised baselines of the same bundle: int64 labels
    out = tmp_path / "labels"
    assert main(["import-distilled", str(folder), "--out", str(out), "--mean", "0.5,0.5,0.5",
                 "--std", "0.25,0.25,0.25"]) == 0
    loaded = load_distilled(out)
    images, pairs = loaded.training_pairs()
    assert torch.allclose(images, x * 0.25 + 0.5, atol=1e-6) and torch.equal(pairs, labels)
    assert loaded.manifest["num_classes"] == 100  # cifar100 (KRR-ST's NUM_CLASSES)
    assert loaded.manifest["origin"]["normalization_from"] == "--mean/--std"
    assert "labels" in evaluation_note(loaded.manifest)


def test_imported_krr_st_sets_are_scored_by_evaluate(tmp_path, monkeypatch, tiny_npz, tiny_teacher, capsys):
    folder, _, _ = krr_st_files(tmp_path, monkeypatch, n=10, size=16)
    stats = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--dataset", "tiny"]  # KRR-ST has no 16 px table
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "unknown"), "--budget", "11", *stats]) == 0
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "known"), "--teacher", str(tiny_teacher),
                 "--name", "krr_st_official", "--budget", "11", *stats]) == 0
    known = load_distilled(tmp_path / "known").manifest
    assert known["teacher"]["fingerprint"] == load_teacher(tiny_teacher).fingerprint and evaluation_note(known) is None
    capsys.readouterr()
    out = tmp_path / "eval"
    code = main(["evaluate", "--no-progress", "-d", str(tmp_path / "unknown"), str(tmp_path / "known"), "--",
                 f"teacher={tiny_teacher}", f"out_dir={out}", f"source.path={tiny_npz}", "seeds=1",
                 "no_pretrain=false", "full_data.enabled=false", "full_data.same_recipe=false",
                 "models=[{name: convnet, width: 4, depth: 2}]",
                 f"targets=[{{source: npz, path: {tiny_npz}, name: tiny}}]", "pretrain.epochs=2",
                 "finetune.small_iterations=3", "probe.iterations=5", "cka_images=16", "device=cpu"])
    assert code == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "unknown" in notes[0] and "unknown teacher" in notes[0]
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["label"] for r in rows} == {"imported_krr_st@11", "krr_st_official@11"}
    assert all(r["method"] == "imported" and int(r["m"]) == 10 and 0 <= float(r["top1"]) <= 100 for r in rows)
    assert all(float(r["image_equivalents"]) == pytest.approx(10 + 10 * D / 768) for r in rows)
    # a set that names another teacher is still refused, as any distilled set would be
    from conftest import make_teacher

    other = make_teacher(tmp_path / "other_teacher", seed=1)
    code = main(["evaluate", "--no-progress", "-d", str(tmp_path / "known"), "--", f"teacher={other}",
                 f"out_dir={tmp_path / 'eval2'}", f"source.path={tiny_npz}", "full_data.enabled=false",
                 "cka_images=0", "device=cpu", f"targets=[{{source: npz, path: {tiny_npz}, name: tiny}}]"])
    assert code == 2 and "not the evaluation teacher" in error_line(capsys, "evaluate")


def test_a_declared_source_other_than_the_evaluation_source_is_refused(tmp_path, monkeypatch, tiny_npz,
                                                                        tiny_teacher, capsys):
    folder, _, _ = krr_st_files(tmp_path, monkeypatch, n=6, size=16)  # synthetic_data/cifar100/...: cifar100
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "set"), "--mean", "0.5,0.5,0.5",
                 "--std", "0.25,0.25,0.25"]) == 0
    assert load_distilled(tmp_path / "set").manifest["source"]["name"] == "cifar100"
    capsys.readouterr()
    out = tmp_path / "eval"
    argv = ["evaluate", "--no-progress", "-d", str(tmp_path / "set"), "--", f"teacher={tiny_teacher}",
            f"out_dir={out}", f"source.path={tiny_npz}", "full_data.enabled=false", "full_data.same_recipe=false",
            "cka_images=0", "device=cpu", f"targets=[{{source: npz, path: {tiny_npz}, name: tiny}}]"]
    assert main(argv) == 2
    err = error_line(capsys, "evaluate")
    assert "imported as distilled from cifar100" in err and f"evaluation source tiny ({tiny_npz})" in err
    assert "--allow-mismatch" in err and not out.exists()
    assert main(["evaluate", "--allow-mismatch", *argv[1:], "seeds=1", "no_pretrain=false", "pretrain.epochs=1",
                 "models=[{name: convnet, width: 4, depth: 2}]", "finetune.small_iterations=2",
                 "probe.iterations=2", "full_data.enabled=true", "full_data.epochs=1"]) == 0  # reads its source
    assert "imported as distilled from cifar100" in capsys.readouterr().err
    rows = [r for r in json.loads((out / "results.json").read_text()) if r["method"] == "imported"]
    # neither KRR-ST's 50,000 cifar100 images nor the evaluation source's size: unknown
    assert rows and all(r["compression"] is None for r in rows)


def test_compression_divides_the_evaluation_source_images(tmp_path, monkeypatch):
    from ssdd.config import DataConfig
    from ssdd.distill.interop import compression_source_images

    folder, _, _ = krr_st_files(tmp_path, monkeypatch, n=4, size=32)  # cifar100: 50,000 images declared
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "set")]) == 0
    manifest = load_distilled(tmp_path / "set").manifest
    declared = manifest["source"]["images"]
    cifar100, other = DataConfig(path="data/cifar100.npz"), DataConfig(source="digits")
    assert compression_source_images(manifest, 777, cifar100) == 777  # the evaluation read its source: that size
    assert compression_source_images(manifest, 0, cifar100) == declared  # unread, but the declared source matches
    assert compression_source_images(manifest, 0, other) is None  # another source (--allow-mismatch): unknown
    assert compression_source_images(manifest, 777, other) is None  # even when the evaluation read its own source


def test_teacher_named_at_import_is_checked(tmp_path, monkeypatch, tiny_teacher, capsys):
    folder, _, _ = krr_st_files(tmp_path, monkeypatch, n=4, size=16, d=D + 1)
    stats = ["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "a"), "--teacher", str(tiny_teacher),
                 *stats]) == 2
    assert f"d = {D + 1}" in error_line(capsys, "import-distilled")
    folder32, _, _ = krr_st_files(tmp_path / "b", monkeypatch, n=4, size=32)
    assert main(["import-distilled", str(folder32), "--out", str(tmp_path / "b_out"), "--teacher",
                 str(tiny_teacher)]) == 2
    assert "32 px" in error_line(capsys, "import-distilled")


def test_resolution_mismatch_with_the_teacher_is_named_first(tmp_path, monkeypatch, capsys):
    from conftest import make_teacher

    teacher32 = make_teacher(tmp_path / "teacher32", resolution=32)
    folder, _, _ = krr_st_files(tmp_path, monkeypatch, n=4, size=16)  # cifar100 in the path: no 16 px statistics
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "out"), "--teacher", str(teacher32)]) == 2
    err = error_line(capsys, "import-distilled")
    assert "the images are 16 px but teacher" in err and "32 px" in err and "mean/std" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value", [("--budget", "nan"), ("--budget", "inf"), ("--budget", "-2"),
                                         ("--budget", "0"), ("--source-images", "0"), ("--num-classes", "-1")])
def test_numbers_that_make_no_set_are_refused_up_front(flag, value, tmp_path, monkeypatch, capsys):
    folder, _, _ = krr_st_files(tmp_path, monkeypatch, n=4, size=32)
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "out"), flag, value]) == 2
    err = error_line(capsys, "import-distilled")
    assert f"{flag} must be a positive number" in err and f"got {float(value) if flag == '--budget' else value}" \
        in err and "edited" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("labels, said", [
    (np.array([0, 3, 2**64 - 1, 1], dtype=np.uint64), "labels go up to 18446744073709551615"),
    (np.array([0, 2**63 + 5, 1, 2], dtype=np.uint64), "labels go up to 9223372036854775813"),
    (np.array([0, 1e20, 1, 2], dtype=np.float64), "labels go up to 1e+20"),
    (np.array([0, -7, 1, 2], dtype=np.int64), "labels must be >= 0, found -7"),
])
def test_out_of_range_labels_are_reported_with_their_values(labels, said, tmp_path, capsys):
    write_pngs(tmp_path / "set", np.zeros((4, 16, 16, 3), dtype=np.uint8), ["a.png", "b.png", "c.png", "d.png"])
    np.save(tmp_path / "labels.npy", labels)
    assert main(["import-distilled", str(tmp_path / "set"), "--targets", str(tmp_path / "labels.npy"),
                 "--out", str(tmp_path / "out")]) == 2
    assert said in error_line(capsys, "import-distilled")
    assert not (tmp_path / "out").exists()


def test_mean_and_std_take_spaces_or_commas(tmp_path, monkeypatch):
    folder, x, _ = krr_st_files(tmp_path, monkeypatch, n=4, size=16)
    assert main(["import-distilled", "--mean", "0.5", "0.5", "0.5", "--std", "0.25,0.25,0.25", str(folder),
                 "--out", str(tmp_path / "out")]) == 0
    images, _ = load_distilled(tmp_path / "out").training_pairs()
    torch.testing.assert_close(images, x * 0.25 + 0.5)


def write_pngs(folder: Path, images: np.ndarray, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, names, strict=True):
        Image.fromarray(image).save(folder / name)


def test_image_folder_with_targets(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    names = ["img_b.png", "img_a.png", "x10.png", "x02.png", "c.PNG"]  # any names; imported sorted by name
    write_pngs(tmp_path / "set", pixels, names)
    Image.fromarray(pixels[0]).save(tmp_path / "set" / "z_last.jpg")  # JPG too (lossy, so not compared)
    (tmp_path / "set" / "notes.txt").write_text("ignored")
    order = [*sorted(range(5), key=lambda i: names[i]), 5]
    targets = rng.standard_normal((6, D)).astype(np.float32)
    np.save(tmp_path / "targets.npy", targets)
    out = tmp_path / "imported"
    assert main(["import-distilled", str(tmp_path / "set"), "--targets", str(tmp_path / "targets.npy"),
                 "--out", str(out)]) == 0
    loaded = load_distilled(out)
    assert loaded.stored["images"].dtype == torch.uint8  # exact pixels, like the random subset
    images, pairs = loaded.training_pairs()
    expected = torch.from_numpy(pixels[[i for i in order if i < 5]]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(images[:5], expected) and images.shape == (6, 3, 16, 16)
    assert torch.equal(pairs, torch.from_numpy(targets))
    files = loaded.manifest["origin"]["files"]
    assert [f["file"] for f in files] == [*sorted(names), "z_last.jpg", "targets.npy"]
    assert all(f["sha256"] == file_sha256(tmp_path / ("set" if f["role"] == "image" else "") / f["file"])
               for f in files)
    assert str(tmp_path) not in (out / "manifest.json").read_text()  # names and contents, not this machine's paths
    assert loaded.manifest["origin"]["normalization_from"].startswith("the imported images' own")
    assert loaded.storage().floats == 6 * 768 + 6 * D


def test_image_folder_without_targets_needs_a_teacher(tmp_path, tiny_teacher, capsys):
    pixels = np.random.default_rng(1).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    write_pngs(tmp_path / "set", pixels, [f"{i}.png" for i in range(4)])
    assert main(["import-distilled", str(tmp_path / "set"), "--out", str(tmp_path / "no")]) == 2
    assert "--teacher" in error_line(capsys, "import-distilled")
    out = tmp_path / "labelled"
    assert main(["import-distilled", str(tmp_path / "set"), "--out", str(out), "--teacher", str(tiny_teacher)]) == 0
    loaded = load_distilled(out)
    teacher = load_teacher(tiny_teacher)
    _, targets = loaded.training_pairs()
    assert torch.allclose(targets, teacher.encode(loaded.stored["images"]), atol=1e-6)
    assert loaded.manifest["origin"]["targets"] == "teacher at import"
    assert loaded.manifest["teacher"]["fingerprint"] == teacher.fingerprint
    assert loaded.manifest["normalization"] == {"mean": teacher.mean.tolist(), "std": teacher.std.tolist()}
    assert loaded.storage().floats == 4 * 768 + 4 * D  # the computed targets are stored and counted


def test_an_export_imports_back_with_its_own_targets_not_the_teachers(tmp_path, tiny_teacher, capsys):
    pixels = np.random.default_rng(2).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    write_pngs(tmp_path / "set", pixels, [f"{i}.png" for i in range(4)])
    teacher = ["--teacher", str(tiny_teacher)]
    assert main(["import-distilled", str(tmp_path / "set"), "--out", str(tmp_path / "first"), *teacher]) == 0
    export = tmp_path / "export"
    assert main(["export", str(tmp_path / "first"), "--out", str(export)]) == 0
    edited = np.load(export / "targets.npy") * 2 + 1  # targets the teacher does not compute (a distillation's)
    np.save(export / "targets.npy", edited)
    capsys.readouterr()
    for out, flags in (("again", teacher), ("plain", [])):  # without --teacher it was "images without targets"
        assert main(["import-distilled", str(export), "--out", str(tmp_path / out), *flags]) == 0
        assert "targets from targets.npy" in capsys.readouterr().out
        loaded = load_distilled(tmp_path / out)
        assert torch.equal(loaded.training_pairs()[1], torch.from_numpy(edited))
        assert loaded.manifest["origin"]["targets"] == "npy"
        assert loaded.manifest["teacher"]["known"] == bool(flags)
    # another teacher (same d and resolution) is refused: the export's targets are not its representations
    from conftest import make_teacher

    other = make_teacher(tmp_path / "other", seed=1)
    assert main(["import-distilled", str(export), "--out", str(tmp_path / "other_set"), "--teacher", str(other)]) == 2
    assert (f"is an export whose targets are the representations of teacher "
            f"{json.loads((tiny_teacher / 'manifest.json').read_text())['fingerprint']}, not of --teacher {other}"
            in error_line(capsys, "import-distilled"))
    assert not (tmp_path / "other_set").exists()
    # --targets teacher: the teacher's representations, as an import of the PNGs alone gives
    assert main(["import-distilled", str(export), "--targets", "teacher", "--out", str(tmp_path / "recomputed"),
                 *teacher]) == 0
    assert "targets computed by the teacher" in capsys.readouterr().out
    recomputed = load_distilled(tmp_path / "recomputed").training_pairs()[1]
    torch.testing.assert_close(recomputed, load_distilled(tmp_path / "first").training_pairs()[1])
    assert main(["import-distilled", str(export), "--targets", "teacher", "--out", str(tmp_path / "no")]) == 2
    assert "--targets teacher computes the targets with a teacher: pass --teacher DIR" in error_line(
        capsys, "import-distilled")
    np.save(export / "labels.npy", np.arange(4))
    assert main(["import-distilled", str(export), "--out", str(tmp_path / "no"), *teacher]) == 2
    assert "holds both targets.npy and labels.npy: pass --targets" in error_line(capsys, "import-distilled")
    assert not (tmp_path / "no").exists()


def check_export(artifact: Path, out: Path) -> dict:
    assert main(["export", str(artifact), "--out", str(out)]) == 0
    index = json.loads((out / "index.json").read_text())
    distilled = load_distilled(artifact)
    images, targets = distilled.training_pairs()
    entries = index["entries"]
    assert len(entries) == images.shape[0] == index["m"] * len(index["views"])
    assert index["storage"] == distilled.manifest["storage"] and index["budget"] == distilled.manifest["budget"]
    assert index["method"] == distilled.method and "quantization" in index["png"]
    assert sorted(e["file"] for e in entries) == [e["file"] for e in entries]  # name order = row order
    for row, entry in enumerate(entries):
        assert entry["target_row"] == row
        assert entry["view"] == index["views"][row // index["m"]] and entry["image_index"] == row % index["m"]
        png = torch.from_numpy(np.array(Image.open(out / entry["file"]))).permute(2, 0, 1).float() / 255
        assert (png - images[row].clamp(0, 1)).abs().max() <= 1 / 255 + 1e-6
    values = np.load(out / ("targets.npy" if targets.is_floating_point() else "labels.npy"))
    assert values.dtype == (np.float32 if targets.is_floating_point() else np.int64)
    assert np.array_equal(values, targets.numpy())
    return index


def test_export_of_a_krr_st_shaped_set_round_trips(tmp_path, monkeypatch, capsys):
    folder, _, _ = krr_st_files(tmp_path, monkeypatch, n=5, size=16)
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "set"), "--mean", "0.5,0.5,0.5",
                 "--std", "0.25,0.25,0.25"]) == 0
    index = check_export(tmp_path / "set", tmp_path / "export")
    assert index["views"] == ["identity"] and index["png"]["clipped_values"] > 0  # randn images leave [0, 1]
    assert index["png"]["max_abs_error_in_range"] <= 0.5 / 255 + 1e-7
    # the export folder imports back: sorted PNG names follow the rows of targets.npy
    assert main(["import-distilled", str(tmp_path / "export"), "--targets", str(tmp_path / "export" / "targets.npy"),
                 "--out", str(tmp_path / "again")]) == 0
    original, again = load_distilled(tmp_path / "set"), load_distilled(tmp_path / "again")
    from ssdd.evaluation.protocol import source_label

    # the default name of a re-imported export is the original's, marked: never the original's label
    assert again.manifest["name"] == f"{original.manifest['name']}-imported"
    assert source_label(again.manifest) != source_label(original.manifest)
    assert torch.equal(again.training_pairs()[1], original.training_pairs()[1])
    diff = again.training_pairs()[0] - original.training_pairs()[0].clamp(0, 1)
    assert diff.abs().max() <= 0.5 / 255 + 1e-6
    capsys.readouterr()
    assert main(["export", str(tmp_path / "set"), "--out", str(tmp_path / "export")]) == 2
    assert "not an empty folder" in error_line(capsys, "export")


def test_export_of_a_boost_set_writes_every_view(tmp_path, tiny_npz, tiny_teacher):
    overrides = ["data.resolution=16", "budget=3", "method=boost", "outer.steps=2", "outer.batch_size=16",
                 "pool.size=2", "pool.max_steps=5", "outer.model.width=4", "outer.model.depth=2", "device=cpu",
                 "boost.image_bases=8", "boost.image_resolution=8", "boost.target_bases=4", "boost.approx_steps=5"]
    run_distill(load_config(DistillConfig, None, [f"data.path={tiny_npz}", f"teacher={tiny_teacher}",
                                                  f"out_dir={tmp_path / 'boost'}", *overrides]), show_progress=False)
    index = check_export(tmp_path / "boost", tmp_path / "export")
    assert index["views"] == ["identity", "rot90", "rot180", "rot270"] and index["m"] == 34
    assert len(list((tmp_path / "export").glob("*.png"))) == 4 * 34


def test_export_of_a_supervised_set_writes_labels(tmp_path, tiny_npz, tiny_teacher):
    run_distill(load_config(DistillConfig, None, [
        f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={tmp_path / 'sup'}", "method=random_supervised",
        "data.resolution=16", "budget=6", "device=cpu"]), show_progress=False)
    index = check_export(tmp_path / "sup", tmp_path / "export")
    assert index["labels"]["file"] == "labels.npy" and "targets" not in index
    assert all("source_index" in e for e in index["entries"])
    with pytest.raises(FileExistsError, match=r"--out .*sup/pngs is inside a distilled set"):
        export_distilled(tmp_path / "sup", tmp_path / "sup" / "pngs")
    (tmp_path / "afile").write_text("")
    with pytest.raises(FileExistsError, match="a file, not a folder"):
        export_distilled(tmp_path / "sup", tmp_path / "afile")


@pytest.mark.parametrize("case, message", [
    ("missing_y", "y_syn.pt: not found"),
    ("mismatched_n", "holds 5 rows but"),
    ("wrong_ndim", "expected images of shape (N, 3, H, W)"),
    ("targets_ndim", "expected targets (N, d) or integer labels (N,)"),
    ("pickle", "holds pickled Python objects beyond tensors (argparse.Namespace)"),
    ("not_torch", "y_syn.pt: not a torch.save file (neither a torch zip archive nor a torch.save pickle)"),
    ("text", "y_syn.pt: not a torch.save file (neither a torch zip archive nor a torch.save pickle)"),
    ("raw_pickle", "y_syn.pt: not a torch.save file (a pickle that is not a torch zip archive"),
    ("zeros", "y_syn.pt: not a torch.save file (neither"),
    ("truncated", "y_syn.pt: not a torch.save file (truncated or corrupt)"),
])
def test_bad_krr_st_files_are_one_line_errors(case, message, tmp_path, monkeypatch, capsys):
    folder, x, y = krr_st_files(tmp_path, monkeypatch, n=6, size=16)
    if case == "missing_y":
        (folder / "y_syn.pt").unlink()
    elif case == "mismatched_n":
        torch.save(y[:5], folder / "y_syn.pt")
    elif case == "wrong_ndim":
        torch.save(x[:, 0], folder / "x_syn.pt")
    elif case == "targets_ndim":
        torch.save(y.view(6, 2, 4), folder / "y_syn.pt")
    elif case == "pickle":
        torch.save({"y_syn": y, "args": argparse.Namespace(lr=0.1)}, folder / "y_syn.pt")
    elif case == "not_torch":
        (folder / "y_syn.pt").write_bytes(b"not a checkpoint")
    elif case == "text":
        (folder / "y_syn.pt").write_text("hello, not a checkpoint\n")
    elif case == "raw_pickle":
        (folder / "y_syn.pt").write_bytes(pickle.dumps(y.tolist(), protocol=4))
    elif case == "zeros":
        (folder / "y_syn.pt").write_bytes(bytes(4096))
    elif case == "truncated":
        data = (folder / "y_syn.pt").read_bytes()
        (folder / "y_syn.pt").write_bytes(data[:-10])
    code = main(["import-distilled", str(folder), "--out", str(tmp_path / "out"), "--mean", "0.5,0.5,0.5",
                 "--std", "0.25,0.25,0.25"])
    assert code == 2
    err = error_line(capsys, "import-distilled")
    assert message in err and "weights_only=False" not in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_other_bad_inputs_are_one_line_errors(tmp_path, monkeypatch, capsys):
    assert main(["import-distilled", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in error_line(capsys, "import-distilled")
    folder, _, _ = krr_st_files(tmp_path, monkeypatch, n=3, size=16, dataset="mystery")
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "--dataset" in error_line(capsys, "import-distilled")  # no dataset in the path, no --mean/--std
    assert main(["import-distilled", str(folder), "--out", str(tmp_path / "o"), "--dataset", "cifar100"]) == 2
    assert "16 px" in error_line(capsys, "import-distilled")  # KRR-ST's tables are for 32, 64 and 224 px
    write_pngs(tmp_path / "set", np.zeros((2, 16, 16, 3), dtype=np.uint8), ["a.png", "b.png"])
    np.save(tmp_path / "t.npy", np.zeros((3, D), dtype=np.float32))
    assert main(["import-distilled", str(tmp_path / "set"), "--targets", str(tmp_path / "t.npy"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "holds 3 rows but" in error_line(capsys, "import-distilled")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, {"b": 2}], dtype=object))
    assert main(["import-distilled", str(tmp_path / "set"), "--targets", str(tmp_path / "objects.npy"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not a plain numeric .npy" in error_line(capsys, "import-distilled")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "set" / "c.png")
    assert main(["import-distilled", str(tmp_path / "set"), "--targets", str(tmp_path / "t.npy"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "all images must have one size" in error_line(capsys, "import-distilled")
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e")]) == 2
    assert "not an ssdd artifact folder" in error_line(capsys, "export")


def test_a_torch_file_given_where_an_npy_goes_says_how_to_write_the_npy(tmp_path):
    from ssdd.distill.interop import InteropError, load_npy

    torch.save(torch.zeros(2, 3), tmp_path / "x_syn.pt")
    with pytest.raises(InteropError, match=r"found a zip archive \(an \.npz, or a torch \.pt file: numpy\.save"):
        load_npy(tmp_path / "x_syn.pt")


def test_a_set_whose_manifest_lost_its_method_is_one_line(tmp_path):
    from ssdd.artifacts.files import ArtifactError
    from ssdd.distill.artifact import load_distilled

    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "ssdd.distilled", "shards": []}))
    with pytest.raises(ArtifactError, match="no 'method'; the manifest was edited or damaged"):
        load_distilled(tmp_path)
