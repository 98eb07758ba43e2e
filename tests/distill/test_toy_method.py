"""A new distillation method is one module plus its registration: a toy method defined here, and nowhere else,
runs through `ssdd distill` -> `ssdd evaluate` -> `ssdd report` on the digits data (as the demo presets), and
every stage asks it (its checks before work, its budget rule, how its saved folder is verified, its note in
the report) instead of knowing its name."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import torch

from conftest import make_teacher
from ssdd.cli import main
from ssdd.config import ConfigError
from ssdd.distill.budget import samples_for_budget
from ssdd.distill.registry import (
    DistillContext,
    DistillMethod,
    DistillResult,
    ManifestMismatch,
    StoredSet,
    get_method,
    register_method,
    unregister_method,
)

NAME = "toy_means"
NOTE = "toy: means of consecutive source images, teacher targets"
CALLS: list[str] = []


# ----------------------------------------------------------------------------- the toy method, all of it
def toy_check(cfg: Any) -> None:
    CALLS.append("check")
    if cfg.budget != int(cfg.budget):
        raise ConfigError(f"budget={cfg.budget:g}: {NAME} takes a whole number of image-equivalents")


def toy_samples(cfg: Any, image_shape: tuple[int, int, int], target_dim: int, available: int | None) -> int:
    CALLS.append("samples")  # each sample: one image and its teacher target, like KRR-ST's
    return samples_for_budget(cfg.budget, image_shape, target_dim, True, available=available)


def toy_verify(s: StoredSet) -> None:
    CALLS.append("verify")
    if s.rows != s.manifest.get("m") or "images" not in s.stored or "targets" not in s.stored:
        raise ManifestMismatch(f"a {NAME} set holds m images and m targets")


def toy_files(cfg: Any, teacher: Mapping[str, Any], available: int | None) -> None:
    CALLS.append("check_files")


def distill_toy(ctx: DistillContext) -> DistillResult:
    m = toy_samples(ctx.cfg, tuple(ctx.source.images.shape[1:]), ctx.teacher.feature_dim, len(ctx.source))
    chunk = len(ctx.source) // m
    images = ctx.source.images[: m * chunk].float().view(m, chunk, *ctx.source.images.shape[1:]).mean(1) / 255.0
    with torch.no_grad():
        targets = ctx.teacher(images.to(ctx.device)).float().cpu()
    return DistillResult({"images": images.cpu(), "targets": targets}, {"m": m, "chunk": chunk})


def reconstruct_toy(stored: dict[str, torch.Tensor], manifest: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    return stored["images"].float(), stored["targets"].float()


TOY = DistillMethod(NAME, distill_toy, reconstruct_toy, check=toy_check, check_files=toy_files, samples=toy_samples,
                    verify=toy_verify, note=NOTE, colour="tab:cyan", loss_name="none (not a learned set)")


@pytest.fixture
def toy() -> Iterator[DistillMethod]:
    register_method(TOY)
    CALLS.clear()
    try:
        yield get_method(NAME)
    finally:
        unregister_method(NAME)


DIGITS = ["data.source=digits", "data.name=digits", "data.resolution=16"]


def test_a_toy_method_runs_through_distill_evaluate_and_report(toy, tmp_path, one_thread, capsys):
    teacher = make_teacher(tmp_path / "teacher")
    out = tmp_path / "toy_set"
    base = ["distill", "--no-progress", f"method={NAME}", f"teacher={teacher}", "device=cpu", *DIGITS]

    # its own check runs before any work: one line, exit code 2, nothing written
    assert main([*base, "budget=2.5", f"out_dir={out}"]) == 2
    assert f"{NAME} takes a whole number" in capsys.readouterr().err and not out.exists()

    assert main([*base, "budget=4", f"out_dir={out}"]) == 0
    assert {"check", "samples", "check_files", "verify"} <= set(CALLS)  # every hook was asked
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == NAME and manifest["m"] == 3  # 4 / (1 + 64/768)

    # an edited manifest is refused when the set is loaded
    edited = tmp_path / "edited"
    edited.mkdir()
    for f in out.iterdir():
        if f.is_file():
            (edited / f.name).write_bytes(f.read_bytes())
    (edited / "manifest.json").write_text(json.dumps({**manifest, "m": 2}))
    CALLS.clear()
    from ssdd.artifacts.files import ArtifactError
    from ssdd.distill import load_distilled

    with pytest.raises(ArtifactError, match="'m' is 2"):
        load_distilled(edited)

    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--no-progress", f"teacher={teacher}", f"out_dir={evaluation}", "device=cpu", "seeds=1",
                 "source={source: digits, name: digits, resolution: 16}", "targets=[{source: digits, name: digits}]",
                 "models=[{name: convnet, width: 4, depth: 2}]", "modes=[linear_probe]", "probe.iterations=5",
                 "pretrain.epochs=1", "full_data.enabled=false", "full_data.same_recipe=false", "cka_images=0",
                 "--distilled", str(out)]) == 0
    rows = json.loads((evaluation / "results.json").read_text())
    assert any(r["method"] == NAME for r in (rows["rows"] if isinstance(rows, dict) else rows))

    report = tmp_path / "report"
    assert main(["report", str(evaluation), "--out", str(report)]) == 0
    assert NOTE in (report / "report.md").read_text()  # the report asked the method for its note


def test_what_a_methods_reconstruct_returns_is_checked_and_a_missing_tensor_is_refused_on_save():
    """A plugin's reconstruct that returns 0-255 pixels, or fewer targets than images, is one line naming the
    method (such sets used to be evaluated silently); the teacher-target check refuses a set without targets."""
    from ssdd.distill.artifact import DistilledSet
    from ssdd.distill.verify import verify_teacher_targets

    gen = torch.Generator().manual_seed(0)
    images, targets = 0.1 + 0.8 * torch.rand(4, 3, 8, 8, generator=gen), torch.randn(4, 6, generator=gen)
    returns = {"pixels": (images * 255, targets), "short": (images, targets[:3]), "ints": (images.long(), targets),
               "fine": (images * 1.4 - 0.2, targets)}  # learned images stray outside [0, 1]: fine
    for name, pair in returns.items():
        register_method(DistillMethod(name, lambda ctx: None, lambda s, m, pair=pair: pair))
    try:
        for name, message in (("pixels", r"^method pixels's reconstruct returned images in \[25\.8, 229\]; it must "
                                         r"return them on the \[0, 1\] pixel scale \(0 to 255 pixels: divide by 255; "
                                         r"an imported set: check its --mean and --std, in \[0, 1\] pixel units\)$"),
                              ("short", r"^method short's reconstruct returned 4 images but 3 targets$"),
                              ("ints", r"^method ints's reconstruct returned images of torch\.int64")):
            with pytest.raises(ValueError, match=message):
                DistilledSet(name, {}, {}).training_pairs()
        assert DistilledSet("fine", {}, {}).training_pairs()[0].shape == (4, 3, 8, 8)
    finally:
        for name in returns:
            unregister_method(name)
    stored = StoredSet("m.json", {"method": "x"}, {"images": images}, (3, 8, 8), 1.0, True, {}, 6, 4)
    with pytest.raises(ManifestMismatch, match=r"^no targets tensor among the stored ones \(images\)$"):
        verify_teacher_targets(stored)
    from ssdd.distill.verify import verify_labels

    with pytest.raises(ManifestMismatch, match=r"^no labels tensor among the stored ones \(images\)$"):
        verify_labels(stored)


def test_a_set_that_fails_its_checks_when_saved_blames_the_method_not_a_manifest(tmp_path):
    from ssdd.artifacts.files import ArtifactError
    from ssdd.distill.verify import verify_distilled

    manifest = {"method": "nobody", "image_shape": [3, 8, 8], "budget": 10.0, "m": 5,
                "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    stored = {"images": torch.rand(4, 3, 8, 8)}
    with pytest.raises(ArtifactError, match=r"'m' is 5 but the tensors hold 4 samples; the set the method made "
                                            r"does not pass its checks, nothing was written"):
        verify_distilled(tmp_path, manifest, stored, saving=True)
    with pytest.raises(ArtifactError, match=r"the manifest does not describe its tensors \(edited or damaged\)"):
        verify_distilled(tmp_path, manifest, stored)  # a saved folder read back


@pytest.mark.parametrize("change, said", [({"m": "4"}, r"'m' \(the number of samples\) must be a positive whole"),
                                          ({"normalization": None}, "'normalization' must hold 3 means")])
def test_a_manifest_with_a_bad_m_or_without_its_normalization_is_refused_not_guessed(tmp_path, change, said):
    from ssdd.artifacts.files import ArtifactError
    from ssdd.distill.verify import verify_distilled

    manifest = {"method": "nobody", "image_shape": [3, 8, 8], "budget": 10.0, "m": 4,
                "normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}, **change}
    with pytest.raises(ArtifactError, match=said):
        verify_distilled(tmp_path, manifest, {"images": torch.rand(4, 3, 8, 8)})


def test_a_set_whose_manifest_lacks_m_takes_it_from_its_tensors(tmp_path):
    """A plugin's method need not say m (older sets of one lack it); a Boost set without it exported 276 samples."""
    from ssdd.distill.artifact import load_distilled, save_distilled

    stored = {"images": torch.rand(4, 3, 8, 8), "targets": torch.rand(4, 2)}
    register_method(DistillMethod("no_m_said", lambda ctx: None, lambda s, m: (s["images"], s["targets"])))
    try:
        saved = save_distilled(tmp_path / "set", "no_m_said", stored, (3, 8, 8), 10.0, True,
                               {"normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}})
        assert saved.manifest["m"] == 4
        path = tmp_path / "set" / "manifest.json"
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "m"}))
        assert load_distilled(tmp_path / "set").manifest["m"] == 4
    finally:
        unregister_method("no_m_said")
