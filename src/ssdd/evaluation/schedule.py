"""Scheduling the cells of `ssdd evaluate`: a cell's identity, the rows an earlier run in the same folder
left (--resume, and the set-aside rows of cells this run leaves out), the finished cells other evaluations
measured the same way (`reuse`), the data fingerprints a resume and a reuse compare, and the order in which
processes under torchrun take the pending cells, and the cells those processes save as soon as each is finished.
Nothing here measures; ssdd.evaluation.cell does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ssdd.config import config_to_dict
from ssdd.data import ImageDataset
from ssdd.evaluation.cell import Target
from ssdd.evaluation.config import LEGACY_VALUES, EvaluateConfig
from ssdd.evaluation.report import read_results, write_results
from ssdd.evaluation.validate import SAVED_CELLS, SET_ASIDE
from ssdd.run.folder import check_resume_compatible, config_hash, flatten
from ssdd.run.guard import INPUTS, check_inputs, fingerprinted_paths
from ssdd.run.runtime import atomic_write

# settings a resumed evaluation may change: more seeds or sets (or the same-recipe row) add cells, the others
# keep theirs
RESUMABLE_KEYS = ("out_dir", "distilled", "seeds", "device", "tensorboard", "full_data.same_recipe", "reuse",
                  "channels_last", "compile", "checkpoint_minutes")
# settings that only choose which cells an evaluation has, where it writes and logs, or where and in which
# memory format (or compiled) it computes: two evaluations that differ in nothing else (nor in teacher and data,
# inputs.json) measure every cell they share the same way
CELL_CHOICE_KEYS = ("out_dir", "distilled", "seeds", "models", "targets", "modes", "device", "tensorboard", "reuse",
                    "no_pretrain", "full_data.enabled", "full_data.same_recipe", "channels_last", "compile",
                    "checkpoint_minutes")


def cell_key(label: str, arch: str, width: Any, depth: Any, feature: Any, seed: int, set_fp: Any = None) -> tuple:
    """A cell's identity; `set_fp` (the distilled set's shard checksums) tells apart two sets of one label."""
    return (label, arch, width, depth, feature, seed, set_fp)


def row_cell(row: dict[str, Any]) -> tuple:
    """The identity of the cell a row belongs to."""
    return cell_key(row["label"], row["arch"], row.get("arch_width"), row.get("arch_depth"), row.get("arch_feature"),
                    row["seed"], row.get("set_fingerprint"))


def source_cell(cell: tuple) -> tuple:
    """The identity of a cell (model config, seed, pre-training source) of this evaluation."""
    model_cfg, seed, source = cell
    return cell_key(source.label, model_cfg.name, model_cfg.width, model_cfg.depth, model_cfg.feature, seed,
                    source.info.get("set_fingerprint"))


def dealing_order(numbers: list[int], n_seeds: int, n_sources: int) -> list[int]:
    """The order in which processes under torchrun take the pending cells (numbered from 1 in the evaluation's
    order: network, then seed, then set): network by network, each set's seeds side by side. The seeds of one
    set on one network cost about the same, so the cells of a round end at about the same time; in the
    evaluation's order a round would pair a long cell (full data, Boost's many views) with short ones and the
    other processes would wait for it."""
    def key(number: int) -> tuple[int, int, int]:
        index = number - 1
        return index // (n_seeds * n_sources), index % n_sources, index // n_sources % n_seeds
    return sorted(numbers, key=key)


def previous_rows(out_dir: Path, cfg: EvaluateConfig, resume: bool) -> list[dict[str, Any]]:
    """Rows of an earlier run in out_dir to keep (--resume), after checking it measured the same thing (the
    cells its processes saved, saved_cells, are added by the caller, which knows the evaluation's cells).

    validate_evaluate has refused an artifact folder, and results without --resume, before any work."""
    results = out_dir / "results.json"
    if not resume or not (results.exists() or _saved_cell_files(out_dir)):
        return []
    saved = yaml.safe_load((out_dir / "config.yaml").read_text()) if (out_dir / "config.yaml").exists() else None
    if saved is not None:
        check_resume_compatible(saved, config_to_dict(cfg), (*RESUMABLE_KEYS, *fingerprinted_paths(out_dir)),
                                LEGACY_VALUES)  # a moved teacher: validate_evaluate compared its fingerprints
    rows = read_results(results) if results.exists() else []  # a run stopped in its first round: saved cells only
    measured = {row_cell(row) for row in rows}
    aside = read_results(out_dir / SET_ASIDE) if (out_dir / SET_ASIDE).is_file() else []
    return rows + [row for row in aside if row_cell(row) not in measured]


def set_aside(rows: list[dict[str, Any]], kept: list[dict[str, Any]], out_dir: Path) -> None:
    """Keep the finished rows of earlier runs that this evaluation leaves out (fewer seeds or sets, or another
    set under the same label) in SET_ASIDE, beside the kept ones in results.json: a later resume that asks for
    those cells again takes them back (previous_rows), so no measured cell is lost."""
    path = out_dir / SET_ASIDE
    if rows:  # the set-aside rows first: a stop between the two writes leaves every row in one file or both
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(rows, indent=1) + "\n"))
    write_results(kept, out_dir)
    if rows:
        print(f"resuming: the rows of {len({row_cell(row) for row in rows})} cells of earlier runs are not part "
              f"of this evaluation (other seeds or sets, or rows it no longer has); kept in {path}, and taken back "
              "by a resume that asks for them")
    else:  # every row is back in results.json before the file goes
        path.unlink(missing_ok=True)


def cell_settings(cfg: EvaluateConfig) -> str:
    """The fingerprint of how this evaluation measures a cell: its settings but those a resume may change, and
    the teacher's path (validate_evaluate compares the teacher by its fingerprints on every resume)."""
    return config_hash(config_to_dict(cfg), (*RESUMABLE_KEYS, "teacher"), LEGACY_VALUES)


def saved_cell_path(out_dir: Path, cell: tuple, settings: str) -> Path:
    """The file in out_dir/cells of one cell measured with `settings` (cell_settings): named by both, so no
    other cell, and no cell measured otherwise, has its name."""
    name = hashlib.sha256(json.dumps([list(cell), settings], default=str).encode()).hexdigest()[:20]
    return out_dir / SAVED_CELLS / f"{name}.json"


def save_cell(out_dir: Path, rows: list[dict[str, Any]], settings: str) -> None:
    """Save the rows of one finished cell at once, in a file of its own (no other process writes it), through a
    temporary file and a rename: under torchrun, results.json gets a cell's rows only when its whole round has
    finished, and a round interrupted before then must not lose the cells finished in it."""
    path = saved_cell_path(out_dir, row_cell(rows[0]), settings)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(rows, indent=1) + "\n"))


