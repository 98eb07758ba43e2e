"""`ssdd experts`: train MKDT's expert trajectories (resumable; every finished epoch is kept).

The teacher's representations of every source image are computed once; expert i is a fresh student
(seeded from `seed` and i) trained for `epochs` epochs of SGD on MSE to them, its flat parameters saved at
the start and after every epoch. A checkpoint after every epoch holds the expert under way; a finished
expert becomes its own safetensors file at once, so an interruption loses at most one epoch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ssdd.artifacts.files import write_manifest
from ssdd.augment import crop_flip, normalize, to_float
from ssdd.config import config_to_dict, save_config
from ssdd.data import load_split
from ssdd.distill.pool import PoolMember, seeded_member
from ssdd.distill.unroll import FlatModel
from ssdd.experts.artifact import FORMAT_VERSION, KIND, expert_file
from ssdd.experts.config import RESUMABLE_KEYS, ExpertsConfig
from ssdd.experts.validate import validate_experts
from ssdd.models.registry import describe
from ssdd.run.checks import batch_fits
from ssdd.run.folder import claim, holds_out_dir
from ssdd.run.guard import check_inputs, check_resume, numerical_stop
from ssdd.run.loop import RunLoop
from ssdd.run.progress import bar, phase, show_phases
from ssdd.run.runtime import atomic_write, file_sha256, resolve_device, versions
from ssdd.run.tblog import ScalarLog, require_tensorboard
from ssdd.teacher import Teacher, load_teacher
from ssdd.teacher.locate import require_teacher_folder


def build_student(cfg: ExpertsConfig | Any, resolution: int, feature_dim: int, seed: int) -> PoolMember:
    """A student (backbone + linear head to d) initialised from `seed` alone (CPU generator)."""
    return seeded_member(cfg.model, resolution, feature_dim, seed)


def expert_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


@holds_out_dir
def train_experts(cfg: ExpertsConfig, resume: bool = False, show_progress: bool = True) -> Path | None:
    """Train (or continue) the experts; returns out_dir when all are done, None when paused."""
    started = time.perf_counter()  # stop_after_minutes counts from here
    claim(cfg.out_dir, "experts", resume)  # never another run's folder; --resume needs a checkpoint
    validate_experts(cfg, resume)
    require_tensorboard(cfg.tensorboard)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("ssdd experts runs in one process (torchrun is not supported): run it without torchrun")
    with show_phases(show_progress):
        try:
            return _train(cfg, resume, show_progress, started)
        except FloatingPointError as exc:
            raise numerical_stop(cfg.out_dir, exc, "lr") from None


def _train(cfg: ExpertsConfig, resume: bool, show_progress: bool, started: float | None = None) -> Path | None:
    out_dir = Path(cfg.out_dir)
    # one step of the run = one epoch of one expert; step g trains expert g // epochs, epoch g % epochs
    run = RunLoop(out_dir, total=cfg.num_experts * cfg.epochs, settings=("lr",), prefix="experts/",
                  at=lambda done: f"expert {(done - 1) // cfg.epochs + 1}, epoch {(done - 1) % cfg.epochs + 1}",
                  tb_skip=("expert", "epoch"), time_limit_s=60 * cfg.stop_after_minutes, started=started)
    require_teacher_folder(cfg.teacher)
    device = resolve_device(cfg.device)
    teacher = load_teacher(cfg.teacher, device)
    source = load_split(cfg.data, cfg.data.train_split, seed=cfg.seed)
    if source.resolution != teacher.resolution:
        raise ValueError(f"source images are {source.resolution} px but the teacher expects {teacher.resolution} px "
                         f"(set data.resolution={teacher.resolution})")
    batch_fits("batch_size", cfg.batch_size, len(source))  # torchvision, digits: known once loaded
    check_inputs(out_dir, resume, {"teacher_function": teacher.function_fingerprint, "source": source.fingerprint()},
                 {"teacher_function": f"teacher ({cfg.teacher})",
                  "source": f"source ({cfg.data.path} [{cfg.data.train_split}])"})
    state: dict[str, Any] = {"finished": [], "current": None}
    if resume:
        state = run.load()
        saved = state.get("config")
        if saved is not None:
            check_resume(out_dir, saved, config_to_dict(cfg), RESUMABLE_KEYS, at=f"{len(state['finished'])} experts")
        if len(state["finished"]) > cfg.num_experts:
            raise ValueError(f"{out_dir} already holds {len(state['finished'])} experts, more than "
                             f"num_experts={cfg.num_experts}")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    # the log holds exactly the epochs the checkpoint holds (a kill may fall between the two writes)
    run.history = [{"expert": i + 1, "epoch": e + 1, "loss": loss} for i, entry in enumerate(state["finished"])
                   for e, loss in enumerate(entry["epoch_losses"])]
    current = state.get("current")
    if current is not None:
        run.history += [{"expert": current["index"] + 1, "epoch": e + 1, "loss": loss}
                        for e, loss in enumerate(current["losses"])]
    run.start = len(state["finished"]) * cfg.epochs + len(current["losses"] if current is not None else [])
    if run.resumed:
        run.saved = run.start  # a checkpoint written before the run loop had no step of its own
    if cfg.stop_after_experts > 0:
        run.stop_at = (len(state["finished"]) + cfg.stop_after_experts) * cfg.epochs
    images = source.images.to(device)
    with phase(f"teacher targets of the {len(source):,} source images"):
        targets = teacher.encode(images).to(device)
    run.log = ScalarLog(cfg.tensorboard, True).open(out_dir, 0)
    expert: _Expert | None = None

    def checkpoint_state() -> dict[str, Any]:
        return {**state, "config": config_to_dict(cfg)}

    def finish(done: _Expert) -> None:  # its file, then it counts as finished (the next checkpoint says so)
        entry = done.finish(images, targets, teacher, out_dir)
        state["finished"].append(entry)
        state["current"] = None
        print(f"expert {done.index + 1}/{cfg.num_experts}: final loss {entry['final_loss']:.5f} "
              f"({entry['seconds']:.0f} s)")

    def step(g: int) -> dict[str, Any]:
        nonlocal expert
        index, epoch = divmod(g, cfg.epochs)
        if expert is None or expert.index != index:
            expert = _Expert(cfg, index, images.shape[-1], teacher.feature_dim, device, state.get("current"))
        loss = expert.train_epoch(epoch, images, targets, teacher, show_progress)
        state["current"] = expert.state()
        if epoch + 1 == cfg.epochs:  # the last epoch is checkpointed before the expert's file is written
            run.checkpoint(g + 1, checkpoint_state)
            finish(expert)
        return {"expert": index + 1, "epoch": epoch + 1, "loss": loss}

    with run.log:
        if current is not None and len(current["losses"]) >= cfg.epochs:  # killed before its file was written
            finish(_Expert(cfg, current["index"], images.shape[-1], teacher.feature_dim, device, current))
            run.checkpoint(run.start, checkpoint_state)
        run.run(step, checkpoint_state)
    if len(state["finished"]) < cfg.num_experts:
        where = f"{len(state['finished'])} of {cfg.num_experts} experts"
        if run.timed_out and state.get("current") is not None:
            epochs = len(state["current"]["losses"])
            where += f" and {epochs} epoch{'' if epochs == 1 else 's'} of the next"
        why = f" (stop_after_minutes={cfg.stop_after_minutes:g})" if run.timed_out else ""
        print(f"paused after {where}{why}; continue with --resume")
        return None
    _write_manifest(cfg, out_dir, state, teacher, source, images.shape[-1], device)
    print(f"{cfg.num_experts} expert trajectories of {cfg.epochs} epochs saved to {out_dir}")
    return out_dir


class _Expert:
    """Expert `index` under training: a fresh student from its seed, or the one in the checkpoint (`current`)."""

    def __init__(self, cfg: ExpertsConfig, index: int, resolution: int, feature_dim: int, device: torch.device,
                 current: dict[str, Any] | None) -> None:
        self.cfg, self.index = cfg, index
        self.seed = expert_seed(cfg.seed, index)
        self.student = build_student(cfg, resolution, feature_dim, self.seed).to(device)
        self.flat = FlatModel(self.student)
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.generator = torch.Generator().manual_seed(self.seed)  # batch order (CPU)
        self.aug_generator = torch.Generator(device=device).manual_seed(self.seed + 1)
        self.trajectory, self.losses, self.elapsed = [self.flat.flatten().cpu()], [], 0.0
        if current is not None and current.get("index") == index:
            self.student.load_state_dict(current["model"])
            self.optimizer.load_state_dict(current["optimizer"])
            for group in self.optimizer.param_groups:  # the current lr (a resume after a numerical stop may lower it)
                group["lr"] = cfg.lr
            self.generator.set_state(current["generator"])
            self.aug_generator.set_state(current["aug_generator"])
            self.trajectory, self.losses = list(current["trajectory"]), list(current["losses"])
            self.elapsed = current["elapsed_s"]

    def train_epoch(self, epoch: int, images: torch.Tensor, targets: torch.Tensor, teacher: Teacher,
                    show_progress: bool) -> float:
        """One epoch of SGD on MSE to the teacher's representations; returns its mean loss."""
        cfg = self.cfg
        start = time.perf_counter()
        n = images.shape[0]
        steps = -(-n // cfg.batch_size)  # the last batch may be smaller (no image is dropped)
        order = torch.randperm(n, generator=self.generator).to(images.device)
        self.student.train()
        total = 0.0
        batches = bar(range(steps), desc=f"expert {self.index + 1}/{cfg.num_experts} epoch {epoch + 1}/{cfg.epochs}",
                      show=show_progress, leave=False)
        for step in batches:
            pick = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = to_float(images[pick])
            if cfg.augment == "crop_flip":
                x = crop_flip(x, 4, self.aug_generator)
            loss = F.mse_loss(self.student(normalize(x, teacher.mean, teacher.std)), targets[pick])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach())
        mean_loss = total / steps
        if mean_loss != mean_loss or mean_loss in (float("inf"), float("-inf")):
            raise FloatingPointError(f"expert {self.index + 1}'s loss became {mean_loss} in epoch {epoch + 1}")
        self.trajectory.append(self.flat.flatten().cpu())
        self.losses.append(mean_loss)
        self.elapsed += time.perf_counter() - start
        return mean_loss

    def state(self) -> dict[str, Any]:
        return {"index": self.index, "model": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "aug_generator": self.aug_generator.get_state(),
                "trajectory": self.trajectory, "losses": self.losses, "elapsed_s": self.elapsed}

    def finish(self, images: torch.Tensor, targets: torch.Tensor, teacher: Teacher, out_dir: Path) -> dict[str, Any]:
        """Write the expert's file (its trajectory and each image's loss at its end); returns its manifest entry."""
        sample_loss = _sample_loss(self.flat, self.trajectory[-1].to(images.device), images, targets, teacher)
        file = out_dir / expert_file(self.index)
        tensors = {"trajectory": torch.stack(self.trajectory).contiguous(),
                   "sample_loss": sample_loss.cpu().contiguous()}
        atomic_write(file, lambda tmp: save_file(tensors, str(tmp)))
        return {"file": file.name, "sha256": file_sha256(file), "seed": self.seed, "epoch_losses": self.losses,
                "final_loss": float(sample_loss.mean()), "seconds": self.elapsed}


