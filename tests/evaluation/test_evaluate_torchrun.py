"""`ssdd evaluate` under torchrun (2 CPU processes, gloo), started by hand or by `--processes 2`: cells dealt to
the ranks, the rows of one process."""

from __future__ import annotations

import json

import pytest

from conftest import make_npz, make_teacher, run_torchrun
from ssdd.cli import main
from ssdd.config import load_config
from ssdd.distill.config import DistillConfig
from ssdd.distill.run import run_distill
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.protocol import run_evaluate

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

MEASURED = ("label", "arch", "seed", "target", "mode", "top1", "cka_to_teacher")


def test_two_processes_give_the_rows_of_one_and_resume_keeps_finished_cells(tmp_path):
    npz, teacher = make_npz(tmp_path / "tiny.npz"), make_teacher(tmp_path / "teacher")
    run_distill(load_config(DistillConfig, None, [f"data.path={npz}", f"teacher={teacher}", "method=random",
                                                  f"out_dir={tmp_path / 'random'}", "data.resolution=16", "budget=10",
                                                  "device=cpu"]), show_progress=False)
    base = [f"teacher={teacher}", f"source.path={npz}", f"distilled=[{tmp_path / 'random'}]",
            "models=[{name: convnet, width: 4, depth: 2}]", f"targets=[{{source: npz, path: {npz}, name: t}}]",
            "pretrain.epochs=2", "full_data.enabled=false", "finetune.small_iterations=3",
            "probe.iterations=5", "cka_images=16", "device=cpu"]
    one = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'one'}", "seeds=3"]),
                       show_progress=False)
    # 3 sources (random, no pre-training, full data with the distilled rows' recipe): 3 cells in 2 rounds, rank 1
    # idle in the second; `--processes 2` starts the two processes itself, with torchrun's environment
    assert main(["evaluate", "--no-progress", "--processes", "2", *base, f"out_dir={tmp_path / 'two'}",
                 "seeds=1"]) == 0
    first = json.loads((tmp_path / "two" / "results.json").read_text())
    assert len(first) == 6 and {r["seed"] for r in first} == {0}
    assert [{k: r[k] for k in MEASURED} for r in first] == [{k: r[k] for k in MEASURED} for r in one[:6]]
    # seeds 1 and 2 of each source side by side (dealing_order): rounds differ from the one-process order, rows do not
    resumed = run_torchrun(["evaluate", "--no-progress", "--resume", *base, f"out_dir={tmp_path / 'two'}", "seeds=3"])
    assert resumed.stdout.count("3 finished cells kept") == 1
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert len(one) == len(two) == 18
    assert [{k: r[k] for k in MEASURED} for r in two] == [{k: r[k] for k in MEASURED} for r in one]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())

    # rank 0 reads the cells to reuse and every rank gets them: nothing is left to measure
    reusing = run_torchrun(["evaluate", "--no-progress", *base, f"out_dir={tmp_path / 'three'}", "seeds=3",
                            f"reuse=[{tmp_path / 'one'}]"])
    assert reusing.stdout.count(f"reused: 9 finished cells from {tmp_path / 'one'}") == 1
    three = json.loads((tmp_path / "three" / "results.json").read_text())
    assert [{k: r[k] for k in MEASURED} for r in three] == [{k: r[k] for k in MEASURED} for r in one]