def _saved_cell_files(out_dir: Path) -> list[Path]:
    """The saved cells' files (never the `.<name>.*.tmp` file of a write that was killed: it may be partial)."""
    folder = out_dir / SAVED_CELLS
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith(".")) if folder.is_dir() else []


def saved_cells(out_dir: Path, settings: str) -> dict[Path, list[dict[str, Any]]]:
    """The cells that processes of an earlier run in out_dir saved (save_cell) with the same `settings`: file ->
    rows. A file that is not the checked rows of one cell under its own name is left where it is, and said so."""
    found: dict[Path, list[dict[str, Any]]] = {}
    for path in _saved_cell_files(out_dir):
        try:
            rows = read_results(path)
            cells = {row_cell(row) for row in rows}
        except (OSError, ValueError, TypeError):
            cells = set()
        if len(cells) != 1 or saved_cell_path(out_dir, cells.pop(), settings) != path:
            print(f"resuming: {path} is not a cell of this evaluation as now configured; left there, not read")
            continue
        found[path] = rows
    return found


def forget_saved_cells(paths: Iterable[Path]) -> None:
    """Remove the files of saved cells whose rows results.json now holds."""
    for path in paths:
        path.unlink(missing_ok=True)


def tidy_saved_cells(out_dir: Path) -> None:
    """At the end of a run, when no process writes any more: remove the temporary files that killed writes left
    in out_dir/cells, and the folder once it is empty (a finished evaluation's folder is that of one process)."""
    folder = out_dir / SAVED_CELLS
    if not folder.is_dir():
        return
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else {}


def record_data(out_dir: Path, resume: bool, cfg: EvaluateConfig, targets: list[Target],
                 source: dict[str, ImageDataset]) -> None:
    """Add the content fingerprints of the data read (`source` by split, every target's splits) to inputs.json,
    beside the teacher's (validate_evaluate): a resume refuses changed data, and `reuse` takes cells only
    from an evaluation that read the same data."""
    inputs = {f"source:{split}": data.fingerprint() for split, data in source.items()}
    what = {f"source:{split}": f"source ({cfg.source.path} [{split}])" for split in source}
    for target, target_cfg in zip(targets, cfg.targets, strict=True):
        for split, data in target.read.items():  # the test split only when it was read (no validation split)
            inputs[f"target:{target.name}:{split}"] = data.fingerprint()
            what[f"target:{target.name}:{split}"] = f"target {target.name} ({target_cfg.path} [{split}])"
    try:
        recorded = _read_json(out_dir / INPUTS)  # the teacher's fingerprints, just recorded
    except ValueError:
        recorded = {}
    check_inputs(out_dir, resume, {**recorded, **inputs}, what)


