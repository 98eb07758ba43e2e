"""`ssdd evaluate --processes N` (ssdd.evaluation.launch): each process's environment, stopping on a failure,
and the one-line refusals. The run itself, rows equal to one process's, is in
tests/evaluation/test_evaluate_torchrun.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ssdd.cli import main
from ssdd.evaluation import launch
from ssdd.run.launched import LOCKED_BY_PARENT


def test_every_process_gets_torchruns_environment_and_a_share_of_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 16)
    env = launch.worker_environment(3, 8, 29999, Path("runs/x"))
    assert {k: env[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                "OMP_NUM_THREADS")} == {"RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "8",
                                                        "LOCAL_WORLD_SIZE": "8", "MASTER_ADDR": "127.0.0.1",
                                                        "MASTER_PORT": "29999", "OMP_NUM_THREADS": "2"}
    assert env[LOCKED_BY_PARENT] == str(Path("runs/x").resolve())  # the launcher holds out_dir for them
    assert launch.worker_environment(0, 32, 1, Path("x"))["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert launch.worker_environment(0, 8, 1, Path("x"))["OMP_NUM_THREADS"] == "3"
    assert launch.worker_command(Path("/tmp/c.yaml"), ["--resume"]) == [
        sys.executable, "-m", "ssdd", "evaluate", "-c", "/tmp/c.yaml", "--resume"]


def _process(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_failed_process_stops_the_others_and_gives_its_exit_code(capsys):
    waiting = _process("import time; time.sleep(60)")
    assert launch.wait_for([waiting, _process("raise SystemExit(4)")], poll_s=0.05, grace_s=0.2) == 4
    assert waiting.poll() is not None  # stopped, not left waiting for the rows of the failed one
    assert "process 1 of 2 stopped with exit code 4" in capsys.readouterr().err
    # rank 0 failing too (a bad setting fails every rank alike) has said why: its code, no second line
    assert launch.wait_for([_process("import time; time.sleep(0.5); raise SystemExit(2)"),
                            _process("raise SystemExit(2)")], poll_s=0.05) == 2
    assert capsys.readouterr().err == ""
    assert launch.wait_for([_process("pass"), _process("pass")], poll_s=0.05) == 0


def test_the_processes_get_the_flags_and_exactly_the_resolved_config(monkeypatch, tmp_path):
    seen, real = [], subprocess.Popen  # launch.subprocess is the module itself: keep the real Popen

    def fake_popen(line, env, pass_fds=()):
        seen.append((line, Path(line[line.index("-c") + 1]).read_text(), env["RANK"]))
        return real([sys.executable, "-c", "pass"])

    monkeypatch.setattr(launch.subprocess, "Popen", fake_popen)
    assert main(["evaluate", "--processes", "2", "--no-progress", "--resume", "seeds=5", "precision=bf16",
                 f"out_dir={tmp_path / 'e'}", "device=cpu"]) == 0
    assert [rank for _, _, rank in seen] == ["0", "1"]
    line, config, _ = seen[0]
    assert line[-2:] == ["--resume", "--no-progress"]
    assert "seeds: 5\n" in config and "precision: bf16\n" in config


def test_auto_is_one_process_per_cell_and_at_most_one_per_core(monkeypatch):
    from ssdd.config import load_config
    from ssdd.evaluation.config import EvaluateConfig

    cfg = load_config(EvaluateConfig, "evaluate_full", ["distilled=[a, b]"])  # 5 sources x 3 seeds
    assert launch.cell_count(cfg) == 15
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 16)
    assert launch.process_count(cfg, "auto") == 15 and launch.process_count(cfg, "4") == 4
    assert launch.process_count(cfg, "100") == 15  # no process without a cell
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 8)
    assert launch.process_count(cfg, "auto") == 8
    cfg.full_data.same_recipe, cfg.seeds = False, 1
    assert launch.cell_count(cfg) == 4


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--processes", "0"], {}, "--processes 0: must be at least 1"),
    (["--processes", "many"], {}, "--processes many: must be a whole number or auto"),
    (["--processes", "2"], {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
     "--processes starts its own processes: leave it out under torchrun"),
    (["--processes", "2", "precision=fp16"], {}, "precision='fp16': must be one of fp32, bf16"),
])
def test_refusals_are_one_line_before_any_process_starts(monkeypatch, capsys, tmp_path, argv, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(launch.subprocess, "Popen", lambda *a, **k: pytest.fail("no process may start"))
    assert main(["evaluate", *argv, f"out_dir={tmp_path / 'e'}", "device=cpu"]) == 2
    assert message in capsys.readouterr().err
