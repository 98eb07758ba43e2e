"""`ssdd evaluate` at smoke scale writes well-formed results, plus the pieces it is built from."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from ssdd.cli import main
from ssdd.config import load_config
from ssdd.distill.config import DistillConfig
from ssdd.distill.run import run_distill
from ssdd.evaluation.cka import linear_cka
from ssdd.evaluation.protocol import dealing_order
from ssdd.evaluation.report import summarize
from ssdd.evaluation.validate import PRETRAIN_SUFFIX


def test_linear_cka_properties():
    torch.manual_seed(0)
    x = torch.randn(50, 6)
    q = torch.linalg.qr(torch.randn(6, 6))[0]
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3 * x @ q + 1) == pytest.approx(1.0)  # invariant to rotation, scale, shift
    assert linear_cka(x, torch.randn(50, 4)) < 0.5
    with pytest.raises(ValueError):
        linear_cka(x, x[:10])


def test_processes_take_each_sets_seeds_side_by_side():
    # 2 networks x 3 seeds x 2 sets, numbered network, then seed, then set: (net, seed, set) of number n
    cell = {n: ((n - 1) // 6, (n - 1) // 2 % 3, (n - 1) % 2) for n in range(1, 13)}
    order = dealing_order(list(range(1, 13)), n_seeds=3, n_sources=2)
    assert [cell[n] for n in order] == [(net, seed, src) for net in range(2) for src in range(2) for seed in range(3)]
    assert dealing_order([2, 3, 5], n_seeds=3, n_sources=2) == [3, 5, 2]  # pending cells only: set 0's seeds first


def test_summary_retention_and_gains():
    def row(label, method, seed, top1, budget=None):
        return {"label": label, "method": method, "budget": budget, "arch": "a", "target": "t", "mode": "finetune",
                "seed": seed, "top1": top1, "pretrain_s": 1.0, "eval_s": 1.0}

    rows = [row("full_data", "full_data", 0, 80), row("full_data", "full_data", 1, 80),
            row("no_pretrain", "no_pretrain", 0, 40), row("no_pretrain", "no_pretrain", 1, 44),
            row("random@100", "random", 0, 50, 100), row("random@100", "random", 1, 54, 100),
            row("krr_st@100", "krr_st", 0, 60, 100), row("krr_st@100", "krr_st", 1, 64, 100)]
    by_label = {s["label"]: s for s in summarize(rows)}
    krr = by_label["krr_st@100"]
    assert krr["top1_mean"] == 62 and krr["top1_std"] == pytest.approx(2 ** 0.5 * 2)
    assert krr["retention"] == pytest.approx(62 / 80)
    assert krr["gain_vs_no_pretrain"] == pytest.approx(20) and krr["gain_vs_random"] == pytest.approx(10)
    assert by_label["random@100"]["gain_vs_random"] is None
    assert by_label["no_pretrain"]["gain_vs_no_pretrain"] is None


def test_evaluate_smoke_writes_results(tiny_npz, tiny_teacher, tmp_path, capsys):
    cfg = load_config(DistillConfig, None, [
        f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={tmp_path / 'r'}", "method=random",
        "data.resolution=16", "budget=10", "device=cpu"])
    run_distill(cfg, show_progress=False)
    out = tmp_path / "eval"
    code = main(["evaluate", "--no-progress", "-d", str(tmp_path / "r"), "--", f"teacher={tiny_teacher}",
                 f"out_dir={out}", f"source.path={tiny_npz}", "seeds=2",
                 "models=[{name: convnet, width: 4, depth: 2}]",
                 f"targets=[{{source: npz, path: {tiny_npz}, name: tiny}}]", "pretrain.epochs=2",
                 "full_data.epochs=1", "full_data.batch_size=16", "finetune.small_iterations=3",
                 "probe.iterations=5", "cka_images=16", "device=cpu"])
    assert code == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    # 4 sources (random, no pre-training, the two full-data rows) x 2 seeds x 1 target x 2 modes
    assert len(rows) == 16
    assert {r["label"] for r in rows} == {"random@10", "no_pretrain", "full_data", "full_data_same_recipe"}
    assert {r["mode"] for r in rows} == {"finetune", "linear_probe"}
    assert all(0 <= float(r["top1"]) <= 100 for r in rows)
    assert all(0 <= float(r["cka_to_teacher"]) <= 1 + 1e-9 for r in rows)
    random_rows = [r for r in rows if r["label"] == "random@10"]
    assert all(float(r["image_equivalents"]) <= 10 and int(r["m"]) == 9 for r in random_rows)
    summary = json.loads((out / "summary.json").read_text())["rows"]
    assert len(summary) == 8 and all(s["seeds"] == 2 for s in summary)
    assert (out / "results.png").is_file() and (out / "summary.md").read_text().startswith("| pre-training")
    assert "random@10" in capsys.readouterr().out
    full = next(s for s in summary if s["label"] == "full_data")
    assert full["pretrain_speedup"] is None
    assert all(s["retention_of"] == "full_data_same_recipe" for s in summary)
    assert next(s for s in summary if s["label"] == "no_pretrain")["pretrain_speedup"] is None
    assert all(s["pretrain_speedup"] > 0 for s in summary if s["label"] == "random@10")
    # the summary can be rebuilt from results.json alone
    (out / "summary.md").unlink()
    assert main(["evaluate", "--report-only", f"out_dir={out}"]) == 0
    assert (out / "summary.md").read_text().startswith("| pre-training")


def test_resolutions_the_evaluation_does_not_use_are_named(tiny_npz, tiny_teacher, tmp_path, capsys):
    """Every image is resized to the teacher's resolution (16 px here): a source or target resolution that
    differs is named in a line, not silently dropped."""
    code = main(["evaluate", f"teacher={tiny_teacher}", f"out_dir={tmp_path / 'e'}", f"source.path={tiny_npz}",
                 "source.resolution=32", "seeds=1", "models=[{name: convnet, width: 4, depth: 2}]",
                 f"targets=[{{source: npz, path: {tiny_npz}, name: tiny, resolution: 16}}, "
                 f"{{source: npz, path: {tiny_npz}, name: big, resolution: 24}}]", "modes=[linear_probe]",
                 "full_data.enabled=false", "full_data.same_recipe=false", "probe.iterations=2", "cka_images=0",
                 "device=cpu"])
    assert code == 0
    assert ("every image at the teacher's 16 px; not used: source.resolution=32, targets[1].resolution=24"
            in capsys.readouterr().out)


def test_evaluate_rejects_unknown_mode(tiny_teacher, tmp_path, capsys):
    assert main(["evaluate", "--no-progress", f"teacher={tiny_teacher}", "modes=[finetune,knn]",
                 f"out_dir={tmp_path}"]) == 2
    assert "modes" in capsys.readouterr().err
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    with pytest.raises(ValueError, match="modes"):
        run_evaluate(load_config(EvaluateConfig, None, [f"teacher={tiny_teacher}", "modes=[knn]",
                                                        f"out_dir={tmp_path}"]), show_progress=False)


def test_source_label_names_the_budget_convention():
    from ssdd.evaluation.protocol import source_label

    assert source_label({"method": "krr_st", "budget": 100.0, "budget_counts": "all stored tensors"}) == "krr_st@100"
    assert source_label({"method": "krr_st", "budget": 100, "budget_counts": "images only"}) == \
        "krr_st@100/images-only"
    assert source_label({"method": "boost", "name": "boost-no-views", "budget": 100}) == "boost-no-views@100"
    assert source_label({"method": "boost", "name": "", "budget": 100}) == "boost@100"


def test_evaluate_refuses_sets_from_another_teacher_and_duplicate_labels(tiny_npz, tiny_teacher, tmp_path):
    from conftest import make_teacher
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    for name in ("a", "b"):
        run_distill(load_config(DistillConfig, None, [
            f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={tmp_path / name}", "method=random",
            "data.resolution=16", "budget=10", "device=cpu"]), show_progress=False)
    other = make_teacher(tmp_path / "other", seed=1)
    base = [f"source.path={tiny_npz}", f"out_dir={tmp_path / 'e'}", "device=cpu", "cka_images=0",
            "full_data.enabled=false", f"targets=[{{source: npz, path: {tiny_npz}}}]"]
    with pytest.raises(ValueError, match="not the evaluation teacher"):
        run_evaluate(load_config(EvaluateConfig, None, [f"teacher={other}", f"distilled=[{tmp_path / 'a'}]",
                                                        *base]), show_progress=False)
    with pytest.raises(ValueError, match="share the label random@10"):
        run_evaluate(load_config(EvaluateConfig, None, [
            f"teacher={tiny_teacher}", f"distilled=[{tmp_path / 'a'}, {tmp_path / 'b'}]", *base]), show_progress=False)


def test_evaluate_refuses_a_folder_with_results_and_resume_keeps_finished_cells(tiny_npz, tiny_teacher, tmp_path,
                                                                              capsys):
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    out = tmp_path / "eval"
    base = [f"teacher={tiny_teacher}", f"out_dir={out}", f"source.path={tiny_npz}", "source.resolution=16",
            "models=[{name: convnet, width: 4, depth: 2}]", f"targets=[{{source: npz, path: {tiny_npz}, name: t}}]",
            "pretrain.epochs=1", "full_data.enabled=false", "full_data.same_recipe=false",
            "finetune.small_iterations=2", "probe.iterations=2",
            "cka_images=0", "device=cpu", "modes=[linear_probe]"]
    first = run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=1"]), show_progress=False)
    assert len(first) == 1
    with pytest.raises(FileExistsError, match="--resume"):
        run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=1"]), show_progress=False)
    # more seeds on resume: the finished cell is kept as it was, only the new one runs
    rows = run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=2"]), show_progress=False, resume=True)
    assert len(rows) == 2 and rows[0] == first[0] and {r["seed"] for r in rows} == {0, 1}
    assert "1 finished cells kept" in capsys.readouterr().out
    with pytest.raises(ValueError, match="different config"):
        run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=2", "probe.iterations=3"]),
                     show_progress=False, resume=True)
    # an artifact folder is never written into
    (tmp_path / "artifact").mkdir()
    (tmp_path / "artifact" / "manifest.json").write_text("{}")
    with pytest.raises(FileExistsError, match="another out_dir"):
        run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'artifact'}"]),
                     show_progress=False)


def test_resume_keeps_only_its_own_cells_and_sets_the_others_aside(tiny_npz, tiny_teacher,
                                                                    tmp_path, monkeypatch):
    import ssdd.evaluation.protocol as protocol
    import ssdd.evaluation.schedule as schedule
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    sets = []
    for seed in (0, 1):  # two random subsets, both labelled random@10
        cfg = load_config(DistillConfig, None, [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", "method=random",
                                                f"out_dir={tmp_path / f'r{seed}'}", "data.resolution=16", "budget=10",
                                                "device=cpu", f"seed={seed}"])
        run_distill(cfg, show_progress=False)
        sets.append(tmp_path / f"r{seed}")
    out = tmp_path / "eval"
    base = [f"teacher={tiny_teacher}", f"out_dir={out}", f"source.path={tiny_npz}", "source.resolution=16",
            "models=[{name: convnet, width: 4, depth: 2}]", f"targets=[{{source: npz, path: {tiny_npz}, name: t}}]",
            "pretrain.epochs=1", "full_data.enabled=false", "full_data.same_recipe=false", "no_pretrain=false",
            "finetune.small_iterations=2",
            "probe.iterations=2", "cka_images=0", "device=cpu", "modes=[linear_probe]"]
    first = run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=2", f"distilled=[{sets[0]}]"]),
                         show_progress=False)
    other = run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=2", f"distilled=[{sets[1]}]"]),
                         show_progress=False, resume=True)
    assert len(other) == 2 and {r["set_fingerprint"] for r in other} != {r["set_fingerprint"] for r in first}
    writes = []

    def second_write_stops(write):
        def wrapped(*args):
            writes.append(write)
            if len(writes) == 2:
                raise KeyboardInterrupt
            return write(*args)
        return wrapped

    with monkeypatch.context() as stopped:  # a run stopped between its two writes (set-aside rows, results.json)
        stopped.setattr(protocol, "write_results", second_write_stops(protocol.write_results))
        stopped.setattr(schedule, "write_results", second_write_stops(schedule.write_results))
        stopped.setattr(schedule, "atomic_write", second_write_stops(schedule.atomic_write))
        with pytest.raises(KeyboardInterrupt):
            run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=1", f"distilled=[{sets[1]}]"]),
                         show_progress=False, resume=True)
    fewer = run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=1", f"distilled=[{sets[1]}]"]),
                         show_progress=False, resume=True)
    assert [r["seed"] for r in fewer] == [0] and fewer[0] == other[0]
    # nothing measured is lost: the rows left out wait in results.set_aside.json for a resume that asks for them
    aside = json.loads((out / "results.set_aside.json").read_text())
    assert sorted(map(json.dumps, aside)) == sorted(map(json.dumps, [*first, other[1]]))
    measured = []
    monkeypatch.setattr(protocol, "evaluate_cell", lambda *args: measured.append(args) or [])
    again = run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=2", f"distilled=[{sets[1]}]"]),
                         show_progress=False, resume=True)
    back = run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=2", f"distilled=[{sets[0]}]"]),
                        show_progress=False, resume=True)
    assert again == other and back == first and not measured
    assert json.loads((out / "results.set_aside.json").read_text()) == other
    assert json.loads((out / "results.json").read_text()) == first
    (out / "results.json").rename(tmp_path / "moved.json")  # set-aside rows never join an evaluation started afresh
    with pytest.raises(FileExistsError, match=r"results\.set_aside\.json"):
        run_evaluate(load_config(EvaluateConfig, None, [*base, "seeds=2", f"distilled=[{sets[1]}]"]),
                     show_progress=False)


def test_same_recipe_row_trains_every_source_image_with_the_pretrain_settings(tiny_npz, tiny_teacher, tmp_path,
                                                                            monkeypatch, capsys):
    """The full-data row with the distilled rows' recipe: pretrain_on_pairs with cfg.pretrain on the un-augmented
    source images and the teacher's representations of them, its steps recorded; a resumed run adds it."""
    import ssdd.evaluation.cell as cell
    import ssdd.evaluation.pretrain as pretrain_module
    import ssdd.evaluation.protocol as protocol
    from ssdd.data import load_npz
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.teacher import load_teacher

    def no_augmentation(*args, **kwargs):
        raise AssertionError("the same-recipe row must not augment")

    calls = []
    real = cell.pretrain_on_pairs

    def spy(backbone, images, targets, mean, std, cfg, generator, num_classes=None, precision="fp32", checkpoint=None,
            forward=None):
        steps = []
        hook = backbone.register_forward_hook(lambda module, args, out: steps.append(module.training))
        losses = real(backbone, images, targets, mean, std, cfg, generator, num_classes, precision, checkpoint,
                      forward)
        hook.remove()
        calls.append({"images": images, "targets": targets, "cfg": cfg, "steps": sum(steps)})
        return losses

    monkeypatch.setattr(pretrain_module, "crop_flip", no_augmentation)
    monkeypatch.setattr(cell, "pretrain_on_pairs", spy)
    out = tmp_path / "eval"
    base = [f"teacher={tiny_teacher}", f"out_dir={out}", f"source.path={tiny_npz}", "source.resolution=16",
            "models=[{name: convnet, width: 4, depth: 2}]", "seeds=1", "full_data.enabled=false",
            f"targets=[{{source: npz, path: {tiny_npz}, name: flowers102}}]", "pretrain.epochs=3",
            "pretrain.batch_size=20", "pretrain.max_iterations=7", "pretrain.lr=0.01", "finetune.iterations=3",
            "finetune.small_iterations=2", "probe.iterations=2", "cka_images=0", "device=cpu"]
    first = protocol.run_evaluate(load_config(EvaluateConfig, None, [*base, "full_data.same_recipe=false"]),
                                  show_progress=False)
    assert {r["label"] for r in first} == {"no_pretrain"} and not calls
    rows = protocol.run_evaluate(load_config(EvaluateConfig, None, base), show_progress=False, resume=True)
    assert "1 finished cells kept" in capsys.readouterr().out and rows[:2] == first
    same = [r for r in rows if r["label"] == "full_data_same_recipe"]
    assert len(same) == 2 and len(calls) == 1
    source = load_npz(tiny_npz, "train", 16).images
    call = calls[0]
    assert call["images"].dtype == torch.uint8 and torch.equal(call["images"], source)  # every image, as stored
    assert torch.allclose(call["targets"], load_teacher(tiny_teacher).encode(source))  # un-augmented targets
    assert call["cfg"].epochs == 3 and call["cfg"].batch_size == 20 and call["cfg"].max_iterations == 7
    # 64 images in batches of 20: 4 steps per epoch, 3 epochs = 12, capped at 7
    assert call["steps"] == 7 == min(3 * -(-64 // 20), 7)
    assert all(r["pretrain_steps"] == 7 and r["views"] == 64 and r["compression"] == 1.0 for r in same)
    # fine-tuning length by role: flowers102 is a fine-grained target, so small_iterations whatever its size
    assert {r["mode"]: r["finetune_iterations"] for r in same} == {"finetune": 2, "linear_probe": None}
    assert all(r["pretrain_steps"] == 0 for r in rows if r["label"] == "no_pretrain")


def _reuse_setup(tmp_path, tiny_npz, tiny_teacher):
    """Two random sets (random@10, random@12) of tiny_npz and the settings of a tiny evaluation on a target file
    of its own (so that it can be rewritten without touching the sets' source)."""
    from conftest import make_npz

    sets = []
    for budget in (10, 12):
        run_distill(load_config(DistillConfig, None, [
            f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={tmp_path / f'r{budget}'}",
            "method=random", "data.resolution=16", f"budget={budget}", "device=cpu"]), show_progress=False)
        sets.append(tmp_path / f"r{budget}")
    target = make_npz(tmp_path / "target.npz", seed=3)
    base = [f"teacher={tiny_teacher}", f"source.path={tiny_npz}", "source.resolution=16",
            "models=[{name: convnet, width: 4, depth: 2}]", f"targets=[{{source: npz, path: {target}, name: t}}]",
            "pretrain.epochs=1", "full_data.enabled=false", "full_data.same_recipe=false",
            "finetune.small_iterations=2", "probe.iterations=2", "cka_images=0", "device=cpu",
            "modes=[linear_probe]", "seeds=1"]
    return sets, target, base


def _counting_cells(monkeypatch):
    import ssdd.evaluation.protocol as protocol

    measured = []
    real = protocol.evaluate_cell

    def spy(bench, model_cfg, seed, source, *rest):
        measured.append(source.label)
        return real(bench, model_cfg, seed, source, *rest)

    monkeypatch.setattr(protocol, "evaluate_cell", spy)
    return measured


def test_reuse_takes_the_finished_cells_of_another_evaluation_measured_the_same_way(tiny_npz, tiny_teacher, tmp_path,
                                                                                  monkeypatch, capsys):
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    sets, _, base = _reuse_setup(tmp_path, tiny_npz, tiny_teacher)
    a, b = tmp_path / "a", tmp_path / "b"
    first = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={a}", f"distilled=[{sets[0]}]"]),
                         show_progress=False)
    assert {r["label"] for r in first} == {"random@10", "no_pretrain"}
    capsys.readouterr()
    measured = _counting_cells(monkeypatch)
    rows = run_evaluate(load_config(EvaluateConfig, None, [
        *base, f"out_dir={b}", f"distilled=[{sets[0]}, {sets[1]}]", f"reuse=[{a}]"]), show_progress=False)
    assert measured == ["random@12"]  # only the cell no other evaluation has
    assert f"reused: 2 finished cells from {a}" in capsys.readouterr().out
    reused = [r for r in rows if "reused_from" in r]
    assert {r["reused_from"] for r in reused} == {str(a)}
    assert sorted(({k: v for k, v in r.items() if k != "reused_from"} for r in reused), key=str) == \
        sorted(first, key=str)
    saved = json.loads((b / "results.json").read_text())
    assert saved == rows and {r["label"] for r in saved} == {"random@10", "random@12", "no_pretrain"}
    assert len(list(csv.DictReader(open(b / "results.csv")))) == 3 and (b / "summary.md").is_file()
    # a resume keeps them as its own finished cells (reuse may change on resume)
    again = run_evaluate(load_config(EvaluateConfig, None, [
        *base, f"out_dir={b}", f"distilled=[{sets[0]}, {sets[1]}]"]), show_progress=False, resume=True)
    assert again == rows and measured == ["random@12"]
    assert "3 finished cells kept" in capsys.readouterr().out


def test_reuse_takes_nothing_measured_otherwise_and_never_fails_on_a_folder(tiny_npz, tiny_teacher, tmp_path,
                                                                           monkeypatch, capsys):
    from conftest import make_npz
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    sets, target, base = _reuse_setup(tmp_path, tiny_npz, tiny_teacher)
    a = tmp_path / "a"
    run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={a}", f"distilled=[{sets[0]}]"]),
                 show_progress=False)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "broken" / "results.json").write_text("[{")
    capsys.readouterr()
    measured = _counting_cells(monkeypatch)

    def evaluate(name, *overrides):
        measured.clear()
        run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / name}",
                                                        f"distilled=[{sets[0]}]", *overrides]), show_progress=False)
        return sorted(measured), capsys.readouterr().out

    # other settings, a missing folder, an unreadable one: one line each, and every cell measured
    cells, out = evaluate("c", "probe.iterations=3", f"reuse=[{tmp_path / 'missing'}, {tmp_path / 'broken'}, {a}]")
    assert cells == ["no_pretrain", "random@10"] and "reused:" not in out
    assert f"reuse: {tmp_path / 'missing'}: no such folder, nothing taken" in out
    assert f"reuse: {tmp_path / 'broken'}: results.json is not valid JSON, nothing taken" in out
    assert f"reuse: {a} measured with other settings (probe.iterations: 2 -> 3), nothing taken" in out
    # a target of the same name configured otherwise (the same images: npz ignores `download`), or another
    # width: not the same cells (these settings choose cells, so no line)
    cells, out = evaluate("d", f"targets=[{{source: npz, path: {target}, name: t, download: true}}]", f"reuse=[{a}]")
    assert cells == ["no_pretrain", "random@10"] and "reuse" not in out
    cells, out = evaluate("e", "models=[{name: convnet, width: 6, depth: 2}]", f"reuse=[{a}]")
    assert cells == ["no_pretrain", "random@10"] and "reuse" not in out
    # the same settings but other images in the target file: not the same measurement
    make_npz(target, seed=4)
    cells, out = evaluate("f", f"reuse=[{a}]")
    assert cells == ["no_pretrain", "random@10"] and f"reuse: {a} measured with other settings (target:t:" in out
    # a resume refuses the target's new images too
    with pytest.raises(ValueError, match=r"target t .* changed since this run started"):
        run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={a}", f"distilled=[{sets[0]}]"]),
                     show_progress=False, resume=True)


