"""The model pool of KRR-ST (docs/method.md section 3): L networks trained online on the distilled set.

Model j starts from a fresh init trained for t_j ~ U{1..max_steps-1} full-batch steps of
MSE(head(phi(X_s)), Y_s); each outer step trains the chosen model one more step. A model that reaches
max_steps is re-initialised: with reset_counter=True (default) its counter restarts at 0; with False
the counter keeps growing (as in the public KRR-ST code), so from then on the model is re-initialised
at every use and behaves as a fresh random network. The SGD step whose count reaches max_steps is not
taken (its model would be thrown away at once); its random draws still are, so results are unchanged.
`batch_size` > 0 trains on a random minibatch of the distilled views instead of all of them (for Boost's
thousands of views on small machines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssdd.config import ModelConfig
from ssdd.models import build_model
from ssdd.run.guard import Diverged
from ssdd.run.runtime import forward_precision, to_device


@dataclass
class PoolConfig:
    size: int = 10
    max_steps: int = 1000
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3
    reset_counter: bool = True
    batch_size: int = 0  # distilled views per pool-training step (0 = all of them, KRR-ST's full batch)


class PoolMember(nn.Module):
    def __init__(self, backbone: nn.Module, target_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, target_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def seeded_member(model: ModelConfig, resolution: int, target_dim: int, seed: int) -> PoolMember:
    """A backbone + linear head to `target_dim`, initialised from `seed` alone (CPU generator; the global RNG
    state is left as it was): MKDT's students and experts."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PoolMember(build_model(model, resolution), target_dim)


