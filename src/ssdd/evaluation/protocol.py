"""`ssdd evaluate`: one protocol for every pre-training source (docs/protocol.md).

For every architecture x seed x pre-training source (each distilled set, no pre-training, and full data with
the distilled rows' recipe and with the tuned one):
pre-train a fresh network, measure its linear CKA to the teacher, then fine-tune it and linear-probe it
on every target. One row per method x budget x architecture x target x seed x mode.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

from ssdd import distributed as D
from ssdd.config import DataConfig, ModelConfig, config_to_dict, save_config
from ssdd.data import ImageDataset, channel_stats, load_split
from ssdd.distill import load_distilled
from ssdd.distill.artifact import set_fingerprint
from ssdd.distill.interop import evaluation_note
from ssdd.evaluation.cka import linear_cka
from ssdd.evaluation.config import LEGACY_VALUES, EvaluateConfig
from ssdd.evaluation.finetune import finetune
from ssdd.evaluation.linear_probe import extract_features, probe_encoder
from ssdd.evaluation.pretrain import full_data_steps, pretrain_full_data, pretrain_on_pairs, pretrain_steps
from ssdd.evaluation.references import FULL_DATA, FULL_DATA_SAME_RECIPE, NO_PRETRAIN
from ssdd.evaluation.report import format_table, summarize, write_report, write_results
from ssdd.evaluation.supervised import pretrain_supervised, uses_supervised_recipe
from ssdd.evaluation.validate import SET_ASIDE, validate_evaluate
from ssdd.integrity import check_trained
from ssdd.models import build_model
from ssdd.progress import bar_settings, phase, show_phases
from ssdd.runfolder import check_resume_compatible, flatten
from ssdd.runguard import INPUTS, check_inputs, fingerprinted_paths
from ssdd.runtime import atomic_write, channels_last, resolve_device, versions
from ssdd.tblog import ScalarLog, require_tensorboard
from ssdd.teacher import Teacher, load_teacher
from ssdd.teacher.locate import require_teacher_folder

# settings a resumed evaluation may change: more seeds or sets (or the same-recipe row) add cells, the others
# keep theirs
RESUMABLE_KEYS = ("out_dir", "distilled", "seeds", "device", "tensorboard", "full_data.same_recipe", "reuse",
                  "channels_last")
# settings that only choose which cells an evaluation has, where it writes and logs, or where and in which
# memory format it computes: two evaluations that differ in nothing else (nor in teacher and data,
# inputs.json) measure every cell they share the same way
CELL_CHOICE_KEYS = ("out_dir", "distilled", "seeds", "models", "targets", "modes", "device", "tensorboard", "reuse",
                    "no_pretrain", "full_data.enabled", "full_data.same_recipe", "channels_last")


@dataclass
class Target:
    name: str
    train: ImageDataset
    test: ImageDataset
    mean: torch.Tensor
    std: torch.Tensor


@dataclass
class PretrainSource:
    label: str  # e.g. krr_st@100
    method: str
    budget: float | None
    info: dict[str, Any]  # storage, m, views, distill wall-clock
    labels: bool = False  # a set whose targets are class labels


def _load_target(cfg: DataConfig, resolution: int, seed: int, device: torch.device) -> Target:
    cfg = DataConfig(**{**config_to_dict(cfg), "resolution": resolution})
    train, test = load_split(cfg, cfg.train_split, seed), load_split(cfg, cfg.test_split, seed)
    mean, std = channel_stats(train.images)
    return Target(cfg.name or train.name, train.to(device), test.to(device), torch.tensor(mean, device=device),
                  torch.tensor(std, device=device))


def source_label(manifest: dict[str, Any]) -> str:
    """krr_st@100, or krr_st@100/images-only under KRR-ST's paper convention (targets not counted);
    a set distilled with a `name` is labelled name@100."""
    label = f"{manifest.get('name') or manifest['method']}@{manifest['budget']:g}"
    return label + ("/images-only" if manifest.get("budget_counts") == "images only" else "")


def _sources(cfg: EvaluateConfig, teacher: Teacher, n_source: int) -> list[PretrainSource]:
    sources = []
    for path in cfg.distilled:
        distilled = load_distilled(path)
        manifest = distilled.manifest
        note = evaluation_note(manifest)  # imported sets whose targets no known teacher vouches for
        if note is not None:
            print(f"ssdd evaluate: note: {path}: {note}", file=sys.stderr)
        # the teacher and source of every set were checked before any work (evaluation/validate.py, --allow-mismatch)
        if distilled.image_shape[-1] != teacher.resolution:
            raise ValueError(f"{path} holds {distilled.image_shape[-1]} px images; the teacher is "
                             f"{teacher.resolution} px")
        storage = distilled.storage()
        images, _ = distilled.training_pairs()
        source_images = manifest.get("source", {}).get("images", n_source)
        sources.append(PretrainSource(
            source_label(manifest), distilled.method, manifest["budget"],
            {"path": str(path), "image_equivalents": storage.image_equivalents, "bytes": storage.bytes,
             "compression": source_images / storage.image_equivalents, "m": manifest.get("m"),
             "views": int(images.shape[0]), "distill_s": distilled.manifest.get("wall_clock_s"),
             "distill_steps": distilled.manifest.get("steps_done"),  # outer steps; None for the random subsets
             "distill_device": distilled.manifest.get("device"),
             "set_fingerprint": set_fingerprint(manifest)}, labels=manifest.get("num_classes") is not None))
    labels = [s.label for s in sources]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ValueError(f"several distilled sets share the label {', '.join(duplicated)}; evaluate them in "
                         f"separate runs (different out_dir)")
    if cfg.no_pretrain:
        sources.append(PretrainSource(NO_PRETRAIN, NO_PRETRAIN, None, {}))
    whole_source = {"image_equivalents": float(n_source), "compression": 1.0, "views": n_source}
    if cfg.full_data.enabled:
        sources.append(PretrainSource(FULL_DATA, FULL_DATA, None, dict(whole_source)))
    if cfg.full_data.same_recipe:
        sources.append(PretrainSource(FULL_DATA_SAME_RECIPE, FULL_DATA_SAME_RECIPE, None, dict(whole_source)))
    return sources


def _pretrain_steps(source: PretrainSource, cfg: EvaluateConfig) -> int:
    """The SGD steps a source's pre-training takes (its `views` are the pairs or source images it trains on)."""
    if source.method == NO_PRETRAIN:
        return 0
    if source.method == FULL_DATA:
        return full_data_steps(source.info["views"], cfg.full_data)
    return pretrain_steps(source.info["views"], cfg.pretrain)


