"""The YAML presets packaged in ssdd/presets: found by name and by path, listed, printed, validated; and the
one-line messages for a missing preset, teacher or data file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import ssdd
from ssdd.cli import main
from ssdd.config import ConfigError, config_to_dict, load_config
from ssdd.distill.config import DistillConfig
from ssdd.evaluation.config import EvaluateConfig
from ssdd.presets import (
    SCHEMAS,
    command_schema,
    find_preset,
    listed_commands,
    preset_commands,
    preset_description,
    preset_names,
    preset_text,
)
from ssdd.teacher.config import TeacherConfig

PRESETS = Path(ssdd.__file__).parent / "presets"
NAMES = sorted(p.stem for p in PRESETS.glob("*.yaml"))
REPOSITORY_FOLDERS = ("configs/", "../shared", "artifacts/", "make data")


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_every_packaged_file_is_a_preset():
    assert len(NAMES) >= 12
    assert preset_names() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_preset_resolves_by_name_and_path_and_fits_one_schema(name):
    commands = preset_commands(name)
    assert len(commands) == 1, f"{name} validates against {commands or 'no schema'}"
    schema = command_schema(commands[0])
    by_name = load_config(schema, name)
    assert load_config(schema, f"{name}.yaml") == by_name
    assert load_config(schema, PRESETS / f"{name}.yaml") == by_name
    raw = yaml.safe_load(preset_text(name))
    for key, value in raw.items():
        if not isinstance(value, dict | list):
            assert config_to_dict(by_name)[key] == value, key


@pytest.mark.parametrize("name", NAMES)
def test_the_listing_names_the_command_the_full_validation_finds(name):
    assert listed_commands(name) == preset_commands(name)  # by top-level keys, without importing the schemas


@pytest.mark.parametrize("name", NAMES)
def test_preset_has_a_description_and_names_no_repository_folder(name):
    text = preset_text(name)
    assert text.startswith("# "), f"{name}: the first line must be a comment describing the preset"
    description = preset_description(text)
    assert 20 <= len(description) <= 130 and description[-1] in ".)", description
    for folder in REPOSITORY_FOLDERS:
        assert folder not in text, f"{name} names {folder}"


def test_demo_presets_chain_teacher_to_distill_and_evaluate():
    out = load_config(TeacherConfig, "demo_teacher").out_dir
    for name in ("demo_distill", "demo_distill_boost"):
        assert load_config(DistillConfig, name).teacher == f"{out}/teacher"
    assert load_config(EvaluateConfig, "demo_evaluate").teacher == f"{out}/teacher"


def test_a_file_wins_over_a_preset_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("cifar100").write_text("budget: 7\n")
    assert load_config(DistillConfig, "cifar100").budget == 7
    assert load_config(DistillConfig, "cifar100.yaml").budget == 100


def test_unknown_config_is_one_line(capsys):
    with pytest.raises(ConfigError, match=r"^config 'nope' is neither a file nor a preset \(ssdd presets lists"):
        load_config(DistillConfig, "nope")
    assert find_preset("nope") is None and find_preset("../presets/cifar100") is None
    assert main(["distill", "-c", "nope", "--print-config"]) == 2
    assert _one_error_line(capsys) == ("ssdd distill: error: config 'nope' is neither a file nor a preset "
                                       "(ssdd presets lists them)")


def test_presets_lists_every_preset_with_command_and_description(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and line.split()[0] in NAMES}
    assert sorted(rows) == NAMES
    for name, row in rows.items():
        assert row.split()[1] in SCHEMAS, row
        assert preset_description(preset_text(name)) in row
    assert rows["cifar100"].split()[1] == "distill" and rows["teacher_cpu"].split()[1] == "teacher"
    assert rows["evaluate_full"].split()[1] == "evaluate"


def test_presets_name_prints_the_yaml(capsys):
    assert main(["presets", "distill_cpu"]) == 0
    out = capsys.readouterr().out
    assert out == (PRESETS / "distill_cpu.yaml").read_text()
    assert main(["presets", "distill_cpu.yaml"]) == 0
    assert capsys.readouterr().out == out


def test_presets_unknown_name_is_one_line(capsys):
    assert main(["presets", "nope"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("ssdd presets: error: no preset 'nope' (available: ") and "cifar100" in line


def test_configs_symlink_points_at_the_presets():
    configs = Path(__file__).parents[1] / "configs"
    if not configs.exists():
        pytest.skip("not a checkout")
    assert configs.is_symlink() and configs.resolve() == PRESETS.resolve()


def test_teacher_defaults_are_empty():
    assert DistillConfig().teacher == "" and EvaluateConfig().teacher == ""


@pytest.mark.parametrize("command", ["distill", "evaluate"])
def test_without_a_teacher_says_what_to_pass(command, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert main([command, "--no-progress", f"out_dir={out_dir}", "device=cpu"]) == 2
    line = _one_error_line(capsys)
    assert line == (f"ssdd {command}: error: no teacher: pass teacher=PATH, an ssdd teacher folder (train one "
                    f"with 'ssdd teacher' or bring one with 'ssdd import-teacher')")
    assert main([command, "--no-progress", f"out_dir={out_dir}", f"teacher={tmp_path / 'absent'}"]) == 2
    line = _one_error_line(capsys)
    assert f"no teacher at '{tmp_path / 'absent'}': pass teacher=PATH" in line
    assert not out_dir.exists()
    staged = tmp_path / "runs" / "teacher" / "teacher-4f09ed35" / "teacher"  # where `ssdd reproduce` puts one
    staged.mkdir(parents=True)
    (staged / "manifest.json").write_text("{}")
    assert main([command, "--no-progress", f"out_dir={out_dir}", f"teacher={staged.parent.parent / 'teacher'}"]) == 2
    assert _one_error_line(capsys).endswith(f"but a study's teacher stage holds one: pass teacher={staged}")


def test_missing_data_file_says_what_to_pass(tmp_path, capsys):
    missing = tmp_path / "missing.npz"
    assert main(["teacher", "--no-progress", f"data.path={missing}", f"out_dir={tmp_path / 'o'}", "device=cpu"]) == 2
    line = _one_error_line(capsys)
    assert str(missing) in line and "data.path=" in line and "data.source=torchvision" in line
    for folder in REPOSITORY_FOLDERS:
        assert folder not in line


def test_no_source_file_names_a_repository_folder():
    """User-visible strings never point at folders of the development checkout."""
    root = Path(ssdd.__file__).parent
    for path in [*root.rglob("*.py"), *root.rglob("*.yaml")]:
        text = path.read_text()
        for folder in ("../shared", "make data", "configs/"):
            assert folder not in text, f"{path.relative_to(root)} names {folder}"