def test_channels_last_is_recorded_changes_only_rounding_and_counts_as_the_same_measurement(
        tiny_npz, tiny_teacher, tmp_path, monkeypatch, capsys):
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    sets, _, base = _reuse_setup(tmp_path, tiny_npz, tiny_teacher)
    base = [*base, "modes=[finetune, linear_probe]", "finetune.small_iterations=4", "cka_images=16"]
    seen, tuned = [], []
    import ssdd.evaluation.cell as cell
    import ssdd.evaluation.finetune as finetune_module

    def in_channels_last(module):
        conv = next(p for p in module.parameters() if p.dim() == 4)
        return conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()

    real, real_step = cell.pretrain_network, finetune_module.check_trained

    def spy(*args, **kwargs):
        backbone = real(*args, **kwargs)
        seen.append(in_channels_last(backbone))
        return backbone

    def spy_step(model, *args, **kwargs):  # called on the fine-tuned copy once it is trained
        tuned.append(in_channels_last(model))
        return real_step(model, *args, **kwargs)

    monkeypatch.setattr(cell, "pretrain_network", spy)
    monkeypatch.setattr(finetune_module, "check_trained", spy_step)
    runs = {}
    for layout in ("on", "off"):
        runs[layout] = run_evaluate(load_config(EvaluateConfig, None, [
            *base, f"out_dir={tmp_path / layout}", f"distilled=[{sets[0]}]", f"channels_last={layout}"]),
            show_progress=False)
    assert seen == [True, True, False, False]  # no pre-training and random@10, in each layout
    assert tuned == [True, True, False, False]  # the copies fine-tuned keep the layout
    assert {r["channels_last"] for r in runs["on"]} == {True} and {r["channels_last"] for r in runs["off"]} == {False}
    for on, off in zip(runs["on"], runs["off"], strict=True):  # same cells; the layout only reorders sums
        assert (on["label"], on["mode"]) == (off["label"], off["mode"])
        assert on["cka_to_teacher"] == pytest.approx(off["cka_to_teacher"], rel=1e-4)
    # a cell measured in one layout is the same measurement in the other: reuse takes it, resume accepts it
    capsys.readouterr()
    measured = _counting_cells(monkeypatch)
    run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'b'}", f"distilled=[{sets[0]}]",
                                                    f"reuse=[{tmp_path / 'off'}]"]), show_progress=False)
    assert measured == [] and "reused: 2 finished cells" in capsys.readouterr().out
    run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'off'}", f"distilled=[{sets[0]}]",
                                                    "channels_last=on"]), show_progress=False, resume=True)
    assert measured == []
    assert main(["evaluate", "--no-progress", f"teacher={tiny_teacher}", "channels_last=sideways",
                 f"out_dir={tmp_path / 'bad'}"]) == 2
    assert "channels_last='sideways': must be one of auto, on, off" in capsys.readouterr().err