def _pretrain(source: PretrainSource, model_cfg: ModelConfig, cfg: EvaluateConfig, teacher: Teacher,
              source_images: torch.Tensor, resolution: int, seed: int, device: torch.device,
              source_targets: torch.Tensor | None = None, layout: torch.memory_format = torch.preserve_format
              ) -> nn.Module:
    """A fresh network pre-trained on `source`; `source_targets` (the teacher's representations of the
    un-augmented source images) are needed by the same-recipe full-data row only."""
    torch.manual_seed(seed)
    backbone = build_model(model_cfg, resolution).to(device, memory_format=layout)  # the copies fine-tuned keep it
    generator = torch.Generator().manual_seed(seed)
    if source.method == NO_PRETRAIN:
        return backbone
    if source.method == FULL_DATA:
        pretrain_full_data(backbone, source_images, teacher, teacher.mean, teacher.std, cfg.full_data, generator)
        return backbone
    if source.method == FULL_DATA_SAME_RECIPE:  # every source image, trained exactly like the distilled sets
        pretrain_on_pairs(backbone, source_images, source_targets, teacher.mean, teacher.std, cfg.pretrain, generator)
        return backbone
    distilled = load_distilled(source.info["path"])
    images, targets = distilled.training_pairs()
    stats = distilled.manifest["normalization"]
    mean, std = torch.tensor(stats["mean"], device=device), torch.tensor(stats["std"], device=device)
    train = pretrain_supervised if uses_supervised_recipe(targets, cfg.pretrain) else pretrain_on_pairs
    train(backbone, images.to(device), targets.to(device), mean, std, cfg.pretrain, generator,
          num_classes=distilled.manifest.get("num_classes"))  # labels: KRR-ST's recipe unless recipe=same
    return backbone


