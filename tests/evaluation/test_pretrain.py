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


def test_pretrain_steps_counts_the_steps_the_loop_takes():
    from ssdd.evaluation.pretrain import pretrain_steps

    for n, cfg in ((20, PretrainConfig(epochs=3, batch_size=8)),  # 3 batches per epoch
                   (17, PretrainConfig(epochs=3, batch_size=8)),  # a last batch of one image is skipped
                   (20, PretrainConfig(epochs=30, batch_size=8, max_iterations=10)),
                   (20, PretrainConfig(epochs=2, batch_size=256))):
        model = Counting()
        images, targets = pairs(n)
        pretrain_on_pairs(model, images, targets, torch.zeros(3), torch.ones(3), cfg, torch.Generator().manual_seed(0))
        assert model.calls == pretrain_steps(n, cfg), (n, cfg)
    assert pretrain_steps(17, PretrainConfig(epochs=3, batch_size=8)) == 6
    assert pretrain_steps(50_000, PretrainConfig(epochs=1000, batch_size=256, max_iterations=1000)) == 1000


def test_uint8_images_train_exactly_like_the_same_images_as_floats():
    """A whole source split stays uint8 and is normalised batch by batch: the same steps as float images."""
    from ssdd.augment import to_float

    gen = torch.Generator().manual_seed(1)
    images_u8 = torch.randint(0, 256, (20, 3, 4, 4), dtype=torch.uint8, generator=gen)
    targets = torch.randn(20, 2, generator=gen)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    runs = []
    for images in (images_u8, to_float(images_u8)):
        torch.manual_seed(0)
        model = Counting()
        losses = pretrain_on_pairs(model, images, targets, mean, std, PretrainConfig(epochs=3, batch_size=8, lr=0.05),
                                   torch.Generator().manual_seed(0))
        runs.append((losses, model.layer.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


class Seeing(Counting):
    """Counts the images that go through the network in training."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0] if self.training else 0
        return super().forward(x)


def test_pretrain_samples_adds_up_the_batches_the_loop_trains_on():
    """Smaller than the batch (every step sees the whole set), larger (whole batches and a last, smaller one), a
    last batch of one pair skipped, and a cap that stops an epoch part-way."""
    from ssdd.evaluation.pretrain import pretrain_samples, pretrain_steps

    for n, cfg in ((20, PretrainConfig(epochs=3, batch_size=256)),
                   (20, PretrainConfig(epochs=3, batch_size=8)),
                   (17, PretrainConfig(epochs=3, batch_size=8)),
                   (20, PretrainConfig(epochs=30, batch_size=8, max_iterations=10)),
                   (20, PretrainConfig(epochs=30, batch_size=256, max_iterations=7)),
                   (1, PretrainConfig(epochs=3, batch_size=8))):
        model = Seeing()
        images, targets = pairs(n)
        pretrain_on_pairs(model, images, targets, torch.zeros(3), torch.ones(3), cfg, torch.Generator().manual_seed(0))
        assert model.seen == pretrain_samples(n, cfg), (n, cfg)
        if n <= cfg.batch_size:
            assert pretrain_samples(n, cfg) == pretrain_steps(n, cfg) * n  # the batch actually used: the set


def test_full_data_samples_adds_up_the_batches_of_the_full_data_row():
    from ssdd.evaluation.config import FullDataConfig
    from ssdd.evaluation.pretrain import full_data_samples, pretrain_full_data

    images = (torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)

    def teacher(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2]

    for cfg in (FullDataConfig(epochs=2, batch_size=4, crop_padding=0), FullDataConfig(epochs=2, batch_size=64,
                                                                                        crop_padding=0)):
        model = Seeing()
        pretrain_full_data(model, images, teacher, torch.zeros(3), torch.ones(3), cfg, torch.Generator().manual_seed(0))
        assert model.seen == full_data_samples(10, cfg), cfg
