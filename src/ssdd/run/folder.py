"""The run folder that every stage shares (teacher, distill, evaluate, study).

One place for the rules: the resolved config and its hash, the check that a resumed run has the same
settings, atomic checkpoints, what kind of run a folder holds (`run_kind`), and the one check every command
makes on its output folder before any work (`claim`): never another command's run, never a fresh run over one;
and the check of a command that writes pictures or a report beside runs (`claim_output`): never into a run's folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import torch

from ssdd.config import ConfigError, current_form
from ssdd.run.launched import LOCKED_BY_PARENT
from ssdd.run.runtime import atomic_write

CHECKPOINT = "checkpoint.pt"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_hash(config: Mapping[str, Any], ignore: Iterable[str] = (), legacy: Mapping[str, Any] | None = None) -> str:
    """16 hex digits of SHA-256 over the config's values, without the `ignore` keys (dotted, flattened) and
    without the `legacy` keys that hold their legacy value: a setting added later, at the value that
    behaves as before it existed, leaves the hashes of earlier configs (study cache keys) unchanged."""
    skipped, legacy = set(ignore), legacy or {}
    values = {k: v for k, v in flatten(config).items()
              if k not in skipped and not (k in legacy and legacy[k] == v)}
    text = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_resume_compatible(saved: Mapping[str, Any], current: Mapping[str, Any],
                            allowed: Iterable[str] = (), legacy: Mapping[str, Any] | None = None) -> None:
    """Refuse to resume with a config that differs in anything but the `allowed` keys; a `legacy` key that
    the saved config lacks (it predates the setting) matches when the current value is its legacy value."""
    free, legacy = set(allowed), legacy or {}
    a, b = flatten(current_form(dict(saved))), flatten(current)  # a config saved before a section was renamed
    a.update({k: v for k, v in legacy.items() if k not in a})
    if "device" in a and "device" in b:  # `auto` is the device it picks here: `cpu` resumes with `auto` on a CPU
        a["device"], b["device"] = _picked(a["device"]), _picked(b["device"])
    differing = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in free]
    if differing:
        details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in differing[:6])
        raise ValueError(f"--resume with a different config ({details}); resume with the original settings")


def _picked(device: Any) -> Any:
    """A device setting as the device it names on this machine (`auto`: cuda where there is one, else cpu)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save through a temporary file and a rename: a kill never leaves half a checkpoint."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by save_checkpoint (tensors and plain containers only, never arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise ValueError(f"{path}: not a readable ssdd checkpoint ({type(exc).__name__}); "
                         f"start a fresh run in another out_dir") from None


# ----------------------------------------------------------------------------- what a folder holds
# The kinds of run folder, with the files that say a run of that kind has started or finished there (a fresh run
# of the same kind is refused while they exist) and the file its --resume continues from.
@dataclass(frozen=True)
class RunKind:
    name: str  # "distillation run": what a message calls it
    started: tuple[str, ...] = ()
    resume_from: str | None = None


KINDS: dict[str, RunKind] = {
    "teacher": RunKind("teacher run", (CHECKPOINT,), CHECKPOINT),
    "teacher artifact": RunKind("teacher artifact", ("manifest.json",)),
    "experts": RunKind("expert-trajectories run", (CHECKPOINT, "manifest.json"), CHECKPOINT),
    "distill": RunKind("distilled set or distillation run", (CHECKPOINT, "manifest.json"), CHECKPOINT),
    "evaluate": RunKind("evaluation", ("results.json",)),
    "study": RunKind("study (ssdd reproduce)", ()),
    "export": RunKind("export of a distilled set", ("index.json",)),
    "artifact": RunKind("artifact whose manifest.json cannot be read", ("manifest.json",)),
}
# manifest.json's `kind` -> the run kind (an imported distilled set is a distilled artifact like any other)
_MANIFEST_KINDS = {"ssdd.teacher": "teacher artifact", "ssdd.distilled": "distill", "ssdd.experts": "experts"}
# inputs.json's keys (run.guard.check_inputs) -> the run kind, for a run stopped before it wrote anything else
_INPUT_KINDS = {frozenset({"data"}): "teacher", frozenset({"teacher", "teacher_function", "source"}): "distill",
                frozenset({"teacher_function", "source"}): "experts"}