def _cell(label: str, arch: str, width: Any, depth: Any, feature: Any, seed: int, set_fp: Any = None) -> tuple:
    """A cell's identity; `set_fp` (the distilled set's shard checksums) tells apart two sets of one label."""
    return (label, arch, width, depth, feature, seed, set_fp)


def _row_cell(row: dict[str, Any]) -> tuple:
    return _cell(row["label"], row["arch"], row.get("arch_width"), row.get("arch_depth"), row.get("arch_feature"),
                 row["seed"], row.get("set_fingerprint"))


def _source_cell(cell: tuple) -> tuple:
    model_cfg, seed, source = cell
    return _cell(source.label, model_cfg.name, model_cfg.width, model_cfg.depth, model_cfg.feature, seed,
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


def _previous_rows(out_dir: Path, cfg: EvaluateConfig, resume: bool) -> list[dict[str, Any]]:
    """Rows of an earlier run in out_dir to keep (--resume), after checking it measured the same thing.

    validate_evaluate has refused an artifact folder, and results without --resume, before any work."""
    results = out_dir / "results.json"
    if not resume or not results.exists():
        return []
    saved = yaml.safe_load((out_dir / "config.yaml").read_text()) if (out_dir / "config.yaml").exists() else None
    if saved is not None:
        check_resume_compatible(saved, config_to_dict(cfg), (*RESUMABLE_KEYS, *fingerprinted_paths(out_dir)),
                                LEGACY_VALUES)  # a moved teacher: validate_evaluate compared its fingerprints
    rows = _read_rows(results)
    measured = {_row_cell(row) for row in rows}
    aside = _read_rows(out_dir / SET_ASIDE) if (out_dir / SET_ASIDE).is_file() else []
    return rows + [row for row in aside if _row_cell(row) not in measured]


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text()))
    except ValueError:
        what = "and results.json away to start the evaluation afresh" if path.name == SET_ASIDE else \
            "away to start the evaluation afresh"
        raise ValueError(f"{path}: not valid JSON; move it {what}") from None


def _set_aside(rows: list[dict[str, Any]], kept: list[dict[str, Any]], out_dir: Path) -> None:
    """Keep the finished rows of earlier runs that this evaluation leaves out (fewer seeds or sets, or another
    set under the same label) in SET_ASIDE, beside the kept ones in results.json: a later resume that asks for
    those cells again takes them back (_previous_rows), so no measured cell is lost."""
    path = out_dir / SET_ASIDE
    if rows:  # the set-aside rows first: a stop between the two writes leaves every row in one file or both
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(rows, indent=1) + "\n"))
    write_results(kept, out_dir)
    if rows:
        print(f"resuming: the rows of {len({_row_cell(row) for row in rows})} cells of earlier runs are not part "
              f"of this evaluation (other seeds or sets, or rows it no longer has); kept in {path}, and taken back "
              "by a resume that asks for them")
    else:  # every row is back in results.json before the file goes
        path.unlink(missing_ok=True)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else {}


def _record_data(out_dir: Path, resume: bool, cfg: EvaluateConfig, targets: list[Target],
                 source: dict[str, ImageDataset]) -> None:
    """Add the content fingerprints of the data read (`source` by split, every target's splits) to inputs.json,
    beside the teacher's (validate_evaluate): a resume refuses changed data, and `reuse` takes cells only
    from an evaluation that read the same data."""
    inputs = {f"source:{split}": data.fingerprint() for split, data in source.items()}
    what = {f"source:{split}": f"source ({cfg.source.path} [{split}])" for split in source}
    for target, target_cfg in zip(targets, cfg.targets, strict=True):
        for split, data in ((target_cfg.train_split, target.train), (target_cfg.test_split, target.test)):
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


def _reused_rows(cfg: EvaluateConfig, out_dir: Path, cells: list[tuple], targets: list[Target],
                 skip: set[tuple]) -> list[dict[str, Any]]:
    """The rows of the finished cells that the evaluations in cfg.reuse measured the same way (not those in
    `skip`, kept from this run's own results), each marked with the folder that measured it.

    A folder counts only when its settings equal ours apart from CELL_CHOICE_KEYS and it read the same teacher
    and data (inputs.json); of its rows, those of our cells whose target and model configs equal ours, and a
    cell only with exactly one row for each of our targets x modes. The first folder that has a cell gives it.
    A folder that cannot be read or was measured otherwise gives nothing and says why in one line."""
    wanted = {_source_cell(c) for c in cells} - skip
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
                cell = _row_cell(row)
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


