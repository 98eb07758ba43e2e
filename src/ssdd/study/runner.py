"""Run a study stage by stage, each cached under a folder named by the hash of what it depends on.

A stage's key is the SHA-256 of its resolved config (without the settings that do not change its result:
output folder, pause points, logging cadence), the keys or fingerprints of the stages it reads, and the
ssdd version. Its folder is `<out_dir>/<stage>/<name>-<key[:8]>` and holds `stage.json` once finished.
So a rerun skips finished stages, a changed value gives new folders for exactly the stages downstream of
it (the old ones stay, nothing is overwritten), and an interrupted stage continues from its checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssdd import __version__
from ssdd.config import PATHLESS_SOURCES, config_to_dict, load_config, save_config, saved_form, saved_name
from ssdd.distill.config import LEGACY_VALUES as DISTILL_LEGACY_VALUES
from ssdd.distill.keys import method_free_keys
from ssdd.distill.registry import find_method
from ssdd.evaluation.config import LEGACY_VALUES as EVALUATE_LEGACY_VALUES
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.validate import SAVED_CELLS
from ssdd.run.folder import CHECKPOINT, claim, config_hash, lock_exclusively
from ssdd.run.runtime import file_sha256, versions, write_json
from ssdd.study.config import DistillSpec, StudyConfig

DONE = "stage.json"
LOCK = ".study.lock"  # held while a study runs in its out_dir
# settings that never change what a stage computes (left out of its key)
NOT_HASHED = {
    "teacher": ("out_dir", "stop_after_epochs", "stop_after_minutes", "tensorboard", "tensorboard_every", "probe_every",
                "fast", "compile"),
    "experts": ("out_dir", "stop_after_experts", "stop_after_minutes", "tensorboard", "teacher"),
    "distill": ("out_dir", "stop_after_steps", "stop_after_minutes", "checkpoint_every", "log_every", "teacher",
                "outer.split_support", "outer.channels_last", "outer.fast", "outer.teacher_cache", "outer.compile",
                "tensorboard", "mkdt.experts", "mkdt.recompute"),
    "evaluate": ("out_dir", "teacher", "distilled", "tensorboard", "reuse", "channels_last", "compile",
                 "checkpoint_minutes"),
}  # `teacher`, `distilled` and `mkdt.experts` are paths: the keys or fingerprints of what they hold stand in;
# `reuse` names other evaluations whose cells, measured the same way, are taken instead of measured again
# settings added later, at the value that behaves as before them: left out of the key (old stages stay cached)
LEGACY_VALUES = {"evaluate": EVALUATE_LEGACY_VALUES, "distill": DISTILL_LEGACY_VALUES}


@dataclass
class StageRun:
    kind: str
    name: str
    folder: str
    key: str
    status: str  # cached | ran | resumed | paused
    seconds: float = 0.0  # this invocation's time on the stage (0 when cached)
    # a cached stage: the time of the invocation that finished it (its stage.json), so a rerun keeps the cost
    finished_in_seconds: float | None = None


@dataclass
class StudyResult:
    out_dir: Path
    finished: bool
    teacher: Path | None = None
    experts: Path | None = None
    distilled: list[Path] = field(default_factory=list)
    evaluation: Path | None = None
    report: list[Path] = field(default_factory=list)
    stages: list[StageRun] = field(default_factory=list)


_FILE_SHA: dict[tuple[str, int, int], str] = {}


def _file_fingerprint(path: Path) -> str:
    """SHA-256 (16 hex digits) of a data file, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _FILE_SHA:
        _FILE_SHA[memo] = file_sha256(path)[:16]
    return _FILE_SHA[memo]