def test_compile_is_recorded_and_counts_as_the_same_measurement(tiny_npz, tiny_teacher, tmp_path, monkeypatch,
                                                                  capsys):
    """compile=on trains every network through torch.compile (tests/evaluation/test_fastpath.py: the same numbers to
    rounding); each row says whether it did, and, like channels_last, it is no part of what a cell measures."""
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate
    from ssdd.run.compiled import compile_unavailable

    if compile_unavailable(torch.device("cpu")):
        pytest.skip(compile_unavailable(torch.device("cpu")))
    sets, _, base = _reuse_setup(tmp_path, tiny_npz, tiny_teacher)
    base = [*base, "modes=[finetune, linear_probe]", "finetune.small_iterations=4", f"distilled=[{sets[0]}]"]
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    rows = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'on'}", "compile=on"]),
                        show_progress=False)
    assert counters["stats"]["unique_graphs"] > 0  # the cells' training ran through torch.compile
    torch._dynamo.reset()
    # a random initialisation's probe trains no network; every other row trained one through torch.compile
    assert [(r["label"], r["mode"], r["compiled"]) for r in rows] == [
        ("random@10", "finetune", True), ("random@10", "linear_probe", True),
        ("no_pretrain", "finetune", True), ("no_pretrain", "linear_probe", False)]
    capsys.readouterr()
    measured = _counting_cells(monkeypatch)
    plain = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'off'}",
                                                            f"reuse=[{tmp_path / 'on'}]"]), show_progress=False)
    assert measured == [] and "reused: 2 finished cells" in capsys.readouterr().out
    assert [r["top1"] for r in plain] == [r["top1"] for r in rows]
    run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'on'}", "compile=off"]),
                 show_progress=False, resume=True)
    assert measured == []
    assert main(["evaluate", "--no-progress", f"teacher={tiny_teacher}", "compile=maybe",
                 f"out_dir={tmp_path / 'bad'}"]) == 2
    assert "compile='maybe': must be one of auto, on, off" in capsys.readouterr().err