def _config_kind(config: Any) -> str | None:
    """The command whose config schema holds the most of this config's top-level keys (None if none fits)."""
    from dataclasses import fields

    # the schemas by name, imported when asked: the distill schema imports the methods, and they import run/
    from ssdd.presets import command_schema

    if not isinstance(config, Mapping):
        return None
    keys = set(config)
    kinds = ("teacher", "distill", "experts", "evaluate")
    names = {kind: {f.name for f in fields(command_schema(kind))} for kind in kinds}
    scores = {kind: len(keys & known) - len(keys - known) for kind, known in names.items()}
    best = max(scores.values())
    winners = [kind for kind, score in scores.items() if score == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def run_kind(folder: str | Path) -> str | None:
    """What kind of run a folder holds (a key of KINDS), or None when it holds none (absent, empty, or only
    files no ssdd command writes). Read from the files each command writes, finished or interrupted."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if (folder / "manifest.json").is_file():
        manifest = _json(folder / "manifest.json")
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        return _MANIFEST_KINDS.get(kind, "artifact") if isinstance(kind, str) else "artifact"
    index = _json(folder / "index.json") if (folder / "index.json").is_file() else None
    if isinstance(index, dict) and index.get("kind") == "ssdd.export":
        return "export"
    if (folder / "study.json").is_file() or (folder / "study.yaml").is_file():
        return "study"
    if any((folder / name).exists() for name in ("results.json", "results.set_aside.json", "summary.json")):
        return "evaluate"
    if (folder / "teacher" / "manifest.json").is_file() or (folder / "history.json").is_file():
        return "teacher"
    if (folder / "config.yaml").is_file():
        import yaml

        try:
            kind = _config_kind(yaml.safe_load((folder / "config.yaml").read_text()))
        except (OSError, ValueError, yaml.YAMLError):
            kind = None
        if kind is not None:
            return kind
    inputs = _json(folder / "inputs.json") if (folder / "inputs.json").is_file() else None
    if isinstance(inputs, dict):
        keys = frozenset(k for k in inputs if ":" not in k)  # an evaluation adds source:<split>, target:... keys
        if any(":" in k for k in inputs) or keys == {"teacher", "teacher_function"}:
            return "evaluate"
        if keys in _INPUT_KINDS:
            return _INPUT_KINDS[keys]
    if (folder / CHECKPOINT).is_file():
        return _checkpoint_kind(folder / CHECKPOINT)
    return None


def _checkpoint_kind(path: Path) -> str:
    """The kind of run a checkpoint.pt belongs to, from the config saved in it (mapped, not read whole)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a truncated or foreign file: a run of some kind; its own resume says what is wrong
        return "checkpoint"
    kind = _config_kind(state.get("config")) if isinstance(state, dict) else None
    return kind or "checkpoint"


def describe_kind(kind: str) -> str:
    """'a distillation run', 'an evaluation', ... for messages."""
    name = KINDS[kind].name if kind in KINDS else "run (checkpoint.pt)"
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def claim(out_dir: str | Path, kind: str, resume: bool = False, flag: str | None = "--resume",
          key: str = "out_dir") -> Path:
    """The one check every command makes on its output folder before any work: refuse a folder that holds
    another kind of run (even with `flag`); refuse a fresh run where a run of this kind has started or finished
    (unless `flag`, --resume or --overwrite, is given); refuse --resume where there is nothing to resume.
    Reads only; returns the folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{key}={out_dir}: a file, not a folder; choose another {key}")
    spec = KINDS[kind]
    held = run_kind(out_dir)
    if held == "checkpoint" and spec.resume_from == CHECKPOINT:
        held = kind  # a checkpoint that names no command: its own loading says what is wrong with it
    if held is not None and held != kind:
        raise FileExistsError(f"{key}={out_dir} holds {describe_kind(held)}, not {describe_kind(kind)}; "
                              f"choose another {key} (nothing there was changed)")
    present = [m for m in spec.started if (out_dir / m).exists()]
    if present and not resume:
        # --resume only where it has something to continue from (a finished random set has no checkpoint)
        resumable = flag != "--resume" or not spec.resume_from or (out_dir / spec.resume_from).is_file()
        hint = f"pass {flag} to {'continue' if flag == '--resume' else 'replace'} it or " if flag and resumable else ""
        held_what = "" if resumable else ", with no checkpoint to continue from"
        raise FileExistsError(f"{out_dir} already holds {describe_kind(kind)} ({present[0]}{held_what}); {hint}choose "
                              f"another {key}")
    if resume and spec.resume_from and not (out_dir / spec.resume_from).is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {out_dir / spec.resume_from} (nothing to continue: "
                                f"run again without --resume)")
    return out_dir


def check_writable(out_dir: str | Path, key: str = "out_dir") -> None:
    """out_dir is a folder, or can be created, and can be written."""
    if not str(out_dir):
        raise ConfigError(f"{key} is empty: set {key}=FOLDER")
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={out_dir}: exists and is not a folder; choose another {key}")
    if path.is_dir() and (path.resolve() in (Path(path.resolve().anchor), Path.home()) or (path / ".git").exists()):
        raise ConfigError(f"{key}={out_dir}: a root, home or repository folder, where a run's files would mix with "
                          f"others; choose a folder of its own (e.g. {key}=runs/NAME)")
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={out_dir}: cannot be created, {probe} is a file; choose another {key}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={out_dir}: {probe} is not writable; choose another {key} or fix its permissions")


# ----------------------------------------------------------------------------- one run per folder at a time
_HELD: dict[Path, int] = {}  # folders this process holds: how many of its runs are inside each (nested calls)
_DESCRIPTORS: dict[Path, int] = {}  # the locked descriptor of each folder this process holds (held_descriptor)


def lock_exclusively(handle: Any, busy: str) -> None:
    """Take an advisory lock on an open file or folder (its descriptor or file object), held until it is closed,
    also when the process dies: FileExistsError(`busy`) when another process holds it. A platform or file system
    without such locks holds nothing."""
    try:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no advisory locks on this platform
        return
    except BlockingIOError:
        raise FileExistsError(busy) from None
    except OSError:  # a file system without flock (some network mounts): nothing to hold
        return


@contextmanager
def exclusive(out_dir: str | Path) -> Iterator[Path]:
    """Hold `out_dir` while a run writes into it: a second run there (another command, or the same one with
    --resume) is refused in one line until this one ends, however it ends; two runs would otherwise interleave
    their logs and overwrite each other's files. The folder itself is locked (flock), so nothing is written into
    it; a folder made here and left empty (a run refused before its first file) is removed again. Under torchrun
    rank 0 holds it for the job, and the processes of `ssdd evaluate --processes` run inside their launcher's."""
    folder = Path(out_dir)
    made = not folder.exists()
    if os.environ.get("RANK", "0") != "0":
        yield folder
        return
    check_writable(folder)  # one line for a folder that cannot be made, before making it
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if os.environ.get(LOCKED_BY_PARENT) == str(key) or key in _HELD:
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    try:
        descriptor = os.open(key, os.O_RDONLY)
    except OSError:  # a platform that cannot open a folder (Windows): nothing to hold
        yield folder
        return
    try:
        lock_exclusively(descriptor, f"{folder} is in use by another ssdd run that has not ended (it holds a lock "
                                     f"on the folder); wait for it to end, or choose another out_dir")
        _HELD[key], _DESCRIPTORS[key] = 1, descriptor
        try:
            yield folder
        finally:
            del _HELD[key], _DESCRIPTORS[key]
            if made:
                try:
                    folder.rmdir()  # only when empty: never removes a file
                except OSError:
                    pass
    finally:
        os.close(descriptor)


def held_descriptor(out_dir: str | Path) -> int | None:
    """The locked descriptor of a folder this process holds, for the processes it starts to inherit: the lock
    then lasts while any of them lives (`ssdd evaluate --processes`, even when the launcher itself is killed)."""
    return _DESCRIPTORS.get(Path(out_dir).resolve())


P = ParamSpec("P")
R = TypeVar("R")


def holds_out_dir(run: Callable[P, R]) -> Callable[P, R]:
    """`run(cfg, ...)` (train_teacher, run_distill, ...) inside `exclusive(cfg.out_dir)`."""

    @functools.wraps(run)
    def holding(*args: P.args, **kwargs: P.kwargs) -> R:
        cfg = args[0] if args else kwargs["cfg"]
        with exclusive(cfg.out_dir):  # type: ignore[attr-defined]
            return run(*args, **kwargs)

    return holding


# folders whose every file belongs to the artifact (its manifest or index lists them): nothing is written below them
_ARTIFACT_KINDS = {"teacher artifact", "experts", "distill", "export", "artifact"}


def claim_output(out_dir: str | Path, own: Iterable[str | Path] = (), key: str = "--out") -> Path:
    """The check a command that writes files but no run (ssdd report, ssdd show) makes on its output folder
    before any work: refuse a folder that holds a run of any kind, unless it is one of `own` (the run these files
    belong to, e.g. an evaluation's own report), and a folder inside an artifact. Reads only; returns the folder."""
    out_dir = Path(out_dir)
    held = run_kind(out_dir)
    target = out_dir.resolve()
    if held is not None and not any(Path(o).resolve() == target for o in own):
        raise FileExistsError(f"{key} {out_dir} holds {describe_kind(held)}, whose folder is not this command's to "
                              f"write into; choose another {key} (nothing there was changed)")
    for above in target.parents:
        if (above / "manifest.json").is_file() or (above / "index.json").is_file():
            kind = run_kind(above)
            if kind in _ARTIFACT_KINDS:
                raise FileExistsError(f"{key} {out_dir} is inside {describe_kind(kind)} ({above}); choose "
                                      f"another {key} outside it (nothing there was changed)")
    return out_dir
