"""Everything a report shows, read from an evaluation folder (results.json, config.yaml, summary.json) and
from the teacher and distilled folders it names (or the ones given explicitly). Nothing is measured here."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ssdd.artifacts.files import ArtifactError, read_manifest
from ssdd.config import DataConfig
from ssdd.data import dataset_name
from ssdd.evaluation.protocol import source_label
from ssdd.evaluation.references import (
    FULL_DATA,
    FULL_DATA_METHODS,
    FULL_DATA_SAME_RECIPE,
    NO_PRETRAIN,
    REFERENCE_METHODS,
    retention_reference,
)
from ssdd.evaluation.report import read_results, summarize, with_arch_labels

# how the report names the reference rows (tables, figures, text)
REFERENCE_NAMES = {NO_PRETRAIN: "no pre-training", FULL_DATA_SAME_RECIPE: "full data, distilled rows' recipe",
                   FULL_DATA: "full data, tuned recipe"}


@dataclass
class TeacherInfo:
    named: str | None  # the folder given or named in config.yaml
    path: Path | None  # the folder read; None when missing
    manifest: dict[str, Any] | None
    history: list[dict[str, Any]] | None  # history.json (per epoch) beside or above the artifact
    mismatch: str | None = None  # why the folder read may not be the one the evaluation used (its fingerprint)


@dataclass
class DistilledInfo:
    label: str  # the label of its rows in results.json
    named: str | None
    path: Path | None
    manifest: dict[str, Any] | None
    metrics: list[dict[str, Any]]  # metrics.jsonl of the distillation run
    rows: list[dict[str, Any]]  # its results.json rows
    mismatch: str | None = None  # why the folder read may not be the one the evaluation used (its fingerprint)


@dataclass
class ReportData:
    eval_dir: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    config: dict[str, Any]
    versions: dict[str, Any] | None
    teacher: TeacherInfo
    distilled: list[DistilledInfo]
    notes: list[str] = field(default_factory=list)  # missing folders, mismatches: printed at the top

    def summary_of(self, label: str) -> list[dict[str, Any]]:
        return [s for s in self.summary if s["label"] == label]

    def reference(self, method: str | None, arch: str, target: str, mode: str) -> dict[str, Any] | None:
        return next((s for s in self.summary if s["method"] == method and (s["arch"], s["target"], s["mode"])
                     == (arch, target, mode)), None)

    @property
    def full_data_labels(self) -> list[str]:
        """The full-data rows of this evaluation, the retention denominator first."""
        present = {s["label"] for s in self.summary}
        return [label for label in FULL_DATA_METHODS if label in present]

    @property
    def retention_label(self) -> str | None:
        """The full-data row retention and the speed-up divide by (ssdd.evaluation.references)."""
        return retention_reference(s["label"] for s in self.summary)

    @property
    def panels(self) -> list[tuple[str, str, str]]:
        """(arch, target, mode) in the order config.yaml names the models, targets and modes; what it does not
        name follows, in the order first seen in the summary (which sorts architectures by name)."""
        seen = list(dict.fromkeys((s["arch"], s["target"], s["mode"]) for s in self.summary))
        entries = {key: [e for e in self.config.get(key) or [] if isinstance(e, dict)] for key in ("models", "targets")}
        fields = {f.name for f in dataclasses.fields(DataConfig)}
        named = [[e.get("name") for e in entries["models"]],
                 [dataset_name(DataConfig(**{k: v for k, v in e.items() if k in fields})) for e in entries["targets"]],
                 list(self.config.get("modes") or [])]

        def rank(panel: tuple[str, str, str]) -> tuple[int, ...]:
            return tuple(names.index(v) if v in names else len(names) for names, v in zip(named, panel, strict=True))

        return sorted(seen, key=rank)


def _normal(path: Path) -> Path:
    """The path made absolute with `..` and `.` removed (x/../y -> y), without following links."""
    return Path(os.path.normpath(path.absolute()))


def _candidates(named: str | Path, eval_dir: Path) -> list[Path]:
    """Where a folder named in an evaluation's config may be: as named (absolute, or relative to the working
    directory the evaluation ran in, which may not be this one), relative to the evaluation folder, and the
    named path's tails (longest first) below the evaluation folder and each folder above it: a study's
    `runs/demo/teacher/teacher-<key>/teacher` is `<study>/teacher/teacher-<key>/teacher` wherever the study
    now is and whichever folder the report is built from. Nearest first: those below a closer folder above the
    evaluation come before those below farther ones (a copied study finds its own folders, not the original's),
    in the order just given among equally near ones. Each once, normalised (no `x/../y`), relative to the working
    directory when inside it."""
    path = Path(named)
    here = _normal(eval_dir)
    found = [path, *([eval_dir / path] if not path.is_absolute() else [])]
    parts = path.parts[1:] if path.is_absolute() else path.parts  # every tail (an absolute path's below the root)
    found += [above / Path(*parts[i:]) for i in range(len(parts)) for above in (here, *here.parents)]
    levels = (here, *here.parents)

    def distance(candidate: Path) -> int:  # how far above the evaluation the nearest folder holding it is
        return next((n for n, above in enumerate(levels) if candidate.is_relative_to(above)), len(levels))

    unique = sorted(dict.fromkeys(_normal(c) for c in found), key=distance)
    work = Path.cwd()
    return [c.relative_to(work) if c.is_relative_to(work) and c != work else c for c in unique]


def resolve_folder(named: str | Path, eval_dir: Path,
                   matches: Callable[[dict[str, Any]], bool] | None = None) -> tuple[Path | None, bool]:
    """The folder an evaluation named (see _candidates) and whether it is the one the evaluation recorded: the
    first holding a manifest that `matches` (the fingerprints the evaluation recorded), else the first holding a
    manifest at all with False (the caller says that the fingerprint does not match); (None, False) when none
    does. Without `matches` (nothing recorded), the first holding a manifest, with True."""
    first = None
    for candidate in _candidates(named, eval_dir):
        if not (candidate / "manifest.json").is_file():
            continue
        if matches is None:
            return candidate, True
        first = first or candidate
        try:
            if matches(json.loads((candidate / "manifest.json").read_text())):
                return candidate, True
        except (OSError, ValueError, AttributeError):
            continue
    return first, False


def explicit_folder(path: str | Path, kind: str, flag: str) -> Path:
    """A folder the user named on the command line (--teacher, --distilled): it must exist and hold `kind`
    (ssdd.run.folder.run_kind), else ValueError / FileNotFoundError naming the flag."""
    from ssdd.run.folder import describe_kind, run_kind

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag} {path}: no such folder")
    held = run_kind(folder)
    if held != kind:
        what = describe_kind(held) if held else "no ssdd run"
        hint = f" (its artifact is {folder / 'teacher'})" if held == "teacher" else ""
        raise ValueError(f"{flag} {path} holds {what}{hint}, not {describe_kind(kind)}")
    return Path(os.path.normpath(folder))


def _recorded_value(eval_dir: Path) -> str | None:
    """The teacher fingerprint the evaluation recorded (inputs.json)."""
    try:
        return json.loads((eval_dir / "inputs.json").read_text()).get("teacher") or None
    except (OSError, ValueError, AttributeError):
        return None


def _recorded_teacher(eval_dir: Path) -> Callable[[dict[str, Any]], bool] | None:
    """The teacher fingerprint the evaluation recorded (inputs.json), as a test on a manifest."""
    expected = _recorded_value(eval_dir)
    return (lambda manifest: manifest.get("fingerprint") == expected) if expected else None


def _recorded_sets(rows: list[dict[str, Any]]) -> Callable[[dict[str, Any]], bool] | None:
    """The distilled sets' fingerprints the rows record, as a test on a manifest."""
    from ssdd.distill.artifact import set_fingerprint

    expected = {r.get("set_fingerprint") for r in rows} - {None, ""}
    return (lambda manifest: set_fingerprint(manifest) in expected) if expected else None


def _read_json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_teacher(named: str | Path | None, eval_dir: Path, notes: list[str], explicit: bool = False) -> TeacherInfo:
    """The teacher folder given (`explicit`: it must be a teacher artifact) or named in config.yaml (found as
    _candidates says; what is missing or does not match the recorded fingerprint becomes a note)."""
    if named is None:
        notes.append("no teacher folder named (config.yaml missing or without `teacher`): the teacher card shows "
                     "only what the distilled sets' manifests record (pass the folder with --teacher)")
        return TeacherInfo(None, None, None, None)
    mismatch = None
    if explicit:
        path: Path | None = explicit_folder(named, "teacher artifact", "--teacher")
    else:
        path, matched = resolve_folder(named, eval_dir, _recorded_teacher(eval_dir))
        if path is not None and not matched:
            mismatch = (f"its fingerprint is not the one the evaluation recorded ({_recorded_value(eval_dir)}): "
                        "it may be another teacher")
            notes.append(f"teacher folder `{named}` read from `{path}`, but {mismatch} (pass the folder with "
                         "--teacher)")
    if path is None:
        notes.append(f"teacher folder `{named}` not found: its card shows only what the distilled sets' "
                     "manifests record (pass the folder with --teacher)")
        return TeacherInfo(str(named), None, None, None)
    try:
        manifest = read_manifest(path, "ssdd.teacher")
    except ArtifactError as exc:
        if explicit:
            raise ValueError(f"--teacher {named}: {exc}") from None
        notes.append(f"teacher folder `{named}` unreadable: {exc}")
        return TeacherInfo(str(named), None, None, None)
    history = None
    for candidate in (path / "history.json", path.parent / "history.json"):
        if candidate.is_file():
            history = json.loads(candidate.read_text())
            break
    return TeacherInfo(str(named), path, manifest, history, mismatch)


def read_distilled(named: list[str | Path], eval_dir: Path, rows: list[dict[str, Any]],
                   notes: list[str], explicit: bool = False) -> list[DistilledInfo]:
    """One entry per distilled label of results.json, with its folder when found: the folders' order as named
    (the study's or the user's), then labels without a folder in the order of their rows (in files written
    before rows were kept in cell order, cells reused from other evaluations come first, so the rows' order
    alone may mix the sets). `explicit` folders (--distilled) must be distilled sets; those config.yaml names
    are found as _candidates says, and one whose set fingerprint no row records gets a note."""
    labels = list(dict.fromkeys(r["label"] for r in rows if r["method"] not in REFERENCE_METHODS))
    found: dict[str, tuple[str, Path, dict[str, Any], str | None]] = {}
    unmatched: list[str] = []
    recorded = _recorded_sets(rows)
    for name in named:
        matched = True
        if explicit:
            path: Path | None = explicit_folder(name, "distill", "--distilled")
        else:
            path, matched = resolve_folder(name, eval_dir, recorded)
        if path is None:
            unmatched.append(str(name))
            continue
        try:
            manifest = read_manifest(path, "ssdd.distilled")
        except ArtifactError as exc:
            if explicit:
                raise ValueError(f"--distilled {name}: {exc}") from None
            notes.append(f"distilled folder `{name}` unreadable: {exc}")
            continue
        label = source_label(manifest)
        if label not in labels:
            notes.append(f"distilled folder `{name}` ({label}) has no rows in results.json: left out")
            continue
        mismatch = None
        if not matched:
            mismatch = "its set fingerprint is none the evaluation's rows record: it may be another set"
            notes.append(f"distilled folder `{name}` read from `{path}`, but {mismatch} (pass the folder with "
                         "--distilled)")
        found[label] = (str(name), path, manifest, mismatch)
    infos = []
    for label in [*found, *(label for label in labels if label not in found)]:
        members = [r for r in rows if r["label"] == label]
        if label in found:
            name, path, manifest, mismatch = found[label]
            infos.append(DistilledInfo(label, name, path, manifest, _read_json_lines(path / "metrics.jsonl"), members,
                                       mismatch))
        else:
            infos.append(DistilledInfo(label, None, None, None, [], members))
    missing = [i.label for i in infos if i.path is None]
    if missing:
        where = f" (not found: {', '.join(f'`{u}`' for u in unmatched)})" if unmatched else ""
        notes.append(f"no distilled folder read for {', '.join(missing)}{where}: their cards show only what "
                     "results.json records (pass the folders with --distilled)")
    return infos


def _teacher_mismatch(teacher: TeacherInfo, distilled: list[DistilledInfo]) -> list[str]:
    if teacher.manifest is None or "fingerprint" not in teacher.manifest:
        return []
    return [f"{d.label} was distilled with teacher fingerprint {d.manifest.get('teacher', {}).get('fingerprint')}, "
            f"not {teacher.manifest['fingerprint']} (`{teacher.named}`)" for d in distilled
            if d.manifest is not None and d.manifest.get("teacher", {}).get("fingerprint") not in
            (None, teacher.manifest["fingerprint"])]


def _unfinished(config_path: Path, rows: list[dict[str, Any]]) -> list[str]:
    """A note when results.json holds fewer cells than its config.yaml asks for (an evaluation interrupted, or
    still running): the report is then of those cells only."""
    from ssdd.config import load_config
    from ssdd.evaluation.config import LEGACY_VALUES, EvaluateConfig
    from ssdd.evaluation.launch import cell_count
    from ssdd.evaluation.schedule import row_cell
    from ssdd.run.folder import flatten

    try:
        saved = flatten(yaml.safe_load(config_path.read_text()) or {})
        # a config saved before a setting existed ran as its legacy value (e.g. no same-recipe full-data row)
        before = [f"{key}={json.dumps(value)}" for key, value in LEGACY_VALUES.items() if key not in saved]
        planned = cell_count(load_config(EvaluateConfig, config_path, before))
    except (OSError, ValueError, AttributeError, yaml.YAMLError):  # none, or one this version cannot read
        return []
    done = len({row_cell(row) for row in rows})
    if done >= planned:
        return []
    return [f"unfinished evaluation: {done} of its {planned} cells are in results.json, so every row, mean and "
            f"figure here stands on those alone (`ssdd evaluate --resume` with its config measures the rest)"]


def gather(eval_dir: str | Path, teacher: str | Path | None = None,
           distilled: list[str | Path] | None = None) -> ReportData:
    """Read an evaluation folder; `teacher` and `distilled` (each must exist and be of its kind: ValueError,
    FileNotFoundError) replace the folders its config.yaml names."""
    eval_dir = Path(eval_dir)
    results = eval_dir / "results.json"
    if not results.is_file():
        what = "a file, not a folder" if eval_dir.is_file() else "not found"
        raise FileNotFoundError(f"{results}: no results to report ({what}): `ssdd report` reads the out_dir of "
                                f"`ssdd evaluate`, written once its first cell has finished")
    rows = read_results(results, report=True)
    summary_path = eval_dir / "summary.json"
    saved = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    config_path = eval_dir / "config.yaml"
    notes: list[str] = []
    if config_path.is_file():
        try:
            config = yaml.safe_load(config_path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ValueError(f"{config_path}: not valid YAML ({str(exc).splitlines()[0]}); restore it (the "
                             f"evaluation wrote it) or move it away to report without the protocol settings") from None
        if not isinstance(config, dict) or "targets" not in config or "models" not in config:
            notes.append(f"{config_path} is not an evaluation's config (no targets or models): the protocol settings "
                         f"are unknown")
            config = {}
    else:
        config = saved.get("config") or {}
        if not config:
            notes.append(f"{config_path} not found: the protocol settings are unknown")
    teacher_info = read_teacher(teacher if teacher is not None else (config.get("teacher") or None), eval_dir, notes,
                                explicit=teacher is not None)
    distilled_infos = read_distilled(list(distilled) if distilled is not None else list(config.get("distilled") or []),
                                     eval_dir, rows, notes, explicit=distilled is not None)
    notes.extend(_teacher_mismatch(teacher_info, distilled_infos))
    notes.extend(_unfinished(config_path, rows))
    return ReportData(eval_dir, with_arch_labels(rows), summarize(rows, config), config, saved.get("versions"),
                      teacher_info, distilled_infos, notes)
