"""Settings added to EvaluateConfig after evaluations were recorded keep those evaluations' keys at their
legacy values (study cache keys, --resume)."""

from __future__ import annotations

import copy

import pytest

from ssdd.config import ConfigError, config_to_dict, load_config
from ssdd.evaluation.config import LEGACY_VALUES, EvaluateConfig
from ssdd.evaluation.validate import check_evaluate_settings
from ssdd.run.folder import check_resume_compatible, config_hash

NEW = {"full_data": ["same_recipe"], "finetune": ["small_by", "source_scale"], "validation": ["fraction", "seed"]}


def _without_new_settings(config: dict) -> dict:
    old = copy.deepcopy(config)
    for group, keys in NEW.items():
        for key in keys:
            del old[group][key]
    return old


def test_legacy_values_keep_the_hash_of_a_config_written_before_the_settings():
    pinned = ["full_data.same_recipe=false", "finetune.small_by=size"]
    legacy = config_to_dict(load_config(EvaluateConfig, None, pinned))
    old = _without_new_settings(legacy)
    assert {f"{g}.{k}" for g, keys in NEW.items() for k in keys} <= set(LEGACY_VALUES)
    assert config_hash(legacy, legacy=LEGACY_VALUES) == config_hash(old, legacy=LEGACY_VALUES)
    check_resume_compatible(old, legacy, legacy=LEGACY_VALUES)  # a run saved without them resumes
    for override in ("full_data.same_recipe=true", "finetune.small_by=role", "finetune.source_scale=[cifar10]",
                     "validation.fraction=0.2"):
        changed = config_to_dict(load_config(EvaluateConfig, None, [*pinned, override]))
        assert config_hash(changed, legacy=LEGACY_VALUES) != config_hash(old, legacy=LEGACY_VALUES), override


def test_the_new_defaults_follow_the_protocol():
    cfg = EvaluateConfig()
    assert cfg.full_data.same_recipe and cfg.full_data.enabled and cfg.finetune.small_by == "role"
    assert cfg.finetune.source_scale == ["cifar10", "cifar100", "tinyimagenet", "tiny_imagenet"]


def test_reuse_changes_neither_the_hash_nor_what_a_resume_accepts():
    from ssdd.evaluation.protocol import RESUMABLE_KEYS
    from ssdd.study.runner import stage_key as _key

    no_files = ["source.path=no-such.npz", "targets=[{source: npz, path: no-such.npz, name: t}]"]  # nothing hashed
    cfg = load_config(EvaluateConfig, None, no_files)
    old = config_to_dict(cfg)
    del old["reuse"]  # a config written before the setting existed
    assert LEGACY_VALUES["reuse"] == [] and config_hash(config_to_dict(cfg), legacy=LEGACY_VALUES) == \
        config_hash(old, legacy=LEGACY_VALUES)
    check_resume_compatible(old, config_to_dict(cfg), legacy=LEGACY_VALUES)
    reusing = load_config(EvaluateConfig, None, [*no_files, "reuse=[runs/a, runs/b]"])
    assert reusing.reuse == ["runs/a", "runs/b"]
    check_resume_compatible(old, config_to_dict(reusing), RESUMABLE_KEYS, LEGACY_VALUES)
    # a study's evaluate stage keeps its cache key whatever it reuses
    assert _key("evaluate", reusing, ["teacher:x"]) == _key("evaluate", cfg, ["teacher:x"])


def test_precision_fp32_keeps_old_keys_and_bf16_is_another_measurement():
    from ssdd.evaluation.protocol import CELL_CHOICE_KEYS, RESUMABLE_KEYS
    from ssdd.study.runner import NOT_HASHED

    no_files = ["source.path=no-such.npz", "targets=[{source: npz, path: no-such.npz, name: t}]"]
    cfg = load_config(EvaluateConfig, None, no_files)
    old = config_to_dict(cfg)
    del old["precision"]  # a config written before the setting existed
    assert cfg.precision == LEGACY_VALUES["precision"] == "fp32"
    assert config_hash(config_to_dict(cfg), legacy=LEGACY_VALUES) == config_hash(old, legacy=LEGACY_VALUES)
    check_resume_compatible(old, config_to_dict(cfg), RESUMABLE_KEYS, LEGACY_VALUES)
    bf16 = config_to_dict(load_config(EvaluateConfig, None, [*no_files, "precision=bf16"]))
    assert config_hash(bf16, legacy=LEGACY_VALUES) != config_hash(old, legacy=LEGACY_VALUES)
    # it changes results beyond rounding: hashed, compared by reuse, fixed on resume
    assert "precision" not in (*NOT_HASHED["evaluate"], *CELL_CHOICE_KEYS, *RESUMABLE_KEYS)



TWO_DATA = "targets=[{source: npz, path: a/data.npz}, {source: npz, path: b/data.npz}]"


@pytest.mark.parametrize("overrides, said", [
    ([TWO_DATA], r"targets\[0\] and targets\[1\] are both named 'data'.*targets\[1\]\.name="),
    (["models=[{name: convnet, width: 8}, {name: convnet, width: 8}]"],
     r"models\[0\] and models\[1\] are the same network \(convnet\)"),
    (["targets=[]"], r"targets=\[\]: name at least one target dataset"),
])
def test_two_targets_of_one_name_or_one_network_twice_are_refused(overrides, said):
    with pytest.raises(ConfigError, match=said):
        check_evaluate_settings(load_config(EvaluateConfig, None, overrides))


def test_two_targets_named_apart_and_two_widths_of_one_network_are_accepted():
    check_evaluate_settings(load_config(EvaluateConfig, None, [
        TWO_DATA, "targets[1].name=other", "models=[{name: convnet, width: 8}, {name: convnet, width: 16}]"]))
