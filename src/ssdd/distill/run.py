"""`ssdd distill`: load the teacher and source, run a method, check the budget, write the artifact."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ssdd.config import config_to_dict, save_config
from ssdd.data import load_split
from ssdd.distill import boost, krr_st, subsets  # noqa: F401  (register the methods)
from ssdd.distill.artifact import DistilledSet, save_distilled
from ssdd.distill.config import RESUMABLE_KEYS, DistillConfig
from ssdd.distill.registry import DistillContext, get_method
from ssdd.runfolder import check_resume_compatible, load_checkpoint
from ssdd.runtime import resolve_device, seed_everything, versions
from ssdd.teacher import load_teacher
from ssdd.teacher.locate import require_teacher_folder


def run_distill(cfg: DistillConfig, resume: bool = False, show_progress: bool = True) -> DistilledSet | None:
    """Distil as configured; returns the saved set, or None when stop_after_steps paused the run."""
    method = get_method(cfg.method)
    if cfg.log_every < 1 or cfg.checkpoint_every < 1:
        raise ValueError("log_every and checkpoint_every must be at least 1")
    if not cfg.count_targets and cfg.method != "krr_st":
        raise ValueError(f"count_targets=false (KRR-ST's paper convention) applies to krr_st only, not {cfg.method}")
    require_teacher_folder(cfg.teacher)
    device = resolve_device(cfg.device)
    out_dir = Path(cfg.out_dir)
    ckpt = out_dir / "checkpoint.pt"
    if resume and not ckpt.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
    if not resume and ((out_dir / "manifest.json").exists() or ckpt.exists()):
        raise FileExistsError(f"{out_dir} already holds a distillation run; pass --resume to continue it "
                              f"or choose another out_dir")
    if resume:
        state = load_checkpoint(ckpt)
        saved_cfg = state.get("config")
        if saved_cfg is not None:
            check_resume_compatible(saved_cfg, config_to_dict(cfg), RESUMABLE_KEYS)
    seed_everything(cfg.seed)
    teacher = load_teacher(cfg.teacher, device)
    source = load_split(cfg.data, cfg.data.train_split, seed=cfg.seed)
    if source.resolution != teacher.resolution:
        raise ValueError(f"source images are {source.resolution} px but the teacher expects {teacher.resolution} px "
                         f"(set data.resolution={teacher.resolution})")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    ctx = DistillContext(cfg, device, teacher, source.to(device), out_dir, resume, show_progress)
    start = time.perf_counter()
    result = method.distill(ctx)
    if not result.finished:
        print(f"paused at step {result.info.get('steps_done')}; continue with --resume")
        return None
    manifest = {
        "name": cfg.name,
        "teacher": {"path": cfg.teacher, "fingerprint": teacher.fingerprint,
                    "feature_dim": teacher.feature_dim, "linear_probe_top1": teacher.manifest["linear_probe"]["top1"]},
        "normalization": {"mean": teacher.mean.tolist(), "std": teacher.std.tolist()},
        "source": {"name": source.name, "images": len(source), "fingerprint": source.fingerprint()},
        "wall_clock_s": result.info.get("distill_seconds", time.perf_counter() - start),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "versions": versions(),
        "config": config_to_dict(cfg),
        **result.info,
    }
    distilled = save_distilled(out_dir, cfg.method, result.stored, tuple(source.images.shape[1:]), cfg.budget,
                               cfg.count_targets, manifest)
    report = distilled.storage()
    print(f"{cfg.method}: {report.image_equivalents:.2f} image-equivalents ({report.bytes / 1024:.1f} KiB) "
          f"for a budget of {cfg.budget:g}; saved to {out_dir}")
    return distilled
