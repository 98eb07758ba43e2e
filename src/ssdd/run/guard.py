"""Nothing lost: what a run folder keeps so that finished work survives mistakes, kills and numerical stops.

- Stale temporary files of writes killed half-way (`.<name>.*.tmp`, see `runtime.atomic_write`) are removed
  when the next run starts in the folder.
- `inputs.json` records what a run read (teacher and source fingerprints); `--resume` refuses a run whose
  teacher or data changed since it started.
- `numerical_stop.json` marks a run stopped by a non-finite loss or an insane state (see `ssdd.run.loop`): its
  resume may lower the rates the stop named.
- `resume_changes.json` lists every setting a resume changed (only those that do not alter what was already
  computed, e.g. the output format or later-stage settings); the artifact's manifest records it.
- The run that is under way is remembered so that an interrupt message says what was really kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ssdd.config import current_form, current_name
from ssdd.run.distributed import is_main_process
from ssdd.run.folder import CHECKPOINT, check_resume_compatible, flatten
from ssdd.run.runtime import write_json

INPUTS = "inputs.json"
NUMERICAL_STOP = "numerical_stop.json"
RESUME_CHANGES = "resume_changes.json"

_current: dict[str, Any] = {}


def _probe_keys() -> tuple[str, ...]:
    from dataclasses import fields

    from ssdd.evaluation.linear_probe import ProbeConfig

    return tuple(f"probe.{f.name}" for f in fields(ProbeConfig))


# Settings a teacher's --resume may change: they act only after training (the saved format, the linear probe
# and the split it is measured on), so the training already done stays valid.
TEACHER_FINISH_KEYS: tuple[str, ...] = ("save_dtype", "data.test_split", *_probe_keys())


# ----------------------------------------------------------------------------- the run under way
def register_run(stage: str, out_dir: str | Path) -> None:
    """Remember the stage and folder of the command under way (for the interrupt message)."""
    _current.clear()
    _current.update(stage=stage, out_dir=Path(out_dir))


def interrupt_message(command: str) -> str:
    """A true sentence on what an interrupted command kept and how to continue."""
    if command == "reproduce":
        return ("finished stages stay cached and a stage with a checkpoint continues from it: run the same "
                "command again")
    if not _current:
        return "the command did not finish: run it again"
    stage, out_dir = _current["stage"], _current["out_dir"]
    if stage == "evaluate":
        if (out_dir / "results.json").exists():  # a fresh run there is refused: --resume goes on
            if _holds_rows(out_dir / "results.json") or any((out_dir / "cells").glob("*.json")):
                return f"the finished cells are in {out_dir / 'results.json'}: continue with --resume"
            return f"no cell had finished: continue with --resume, which measures them all (out_dir {out_dir})"
        return f"no cell had finished, nothing to keep: run the command again (out_dir {out_dir})"
    if (out_dir / CHECKPOINT).exists():
        return f"the last checkpoint, {out_dir / CHECKPOINT}, is intact: continue with --resume"
    return f"before the first checkpoint, nothing to resume: run the command again (out_dir {out_dir})"


def _holds_rows(results: Path) -> bool:
    try:
        return bool(json.loads(results.read_text()))
    except (OSError, ValueError):
        return True  # unreadable: its resume says what is wrong with it


# ----------------------------------------------------------------------------- stale temporary files
def clean_stale_tmp(out_dir: str | Path, subfolders: Iterable[str] = ("teacher",)) -> list[Path]:
    """Remove `.<name>.*.tmp` files that a killed atomic write left in out_dir (and its artifact sub-folders).
    Only the main process cleans, and only at the start of a run, before it writes anything."""
    if not is_main_process():
        return []
    out_dir = Path(out_dir)
    removed = []
    for folder in (out_dir, *(out_dir / s for s in subfolders)):
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    if removed:
        print(f"removed {len(removed)} stale temporary file(s) of an interrupted write from {out_dir}")
    return removed


# ----------------------------------------------------------------------------- inputs of a run
def check_inputs(out_dir: str | Path, resume: bool, inputs: Mapping[str, Any], what: Mapping[str, str]) -> None:
    """Record a fresh run's inputs; on --resume, refuse inputs that differ from the recorded ones.

    `what` names each input for the message (key -> 'teacher=PATH', 'data.path=FILE', ...)."""
    path = Path(out_dir) / INPUTS
    if resume and path.is_file():
        try:
            recorded = json.loads(path.read_text())
        except ValueError:
            recorded = {}
        for key, value in inputs.items():
            before = recorded.get(key)
            if before is not None and value is not None and before != value:
                raise ValueError(f"--resume: the {what.get(key, key)} changed since this run started (fingerprint "
                                 f"{before} -> {value}); resume with the original one (the run's settings: -c "
                                 f"{Path(out_dir) / 'config.yaml'}), or start a fresh run in another out_dir")
        if all(recorded.get(k) == v for k, v in inputs.items()):
            return
    if is_main_process():
        write_json(path, dict(inputs))


# A path setting whose content fingerprints inputs.json records (any of the listed inputs): a --resume may name
# another path for it (the run's folder and its inputs were moved or copied, e.g. a study's out_dir), because
# check_inputs then compares what the path holds, not where it is.
PATH_INPUTS: dict[str, tuple[str, ...]] = {"teacher": ("teacher", "teacher_function"), "data.path": ("data", "source")}


def fingerprinted_paths(out_dir: str | Path) -> tuple[str, ...]:
    """The path settings (dotted keys) of this run whose inputs are compared by fingerprint on --resume."""
    try:
        recorded = json.loads((Path(out_dir) / INPUTS).read_text())
    except (OSError, ValueError):
        return ()
    if not isinstance(recorded, dict):
        return ()
    return tuple(key for key, inputs in PATH_INPUTS.items() if any(recorded.get(i) for i in inputs))


# ----------------------------------------------------------------------------- numerical stops
class Diverged(FloatingPointError):
    """A training step's loss (or a learned value) became non-finite; `setting` names the rate that moves what
    diverged, when the step knows better than its loop (e.g. MKDT's student lr: mkdt.lr_lr)."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class NumericalStop(FloatingPointError):
    """A run stopped by a numerical failure; its message is final: what was kept and what to do next."""


def numerical_stop(out_dir: str | Path, exc: BaseException, lr_key: str, step: str = "", kept: str = "",
                   settings: Iterable[str] = ()) -> FloatingPointError:
    """Mark the run as stopped by a non-finite loss and return a NumericalStop whose message is true about what
    was kept (the last checkpoint, whose state was sane at `kept`, or nothing) and names the setting to lower.
    A resume may then change `lr_key` and the other `settings` (those of the same loop). A NumericalStop passes
    through unchanged (its loop has said all)."""
    if isinstance(exc, NumericalStop):
        return exc
    out_dir = Path(out_dir)
    cause = str(exc).split(";")[0].strip() or "the loss became non-finite"
    ckpt = out_dir / CHECKPOINT
    if is_main_process() and out_dir.is_dir():
        write_json(out_dir / NUMERICAL_STOP, {"reason": cause, "at": step, "lr_key": lr_key,
                                              "settings": list(dict.fromkeys([lr_key, *settings])),
                                              "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if ckpt.exists():
        sane = f" (from its state at {kept}, checked finite and in range)" if kept else ""
        return NumericalStop(f"{cause}; the last checkpoint, {ckpt}, is intact: continue with --resume "
                             f"{lr_key}=<lower value>{sane}")
    return NumericalStop(f"{cause}; no checkpoint had been written: run again with a lower {lr_key}")


def stop_settings(out_dir: str | Path) -> list[str]:
    """The settings that the numerical stop of this run said a resume may lower (none without a stop)."""
    path = Path(out_dir) / NUMERICAL_STOP
    try:
        marker = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return []
    if not isinstance(marker, dict):
        return []
    keys = [marker.get("lr_key"), *(marker.get("settings") or [])]
    return [current_name(k) for k in keys if isinstance(k, str)]  # a marker of an older version: `krr.lr`


def stopped_numerically(out_dir: str | Path) -> bool:
    return (Path(out_dir) / NUMERICAL_STOP).is_file()


# ----------------------------------------------------------------------------- resume with changed settings
def check_resume(out_dir: str | Path, saved: Mapping[str, Any], current: Mapping[str, Any], allowed: Iterable[str],
                 at: Any, after_numerical_stop: Iterable[str] = ()) -> list[dict[str, Any]]:
    """`check_resume_compatible`, plus: after a numerical stop the `after_numerical_stop` keys and the settings
    the stop named (`stop_settings`) may change too;
    every allowed change (except out_dir and pause points) is appended to resume_changes.json."""
    out_dir = Path(out_dir)
    free = [*allowed, *fingerprinted_paths(out_dir)]  # a moved teacher or data file: fingerprints compared
    numerical = stopped_numerically(out_dir)
    if numerical:
        free += [*after_numerical_stop, *stop_settings(out_dir)]
    check_resume_compatible(saved, current, free)
    a, b = flatten(current_form(dict(saved))), flatten(current)
    quiet = {"out_dir", "stop_after_epochs", "stop_after_steps", "stop_after_minutes"}
    changes = [{"key": k, "from": a.get(k), "to": b.get(k), "at": at}
               for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in quiet]
    if changes and is_main_process():  # the marker of a numerical stop stays: the changes are all recorded
        write_json(out_dir / RESUME_CHANGES, [*resume_changes(out_dir), *changes])
    return changes


def resume_changes(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every change of settings the resumes of this run made (for the manifest)."""
    path = Path(out_dir) / RESUME_CHANGES
    try:
        return list(json.loads(path.read_text())) if path.is_file() else []
    except ValueError:
        return []