def _data_fingerprints(config: dict[str, Any]) -> dict[str, str]:
    """Content fingerprints of the data files a stage reads (keys ending in `path`; lists such as targets). A data
    config whose `source` reads no file at `path` (digits) has none: its key must not depend on whether an
    unrelated file happens to lie at the default path."""
    found: dict[str, str] = {}

    def visit(value: Any, where: str) -> None:
        if isinstance(value, dict):
            unread = value.get("source") in PATHLESS_SOURCES
            for k, v in value.items():
                if not (unread and k == "path"):
                    visit(v, f"{where}.{k}" if where else k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                visit(v, f"{where}[{i}]")
        elif where.endswith("path") and isinstance(value, str) and value and Path(value).is_file():
            found[where] = _file_fingerprint(Path(value))

    visit(config, "")
    return found


def stage_key(kind: str, cfg: Any, upstream: list[str]) -> str:
    """The stage's cache key: its results-relevant settings, the content of its data files, what it reads. The
    config is hashed in the section names it was first saved with (`krr` for today's `outer`: config.saved_form),
    so that a renamed section keeps every stage's key."""
    config = config_to_dict(cfg)
    free = [*NOT_HASHED[kind], *(method_free_keys(config) if kind == "distill" else ())]
    # (distill: another method's options change nothing, and keys stay as before MKDT existed)
    ignored = [f"config.{saved_name(k)}" for k in free]
    legacy = {f"config.{saved_name(k)}": v for k, v in LEGACY_VALUES.get(kind, {}).items()}
    hashed = {"config": saved_form(config), "data": _data_fingerprints(config), "upstream": upstream,
              "ssdd": __version__}
    method = find_method(config.get("method")) if kind == "distill" else None
    if method is not None and method.version:  # a plugin's code (ssdd's methods go by ssdd's version)
        hashed["method_version"] = method.version
    return config_hash(hashed, ignored, legacy)


def _finished(folder: Path, key: str) -> dict[str, Any] | None:
    """The stage.json of a stage finished under `key`, or None."""
    marker = folder / DONE
    if not marker.is_file():
        return None
    try:
        done = json.loads(marker.read_text())
    except ValueError:
        return None
    return done if isinstance(done, dict) and done.get("key") == key else None


def _run_stage(kind: str, name: str, cfg: Any, upstream: list[str], root: Path,
               run: Callable[[Any, bool], bool], say: Callable[[str], None], dry_run: bool = False) -> StageRun:
    """Run one stage (or find it cached); `run(cfg, resume)` returns False when the stage paused."""
    key = stage_key(kind, cfg, upstream)
    folder = root / kind / f"{name}-{key[:8]}"
    cfg.out_dir = str(folder)
    if (marker := _finished(folder, key)) is not None:
        say(f"{kind} {name}: cached in {folder}")
        return StageRun(kind, name, str(folder), key, "cached", finished_in_seconds=marker.get("seconds"))
    # an evaluation resumes from its results, or from the cells and pre-training states it saved before them
    resume = (folder / CHECKPOINT).exists() or (kind == "evaluate" and (
        (folder / "results.json").exists() or any((folder / SAVED_CELLS).glob("[!.]*"))))
    if dry_run:
        status = "would resume" if resume else "would run"
        say(f"{kind} {name}: {status} in {folder}")
        return StageRun(kind, name, str(folder), key, status)
    if folder.exists() and not resume:
        shutil.rmtree(folder)  # this study's own folder for this key, interrupted before its first checkpoint
    say(f"{kind} {name}: {'resuming' if resume else 'running'} in {folder}")
    start = time.perf_counter()
    done = run(cfg, resume)
    seconds = time.perf_counter() - start
    if not done:
        return StageRun(kind, name, str(folder), key, "paused", seconds)
    write_json(folder / DONE, {"kind": kind, "name": name, "key": key, "upstream": upstream, "seconds": seconds,
                               "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "ssdd": __version__})
    return StageRun(kind, name, str(folder), key, "resumed" if resume else "ran", seconds)


def _teacher_fingerprint(path: Path) -> str:
    from ssdd.artifacts.integrity import verify_teacher_manifest
    from ssdd.teacher.locate import require_teacher_folder

    folder = require_teacher_folder(str(path))
    manifest = json.loads((folder / "manifest.json").read_text())
    return verify_teacher_manifest(folder, manifest)  # shards and the fields that define the function


def _set_fingerprint(folder: Path) -> str:
    """Shard checksums of a distilled set the evaluate preset names (empty when it cannot be read)."""
    from ssdd.distill.artifact import set_fingerprint

    try:
        return set_fingerprint(json.loads((folder / "manifest.json").read_text()))
    except (OSError, ValueError):
        return ""


def _experts_fingerprint(folder: Path) -> str:
    """The expert files' checksums of an experts folder a distill preset names (empty when unreadable)."""
    try:
        experts = json.loads((folder / "manifest.json").read_text()).get("experts", [])
        return "+".join(str(e.get("sha256", ""))[:12] for e in experts)
    except (OSError, ValueError, AttributeError):
        return ""


def other_evaluations(root: Path, own: Path) -> list[str]:
    """The evaluation folders under out_dir/evaluate with results, but `own`: the studies sharing out_dir take
    each other's cells measured the same way (EvaluateConfig.reuse; not part of the key)."""
    folders = sorted(p.parent for p in (root / "evaluate").glob("*/results.json"))
    return [str(p) for p in folders if p.resolve() != own.resolve()]


def study_evaluation_config(study: StudyConfig, teacher: Path, distilled: list[Path]) -> EvaluateConfig:
    """The settings of a study's evaluation stage: its preset and overrides with the study's seed and device,
    the teacher it made or was given, and the sets it distilled after those the preset names."""
    cfg = load_config(EvaluateConfig, study.evaluate.config,
                      [f"seed={study.seed}", f"device={study.device}", *study.evaluate.overrides])
    cfg.teacher = str(teacher)
    cfg.distilled = [*cfg.distilled, *(str(p) for p in distilled)]
    return cfg


def _distill_jobs(study: StudyConfig) -> list[tuple[DistillSpec, float | None]]:
    jobs = [(spec, float(b)) for spec in study.distill for b in spec.budgets]
    jobs += [(spec, None) for spec in study.distill if not spec.budgets]
    return jobs


def _require_packages(study: StudyConfig, common: list[str]) -> None:
    """Fail before the first stage when a stage asks for TensorBoard and the package is missing."""
    from ssdd.distill.config import DistillConfig
    from ssdd.run.tblog import require_tensorboard
    from ssdd.teacher.config import TeacherConfig

    configs: list[Any] = []
    if not study.teacher.path and study.teacher.config:
        configs.append(load_config(TeacherConfig, study.teacher.config, [*common, *study.teacher.overrides]))
    if study.experts.config:
        from ssdd.experts.config import ExpertsConfig

        configs.append(load_config(ExpertsConfig, study.experts.config, [*common, *study.experts.overrides]))
    configs += [load_config(DistillConfig, spec.config or None, [*common, *spec.overrides]) for spec in study.distill]
    if study.evaluate.config:
        configs.append(load_config(EvaluateConfig, study.evaluate.config, [*common, *study.evaluate.overrides]))
    require_tensorboard(any(cfg.tensorboard for cfg in configs))


def run_study(study: StudyConfig, show_progress: bool = True, dry_run: bool = False) -> StudyResult:
    """Teacher -> every distilled set -> evaluation -> report; stops early (resumable) when a stage pauses.

    With `dry_run`, nothing runs: every stage says whether it is cached, would resume or would run. Only one
    study at a time runs in an out_dir (a second one is refused while the first holds its lock)."""
    if not study.distill and not study.evaluate.config:
        raise ValueError("a study needs at least one `distill` entry or an `evaluate` stage")
    if not dry_run and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a dry run only reads
        raise ValueError("ssdd reproduce runs in one process: start it with plain `ssdd`, or run the stages "
                         "themselves under torchrun (ssdd teacher / distill / evaluate)")
    from ssdd.study.validate import validate_study

    validate_study(study, dry_run)  # every stage's settings and data, before the first stage runs
    root = Path(study.out_dir)
    for folder in {root, summary_dir(study)}:
        claim(folder, "study")  # never another command's run folder
    if dry_run:
        return _run_study(study, root, show_progress, dry_run)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root):
        return _run_study(study, root, show_progress, dry_run)


def _note_replaced_study(study: StudyConfig) -> None:
    """One line when an unnamed study's out_dir holds the files (study.yaml, study.json, report) of a study with
    another config, which this run replaces: a study sharing an out_dir with another (such as the demo's). A
    named study's folder is its own."""
    import yaml

    if study.name:
        return
    saved = summary_dir(study) / "study.yaml"
    try:
        before = yaml.safe_load(saved.read_text())
    except (OSError, yaml.YAMLError):
        return
    if before != config_to_dict(study):
        print(f"[study] {summary_dir(study)} holds the study.yaml, study.json and report of a study with another "
              f"config: this one replaces them (a study with a `name` writes its own to {summary_dir(study)}/<name>/)",
              flush=True)


def study_evaluation(folder: Path) -> Path | None:
    """The evaluation folder the study.json in `folder` names (`ssdd report` of a study's folder), or None when
    it holds no study.json or that names no evaluation yet. study.json spells it as the study's command did
    (relative to where it ran): it is looked for under the study's out_dir first (`folder`, or its parent for a
    named study) by its last two parts (OUT/evaluate/<stage>), so a copied or moved study finds its own, then as
    spelled."""
    try:
        saved = json.loads((Path(folder) / "study.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or not saved.get("evaluation"):
        return None
    path = Path(saved["evaluation"])
    for base in (Path(folder), Path(folder).parent):
        candidate = base.joinpath(*path.parts[-2:])
        if len(path.parts) >= 2 and candidate.is_dir():
            return candidate
    return path


def nothing_to_report(folder: Path) -> str:
    """Why a study's folder has no evaluation for `ssdd report` (its study.json names none), and what to do."""
    try:
        saved = json.loads((Path(folder) / "study.json").read_text())
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict):
        return (f"{folder} holds a study that has not finished (no study.json yet): run its `ssdd reproduce` again "
                f"to finish it (`ssdd report` on its evaluation stage's folder, OUT/evaluate/evaluate-<key>, reports "
                f"the cells finished so far)")
    if not saved.get("finished"):
        return f"{folder} holds a study paused before its evaluation: run its `ssdd reproduce` again to go on"
    return (f"{folder} holds a finished study without an evaluation stage: nothing to report (a study evaluates "
            f"its sets when it has `evaluate: {{config: PRESET}}`)")


def summary_dir(study: StudyConfig) -> Path:
    """Where a study's own files go (study.yaml, study.json, the report): out_dir, or out_dir/<name> when
    several named studies share out_dir's cached stages."""
    return Path(study.out_dir) / study.name if study.name else Path(study.out_dir)


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """Hold `root/.study.lock` while the study runs: a second `ssdd reproduce` on the same out_dir would
    otherwise delete (no checkpoint yet) or resume (a checkpoint) the stage folder the first one is writing."""
    with open(root / LOCK, "a") as handle:  # closing the file releases the lock, also when the process dies
        lock_exclusively(handle, f"{root} is in use by another `ssdd reproduce` (it holds {root / LOCK}); wait "
                                 f"for it to finish or choose another out_dir")
        yield


def _run_study(study: StudyConfig, root: Path, show_progress: bool, dry_run: bool) -> StudyResult:
    from ssdd.distill.config import DistillConfig
    from ssdd.distill.registry import get_method
    from ssdd.distill.run import run_distill
    from ssdd.evaluation.protocol import run_evaluate
    from ssdd.teacher.config import TeacherConfig
    from ssdd.teacher.train import train_teacher

    if not dry_run:
        summary_dir(study).mkdir(parents=True, exist_ok=True)
        _note_replaced_study(study)
        save_config(study, summary_dir(study) / "study.yaml")
    common = [f"seed={study.seed}", f"device={study.device}"]
    if not dry_run:
        _require_packages(study, common)
    result = StudyResult(root, finished=False)

    def say(text: str) -> None:
        print(f"[study] {text}", flush=True)

    def record() -> None:
        write_json(summary_dir(study) / "study.json", {
            "finished": result.finished, "teacher": str(result.teacher) if result.teacher else None,
            "experts": str(result.experts) if result.experts else None,
            "distilled": [str(p) for p in result.distilled],
            "evaluation": str(result.evaluation) if result.evaluation else None,
            "report": [str(p) for p in result.report],
            "stages": [vars(s) for s in result.stages], "versions": versions()})

    def stopped(stage: StageRun) -> StudyResult:
        say(f"{stage.kind} {stage.name} paused; run the same command again to continue")
        record()
        return result

    # 1. teacher: an existing artifact, or trained by this study
    if study.teacher.path:
        result.teacher = Path(study.teacher.path)
        teacher_upstream = [f"teacher:{_teacher_fingerprint(result.teacher)}"]
        say(f"teacher: given, {result.teacher}")
    else:
        if not study.teacher.config:
            raise ValueError("the study has no teacher: set teacher.path=PATH (an ssdd teacher folder) or "
                             "teacher.config=PRESET to train one")
        cfg = load_config(TeacherConfig, study.teacher.config, [*common, *study.teacher.overrides])
        stage = _run_stage("teacher", "teacher", cfg, [], root,
                           lambda c, r: train_teacher(c, resume=r, show_progress=show_progress) is not None, say,
                           dry_run)
        result.stages.append(stage)
        if stage.status == "paused":
            return stopped(stage)
        result.teacher = Path(stage.folder) / "teacher"
        teacher_upstream = [f"teacher:{stage.key}"]

    # 1b. MKDT's expert trajectories, when the study trains them
    experts_upstream: list[str] = []
    if study.experts.config:
        from ssdd.experts.config import ExpertsConfig
        from ssdd.experts.train import train_experts

        cfg = load_config(ExpertsConfig, study.experts.config, [*common, *study.experts.overrides])
        cfg.teacher = str(result.teacher)
        stage = _run_stage("experts", "experts", cfg, teacher_upstream, root,
                           lambda c, r: train_experts(c, resume=r, show_progress=show_progress) is not None, say,
                           dry_run)
        result.stages.append(stage)
        if stage.status == "paused":
            return stopped(stage)
        result.experts = Path(stage.folder)
        experts_upstream = [f"experts:{stage.key}"]

    # 2. distilled sets, one per entry and budget
    for spec, budget in _distill_jobs(study):
        extra = [f"budget={budget!r}"] if budget is not None else []
        extra += [f"name={spec.name}"] if spec.name else []
        cfg = load_config(DistillConfig, spec.config or None, [*common, *spec.overrides, *extra])
        cfg.teacher = str(result.teacher)
        upstream = list(teacher_upstream)
        if get_method(cfg.method).needs_experts:
            if result.experts is not None:
                cfg.mkdt.experts = str(result.experts)
                upstream += experts_upstream
            else:
                upstream += [f"experts:{_experts_fingerprint(Path(cfg.mkdt.experts))}"]
        name = f"{spec.name or cfg.method}_n{cfg.budget:g}"
        stage = _run_stage("distill", name, cfg, upstream, root,
                           lambda c, r: run_distill(c, resume=r, show_progress=show_progress) is not None, say,
                           dry_run)
        result.stages.append(stage)
        if stage.status == "paused":
            return stopped(stage)
        result.distilled.append(Path(stage.folder))

    # 3. evaluation of every set, 4. the report
    if study.evaluate.config:
        assert result.teacher is not None
        cfg = study_evaluation_config(study, result.teacher, result.distilled)
        named = cfg.distilled[: len(cfg.distilled) - len(result.distilled)]  # the sets the evaluate preset names
        given = [f"set:{p}:{_set_fingerprint(Path(p))}" for p in named]
        upstream = teacher_upstream + given + [s.key for s in result.stages if s.kind == "distill"]

        def evaluate(c: Any, resume: bool) -> bool:
            c.reuse = [*c.reuse, *(p for p in other_evaluations(root, Path(c.out_dir)) if p not in c.reuse)]
            run_evaluate(c, show_progress=show_progress, resume=resume)
            return True

        stage = _run_stage("evaluate", "evaluate", cfg, upstream, root, evaluate, say, dry_run)
        result.stages.append(stage)
        result.evaluation = Path(stage.folder)
        if study.report and not dry_run:
            from ssdd.report import build_report

            # every set the evaluation scored: those its preset names and those this study distilled
            built = build_report(result.evaluation, out_dir=summary_dir(study), teacher=result.teacher,
                                 distilled=[Path(d) for d in cfg.distilled])
            result.report = [Path(p) for p in built]
            say(f"report: {', '.join(str(p) for p in result.report)}")
    if dry_run:
        return result
    result.finished = True
    record()
    return result
