"""`ssdd evaluate --processes N`: the evaluation on N processes of this machine, started by torchrun's own
launcher (`python -m torch.distributed.run --standalone`), so that N cells run at once without typing the
torchrun line. A small network leaves most of a GPU idle; the processes share the machine's GPUs (several on
one GPU are linked with gloo: ssdd.run.distributed.backend_for) and each runs whole cells, dealt as under any
torchrun (ssdd.evaluation.schedule.dealing_order), so the rows are those of one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ssdd.config import ConfigError, save_config
from ssdd.evaluation.config import EvaluateConfig


def launch_command(config: Path, processes: int, flags: list[str]) -> list[str]:
    """The torchrun line that runs `ssdd evaluate -c CONFIG FLAGS` on `processes` processes of this machine
    (--standalone: a rendezvous on a free local port, so that several such runs do not collide)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "ssdd", "evaluate", "-c", str(config), *flags]


def worker_environment(processes: int) -> dict[str, str]:
    """This environment, with the CPU cores shared out among the processes unless OMP_NUM_THREADS is set
    (torchrun would give each one thread, and say so at length)."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    return {"OMP_NUM_THREADS": str(threads), **os.environ, "PYTHONUNBUFFERED": "1"}


def run_processes(cfg: EvaluateConfig, processes: int, flags: list[str]) -> int:
    """Run the evaluation `cfg` (resolved: the workers read exactly it) on `processes` processes; `flags` are
    the command's own (--resume, --no-progress, --allow-mismatch). Returns torchrun's exit code: 0, or
    non-zero when a process failed (its rank 0 has said why in one line)."""
    if processes < 1:
        raise ConfigError(f"--processes {processes}: must be at least 1")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--processes starts its own processes: leave it out under torchrun")
    from ssdd.evaluation.validate import check_evaluate_settings
    from ssdd.run.checks import check_device

    check_evaluate_settings(cfg)  # a mistyped setting is one line here, before any process starts
    check_device(cfg.device)
    with tempfile.TemporaryDirectory(prefix="ssdd-evaluate-") as folder:
        config = save_config(cfg, Path(folder) / "config.yaml")
        return subprocess.run(launch_command(config, processes, flags), env=worker_environment(processes),
                              check=False).returncode
