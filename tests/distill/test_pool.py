import torch
from torch import nn

from ssdd.distill.pool import ModelPool, PoolConfig


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
