"""Typed configs: defaults <- YAML <- overrides, with clear errors for unknown keys and wrong types."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ssdd.config import ConfigError, DataConfig, dataset_name, load_config, save_config
from ssdd.teacher.config import TeacherConfig

CONFIGS = Path(__file__).parents[1] / "src" / "ssdd" / "presets"  # configs/ is a symlink to it


def _yaml(tmp_path: Path, payload, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else yaml.safe_dump(payload))
    return path


def test_defaults_when_nothing_given():
    cfg = load_config(TeacherConfig)
    assert isinstance(cfg, TeacherConfig)
    assert cfg == TeacherConfig()
    assert cfg.optim.epochs == 1000 and cfg.projector == [2048, 2048, 2048]
    assert isinstance(cfg.data, DataConfig) and cfg.data.source == "npz"


def test_yaml_values_applied(tmp_path):
    path = _yaml(tmp_path, {"seed": 7, "data": {"source": "digits", "resolution": 16},
                            "optim": {"epochs": 5, "lr": 0.1}, "projector": [32, 16],
                            "augment": {"view2": {"solarize_p": 0.0}}})
    cfg = load_config(TeacherConfig, path)
    assert cfg.seed == 7
    assert cfg.data.source == "digits" and cfg.data.resolution == 16
    assert cfg.data.path == DataConfig().path  # untouched keys keep their defaults
    assert cfg.optim.epochs == 5 and cfg.optim.lr == 0.1 and cfg.optim.batch_size == 256
    assert cfg.projector == [32, 16]
    assert cfg.augment.view2.solarize_p == 0.0 and cfg.augment.view1.grayscale_p == 0.2


def test_empty_yaml_gives_defaults(tmp_path):
    assert load_config(TeacherConfig, _yaml(tmp_path, "")) == TeacherConfig()


def test_overrides_applied_after_yaml(tmp_path):
    path = _yaml(tmp_path, {"seed": 7, "optim": {"epochs": 5, "lr": 0.1}, "projector": [32, 16]})
    cfg = load_config(TeacherConfig, path, ["optim.epochs=3", "projector=[64,64]", "data.download=true",
                                            "model.name=convnet"])
    assert cfg.optim.epochs == 3 and isinstance(cfg.optim.epochs, int)
    assert cfg.optim.lr == 0.1  # from the YAML, not overridden
    assert cfg.projector == [64, 64]
    assert cfg.data.download is True
    assert cfg.model.name == "convnet"
    assert cfg.seed == 7
    # a later override wins over an earlier one
    assert load_config(TeacherConfig, path, ["seed=1", "seed=2"]).seed == 2


def test_unknown_yaml_key_lists_valid_keys(tmp_path):
    path = _yaml(tmp_path, {"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError) as info:
        load_config(TeacherConfig, path)
    msg = str(info.value)
    assert "optim.lrr" in msg and "batch_size" in msg and "warmup_epochs" in msg
    assert str(path) in msg


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(TeacherConfig, _yaml(tmp_path, {"sed": 1}))
    msg = str(info.value)
    assert "'sed'" in msg and "seed" in msg and "optim" in msg


def test_unknown_override_key():
    with pytest.raises(ConfigError) as info:
        load_config(TeacherConfig, None, ["data.resolutoin=32"])
    msg = str(info.value)
    assert "data.resolutoin" in msg and "resolution" in msg and "override" in msg


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.epochs"):
        load_config(TeacherConfig, None, ["optim.epochs=abc"])
    with pytest.raises(ConfigError, match=r"optim\.epochs"):
        load_config(TeacherConfig, _yaml(tmp_path, {"optim": {"epochs": "many"}}))


def test_an_override_without_value_empties_a_string_and_is_refused_elsewhere():
    assert load_config(TeacherConfig, None, ["data.path="]).data.path == ""  # `key=` is the empty string
    with pytest.raises(ConfigError, match=r"bad value for 'optim\.epochs' \(override 'optim\.epochs='\)"):
        load_config(TeacherConfig, None, ["optim.epochs="])


def test_a_scalar_where_a_list_or_a_section_goes_says_what_to_write():
    """Not omegaconf's internal words (AnyNode, ListConfig): the shape expected and the default, in override
    syntax, to copy."""
    with pytest.raises(ConfigError) as info:
        load_config(TeacherConfig, None, ["projector=abc"])
    assert str(info.value) == ("bad value for 'projector' (override 'projector=abc'): expected a list in brackets "
                               "(its default: projector=[2048, 2048, 2048])")
    from ssdd.distill.config import DistillConfig

    with pytest.raises(ConfigError) as info:
        load_config(DistillConfig, None, ["outer.model=abc"])
    assert str(info.value).startswith("bad value for 'outer.model' (override 'outer.model=abc'): expected a mapping "
                                      "in braces (its default: outer.model={")


def test_a_flow_mapping_without_spaces_says_what_yaml_needs():
    from ssdd.evaluation.config import EvaluateConfig

    with pytest.raises(ConfigError, match=r"unknown config key 'source:npz'.*in YAML a mapping needs a space after "
                                          r"each colon: \{source: npz, path: x\.npz\}$"):
        load_config(EvaluateConfig, None, ["targets=[{source:npz,path:mine.npz}]"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value") as info:
        load_config(TeacherConfig, None, ["optim.epochs"])
    assert "'optim.epochs'" in str(info.value)


def test_override_whose_value_is_not_yaml():
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(TeacherConfig, None, ["optim.epochs=[1, 2"])
    assert "'optim.epochs=[1, 2'" in str(info.value)


def test_missing_yaml_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="neither a file nor a preset") as info:
        load_config(TeacherConfig, path)
    assert str(path) in str(info.value)


def test_yaml_top_level_list(tmp_path):
    path = _yaml(tmp_path, "- seed\n- 3\n")
    with pytest.raises(ConfigError, match="mapping") as info:
        load_config(TeacherConfig, path)
    assert str(path) in str(info.value)


def test_invalid_yaml_syntax(tmp_path):
    path = _yaml(tmp_path, "seed: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TeacherConfig, path)


def test_save_config_round_trip(tmp_path):
    cfg = load_config(TeacherConfig, None, ["seed=3", "optim.epochs=4", "projector=[8,8]", "data.source=digits",
                                            "augment.view1.jitter=[0.1,0.2,0.3,0.05]"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert path.is_file()
    loaded = load_config(TeacherConfig, path)
    assert loaded == cfg
    assert loaded != TeacherConfig()
    assert yaml.safe_load(path.read_text())["optim"]["epochs"] == 4
    assert not [p for p in path.parent.iterdir() if p.name != "config.yaml"]  # no temp files left


TEACHER_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name.startswith(("teacher", "demo_teacher")))


def test_teacher_configs_exist():
    assert TEACHER_CONFIGS, f"no teacher configs in {CONFIGS}"


@pytest.mark.parametrize("path", TEACHER_CONFIGS, ids=lambda p: p.name)
def test_shipped_teacher_configs_load(path):
    cfg = load_config(TeacherConfig, path)
    assert isinstance(cfg, TeacherConfig)
    raw = yaml.safe_load(path.read_text())
    if "seed" in raw:
        assert cfg.seed == raw["seed"]
    if "model" in raw and "name" in raw["model"]:
        assert cfg.model.name == raw["model"]["name"]


def _schema_for(path: Path) -> type:
    """The schema of the one command whose config the preset fits (tests/test_presets.py checks it is one)."""
    from ssdd.presets import command_schema, preset_commands

    commands = preset_commands(path.stem)
    assert len(commands) == 1, f"{path.name} fits the configs of {commands or 'no command'}"
    return command_schema(commands[0])


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_with_its_schema(path):
    schema = _schema_for(path)
    cfg = load_config(schema, path)
    raw = yaml.safe_load(path.read_text())
    for key, value in raw.items():
        if not isinstance(value, dict | list):
            assert getattr(cfg, key) == value, key


def test_the_old_krr_section_name_still_works_with_one_notice(tmp_path, capsys):
    import ssdd.config as config_module
    from ssdd.distill.config import DistillConfig

    config_module._NOTICED.clear()
    cfg = load_config(DistillConfig, None, ["krr.steps=7", "krr.lr=0.5"])
    assert cfg.outer.steps == 7 and cfg.outer.lr == 0.5
    assert capsys.readouterr().err.strip().splitlines() == [
        "ssdd: note: 'krr' is now 'outer' (the old name still works)"]
    old = tmp_path / "old.yaml"
    old.write_text("method: boost\nkrr: {steps: 9, model: {name: convnet, width: 8}}\n")
    cfg = load_config(DistillConfig, old)
    assert cfg.outer.steps == 9 and cfg.outer.model.width == 8
    both = tmp_path / "both.yaml"
    both.write_text("krr: {steps: 9}\nouter: {steps: 3}\n")
    with pytest.raises(ConfigError, match="'krr' is the old name of 'outer'"):
        load_config(DistillConfig, both)


def test_a_renamed_section_keeps_cache_keys_and_old_checkpoints_resumable():
    from ssdd.config import config_to_dict, current_form, current_name, saved_form, saved_name
    from ssdd.distill.config import DistillConfig
    from ssdd.run.folder import check_resume_compatible, config_hash

    cfg = load_config(DistillConfig, None, ["outer.steps=7"])
    now = config_to_dict(cfg)
    saved = saved_form(now)  # what a checkpoint or config.yaml written before the rename holds
    assert "krr" in saved and "outer" not in saved and saved["krr"]["steps"] == 7
    assert current_form(saved) == now and current_name("krr.lr") == "outer.lr" and saved_name("outer.lr") == "krr.lr"
    check_resume_compatible(saved, now)  # an old checkpoint's config resumes under today's names
    with pytest.raises(ValueError, match=r"outer\.steps"):
        check_resume_compatible(saved, config_to_dict(load_config(DistillConfig, None, ["outer.steps=8"])))
    # the stages' cache keys hash the saved form; that they did not move is tests/test_golden.py's check (its
    # fingerprints name the demo's stage folders, made before the rename)
    assert config_hash(saved) != config_hash(now)


@pytest.mark.parametrize("key", ["targets[0].name", "targets.0.name"])
def test_an_override_may_index_a_list_entry(key, capsys):
    from ssdd.cli import main

    assert main(["evaluate", "-c", "demo_evaluate", f"{key}=foo", "models[0].width=9", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["targets"][0]["name"] == "foo" and printed["models"][0]["width"] == 9
    assert printed["targets"][0]["source"] == "digits"  # the rest of the entry is the preset's


@pytest.mark.parametrize("override, needle", [
    ("targets[3].name=foo", "targets holds 1 entries (indices 0 to 0); to add one, give the whole list"),
    ("targets.x.name=foo", "targets is a list; index it with a number"),
    ("targets[0].resolution=big", "bad value for 'targets[0].resolution'")])
def test_a_bad_list_index_override_is_one_line(override, needle, tmp_path, capsys):
    from ssdd.cli import main

    assert main(["evaluate", "-c", "demo_evaluate", override, f"out_dir={tmp_path / 'out'}", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssdd evaluate: error:") and "\n" not in err and needle in err, err
    assert "please report" not in err and not (tmp_path / "out").exists()


def test_a_config_changed_in_python_is_checked_like_one_from_yaml():
    """docs/cli.md, "From Python": a misspelt attribute, a group replaced by a dict, a string where a list goes
    and overrides given as one string are each one line, not ignored or read letter by letter."""
    from ssdd.distill.config import DistillConfig
    from ssdd.distill.validate import check_distill_settings
    from ssdd.evaluation.config import EvaluateConfig
    from ssdd.evaluation.validate import check_evaluate_settings

    cases = [("outer", "stpes", 1, r"^outer\.stpes: not a setting of OuterConfig \(did you mean outer\.steps\?\)$"),
             (None, "bugdet", 5, r"^bugdet: not a setting of DistillConfig \(did you mean budget\?\)$"),
             (None, "outer", {"steps": 2}, r"^outer: expected OuterConfig settings, got a dict; build it as "
                                           r"OuterConfig\(\.\.\.\), or pass overrides such as outer\.KEY=VALUE")]
    for group, name, value, message in cases:
        cfg = load_config(DistillConfig, "demo_distill")
        setattr(getattr(cfg, group) if group else cfg, name, value)
        with pytest.raises(ConfigError, match=message):
            check_distill_settings(cfg)
    cfg = load_config(DistillConfig, "demo_distill")
    cfg.outer.steps = 2  # a setting changed in Python is fine
    check_distill_settings(cfg)
    evaluate = load_config(EvaluateConfig, "demo_evaluate")
    evaluate.distilled = "runs/boost"
    with pytest.raises(ConfigError, match=r"^distilled='runs/boost': expected a list; write \['runs/boost'\]$"):
        check_evaluate_settings(evaluate)
    evaluate.distilled = ("runs/boost",)
    check_evaluate_settings(evaluate)
    evaluate.distilled = None
    with pytest.raises(ConfigError, match=r"^distilled=None: expected a list$"):
        check_evaluate_settings(evaluate)
    evaluate = load_config(EvaluateConfig, "demo_evaluate")
    evaluate.models = [{"name": "resnet18"}]  # a list of groups: each item its dataclass
    with pytest.raises(ConfigError, match=r"^models\[0\]: expected ModelConfig settings, got a dict"):
        check_evaluate_settings(evaluate)
    cfg = load_config(DistillConfig, "demo_distill")
    cfg.outer.model = {"name": "resnet18"}  # a group whose default is built by a lambda
    with pytest.raises(ConfigError, match=r"^outer\.model: expected ModelConfig settings, got a dict"):
        check_distill_settings(cfg)
    evaluate = load_config(EvaluateConfig, "demo_evaluate")
    evaluate.modes = ("finetune", float("nan"))  # tuples are walked too
    with pytest.raises(ConfigError, match=r"^modes\[1\]=nan: must be a finite number$"):
        check_evaluate_settings(evaluate)
    with pytest.raises(ConfigError, match=r"^overrides must be a list of key=value strings, got the string "
                                          r"'budget=5': write \['budget=5'\]$"):
        load_config(DistillConfig, "demo_distill", "budget=5")


@pytest.mark.parametrize("overrides, name", [
    (["data.source=folder", "data.path=../my_images"], "my_images"),  # named by its folder
    (["data.path=other/cifar100_copy.npz"], "cifar100_copy"),  # named by its file
    (["data.path=/elsewhere/cifar100.npz"], "cifar100"),  # a moved copy keeps its name: resumes and study keys too
    (["data.path=other.npz", "data.name=cifar100"], "cifar100"),  # named on purpose
    (["data={source: npz, path: other.npz, name: cifar100}"], "cifar100"),
    (["data.resolution=16"], "cifar100"),  # the same data
    (["data.source=torchvision", "data.path=tv"], "cifar100"),  # torchvision: the name says which dataset
    (["data.source=digits"], "digits"),
])
def test_a_presets_dataset_name_does_not_follow_its_data_elsewhere(overrides, name):
    from ssdd.teacher.config import TeacherConfig

    assert load_config(TeacherConfig, "teacher_cpu", overrides).data.name == name


def test_a_target_pointed_elsewhere_is_named_by_its_file_also_in_a_whole_list():
    from ssdd.evaluation.config import EvaluateConfig

    cfg = load_config(EvaluateConfig, "evaluate_cpu", ["targets[1].path=mine/pets.npz"])
    assert [t.name for t in cfg.targets] == ["cifar10", "pets"] and cfg.source.name == "cifar100"
    whole = load_config(EvaluateConfig, "evaluate_cpu", [
        "targets=[{source: digits}, {source: npz, path: data/cifar10.npz, name: mine}]"])
    assert [dataset_name(t) for t in whole.targets] == ["digits", "mine"]  # the list's own entries, unrefused


def test_a_path_for_a_source_that_reads_none_is_refused():
    from ssdd.distill.config import DistillConfig

    with pytest.raises(ConfigError, match=r"^data\.path is not read by data\.source=digits: add data\.source=npz"):
        load_config(DistillConfig, "demo_distill", ["data.path=mine.npz"])
    assert load_config(DistillConfig, "demo_distill", ["data.source=npz", "data.path=mine.npz"]).data.path == "mine.npz"


@pytest.mark.parametrize("text, said", [
    (b"optim: 5\n", r"^optim: 5 in .*bad\.yaml, but optim is a group of settings: give them beneath it"),
    (b"optim:\n  lars_eta: {a: 1}\n", "lars_eta"),  # a value where a number goes: omegaconf's own line
    (b"a: &x [*x]\n", "a YAML alias refers to itself"),
    (b"\xff\xfe\x00bin", r"bad\.yaml: not a text file \(a config is YAML, in UTF-8\)"),
])
def test_a_yaml_file_that_cannot_be_a_config_is_one_line(tmp_path, text, said):
    (tmp_path / "bad.yaml").write_bytes(text)
    with pytest.raises(ConfigError, match=said):
        load_config(TeacherConfig, tmp_path / "bad.yaml")
