"""What a launcher of ssdd processes (`ssdd evaluate --processes`) tells them through their environment. Nothing
here imports torch, so the command line reads it before torch is imported."""

from __future__ import annotations

import os

# the out_dir the launcher holds for the processes it starts (ssdd.run.folder.exclusive): they run inside its claim
LOCKED_BY_PARENT = "SSDD_OUT_DIR_HELD"


def started_by_launcher() -> bool:
    """Whether this process was started by an ssdd launcher, which speaks for it (its interrupt line)."""
    return LOCKED_BY_PARENT in os.environ
