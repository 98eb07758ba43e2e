"""ssdd.run.distributed in 2 CPU processes (gloo): uneven gathers with gradients, rank-0 computations, in-place
collectives; and the single-process behaviour every plain run relies on."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import free_port
from ssdd.run import distributed as D


def test_without_torchrun_every_helper_is_the_identity():
    assert D.split_sizes(7) == [7] and D.rank_rows(7) == slice(0, 7)
    assert D.split_sizes(7, 3) == [3, 2, 2] and D.split_sizes(1, 2) == [1, 0]
    x = torch.arange(3.0)
    assert D.gather_with_grad(x) is x
    D.all_reduce_sum_([x])
    D.broadcast_([x])
    assert torch.equal(x, torch.arange(3.0))
    assert D.on_main(lambda: 5) == 5
    with D.process_group("cpu") as info:
        assert not info.enabled and info.is_main


def _worker(rank: int, port: int, errors: mp.Queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        with D.process_group("cpu") as info:
            assert info.enabled and info.rank == rank
            _check_uneven_gather(rank)
            _check_collectives(rank)
            _check_on_main(rank)
    except BaseException as exc:  # report to the test, which asserts on the queue
        errors.put(f"rank {rank}: {type(exc).__name__}: {exc}")
        raise


def _check_uneven_gather(rank: int) -> None:
    """5 rows split 3 + 2: each rank embeds its slice; the gradient of every rank's loss on the gathered rows
    reaches the right slice, and the summed gradients equal one process's."""
    torch.manual_seed(0)
    weight = torch.randn(4, 2, requires_grad=True)
    rows = torch.randn(5, 4)
    assert D.split_sizes(5) == [3, 2] and D.rank_rows(5) == (slice(0, 3) if rank == 0 else slice(3, 5))
    gathered = D.gather_with_grad(rows[D.rank_rows(5)] @ weight, D.split_sizes(5))
    loss = (gathered.pow(2).sum(1) * torch.arange(1.0, 6.0)).sum() * (0.25 if rank == 0 else 0.75)
    loss.backward()
    D.all_reduce_sum_([weight.grad])
    reference = weight.detach().clone().requires_grad_(True)
    ((rows @ reference).pow(2).sum(1) * torch.arange(1.0, 6.0)).sum().backward()
    torch.testing.assert_close(weight.grad, reference.grad)


def _check_collectives(rank: int) -> None:
    a, b = torch.full((2, 2), float(rank + 1)), torch.tensor([rank], dtype=torch.int64)
    D.all_reduce_sum_([a, b])
    assert torch.equal(a, torch.full((2, 2), 3.0)) and b.item() == 1
    c = torch.full((3,), float(rank))
    D.broadcast_([c])
    assert torch.equal(c, torch.zeros(3))
    D.check_replicas_agree([c], "c")
    with pytest.raises(RuntimeError, match="disagree"):
        D.check_replicas_agree([torch.full((3,), float(rank))], "d")


def _check_on_main(rank: int) -> None:
    seen = D.on_main(lambda: {"rank": rank, "t": torch.arange(2)})
    assert seen["rank"] == 0 and torch.equal(seen["t"], torch.arange(2))
    with pytest.raises(FileExistsError, match="holds a run"):
        D.on_main(lambda: (_ for _ in ()).throw(FileExistsError("out holds a run")))
    assert dist.is_initialized()


@pytest.mark.slow
def test_helpers_in_two_processes():
    errors = mp.get_context("spawn").Queue()
    mp.start_processes(_worker, args=(free_port(), errors), nprocs=2, start_method="spawn")
    assert errors.empty()
    assert not dist.is_initialized()


def test_backend_nccl_per_gpu_gloo_on_cpu_or_for_an_evaluation_sharing_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert D.backend_for(use_cuda=True) == "nccl"
    assert D.backend_for(use_cuda=False) == "gloo"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # eight ranks on one GPU: NCCL would refuse them
    assert D.backend_for(use_cuda=True, share_gpu=True) == "gloo"
    with pytest.raises(ValueError, match="8 processes on this machine share 1 visible GPU"):
        D.backend_for(use_cuda=True)  # the teacher and distillation: gradients cross the processes every step
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("WORLD_SIZE", "8")  # a launcher without LOCAL_WORLD_SIZE: counted as all on this machine
    assert D.backend_for(use_cuda=True, share_gpu=True) == "gloo"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert D.backend_for(use_cuda=True) == "nccl"


def test_the_process_group_uses_the_chosen_backend(monkeypatch):
    joined: list[str] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: joined.append(backend))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert D.init_distributed("auto", share_gpu=True).world_size == 2 and joined == ["gloo"]
    with pytest.raises(ValueError, match="share 1 visible GPU"):
        D.init_distributed("auto")
    assert D.init_distributed("cpu").rank == 1 and joined == ["gloo", "gloo"]


@pytest.mark.parametrize("env, said", [
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, "sets WORLD_SIZE=2 but not MASTER_ADDR, MASTER_PORT: start "
                                                          "several processes with torchrun"),
    ({"WORLD_SIZE": "2"}, "sets WORLD_SIZE=2 but not RANK, MASTER_ADDR, MASTER_PORT"),
    ({"RANK": "1"}, "RANK=1 is not below WORLD_SIZE=1: start several processes with torchrun, or unset RANK"),
    ({"WORLD_SIZE": "2", "RANK": "x", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, "RANK='x' is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, "RANK=2 is not below WORLD_SIZE=2"),
])
def test_a_partial_torchrun_environment_is_one_line_from_every_process(monkeypatch, capsys, env, said):
    from ssdd.cli import main

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["distill", "-c", "demo_distill", "--no-progress"]) == 2
    assert said in capsys.readouterr().err  # rank 1 too: it is no job's rank, and nothing else would speak


@pytest.mark.parametrize("env", [{"LOCAL_RANK": "0"}, {"MASTER_ADDR": "localhost", "MASTER_PORT": "29500"},
                                 {"RANK": "0", "WORLD_SIZE": "1"}])
def test_torchrun_variables_that_describe_one_process_are_one_process(monkeypatch, env):
    from ssdd.run.launched import torchrun_env_problem

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert torchrun_env_problem() is None
