"""Pre-training on distilled pairs: epochs, the iteration cap, and the loss going down."""

import torch
from torch import nn

from ssdd.evaluation.config import PretrainConfig
from ssdd.evaluation.pretrain import pretrain_on_pairs


class Counting(nn.Module):
    feature_dim = 5

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3 * 4 * 4, 5)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.layer(x.flatten(1))


def pairs(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 4, 4, generator=gen), torch.randn(n, 2, generator=gen)


def run(cfg: PretrainConfig) -> tuple[Counting, list[float]]:
    model = Counting()
    images, targets = pairs()
    losses = pretrain_on_pairs(model, images, targets, torch.zeros(3), torch.ones(3), cfg,
                               torch.Generator().manual_seed(0))
    return model, losses


def test_epochs_make_every_batch_one_step_and_the_loss_falls():
    model, losses = run(PretrainConfig(epochs=30, batch_size=8, lr=0.05))
    assert model.calls == 30 * 3  # 20 pairs in batches of 8: 3 steps per epoch
    assert len(losses) == 30 and losses[-1] < losses[0]


def test_max_iterations_caps_the_steps():
    model, losses = run(PretrainConfig(epochs=30, batch_size=8, max_iterations=10))
    assert model.calls == 10
    assert len(losses) == 4  # three full epochs and the one the cap cut short
    model, _ = run(PretrainConfig(epochs=2, batch_size=8, max_iterations=100))
    assert model.calls == 6  # a cap above the epochs changes nothing
