"""What a launcher of ssdd processes (torchrun, `ssdd evaluate --processes`) tells them through their environment.
Nothing here imports torch, so the command line reads it before torch is imported."""

from __future__ import annotations

import os

# the out_dir the launcher holds for the processes it starts (ssdd.run.folder.exclusive): they run inside its claim
LOCKED_BY_PARENT = "SSDD_OUT_DIR_HELD"


def started_by_launcher() -> bool:
    """Whether this process was started by an ssdd launcher, which speaks for it (its interrupt line)."""
    return LOCKED_BY_PARENT in os.environ


# what torchrun sets in each process it starts: all of them, or none (a process on its own)
TORCHRUN_NEEDS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def torchrun_env_problem() -> str | None:
    """One line when the environment describes a torchrun job that cannot be one: WORLD_SIZE > 1 without the
    rest of torchrun's variables (set by hand, or left over from another job: the process would wait for peers
    that never come), a RANK other than 0 outside such a job (the process would take itself for another's rank
    and stay silent), or a WORLD_SIZE or RANK that is not a count. None otherwise: MASTER_ADDR, MASTER_PORT or
    LOCAL_RANK alone (a scheduler's script may export them) and RANK=0 WORLD_SIZE=1 are one process."""
    for name in ("WORLD_SIZE", "RANK"):
        value = os.environ.get(name)
        if value and not value.isdigit():
            return f"{name}={value!r} is not a whole number: start the processes with torchrun"
    world, rank = int(os.environ.get("WORLD_SIZE") or 1), int(os.environ.get("RANK") or 0)
    if world > 1:
        missing = [name for name in TORCHRUN_NEEDS if not os.environ.get(name)]
        if missing:
            return (f"the environment sets WORLD_SIZE={world} but not {', '.join(missing)}: start several "
                    f"processes with torchrun (which sets them all), or unset WORLD_SIZE to run one process")
    if rank >= world:
        return (f"RANK={rank} is not below WORLD_SIZE={world}: start several processes with torchrun, or unset RANK "
                f"to run one process")
    return None
