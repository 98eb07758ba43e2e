"""benchmarks/results_tables.py: the generated tables of README.md and docs/results.md match benchmarks/results."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "results_tables.py"
spec = importlib.util.spec_from_file_location("results_tables", SCRIPT)
results_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_tables)


def copy_docs(tmp_path: Path) -> Path:
    """README.md and docs/results.md under tmp_path, where a test may edit them."""
    for name in results_tables.GENERATORS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def edit_region(path: Path, region: str, old: str, new: str) -> None:
    """Replace the first `old` inside one marked region of `path` (generated or checked)."""
    text = path.read_text()
    start = text.index(f"<!-- {region} -->")
    at = text.index(old, start)
    path.write_text(text[:at] + new + text[at + len(old):])


def test_every_generated_table_and_quoted_number_matches_the_results():
    assert results_tables.drift() == [], "run: python benchmarks/results_tables.py"


def test_an_edited_number_in_a_generated_table_is_drift(tmp_path):
    root = copy_docs(tmp_path)
    assert results_tables.drift(root) == []
    edit_region(root / "README.md", "generated:headline", "57.59", "57.60")
    edit_region(root / "docs/results.md", "generated:budget-flowers102-probe", "30.96", "31.96")
    assert results_tables.drift(root) == ["README.md: headline", "docs/results.md: budget-flowers102-probe"]


def test_a_quoted_number_that_no_table_or_recomputation_backs_is_drift(tmp_path):
    root = copy_docs(tmp_path)
    edit_region(root / "README.md", "checked:meaning", "4.7", "4.9")
    assert results_tables.drift(root) == ["README.md: checked meaning quotes 4.9"]


def test_a_region_without_a_generator_or_a_generator_without_a_region_is_refused():
    with pytest.raises(ValueError, match="markers without a generator: \\['nope'\\]"):
        results_tables.render("<!-- generated:nope -->\n<!-- /generated:nope -->\n", {})
    with pytest.raises(ValueError, match="regions without a marker: \\['headline'\\]"):
        results_tables.render("no markers", {"headline": lambda: ""})


@pytest.mark.slow
def test_the_reference_study_s_region_says_where_each_stage_stands_and_tables_its_evaluation(tiny_npz, tiny_teacher,
                                                                                              tmp_path, monkeypatch):
    """A stand-in for artifacts/reference: a finished teacher, KRR-ST paused in parts, a finished random set and an
    evaluation of it; the region names each state and tables the rows."""
    import json

    from ssdd.config import load_config
    from ssdd.distill.config import DistillConfig
    from ssdd.distill.run import run_distill
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate

    ref = tmp_path / "artifacts" / "reference"
    shutil.copytree(tiny_teacher, ref / "teacher")
    manifest = json.loads((ref / "teacher" / "manifest.json").read_text())
    (ref / "teacher" / "manifest.json").write_text(json.dumps({**manifest, "epochs": 1000}))
    smoke = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", "data.resolution=16", "budget=10", "outer.steps=12",
             "outer.batch_size=16", "pool.size=2", "pool.max_steps=5", "outer.model.width=4", "outer.model.depth=2",
             "device=cpu"]
    run_distill(load_config(DistillConfig, None, [*smoke, f"out_dir={tmp_path / 'krr'}", "stop_after_steps=5"]),
                show_progress=False)
    parts_spec = importlib.util.spec_from_file_location("checkpoint_parts", ROOT / "benchmarks" / "gpu" /
                                                        "checkpoint_parts.py")
    parts = importlib.util.module_from_spec(parts_spec)
    parts_spec.loader.exec_module(parts)
    parts.pack(tmp_path / "krr", ref / "parts" / "krr_st", drop=["pool.members", "pool.optimizers"])
    random_set = ref / "sets" / "random_n100"
    run_distill(load_config(DistillConfig, None, [*smoke, f"out_dir={random_set}", "method=random"]),
                show_progress=False)
    run_evaluate(load_config(EvaluateConfig, None, [
        f"teacher={tiny_teacher}", f"out_dir={ref / 'evaluate'}", f"source.path={tiny_npz}", "source.resolution=16",
        "models=[{name: convnet, width: 4, depth: 2}]", f"targets=[{{source: npz, path: {tiny_npz}, name: cifar10}}]",
        "pretrain.epochs=1", "full_data.enabled=false", "full_data.same_recipe=false", "finetune.iterations=2",
        "finetune.small_iterations=2", "probe.iterations=2", "cka_images=0", "device=cpu", "seeds=1",
        f"distilled=[{random_set}]"]), show_progress=False)
    monkeypatch.setattr(results_tables, "ROOT", tmp_path)
    stages, rows = results_tables.reference().split("\n\n")
    assert "| teacher (`teacher_cifar100`) | finished: 1,000 epochs, linear probe 0.00 % |" in stages
    assert "| KRR-ST at N = 100 | paused at step 5 of 12, its checkpoint in parts" in stages
    assert "| random subset at N = 100 | finished;" in stages and "| Boost at N = 100 | not started |" in stages
    assert "| evaluation (`evaluate_full`) | 2 cells measured |" in stages  # the set and no pre-training, 1 seed
    assert "| evaluation (`evaluate_full_arch`) | not started |" in stages
    assert "| random subset | " in rows and "| no pre-training | " in rows and "CIFAR-100 probe" in rows
