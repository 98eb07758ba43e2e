"""The outer loop's fast paths against its plain path: the real-batch views split into draws and their
application, the teacher cache, the sync-free step, and the opt-in bf16 forwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssdd.augment import crop_flip, to_float
from ssdd.config import ModelConfig, load_config
from ssdd.distill.config import DistillConfig, with_legacy_values
from ssdd.distill.outer import RealViews, build_teacher_cache, cache_wanted
from ssdd.distill.pool import ModelPool, PoolConfig, call_module
from ssdd.distill.run import run_distill
from ssdd.distill.views import random_views
from ssdd.models import build_model
from ssdd.run.compiled import compile_unavailable, compiled
from ssdd.run.loop import RunLoop
from ssdd.teacher import load_teacher

pytestmark = pytest.mark.usefixtures("one_thread")

PREDEFINED = ("identity", "rot90", "brightness_1.2")  # a pixel permutation and a photometric view (float images)
SMOKE = ["data.resolution=16", "outer.steps=8", "outer.batch_size=16", "pool.size=2", "pool.max_steps=4",
         "outer.model.width=4", "outer.model.depth=2", "device=cpu", "log_every=3", "checkpoint_every=4",
         "outer.lr=0.01", "outer.real_crop_padding=2"]
BOOST = ["method=boost", "budget=3", "boost.image_bases=8", "boost.image_resolution=8", "boost.target_bases=4",
         "boost.approx_steps=20", f"boost.augmentations=[{','.join(PREDEFINED)}]"]
FAST = ["outer.fast=on", "outer.teacher_cache=on"]


def _images(n: int = 24, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def _plain(augment: RealViews, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """What the loop did before the split: crop_flip, then (Boost's predefined real views) random_views."""
    x = crop_flip(x, augment.padding, generator)
    return random_views(x, augment.views, generator) if augment.views else x


@pytest.mark.parametrize("augment", [RealViews(2), RealViews(0), RealViews(1, PREDEFINED)],
                         ids=["krr_st", "no_padding", "boost_predefined"])
def test_real_views_draw_the_plain_stream_and_number_every_view(augment):
    """draw + apply is the plain augmentation (same images, generator left in the same state); each image's
    view number, turned back into a draw by `fixed`, gives that image's view alone."""
    x = to_float(_images())
    plain_gen, split_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    plain = _plain(augment, x, plain_gen)
    draw = augment.draw(x.shape[0], split_gen, x.device)
    assert torch.equal(augment.apply(x, draw), plain)
    assert torch.allclose(augment.apply(x, draw, sync_free=True), plain, atol=1e-6)
    assert torch.equal(plain_gen.get_state(), split_gen.get_state())
    index = augment.index(draw)
    assert int(index.min()) >= 0 and int(index.max()) < augment.count
    for i, view in enumerate(index.tolist()):
        alone = augment.apply(x[i : i + 1], augment.fixed(view, 1, x.device))
        assert torch.allclose(alone[0], plain[i], atol=1e-6), (i, view)


@pytest.mark.parametrize("augment", [RealViews(1), RealViews(1, PREDEFINED)], ids=["krr_st", "boost_predefined"])
def test_cached_teacher_targets_equal_the_per_step_teacher_forward(augment, tiny_teacher):
    teacher = load_teacher(tiny_teacher, torch.device("cpu"))
    images_u8 = _images()
    cache = build_teacher_cache(teacher, images_u8, augment, chunk=7, layout=torch.contiguous_format, dtype=None)
    assert cache.shape == (24, augment.count, teacher.feature_dim) and cache.dtype == torch.float32
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):  # three real batches of 16, with repeats
        batch_index = torch.randint(0, 24, (16,), generator=generator)
        draw = augment.draw(16, generator, images_u8.device)
        with torch.no_grad():
            per_step = teacher(augment.apply(to_float(images_u8[batch_index]), draw)).float()
        assert torch.allclose(cache[batch_index, augment.index(draw)], per_step, atol=1e-5, rtol=1e-5)


