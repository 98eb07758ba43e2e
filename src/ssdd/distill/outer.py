"""The bilevel outer loop shared by KRR-ST and Boost (docs/method.md section 3, steps 1-6).

A method hands over its learned tensors and a `support()` function that turns them into the distilled
views (images in [0,1] and their targets, differentiable); the loop owns the model pool, the real
batches, the KRR loss and AdamW with linear decay; `ssdd.run.loop` runs its steps (the metrics log, the
checkpoint, resume), so that resuming any method reproduces an uninterrupted run.

Under torchrun every process runs the loop with the same generators: each draws and augments the same
real batch and keeps its contiguous slice for the teacher and the pool member; the support is embedded
whole on each process or, with outer.split_support, split and all-gathered with its gradients; each
process's loss is its share of the mean over the batch, and the gradients and the loss are summed over
the processes, so every process takes one process's AdamW step. The pool step is taken everywhere and
rank 0's result broadcast. Rank 0 alone writes the log and the checkpoints (a checkpoint holds no
per-process state, so it resumes under any number of processes). With the teacher cache
(outer.teacher_cache) every process builds and holds the whole cache and looks up its slice's targets.

The fast paths (outer.fast, outer.teacher_cache, outer.compile; docs/performance.md "Fast paths on a GPU") keep
the plain path's random draws and maths: the real-batch augmentation is drawn (RealViews.draw, the plain generator
calls) apart from its application, so a step can look its teacher targets up by (image, view) instead of running
the teacher. The step has fixed shapes and no Python branch on a tensor's value; outer.compile runs the pool
members' forwards through torch.compile.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ssdd.augment import normalize, to_float
from ssdd.augment.pipelines import crop_flip_at, crop_flip_draws
from ssdd.config import ModelConfig, config_to_dict
from ssdd.distill.krr import krr_loss, krr_solve_dtype
from ssdd.distill.pool import ModelPool, call_module
from ssdd.distill.registry import DistillContext
from ssdd.distill.views import view_draws, views_at
from ssdd.models import build_model
from ssdd.run import distributed as D
from ssdd.run.compiled import compiled
from ssdd.run.guard import Diverged
from ssdd.run.loop import RunLoop, Watched
from ssdd.run.progress import note, phase, progress_bar
from ssdd.run.runtime import channels_last, forward_precision, gpu_path, precision_dtype, to_device

OUTER_SANE_FACTOR = 10.0  # how far the distilled images and targets may grow before a run counts as diverged


@dataclass
class OuterConfig:
    """The outer loop that KRR-ST and Boost share (`outer.*`; called `krr.*` before, which still works)."""

    steps: int = 160_000  # outer steps T
    batch_size: int = 1024  # real images per outer step
    lr: float = 1e-4  # AdamW on images and targets (1e-5 for 64 px sources)
    final_lr_ratio: float = 1e-3  # linear decay to final_lr_ratio * lr over the steps
    ridge: float = 1e-6  # lambda = ridge * trace(K_ss), the same lambda in both forms
    form: str = "auto"  # auto (primal when support rows > features + 1, else dual) | primal | dual
    # auto (float64 in the primal form, float32 in the dual) | float32 | float64: the kernel and its solve;
    # features stay in their dtype
    solve_dtype: str = "auto"
    real_crop_padding: int = 4  # RandomCrop(padding) + flip on the real batch
    # under torchrun every process embeds its slice of the real batch; true: also its slice of the support
    # (distilled) rows, all-gathered with gradients (faster at every size measured; same result to rounding)
    split_support: bool = True
    # auto (= on) | on | off: pool members, teacher and batches in the channels-last memory format (same
    # results to float rounding; measured faster on the CPU, docs/performance.md "KRR-ST against the official code")
    channels_last: str = "auto"
    # auto (= on on CUDA, off on the CPU) | on | off: the step without host synchronisation (the loss summed on
    # the device and checked for NaN once per log window, a sync-free KRR solve, every predefined view computed
    # and selected) and with cuDNN's autotuned convolutions; the same results to float rounding
    # (docs/performance.md "Fast paths on a GPU")
    fast: str = "auto"
    # auto | on | off: the teacher's targets of every real image under every real-batch view computed once,
    # before the loop, and looked up at each step (the same targets to float rounding). auto = on on CUDA when
    # it saves teacher forwards and takes at most half of the free device memory
    teacher_cache: str = "auto"
    # auto (= on on CUDA where torch.compile works) | on | off: the pool members' forwards, and so their backwards,
    # through torch.compile (one compiled graph serves every member); the same results to float rounding. off by
    # default until a GPU measurement says it pays (docs/performance.md "Fast paths on a GPU")
    compile: str = "off"
    precision: str = "fp32"  # fp32 | bf16: the pool member's forwards (bf16 autocast; the KRR solve stays as set)
    teacher_precision: str = "fp32"  # fp32 | bf16: the teacher's forwards in the loop (and the cache's)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="convnet", width=128, depth=3))


@dataclass
class Support:
    """The distilled side of one outer step."""

    images: torch.Tensor  # (M, 3, H, W) in [0, 1]
    targets: torch.Tensor  # (M, d)
    kernel_rows: int | None = None  # only the first rows enter the kernel (None = all); the pool trains on all


@dataclass
class LoopResult:
    steps_done: int
    finished: bool
    elapsed_s: float
    pool_resets: int
    history: list[dict[str, Any]] = field(default_factory=list)
    # the builds of the teacher cache, every invocation's together (a resumed run builds it again; None: no
    # cache), not in elapsed_s
    teacher_cache_s: float | None = None
    # the steps at which a resume found no pool members in its checkpoint and warm-started a fresh pool
    pool_rebuilt_at: list[int] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        """The loop's entries of a distilled set's manifest (the method adds its own)."""
        out = {"steps_done": self.steps_done, "pool_resets": self.pool_resets, "final_loss": self.final_loss,
               "distill_seconds": self.elapsed_s}
        if self.teacher_cache_s is not None:
            out["teacher_cache_s"] = self.teacher_cache_s
        if self.pool_rebuilt_at:
            out["pool_rebuilt_at"] = self.pool_rebuilt_at
        return out

    @property
    def final_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None


def linear_decay(step: int, total: int, final_ratio: float) -> float:
    """Multiplier of the base learning rate: 1 at step 0, final_ratio at the last step."""
    return 1.0 - (1.0 - final_ratio) * min(1.0, step / max(1, total - 1))


@dataclass(frozen=True)
class RealDraw:
    """The random parameters of one real batch's augmentation (RealViews.draw)."""

    offsets: torch.Tensor  # (2, B) crop offsets into the padded images
    flips: torch.Tensor  # (B,) bool
    choice: torch.Tensor  # (B,) index into RealViews.views (zeros without views)


