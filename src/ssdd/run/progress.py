"""Timed phase lines and progress bars, so that no phase of a run passes in silence.

A run turns the output on for everything it calls (`with show_phases(show_progress): ...`); library code
then marks its slow steps without threading a flag through every signature:

    with phase("PCA: 200 components of 50,000 x 768") as p:
        basis = ...
        p.detail = "97.1 % of the variance"

prints `PCA: 200 components of 50,000 x 768: done in 12.3 s (97.1 % of the variance)`. A phase still running
after ANNOUNCE_AFTER seconds (or one that contains another phase) is announced when it starts
(`PCA: 200 components of 50,000 x 768 ...`), so a long phase is visible while it runs and a quick one costs
one line. Nested phases are indented. `bar(...)` is tqdm on a terminal and a line every LOG_INTERVAL seconds
in a file (`progress_bar`), shown only while phases are shown. Lines go through tqdm.write (stdout), so they
never tear an active bar. Outside a run (show_phases never entered) no phase line or bar is printed: library
calls stay quiet. A run's own result lines (epochs, the log lines, the evaluation's table) are not phases: they
print whatever `show_progress` says.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from tqdm.auto import tqdm

ANNOUNCE_AFTER = 1.0  # seconds before a running phase prints its start line
LOG_INTERVAL = 30.0  # seconds between a bar's redraws when its output is a file, not a terminal

_SHOW: ContextVar[bool] = ContextVar("ssdd_show_phases", default=False)
_LOCK = threading.RLock()
_STACK: list[Phase] = []


@contextmanager
def show_phases(show: bool) -> Iterator[None]:
    """Show (or hide) phase lines and `bar`s for everything called inside; only rank 0 of a torchrun job shows."""
    from ssdd.run.distributed import is_main_process

    token = _SHOW.set(bool(show) and is_main_process())
    try:
        yield
    finally:
        _SHOW.reset(token)


def showing() -> bool:
    return _SHOW.get()


def duration(seconds: float) -> str:
    """12.3 s, 2 min 03 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds >= 0.1 else f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _write(text: str) -> None:
    tqdm.write(text)


class Phase:
    """One running phase; set `detail` to add a note to its closing line."""

    def __init__(self, what: str, depth: int) -> None:
        self.what, self.depth = what, depth
        self.detail = ""
        self.announced = False
        self.start = time.perf_counter()

    @property
    def indent(self) -> str:
        return "  " * self.depth

    def announce(self) -> None:
        """Print the start line (once), after those of the phases around it."""
        with _LOCK:
            if self.announced:
                return
            for outer in _STACK:
                if outer is self:
                    break
                outer.announce()
            self.announced = True
            _write(f"{self.indent}{self.what} ...")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def note(text: str, show: bool | None = None) -> None:
    """One line (indented like a phase at this depth), when shown."""
    if showing() if show is None else show:
        with _LOCK:
            for outer in _STACK:
                outer.announce()
            _write("  " * len(_STACK) + text)


@contextmanager
def phase(what: str, show: bool | None = None) -> Iterator[Phase]:
    """Time a phase and print `what: done in 12.3 s (detail)`; silent unless shown (see module doc)."""
    current = Phase(what, len(_STACK))
    if not (showing() if show is None else show):
        yield current
        return
    with _LOCK:
        _STACK.append(current)
    timer = threading.Timer(ANNOUNCE_AFTER, current.announce)
    timer.daemon = True
    timer.start()
    failed = False
    try:
        yield current
    except BaseException:
        failed = True
        raise
    finally:
        timer.cancel()
        with _LOCK:
            if _STACK and _STACK[-1] is current:
                _STACK.pop()
            elif current in _STACK:
                _STACK.remove(current)
            if not failed:
                for outer in _STACK:  # an outer phase that has not spoken yet goes first
                    outer.announce()
                note = f" ({current.detail})" if current.detail else ""
                _write(f"{current.indent}{what}: done in {duration(current.elapsed())}{note}")


def on_terminal() -> bool:
    """Whether the bars' stream (stderr) is a terminal, where tqdm redraws a bar in place."""
    isatty = getattr(sys.stderr, "isatty", None)
    return isatty is not None and bool(isatty())


class LogProgress:
    """A progress bar for output that is a file (a long run left in the background with its output redirected):
    its state as one plain line at most every LOG_INTERVAL seconds once it has moved, written like the phase
    lines, e.g. `teacher epoch 3/10: 120/195 (62 %), 41.2 it/s, loss=1.234`. tqdm would leave carriage-return
    redraws, blank clears and a stale copy of the bar beside every phase line in the file. The part of tqdm's
    interface ssdd uses: iteration, update, set_postfix, close, a context."""

    def __init__(self, iterable: Iterable[Any] | None = None, desc: str = "", total: float | None = None,
                 initial: int = 0, unit: str = "it", disable: bool = False, **_tqdm_only: Any) -> None:
        self.iterable, self.desc, self.unit, self.disable = iterable, desc, unit, disable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.n, self.first = total, initial, initial
        self.started = self.printed = time.monotonic()
        self.postfix = ""

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self.printed >= LOG_INTERVAL:
            self.printed = now
            note(self.line(now), show=True)

    def line(self, now: float) -> str:
        done = f"{self.n:,}" + (f"/{self.total:,} ({100 * self.n / self.total:.0f} %)" if self.total else "")
        rate = (self.n - self.first) / max(now - self.started, 1e-9)
        shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"  # 1,234 it/s, not 1.23e+03
        return f"{self.desc}: {done}, {shown} {self.unit}/s" + (f", {self.postfix}" if self.postfix else "")

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                                 for key, value in items.items())

    def close(self) -> None:
        pass


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm | LogProgress:
    """tqdm on a terminal; on a file, a LogProgress line every LOG_INTERVAL seconds (same arguments)."""
    return tqdm(iterable, **kwargs) if on_terminal() else LogProgress(iterable, **kwargs)


def bar(iterable: Iterable[Any] | None = None, show: bool | None = None, **kwargs: Any) -> tqdm | LogProgress:
    """A progress bar (progress_bar), disabled unless phases are shown; one that finishes within `delay` seconds
    never appears."""
    kwargs.setdefault("leave", False)
    kwargs.setdefault("delay", ANNOUNCE_AFTER)
    kwargs.setdefault("dynamic_ncols", True)
    return progress_bar(iterable, disable=not (showing() if show is None else show), **kwargs)
