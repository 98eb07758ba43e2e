"""The one run loop: windowed log rows, stop_after, resume, and checkpoints kept only when sane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssdd.run.folder import CHECKPOINT, load_checkpoint
from ssdd.run.guard import NUMERICAL_STOP, Diverged, NumericalStop, stop_settings
from ssdd.run.loop import SANE_FACTOR, RunLoop, Watched, insanity, non_finite, scale_of


def test_insanity_names_the_first_tensor_out_of_range_and_its_setting():
    images, targets = torch.rand(4, 3, 2, 2), torch.randn(4, 8) * 5
    watched = [Watched("the distilled images", images, "rate.images"),
               Watched("the distilled targets", targets, "rate.targets")]
    scales = {w.what: scale_of(w.tensor) for w in watched}
    assert scales["the distilled images"] == 1.0  # at least 1
    assert insanity(watched, scales) is None
    targets.mul_(2 * SANE_FACTOR)
    why, setting = insanity(watched, scales)
    assert setting == "rate.targets" and "the distilled targets reached" in why
    images[0, 0, 0, 0] = float("nan")
    why, setting = insanity(watched, scales)
    assert setting == "rate.images" and "non-finite" in why


def test_non_finite_finds_a_nested_tensor():
    state = {"tensors": {"a": torch.zeros(3)}, "optimizer": {"state": {0: {"exp_avg_sq": torch.tensor([1.0, 2.0])}}},
             "steps": torch.tensor([1, 2]), "history": [{"loss": 0.5}]}
    assert non_finite(state) is None
    state["optimizer"]["state"][0]["exp_avg_sq"][1] = float("inf")
    assert non_finite(state) == "optimizer.state.0.exp_avg_sq"


def _loop(tmp_path, **kwargs) -> RunLoop:
    return RunLoop(tmp_path, total=kwargs.pop("total", 6), settings=("my.lr", "my.other_lr"), **kwargs)


def test_window_rows_and_a_resume_inside_a_window_log_what_one_run_logs(tmp_path):
    losses = [0.5, 0.25, 2.0, 1.0, 4.0, 3.0, 8.0]

    def run_to_end(folder, kill_at=None):
        folder.mkdir(exist_ok=True)
        loop = _loop(folder, total=7, log_every=3, checkpoint_every=2)
        if (folder / CHECKPOINT).exists():
            loop.load()

        def step(i):
            if i == kill_at:
                raise KeyboardInterrupt
            return losses[i]

        loop.run(step, state=lambda: {})
        return loop

    whole = run_to_end(tmp_path / "whole")
    assert [r["step"] for r in whole.history] == [3, 6, 7]
    assert whole.history[0]["loss"] == sum(losses[:3]) / 3 and whole.history[-1]["loss"] == losses[6]
    with pytest.raises(KeyboardInterrupt):  # killed after the checkpoint of step 2, inside the first window
        run_to_end(tmp_path / "cut", kill_at=2)
    resumed = run_to_end(tmp_path / "cut")
    keep = ("step", "loss")
    assert [{k: r[k] for k in keep} for r in resumed.history] == [{k: r[k] for k in keep} for r in whole.history]
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [{k: r[k] for k in keep} for r in rows] == [{k: r[k] for k in keep} for r in whole.history]
    paused = _loop(tmp_path / "paused", total=7, stop_after=4)
    (tmp_path / "paused").mkdir()
    paused.run(lambda i: 1.0, state=lambda: {})
    assert paused.stop == 4 and not paused.finished and load_checkpoint(tmp_path / "paused" / CHECKPOINT)["step"] == 4


def test_an_insane_state_is_never_checkpointed_and_the_stop_names_the_sane_one(tmp_path):
    images = torch.rand(2, 3)

    def step(i: int) -> float:
        if i >= 3:
            images.mul_(10)  # diverges from step 4 on: 1e1, 1e2, 1e3 times the start
        return 1.0

    loop = _loop(tmp_path, checkpoint_every=2)
    with pytest.raises(NumericalStop) as stop:
        loop.run(step, state=lambda: {"images": images.clone()},
                 watch=lambda: [Watched("the images", images, "my.other_lr")])
    message = str(stop.value)
    assert "the images reached" in message and "step 6" in message  # 1e3 times: over SANE_FACTOR
    assert "--resume my.other_lr=<lower value>" in message and "step 4" in message
    kept = load_checkpoint(tmp_path / CHECKPOINT)
    assert kept["step"] == 4 and float(kept["images"].abs().max()) <= SANE_FACTOR
    assert set(stop_settings(tmp_path)) == {"my.lr", "my.other_lr"}


def test_a_non_finite_step_stops_with_the_rate_the_step_names(tmp_path):
    def step(i: int) -> float:
        if i == 3:
            raise Diverged("the loss became nan at step 3", "my.other_lr")
        return 1.0

    with pytest.raises(NumericalStop, match=r"step 3; the last checkpoint, .*, is intact: continue with --resume "
                                            r"my\.other_lr=<lower value> \(from its state at step 2"):
        _loop(tmp_path, checkpoint_every=2).run(step, state=lambda: {})
    assert json.loads((tmp_path / NUMERICAL_STOP).read_text())["lr_key"] == "my.other_lr"

    def nan_at_once(i: int) -> float:
        raise FloatingPointError("the loss became nan")

    with pytest.raises(NumericalStop, match=r"no checkpoint had been written: run again with a lower my\.lr"):
        _loop(tmp_path / "fresh").run(nan_at_once, state=lambda: {})


def test_a_state_with_nan_is_not_written(tmp_path):
    moment = torch.ones(2)

    def step(i: int) -> float:
        if i == 2:
            moment[0] = float("inf")
        return 1.0

    with pytest.raises(NumericalStop, match=r"NaN or inf \(optimizer.exp_avg_sq\) at step 3"):
        _loop(tmp_path).run(step, state=lambda: {"optimizer": {"exp_avg_sq": moment.clone()}})
    assert load_checkpoint(tmp_path / CHECKPOINT)["step"] == 2


def _two_rank_worker(rank: int, port: int, out: str, results, late: int | None = None) -> None:
    """Two gloo ranks run one shared loop: a replicated state that turns inf at step 3, or (`late`) rank `late`'s
    clock says its time limit is long up while the other's says there is plenty."""
    import datetime
    import os
    import time

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=30))
    moment = torch.ones(2)

    def step(i: int) -> float:
        t = torch.ones(1)
        dist.all_reduce(t)  # every rank runs every step together
        if i == 2 and late is None:
            moment[0] = float("inf")  # the same on every rank: a replicated optimiser state
        return float(t)

    if late is None:
        loop = RunLoop(Path(out), total=6, settings=("x.lr",), is_main=rank == 0, shared=True)
    else:
        started = time.perf_counter() - (1000.0 if rank == late else 0.0)
        loop = RunLoop(Path(out), total=6, settings=("x.lr",), is_main=rank == 0, shared=True, log_every=2,
                       time_limit_s=60.0, started=started)
    try:
        loop.run(step, state=lambda: {"optimizer": {"m": moment.clone()}})
        results.put((rank, "finished" if late is None else f"stopped at {loop.stop}, timed out {loop.timed_out}"))
    except NumericalStop as exc:
        results.put((rank, f"stop: {exc}"))
    except Exception as exc:  # a rank left alone in a collective
        results.put((rank, f"{type(exc).__name__}: {exc}"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_every_rank_of_a_shared_loop_stops_on_rank_0_s_verdict(tmp_path):
    import torch.multiprocessing as mp

    from conftest import free_port

    context = mp.get_context("spawn")
    results = context.Queue()
    mp.start_processes(_two_rank_worker, args=(free_port(), str(tmp_path), results), nprocs=2, start_method="spawn")
    outcome = dict(results.get(timeout=5) for _ in range(2))
    assert outcome[0].startswith("stop:") and outcome[1].startswith("stop:"), outcome
    assert "NaN or inf (optimizer.m) at step 3" in outcome[1]


def test_a_kept_state_that_diverges_again_after_its_resume_is_called_unrecoverable(tmp_path):
    images = torch.ones(3)

    def diverge_at_3(i: int) -> float:
        if i == 3:
            images.mul_(1e3)
        return 1.0

    def watch() -> list[Watched]:
        return [Watched("the images", images, "my.lr", factor=10.0)]

    with pytest.raises(NumericalStop, match=r"continue with --resume my\.lr="):  # the first stop: resume advised
        _loop(tmp_path, checkpoint_every=2).run(diverge_at_3, state=lambda: {"images": images.clone()}, watch=watch)
    again = _loop(tmp_path, checkpoint_every=2)
    images.copy_(again.load()["images"])

    def nan_at_once(i: int) -> float:
        raise FloatingPointError("the loss became nan")

    with pytest.raises(NumericalStop, match=r"again after resuming from the step 2 checkpoint .* start a new run"):
        again.run(nan_at_once, state=lambda: {"images": images.clone()}, watch=watch)


def test_tensor_losses_log_the_bits_of_float_losses_and_a_non_finite_one_stops_at_the_window(tmp_path):
    """A fast path's 0-d tensor losses are summed on the device in float64: the rows equal the float rows bit
    for bit (also across a resume inside a window); a NaN among them is a numerical stop when its window closes
    (or at the checkpoint before), and nothing non-finite is checkpointed."""
    losses = torch.rand(7, generator=torch.Generator().manual_seed(0)) * 3  # float32, as a loss is

    def run(folder, as_tensor, stop_after=0, bad=None):
        folder.mkdir(exist_ok=True)
        loop = _loop(folder, total=7, log_every=3, checkpoint_every=2, stop_after=stop_after)
        if (folder / CHECKPOINT).exists():
            loop.load()

        def step(i):
            loss = torch.tensor(float("nan")) if i == bad else losses[i]
            return loss if as_tensor else float(loss)

        loop.run(step, state=lambda: {})
        return loop

    floats = run(tmp_path / "floats", False).history
    tensors = run(tmp_path / "tensors", True).history
    assert [r["loss"] for r in tensors] == [r["loss"] for r in floats]
    run(tmp_path / "cut", True, stop_after=4)  # paused inside the second window, at its checkpoint
    resumed = run(tmp_path / "cut", True).history
    assert [r["loss"] for r in resumed] == [r["loss"] for r in floats]
    with pytest.raises(NumericalStop, match="non-finite at a step from step 4 to step 6"):
        run(tmp_path / "nan", True, bad=4)
    assert load_checkpoint(tmp_path / "nan" / CHECKPOINT)["step"] == 4
    assert (tmp_path / "nan" / NUMERICAL_STOP).is_file()


class _Clock:
    """time.perf_counter for ssdd.run.loop, advanced by the test's steps."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("setup_s", "limit_s", "paused_at"), [(0.0, 3.5, 3), (2.0, 3.5, 1), (0.0, 100.0, None)])
def test_a_time_limit_pauses_before_a_step_that_would_end_past_it(tmp_path, monkeypatch, setup_s, limit_s,
                                                                   paused_at):
    """Steps of 1 s: the run pauses at the first step boundary where one more step (at the mean step time) would
    end past the limit, counted from `started` (the set-up before the loop counts); the pause is checkpointed and
    a resume without the limit logs what one uninterrupted run logs."""
    import ssdd.run.loop as loop_module

    clock = _Clock()
    monkeypatch.setattr(loop_module.time, "perf_counter", clock)
    folder = tmp_path / "timed"
    folder.mkdir()
    loop = _loop(folder, total=6, time_limit_s=limit_s, started=clock.now - setup_s)

    def step(i):
        clock.now += 1.0
        return float(i)

    loop.run(step, state=lambda: {})
    if paused_at is None:
        assert loop.finished and not loop.timed_out
        return
    assert loop.timed_out and not loop.finished and loop.stop == paused_at
    assert load_checkpoint(folder / CHECKPOINT)["step"] == paused_at
    resumed = _loop(folder, total=6)
    resumed.load()
    resumed.run(step, state=lambda: {})
    assert resumed.finished and [row["loss"] for row in resumed.history] == [float(i) for i in range(6)]


@pytest.mark.slow
@pytest.mark.parametrize(("late", "expected"), [(1, "stopped at 6, timed out False"),
                                                 (0, "stopped at 2, timed out True")])
def test_under_torchrun_rank_0_s_clock_decides_the_time_limit_for_every_rank(tmp_path, late, expected):
    """Rank 0's verdict, asked at the first window's close (step 2), holds for both ranks."""
    import torch.multiprocessing as mp

    from conftest import free_port

    context = mp.get_context("spawn")
    results = context.Queue()
    mp.start_processes(_two_rank_worker, args=(free_port(), str(tmp_path), results, late), nprocs=2,
                       start_method="spawn")
    outcome = dict(results.get(timeout=5) for _ in range(2))
    assert outcome == {0: expected, 1: expected}, outcome