def test_bf16_is_recorded_and_never_mixed_with_float32_cells(tiny_npz, tiny_teacher, tmp_path, monkeypatch, capsys):
    """precision=bf16 changes results beyond rounding: every row records it, `reuse` takes no float32 cell for
    a bf16 evaluation (nor the other way), and --resume refuses to change it."""
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    sets, _, base = _reuse_setup(tmp_path, tiny_npz, tiny_teacher)
    base = [*base, f"distilled=[{sets[0]}]", "cka_images=16"]
    fp32 = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'a'}"]), show_progress=False)
    capsys.readouterr()
    measured = _counting_cells(monkeypatch)
    bf16 = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'b'}", "precision=bf16",
                                                           f"reuse=[{tmp_path / 'a'}]"]), show_progress=False)
    assert sorted(measured) == ["no_pretrain", "random@10"]  # both measured again
    assert f"reuse: {tmp_path / 'a'} measured with other settings (precision: 'fp32' -> 'bf16')" in \
        capsys.readouterr().out
    assert {r["precision"] for r in fp32} == {"fp32"} and {r["precision"] for r in bf16} == {"bf16"}
    assert {r["precision"] for r in csv.DictReader(open(tmp_path / "b" / "results.csv"))} == {"bf16"}
    for a, b in zip(fp32, bf16, strict=True):  # pre-training in bf16 moves the encoder a little, not away
        assert (a["label"], a["mode"]) == (b["label"], b["mode"])
        assert b["cka_to_teacher"] == pytest.approx(a["cka_to_teacher"], abs=0.05)
    with pytest.raises(ValueError, match="precision"):
        run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'a'}", "precision=bf16"]),
                     show_progress=False, resume=True)


