"""`ssdd evaluate --processes N` (ssdd.evaluation.launch): its torchrun line and its one-line refusals. The run
itself, rows equal to one process's, is in tests/evaluation/test_evaluate_torchrun.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ssdd.cli import main
from ssdd.evaluation import launch


def test_the_line_is_torchrun_standalone_on_the_resolved_config():
    line = launch.launch_command(Path("/tmp/c.yaml"), 3, ["--resume"])
    assert line[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3"]
    assert line[5:] == ["-m", "ssdd", "evaluate", "-c", "/tmp/c.yaml", "--resume"]


def test_the_cores_are_shared_out_unless_the_threads_are_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 16)
    assert launch.worker_environment(8)["OMP_NUM_THREADS"] == "2"
    assert launch.worker_environment(32)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert launch.worker_environment(8)["OMP_NUM_THREADS"] == "3"


def test_the_workers_get_the_flags_and_exactly_the_resolved_config(monkeypatch, tmp_path):
    seen = {}

    def fake_run(line, env, check):
        seen["line"], seen["config"] = line, Path(line[line.index("-c") + 1]).read_text()
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    assert main(["evaluate", "--processes", "2", "--no-progress", "--resume", "seeds=5", "precision=bf16",
                 f"out_dir={tmp_path / 'e'}", "device=cpu"]) == 0
    assert seen["line"][-2:] == ["--resume", "--no-progress"]
    assert "seeds: 5\n" in seen["config"] and "precision: bf16\n" in seen["config"]


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--processes", "0"], {}, "--processes 0: must be at least 1"),
    (["--processes", "2"], {"WORLD_SIZE": "2"}, "--processes starts its own processes: leave it out under torchrun"),
    (["--processes", "2", "precision=fp16"], {}, "precision='fp16': must be one of fp32, bf16"),
])
def test_refusals_are_one_line_before_any_process_starts(monkeypatch, capsys, tmp_path, argv, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(launch.subprocess, "run", lambda *a, **k: pytest.fail("no process may start"))
    assert main(["evaluate", *argv, f"out_dir={tmp_path / 'e'}", "device=cpu"]) == 2
    assert message in capsys.readouterr().err
