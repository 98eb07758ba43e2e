"""Run one `ssdd` command in this process and write its peak GPU memory and wall time to a JSON file at exit.

    python benchmarks/gpu/peak.py OUT.json teacher -c teacher_cifar100 out_dir=... --no-progress

The command is the `ssdd` CLI's own entry (ssdd.cli.main) of whichever ssdd PYTHONPATH points at, so the same
wrapper measures the old and the new source trees. The JSON holds the exit code, the wall time and
torch.cuda.max_memory_allocated / max_memory_reserved (bytes; null without CUDA); it is written whether the
command ends normally, raises or exits (an atexit hook), so a run stopped by its own error still reports.
A run killed by a signal (a deadline's SIGTERM) also reports: SIGTERM is turned into SystemExit first.
"""

from __future__ import annotations

import atexit
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch


def memory_record() -> dict[str, Any]:
    """Peak bytes allocated and reserved by PyTorch's CUDA allocator in this process (null without CUDA)."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {"peak_allocated_bytes": None, "peak_reserved_bytes": None}
    return {"peak_allocated_bytes": torch.cuda.max_memory_allocated(),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved()}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        raise SystemExit("usage: peak.py OUT.json SSDD-ARGS...")
    out, command = Path(argv[0]), argv[1:]
    state: dict[str, Any] = {"command": command, "exit_code": None}
    start = time.perf_counter()

    def write() -> None:
        record = {**state, "wall_s": time.perf_counter() - start, **memory_record()}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")

    def on_term(signum: int, frame: Any) -> None:  # `timeout` sends SIGTERM: leave through SystemExit, atexit runs
        raise SystemExit(128 + signum)

    atexit.register(write)
    signal.signal(signal.SIGTERM, on_term)
    from ssdd.cli import main as ssdd_main  # after the hooks: an import error is reported too

    try:
        code = ssdd_main(command)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    state["exit_code"] = int(code or 0)
    return state["exit_code"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