def test_rows_record_the_samples_their_pretraining_saw(tiny_npz, tiny_teacher, tmp_path, monkeypatch):
    """pretrain_samples counts the pairs that went through the network: a set smaller than the batch sees the
    whole set at each step (steps x set size, not steps x batch); a larger one sees its real batches."""
    import ssdd.evaluation.cell as cell
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    run_distill(load_config(DistillConfig, None, [
        f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={tmp_path / 'set'}", "method=random",
        "data.resolution=16", "budget=10", "device=cpu"]), show_progress=False)
    seen: dict[str, int] = {}
    counts: list[int] = []
    real_build, real_pretrain = cell.build_model, cell.pretrain_network

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        counts.append(0)

        def count(module, inputs):
            counts[-1] += inputs[0].shape[0] if module.training else 0
        model.counting = model.register_forward_pre_hook(count)
        return model

    def pretrain(source, *args, **kwargs):
        backbone = real_pretrain(source, *args, **kwargs)
        backbone.counting.remove()
        seen[source.label] = counts[-1]
        return backbone

    monkeypatch.setattr(cell, "build_model", build)
    monkeypatch.setattr(cell, "pretrain_network", pretrain)
    rows = run_evaluate(load_config(EvaluateConfig, None, [
        f"teacher={tiny_teacher}", f"out_dir={tmp_path / 'eval'}", f"source.path={tiny_npz}", "source.resolution=16",
        f"distilled=[{tmp_path / 'set'}]", "models=[{name: convnet, width: 4, depth: 2}]", "seeds=1",
        f"targets=[{{source: npz, path: {tiny_npz}, name: t}}]", "pretrain.epochs=2", "pretrain.batch_size=24",
        "full_data.epochs=1", "full_data.batch_size=48", "probe.iterations=2", "cka_images=0", "device=cpu",
        "modes=[linear_probe]"]), show_progress=False)
    by_label = {r["label"]: r for r in rows}
    assert set(by_label) == {"random@10", "no_pretrain", "full_data", "full_data_same_recipe"}
    for label, row in by_label.items():
        assert row["pretrain_samples"] == seen[label], label
    small, large = by_label["random@10"], by_label["full_data_same_recipe"]  # 9 and 64 pairs, batches of 24
    assert small["views"] < 24 < large["views"]
    assert small["pretrain_samples"] == small["pretrain_steps"] * small["views"] == 2 * small["views"]
    assert large["pretrain_samples"] == 2 * 64 < large["pretrain_steps"] * 24  # batches of 24, 24 and 16
    assert by_label["full_data"]["pretrain_samples"] == 48 and by_label["no_pretrain"]["pretrain_samples"] == 0
    with open(tmp_path / "eval" / "results.csv") as handle:
        assert [r["pretrain_samples"] for r in csv.DictReader(handle)] == [str(r["pretrain_samples"]) for r in rows]


