"""`ssdd distill` at smoke scale: every method, storage, budget errors, resume equality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssdd.artifacts.storage import BudgetError
from ssdd.cli import main
from ssdd.config import load_config
from ssdd.distill import available_methods, load_distilled
from ssdd.distill.config import DistillConfig
from ssdd.distill.run import run_distill

SMOKE = ["data.resolution=16", "budget=10", "outer.steps=12", "outer.batch_size=16", "pool.size=2", "pool.max_steps=5",
         "outer.model.width=4", "outer.model.depth=2", "device=cpu", "log_every=3", "checkpoint_every=4"]


def smoke(npz: Path, teacher: Path, out: Path, *extra: str) -> DistillConfig:
    return load_config(DistillConfig, None, [f"data.path={npz}", f"teacher={teacher}", f"out_dir={out}", *SMOKE,
                                             *extra])


@pytest.mark.parametrize("method", ["random", "kmeans", "krr_st"])
def test_each_method_writes_an_artifact_within_budget(method, tiny_npz, tiny_teacher, tmp_path):
    distilled = run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / method, f"method={method}"),
                            show_progress=False)
    loaded = load_distilled(tmp_path / method)
    images, targets = loaded.training_pairs()
    m = 9  # floor(10 / (1 + 8 / 768)): teacher feature_dim 8, 16 px images
    assert images.shape == (m, 3, 16, 16) and targets.shape == (m, 8)
    report = loaded.storage()
    assert report.floats == m * 3 * 16 * 16 + m * 8  # the hand sum: images + targets, nothing else
    assert report.image_equivalents <= 10
    assert loaded.manifest["storage"]["image_equivalents"] == pytest.approx(report.image_equivalents)
    assert loaded.manifest["teacher"]["fingerprint"] == distilled.manifest["teacher"]["fingerprint"]
    assert (tmp_path / method / "config.yaml").is_file()
    if method != "krr_st":  # subsets store exact real pixels
        assert loaded.stored["images"].dtype == torch.uint8
        assert images.min() >= 0 and images.max() <= 1
    assert set(available_methods()) >= {"random", "kmeans", "krr_st"}


def test_kmeans_picks_distinct_images(tiny_npz, tiny_teacher, tmp_path):
    distilled = run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "k", "method=kmeans", "budget=30"),
                            show_progress=False)
    chosen = distilled.manifest["source_indices"]
    assert len(chosen) == len(set(chosen)) == 29


def test_krr_st_moves_images_and_targets(tiny_npz, tiny_teacher, tmp_path):
    run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "r", "method=random"), show_progress=False)
    run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "k", "method=krr_st", "outer.lr=0.01"), show_progress=False)
    random_set, krr_set = load_distilled(tmp_path / "r"), load_distilled(tmp_path / "k")
    # same seed -> same initial real images; KRR-ST then changes both images and targets
    assert random_set.manifest["source_indices"] == krr_set.manifest["init_indices"]
    r_images, r_targets = random_set.training_pairs()
    k_images, k_targets = krr_set.training_pairs()
    assert (k_images - r_images).abs().max() > 1e-3
    assert (k_targets - r_targets).abs().max() > 1e-3
    lines = (tmp_path / "k" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6, 9, 12]


@pytest.mark.parametrize(("pause", "paused_at"), [("stop_after_steps=5", 5), ("stop_after_minutes=0.00001", 1)])
def test_resume_reproduces_an_uninterrupted_run(tiny_npz, tiny_teacher, tmp_path, pause, paused_at):
    """Paused by a step count, or by a time limit (0.6 ms: shorter than the set-up, so after the first step)."""
    extra = ("method=krr_st", "outer.lr=0.01")
    full = run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "full", *extra), show_progress=False)
    assert run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "split", *extra, pause),
                       show_progress=False) is None
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["step"] == paused_at
    resumed = run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "split", *extra), resume=True,
                          show_progress=False)
    for key in ("images", "targets"):
        assert torch.equal(full.stored[key], resumed.stored[key]), key


def test_paper_convention_counts_images_only(tiny_npz, tiny_teacher, tmp_path):
    distilled = run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "p", "method=krr_st", "count_targets=false"),
                            show_progress=False)
    assert distilled.training_pairs()[0].shape[0] == 10
    assert distilled.manifest["budget_counts"] == "images only"
    assert distilled.storage().image_equivalents > 10  # reported honestly, beyond the image budget


def test_impossible_budget_and_existing_run_are_clear_errors(tiny_npz, tiny_teacher, tmp_path, capsys):
    with pytest.raises(BudgetError, match="cannot hold one sample"):
        run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "b", "method=random", "budget=0.5"), show_progress=False)
    run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "e", "method=random"), show_progress=False)
    code = main(["distill", "--no-progress", f"data.path={tiny_npz}", f"teacher={tiny_teacher}",
                 f"out_dir={tmp_path / 'e'}", "method=random", *SMOKE])
    # a finished random set has no checkpoint: the refusal does not send the user to a --resume that would fail
    assert code == 2 and "with no checkpoint to continue from); choose another out_dir" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown distillation method") as info:
        run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "u", "method=nope"), show_progress=False)
    assert "krr_st" in str(info.value) and "imported" not in str(info.value)  # only what `ssdd distill` runs
    code = main(["distill", "--no-progress", f"data.path={tiny_npz}", f"teacher={tiny_teacher}",
                 f"out_dir={tmp_path / 'i'}", "method=imported", *SMOKE])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "ssdd import-distilled" in err, err
    assert not (tmp_path / "i").exists()  # refused before anything was written


def test_budget_larger_than_source_and_convention_misuse_are_rejected(tiny_npz, tiny_teacher, tmp_path):
    with pytest.raises(BudgetError, match="only 64 images"):
        run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "big", "method=random", "budget=100"),
                    show_progress=False)
    with pytest.raises(ValueError, match="krr_st only"):
        run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "c", "method=random", "count_targets=false"),
                    show_progress=False)
    with pytest.raises(ValueError, match="at least 1"):
        run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "l", "log_every=0"), show_progress=False)


def test_linear_decay_end_points():
    from ssdd.distill.outer import linear_decay

    assert linear_decay(0, 100, 1e-3) == 1.0
    assert linear_decay(99, 100, 1e-3) == pytest.approx(1e-3)
    assert linear_decay(49, 99, 0.0) == pytest.approx(0.5)


def test_resume_keeps_metrics_log_equal_to_history(tiny_npz, tiny_teacher, tmp_path):
    out = tmp_path / "s"
    extra = ("method=krr_st", "checkpoint_every=4")
    run_distill(smoke(tiny_npz, tiny_teacher, out, *extra, "stop_after_steps=6"), show_progress=False)
    # steps 3 and 6 were logged, only step 4 was checkpointed: simulate a crash after step 6
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["step"], state["history"] = 4, state["history"][:1]
    torch.save(state, out / "checkpoint.pt")
    run_distill(smoke(tiny_npz, tiny_teacher, out, *extra), resume=True, show_progress=False)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 12


def test_a_kill_inside_a_log_window_resumes_to_the_same_metrics(tiny_npz, tiny_teacher, tmp_path, monkeypatch):
    import ssdd.distill.outer as outer

    extra = ("method=krr_st", "log_every=3", "checkpoint_every=2", "outer.steps=6")
    run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "whole", *extra), show_progress=False)
    real_loss, calls = outer.krr_loss, {"n": 0}

    def killed_at_the_third_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # after the checkpoint of step 2, before the first log row (step 3)
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(outer, "krr_loss", killed_at_the_third_step)
    with pytest.raises(KeyboardInterrupt):
        run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "cut", *extra), show_progress=False)
    monkeypatch.setattr(outer, "krr_loss", real_loss)
    run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "cut", *extra), resume=True, show_progress=False)

    def logged(folder: Path) -> list[tuple[int, float]]:
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [(row["step"], row["loss"]) for row in rows]

    assert logged(tmp_path / "cut") == logged(tmp_path / "whole")  # the mean over steps 1-3, not over step 3 alone
    whole, cut = load_distilled(tmp_path / "whole"), load_distilled(tmp_path / "cut")
    assert all(torch.equal(whole.stored[k], cut.stored[k]) for k in whole.stored)


def test_a_pause_inside_a_log_window_resumes_to_the_same_metrics_and_final_loss(tiny_npz, tiny_teacher, tmp_path):
    extra = ("method=krr_st", "log_every=3", "checkpoint_every=2", "outer.steps=6")
    run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "whole", *extra), show_progress=False)
    assert run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "cut", *extra, "stop_after_steps=4"),
                       show_progress=False) is None  # paused at step 4, inside the window of steps 4-6
    run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "cut", *extra), resume=True, show_progress=False)

    def logged(folder: Path) -> list[tuple[int, float]]:
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [(row["step"], row["loss"]) for row in rows]

    assert logged(tmp_path / "cut") == logged(tmp_path / "whole")  # no extra row at the pause
    whole, cut = load_distilled(tmp_path / "whole"), load_distilled(tmp_path / "cut")
    assert cut.manifest["final_loss"] == whole.manifest["final_loss"]


def test_a_fresh_run_after_a_stop_before_any_checkpoint_keeps_nothing_of_it(tiny_npz, tiny_teacher, tmp_path,
                                                                             capsys):
    from ssdd.cli import main

    out = tmp_path / "nan"
    args = ["distill", "--no-progress", f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={out}", *SMOKE,
            "method=krr_st", "log_every=1", "checkpoint_every=50"]
    assert main([*args, "outer.lr=1e30"]) == 4  # diverges before its first checkpoint
    assert (out / "numerical_stop.json").exists()
    assert main([*args, "--resume", "outer.lr=1e-3"]) == 2  # nothing to continue: says to run again without it
    assert "run again without --resume" in capsys.readouterr().err
    assert main([*args, "outer.steps=3"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3] and not (out / "numerical_stop.json").exists()


def test_supervised_random_subset_stores_labels_and_pretrains_with_cross_entropy(tiny_npz, tiny_teacher, tmp_path):
    from ssdd.config import ModelConfig
    from ssdd.data import load_npz
    from ssdd.evaluation.config import PretrainConfig
    from ssdd.evaluation.pretrain import pretrain_on_pairs
    from ssdd.models import build_model

    run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "r", "method=random"), show_progress=False)
    sup = run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "s", "method=random_supervised"), show_progress=False)
    loaded = load_distilled(tmp_path / "s")
    images, labels = loaded.training_pairs()
    m = 9  # floor(10 / (1 + 1/768)): one stored label per image
    assert images.shape == (m, 3, 16, 16) and labels.dtype == torch.int64 and labels.shape == (m,)
    assert loaded.storage().floats == m * 768 + m
    assert sup.manifest["source_indices"] == load_distilled(tmp_path / "r").manifest["source_indices"]
    true_labels = load_npz(tiny_npz, "train", 16).labels[torch.tensor(sup.manifest["source_indices"])]
    assert torch.equal(labels, true_labels)
    backbone = build_model(ModelConfig(name="convnet", width=4, depth=2), 16)
    losses = pretrain_on_pairs(backbone, images, labels, torch.full((3,), 0.5), torch.full((3,), 0.25),
                               PretrainConfig(epochs=30, lr=0.05), torch.Generator().manual_seed(0),
                               num_classes=loaded.manifest["num_classes"])
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="num_classes"):
        pretrain_on_pairs(backbone, images, labels, torch.zeros(3), torch.ones(3), PretrainConfig(epochs=1),
                          torch.Generator())


def test_channels_last_gives_the_same_set_to_float_rounding(tiny_npz, tiny_teacher, tmp_path):
    """outer.channels_last only changes the memory layout (and so the summation order), not what is learned."""
    sets = {}
    for layout in ("on", "off"):
        cfg = smoke(tiny_npz, tiny_teacher, tmp_path / layout, "method=krr_st", "outer.lr=0.01",
                    f"outer.channels_last={layout}", "outer.solve_dtype=float64")
        sets[layout] = run_distill(cfg, show_progress=False).stored
    for key in ("images", "targets"):
        assert torch.allclose(sets["on"][key], sets["off"][key], atol=1e-4), key
    with pytest.raises(ValueError, match=r"outer\.channels_last"):
        run_distill(smoke(tiny_npz, tiny_teacher, tmp_path / "bad", "outer.channels_last=sideways"),
                    show_progress=False)