@dataclass(frozen=True)
class RealViews:
    """The real batch's augmentation: RandomCrop(padding, zero pad) + horizontal flip, then (Boost's
    real_views=predefined) one of the predefined `views` per image. It has finitely many deterministic views,
    (2 padding + 1)^2 * 2 * max(1, len(views)), numbered by `index`; the teacher cache holds each image's
    targets under each of them. `draw` makes the generator calls crop_flip and random_views make, in their order,
    so the random stream is that of the plain augmentation."""

    padding: int
    views: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return (2 * max(self.padding, 0) + 1) ** 2 * 2 * max(1, len(self.views))

    def draw(self, batch: int, generator: torch.Generator, device: torch.device) -> RealDraw:
        offsets, flips = crop_flip_draws(batch, self.padding, generator, device)
        choice = view_draws(batch, self.views, generator, device) if self.views else \
            torch.zeros(batch, dtype=torch.long, device=device)
        return RealDraw(offsets, flips, choice)

    def apply(self, x: torch.Tensor, draw: RealDraw, sync_free: bool = False) -> torch.Tensor:
        """The views `draw` picked of the float images x (crop_flip, then random_views)."""
        x = crop_flip_at(x, self.padding, draw.offsets, draw.flips)
        return views_at(x, self.views, draw.choice, sync_free) if self.views else x

    def index(self, draw: RealDraw) -> torch.Tensor:
        """Each image's view number in [0, count): ((row * (2p + 1) + column) * 2 + flip) * K + choice."""
        side = 2 * max(self.padding, 0) + 1
        crop = (draw.offsets[0] * side + draw.offsets[1]) * 2 + draw.flips.long()
        return crop * max(1, len(self.views)) + draw.choice

    def fixed(self, view: int, batch: int, device: torch.device) -> RealDraw:
        """The draw that gives every one of `batch` images view number `view` (the inverse of `index`)."""
        side, k = 2 * max(self.padding, 0) + 1, max(1, len(self.views))
        crop, choice = divmod(view, k)
        position, flip = divmod(crop, 2)
        row, column = divmod(position, side)
        offsets = torch.stack([torch.full((batch,), row, dtype=torch.long, device=device),  # no host-to-device copy
                               torch.full((batch,), column, dtype=torch.long, device=device)])
        return RealDraw(offsets, torch.full((batch,), bool(flip), device=device),
                        torch.full((batch,), choice, dtype=torch.long, device=device))