def run_evaluate(cfg: EvaluateConfig, show_progress: bool = True, resume: bool = False,
                 allow_mismatch: bool = False) -> list[dict[str, Any]]:
    """Evaluate every cell; with `resume`, keep the complete cells already in out_dir/results.json.
    Sets distilled with another teacher or from another source are refused unless `allow_mismatch`.

    Under torchrun the cells are dealt round-robin to the processes (each on a device of its own, or several
    sharing one GPU) in `dealing_order`; after every round of one cell per process the rows are gathered, and
    rank 0 alone writes them, in the evaluation's cell order. Every rank returns all rows."""
    validate_evaluate(cfg, resume, allow_mismatch)  # settings, data, teacher and every set, before any work
    require_tensorboard(cfg.tensorboard)  # one line, before any work, when the package is missing
    with D.process_group(cfg.device, share_gpu=True) as dist_info, show_phases(show_progress and dist_info.is_main), \
            ScalarLog(cfg.tensorboard, dist_info.is_main) as tb:
        return _run_evaluate(cfg, show_progress and dist_info.is_main, resume, tb, dist_info)


def _arch_tag(model_cfg: ModelConfig) -> str:
    """convnet-w128-d3: the architecture part of a TensorBoard tag."""
    return model_cfg.name + (f"-w{model_cfg.width}" if model_cfg.width else "") + \
        (f"-d{model_cfg.depth}" if model_cfg.depth else "")


def _log_cell(tb: ScalarLog, cell_rows: list[dict[str, Any]], rows: list[dict[str, Any]], model_cfg: ModelConfig,
              cells_done: int) -> None:
    """TensorBoard, after each cell: top1/<target>/<mode>/<arch>/<source> and cka_to_teacher/<arch>/<source>
    (x-axis: the seed), and the summary table so far as text (x-axis: cells finished)."""
    if not tb.active or not cell_rows:
        return
    arch, first = _arch_tag(model_cfg), cell_rows[0]
    values: dict[str, Any] = {f"top1/{r['target']}/{r['mode']}/{arch}/{r['label']}": r["top1"] for r in cell_rows}
    values[f"cka_to_teacher/{arch}/{first['label']}"] = first.get("cka_to_teacher")
    tb.scalars(values, first["seed"])
    tb.text("summary", format_table(summarize(rows)), cells_done)