def _cache_worker(rank: int, port: int, teacher_path: str, out: str) -> None:
    import datetime
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    torch.set_num_threads(1)
    teacher = load_teacher(teacher_path, torch.device("cpu"))
    calls = []
    teacher.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    cache = build_teacher_cache(teacher, _images(), RealViews(1), chunk=7, layout=torch.contiguous_format, dtype=None)
    torch.save({"cache": cache, "images": sum(calls)}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_share_the_cache_build_and_each_holds_the_one_process_cache(tiny_teacher, tmp_path):
    """Under torchrun every process computes every other chunk and the sum fills the rest: each ends with the
    single process's cache, bit for bit, after about half of the teacher forwards."""
    import torch.multiprocessing as mp

    from conftest import free_port

    teacher = load_teacher(tiny_teacher, torch.device("cpu"))
    alone = build_teacher_cache(teacher, _images(), RealViews(1), chunk=7, layout=torch.contiguous_format, dtype=None)
    mp.start_processes(_cache_worker, args=(free_port(), str(tiny_teacher), str(tmp_path)), nprocs=2,
                       start_method="spawn")
    shares = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    for share in shares:  # bit patterns: torch.equal would take -0.0 for +0.0
        assert torch.equal(share["cache"].view(torch.int32), alone.view(torch.int32))
    views = RealViews(1).count  # 24 images in chunks of 7, 7, 7, 3 per view: process 0 takes the 1st and 3rd
    assert [share["images"] for share in shares] == [(7 + 7) * views, (7 + 3) * views]


def test_the_cache_is_built_when_asked_and_on_cuda_only_when_it_saves_work_and_fits(monkeypatch):
    augment = RealViews(4)  # 162 views
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert cache_wanted("on", cpu, 100, augment, 8, 1) and cache_wanted(True, cpu, 100, augment, 8, 1)
    assert not cache_wanted("off", cuda, 100, augment, 8, 10**9) and not cache_wanted(False, cuda, 100, augment, 8, 1)
    assert not cache_wanted("auto", cpu, 100, augment, 8, 10**9)  # CPU results stay bit-identical
    notes: list[str] = []
    monkeypatch.setattr("ssdd.distill.outer.note", notes.append)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2**30, 2**31))
    assert cache_wanted("auto", cuda, 100, augment, 8, 100 * 162 + 1)
    assert not cache_wanted("auto", cuda, 100, augment, 8, 100 * 162)  # no teacher forward saved
    assert not notes
    assert not cache_wanted("auto", cuda, 10**6, augment, 512, 10**12)  # 309 GiB: over half of the 1 GiB free
    assert len(notes) == 1 and "outer.teacher_cache=auto: off" in notes[0] and "GiB" in notes[0]
    with pytest.raises(ValueError, match=r"outer\.teacher_cache"):
        cache_wanted("sometimes", cpu, 100, augment, 8, 1)


def _run(npz: Path, teacher: Path, out: Path, *extra: str):
    cfg = load_config(DistillConfig, None, [f"data.path={npz}", f"teacher={teacher}", f"out_dir={out}", *SMOKE,
                                            *extra])
    return run_distill(cfg, show_progress=False)