def teacher_targets(teacher: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The teacher's float32 targets of float images x (autocast to `dtype` when set)."""
    with forward_precision(x.device, dtype):
        return teacher(x).float()


def build_teacher_cache(teacher: torch.nn.Module, images_u8: torch.Tensor, augment: RealViews, chunk: int,
                        layout: torch.memory_format, dtype: torch.dtype | None) -> torch.Tensor:
    """(n_source, views, d) float32 on the images' device: every source image's teacher target under every view
    of the real-batch augmentation, by a chunked forward. The teacher stays in eval mode (BatchNorm's running
    statistics), so an image's target does not depend on the batch it is computed in.

    Under torchrun the processes share the work: process r computes chunks r, r + world, ... (the same chunks, so
    the same bits, as one process) into a cache of -0.0, and a sum over the processes fills in the rest: each
    holds the whole cache (its steps draw from every image) for 1/world of the forwards."""
    n_source = images_u8.shape[0]
    rank, world = D.rank_and_world()
    shape = (n_source, augment.count, teacher.feature_dim)
    # the others' chunks start at -0.0, the one float with x + (-0.0) == x bit for bit for every x (+0.0 too)
    cache = (torch.full(shape, -0.0, dtype=torch.float32, device=images_u8.device) if world > 1
             else torch.empty(shape, dtype=torch.float32, device=images_u8.device))
    teacher.eval()
    with torch.no_grad():
        for number, (view, start) in enumerate((v, s) for v in range(augment.count) for s in range(0, n_source, chunk)):
            if number % world != rank:
                continue
            x = to_float(images_u8[start : start + chunk])
            x = augment.apply(x, augment.fixed(view, x.shape[0], x.device), sync_free=True)
            cache[start : start + chunk, view] = teacher_targets(teacher, x.contiguous(memory_format=layout), dtype)
    D.all_reduce_sum_([cache])  # every chunk keeps its computing process's bits (in place: no copy)
    return cache


def cache_wanted(setting: object, device: torch.device, n_source: int, augment: RealViews, feature_dim: int,
                 forwards: int) -> bool:
    """Whether the loop builds the teacher cache (outer.teacher_cache): on, off, or auto = on CUDA when the
    cache's forwards (n_source * views) are fewer than the `forwards` the loop would run this invocation and
    its float32 targets take at most half of the free device memory (says so in one line when they do not)."""
    mode = gpu_path(setting, "outer.teacher_cache", device)
    if mode != "auto":
        return mode == "on"
    if n_source * augment.count >= forwards:
        return False
    need = n_source * augment.count * feature_dim * 4
    free = torch.cuda.mem_get_info(device)[0]
    if need > free / 2:
        note(f"outer.teacher_cache=auto: off, the teacher cache ({n_source:,} images x {augment.count} views) would "
             f"take {need / 2**30:.1f} GiB, over half of the {free / 2**30:.1f} GiB free on {device}")
        return False
    return True


@contextlib.contextmanager
def conv_autotune(enabled: bool) -> Iterator[None]:
    """With `enabled`, cuDNN times its convolution algorithms on the first calls of each shape and keeps the
    fastest (the step's shapes are fixed); restored afterwards. Another algorithm rounds differently, so only
    the fast path asks for it; the CPU's convolutions ignore it."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def outer_loop(ctx: DistillContext, name: str, tensors: dict[str, torch.Tensor], support: Callable[[], Support],
               augment: RealViews, cpu_gen: torch.Generator, aug_gen: torch.Generator,
               lr_scales: dict[str, float] | None = None) -> LoopResult:
    """Run (or resume) the outer steps on `tensors` (leaves with requires_grad, updated in place).

    `augment` augments each real batch (float in [0,1]) before the teacher sees it; cpu_gen draws pool members
    and real batches (it is checkpointed with the pool), aug_gen drives the augmentation."""
    cfg, outer, device, teacher = ctx.cfg, ctx.cfg.outer, ctx.device, ctx.teacher
    images_u8 = ctx.source.images
    n_source = images_u8.shape[0]
    scales = lr_scales or {}
    groups = [{"params": [t], "lr_scale": scales.get(key, 1.0), "name": key} for key, t in tensors.items()]
    optimizer = torch.optim.AdamW(groups, lr=outer.lr, weight_decay=0.0)
    learned = list(tensors.values())
    solve_dtype = krr_solve_dtype(outer.solve_dtype)
    layout = (torch.channels_last if channels_last(outer.channels_last, "outer.channels_last")
              else torch.contiguous_format)
    members_forward = compiled(call_module, outer.compile, device, "the pool members", key="outer.compile",
                               who="ssdd distill")
    pool = ModelPool(cfg.pool, lambda: build_model(outer.model, images_u8.shape[-1]), teacher.feature_dim, device,
                     cpu_gen, layout, members_forward)
    teacher.to(memory_format=layout)
    fast = gpu_path(outer.fast, "outer.fast", device) != "off"
    member_dtype = precision_dtype(outer.precision, "outer.precision")
    teacher_dtype = precision_dtype(outer.teacher_precision, "outer.teacher_precision")

    def norm(x: torch.Tensor) -> torch.Tensor:  # the network input, in the networks' memory format
        return normalize(x, teacher.mean, teacher.std).contiguous(memory_format=layout)

    run = RunLoop(ctx.out_dir, total=outer.steps, settings=("outer.lr", "pool.lr"), stop_after=cfg.stop_after_steps,
                  log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every, desc=name,
                  show_progress=ctx.show_progress, is_main=ctx.dist.is_main, log=ctx.log, prefix="distill/",
                  shared=ctx.dist.world_size > 1, time_limit_s=60 * cfg.stop_after_minutes, started=ctx.started)
    cache_s: float | None = None  # the teacher cache's builds so far (seconds)
    rebuilt: list[int] = []  # the steps at which a resume warm-started a pool carried without its members

    def warm_start() -> None:
        with torch.no_grad():
            first = support()
        with phase(f"pool warm start: {cfg.pool.size} models, up to {cfg.pool.max_steps - 1} steps each on "
                   f"{first.images.shape[0]:,} views"):
            warm_bar = progress_bar(total=cfg.pool.size, desc="pool warm start", disable=not ctx.show_progress,
                                    leave=False, unit="model")
            pool.warm_start(norm(first.images), first.targets, progress=lambda _: warm_bar.update(),
                            autocast=member_dtype)
            warm_bar.close()
        # whatever each process computed, rank 0's start is everyone's
        D.broadcast_(learned + [t for j in range(cfg.pool.size) for t in pool.member_tensors(j)])
        pool.check_warm_start()  # on the shared state: every process stops alike

    if ctx.resume:
        state = run.load()
        missing = sorted(set(tensors) - set(state["tensors"]))
        if missing:
            raise ValueError(f"{run.path} has no {', '.join(missing)}: it was written by another method or version")
        with torch.no_grad():
            for key, tensor in tensors.items():
                tensor.copy_(state["tensors"][key])
        optimizer.load_state_dict(state["optimizer"])
        aug_gen.set_state(state["aug_generator"])
        cache_s = state.get("teacher_cache_s")  # the earlier invocations' builds (absent: none built one)
        rebuilt = list(state.get("pool_rebuilt_at", []))
        if not pool.load_state_dict(state["pool"]):  # (it restores cpu_gen either way)
            if ctx.dist.is_main:
                print(f"ssdd distill: warning: {run.path} holds no pool members (carried without them): a fresh "
                      f"pool, warm-started on the set of step {run.start}, goes on from there (the manifest's "
                      f"pool_rebuilt_at)", file=sys.stderr)
            warm_start()
            rebuilt.append(run.start)
    else:
        warm_start()

    query = D.rank_rows(outer.batch_size)  # this process's rows of every real batch
    share = (query.stop - query.start) / outer.batch_size
    # the cache is rebuilt by every invocation (never checkpointed); every torchrun process holds it whole, and
    # they share its build (build_teacher_cache)
    cache = None
    forwards = (run.stop - run.start) * (query.stop - query.start)
    # rank 0 decides for every torchrun process (their free memory may differ; a split decision would only
    # change rounding, but the processes building the cache would keep the others waiting at the first step)
    if D.on_main(lambda: cache_wanted(outer.teacher_cache, device, n_source, augment, teacher.feature_dim,
                                      forwards)):
        started = time.perf_counter()
        with phase(f"teacher cache: {n_source:,} images x {augment.count} real-batch views"), conv_autotune(fast):
            cache = build_teacher_cache(teacher, images_u8, augment, outer.batch_size, layout, teacher_dtype)
            if cache.is_cuda:
                torch.cuda.synchronize(cache.device)  # once: the build's time is its kernels' time
        cache_s = (cache_s or 0.0) + time.perf_counter() - started

    def step(step: int) -> float | torch.Tensor:
        decay = linear_decay(step, outer.steps, outer.final_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = outer.lr * group["lr_scale"] * decay
        j = pool.sample()
        batch_index = to_device(torch.randint(0, n_source, (outer.batch_size,), generator=cpu_gen), images_u8.device)
        with torch.no_grad():  # every process augments the whole batch (one process's draws), embeds its slice
            draw = augment.draw(outer.batch_size, aug_gen, images_u8.device)
            x_t = augment.apply(to_float(images_u8[batch_index]), draw, fast)[query].contiguous(memory_format=layout)
            if cache is None:
                y_t = teacher_targets(teacher, x_t, teacher_dtype)
            else:
                y_t = cache[batch_index[query], augment.index(draw)[query]]
            with forward_precision(device, member_dtype):
                phi_t = pool.features(j, norm(x_t))
        current = support()
        rows = current.kernel_rows or current.images.shape[0]
        with forward_precision(device, member_dtype):
            phi_s = support_features(pool, j, norm(current.images[:rows]), split_support(outer.split_support, rows))
        # this slice's share of the mean over the whole batch: the shares add up to one process's loss
        loss = krr_loss(phi_s, phi_t, current.targets[:rows], y_t, outer.ridge, outer.form, solve_dtype,
                        sync_free=fast) * share
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=learned)  # no gradients for the pool member's weights: they are not used
        loss = sum_over_processes(loss.detach(), learned)
        if not fast and not torch.isfinite(loss):  # the fast path's loss is checked by `run` once per log window
            if not pool.finite(j):  # the member's own training diverged, not the set's
                raise Diverged(f"KRR loss became {loss.item()} at step {step + 1}: pool member {j + 1}'s weights "
                               f"are not finite", "pool.lr")
            raise FloatingPointError(f"KRR loss became {loss.item()} at step {step + 1}")
        optimizer.step()
        with torch.no_grad():
            after = support()
        pool.train(j, norm(after.images), after.targets, autocast=member_dtype)
        D.broadcast_(pool.member_tensors(j))  # rank 0's step for all (GPU kernels need not agree to the bit)
        return loss if fast else float(loss)

    def record(done: int) -> dict[str, Any]:
        return {"lr": outer.lr * linear_decay(done - 1, outer.steps, outer.final_lr_ratio), "pool_resets": pool.resets}

    def state() -> dict[str, Any]:
        return {"config": config_to_dict(cfg), "tensors": {k: t.detach().cpu() for k, t in tensors.items()},
                "optimizer": optimizer.state_dict(), "pool": pool.state_dict(), "aug_generator": aug_gen.get_state(),
                **({"teacher_cache_s": cache_s} if cache_s is not None else {}),
                **({"pool_rebuilt_at": rebuilt} if rebuilt else {})}

    def watch() -> list[Watched]:  # what the kernel sees: images in [0, 1] and targets in the teacher's space
        with torch.no_grad():
            views = support()
        # KRR-ST's and Boost's images stay near the pixel range and their targets near the teacher's: in every
        # committed set the largest value is at most 1.5 times its start, so 10 times leaves a wide margin and
        # stops a run whose state would diverge at its next step (issue: images at 61 times, NaN one step later)
        return [Watched("the distilled images", views.images, "outer.lr", OUTER_SANE_FACTOR),
                Watched("the distilled targets", views.targets, "outer.lr", OUTER_SANE_FACTOR)]

    with conv_autotune(fast):
        run.run(step, state, record, watch)
    D.check_replicas_agree(learned, "the distilled tensors")
    return LoopResult(run.stop, run.finished, run.elapsed, pool.resets, run.history, cache_s, rebuilt)


def split_support(enabled: bool, rows: int) -> bool:
    """Whether the torchrun processes split the `rows` support (distilled) rows of a step between them:
    when `outer.split_support` asks for it and every process gets at least one row (see docs/performance.md,
    "Distillation on several processes")."""
    sizes = D.split_sizes(rows)
    return bool(enabled) and len(sizes) > 1 and min(sizes) > 0


def support_features(pool: ModelPool, j: int, images: torch.Tensor, split: bool) -> torch.Tensor:
    """phi_j of the support rows, differentiable. With `split`, each process embeds its contiguous slice and
    the slices are all-gathered with their gradients (the backward sums every process's gradient)."""
    if not split:
        return pool.features(j, images)
    return D.gather_with_grad(pool.features(j, images[D.rank_rows(images.shape[0])]), D.split_sizes(images.shape[0]))


def sum_over_processes(loss: torch.Tensor, learned: list[torch.Tensor]) -> torch.Tensor:
    """Sum the gradients of the learned tensors and the (detached) loss over the processes, in one all_reduce,
    so every process holds the gradient and the loss of one process on the whole batch (identity without
    torchrun). A tensor without a gradient has none on every process (the graphs have the same shape)."""
    grads = [t.grad for t in learned if t.grad is not None]
    total = loss.reshape(1).clone()
    D.all_reduce_sum_([*grads, total])
    return total[0]
