"""Every error of the `ssdd` command is one line and an exit code, whatever raised it.

Exit codes (README, "Reliability"):
    0    success (also a teacher or distillation paused by stop_after_*)
    1    an unexpected failure (a bug, out of memory, a device error): one line; --debug shows the traceback
    2    bad input: a config value, a data file, an artifact, a budget, a folder that holds another run (or that
         a run is still writing)
    3    `ssdd reproduce`: a stage paused (stop_after_*); run the same command again to continue
    4    a numerical failure: a loss or a fit became NaN/inf, or a saved tensor would be; nothing bad was saved
    130  interrupted (Ctrl-C); the message says what was kept
    143  terminated (SIGTERM: `kill`, `timeout`, a scheduler's time limit), handled like Ctrl-C
`ssdd check` exits 1 when something needs fixing. `--debug` (or SSDD_TRACEBACK=1) re-raises with the traceback.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.error import URLError

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_PAUSED = 3
EXIT_NUMERICAL = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process it killed


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command was, so that it stops as on Ctrl-C: the processes it started are
    stopped, and the message says what was kept."""


@contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises Terminated, in the process that speaks for the run (its main thread). The others
    (torchrun's ranks but 0, the processes of `ssdd evaluate --processes`) keep the default, to end at once:
    Python runs a handler only between bytecodes, and a process blocked in a collective whose peer has gone
    would otherwise wait until its launcher kills it."""
    if threading.current_thread() is not threading.main_thread() or not speaks_for_the_run():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def speaks_for_the_run() -> bool:
    """Whether this process prints the run's interrupt line (Ctrl-C and SIGTERM reach every process of a job):
    rank 0 of a torchrun job, and none of the processes `ssdd evaluate --processes` starts (their launcher
    says what they kept)."""
    from ssdd.run.launched import started_by_launcher

    return os.environ.get("RANK", "0") == "0" and not started_by_launcher()


# what a collective of a running job says when another process of it has gone (gloo's and NCCL's words)
_PEER_GONE = re.compile(r"connection (closed|reset) by peer|broken pipe|remote process exited|"
                        r"communicator was aborted", re.IGNORECASE)


def peer_stopped(exc: BaseException) -> bool:
    """Whether `exc` says that another process of a running torchrun job stopped (killed, or failed on its own):
    a lost connection in a collective, once the processes were linked (a failed start is its own error)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    return (dist.is_available() and dist.is_initialized() and isinstance(exc, RuntimeError)
            and bool(_PEER_GONE.search(str(exc))))


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (whitespace and newlines collapsed); its type when it is empty."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and exc.args:  # str(KeyError('x')) is "'x'"
        text = f"missing key {exc.args[0]!r}"
    return text or type(exc).__name__


def classify(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for any exception the command let through."""
    import torch

    if isinstance(exc, FloatingPointError):
        return EXIT_NUMERICAL, one_line(exc)
    if isinstance(exc, (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                        PermissionError)):
        return EXIT_BAD_INPUT, one_line(exc)
    if isinstance(exc, torch.cuda.OutOfMemoryError) or isinstance(exc, MemoryError):
        return EXIT_FAILURE, (f"out of memory ({type(exc).__name__}): lower the batch size (optim.batch_size, "
                              f"outer.batch_size, pool.batch_size, pretrain.batch_size) or use a larger device")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" while writing {exc.filename}" if getattr(exc, "filename", None) else ""
        return EXIT_FAILURE, (f"no space left on device{where} (the file there, if any, was not replaced): free "
                              f"some space and run the command again (with --resume where it has one)")
    if isinstance(exc, (URLError, ConnectionError, TimeoutError)):  # OSErrors too, but of the network
        reason = getattr(exc, "reason", None) or one_line(exc)
        return EXIT_FAILURE, (f"a network operation failed ({' '.join(str(reason).split())}): for a download, "
                              f"check the network, or fetch the files on a machine that has one and point data.path "
                              f"at them")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        reason = exc.strerror or one_line(exc)
        return EXIT_FAILURE, f"{where}{reason} (a file-system error: check the path, the free space and permissions)"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = one_line(exc) if isinstance(exc, KeyError) or not lines else lines[0]
    return EXIT_FAILURE, (f"unexpected {type(exc).__name__}: {first} (rerun with --debug for the traceback, "
                          f"and please report it)")
