import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssdd.distill.pool import ModelPool, PoolConfig, PoolMember


class Tiny(nn.Module):
    feature_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1))


def make_pool(reset: bool, max_steps: int = 4, size: int = 2) -> ModelPool:
    cfg = PoolConfig(size=size, max_steps=max_steps, reset_counter=reset)
    return ModelPool(cfg, Tiny, target_dim=3, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(5, 6), torch.randn(5, 3)


def test_warm_start_staggers_counters_below_max():
    pool = make_pool(True, max_steps=50, size=6)
    pool.warm_start(*data())
    assert all(1 <= c < 50 for c in pool.counters)
    assert len(set(pool.counters)) > 1
    assert pool.resets == 0


def test_a_warm_start_that_diverges_names_the_pools_rate():
    from ssdd.run.guard import Diverged

    cfg = PoolConfig(size=2, max_steps=50, lr=1e6)
    pool = ModelPool(cfg, Tiny, target_dim=3, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    pool.warm_start(*data())
    with pytest.raises(Diverged, match=r"pool member 1's warm start \(\d+ SGD steps at pool.lr=1e\+06") as info:
        pool.check_warm_start()
    assert info.value.setting == "pool.lr" and not pool.finite(0)
    healthy = make_pool(True, max_steps=50)
    healthy.warm_start(*data())
    healthy.check_warm_start()
    assert healthy.finite(0) and healthy.finite(1)


def test_reset_mode_reinitialises_and_restarts_counter():
    pool = make_pool(True, max_steps=4)
    x, y = data()
    before = pool.members[0].head.weight.detach().clone()
    for _ in range(3):
        pool.train_step(0, x, y)
    assert pool.counters[0] == 3 and pool.resets == 0
    pool.train_step(0, x, y)  # reaches max_steps: fresh model, counter back to 0
    assert pool.counters[0] == 0 and pool.resets == 1
    assert not torch.equal(pool.members[0].head.weight, before)
    for _ in range(4):
        pool.train_step(0, x, y)
    assert pool.resets == 2


def test_public_code_mode_keeps_counting_and_reinitialises_every_use():
    pool = make_pool(False, max_steps=4)
    x, y = data()
    for _ in range(4):
        pool.train_step(0, x, y)
    assert pool.counters[0] == 4 and pool.resets == 1
    for expected in (2, 3):
        pool.train_step(0, x, y)
        assert pool.resets == expected  # every later step ends with a fresh (untrained) model
    assert pool.counters[0] == 6
    assert pool.counters[1] == 0  # other members untouched


def test_state_dict_round_trip():
    pool = make_pool(True)
    x, y = data()
    pool.train_step(1, x, y)
    copy = make_pool(True)
    copy.load_state_dict(pool.state_dict())
    assert copy.counters == pool.counters
    assert torch.equal(copy.members[1].head.weight, pool.members[1].head.weight)
    assert copy.sample() == pool.sample()


def test_minibatch_training_uses_only_the_drawn_rows():
    x, y = data()
    cfg = PoolConfig(size=1, max_steps=10, batch_size=2, momentum=0.0, weight_decay=0.0)
    pool = ModelPool(cfg, Tiny, 3, torch.device("cpu"), torch.Generator().manual_seed(0))
    start = {k: v.clone() for k, v in pool.members[0].state_dict().items()}
    pick = torch.randperm(5, generator=torch.Generator().manual_seed(0).set_state(pool.generator.get_state()))[:2]
    pool.train_step(0, x, y)
    # the same step done by hand on the two drawn rows gives the same weights
    reference = ModelPool(PoolConfig(size=1, max_steps=10, momentum=0.0, weight_decay=0.0), Tiny, 3,
                          torch.device("cpu"), torch.Generator().manual_seed(0))
    reference.members[0].load_state_dict(start)
    reference.train_step(0, x[pick], y[pick])
    for key, value in pool.members[0].state_dict().items():
        assert torch.allclose(value, reference.members[0].state_dict()[key]), key


class TrainThenDiscardPool(ModelPool):
    """The pool as it was before the step that ends in a re-initialisation was skipped: it trains, then discards."""

    def train_step(self, j: int, images: torch.Tensor, targets: torch.Tensor, count_only: bool = True) -> float:
        member = self.members[j]
        member.train()
        if 0 < self.cfg.batch_size < images.shape[0]:
            pick = torch.randperm(images.shape[0], generator=self.generator)[: self.cfg.batch_size]
            images, targets = images[pick], targets[pick]
        loss = F.mse_loss(member(images.detach()), targets.detach())
        self.optimizers[j].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[j].step()
        if count_only:
            self.counters[j] += 1
            if self.counters[j] >= self.cfg.max_steps:
                self._reinit(j)
                if self.cfg.reset_counter:
                    self.counters[j] = 0
        return float(loss.detach())


class TinyBN(nn.Module):
    """Tiny with a BatchNorm, so that running statistics (buffers) are compared too."""

    feature_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 4)
        self.norm = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.layer(x.flatten(1)))


@pytest.mark.parametrize("reset", [True, False])
@pytest.mark.parametrize("batch_size", [0, 3])
def test_skipping_the_discarded_step_changes_nothing(reset, batch_size):
    cfg = PoolConfig(size=3, max_steps=5, reset_counter=reset, batch_size=batch_size)
    pools = [cls(cfg, TinyBN, 3, torch.device("cpu"), torch.Generator().manual_seed(0))
             for cls in (ModelPool, TrainThenDiscardPool)]
    x, y = torch.randn(7, 6, generator=torch.Generator().manual_seed(1)), torch.randn(7, 3)
    for pool in pools:
        pool.warm_start(x, y)
        for _ in range(40):  # every member reaches max_steps several times
            j = pool.sample()
            with torch.no_grad():
                pool.features(j, x)
            pool.train_step(j, x, y)
    ours, reference = pools
    assert reference.resets >= 2 * cfg.size
    assert ours.resets == reference.resets and ours.counters == reference.counters
    assert torch.equal(ours.generator.get_state(), reference.generator.get_state())
    for j in range(cfg.size):  # weights, buffers and SGD momentum
        for tensor, expected in zip(ours.member_tensors(j), reference.member_tensors(j), strict=True):
            assert torch.equal(tensor, expected), j
    for j in range(cfg.size):
        for key, value in ours.members[j].state_dict().items():
            assert torch.equal(value, reference.members[j].state_dict()[key]), (j, key)
        assert len(ours.optimizers[j].state) == len(reference.optimizers[j].state)


def test_saturated_member_in_public_code_mode_is_never_trained():
    pool = make_pool(False, max_steps=4)
    x, y = data()
    for _ in range(5):
        pool.train_step(0, x, y)
    assert pool.counters[0] == 5 and pool.resets == 2
    used, used_optimizer = pool.members[0], pool.optimizers[0]
    calls = []
    used_optimizer.step = lambda *args, **kwargs: calls.append(args)  # would record any SGD step
    probe = torch.Generator().set_state(pool.generator.get_state())
    seed = int(torch.randint(0, 2**62, (1,), generator=probe))  # the seed the re-initialisation will draw
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = PoolMember(Tiny(), 3)
    loss = pool.train_step(0, x, y)
    assert math.isnan(loss) and not calls
    assert all(p.grad is None for p in used.parameters())  # no forward-backward either
    assert pool.counters[0] == 6 and pool.resets == 3 and pool.members[0] is not used
    assert not pool.optimizers[0].state  # a fresh optimizer, no momentum
    for key, value in pool.members[0].state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key  # an untrained fresh init
    assert all(p.grad is None for p in pool.members[0].parameters())
