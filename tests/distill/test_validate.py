"""distill/validate.py and the hooks it asks: checks change nothing, the method's rules are the only rules."""

from __future__ import annotations

import pytest

from ssdd.artifacts.storage import BudgetError
from ssdd.config import ConfigError, load_config
from ssdd.distill.boost import check_boost_config, normalise_boost
from ssdd.distill.config import DistillConfig
from ssdd.distill.keys import method_free_keys, resumable_keys
from ssdd.distill.validate import check_budget_fits, check_distill_settings, check_processes


def cfg(*overrides: str) -> DistillConfig:
    return load_config(DistillConfig, None, ["teacher=t", *overrides])


def test_boost_s_check_changes_nothing_and_its_normalisation_is_separate():
    b = cfg("method=boost", "boost.approximation=False", "boost.image_bases=8", "boost.image_resolution=8",
            "boost.target_bases=4").boost
    with pytest.raises(ValueError, match=r"boost\.approximation must be one of"):
        check_boost_config(b, (3, 16, 16), 64, 100)
    assert b.approximation == "False"  # the check left the config as it found it
    normalise_boost(b)
    assert b.approximation == "off"
    assert check_boost_config(b, (3, 16, 16), 64, 100) == ["identity", "rot90", "rot180", "rot270"]


def test_the_method_s_budget_rule_is_asked():
    check_budget_fits(cfg("method=random", "budget=10"), 16, 64, 100)
    with pytest.raises(BudgetError, match="only 5 images"):
        check_budget_fits(cfg("method=random", "budget=10"), 16, 64, 5)
    # labels cost one value each: 10 / (1 + 1/768) -> 9 samples fit in 9 images, teacher targets would not
    check_budget_fits(cfg("method=random_supervised", "budget=10"), 16, 10_000, 9)
    with pytest.raises(BudgetError, match="holds no sample"):
        check_budget_fits(cfg("method=boost", "budget=1", "boost.image_bases=8", "boost.image_resolution=8",
                              "boost.target_bases=4"), 16, 64, 100)


def test_settings_checks_come_from_the_method():
    with pytest.raises(ConfigError, match="applies to krr_st only, not random"):
        check_distill_settings(cfg("method=random", "count_targets=false"))
    check_distill_settings(cfg("method=krr_st", "count_targets=false"))
    with pytest.raises(ConfigError, match=r"outer\.steps"):  # the outer loop's settings, for a method that runs it
        check_distill_settings(cfg("method=boost", "outer.steps=0"))
    check_distill_settings(cfg("method=random", "outer.steps=0"))  # ... and not for one that does not
    with pytest.raises(ConfigError, match=r"method=high_loss needs mkdt\.experts"):
        check_distill_settings(cfg("method=high_loss"))
    with pytest.raises(ConfigError, match=r"mkdt\.syn_steps"):
        check_distill_settings(cfg("method=mkdt", "mkdt.experts=e", "mkdt.syn_steps=0"))
    with pytest.raises(ConfigError, match="method='nope'"):
        check_distill_settings(cfg("method=nope"))


def test_a_parallel_method_needs_a_real_row_for_each_process():
    check_processes(cfg("method=krr_st", "outer.batch_size=4"), 4)
    with pytest.raises(ConfigError, match="smaller than the 8 processes"):
        check_processes(cfg("method=krr_st", "outer.batch_size=4"), 8)
    check_processes(cfg("method=random", "outer.batch_size=4"), 8)  # rank 0 alone runs it


def test_keys_other_methods_read_are_free_for_this_one():
    from ssdd.config import config_to_dict

    mkdt_keys = {f"mkdt.{k}" for k in config_to_dict(cfg())["mkdt"]}
    assert method_free_keys(config_to_dict(cfg("method=mkdt"))) == ()
    assert set(method_free_keys(config_to_dict(cfg("method=krr_st")))) == mkdt_keys
    assert set(method_free_keys(config_to_dict(cfg("method=high_loss")))) == mkdt_keys - {"mkdt.experts"}
    posthoc = resumable_keys(cfg("method=boost"))
    assert "boost.approx_lr" in posthoc and "name" in posthoc and "out_dir" in posthoc
    assert "boost.approx_lr" not in resumable_keys(cfg("method=boost", "boost.approximation=joint"))
    assert "boost.approx_lr" not in resumable_keys(cfg("method=krr_st"))



@pytest.mark.parametrize("override, key", [("outer.fast=sometimes", "outer.fast"),
                                           ("outer.teacher_cache=maybe", "outer.teacher_cache"),
                                           ("outer.precision=fp16", "outer.precision"),
                                           ("outer.teacher_precision=bfloat16", "outer.teacher_precision")])
def test_bad_fast_path_settings_are_one_line_errors(override, key):
    with pytest.raises(ConfigError) as caught:
        check_distill_settings(cfg("method=krr_st", override))
    assert str(caught.value).startswith(key) and "\n" not in str(caught.value)
    for good in ("outer.fast=on", "outer.fast=false", "outer.teacher_cache=auto", "outer.precision=bf16"):
        check_distill_settings(cfg("method=krr_st", good))


def test_fast_path_settings_resume_and_keep_study_keys_and_bf16_does_neither():
    from ssdd.study.runner import LEGACY_VALUES, NOT_HASHED

    keys = resumable_keys(cfg("method=krr_st"))
    assert {"outer.fast", "outer.teacher_cache"} <= set(keys)
    assert {"outer.fast", "outer.teacher_cache"} <= set(NOT_HASHED["distill"])
    assert "outer.precision" not in keys and "outer.precision" not in NOT_HASHED["distill"]
    assert LEGACY_VALUES["distill"] == {"outer.precision": "fp32", "outer.teacher_precision": "fp32"}


def test_a_plugin_without_a_budget_rule_is_distilled_and_only_sets_written_elsewhere_are_refused():
    """`samples` is an optional hook: a plugin without it runs under ssdd distill; a method whose sets another
    command writes (written_by, the `imported` sets) is refused in one line that names that command."""
    from ssdd.distill.registry import DistillMethod, register_method, unregister_method
    from ssdd.distill.validate import method_of

    def never(*args):
        raise AssertionError("not called")

    register_method(DistillMethod("plugin_without_budget_rule", never, never))
    try:
        cfg = DistillConfig()
        cfg.method = "plugin_without_budget_rule"
        assert method_of(cfg).name == "plugin_without_budget_rule"
        cfg.method = "imported"
        with pytest.raises(ConfigError, match=r"^method='imported': its sets are written by `ssdd import-distilled`"):
            method_of(cfg)
        cfg.method = "nope"
        with pytest.raises(ConfigError) as info:
            method_of(cfg)
        assert "plugin_without_budget_rule" in str(info.value) and "imported" not in str(info.value)
    finally:
        unregister_method("plugin_without_budget_rule")
