"""Fine-tuning length: by the target's role (source-scale or not, by name) or by its training-set size."""

from __future__ import annotations

import pytest

from ssdd.evaluation.config import FinetuneConfig
from ssdd.evaluation.finetune import finetune_iterations, is_source_scale


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
