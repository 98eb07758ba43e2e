"""`ssdd distill method=mkdt` at smoke scale: the artifact, initialisation, resume, recompute, refused settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import make_npz, make_teacher
from ssdd.config import ConfigError, load_config
from ssdd.distill import load_distilled
from ssdd.distill.config import DistillConfig
from ssdd.distill.mkdt import experts_fingerprint
from ssdd.distill.run import run_distill
from ssdd.experts import ExpertsConfig, load_experts
from ssdd.experts.train import train_experts

pytestmark = pytest.mark.usefixtures("one_thread")

SMOKE = ["method=mkdt", "data.resolution=16", "budget=10", "mkdt.iterations=10", "mkdt.syn_steps=5",
         "mkdt.batch_syn=4", "device=cpu", "log_every=2", "checkpoint_every=4"]
M = 9  # floor(10 / (1 + 8 / 768)): KRR-ST's m at budget 10 with d = 8 at 16 px (tests/distill/test_run.py)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A tiny source, a teacher, and 2 experts of 3 epochs made with them (shared by the module's tests)."""
    root = tmp_path_factory.mktemp("mkdt")
    npz, teacher = make_npz(root / "tiny.npz"), make_teacher(root / "teacher")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train_experts(load_config(ExpertsConfig, None, [
        f"teacher={teacher}", f"data.path={npz}", "data.resolution=16", "num_experts=2", "epochs=3", "batch_size=16",
        "model.width=4", "model.depth=2", f"out_dir={root / 'experts'}", "device=cpu"]), show_progress=False)
    torch.set_num_threads(threads)
    return {"npz": npz, "teacher": teacher, "experts": root / "experts"}


def smoke(world: dict[str, Path], out: Path, *extra: str) -> DistillConfig:
    return load_config(DistillConfig, None, [f"data.path={world['npz']}", f"teacher={world['teacher']}",
                                             f"mkdt.experts={world['experts']}", f"out_dir={out}", *SMOKE, *extra])


def source_images(world: dict[str, Path]) -> torch.Tensor:
    from ssdd.data import load_npz

    return load_npz(world["npz"], "train", 16).images


