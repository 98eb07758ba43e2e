"""Fine-tuning length: by the target's role (source-scale or not, by name) or by its training-set size; a batch
larger than the training split."""

from __future__ import annotations

import pytest
import torch

from ssdd.data import ImageDataset
from ssdd.evaluation.config import FinetuneConfig
from ssdd.evaluation.finetune import finetune, finetune_iterations, is_source_scale


def test_by_role_every_target_but_the_source_scale_ones_gets_small_iterations_whatever_its_size():
    cfg = FinetuneConfig()  # small_by=role, 10,000 / 5,000
    assert finetune_iterations(cfg, 1_020, "flowers102") == 5_000  # small fine-grained target
    assert finetune_iterations(cfg, 1_020, "flowers102_32") == 5_000  # an unnamed .npz target, named by its file
    assert finetune_iterations(cfg, 12_000, "stanford_dogs") == 5_000  # large fine-grained target
    assert finetune_iterations(cfg, 5_994, "CUB_200_2011") == 5_000  # any other name is not source-scale
    assert finetune_iterations(cfg, 50_000, "cifar10") == 10_000
    assert finetune_iterations(cfg, 5_000, "cifar10") == 10_000  # a CIFAR subset is still a source-scale target
    assert finetune_iterations(cfg, 50_000, "CIFAR100") == 10_000  # names compared without case
    assert finetune_iterations(cfg, 100_000, "tiny-imagenet") == 10_000
    assert finetune_iterations(FinetuneConfig(source_scale=["stl10"]), 5_000, "stl10") == 10_000
    assert not is_source_scale("cifar10_5000", cfg)


def test_by_size_as_before_the_setting_existed():
    cfg = FinetuneConfig(small_by="size")
    assert finetune_iterations(cfg, 1_020, "flowers102") == 5_000
    assert finetune_iterations(cfg, 12_000, "stanford_dogs") == 10_000
    assert finetune_iterations(cfg, 5_000, "cifar10") == 5_000
    assert finetune_iterations(cfg, 50_000, "cifar10") == 10_000


def test_an_unknown_rule_is_one_clear_error():
    from ssdd.config import ConfigError, load_config
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.validate import check_evaluate_settings

    with pytest.raises(ConfigError, match=r"finetune\.small_by='name': must be one of role, size"):
        check_evaluate_settings(load_config(EvaluateConfig, None, ["finetune.small_by=name"]))


class Tiny(torch.nn.Module):
    """A backbone of one pooled convolution (feature_dim 4), enough for fine-tuning to run."""

    feature_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def tiny_split(n: int, name: str) -> ImageDataset:
    generator = torch.Generator().manual_seed(n)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=generator)
    return ImageDataset(images, torch.arange(n) % 2, ("a", "b"), "train", name)


def test_a_batch_larger_than_the_split_runs_full_batch_and_says_so_once(capsys):
    from ssdd.run.progress import show_phases

    train, test = tiny_split(6, "small_target"), tiny_split(4, "small_target")
    stats = torch.full((3,), 0.5), torch.full((3,), 0.25)

    def run(batch_size: int) -> dict[str, float]:
        cfg = FinetuneConfig(iterations=3, small_iterations=3, batch_size=batch_size, lr=0.01)
        torch.manual_seed(0)
        with show_phases(True):
            return finetune(Tiny(), train, test, *stats, cfg, torch.Generator().manual_seed(1))

    assert run(6) == run(6) and "note" not in capsys.readouterr().out  # a batch the split holds: no note
    assert run(64) == run(6)  # full batch, as with batch_size = the split's size
    assert run(64) == run(6)
    notes = [line for line in capsys.readouterr().out.splitlines() if "note" in line]  # once, not once per run
    assert notes == ["note: finetune.batch_size=64 exceeds the 6 training images of small_target: its fine-tuning "
                     "steps are full-batch (6 images)"]
