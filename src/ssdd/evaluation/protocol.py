"""`ssdd evaluate`: one protocol for every pre-training source (docs/protocol.md).

For every architecture x seed x pre-training source (each distilled set, no pre-training, and full data with
the distilled rows' recipe and with the tuned one):
pre-train a fresh network, measure its linear CKA to the teacher, then fine-tune it and linear-probe it
on every target. One row per method x budget x architecture x target x seed x mode.

This module wires the two halves: ssdd.evaluation.cell measures one cell, ssdd.evaluation.schedule decides
which cells run (resume, reuse, set-aside rows) and in which order across torchrun processes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ssdd.config import DataConfig, ModelConfig, config_to_dict, save_config
from ssdd.data import load_split
from ssdd.evaluation.cell import Bench, PretrainSource, evaluate_cell, load_target, pretrain_sources, source_label
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.fastpath import NetworkForwards
from ssdd.evaluation.pretrain import PretrainCheckpoint
from ssdd.evaluation.report import format_table, summarize, write_report, write_results
from ssdd.evaluation.schedule import (
    CELL_CHOICE_KEYS,
    RESUMABLE_KEYS,
    cell_settings,
    dealing_order,
    forget_saved_cells,
    previous_rows,
    record_data,
    reused_rows,
    row_cell,
    save_cell,
    saved_cell_path,
    saved_cells,
    set_aside,
    source_cell,
    tidy_saved_cells,
)
from ssdd.evaluation.validate import PRETRAIN_SUFFIX, SAVED_CELLS, SET_ASIDE, validate_evaluate
from ssdd.run import distributed as D
from ssdd.run.folder import holds_out_dir
from ssdd.run.progress import note, phase, progress_bar, show_phases
from ssdd.run.runtime import channels_last, resolve_device, versions
from ssdd.run.tblog import ScalarLog, require_tensorboard
from ssdd.teacher import load_teacher
from ssdd.teacher.locate import require_teacher_folder

__all__ = ["CELL_CHOICE_KEYS", "RESUMABLE_KEYS", "PretrainSource", "dealing_order", "run_evaluate", "source_label"]


@holds_out_dir
def run_evaluate(cfg: EvaluateConfig, show_progress: bool = True, resume: bool = False,
                 allow_mismatch: bool = False) -> list[dict[str, Any]]:
    """Evaluate every cell; with `resume`, keep the complete cells already in out_dir/results.json.
    Sets distilled with another teacher or from another source are refused unless `allow_mismatch`.

    Under torchrun the cells are dealt round-robin to the processes (each on a device of its own, or several
    sharing one GPU) in `dealing_order`; each process saves a cell's rows as soon as it has finished it
    (out_dir/cells, taken back by --resume), after every round of one cell per process the rows are gathered,
    and rank 0 alone writes them, in the evaluation's cell order. Every rank returns all rows."""
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
    forwards = NetworkForwards(cfg.compile, device, cfg.models)  # compile=on where it cannot: refused before work
    out_dir = Path(cfg.out_dir)
    previous = D.on_main(lambda: previous_rows(out_dir, cfg, resume))  # read (and checked) once, by rank 0
    if dist_info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        tb.open(out_dir)
    layout = torch.channels_last if channels_last(cfg.channels_last) else torch.preserve_format
    teacher = load_teacher(cfg.teacher, device).to(memory_format=layout)  # its forward passes: targets, CKA
    resolution = teacher.resolution
    given = {"source.resolution": cfg.source.resolution,
             **{f"targets[{i}].resolution": target.resolution for i, target in enumerate(cfg.targets)}}
    unused = [f"{key}={value}" for key, value in given.items() if value != resolution]
    if unused:  # the networks see the teacher's inputs: every image is resized to its resolution
        note(f"every image at the teacher's {resolution} px; not used: {', '.join(unused)}")
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
    sources = pretrain_sources(cfg, teacher, n_source)
    targets = [load_target(t, resolution, cfg.seed, device, cfg.validation) for t in cfg.targets]
    D.on_main(lambda: record_data(out_dir, resume, cfg, targets, source_read))  # a resume refuses changed data
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    cells = [(m, s, src) for m in cfg.models for s in seeds for src in sources]
    position = {source_cell(cell): i for i, cell in enumerate(cells)}

    def in_cell_order(row: dict[str, Any]) -> int:  # sorting by it is stable: a cell keeps its rows' order
        return position.get(row_cell(row), len(cells))

    settings = cell_settings(cfg)
    # the cells that processes of an interrupted round finished and saved, their round's results.json unwritten
    saved = D.on_main(lambda: saved_cells(out_dir, settings)) if resume else {}
    written = {row_cell(row) for row in previous}
    previous = previous + [row for part in saved.values() if row_cell(part[0]) not in written for row in part]
    per_cell = len(targets) * len(cfg.modes)
    counts: dict[tuple, int] = {}
    for row in previous:
        counts[row_cell(row)] = counts.get(row_cell(row), 0) + 1
    # finished cells of this evaluation only: a dropped seed, or another set under the same label, is not kept
    complete = {cell for cell, n in counts.items() if n == per_cell} & {source_cell(c) for c in cells}
    rows: list[dict[str, Any]] = [row for row in previous if row_cell(row) in complete]
    # in the evaluation's cell order, as a fresh run writes them: the saved cells' rows and rows taken back from
    # the set-aside file come after results.json's
    rows.sort(key=in_cell_order)
    if complete and dist_info.is_main:
        print(f"resuming: {len(complete)} finished cells kept from {out_dir}")
    if previous and dist_info.is_main and (len(rows) < len(previous) or (out_dir / SET_ASIDE).exists()):
        set_aside([row for row in previous if row_cell(row) not in complete], rows, out_dir)
    if saved and dist_info.is_main:  # their rows in results.json (or set aside) first, then their files go
        write_results(rows, out_dir)
        forget_saved_cells(saved)
        print(f"resuming: {len(saved)} cells saved by the processes of an interrupted round are in results.json")
    # the cells other evaluations measured the same way fill in the ones this run has not finished itself
    reused = D.on_main(lambda: reused_rows(cfg, out_dir, cells, targets, complete)) if cfg.reuse else []
    if reused:
        complete |= {row_cell(row) for row in reused}
        rows.extend(reused)
        rows.sort(key=in_cell_order)
        if dist_info.is_main:
            write_results(rows, out_dir)  # kept even if this run is interrupted before its first cell
    bench = Bench(cfg, teacher, source_train.images if source_train else None, resolution, device,
                   torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", cka_images,
                   teacher_features if cka_images is not None else None, targets, layout,
                   forwards)
    pending = [(number, cell) for number, cell in enumerate(cells, 1) if source_cell(cell) not in complete]
    world, rank = dist_info.world_size, dist_info.rank
    if world > 1:
        by_number = dict(pending)
        pending = [(n, by_number[n]) for n in dealing_order(list(by_number), len(seeds), len(sources))]
    if world > 1 and dist_info.is_main and not (out_dir / "results.json").exists():
        # before the first round ends, the cells its processes save wait in out_dir/cells: with results.json
        # there (no rows yet), a fresh run refuses the folder and a study resumes it, instead of starting afresh
        write_results(rows, out_dir)
    def state_path(cell: tuple) -> Path:  # where a cell's full-data pre-training keeps its state
        return saved_cell_path(out_dir, source_cell(cell), settings).with_suffix(PRETRAIN_SUFFIX)

    if dist_info.is_main:  # a state no pending cell will take up (its cell finished, or is gone): removed, said so
        wanted = {state_path(cell) for _, cell in pending}
        for stale in sorted((out_dir / SAVED_CELLS).glob(f"[!.]*{PRETRAIN_SUFFIX}")):
            if stale not in wanted:
                print(f"resuming: {stale.name} is the pre-training state of no cell still to run; removed")
                stale.unlink()
    D.barrier()
    bar = progress_bar(total=len(pending), desc="evaluate", disable=not show_progress, dynamic_ncols=True, unit="cell")
    for first in range(0, len(pending), world):
        batch = pending[first : first + world]  # one round: its r-th cell runs on rank r
        cell_rows: list[dict[str, Any]] = []
        checkpoint: PretrainCheckpoint | None = None
        if rank < len(batch):
            number, (model_cfg, seed, source) = batch[rank]
            bar.set_postfix(source=source.label, arch=model_cfg.name, seed=seed)
            # a full-data row's pre-training goes on from a state an earlier attempt left, and saves its own every
            # checkpoint_minutes (never when 0)
            checkpoint = PretrainCheckpoint(state_path(batch[rank][1]), 60 * cfg.checkpoint_minutes or math.inf)
            with phase(f"cell {number}/{len(cells)}: {source.label}, {_arch_tag(model_cfg)}, seed {seed}"):
                cell_rows = evaluate_cell(bench, model_cfg, seed, source, checkpoint)
            if world > 1 and cell_rows:  # results.json gets it only when the whole round has finished
                save_cell(out_dir, cell_rows, settings)
        gathered = D.all_gather_objects(cell_rows)[: len(batch)]  # ranks past the last cell gave []
        for (_, (model_cfg, _, _)), part in zip(batch, gathered, strict=True):  # in the round's order
            rows.extend(part)
            _log_cell(tb, part, rows, model_cfg, len({row_cell(r) for r in rows}))
        rows.sort(key=in_cell_order)
        if dist_info.is_main:
            write_results(rows, out_dir)  # after every round, so an interrupted run keeps what it measured
            if world > 1:  # the round's saved cells are in results.json now
                forget_saved_cells(saved_cell_path(out_dir, source_cell(cell), settings) for _, cell in batch)
        if checkpoint is not None:  # the cell's rows are kept now (results.json, or its saved cell)
            checkpoint.discard()
        bar.update(len(batch))
    bar.close()
    if dist_info.is_main:
        tidy_saved_cells(out_dir)  # every process has saved its last cell (the last round's gather waited)
        print(write_report(rows, out_dir, {"versions": versions(), "config": config_to_dict(cfg)}))
    return rows