@pytest.mark.parametrize("method", [["method=krr_st", "budget=10"], BOOST], ids=["krr_st", "boost"])
def test_the_fast_path_distils_what_the_plain_path_does(method, tiny_npz, tiny_teacher, tmp_path):
    """outer.fast=on with the teacher cache on, forced on the CPU: the same log and the same set as the plain
    path, to float rounding (Boost with predefined real views, a photometric one among them)."""
    plain = _run(tiny_npz, tiny_teacher, tmp_path / "plain", *method, "outer.fast=off", "outer.teacher_cache=off")
    fast = _run(tiny_npz, tiny_teacher, tmp_path / "fast", *method, *FAST)
    rows = {name: [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").open()]
            for name in ("plain", "fast")}
    assert len(rows["plain"]) == 3
    assert torch.allclose(torch.tensor(rows["fast"]), torch.tensor(rows["plain"]), rtol=1e-4, atol=1e-6)
    assert set(fast.stored) == set(plain.stored)
    assert fast.manifest["teacher_cache_s"] > 0 and "teacher_cache_s" not in plain.manifest  # the build's own time
    for key, tensor in plain.stored.items():
        assert torch.allclose(fast.stored[key], tensor, rtol=1e-4, atol=1e-5), key


def test_bf16_forwards_run_and_stay_close(tiny_npz, tiny_teacher, tmp_path):
    """outer.precision and outer.teacher_precision=bf16 (opt-in: results change beyond rounding) distil a
    finite set near the float32 one; older configs without them keep meaning fp32."""
    fp32 = _run(tiny_npz, tiny_teacher, tmp_path / "fp32", "method=krr_st", "budget=10")
    bf16 = _run(tiny_npz, tiny_teacher, tmp_path / "bf16", "method=krr_st", "budget=10", "outer.precision=bf16",
                "outer.teacher_precision=bf16")
    for key, tensor in fp32.stored.items():
        assert torch.isfinite(bf16.stored[key]).all()
        assert (bf16.stored[key] - tensor).abs().max() < 0.1 * tensor.abs().max(), key
    saved = with_legacy_values({"krr": {"lr": 0.1}, "pool": {}})  # a run saved before the settings existed
    assert saved["outer"] == {"lr": 0.1, "precision": "fp32", "teacher_precision": "fp32"} and "krr" not in saved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_fast_step_never_waits_for_the_gpu(tiny_npz, tiny_teacher, tmp_path, monkeypatch):
    """Every outer step of the fast path after two warm-up steps runs under torch.cuda's sync debug mode
    "error" (any host synchronisation raises); the loop's own reads (log window, checkpoint) lie outside the
    steps. The pool never re-initialises a member here (that copies a fresh CPU model, which waits). The set is
    the plain path's."""
    original = RunLoop.run

    def guarded_run(self, step, *args, **kwargs):
        def guarded(i):
            if i < 2:  # warm-up: cuDNN's autotuning and the libraries' lazy set-up
                return step(i)
            torch.cuda.set_sync_debug_mode("error")
            try:
                return step(i)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        return original(self, guarded, *args, **kwargs)

    cuda = ["device=cuda", "pool.max_steps=1000", "outer.solve_dtype=float64"]
    plain = _run(tiny_npz, tiny_teacher, tmp_path / "plain", *BOOST, *cuda, "outer.fast=off", "outer.teacher_cache=off")
    monkeypatch.setattr(RunLoop, "run", guarded_run)
    fast = _run(tiny_npz, tiny_teacher, tmp_path / "fast", *BOOST, *cuda, *FAST)
    for key, tensor in plain.stored.items():
        assert torch.allclose(fast.stored[key], tensor, rtol=1e-3, atol=1e-4), key


def test_a_resumed_run_rebuilds_the_cache_and_ends_where_an_uninterrupted_one_does(tiny_npz, tiny_teacher, tmp_path,
                                                                                    monkeypatch):
    import ssdd.distill.outer as outer

    builds = []
    monkeypatch.setattr(outer, "build_teacher_cache", lambda *a, **k: builds.append(1) or build_teacher_cache(*a, **k))
    krr_st = ["method=krr_st", "budget=10", *FAST]
    whole = _run(tiny_npz, tiny_teacher, tmp_path / "whole", *krr_st)
    assert _run(tiny_npz, tiny_teacher, tmp_path / "cut", *krr_st, "stop_after_steps=5") is None
    state = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    # nothing cached is checkpointed, only the seconds its build took (the manifest adds every invocation's)
    assert [key for key in state if "cache" in key] == ["teacher_cache_s"] and state["teacher_cache_s"] > 0
    cfg = load_config(DistillConfig, None, [f"data.path={tiny_npz}", f"teacher={tiny_teacher}",
                                            f"out_dir={tmp_path / 'cut'}", *SMOKE, *krr_st])
    resumed = run_distill(cfg, resume=True, show_progress=False)
    assert len(builds) == 3  # the whole run, the paused one and the resumed one each built it
    assert resumed.manifest["teacher_cache_s"] > state["teacher_cache_s"]  # both builds of the cut run
    for key, tensor in whole.stored.items():
        assert torch.allclose(resumed.stored[key], tensor, rtol=1e-5, atol=1e-6), key


def _needs_compile() -> None:
    reason = compile_unavailable(torch.device("cpu"))
    if reason:
        pytest.skip(reason)


def test_a_compiled_member_steps_as_an_eager_one():
    """One member's features (with and without gradients) and one pool-training step (BatchNorm's running
    statistics included) through torch.compile: the eager numbers to float rounding."""
    _needs_compile()
    torch._dynamo.reset()
    cfg, model = PoolConfig(size=1, max_steps=50), ModelConfig(name="convnet", width=4, depth=2)
    pools = [ModelPool(cfg, lambda: build_model(model, 8), 6, torch.device("cpu"), torch.Generator().manual_seed(3),
                       forward=forward) for forward in (call_module, compiled(call_module, "on", torch.device("cpu"),
                                                                                "the pool members", "outer.compile"))]
    x, y = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(4)), torch.randn(10, 6)
    support = [x.clone().requires_grad_() for _ in pools]
    with torch.no_grad():
        plain, fast = (pool.features(0, x) for pool in pools)
    assert torch.allclose(fast, plain, rtol=1e-5, atol=1e-6)
    for pool, inputs in zip(pools, support, strict=True):
        pool.features(0, inputs).square().sum().backward()
    assert torch.allclose(support[1].grad, support[0].grad, rtol=1e-4, atol=1e-6)
    losses = [pool.train(0, x, y) for pool in pools]
    assert torch.allclose(losses[1], losses[0], rtol=1e-5)
    for (name, a), b in zip(pools[0].members[0].state_dict().items(), pools[1].members[0].state_dict().values(),
                            strict=True):
        assert torch.allclose(b.float(), a.float(), rtol=1e-4, atol=1e-6), name  # weights and running statistics
    torch._dynamo.reset()


