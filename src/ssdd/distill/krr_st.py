"""KRR-ST (Lee et al., ICLR 2024; method.md section 3).

Learned state: images X_s (m,3,H,W) in pixel space, initialised from m random real images, and
targets Y_s (m,d) initialised to the teacher's representations of them. Each outer step picks a pool
model, draws a crop+flipped real batch with teacher targets, and moves (X_s, Y_s) by AdamW on the
KRR loss; then the pool model takes one SGD step on (X_s, Y_s).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ssdd.augment import crop_flip, normalize, to_float
from ssdd.config import config_to_dict
from ssdd.distill.budget import samples_for_budget
from ssdd.distill.krr import krr_loss
from ssdd.distill.pool import ModelPool
from ssdd.distill.registry import DistillContext, DistillMethod, DistillResult, register_method
from ssdd.models import build_model
from ssdd.runtime import atomic_write

CHECKPOINT = "checkpoint.pt"


def linear_decay(step: int, total: int, final_ratio: float) -> float:
    """Multiplier of the base learning rate: 1 at step 0, final_ratio at the last step."""
    return 1.0 - (1.0 - final_ratio) * min(1.0, step / max(1, total - 1))


def distill_krr_st(ctx: DistillContext) -> DistillResult:
    cfg, krr, device, teacher = ctx.cfg, ctx.cfg.krr, ctx.device, ctx.teacher
    images_u8 = ctx.source.images
    n_source, image_shape = images_u8.shape[0], tuple(images_u8.shape[1:])
    m = samples_for_budget(cfg.budget, image_shape, teacher.feature_dim, cfg.count_targets, available=n_source)
    resolution = image_shape[-1]
    cpu_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    init_index = torch.randperm(n_source, generator=cpu_gen)[:m].sort().values
    x_s = to_float(images_u8[init_index.to(images_u8.device)]).clone().requires_grad_(True)
    with torch.no_grad():
        y_s = teacher(x_s).float().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([x_s, y_s], lr=krr.lr, weight_decay=0.0)
    pool = ModelPool(cfg.pool, lambda: build_model(krr.model, resolution), teacher.feature_dim, device, cpu_gen)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return normalize(x, teacher.mean, teacher.std)

    ckpt_path = ctx.out_dir / CHECKPOINT
    start, history, elapsed = 0, [], 0.0
    if ctx.resume:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        with torch.no_grad():
            x_s.copy_(state["images"])
            y_s.copy_(state["targets"])
        optimizer.load_state_dict(state["optimizer"])
        pool.load_state_dict(state["pool"])  # also restores cpu_gen
        aug_gen.set_state(state["aug_generator"])
        start, history, elapsed = state["step"], state["history"], state["elapsed_s"]
        # lines logged after the checkpoint will be logged again: keep the log equal to the history
        (ctx.out_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    else:
        warm_bar = tqdm(total=cfg.pool.size, desc="pool warm start", disable=not ctx.show_progress, leave=False)
        pool.warm_start(norm(x_s).detach(), y_s.detach(), progress=lambda _: warm_bar.update())
        warm_bar.close()

    stop = krr.steps if cfg.stop_after_steps <= 0 else min(krr.steps, start + cfg.stop_after_steps)
    bar = tqdm(range(start, stop), initial=start, total=krr.steps, desc="krr_st", disable=not ctx.show_progress,
               dynamic_ncols=True)
    window_loss, window_start = 0.0, time.perf_counter()
    run_start = time.perf_counter()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = krr.lr * linear_decay(step, krr.steps, krr.final_lr_ratio)
        j = pool.sample()
        batch_index = torch.randint(0, n_source, (krr.batch_size,), generator=cpu_gen).to(images_u8.device)
        with torch.no_grad():
            x_t = crop_flip(to_float(images_u8[batch_index]), krr.real_crop_padding, aug_gen)
            y_t = teacher(x_t).float()
            phi_t = pool.features(j, norm(x_t))
        phi_s = pool.features(j, norm(x_s))
        loss = krr_loss(phi_s, phi_t, y_s, y_t, krr.ridge)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"KRR loss became {loss.item()} at step {step}; lower krr.lr "
                                     f"(the last checkpoint is intact)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        pool.train_step(j, norm(x_s).detach(), y_s.detach())
        window_loss += float(loss.detach())
        done = step + 1
        if done % cfg.log_every == 0 or done == stop:
            count = (done - 1) % cfg.log_every + 1
            rate = count / max(time.perf_counter() - window_start, 1e-9)
            record = {"step": done, "loss": window_loss / count, "steps_per_s": rate,
                      "lr": optimizer.param_groups[0]["lr"], "pool_resets": pool.resets}
            history.append(record)
            with open(ctx.out_dir / "metrics.jsonl", "a") as log:
                log.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{record['loss']:.4f}", steps_s=f"{rate:.2f}")
            window_loss, window_start = 0.0, time.perf_counter()
        if done % cfg.checkpoint_every == 0 or done == stop:
            _save(ckpt_path, x_s, y_s, optimizer, pool, aug_gen, done, history,
                  elapsed + time.perf_counter() - run_start, config_to_dict(cfg))
    bar.close()
    elapsed += time.perf_counter() - run_start
    info: dict[str, Any] = {"m": m, "steps": krr.steps, "steps_done": stop, "pool_resets": pool.resets,
                            "final_loss": history[-1]["loss"] if history else None, "distill_seconds": elapsed,
                            "init_indices": init_index.tolist()}
    stored = {"images": x_s.detach().cpu(), "targets": y_s.detach().cpu()}
    return DistillResult(stored, info, finished=stop >= krr.steps)


def _save(path: Path, x_s: torch.Tensor, y_s: torch.Tensor, optimizer: torch.optim.Optimizer, pool: ModelPool,
          aug_gen: torch.Generator, step: int, history: list[dict[str, Any]], elapsed: float,
          config: dict[str, Any]) -> None:
    state = {"config": config, "images": x_s.detach().cpu(), "targets": y_s.detach().cpu(),
             "optimizer": optimizer.state_dict(), "pool": pool.state_dict(), "aug_generator": aug_gen.get_state(),
             "step": step, "history": history, "elapsed_s": elapsed}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def reconstruct_krr_st(stored: dict[str, torch.Tensor], manifest: dict[str, Any]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    return stored["images"].float(), stored["targets"].float()


register_method(DistillMethod("krr_st", distill_krr_st, reconstruct_krr_st))