def _run_evaluate(cfg: EvaluateConfig, show_progress: bool, resume: bool, tb: ScalarLog, dist_info: D.DistInfo
                  ) -> list[dict[str, Any]]:
    unknown = set(cfg.modes) - {"finetune", "linear_probe"}
    if unknown or not cfg.modes:
        raise ValueError(f"modes must be a non-empty subset of [finetune, linear_probe], got {cfg.modes}")
    if cfg.seeds < 1:
        raise ValueError("seeds must be at least 1")
    require_teacher_folder(cfg.teacher)
    device = resolve_device(cfg.device, dist_info.local_rank)
    out_dir = Path(cfg.out_dir)
    previous = D.on_main(lambda: _previous_rows(out_dir, cfg, resume))  # read (and checked) once, by rank 0
    if dist_info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        tb.open(out_dir)
    layout = torch.channels_last if channels_last(cfg.channels_last) else torch.preserve_format
    teacher = load_teacher(cfg.teacher, device).to(memory_format=layout)  # its forward passes: targets, CKA
    resolution = teacher.resolution
    source_cfg = DataConfig(**{**config_to_dict(cfg.source), "resolution": resolution})
    full_rows = cfg.full_data.enabled or cfg.full_data.same_recipe
    need_source = full_rows or cfg.cka_images > 0
    source_train = load_split(source_cfg, source_cfg.train_split, cfg.seed).to(device) if full_rows else None
    source_read = {source_cfg.train_split: source_train} if source_train is not None else {}
    cka_images = None
    if need_source and cfg.cka_images > 0:
        test = load_split(source_cfg, source_cfg.test_split, cfg.seed)
        source_read[source_cfg.test_split] = test
        cka_images = test.subset(cfg.cka_images, cfg.seed).images.to(device)
        with phase(f"teacher features of {cka_images.shape[0]:,} source test images (CKA reference)"):
            teacher_features = teacher.encode(cka_images)
    n_source = len(source_train) if source_train is not None else 0
    sources = _sources(cfg, teacher, n_source)
    targets = [_load_target(t, resolution, cfg.seed, device) for t in cfg.targets]
    D.on_main(lambda: _record_data(out_dir, resume, cfg, targets, source_read))  # a resume refuses changed data
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    cells = [(m, s, src) for m in cfg.models for s in seeds for src in sources]
    position = {_source_cell(cell): i for i, cell in enumerate(cells)}

    def in_cell_order(row: dict[str, Any]) -> int:  # sorting by it is stable: a cell keeps its rows' order
        return position.get(_row_cell(row), len(cells))

    per_cell = len(targets) * len(cfg.modes)
    counts: dict[tuple, int] = {}
    for row in previous:
        counts[_row_cell(row)] = counts.get(_row_cell(row), 0) + 1
    # finished cells of this evaluation only: a dropped seed, or another set under the same label, is not kept
    complete = {cell for cell, n in counts.items() if n == per_cell} & {_source_cell(c) for c in cells}
    rows: list[dict[str, Any]] = [row for row in previous if _row_cell(row) in complete]
    if complete and dist_info.is_main:
        print(f"resuming: {len(complete)} finished cells kept from {out_dir}")
    if previous and dist_info.is_main and (len(rows) < len(previous) or (out_dir / SET_ASIDE).exists()):
        _set_aside([row for row in previous if _row_cell(row) not in complete], rows, out_dir)
    # the cells other evaluations measured the same way fill in the ones this run has not finished itself
    reused = D.on_main(lambda: _reused_rows(cfg, out_dir, cells, targets, complete)) if cfg.reuse else []
    if reused:
        complete |= {_row_cell(row) for row in reused}
        rows.extend(reused)
        rows.sort(key=in_cell_order)
        if dist_info.is_main:
            write_results(rows, out_dir)  # kept even if this run is interrupted before its first cell
    bench = _Bench(cfg, teacher, source_train.images if source_train else None, resolution, device,
                   torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", cka_images,
                   teacher_features if cka_images is not None else None, targets, layout)
    pending = [(number, cell) for number, cell in enumerate(cells, 1) if _source_cell(cell) not in complete]
    world, rank = dist_info.world_size, dist_info.rank
    if world > 1:
        by_number = dict(pending)
        pending = [(n, by_number[n]) for n in dealing_order(list(by_number), len(seeds), len(sources))]
    bar = tqdm(total=len(pending), desc="evaluate", disable=not show_progress, dynamic_ncols=True, **bar_settings())
    for first in range(0, len(pending), world):
        batch = pending[first : first + world]  # one round: its r-th cell runs on rank r
        cell_rows: list[dict[str, Any]] = []
        if rank < len(batch):
            number, (model_cfg, seed, source) = batch[rank]
            bar.set_postfix(source=source.label, arch=model_cfg.name, seed=seed)
            with phase(f"cell {number}/{len(cells)}: {source.label}, {_arch_tag(model_cfg)}, seed {seed}"):
                cell_rows = _evaluate_cell(bench, model_cfg, seed, source)
        gathered = D.all_gather_objects(cell_rows)[: len(batch)]  # ranks past the last cell gave []
        for (_, (model_cfg, _, _)), part in zip(batch, gathered, strict=True):  # in the round's order
            rows.extend(part)
            _log_cell(tb, part, rows, model_cfg, len({_row_cell(r) for r in rows}))
        rows.sort(key=in_cell_order)
        if dist_info.is_main:
            write_results(rows, out_dir)  # after every round, so an interrupted run keeps what it measured
        bar.update(len(batch))
    bar.close()
    if dist_info.is_main:
        print(write_report(rows, out_dir, {"versions": versions(), "config": config_to_dict(cfg)}))
    return rows


