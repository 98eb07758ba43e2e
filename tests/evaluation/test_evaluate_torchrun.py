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


def tiny_random_set(tmp_path):
    """A tiny source, its teacher and a random set of it in tmp_path/random: (npz, teacher)."""
    npz, teacher = make_npz(tmp_path / "tiny.npz"), make_teacher(tmp_path / "teacher")
    run_distill(load_config(DistillConfig, None, [f"data.path={npz}", f"teacher={teacher}", "method=random",
                                                  f"out_dir={tmp_path / 'random'}", "data.resolution=16", "budget=10",
                                                  "device=cpu"]), show_progress=False)
    return npz, teacher


def test_two_processes_give_the_rows_of_one_and_resume_keeps_finished_cells(tmp_path):
    npz, teacher = tiny_random_set(tmp_path)
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


# a worker of `ssdd evaluate` (argv: out_dir, then the command's arguments) whose rank 1 is killed in its cell
# once rank 0 has saved its own: the round, whose rows results.json gets only when it has finished, never ends
_KILLED_RANK_1 = """
import os, signal, sys, time
from pathlib import Path
from ssdd.cli import main
from ssdd.evaluation import protocol

def killed_once_rank_0_saved_its_cell(*args, **kwargs):
    for _ in range(1200):
        if any((Path(sys.argv[1]) / "cells").glob("*.json")):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)
    raise SystemExit("rank 0 saved no cell")

if os.environ["RANK"] == "1":
    protocol.evaluate_cell = killed_once_rank_0_saved_its_cell
sys.exit(main(["evaluate", "--no-progress", *sys.argv[2:]]))
"""


def _without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in rows]


def test_a_cell_finished_in_an_interrupted_round_is_kept_and_resume_measures_only_the_others(tmp_path, monkeypatch):
    import subprocess
    import sys

    from conftest import free_port
    from ssdd.evaluation import launch, protocol

    npz, teacher = tiny_random_set(tmp_path)
    # 2 cells (the random set, no pre-training): one round of 2 processes, the set's cell on rank 0
    base = [f"teacher={teacher}", f"source.path={npz}", f"distilled=[{tmp_path / 'random'}]",
            "models=[{name: convnet, width: 4, depth: 2}]", f"targets=[{{source: npz, path: {npz}, name: t}}]",
            "pretrain.epochs=1", "full_data.enabled=false", "full_data.same_recipe=false", "probe.iterations=3",
            "cka_images=0", "device=cpu", "modes=[linear_probe]", "seeds=1"]
    one = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={tmp_path / 'one'}"]), show_progress=False)
    out, port = tmp_path / "two", free_port()
    with open(tmp_path / "workers.log", "w") as log:
        workers = [subprocess.Popen([sys.executable, "-c", _KILLED_RANK_1, str(out), *base, f"out_dir={out}"],
                                    env={**launch.worker_environment(rank, 2, port, out), "OMP_NUM_THREADS": "1"},
                                    stdout=log, stderr=log) for rank in range(2)]
        assert launch.wait_for(workers, poll_s=0.05) != 0
    # no row in results.json (the round never ended), but the cell rank 0 finished is on disk, as it is in `one`
    assert json.loads((out / "results.json").read_text()) == []
    saved = list((out / "cells").glob("*.json"))
    assert len(saved) == 1, (tmp_path / "workers.log").read_text()[-3000:]
    assert _without_timings(json.loads(saved[0].read_text())) == _without_timings(one[:1])
    # a fresh run would measure it again: refused, also where rank 0 was stopped before its first results.json
    with pytest.raises(FileExistsError, match="--resume"):
        run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={out}"]), show_progress=False)
    for name in ("results.json", "results.csv"):
        (out / name).unlink()
    with pytest.raises(FileExistsError, match=r"interrupted evaluation.*--resume"):
        run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={out}"]), show_progress=False)
    # a killed writer's partial file is never read
    (out / "cells" / f".{saved[0].name}.k1ll3d.tmp").write_text('[{"label": "random@10", "top1"')
    measured, real = [], protocol.evaluate_cell

    def counted(bench, model_cfg, seed, source, *rest):
        measured.append(source.label)
        return real(bench, model_cfg, seed, source, *rest)

    monkeypatch.setattr(protocol, "evaluate_cell", counted)
    two = run_evaluate(load_config(EvaluateConfig, None, [*base, f"out_dir={out}"]), show_progress=False, resume=True)
    assert measured == [one[1]["label"]]  # only the cell of the killed process
    assert _without_timings(json.loads((out / "results.json").read_text())) == _without_timings(one)
    assert _without_timings(two) == _without_timings(one)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
