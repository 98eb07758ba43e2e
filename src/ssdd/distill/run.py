"""`ssdd distill`: load the teacher and source, run a method, check the budget, write the artifact."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ssdd.artifacts.files import ArtifactError
from ssdd.artifacts.integrity import ApproximationError
from ssdd.config import config_to_dict, save_config
from ssdd.data import load_split
from ssdd.distill.artifact import DistilledSet, save_distilled
from ssdd.distill.config import DistillConfig, with_legacy_values
from ssdd.distill.keys import resumable_keys
from ssdd.distill.registry import DistillContext, get_method
from ssdd.distill.validate import check_processes, check_source_fits, validate_distill
from ssdd.run import distributed as D
from ssdd.run.folder import CHECKPOINT, claim, holds_out_dir, load_checkpoint
from ssdd.run.guard import check_inputs, check_resume, numerical_stop, resume_changes
from ssdd.run.progress import show_phases
from ssdd.run.runtime import resolve_device, seed_everything, versions
from ssdd.run.tblog import ScalarLog, require_tensorboard
from ssdd.teacher import load_teacher


@holds_out_dir
def run_distill(cfg: DistillConfig, resume: bool = False, show_progress: bool = True) -> DistilledSet | None:
    """Distil as configured; returns the saved set, or None when stop_after_steps paused the run.

    Under torchrun every process takes part (see ssdd.distill.outer) and only rank 0 writes; the other ranks
    return None."""
    started = time.perf_counter()  # stop_after_minutes counts from here
    claim(cfg.out_dir, "distill", resume)  # never another run's folder; --resume needs a checkpoint
    validate_distill(cfg, resume)  # every setting, the teacher, the split, the budget, the device: before any work
    require_tensorboard(cfg.tensorboard)  # one line, before any work, when the package is missing
    with D.process_group(cfg.device) as dist_info, show_phases(show_progress and dist_info.is_main):
        return _run_distill(cfg, resume, show_progress and dist_info.is_main, dist_info, started)


def _run_distill(cfg: DistillConfig, resume: bool, show_progress: bool, dist_info: D.DistInfo,
                 started: float) -> DistilledSet | None:
    method = get_method(cfg.method)
    check_processes(cfg, dist_info.world_size)  # the settings, teacher and out_dir were checked by validate_distill
    device = resolve_device(cfg.device, dist_info.local_rank)
    out_dir = Path(cfg.out_dir)
    ckpt = out_dir / CHECKPOINT
    purge_step = 0  # TensorBoard: a resumed run drops what the interrupted one logged after its checkpoint
    if resume:
        state = load_checkpoint(ckpt)
        purge_step = int(state.get("step", 0)) + 1
        saved_cfg = state.get("config")
        if saved_cfg is not None:
            check_resume(out_dir, with_legacy_values(saved_cfg), config_to_dict(cfg), resumable_keys(cfg),
                         at=f"step {state.get('step')}")  # after a numerical stop: also the rates it named
    D.barrier()  # every process has checked out_dir before rank 0 writes into it
    seed_everything(cfg.seed)
    teacher = load_teacher(cfg.teacher, device)
    source = load_split(cfg.data, cfg.data.train_split, seed=cfg.seed)
    check_source_fits(cfg, len(source))  # torchvision, digits: known once loaded
    check_inputs(out_dir, resume, {"teacher": teacher.fingerprint, "teacher_function": teacher.function_fingerprint,
                                   "source": source.fingerprint()},
                 {"teacher": f"teacher ({cfg.teacher})", "teacher_function": f"teacher's function ({cfg.teacher})",
                  "source": f"source ({cfg.data.path} [{cfg.data.train_split}])"})
    if source.resolution != teacher.resolution:
        raise ValueError(f"source images are {source.resolution} px but the teacher expects {teacher.resolution} px "
                         f"(set data.resolution={teacher.resolution})")
    if dist_info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    elif not method.parallel:
        return None  # rank 0 alone chooses the subset: nothing after it needs the result here
    ctx = DistillContext(cfg, device, teacher, source.to(device), out_dir, resume, show_progress, dist_info,
                         log=ScalarLog(cfg.tensorboard, dist_info.is_main).open(out_dir, purge_step),
                         started=started)
    start = time.perf_counter()
    with ctx.log:
        try:
            result = method.distill(ctx)
        except FloatingPointError as exc:  # the run loop's numerical stop names the method's own rate
            if isinstance(exc, (ApproximationError, ArtifactError)):
                raise
            # a stop outside the loop: the rate the failure names (Diverged.setting), else the outer loop's
            raise numerical_stop(out_dir, exc, getattr(exc, "setting", None) or "outer.lr") from None
    if not dist_info.is_main:
        return None
    if not result.finished:
        print(f"paused at step {result.info.get('steps_done')}; continue with --resume")
        return None
    manifest = {
        "name": cfg.name,
        "teacher": {"path": cfg.teacher, "fingerprint": teacher.fingerprint,
                    "function_fingerprint": teacher.function_fingerprint,
                    "feature_dim": teacher.feature_dim, "linear_probe_top1": teacher.manifest["linear_probe"]["top1"]},
        "normalization": {"mean": teacher.mean.tolist(), "std": teacher.std.tolist()},
        "source": {"name": source.name, "images": len(source), "fingerprint": source.fingerprint()},
        "wall_clock_s": result.info.get("distill_seconds", time.perf_counter() - start),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "world_size": dist_info.world_size,
        "versions": versions(),
        "config": config_to_dict(cfg),
        **result.info,
    }
    if changes := resume_changes(out_dir):
        manifest["resumed_with_changes"] = changes  # settings a --resume changed (none alter the distilled tensors)
    distilled = save_distilled(out_dir, cfg.method, result.stored, tuple(source.images.shape[1:]), cfg.budget,
                               cfg.count_targets, manifest)
    report = distilled.storage()
    print(f"{cfg.method}: {report.image_equivalents:.2f} image-equivalents ({report.bytes / 1024:.1f} KiB) "
          f"for a budget of {cfg.budget:g}; saved to {out_dir}")
    return distilled
