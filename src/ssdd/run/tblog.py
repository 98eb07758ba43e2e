"""Optional TensorBoard scalars beside metrics.jsonl (`tensorboard: true` in a teacher, distill or evaluate config).

Event files go to `<out_dir>/tensorboard/`; `tensorboard --logdir OUT` shows every stage under OUT. The
package is optional (`pip install "ssdd[tensorboard]"`) and imported only when enabled: `ScalarLog(True)` fails
at once, with one line, when it is missing, so a run stops before any work. Only the main process writes
(`is_main=False` gives a log that drops everything), and every write is flushed, so what a run logged survives
an interruption and shows up while the run goes on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUBDIR = "tensorboard"
MISSING = 'tensorboard=true needs the tensorboard package: pip install "ssdd[tensorboard]"'


class MissingPackageError(ValueError):
    """An optional dependency that a setting needs is not installed (one line, exit code 2 in the CLI)."""


def writer_class() -> type:
    """torch.utils.tensorboard.SummaryWriter, or MissingPackageError (imported here, never at ssdd's import)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MissingPackageError(MISSING) from None
    return SummaryWriter


def require_tensorboard(enabled: bool) -> None:
    """Fail with MISSING when `enabled` and the package is not installed (call before any work)."""
    if enabled:
        writer_class()


def main_process() -> bool:
    """Rank 0 of a torchrun job, or no job (ssdd.run.distributed.is_main_process)."""
    from ssdd.run.distributed import is_main_process

    return is_main_process()


class ScalarLog:
    """A SummaryWriter under <out_dir>/tensorboard when enabled on the main process; otherwise a no-op.

    `ScalarLog(enabled, is_main)` checks the package; `open(out_dir, purge_step)` creates the writer (on the
    main process: rank 0 under torchrun whatever `is_main` says); `scalars`, `text` write and flush; `close` (or
    leaving a `with` block) closes it."""

    def __init__(self, enabled: bool = False, is_main: bool = True) -> None:
        self.enabled = bool(enabled)
        self._writer_class = writer_class() if self.enabled else None  # fails here when the package is missing
        self._is_main = is_main
        self._writer: Any = None
        self.directory: Path | None = None

    @property
    def active(self) -> bool:
        """True while a writer is open (enabled, main process, opened)."""
        return self._writer is not None

    def open(self, out_dir: str | Path, purge_step: int | None = None) -> ScalarLog:
        """Start writing under out_dir/tensorboard. A resumed run passes the first step it will log again as
        `purge_step`: TensorBoard then drops the points the interrupted run logged from that step on."""
        if self.enabled and self._is_main and main_process() and self._writer is None:
            self.directory = Path(out_dir) / SUBDIR
            self.directory.mkdir(parents=True, exist_ok=True)
            assert self._writer_class is not None
            self._writer = self._writer_class(log_dir=str(self.directory), purge_step=purge_step, flush_secs=10)
        return self

    def scalars(self, values: Mapping[str, Any], step: int, prefix: str = "") -> None:
        """One scalar per entry (tag = prefix + key); None, booleans and non-numbers are skipped."""
        if self._writer is None:
            return
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                continue
            self._writer.add_scalar(f"{prefix}{key}", float(value), int(step))
        self._writer.flush()

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        """A Markdown text (TensorBoard's Text tab renders tables)."""
        if self._writer is None:
            return
        self._writer.add_text(tag, markdown, int(step))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ScalarLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