def test_rows_taken_back_from_the_set_aside_file_come_in_a_fresh_runs_order(tiny_npz, tiny_teacher, tmp_path):
    """A resume that takes set-aside rows back writes results.json in the evaluation's cell order (the set's cell,
    then no pre-training), as a fresh run does: not with the taken-back rows after the kept ones."""
    from ssdd.distill.config import DistillConfig
    from ssdd.distill.run import run_distill
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    run_distill(load_config(DistillConfig, None, [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", "method=random",
                                                  f"out_dir={tmp_path / 'r'}", "data.resolution=16", "budget=10",
                                                  "device=cpu"]), show_progress=False)
    out = tmp_path / "eval"
    base = [f"teacher={tiny_teacher}", f"out_dir={out}", f"source.path={tiny_npz}", "source.resolution=16",
            "models=[{name: convnet, width: 4, depth: 2}]", f"targets=[{{source: npz, path: {tiny_npz}, name: t}}]",
            "pretrain.epochs=1", "full_data.enabled=false", "full_data.same_recipe=false", "probe.iterations=2",
            "cka_images=0", "device=cpu", "modes=[linear_probe]", "seeds=1"]
    fresh = run_evaluate(load_config(EvaluateConfig, None, [*base, f"distilled=[{tmp_path / 'r'}]"]),
                         show_progress=False)
    run_evaluate(load_config(EvaluateConfig, None, [*base, "distilled=[]"]), show_progress=False, resume=True)
    back = run_evaluate(load_config(EvaluateConfig, None, [*base, f"distilled=[{tmp_path / 'r'}]"]),
                        show_progress=False, resume=True)
    assert [r["label"] for r in fresh] == ["random@10", "no_pretrain"]
    assert back == fresh and json.loads((out / "results.json").read_text()) == fresh