@dataclass
class _Bench:
    """What every cell of an evaluation reads, loaded once per process on its device."""

    cfg: EvaluateConfig
    teacher: Teacher
    source_images: torch.Tensor | None  # the source train split (full-data pre-training), else None
    resolution: int
    device: torch.device
    device_name: str
    cka_images: torch.Tensor | None
    teacher_features: torch.Tensor | None
    targets: list[Target]
    layout: torch.memory_format  # of every network built here (channels_last or preserve_format)
    _source_targets: torch.Tensor | None = field(default=None, repr=False)

    def source_targets(self) -> torch.Tensor:
        """The teacher's representations of every un-augmented source training image, computed once."""
        if self._source_targets is None:
            assert self.source_images is not None, "the source train split is loaded for the full-data rows"
            with phase(f"teacher features of {self.source_images.shape[0]:,} source training images (targets of "
                       f"{FULL_DATA_SAME_RECIPE})"), torch.no_grad():
                self._source_targets = self.teacher.encode(self.source_images)
        return self._source_targets


def _evaluate_cell(bench: _Bench, model_cfg: ModelConfig, seed: int, source: PretrainSource) -> list[dict[str, Any]]:
    """The rows of one cell: pre-train (seeded by the cell alone), CKA, then every target x mode."""
    cfg, teacher = bench.cfg, bench.teacher
    source_targets = bench.source_targets() if source.method == FULL_DATA_SAME_RECIPE else None
    start = time.perf_counter()
    with phase("random initialisation" if source.method == NO_PRETRAIN else f"pre-training on {source.label}"):
        backbone = _pretrain(source, model_cfg, cfg, teacher, bench.source_images, bench.resolution, seed,
                             bench.device, source_targets, bench.layout)
    hint = "full_data.lr" if source.method == FULL_DATA else "pretrain.supervised.lr" \
        if source.labels and cfg.pretrain.supervised.recipe == "krr_st" else "pretrain.lr"
    check_trained(backbone, f"pre-training on {source.label}", hint, bench.resolution)  # finished cells stay
    pretrain_s = time.perf_counter() - start
    cka = None
    if bench.cka_images is not None:
        with phase(f"CKA to the teacher on {bench.cka_images.shape[0]:,} images") as measuring:
            cka = linear_cka(extract_features(backbone, bench.cka_images, teacher.mean, teacher.std),
                             bench.teacher_features)
            measuring.detail = f"{cka:.3f}"
    rows = []
    for target in bench.targets:
        for mode in cfg.modes:
            start = time.perf_counter()
            generator = torch.Generator().manual_seed(seed * 1009 + 17)
            with phase(f"{mode} on {target.name}") as measuring:
                top1, iterations = _score(cfg, backbone, target, mode, seed, generator)
                measuring.detail = f"top-1 {top1:.2f} %"
            rows.append({
                "method": source.method, "label": source.label, "budget": source.budget,
                "arch": model_cfg.name, "arch_width": model_cfg.width, "arch_depth": model_cfg.depth,
                "arch_feature": model_cfg.feature, "target": target.name, "seed": seed,
                "mode": mode, "top1": top1, "cka_to_teacher": cka, "pretrain_s": pretrain_s,
                "pretrain_steps": _pretrain_steps(source, cfg), "finetune_iterations": iterations,
                "eval_s": time.perf_counter() - start, "device": bench.device_name,
                "channels_last": bench.layout == torch.channels_last,
                **{k: v for k, v in source.info.items() if k != "path"},
            })
    return rows


def _score(cfg: EvaluateConfig, backbone: nn.Module, target: Target, mode: str, seed: int,
           generator: torch.Generator) -> tuple[float, int | None]:
    """Top-1 of one mode on one target, and the fine-tuning iterations it ran (None for the linear probe)."""
    if mode == "finetune":
        result = finetune(backbone, target.train, target.test, target.mean, target.std, cfg.finetune, generator,
                          target.name)
        return result["top1"], int(result["iterations"])
    top1 = probe_encoder(backbone, target.mean, target.std, target.train.images, target.train.labels,
                         target.test.images, target.test.labels, target.train.num_classes, cfg.probe,
                         seed=seed)["test_top1"]
    return top1, None
