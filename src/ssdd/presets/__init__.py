"""The YAML presets shipped inside the package (`ssdd/presets/*.yaml`): names, text, descriptions, commands.

Read through importlib.resources, so they are found the same way in a checkout, an editable install and an
installed wheel (`ssdd.config.find_preset`, which `--config NAME` uses). `ssdd presets` uses this module.
"""

from __future__ import annotations

import ast
import functools
import importlib
from importlib import resources

import yaml

from ssdd.config import ConfigError, config_from_yaml, find_preset, preset_names

SCHEMAS = {  # command -> its config schema (module:class), imported only when a preset is classified
    "teacher": "ssdd.teacher.config:TeacherConfig",
    "distill": "ssdd.distill.config:DistillConfig",
    "experts": "ssdd.experts.config:ExpertsConfig",
    "evaluate": "ssdd.evaluation.config:EvaluateConfig",
    "reproduce": "ssdd.study.config:StudyConfig",
}


def preset_text(name: str) -> str:
    """The YAML text of a packaged preset; ConfigError naming the available ones when there is none."""
    preset = find_preset(name)
    if preset is None:
        raise ConfigError(f"no preset '{name}' (available: {', '.join(preset_names())})")
    return preset.read_text(encoding="utf-8")


def preset_description(text: str) -> str:
    """The first comment line of a preset's YAML, without the '#'."""
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def command_schema(command: str) -> type:
    """The config schema of a command of SCHEMAS."""
    module, _, cls = SCHEMAS[command].partition(":")
    return getattr(importlib.import_module(module), cls)


def preset_commands(name: str) -> list[str]:
    """The commands (teacher, distill, evaluate, ...) whose config schema accepts the preset."""
    text = preset_text(name)
    commands = []
    for command in SCHEMAS:
        try:
            config_from_yaml(command_schema(command), text, f"preset {name}")
        except ConfigError:
            continue
        commands.append(command)
    return commands


@functools.cache
def schema_keys(command: str) -> frozenset[str]:
    """The top-level keys of a command's config schema, read from the source of its dataclass (ast) rather than
    by importing it: the schemas' modules import torch, and `ssdd presets` should list presets as fast as
    `ssdd --help`."""
    module, _, cls = SCHEMAS[command].partition(":")
    source = resources.files("ssdd").joinpath(*module.split(".")[1:-1], module.split(".")[-1] + ".py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    return frozenset(item.target.id for item in node.body
                     if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name))


def listed_commands(name: str) -> list[str]:
    """The commands a preset is for, as `ssdd presets` lists them: those whose schema has every top-level key of
    the preset (the same as preset_commands, which validates every value, for every packaged preset)."""
    loaded = yaml.load(preset_text(name), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # C: 10x faster
    keys = set(loaded) if isinstance(loaded, dict) else set()
    return [command for command in SCHEMAS if keys and keys <= schema_keys(command)]


def preset_table() -> str:
    """One line per preset: name, the command it is for, its description."""
    rows = [(name, "/".join(listed_commands(name)) or "?", preset_description(preset_text(name)))
            for name in preset_names()]
    width = max(len(name) for name, _, _ in rows)
    command_width = max(len(command) for _, command, _ in rows)
    lines = [f"{name:<{width}}  {command:<{command_width}}  {description}" for name, command, description in rows]
    usage = "Use one with `ssdd COMMAND -c NAME [key=value ...]`; `ssdd presets NAME` prints it."
    return "\n".join([*lines, "", usage])