def call_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x): how the pool runs its members unless it is handed another way (outer.compile)."""
    return module(x)


class ModelPool:
    def __init__(self, cfg: PoolConfig, build_backbone: Callable[[], nn.Module], target_dim: int,
                 device: torch.device, generator: torch.Generator,
                 memory_format: torch.memory_format = torch.contiguous_format,
                 forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] = call_module) -> None:
        if cfg.size < 1 or cfg.max_steps < 2:
            raise ValueError("pool.size must be >= 1 and pool.max_steps >= 2")
        self.cfg, self.build_backbone, self.target_dim, self.device = cfg, build_backbone, target_dim, device
        self.generator = generator  # CPU generator: pool choices, initial step counts
        self.memory_format = memory_format  # of every member's weights (torch.channels_last or contiguous)
        # forward(module, x): every member's (and backbone's) forward goes through it; the module is an argument,
        # so one torch.compile'd function serves all members, re-initialised ones included
        self.forward = forward
        self.members: list[PoolMember] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.counters: list[int] = []
        self.resets = 0
        for _ in range(cfg.size):
            self.members.append(self._fresh())
            self.optimizers.append(self._optimizer(self.members[-1]))
            self.counters.append(0)

    def _fresh(self) -> PoolMember:
        """A new member whose initialisation is drawn from the pool's generator (so resume is exact)."""
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU only: the model is built on the CPU
            member = PoolMember(self.build_backbone(), self.target_dim)
        return member.to(self.device, memory_format=self.memory_format)

    def _optimizer(self, member: PoolMember) -> torch.optim.Optimizer:
        return torch.optim.SGD(member.parameters(), lr=self.cfg.lr, momentum=self.cfg.momentum,
                               weight_decay=self.cfg.weight_decay)

    def _reinit(self, j: int) -> None:
        self.members[j] = self._fresh()
        self.optimizers[j] = self._optimizer(self.members[j])
        self.resets += 1

    def warm_start(self, images: torch.Tensor, targets: torch.Tensor,
                   progress: Callable[[int], None] | None = None, autocast: torch.dtype | None = None) -> None:
        """Train every member for its own random number of steps t_j ~ U{1..max_steps-1} (staggered); autocast:
        the members' forwards in that dtype."""
        steps = torch.randint(1, self.cfg.max_steps, (self.cfg.size,), generator=self.generator).tolist()
        for j, count in enumerate(steps):
            for _ in range(count):
                self.train(j, images, targets, count_only=False, autocast=autocast)
            self.counters[j] = count
            if progress:
                progress(j)

    def check_warm_start(self) -> None:
        """Diverged (naming pool.lr) when a member's weights are not finite after the warm start: its features
        would make every outer loss NaN. Under torchrun, call it on the state every process shares."""
        for j in range(self.cfg.size):
            if not self.finite(j):
                raise Diverged(f"pool member {j + 1}'s warm start ({self.counters[j]} SGD steps at pool.lr="
                               f"{self.cfg.lr:g} on the initial set) diverged: its weights are not finite", "pool.lr")

    def finite(self, j: int) -> bool:
        """Whether member j's weights and buffers are all finite (one host synchronisation)."""
        tensors = [t for t in (*self.members[j].parameters(), *self.members[j].buffers()) if t.is_floating_point()]
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def sample(self) -> int:
        return int(torch.randint(0, self.cfg.size, (1,), generator=self.generator))

    def features(self, j: int, x: torch.Tensor) -> torch.Tensor:
        """phi_j(x) in eval mode (BatchNorm uses running statistics)."""
        backbone = self.members[j].backbone
        backbone.eval()
        return self.forward(backbone, x)

    def train_step(self, j: int, images: torch.Tensor, targets: torch.Tensor, count_only: bool = True) -> float:
        """One SGD step of member j on MSE(f_j(images), targets) (both detached); then advance its counter.

        Returns the loss before the step. When the advanced counter reaches max_steps the member is
        re-initialised instead, without the step (nor its forward: returns nan), which would be thrown away;
        the minibatch is still drawn, so the pool's generator advances exactly as if the step had been taken."""
        return float(self.train(j, images, targets, count_only))

    def train(self, j: int, images: torch.Tensor, targets: torch.Tensor, count_only: bool = True,
              autocast: torch.dtype | None = None) -> torch.Tensor:
        """train_step without reading the loss on the host: the detached loss as a 0-d tensor on the images'
        device (nan when the member is re-initialised). autocast: the member's forward in that dtype."""
        if 0 < self.cfg.batch_size < images.shape[0]:  # a random minibatch of the views (large Boost sets)
            pick = to_device(torch.randperm(images.shape[0], generator=self.generator)[: self.cfg.batch_size],
                             images.device)
            images, targets = images[pick], targets[pick]
        if count_only and self.counters[j] + 1 >= self.cfg.max_steps:
            self.counters[j] = 0 if self.cfg.reset_counter else self.counters[j] + 1
            self._reinit(j)
            return torch.full((), float("nan"), device=images.device)
        member = self.members[j]
        member.train()
        with forward_precision(images.device, autocast):
            prediction = self.forward(member, images.detach())
        loss = F.mse_loss(prediction.float(), targets.detach())
        self.optimizers[j].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[j].step()
        if count_only:
            self.counters[j] += 1
        return loss.detach()

    def member_tensors(self, j: int) -> list[torch.Tensor]:
        """Member j's floating-point state: weights, buffers and SGD momentum (what torchrun ranks must share)."""
        member, state = self.members[j], self.optimizers[j].state
        tensors = [t for t in [*member.parameters(), *member.buffers()] if t.is_floating_point()]
        momentum = [state[p]["momentum_buffer"] for p in member.parameters()
                    if state.get(p, {}).get("momentum_buffer") is not None]
        return tensors + momentum

    def state_dict(self) -> dict[str, Any]:
        return {"members": [m.state_dict() for m in self.members],
                "optimizers": [o.state_dict() for o in self.optimizers],
                "counters": list(self.counters), "resets": self.resets, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore the pool; False (and fresh members, from the saved generator) when the state was carried
        without its members (benchmarks/gpu/checkpoint_parts.py --drop): the caller warm-starts them again."""
        if "members" not in state or "optimizers" not in state:
            self.generator.set_state(state["generator"])
            self.resets = int(state["resets"])
            for j in range(self.cfg.size):
                self.members[j] = self._fresh()
                self.optimizers[j] = self._optimizer(self.members[j])
                self.counters[j] = 0
            return False
        for j in range(self.cfg.size):
            self.members[j].load_state_dict(state["members"][j])
            self.optimizers[j] = self._optimizer(self.members[j])
            self.optimizers[j].load_state_dict(state["optimizers"][j])
        self.counters = list(state["counters"])
        self.resets = int(state["resets"])
        self.generator.set_state(state["generator"])
        return True
