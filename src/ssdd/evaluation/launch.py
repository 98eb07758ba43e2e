"""`ssdd evaluate --processes N`: the evaluation on N processes of this machine, so that N cells run at once
without typing a torchrun line. A small network leaves most of a GPU idle; the processes share the machine's
GPUs (several on one GPU are linked with gloo: ssdd.run.distributed.backend_for) and each runs whole cells,
dealt exactly as under `torchrun --nproc_per_node=N` (ssdd.evaluation.schedule.dealing_order), so the rows
are those of one process.

The processes get torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT)
from this small launcher rather than from torchrun itself, which would wrap a worker's one-line error in a
Python traceback of its own and exit with 1 whatever the worker's exit code.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ssdd.config import ConfigError, save_config
from ssdd.evaluation.config import EvaluateConfig
from ssdd.run.folder import exclusive, held_descriptor
from ssdd.run.launched import LOCKED_BY_PARENT


def worker_command(config: Path, flags: list[str]) -> list[str]:
    """The line every process runs: `ssdd evaluate -c CONFIG FLAGS` with this Python."""
    return [sys.executable, "-m", "ssdd", "evaluate", "-c", str(config), *flags]


def worker_environment(rank: int, processes: int, port: int, out_dir: Path) -> dict[str, str]:
    """This environment plus what torchrun would give process `rank` of `processes` on one machine, with the
    CPU cores shared out among the processes unless OMP_NUM_THREADS is set; `out_dir`, which the launcher holds
    for them (ssdd.run.folder.exclusive)."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    return {"OMP_NUM_THREADS": str(threads), **os.environ, "PYTHONUNBUFFERED": "1",
            "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
            "LOCAL_WORLD_SIZE": str(processes), "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            LOCKED_BY_PARENT: str(out_dir.resolve())}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(workers: list[subprocess.Popen]) -> None:
    """End the processes still running (SIGTERM, then SIGKILL after 10 s)."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _first_failure(workers: list[subprocess.Popen], grace_s: float) -> tuple[int, int] | None:
    """(rank, exit code) of a process that failed, None while none has. Rank 0 alone prints errors, and on a
    bad setting every rank fails alike: when another rank fails first, rank 0 gets `grace_s` to fail too."""
    failed = next(((rank, code) for rank, code in enumerate(w.poll() for w in workers) if code not in (None, 0)),
                  None)
    if failed is not None and failed[0] != 0:
        try:
            if workers[0].wait(timeout=grace_s) != 0:
                return 0, workers[0].returncode
        except subprocess.TimeoutExpired:
            pass
    return failed


def wait_for(workers: list[subprocess.Popen], poll_s: float = 0.2, grace_s: float = 3.0) -> int:
    """0 once every process has finished; when one fails, its exit code, after stopping the others (they would
    wait for its rows at the end of the round)."""
    try:
        while True:
            failed = _first_failure(workers, grace_s)
            if failed is not None:
                _stop(workers)
                if failed[0] != 0:  # its error line was not printed (rank 0 prints them)
                    print(f"ssdd evaluate: process {failed[0]} of {len(workers)} stopped with exit code {failed[1]}; "
                          "the others were stopped too (SSDD_TRACEBACK=1 shows its traceback)", file=sys.stderr)
                return failed[1]
            if all(worker.poll() == 0 for worker in workers):
                return 0
            time.sleep(poll_s)
    except BaseException:  # Ctrl-C (also delivered to the processes) or an error here: none is left running
        _stop(workers)
        raise


def cell_count(cfg: EvaluateConfig) -> int:
    """The cells of an evaluation (architectures x seeds x pre-training sources), finished ones included."""
    sources = len(cfg.distilled) + sum(map(bool, (cfg.no_pretrain, cfg.full_data.enabled, cfg.full_data.same_recipe)))
    return len(cfg.models) * cfg.seeds * sources


def process_count(cfg: EvaluateConfig, processes: str) -> int:
    """--processes: a whole number (at most one per cell), or auto: one process per cell, at most one per CPU core
    (each process keeps a core busy driving its GPU work, or computing on the CPU)."""
    if str(processes) == "auto":
        return max(1, min(cell_count(cfg), os.cpu_count() or 1))
    try:
        count = int(processes)
    except ValueError:
        raise ConfigError(f"--processes {processes}: must be a whole number or auto") from None
    if count < 1:
        raise ConfigError(f"--processes {processes}: must be at least 1")
    return min(count, max(1, cell_count(cfg)))  # a process beyond the last cell would only wait


def run_processes(cfg: EvaluateConfig, processes: int, flags: list[str]) -> int:
    """Run the evaluation `cfg` (resolved: every process reads exactly it) on `processes` processes; `flags`
    are the command's own (--resume, --no-progress, --allow-mismatch). Returns 0, or the exit code of the
    first process that failed (rank 0 has said why in one line)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--processes starts its own processes: leave it out under torchrun")
    from ssdd.evaluation.validate import check_evaluate_settings
    from ssdd.run.checks import check_device
    from ssdd.run.guard import register_run

    check_evaluate_settings(cfg)  # a mistyped setting is one line here, before any process starts
    check_device(cfg.device)
    register_run("evaluate", cfg.out_dir)  # so that Ctrl-C here says what the processes kept and how to go on
    with exclusive(cfg.out_dir) as out_dir, tempfile.TemporaryDirectory(prefix="ssdd-evaluate-") as folder:
        print(f"ssdd evaluate: {processes} processes on this machine, {cell_count(cfg)} cells", flush=True)
        command, port = worker_command(save_config(cfg, Path(folder) / "config.yaml"), flags), _free_port()
        held = held_descriptor(out_dir)  # inherited: the folder stays held while any process lives
        return wait_for([subprocess.Popen(command, env=worker_environment(rank, processes, port, out_dir),
                                          pass_fds=() if held is None else (held,)) for rank in range(processes)])
