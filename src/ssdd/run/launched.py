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
    """One line when the environment holds some of torchrun's variables but not all (set by hand, or left over
    from another job), or a WORLD_SIZE or RANK that is not a count: a process would then wait for peers that never
    come, or take itself for a rank other than 0 and stay silent. None when they are complete or absent."""
    given = [name for name in (*TORCHRUN_NEEDS, "LOCAL_RANK") if os.environ.get(name)]
    if not given:
        return None
    missing = [name for name in TORCHRUN_NEEDS if not os.environ.get(name)]
    if missing:
        return (f"the environment sets {', '.join(given)} but not {', '.join(missing)}: start several processes "
                f"with torchrun (which sets them all), or unset {', '.join(given)} to run one process")
    for name in ("WORLD_SIZE", "RANK"):
        if not os.environ[name].isdigit():
            return f"{name}={os.environ[name]!r} is not a whole number: start the processes with torchrun"
    if int(os.environ["RANK"]) >= int(os.environ["WORLD_SIZE"]):
        return f"RANK={os.environ['RANK']} is not below WORLD_SIZE={os.environ['WORLD_SIZE']}"
    return None