@torch.no_grad()
def _sample_loss(flat: FlatModel, theta: torch.Tensor, images: torch.Tensor, targets: torch.Tensor,
                 teacher: Teacher, batch_size: int = 1024) -> torch.Tensor:
    """Each image's squared error (mean over d) under the parameters theta."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = normalize(to_float(images[start:start + batch_size]), teacher.mean, teacher.std)
        out.append(((flat(theta, x) - targets[start:start + batch_size]) ** 2).mean(dim=1))
    return torch.cat(out).float()


def _write_manifest(cfg: ExpertsConfig, out_dir: Path, state: dict[str, Any], teacher: Teacher, source: Any,
                    resolution: int, device: torch.device) -> None:
    student = build_student(cfg, resolution, teacher.feature_dim, 0)
    flat = FlatModel(student)
    experts = [{k: e[k] for k in ("file", "sha256", "seed", "final_loss", "epoch_losses", "seconds")}
               for e in state["finished"]]
    write_manifest(out_dir, {
        "kind": KIND, "format_version": FORMAT_VERSION,
        "teacher": {"path": cfg.teacher, "fingerprint": teacher.fingerprint,
                    "function_fingerprint": teacher.function_fingerprint, "feature_dim": teacher.feature_dim},
        "source": {"name": source.name, "images": len(source), "fingerprint": source.fingerprint()},
        "model": describe(cfg.model), "resolution": resolution, "layout": flat.layout(), "parameters": flat.size,
        "epochs": cfg.epochs, "experts": experts,
        "seconds": sum(e["seconds"] for e in experts),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "versions": versions(), "config": config_to_dict(cfg),
    })