def test_artifact_within_budget_and_initialisation(world, tmp_path):
    from ssdd.augment import to_float
    from ssdd.teacher import load_teacher

    distilled = run_distill(smoke(world, tmp_path / "high"), show_progress=False)
    loaded = load_distilled(tmp_path / "high")
    assert loaded.stored["images"].dtype == loaded.stored["targets"].dtype == torch.float32
    images, targets = loaded.training_pairs()
    assert images.shape == (M, 3, 16, 16) and targets.shape == (M, 8)
    report = loaded.storage()
    assert report.floats == M * 3 * 16 * 16 + M * 8 and report.image_equivalents <= 10
    manifest = loaded.manifest
    assert manifest["method"] == "mkdt" and manifest["m"] == M and distilled.manifest["m"] == M
    experts = load_experts(world["experts"])
    assert manifest["experts"]["fingerprint"] == experts_fingerprint(experts)
    assert manifest["experts"]["count"] == 2 and manifest["experts"]["epochs"] == 3
    assert manifest["learned_lr"] > 0 and manifest["learned_lr"] != pytest.approx(0.1, abs=1e-9)  # learned
    high = torch.topk(experts.sample_scores(), M).indices.sort().values
    assert manifest["init"] == "high_loss" and manifest["init_indices"] == high.tolist()
    steps = [json.loads(line)["step"] for line in (tmp_path / "high" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10]

    random = run_distill(smoke(world, tmp_path / "random", "mkdt.init=random"), show_progress=False)
    drawn = torch.randperm(64, generator=torch.Generator().manual_seed(0))[:M].sort().values
    assert random.manifest["init_indices"] == drawn.tolist() != high.tolist()

    # with (almost) zero learning rates the set stays at its start: the chosen real images and their targets
    still = run_distill(smoke(world, tmp_path / "still", "mkdt.lr_images=1e-12", "mkdt.lr_targets=1e-12",
                              "mkdt.lr_lr=1e-12"), show_progress=False)
    assert still.manifest["init_indices"] == high.tolist()
    real = source_images(world)[high]
    start_targets = load_teacher(world["teacher"]).encode(real)
    still_images, still_targets = still.training_pairs()
    assert torch.allclose(still_images, to_float(real), atol=1e-5)
    assert torch.allclose(still_targets, start_targets, atol=1e-5)
    # ... and MKDT moves both images and targets away from it
    assert (images - still_images).abs().max() > 1e-2
    assert (targets - still_targets).abs().max() > 1e-3


def test_evaluate_consumes_an_mkdt_set(world, tmp_path):
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    run_distill(smoke(world, tmp_path / "s"), show_progress=False)
    rows = run_evaluate(load_config(EvaluateConfig, None, [
        f"teacher={world['teacher']}", f"out_dir={tmp_path / 'eval'}", f"source.path={world['npz']}",
        "source.resolution=16", f"distilled=[{tmp_path / 's'}]", "models=[{name: convnet, width: 4, depth: 2}]",
        f"targets=[{{source: npz, path: {world['npz']}, name: t}}]", "pretrain.epochs=1", "full_data.enabled=false",
        "full_data.same_recipe=false", "finetune.small_iterations=2", "probe.iterations=2", "cka_images=0",
        "device=cpu", "modes=[linear_probe]", "seeds=1"]), show_progress=False)
    mkdt_rows = [r for r in rows if r["label"] == "mkdt@10"]
    assert len(mkdt_rows) == 1 and 0 <= float(mkdt_rows[0]["top1"]) <= 100 and int(mkdt_rows[0]["m"]) == M


def test_resume_and_recompute_give_the_same_set(world, tmp_path):
    full = run_distill(smoke(world, tmp_path / "full"), show_progress=False)
    assert run_distill(smoke(world, tmp_path / "split", "stop_after_steps=4"), show_progress=False) is None
    assert not (tmp_path / "split" / "manifest.json").exists()
    resumed = run_distill(smoke(world, tmp_path / "split"), resume=True, show_progress=False)
    for key in ("images", "targets"):
        assert torch.allclose(full.stored[key], resumed.stored[key], rtol=1e-6, atol=1e-6), key
    assert resumed.manifest["learned_lr"] == pytest.approx(full.manifest["learned_lr"], rel=1e-6)
    assert resumed.manifest["final_loss"] == pytest.approx(full.manifest["final_loss"], rel=1e-5)

    plain = run_distill(smoke(world, tmp_path / "plain", "mkdt.recompute=false"), show_progress=False)
    for key in ("images", "targets"):
        assert torch.allclose(full.stored[key], plain.stored[key], rtol=1e-5, atol=1e-5), key
    assert plain.manifest["learned_lr"] == pytest.approx(full.manifest["learned_lr"], rel=1e-5)


def test_a_numerical_stop_names_mkdt_s_own_rates_and_their_resume_works(world, tmp_path, monkeypatch, capsys):
    import ssdd.distill.mkdt as mkdt
    from ssdd.cli.commands import main

    def args(out: Path) -> list[str]:
        return [f"data.path={world['npz']}", f"teacher={world['teacher']}", f"mkdt.experts={world['experts']}",
                f"out_dir={out}", *SMOKE]

    # images pushed far out of range by the first step: nothing is checkpointed, the advice is MKDT's image rate
    assert main(["distill", "--no-progress", *args(tmp_path / "huge"), "mkdt.lr_images=1e7"]) == 4
    line = capsys.readouterr().err.strip()
    assert "the distilled images reached" in line and "run again with a lower mkdt.lr_images" in line
    assert "krr" not in line and "outer." not in line  # the outer loop's rate is not MKDT's

    # a NaN after the checkpoint of iteration 4: resume from it with a lower image rate
    real_loss, calls = mkdt.matching_loss, {"n": 0}

    def nan_after_the_checkpoint(*a, **k):
        calls["n"] += 1
        return real_loss(*a, **k) * (float("nan") if calls["n"] > 5 else 1.0)

    monkeypatch.setattr(mkdt, "matching_loss", nan_after_the_checkpoint)
    out = tmp_path / "nan"
    assert main(["distill", "--no-progress", *args(out)]) == 4
    line = capsys.readouterr().err.strip()
    assert "continue with --resume mkdt.lr_images=<lower value> (from its state at iteration 4" in line
    monkeypatch.setattr(mkdt, "matching_loss", real_loss)
    assert main(["distill", "--no-progress", "--resume", *args(out), "mkdt.lr_images=500"]) == 0
    assert load_distilled(out).manifest["resumed_with_changes"] == [
        {"key": "mkdt.lr_images", "from": 1000.0, "to": 500.0, "at": "step 4"}]


def test_refused_settings(world, tmp_path):
    base = [f"data.path={world['npz']}", f"teacher={world['teacher']}", *SMOKE]
    with pytest.raises(ConfigError, match=r"mkdt\.experts"):
        run_distill(load_config(DistillConfig, None, [*base, f"out_dir={tmp_path / 'none'}"]), show_progress=False)

    other = make_teacher(tmp_path / "other", seed=1)
    with pytest.raises(ConfigError, match="another teacher"):
        run_distill(smoke(world, tmp_path / "other_run", f"teacher={other}"), show_progress=False)
    assert not (tmp_path / "other_run").exists()  # refused before any work

    for extra in (("mkdt.max_start_epoch=2", "mkdt.expert_epochs=3"), ("mkdt.max_start_epoch=4",
                                                                      "mkdt.expert_epochs=1")):
        with pytest.raises(ConfigError, match="needs 4 expert epochs"):
            run_distill(smoke(world, tmp_path / "long", *extra), show_progress=False)
        assert not (tmp_path / "long").exists()

    # a BatchNorm student is impossible: `ssdd experts` refuses one, and experts whose manifest claims one
    # cannot be unrolled
    with pytest.raises(ConfigError, match="BatchNorm"):
        train_experts(load_config(ExpertsConfig, None, [
            f"teacher={world['teacher']}", f"data.path={world['npz']}", "data.resolution=16", "model.name=convnet",
            "model.width=4", "model.depth=2", f"out_dir={tmp_path / 'bn_experts'}", "device=cpu"]),
            show_progress=False)
    edited = tmp_path / "edited"
    shutil.copytree(world["experts"], edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["model"]["name"] = "convnet"
    (edited / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="BatchNorm"):
        run_distill(smoke(world, tmp_path / "bn", f"mkdt.experts={edited}"), show_progress=False)


def test_loading_any_distilled_set_knows_mkdt_in_a_fresh_process():
    """`ssdd evaluate` loads sets through ssdd.distill alone: mkdt must be registered there, not only by the runner."""
    import subprocess
    import sys

    code = "from ssdd.distill import available_methods; print(' '.join(available_methods()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "mkdt" in out and "krr_st" in out and "boost" in out


def test_high_loss_subset_is_mkdt_s_start_as_real_uint8_images(world, tmp_path):
    """method=high_loss stores MKDT's initial images exactly (uint8) with the teacher's targets, at the same m."""
    subset = run_distill(smoke(world, tmp_path / "hl", "method=high_loss"), show_progress=False)
    expected = load_experts(world["experts"]).sample_scores().topk(M).indices.sort().values.tolist()
    assert subset.manifest["source_indices"] == expected and subset.manifest["m"] == M
    assert subset.stored["images"].dtype == torch.uint8
    assert torch.equal(subset.stored["images"], source_images(world)[expected])
    assert subset.manifest["experts"]["fingerprint"] == experts_fingerprint(load_experts(world["experts"]))
    with pytest.raises(ConfigError, match=r"mkdt\.experts"):
        run_distill(load_config(DistillConfig, None, [f"data.path={world['npz']}", f"teacher={world['teacher']}",
                                                      f"out_dir={tmp_path / 'none'}", *SMOKE, "method=high_loss"]),
                    show_progress=False)


def test_an_expert_manifest_whose_epochs_disagree_with_its_files_is_refused_before_work(world, tmp_path, capsys):
    from ssdd.cli.commands import main

    edited = tmp_path / "edited"
    shutil.copytree(world["experts"], edited)
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["epochs"] = 5  # the files hold 3 epochs (4 trajectory rows)
    (edited / "manifest.json").write_text(json.dumps(manifest))
    args = [f"data.path={world['npz']}", f"teacher={world['teacher']}", f"mkdt.experts={edited}",
            f"out_dir={tmp_path / 'run'}", *SMOKE, "mkdt.max_start_epoch=3", "mkdt.expert_epochs=3"]
    assert main(["distill", "--no-progress", *args]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "expert-00001.safetensors" in err[0] and "[4, " in err[0] and "5 epochs" in err[0]
    assert not (tmp_path / "run").exists()
