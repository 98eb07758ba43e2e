"""The validation split: carved from a target's train split (disjoint, seeded, class by class), recorded in
the rows and the summary, refused when out of range; the test split is neither read nor scored."""

from __future__ import annotations

import json

import pytest
import torch

from ssdd.cli import main
from ssdd.config import load_config
from ssdd.evaluation.validation import carve_validation, check_validation


def _labels() -> torch.Tensor:
    shuffle = torch.randperm(71, generator=torch.Generator().manual_seed(3))
    return torch.tensor([0] * 40 + [1] * 20 + [2] * 10 + [3] * 1)[shuffle]


def test_the_split_is_disjoint_complete_and_stratified_by_class():
    labels = _labels()
    rest, held = carve_validation(labels, 0.25, seed=0)
    assert set(rest.tolist()).isdisjoint(held.tolist())
    assert sorted(rest.tolist() + held.tolist()) == list(range(71))
    counts = {c: int((labels[held] == c).sum()) for c in range(4)}
    assert counts == {0: 10, 1: 5, 2: 2, 3: 0}  # a quarter of each class; a class of one image keeps it
    assert all(int((labels[rest] == c).sum()) > 0 for c in range(4))  # every class keeps training images
    small = carve_validation(labels, 0.01, seed=0)[1]
    assert {c: int((labels[small] == c).sum()) for c in range(4)} == {0: 1, 1: 1, 2: 1, 3: 0}
    assert carve_validation(labels, 0.0, seed=0)[1].numel() == 0


def test_the_split_depends_on_the_seed_alone():
    labels = _labels()
    first = carve_validation(labels, 0.25, seed=0)
    torch.manual_seed(123)  # the global generator plays no part
    again = carve_validation(labels, 0.25, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(carve_validation(labels, 0.25, seed=1)[1], first[1])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_a_fraction_outside_zero_to_one_is_refused(fraction):
    with pytest.raises(ValueError, match=r"validation\.fraction"):
        check_validation(fraction, 0)


def test_the_command_refuses_a_bad_fraction_before_writing_anything(tiny_npz, tiny_teacher, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--no-progress", f"teacher={tiny_teacher}", f"out_dir={out}", f"source.path={tiny_npz}",
                 f"targets=[{{source: npz, path: {tiny_npz}, name: t}}]", "device=cpu",
                 "validation.fraction=1.0"]) == 2
    err = capsys.readouterr().err
    assert "validation.fraction" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_an_evaluation_on_the_validation_split_trains_on_the_rest_and_scores_the_held_out_part(
        tiny_npz, tiny_teacher, tmp_path, monkeypatch):
    import ssdd.evaluation.cell as cell
    from ssdd.data import load_npz
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    seen = []
    real_probe, real_finetune = cell.probe_encoder, cell.finetune

    def probe(backbone, mean, std, train_x, train_y, test_x, test_y, *args, **kwargs):
        seen.append(("linear_probe", train_x.cpu(), test_x.cpu()))
        return real_probe(backbone, mean, std, train_x, train_y, test_x, test_y, *args, **kwargs)

    def finetune(backbone, train, test, *args, **kwargs):
        seen.append(("finetune", train.images.cpu(), test.images.cpu()))
        return real_finetune(backbone, train, test, *args, **kwargs)

    monkeypatch.setattr(cell, "probe_encoder", probe)
    monkeypatch.setattr(cell, "finetune", finetune)
    out = tmp_path / "eval"
    base = [f"teacher={tiny_teacher}", f"source.path={tiny_npz}", "source.resolution=16",
            "models=[{name: convnet, width: 4, depth: 2}]", "seeds=1", "full_data.enabled=false",
            "full_data.same_recipe=false", f"targets=[{{source: npz, path: {tiny_npz}, name: t}}]",
            "finetune.iterations=2", "finetune.small_iterations=2", "probe.iterations=2", "cka_images=0", "device=cpu"]
    rows = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={out}", "validation.fraction=0.25",
                                                           "validation.seed=5"]), show_progress=False)
    train = load_npz(tiny_npz, "train", 16)
    rest, held = carve_validation(train.labels, 0.25, 5)
    assert len(held) == 16 and len(seen) == 2
    for _, fit, scored in seen:
        assert torch.equal(fit, train.images[rest]) and torch.equal(scored, train.images[held])
    assert [(r["mode"], r["eval_split"], r["validation_fraction"], r["validation_seed"]) for r in rows] == \
        [("finetune", "validation", 0.25, 5), ("linear_probe", "validation", 0.25, 5)]
    assert rows[0]["finetune_iterations"] == 2
    inputs = json.loads((out / "inputs.json").read_text())
    assert "target:t:train" in inputs and "target:t:test" not in inputs  # the test split is not read
    summary = json.loads((out / "summary.json").read_text())
    assert {s["eval_split"] for s in summary["rows"]} == {"validation"}
    assert summary["config"]["validation"] == {"fraction": 0.25, "seed": 5}
    assert (out / "summary.md").read_text().startswith("Scored on a validation split held out from each target's "
                                                       "train split (fraction 0.25, seed 5)")
    from ssdd.report import build_report

    md, html = build_report(out, tmp_path / "report")
    assert all("Scored on a validation split held out" in p.read_text() for p in (md, html))
    # the default scores the test split and says so in every row; a resume may not switch splits
    seen.clear()
    default = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'test'}"]),
                           show_progress=False)
    test = load_npz(tiny_npz, "test", 16)
    assert all(torch.equal(fit, train.images) and torch.equal(scored, test.images) for _, fit, scored in seen)
    assert {r["eval_split"] for r in default} == {"test"} and not any("validation_seed" in r for r in default)
    assert (tmp_path / "test" / "summary.md").read_text().startswith("| pre-training")
    assert "validation split" not in build_report(tmp_path / "test", tmp_path / "report_test")[0].read_text()
    with pytest.raises(ValueError, match=r"validation\.fraction"):
        run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={out}"]), show_progress=False, resume=True)