def _evaluation_folder(path: Path) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """config.yaml, results.json and inputs.json (empty when absent) of an evaluation; OSError or ValueError
    with a short reason when they cannot be read."""
    if not path.is_dir():
        raise OSError("no such folder")
    for name in ("config.yaml", "results.json"):
        if not (path / name).is_file():
            raise OSError(f"no {name}")
    try:
        saved = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError:
        raise ValueError("config.yaml is not valid YAML") from None

    def read(name: str) -> Any:
        try:
            return _read_json(path / name)
        except ValueError:
            raise ValueError(f"{name} is not valid JSON") from None

    rows, inputs = read("results.json"), read(INPUTS)
    if not isinstance(saved, dict) or not isinstance(rows, list) or not isinstance(inputs, dict):
        raise ValueError("not the config.yaml, results.json and inputs.json of an evaluation")
    return saved, rows, inputs


def reused_rows(cfg: EvaluateConfig, out_dir: Path, cells: list[tuple], targets: list[Target],
                 skip: set[tuple]) -> list[dict[str, Any]]:
    """The rows of the finished cells that the evaluations in cfg.reuse measured the same way (not those in
    `skip`, kept from this run's own results), each marked with the folder that measured it.

    A folder counts only when its settings equal ours apart from CELL_CHOICE_KEYS and it read the same teacher
    and data (inputs.json); of its rows, those of our cells whose target and model configs equal ours, and a
    cell only with exactly one row for each of our targets x modes. The first folder that has a cell gives it.
    A folder that cannot be read or was measured otherwise gives nothing and says why in one line."""
    wanted = {source_cell(c) for c in cells} - skip
    pairs = {(t.name, mode) for t in targets for mode in cfg.modes}
    target_cfgs = {t.name: config_to_dict(c) for t, c in zip(targets, cfg.targets, strict=True)}
    ours = {k: v for k, v in flatten(config_to_dict(cfg)).items() if k not in CELL_CHOICE_KEYS}
    try:
        our_inputs = _read_json(out_dir / INPUTS)
    except ValueError:
        our_inputs = {}
    taken: dict[tuple, list[dict[str, Any]]] = {}
    for folder in cfg.reuse:
        path = Path(str(folder))
        if path.is_dir() and path.resolve() == out_dir.resolve():
            continue  # this evaluation's own cells: --resume keeps them
        try:
            saved, rows, inputs = _evaluation_folder(path)
        except (OSError, ValueError) as exc:
            print(f"reuse: {folder}: {exc}, nothing taken")
            continue
        theirs = flatten(saved)
        theirs.update({k: v for k, v in LEGACY_VALUES.items() if k not in theirs})  # it predates the setting
        theirs = {k: v for k, v in theirs.items() if k not in CELL_CHOICE_KEYS}
        differing = [f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}" for k in sorted(set(ours) | set(theirs))
                     if ours.get(k) != theirs.get(k)]
        differing += [f"{k} fingerprint: {inputs[k]} -> {our_inputs[k]}" for k in sorted(set(our_inputs) & set(inputs))
                      if None not in (our_inputs[k], inputs[k]) and our_inputs[k] != inputs[k]]  # teacher, data
        if differing:
            more = f", {len(differing) - 6} more" if len(differing) > 6 else ""
            print(f"reuse: {folder} measured with other settings ({', '.join(differing[:6])}{more}), nothing taken")
            continue
        their_targets, their_models = (v if isinstance(v, list) else [] for v in (saved.get("targets"),
                                                                                  saved.get("models")))
        names = {name for name, target_cfg in target_cfgs.items() if target_cfg in their_targets}
        models = {(m.name, m.width, m.depth, m.feature) for m in cfg.models if config_to_dict(m) in their_models}
        found: dict[tuple, list[dict[str, Any]]] = {}
        for row in rows:
            try:
                cell = row_cell(row)
                hash(cell)
            except (KeyError, TypeError, AttributeError):
                continue  # not a row of an evaluation
            if cell in wanted and cell not in taken and cell[1:5] in models and row.get("target") in names \
                    and row.get("mode") in cfg.modes:
                found.setdefault(cell, []).append(row)
        finished = {cell: part for cell, part in found.items()
                    if len(part) == len(pairs) and {(r["target"], r["mode"]) for r in part} == pairs}
        for cell, part in finished.items():  # a row reused in turn keeps the folder that measured it
            taken[cell] = [{**r, "reused_from": r.get("reused_from") or str(folder)} for r in part]
        if finished:
            print(f"reused: {len(finished)} finished cells from {folder}")
    return [row for part in taken.values() for row in part]
