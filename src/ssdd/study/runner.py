"""Run a study stage by stage, each cached under a folder named by the hash of what it depends on.

A stage's key is the SHA-256 of its resolved config (without the settings that do not change its result:
output folder, pause points, logging cadence), the keys or fingerprints of the stages it reads, and the
ssdd version. Its folder is `<out_dir>/<stage>/<name>-<key[:8]>` and holds `stage.json` once finished.
So a rerun skips finished stages, a changed value gives new folders for exactly the stages downstream of
it (the old ones stay, nothing is overwritten), and an interrupted stage continues from its checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssdd import __version__
from ssdd.config import config_to_dict, load_config, save_config
from ssdd.runfolder import CHECKPOINT, config_hash
from ssdd.runtime import versions, write_json
from ssdd.study.config import DistillSpec, StudyConfig

DONE = "stage.json"
# settings that never change what a stage computes (left out of its key)
NOT_HASHED = {
    "teacher": ("out_dir", "stop_after_epochs", "tensorboard", "tensorboard_every"),
    "distill": ("out_dir", "stop_after_steps", "checkpoint_every", "log_every", "teacher", "krr.split_support",
                "tensorboard"),
    "evaluate": ("out_dir", "teacher", "distilled", "tensorboard"),
}  # `teacher` and `distilled` are paths: the keys of the stages that wrote them stand in their place


@dataclass
class StageRun:
    kind: str
    name: str
    folder: str
    key: str
    status: str  # cached | ran | resumed | paused
    seconds: float = 0.0


@dataclass
class StudyResult:
    out_dir: Path
    finished: bool
    teacher: Path | None = None
    distilled: list[Path] = field(default_factory=list)
    evaluation: Path | None = None
    report: list[Path] = field(default_factory=list)
    stages: list[StageRun] = field(default_factory=list)


def _key(kind: str, cfg: Any, upstream: list[str]) -> str:
    ignored = [f"config.{k}" for k in NOT_HASHED[kind]]
    return config_hash({"config": config_to_dict(cfg), "upstream": upstream, "ssdd": __version__}, ignored)


def _finished(folder: Path, key: str) -> bool:
    marker = folder / DONE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("key") == key
    except ValueError:
        return False


def _run_stage(kind: str, name: str, cfg: Any, upstream: list[str], root: Path,
               run: Callable[[Any, bool], bool], say: Callable[[str], None], dry_run: bool = False) -> StageRun:
    """Run one stage (or find it cached); `run(cfg, resume)` returns False when the stage paused."""
    key = _key(kind, cfg, upstream)
    folder = root / kind / f"{name}-{key[:8]}"
    cfg.out_dir = str(folder)
    if _finished(folder, key):
        say(f"{kind} {name}: cached in {folder}")
        return StageRun(kind, name, str(folder), key, "cached")
    resume = (folder / CHECKPOINT).exists() or (kind == "evaluate" and (folder / "results.json").exists())
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
    from ssdd.teacher.locate import require_teacher_folder

    require_teacher_folder(str(path))
    return str(json.loads((path / "manifest.json").read_text()).get("fingerprint", ""))


def _distill_jobs(study: StudyConfig) -> list[tuple[DistillSpec, float | None]]:
    jobs = [(spec, float(b)) for spec in study.distill for b in spec.budgets]
    jobs += [(spec, None) for spec in study.distill if not spec.budgets]
    return jobs


def _require_packages(study: StudyConfig, common: list[str]) -> None:
    """Fail before the first stage when a stage asks for TensorBoard and the package is missing."""
    from ssdd.distill.config import DistillConfig
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.tblog import require_tensorboard
    from ssdd.teacher.config import TeacherConfig

    configs: list[Any] = []
    if not study.teacher.path and study.teacher.config:
        configs.append(load_config(TeacherConfig, study.teacher.config, [*common, *study.teacher.overrides]))
    configs += [load_config(DistillConfig, spec.config or None, [*common, *spec.overrides]) for spec in study.distill]
    if study.evaluate.config:
        configs.append(load_config(EvaluateConfig, study.evaluate.config, [*common, *study.evaluate.overrides]))
    require_tensorboard(any(cfg.tensorboard for cfg in configs))


def run_study(study: StudyConfig, show_progress: bool = True, dry_run: bool = False) -> StudyResult:
    """Teacher -> every distilled set -> evaluation -> report; stops early (resumable) when a stage pauses.

    With `dry_run`, nothing runs: every stage says whether it is cached, would resume or would run."""
    from ssdd.distill.config import DistillConfig
    from ssdd.distill.run import run_distill
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.protocol import run_evaluate
    from ssdd.teacher.config import TeacherConfig
    from ssdd.teacher.train import train_teacher

    if not study.distill and not study.evaluate.config:
        raise ValueError("a study needs at least one `distill` entry or an `evaluate` stage")
    from ssdd.validate import validate_study

    validate_study(study)  # every stage's settings and data, before the first stage runs
    root = Path(study.out_dir)
    if not dry_run:
        root.mkdir(parents=True, exist_ok=True)
        save_config(study, root / "study.yaml")
    common = [f"seed={study.seed}", f"device={study.device}"]
    if not dry_run:
        _require_packages(study, common)
    result = StudyResult(root, finished=False)

    def say(text: str) -> None:
        print(f"[study] {text}", flush=True)

    def record() -> None:
        write_json(root / "study.json", {
            "finished": result.finished, "teacher": str(result.teacher) if result.teacher else None,
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

    # 2. distilled sets, one per entry and budget
    for spec, budget in _distill_jobs(study):
        extra = [f"budget={budget:g}"] if budget is not None else []
        extra += [f"name={spec.name}"] if spec.name else []
        cfg = load_config(DistillConfig, spec.config or None, [*common, *spec.overrides, *extra])
        cfg.teacher = str(result.teacher)
        name = f"{spec.name or cfg.method}_n{cfg.budget:g}"
        stage = _run_stage("distill", name, cfg, teacher_upstream, root,
                           lambda c, r: run_distill(c, resume=r, show_progress=show_progress) is not None, say,
                           dry_run)
        result.stages.append(stage)
        if stage.status == "paused":
            return stopped(stage)
        result.distilled.append(Path(stage.folder))

    # 3. evaluation of every set, 4. the report
    if study.evaluate.config:
        cfg = load_config(EvaluateConfig, study.evaluate.config, [*common, *study.evaluate.overrides])
        given = [f"set:{p}" for p in cfg.distilled]  # sets named by the evaluate preset itself
        cfg.teacher = str(result.teacher)
        cfg.distilled = [*cfg.distilled, *(str(p) for p in result.distilled)]
        upstream = teacher_upstream + given + [s.key for s in result.stages if s.kind == "distill"]

        def evaluate(c: Any, resume: bool) -> bool:
            run_evaluate(c, show_progress=show_progress, resume=resume)
            return True

        stage = _run_stage("evaluate", "evaluate", cfg, upstream, root, evaluate, say, dry_run)
        result.stages.append(stage)
        result.evaluation = Path(stage.folder)
        if study.report and not dry_run:
            from ssdd.report import build_report

            result.report = [Path(p) for p in build_report(result.evaluation, out_dir=root, teacher=result.teacher,
                                                            distilled=result.distilled)]
            say(f"report: {', '.join(str(p) for p in result.report)}")
    if dry_run:
        return result
    result.finished = True
    record()
    return result