@pytest.mark.parametrize("row", ["full_data.same_recipe=true", "full_data.enabled=true"],
                         ids=["same_recipe", "tuned"])
def test_a_full_data_row_cut_in_its_pre_training_resumes_from_its_checkpoint_to_the_same_rows(
        row, tiny_npz, tiny_teacher, tmp_path, monkeypatch):
    """checkpoint_minutes: the pre-training saves its state at every epoch's end here; an attempt cut after the
    third save leaves it in out_dir/cells, and --resume goes on from epoch 3 to the pre-trained weights and rows
    of one uninterrupted run, bit for bit; the file goes once the cell is finished."""
    from ssdd.evaluation import cell, pretrain
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    trained = []  # every pre-trained backbone's weights, in order
    real_network = cell.pretrain_network

    def keep_weights(*args, **kwargs):
        backbone = real_network(*args, **kwargs)
        trained.append({k: v.clone() for k, v in backbone.state_dict().items()})
        return backbone

    monkeypatch.setattr(cell, "pretrain_network", keep_weights)

    def config(out: Path, *extra: str) -> EvaluateConfig:
        return load_config(EvaluateConfig, None, [
            f"teacher={tiny_teacher}", f"out_dir={out}", f"source.path={tiny_npz}", "source.resolution=16",
            "models=[{name: convnet, width: 4, depth: 2}]", f"targets=[{{source: npz, path: {tiny_npz}, name: t}}]",
            "pretrain.epochs=5", "pretrain.batch_size=16", "full_data.epochs=5", "full_data.batch_size=16",
            "no_pretrain=false",
            "full_data.enabled=false", "full_data.same_recipe=false", row, "finetune.small_iterations=2",
            "probe.iterations=2", "cka_images=0", "device=cpu", "seeds=1", *extra])

    whole = run_evaluate(config(tmp_path / "whole"), show_progress=False)
    real_save, saves, starts = pretrain.PretrainCheckpoint.maybe_save, [], []

    def cut_after_three(self, state):
        real_save(self, state)
        saves.append(1)
        if len(saves) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(pretrain.PretrainCheckpoint, "maybe_save", cut_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_evaluate(config(tmp_path / "cut", "checkpoint_minutes=1e-9"), show_progress=False)
    left = list((tmp_path / "cut" / "cells").glob("*.pretrain.pt"))
    assert len(left) == 1 and torch.load(left[0], weights_only=True)["epoch"] == 3
    with pytest.raises(FileExistsError, match="--resume"):  # a fresh run never takes it up
        run_evaluate(config(tmp_path / "cut", "checkpoint_minutes=1e-9"), show_progress=False)
    monkeypatch.setattr(pretrain.PretrainCheckpoint, "maybe_save", real_save)
    real_resume = pretrain._resume

    def spy(*args, **kwargs):
        found = real_resume(*args, **kwargs)
        starts.append(found[0])
        return found

    monkeypatch.setattr(pretrain, "_resume", spy)
    stray = tmp_path / "cut" / "cells" / f"0123456789abcdef0123{PRETRAIN_SUFFIX}"  # the state of no pending cell
    shutil.copy(left[0], stray)
    resumed = run_evaluate(config(tmp_path / "cut", "checkpoint_minutes=1e-9"), show_progress=False, resume=True)
    assert not stray.exists()
    assert starts == [3]
    assert [(r["label"], r["mode"], r["top1"]) for r in resumed] == [(r["label"], r["mode"], r["top1"]) for r in whole]
    assert len(trained) == 2 and trained[0].keys() == trained[1].keys()  # the whole run's, the resumed one's
    for key in trained[0]:
        assert torch.equal(trained[0][key], trained[1][key]), key
    assert not list((tmp_path / "cut").glob("cells/*.pretrain.pt"))


def test_a_pre_training_state_saved_on_another_kind_of_device_is_not_taken_up(tmp_path, capsys):
    from ssdd.evaluation.pretrain import PretrainCheckpoint

    checkpoint = PretrainCheckpoint(tmp_path / f"cell{PRETRAIN_SUFFIX}", every_s=0.0)
    checkpoint.maybe_save(lambda: {"epoch": 3, "device": "cuda"})
    assert checkpoint.load(torch.device("cpu")) is None
    assert "saved on cuda, not cpu" in capsys.readouterr().out
    checkpoint.maybe_save(lambda: {"epoch": 3, "device": "cpu"})
    assert checkpoint.load(torch.device("cpu"))["epoch"] == 3
    checkpoint.discard()
    assert checkpoint.load(torch.device("cpu")) is None