@pytest.mark.parametrize("method", [["method=krr_st", "budget=10"], BOOST], ids=["krr_st", "boost"])
def test_compiled_pool_members_distil_what_eager_ones_do(method, tiny_npz, tiny_teacher, tmp_path):
    """outer.compile=on (torch.compile of the members' forwards; off by default) on the CPU at the presets' lr
    (1e-4): the eager run's log and set to float rounding, re-initialised members included (pool.max_steps=4),
    with one set of compiled graphs for every member: as many graphs with 2 members as with 1. (AdamW's first
    steps move each value by about lr times the sign of its gradient, so a gradient near zero that rounds to the
    other sign moves it 2 lr away: the tolerance is in units of lr.)"""
    from torch._dynamo.utils import counters

    _needs_compile()
    torch._dynamo.reset()
    method = [*method, "outer.lr=1e-4"]
    eager = _run(tiny_npz, tiny_teacher, tmp_path / "eager", *method)
    graphs = []
    for name, size in (("one", 1), ("compiled", 2)):
        torch._dynamo.reset()
        counters.clear()
        run = _run(tiny_npz, tiny_teacher, tmp_path / name, *method, "outer.compile=on", f"pool.size={size}")
        graphs.append(counters["stats"]["unique_graphs"])
    compiled_run = run
    torch._dynamo.reset()
    assert graphs[0] == graphs[1] > 0, graphs
    assert compiled_run.manifest["pool_resets"] > 0  # re-initialised members (new modules) ran through the graphs
    rows = {name: [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").open()]
            for name in ("eager", "compiled")}
    assert len(rows["eager"]) == 3
    # measured on this CPU: losses within 0.42 %, every learned tensor within 2 lr of the eager run's; asserted
    # with room for another CPU's rounding: 1 % and 5 lr
    assert torch.allclose(torch.tensor(rows["compiled"]), torch.tensor(rows["eager"]), rtol=1e-2, atol=1e-6)
    for key, tensor in eager.stored.items():
        assert torch.allclose(compiled_run.stored[key], tensor, rtol=0, atol=5 * 1e-4), key
