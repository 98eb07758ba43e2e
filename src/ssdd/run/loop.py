"""One run loop for every stage that trains step by step: the teacher (a step = an epoch), the experts (a step =
one epoch of one expert), the distillation's outer loop (KRR-ST, Boost) and MKDT.

The stage hands over a step function and the state to checkpoint; the loop owns the rest, the same way for all:

    run = RunLoop(out_dir, total=T, stop_after=cfg.stop_after_steps, log_every=..., checkpoint_every=...,
                  settings=("outer.lr",), ...)
    if resume:
        state = run.load()     # the stage restores its tensors, optimisers and generators from `state`
    run.run(step, state=lambda: {...}, record=lambda done: {...}, watch=lambda: [Watched(...), ...])

- `step(i)` trains step i (0-based, from `run.start` to `run.stop`) and returns its loss (a float: the loop logs
  the mean over each window of `log_every` steps with the window's steps/s, plus `record(done)`) or a finished
  log row (a dict, logged as it is). A loss may also be a 0-d tensor (a GPU fast path): the window's sum then
  stays on its device in float64, added in the same order as the floats (so the logged mean has the same bits),
  and the host reads it only when the window closes and before each checkpoint; a non-finite sum there (a step's
  loss was NaN or inf: the step did not check, to spare a host synchronisation) is a numerical stop.
- resume: `load()` reads the checkpoint (the step, the history, the elapsed time, the open log window and the
  scales of the watched tensors); `run()` then rewrites metrics.jsonl to the history, dropping rows logged after
  the checkpoint, so the log equals an uninterrupted run's.
- the progress bar (`desc`), TensorBoard scalars (`log`), stop_after (`stop`).
- a time limit (`time_limit_s`, a stage's `stop_after_minutes`): the run pauses at the first step boundary where
  the steps until the next chance to pause, at this invocation's mean step time, would end past the limit
  counted from `started` (the stage's start, set-up included); it checkpoints there, like stop_after, and
  `timed_out` says why it stopped. Under torchrun rank 0's clock decides for every rank, asked every step where
  every rank already waits for the others (`barrier`) and else at each log window's close (no collective per
  step; the prediction then spans the next window).
- periodic atomic checkpoints (`run.folder.save_checkpoint`), every `checkpoint_every` steps and at `stop`, kept
  only when sane: every tensor of the state is finite and every watched tensor (the distilled images and targets,
  a student's learning rate) stays within SANE_FACTOR times its scale at the start of the run. A state that is not
  sane is never written: the run stops there with a numerical-stop message naming the last sane checkpoint and
  the setting to lower (`settings`, from the stage: the loop never guesses from a method's name).
- a step that raises FloatingPointError (or `run.guard.Diverged`) becomes the same numerical stop.

Under torchrun every rank runs the loop and rank 0 alone writes (the log, the checkpoint); the watched tensors are
replicas, so every rank reaches the same verdict, and a loop that every rank runs (`shared`) hands rank 0's
verdict on the state it writes to all of them. With `barrier=True` every rank waits after each step for rank 0's
writes (the teacher, whose step is an epoch).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssdd.run import distributed as D
from ssdd.run.folder import CHECKPOINT, load_checkpoint, save_checkpoint
from ssdd.run.guard import NUMERICAL_STOP, RESUME_CHANGES, Diverged, NumericalStop, numerical_stop
from ssdd.run.progress import progress_bar
from ssdd.run.tblog import ScalarLog

SANE_FACTOR = 100.0  # by default, a watched tensor beyond this many times its starting scale (at least 1) diverged


@dataclass(frozen=True)
class Watched:
    """A learned tensor that must stay in range: `what` names it in messages, `setting` is the rate that moves it,
    `factor` how many times its starting scale (at least 1) it may reach before its run counts as diverged."""

    what: str
    tensor: torch.Tensor
    setting: str
    factor: float = SANE_FACTOR


def scale_of(tensor: torch.Tensor) -> float:
    """The scale a watched tensor is measured against: its largest magnitude, at least 1."""
    return max(1.0, float(tensor.detach().abs().max())) if tensor.numel() else 1.0


def non_finite(state: Any, where: str = "") -> str | None:
    """The dotted path of the first tensor in a nested state (dicts, lists, tuples) that holds NaN or inf."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            return None if bool(torch.isfinite(state).all()) else (where or "tensor")
        return None
    if isinstance(state, Mapping):
        items: Iterable[tuple[Any, Any]] = state.items()
    elif isinstance(state, list | tuple):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = non_finite(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def insanity(watched: Iterable[Watched], scales: Mapping[str, float]) -> tuple[str, str] | None:
    """(why, setting) for the first watched tensor that is non-finite or beyond its `factor` times its scale."""
    for item in watched:
        factor = item.factor
        tensor = item.tensor.detach()
        if not bool(torch.isfinite(tensor).all()):
            return f"{item.what} became non-finite", item.setting
        scale = scales.get(item.what, 1.0)
        peak = float(tensor.abs().max()) if tensor.numel() else 0.0
        if peak > factor * scale:
            return (f"{item.what} reached {peak:.3g}, over {factor:g} times their scale at the start ({scale:.3g})",
                    item.setting)
    return None


def add_loss(total: float | torch.Tensor, loss: float | torch.Tensor) -> float | torch.Tensor:
    """total + loss. A tensor loss is added on its device in float64, with no host synchronisation; float64
    addition is the same IEEE operation as Python's, so the sum has the bits of the all-float sum."""
    if not isinstance(loss, torch.Tensor):
        return total + float(loss)
    if not isinstance(total, torch.Tensor):  # a fill, not a copy from the host (which would wait)
        total = torch.full((), total, dtype=torch.float64, device=loss.device)
    return total + loss.detach().to(torch.float64)


class RunLoop:
    """The plumbing of one run (see the module doc)."""

    def __init__(self, out_dir: str | Path, *, total: int, settings: tuple[str, ...], stop_after: int = 0,
                 log_every: int = 1, checkpoint_every: int = 1, counter: str = "step",
                 at: Callable[[int], str] | None = None, desc: str | None = None, show_progress: bool = True,
                 is_main: bool = True, log: ScalarLog | None = None, prefix: str = "",
                 tb_step: Callable[[int], int] | None = None, tb_skip: tuple[str, ...] = (),
                 barrier: bool = False, shared: bool = False, time_limit_s: float = 0.0,
                 started: float | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / CHECKPOINT
        self.total, self.stop_after = total, stop_after
        self.settings = settings  # the rates a numerical stop may advise lowering; the first is the default
        self.log_every, self.checkpoint_every = log_every, checkpoint_every
        self.counter = counter
        self.at = at or (lambda done: f"{counter} {done}")
        self.desc, self.show_progress, self.is_main = desc, show_progress, is_main
        self.log, self.prefix = log or ScalarLog(), prefix
        self.tb_step = tb_step or (lambda done: done)
        self.tb_skip = (counter, *tb_skip)
        self.barrier = barrier
        self.shared = shared  # every torchrun rank runs this loop: rank 0's checkpoint verdict is handed to all
        self.start, self.elapsed = 0, 0.0
        self.stop_at: int | None = None  # a stage's own pause point (the experts pause between experts)
        self.time_limit_s = time_limit_s  # 0: none
        self.started = time.perf_counter() if started is None else started  # the origin of the time limit
        self.timed_out = False  # this invocation paused at its time limit
        self._run_start: float | None = None
        self.history: list[dict[str, Any]] = []
        # the loss sum (a float, or a float64 0-d tensor on the losses' device) and step count of the open log window
        self.window: tuple[float | torch.Tensor, int] = (0.0, 0)
        self.scales: dict[str, float] = {}
        self.saved: int | None = None  # the step of the last checkpoint on disk (sane), None before the first
        self.resumed = False
        self.after_stop = False  # resumed from the checkpoint a numerical stop kept

    # ------------------------------------------------------------------------- resume
    def load(self) -> dict[str, Any]:
        """Read the checkpoint of an interrupted run; the stage restores its own objects from the returned state."""
        state = load_checkpoint(self.path)
        self.start = int(state.get(self.counter, 0))
        self.history = list(state.get("history", []))
        self.elapsed = float(state.get("elapsed_s", 0.0))
        window = state.get("window") or (0.0, 0)
        self.window = (float(window[0]), int(window[1]))
        self.scales = dict(state.get("scales") or {})
        self.saved, self.resumed = self.start, True
        self.after_stop = (self.out_dir / NUMERICAL_STOP).is_file()
        return state

    @property
    def stop(self) -> int:
        """Where this invocation stops: the end, `stop_after` steps after the start, or `stop_at`."""
        if self.stop_at is not None:
            return min(self.total, self.stop_at)
        return self.total if self.stop_after <= 0 else min(self.total, self.start + self.stop_after)

    @property
    def finished(self) -> bool:
        return self.stop >= self.total

    # ------------------------------------------------------------------------- the loop
    def run(self, step: Callable[[int], float | torch.Tensor | dict[str, Any]], state: Callable[[], dict[str, Any]],
            record: Callable[[int], dict[str, Any]] | None = None,
            watch: Callable[[], list[Watched]] | None = None) -> None:
        """Run steps start .. stop-1 (see the module doc)."""
        if self.is_main:  # resumed: lines logged after the checkpoint will be logged again; fresh: a failed
            # earlier attempt's lines (one stopped before its first checkpoint) and its stop marker go
            metrics = self.out_dir / "metrics.jsonl"
            if self.resumed or metrics.exists():
                metrics.write_text("".join(json.dumps(r) + "\n" for r in self.history))
            if not self.resumed:
                for leftover in (NUMERICAL_STOP, RESUME_CHANGES):
                    (self.out_dir / leftover).unlink(missing_ok=True)
        if watch is not None:
            for item in watch():  # a resumed run keeps the scales of its start
                self.scales.setdefault(item.what, scale_of(item.tensor))
        steps = range(self.start, self.stop)
        bar = progress_bar(steps, initial=self.start, total=self.total, desc=self.desc, dynamic_ncols=True,
                           disable=not (self.show_progress and self.is_main)) if self.desc else None
        self._run_start = window_start = time.perf_counter()
        ran = 0  # steps of the open window run by this invocation (the rate's numerator)
        try:
            for i in bar if bar is not None else steps:
                try:
                    out = step(i)
                except FloatingPointError as exc:
                    if type(exc) is not FloatingPointError and not isinstance(exc, Diverged):
                        raise  # an artifact's or an evaluation's own error, with its own message
                    raise self._stop(exc, getattr(exc, "setting", None)) from None
                done = i + 1
                row: dict[str, Any] | None = None
                if isinstance(out, dict):
                    row = out
                else:
                    total, count = self.window
                    self.window, ran = (add_loss(total, out), count + 1), ran + 1
                    if done % self.log_every == 0 or done == self.total:  # a pause keeps its window open
                        total, count = self._read_window(done)  # (waits for the device's queue: the rate's end)
                        rate = ran / max(time.perf_counter() - window_start, 1e-9)
                        row = {self.counter: done, "loss": total / count, "steps_per_s": rate,
                               **(record(done) if record else {})}
                        self.window, ran, window_start = (0.0, 0), 0, time.perf_counter()
                if row is not None:
                    self._log(row, done, bar)
                if self.time_limit_s > 0 and done < self.stop and self._out_of_time(done):
                    self.stop_at, self.timed_out = done, True
                if done % self.checkpoint_every == 0 or done == self.stop:
                    self.window = self._read_window(done)
                    self.checkpoint(done, state, watch)
                if self.barrier:
                    D.barrier()
                if done >= self.stop:
                    break
        finally:
            if bar is not None:
                bar.close()
        self.elapsed += time.perf_counter() - self._run_start
        self._run_start = None

    def _out_of_time(self, done: int) -> bool:
        """Whether the steps up to the next chance to pause, at this invocation's mean step time, would end past
        the time limit (rank 0's verdict under torchrun, asked where the ranks meet anyway)."""
        windowed = self.shared and not self.barrier  # torchrun: asked only at a window's close, where every
        if windowed and done % self.log_every:  # rank has just synchronised
            return False
        ahead = min(self.log_every, self.stop - done) if windowed else 1  # steps until it is asked again

        def verdict() -> bool:
            now = time.perf_counter()
            assert self._run_start is not None
            per_step = (now - self._run_start) / max(done - self.start, 1)
            return now - self.started + ahead * per_step > self.time_limit_s

        return D.on_main(verdict) if self.shared else verdict()

    def _read_window(self, done: int) -> tuple[float, int]:
        """The open window as floats; a sum kept on a device is read (one host synchronisation) and must be
        finite: its steps skipped their own check."""
        total, count = self.window
        if not isinstance(total, torch.Tensor):
            return total, count
        value = float(total)
        if not math.isfinite(value):
            first = done - count + 1
            raise self._stop(FloatingPointError(f"the loss became non-finite at a step from {self.at(first)} to "
                                                f"{self.at(done)} (read once per log window)"), None)
        return value, count

    def _log(self, row: dict[str, Any], done: int, bar: Any) -> None:
        self.history.append(row)
        if self.is_main:
            with open(self.out_dir / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")
        self.log.scalars({k: v for k, v in row.items() if k not in self.tb_skip}, self.tb_step(done),
                         prefix=self.prefix)
        if bar is not None and "loss" in row:
            postfix = {"loss": f"{row['loss']:.4f}"}
            if "steps_per_s" in row:
                postfix["steps_s"] = f"{row['steps_per_s']:.2f}"
            bar.set_postfix(**postfix)

    # ------------------------------------------------------------------------- checkpoints and stops
    def checkpoint(self, done: int, state: Callable[[], dict[str, Any]],
                   watch: Callable[[], list[Watched]] | None = None) -> None:
        """Write the checkpoint of step `done` (rank 0), or stop when its state is not sane (every rank). `run`
        calls it on its cadence; a stage may call it between (the experts, before writing a finished expert)."""
        elapsed = self.elapsed + (time.perf_counter() - self._run_start if self._run_start is not None else 0.0)
        verdict = insanity(watch(), self.scales) if watch is not None else None
        if verdict is not None:
            why, setting = verdict
            raise self._stop(FloatingPointError(f"{why} at {self.at(done)}"), setting, kept_back=True)

        def write() -> str | None:
            full = {**state(), self.counter: done, "history": self.history, "elapsed_s": elapsed,
                    "window": list(self.window), "scales": self.scales}
            bad = non_finite(full)
            if bad is None:
                save_checkpoint(self.path, full)
            return bad

        # rank 0 writes; when every rank runs the loop, each learns its verdict (none waits in a collective alone)
        bad = D.on_main(write) if self.shared else (write() if self.is_main else None)
        if bad is not None:
            raise self._stop(FloatingPointError(f"the state to checkpoint holds NaN or inf ({bad}) at "
                                                f"{self.at(done)}"), None, kept_back=True)
        self.saved = done

    def _stop(self, exc: BaseException, setting: str | None, kept_back: bool = False) -> NumericalStop:
        """The numerical stop: marks the run folder and says which checkpoint is kept and what to lower."""
        cause = str(exc).split(";")[0].strip()
        if kept_back:
            cause += " (not checkpointed)"
        key = setting or self.settings[0]
        if self.after_stop and self.saved == self.start:  # the kept state diverged again, before a new checkpoint
            return NumericalStop(f"{cause}, again after resuming from the {self.at(self.start)} checkpoint that an "
                                 f"earlier numerical stop kept: that state does not recover with another {key}; "
                                 f"start a new run (another out_dir, or remove this one) with a lower {key}")
        kept = self.at(self.saved) if self.saved is not None else ""
        stop = numerical_stop(self.out_dir, FloatingPointError(cause), key, step=kept, kept=kept,
                              settings=self.settings)
        assert isinstance(stop, NumericalStop)
        return stop

