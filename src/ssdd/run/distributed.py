"""torchrun / DistributedDataParallel helpers. A plain `python` run is world size 1 and needs none of this."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backend_for(use_cuda: bool, share_gpu: bool = False) -> str:
    """gloo on CPU, NCCL on GPUs with one process each. When a machine runs more processes than it has GPUs,
    NCCL refuses them (two ranks on one device): with `share_gpu` (the evaluation, whose processes only
    exchange finished rows, so that many small cells can run side by side on one GPU) they use gloo; the
    teacher and distillation, whose gradients cross the processes every step, are refused in one line."""
    if not use_cuda:
        return "gloo"
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if local_world <= torch.cuda.device_count():
        return "nccl"
    if share_gpu:
        return "gloo"
    raise ValueError(f"{local_world} processes on this machine share {torch.cuda.device_count()} visible GPU(s): "
                     "start one process per GPU (torchrun --nproc_per_node), or pass device=cpu")


def init_distributed(device: str = "auto", share_gpu: bool = False) -> DistInfo:
    """Join the process group that torchrun describes in the environment (`backend_for` picks its backend)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not dist.is_initialized():
        backend = backend_for(use_cuda, share_gpu)
        if use_cuda:
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            if backend == "gloo" and rank == 0:
                print(f"{world_size} processes share {torch.cuda.device_count()} GPU(s): linked with gloo")
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world_size, local_rank)


def is_main_process() -> bool:
    """Rank 0 of a torchrun job (from the process group, or from the environment before it exists), or no job:
    the one process that writes into run folders and prints progress."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _active() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, the number of processes); (0, 1) without torchrun."""
    return (dist.get_rank(), dist.get_world_size()) if _active() else (0, 1)


@contextmanager
def process_group(device: str = "auto", share_gpu: bool = False) -> Iterator[DistInfo]:
    """The torchrun process group for the length of one command (DistInfo() and nothing else without torchrun).

    On a normal exit every rank waits for the others, so rank 0's files are complete when any process
    returns; a group this call created is then left (one created by a caller stays)."""
    created = not dist.is_initialized()
    info = init_distributed(device, share_gpu)
    try:
        yield info
        barrier()
    finally:
        if created:
            shutdown()


def on_main(compute: Callable[[], T]) -> T:
    """compute() run by rank 0 alone and handed to every rank (an exception is raised on every rank).

    The result is pickled: return CPU tensors. Without torchrun it is simply compute()."""
    if not _active():
        return compute()
    payload: list[Any] = [None]
    failure: Exception | None = None
    if dist.get_rank() == 0:
        try:
            payload = [(True, compute())]
        except Exception as exc:  # handed to every rank, raised there and here
            failure = exc
            payload = [(False, _portable(exc))]
    dist.broadcast_object_list(payload, src=0)
    ok, value = payload[0]
    if failure is not None:
        raise failure
    if not ok:
        raise value
    return value


def _portable(exc: Exception) -> Exception:
    """The exception itself when it survives pickling, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def split_sizes(total: int, parts: int | None = None) -> list[int]:
    """Rows of each rank when `total` rows are split into contiguous slices (the first total % parts get one
    more, torch.tensor_split's rule); parts defaults to the world size."""
    parts = parts or (dist.get_world_size() if dist.is_initialized() else 1)
    base, extra = divmod(total, parts)
    return [base + (rank < extra) for rank in range(parts)]


def rank_rows(total: int) -> slice:
    """This rank's contiguous slice of `total` rows (see split_sizes); all of them without torchrun."""
    if not _active():
        return slice(0, total)
    sizes, rank = split_sizes(total), dist.get_rank()
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


class _GatherWithGrad(torch.autograd.Function):
    """all_gather of per-rank slices (of any sizes) whose backward sums every rank's gradient for this rank's
    slice: exact when every rank's loss uses the gathered tensor and the gradients are summed afterwards."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:  # type: ignore[override]
        width = max(sizes)
        padded = tensor.contiguous()
        if tensor.shape[0] < width:  # all_gather needs equal shapes: pad, then trim
            padded = torch.cat([padded, padded.new_zeros((width - tensor.shape[0], *tensor.shape[1:]))])
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        rank = dist.get_rank()
        ctx.start, ctx.rows = sum(sizes[:rank]), sizes[rank]
        return torch.cat([part[:rows] for part, rows in zip(parts, sizes, strict=True)], dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.start : ctx.start + ctx.rows], None


def gather_with_grad(tensor: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0, keeping gradients; identity when not distributed.

    `sizes` gives every rank's number of rows (default: all equal to this rank's)."""
    if not _active():
        return tensor
    rows = list(sizes) if sizes is not None else [tensor.shape[0]] * dist.get_world_size()
    if len(rows) != dist.get_world_size() or rows[dist.get_rank()] != tensor.shape[0]:
        raise ValueError(f"gather_with_grad: sizes {rows} do not match {dist.get_world_size()} ranks and this "
                         f"rank's {tensor.shape[0]} rows")
    return _GatherWithGrad.apply(tensor, rows)


def _flat_collective(tensors: Iterable[torch.Tensor], collective: Callable[[torch.Tensor], Any]) -> None:
    """Apply an in-place collective to many tensors at once: one flat buffer per dtype, copied back."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in tensors:
        by_dtype.setdefault(tensor.dtype, []).append(tensor)
    with torch.no_grad():
        for group in by_dtype.values():
            if len(group) == 1 and group[0].is_contiguous():  # in place: a large tensor is never copied
                collective(group[0])
                continue
            flat = torch.cat([t.reshape(-1) for t in group])
            collective(flat)
            offset = 0
            for tensor in group:
                tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
                offset += tensor.numel()


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Replace every tensor by its sum over the ranks (in place, one all_reduce per dtype)."""
    if _active() and tensors:
        _flat_collective(tensors, dist.all_reduce)


def broadcast_(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Overwrite every tensor with rank `src`'s values (in place, one broadcast per dtype)."""
    if _active() and tensors:
        _flat_collective(tensors, lambda flat: dist.broadcast(flat, src))


def check_replicas_agree(tensors: Iterable[torch.Tensor], what: str) -> None:
    """Fail loudly when the ranks' copies of `tensors` (which must be replicas) drifted apart."""
    if not _active():
        return
    checksum = sum(float(t.detach().double().sum()) for t in tensors)
    sums = all_gather_objects(checksum)
    if max(sums) - min(sums) > 1e-6 * max(1.0, abs(sums[0])):
        raise RuntimeError(f"{what} disagree between processes (sums {sums})")


def all_gather_objects(obj: Any) -> list[Any]:
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(value: float, device: torch.device) -> float:
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()
