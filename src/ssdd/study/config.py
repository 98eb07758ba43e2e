"""Schema of a study: which teacher, which distilled sets at which budgets, which evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageSpec:
    """One stage: a preset name or YAML path, then key=value overrides (as on the command line)."""

    config: str = ""
    overrides: list[str] = field(default_factory=list)


@dataclass
class TeacherSpec(StageSpec):
    path: str = ""  # an existing teacher artifact (trained or imported): no teacher stage is run


@dataclass
class DistillSpec(StageSpec):
    name: str = ""  # label of the set (reports show name@budget); default: the method
    budgets: list[float] = field(default_factory=list)  # one distilled set per budget; empty: the preset's


@dataclass
class StudyConfig:
    out_dir: str = "runs/study"
    # several studies may share one out_dir (and so its cached teacher and sets); each names itself, and its
    # study.yaml, study.json and report then go to out_dir/<name>/ instead of out_dir/
    name: str = ""
    seed: int = 0  # given to every stage (a stage's own overrides may still set it)
    device: str = "auto"
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    # MKDT's expert trajectories (`ssdd experts`), trained once with the teacher and given to every mkdt set;
    # without it, each mkdt set reads the folder its own mkdt.experts names
    experts: StageSpec = field(default_factory=StageSpec)
    distill: list[DistillSpec] = field(default_factory=list)
    evaluate: StageSpec = field(default_factory=StageSpec)
    report: bool = True  # report.md and report.html at the end
