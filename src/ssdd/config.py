"""Typed configs: dataclass schemas, YAML presets and `key=value` command-line overrides.

Every command has a dataclass schema. A run's config is the schema's defaults, then the YAML given with
`--config` (a file, or the name of a preset packaged in ssdd/presets), then the overrides, each
validated by omegaconf: unknown keys and wrong types are rejected with the list of valid keys. The
resolved config is saved beside every artifact (see `config_to_dict`).
"""

from __future__ import annotations

import dataclasses
import operator
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


PATHLESS_SOURCES = ("digits",)  # data sources that never read `data.path` (it keeps its default, unused)


@dataclass
class DataConfig:
    """Where a dataset comes from and how it is prepared (see README, 'Data formats')."""

    source: str = "npz"  # npz | torchvision | folder | digits
    path: str = "data/cifar100.npz"  # npz file, torchvision root folder, or ImageFolder root
    name: str = ""  # torchvision dataset name (cifar10, cifar100, flowers102, ...); free text otherwise
    train_split: str = "train"
    test_split: str = "test"
    resolution: int = 32  # images are resized to resolution x resolution
    download: bool = False  # torchvision only: allow downloading the files
    subset: int = 0  # keep a random subset of this many train images (0 = all)



def dataset_name(cfg: DataConfig) -> str:
    """The name of the dataset `cfg` loads (what a result row calls a target): `name` when set, else the npz
    file's stem, the image folder's name, or `digits`."""
    if cfg.name or cfg.source == "torchvision":
        return cfg.name
    return {"npz": Path(cfg.path).stem, "folder": Path(cfg.path).resolve().name}.get(cfg.source, cfg.source)


def is_count(value: object, minimum: int = 1) -> bool:
    """Whether `value` is a whole number (a Python or NumPy integer; not a bool, not a float) of at least
    `minimum`: a count of pixels, steps, images."""
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return False
    return not isinstance(value, bool) and number >= minimum

@dataclass
class ModelConfig:
    """A network from the registry in ssdd.models; 0 means the architecture's own default."""

    name: str = "resnet18"
    width: int = 0  # ResNet: channels of the first stage; ConvNet: channels of the first block
    depth: int = 0  # ConvNet: number of conv blocks
    feature: str = "default"  # ConvNet: flatten | pool; ResNet always pools


def _valid_keys(node: Any) -> list[str]:
    if dataclasses.is_dataclass(node):
        return [f.name for f in dataclasses.fields(node)]
    return []


def _schema_at(schema: type, dotted: str) -> Any:
    node: Any = schema
    for part in dotted.split(".") if dotted else []:
        fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
        if part not in fields:
            return node
        f = fields[part]
        node = f.type if isinstance(f.type, type) else _resolve_type(node, part)
    return node


def _resolve_type(owner: Any, name: str) -> Any:
    import typing

    hints = typing.get_type_hints(owner)
    return hints.get(name)


# omegaconf's words for a scalar given where a list or a section goes, and what to say instead
SHAPE_ERRORS = (("is not a ListConfig", "a list in brackets"), ("is not a subclass of", "a mapping in braces"))


def _explain(exc: OmegaConfBaseException, schema: type, origin: str, key: str = "") -> ConfigError:
    """One line for omegaconf's error; `key`: the dotted key of the override that raised it, when one did."""
    full_key = getattr(exc, "full_key", None) or ""
    if isinstance(exc, ConfigKeyError):
        parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        valid = _valid_keys(_schema_at(schema, parent))
        where = f" under '{parent}'" if parent else ""
        hint = ""
        if ":" in full_key.rsplit(".", 1)[-1]:  # `{source:npz}`: YAML reads a key, not key: value
            hint = "; in YAML a mapping needs a space after each colon: {source: npz, path: x.npz}"
        return ConfigError(
            f"unknown config key '{full_key}' ({origin}); valid keys{where}: {', '.join(valid)}{hint}"
        )
    if isinstance(exc, ValidationError):
        message = str(exc).splitlines()[0]
        for words, written in SHAPE_ERRORS:
            if words in message:  # omegaconf's words for a scalar given where a list or a section goes
                full_key = full_key or key
                default = _default_text(schema, full_key)
                example = f" (its default: {full_key}={default})" if default else ""
                return ConfigError(f"bad value for '{full_key}' ({origin}): expected {written}{example}")
        return ConfigError(f"bad value for '{full_key}' ({origin}): {message}")
    return ConfigError(f"invalid config ({origin}): {str(exc).splitlines()[0]}")


def _default_text(schema: type, key: str) -> str:
    """The schema's default of dotted `key` in override syntax (flow YAML on one line), or '' when unknown."""
    try:
        value = OmegaConf.to_container(OmegaConf.select(OmegaConf.structured(schema), key, throw_on_missing=True))
    except (OmegaConfBaseException, ValueError):
        return ""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()


# ----------------------------------------------------------------------------- packaged presets
PRESET_SUFFIX = ".yaml"


def _folder() -> Traversable:
    return resources.files("ssdd").joinpath("presets")


def preset_names() -> list[str]:
    """Every packaged preset, by name (the file name without .yaml), sorted."""
    return sorted(entry.name.removesuffix(PRESET_SUFFIX) for entry in _folder().iterdir()
                  if entry.is_file() and entry.name.endswith(PRESET_SUFFIX))


def find_preset(name: str) -> Traversable | None:
    """The packaged preset called `name` (with or without .yaml), or None."""
    stem = name.removesuffix(PRESET_SUFFIX)
    return _folder().joinpath(stem + PRESET_SUFFIX) if stem in preset_names() else None


def read_config_text(config: str | Path) -> tuple[str, str]:
    """The YAML text of `--config X` and where it came from: the file X if it exists, else the packaged
    preset X (with or without .yaml); else a one-line ConfigError."""
    path = Path(config)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file (a config is YAML, in UTF-8)") from None
    preset = find_preset(str(config))
    if preset is None:
        raise ConfigError(f"config '{config}' is neither a file nor a preset (ssdd presets lists them)")
    return preset.read_text(encoding="utf-8"), f"preset {str(config).removesuffix('.yaml')}"


# Config sections renamed since configs were first saved: old name -> new name. The old name keeps working in
# YAML files and overrides (with a one-line notice); `saved_form` gives a config dict its old names back where
# a saved form must not change (the stages' cache keys), `current_form` reads a saved dict in today's names.
RENAMED_SECTIONS = {"krr": "outer"}
_NOTICED: set[str] = set()


def _renamed_head(key: str, schema: type) -> str | None:
    """The new name of a renamed section that `key` (a top-level key or a dotted override) starts with."""
    head = key.split(".", 1)[0]
    new = RENAMED_SECTIONS.get(head)
    fields = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else set()
    return new if new in fields else None


def _notice(old: str, new: str) -> None:
    if old not in _NOTICED and os.environ.get("RANK", "0") == "0":
        print(f"ssdd: note: '{old}' is now '{new}' (the old name still works)", file=sys.stderr)
    _NOTICED.add(old)


def _rename_sections(loaded: dict[str, Any], schema: type, origin: str) -> dict[str, Any]:
    for old in [k for k in loaded if isinstance(k, str) and _renamed_head(k, schema) and "." not in k]:
        new = RENAMED_SECTIONS[old]
        if new in loaded:
            raise ConfigError(f"{origin}: '{old}' is the old name of '{new}'; give the section once")
        _notice(old, new)
        loaded = {(new if k == old else k): v for k, v in loaded.items()}
    return loaded


def _rename_override(item: str, schema: type) -> str:
    key = item.split("=", 1)[0]
    new = _renamed_head(key, schema)
    if new is None:
        return item
    old = key.split(".", 1)[0]
    _notice(old, new)
    return new + item[len(old):]


def current_name(key: str) -> str:
    """A dotted key (`krr.lr`) in today's section names (`outer.lr`)."""
    head, _, rest = key.partition(".")
    return f"{RENAMED_SECTIONS[head]}{'.' if rest else ''}{rest}" if head in RENAMED_SECTIONS else key


def saved_name(key: str) -> str:
    """A dotted key (`outer.lr`) in the section names it was first saved with (`krr.lr`)."""
    old_of = {new: old for old, new in RENAMED_SECTIONS.items()}
    head, _, rest = key.partition(".")
    return f"{old_of[head]}{'.' if rest else ''}{rest}" if head in old_of else key


def current_form(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config dict (a checkpoint's, a manifest's) in today's section names."""
    old_of = {old: new for old, new in RENAMED_SECTIONS.items() if old in config and new not in config}
    return {old_of.get(k, k): v for k, v in config.items()}


def saved_form(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict in the section names it was first saved with (what the stages' cache keys hash)."""
    new_of = {new: old for old, new in RENAMED_SECTIONS.items() if new in config and old not in config}
    return {new_of.get(k, k): v for k, v in config.items()}


def _merge_yaml(cfg: Any, schema: type, text: str, origin: str) -> Any:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML ({exc})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of keys to values")
    loaded = _rename_sections(loaded or {}, schema, origin)
    _groups_are_mappings(loaded, cfg, origin)
    try:
        return OmegaConf.merge(cfg, OmegaConf.create(loaded or {}))
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, origin) from None
    except RecursionError:  # an anchor that holds itself (a: &x [*x])
        raise ConfigError(f"{origin}: a YAML alias refers to itself; write the value out") from None


def _groups_are_mappings(loaded: Any, cfg: Any, origin: str, at: str = "") -> None:
    """A group of settings (optim, data, ...) given a single value in YAML (`optim: 5`) is a ConfigError naming
    the group, not omegaconf's message about the whole config."""
    if not isinstance(loaded, dict) or not isinstance(cfg, DictConfig):
        return
    for key, value in loaded.items():
        node = cfg.get(key) if key in cfg else None
        if isinstance(node, DictConfig) and value is not None and not isinstance(value, dict):
            raise ConfigError(f"{at}{key}: {value!r} in {origin}, but {at}{key} is a group of settings: give them "
                              f"beneath it, one indented `KEY: VALUE` per line (--print-config lists them)")
        _groups_are_mappings(value, node, origin, f"{at}{key}.")


def _to_object(cfg: Any, schema: type) -> Any:
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, "resolved config") from None


def config_from_yaml(schema: type[T], text: str, origin: str = "YAML") -> T:
    """Validate YAML text against a schema (defaults <- text); ConfigError when it does not fit."""
    return _to_object(_merge_yaml(OmegaConf.structured(schema), schema, text, origin), schema)


def _through_list(cfg: Any, item: str) -> bool:
    """Whether an override's key (`targets[0].name`, `targets.0.name`) indexes into a list of `cfg`. An index
    that is not a number, or past the list's end, is a ConfigError: a list's length changes only by giving the
    whole list."""
    key = item.split("=", 1)[0]
    node, path, through = cfg, "", False
    for part in re.findall(r"[^.\[\]]+", key):
        if isinstance(node, ListConfig):
            whole = f"give the whole list instead ({path}=[...])"
            if not part.isdigit():
                raise ConfigError(f"override '{item}': {path} is a list; index it with a number from 0 "
                                  f"({path}[0]...) or {whole}")
            if int(part) >= len(node):
                raise ConfigError(f"override '{item}': {path} holds {len(node)} entries (indices 0 to "
                                  f"{len(node) - 1}); to add one, {whole}")
            node, path, through = node[int(part)], f"{path}[{part}]", True
        elif isinstance(node, DictConfig) and part in node:
            node, path = node[part], f"{path}.{part}" if path else part
        else:
            break
    return through


def _apply_override(cfg: Any, item: str) -> Any:
    """`cfg` with one `key=value` override applied, the value read as YAML. A key into a list (`targets[0].name`,
    `targets.0.name`) updates that entry in place; any other key merges, as omegaconf's dotlist does."""
    if not _through_list(cfg, item):
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    key, value = item.split("=", 1)
    parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={value}"]))["value"]  # the same YAML reading
    cfg = cfg.copy()
    OmegaConf.update(cfg, key, parsed, merge=True)
    return cfg


def load_config(schema: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build a validated config: schema defaults <- YAML file or packaged preset <- `a.b=value` overrides."""
    if isinstance(overrides, str):  # its letters would be read as overrides
        raise ConfigError(f"overrides must be a list of key=value strings, got the string {overrides!r}: write "
                          f"[{overrides!r}]")
    cfg = OmegaConf.structured(schema)
    if path is not None:
        cfg = _merge_yaml(cfg, schema, *read_config_text(path))
    preset = cfg
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (for example optim.epochs=10)")
        item = _rename_override(item, schema)  # an old section name becomes today's
        try:
            try:
                cfg = _apply_override(cfg, item)
            except ValidationError as exc:
                if not item.endswith("="):
                    raise _explain(exc, schema, f"override '{item}'", item.split("=", 1)[0]) from None
                try:  # `key=` reads as null; a key that refuses null (a string) takes it as the empty string
                    cfg = _apply_override(cfg, f"{item}''")
                except OmegaConfBaseException:
                    raise _explain(exc, schema, f"override '{item}'", item.split("=", 1)[0]) from None
        except ConfigError:
            raise
        except OmegaConfBaseException as exc:
            raise _explain(exc, schema, f"override '{item}'", item.split("=", 1)[0]) from None
        except yaml.YAMLError as exc:  # the value is read as YAML: an unclosed bracket or quote
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"override '{item}': its value is not valid YAML ({problem}); quote the whole "
                              "override for the shell and check its brackets and quotes") from None
    _datasets_after_overrides(cfg, preset, overrides or [])
    return _to_object(cfg, schema)


def _datasets_after_overrides(cfg: Any, preset: Any, overrides: list[str], at: tuple[str, ...] = ()) -> None:
    """Two rules for the datasets (`data`, `source`, `targets[i]`) that overrides change. A path given to a
    source that reads none (digits) is a ConfigError, not ignored. And a dataset's `name` in a preset (or the
    defaults) names the file or folder it sits beside: where overrides point the dataset at another npz file or
    image folder without naming it, its name becomes the one its file or folder gives (`dataset_name`), not the
    preset's `cifar100`, which would label the results and pick another dataset's fine-tuning length
    (`finetune.source_scale`)."""
    if isinstance(cfg, DictConfig) and OmegaConf.get_type(cfg) is DataConfig:
        if cfg.source in PATHLESS_SOURCES and any(_sets_key(item, at, "path") for item in overrides):
            where = ".".join(at)
            raise ConfigError(f"{where}.path is not read by {where}.source={cfg.source}: add {where}.source=npz (a "
                              f".npz file) or {where}.source=folder (an image folder)")
        moved = isinstance(preset, DictConfig) and (cfg.path, cfg.source) != (preset.get("path"), preset.get("source"))
        if moved and cfg.source != "torchvision" and cfg.name and cfg.name == preset.get("name") and \
                not any(_sets_key(item, at, "name") for item in overrides):
            # the name its file or folder gives: a moved copy of the same file keeps its name (and a --resume
            # or a study key sees the same config)
            cfg.name = dataset_name(DataConfig(source=cfg.source, path=cfg.path))
        return
    children = cfg.items() if isinstance(cfg, DictConfig) else enumerate(cfg) if isinstance(cfg, ListConfig) else ()
    for key, child in children:
        if isinstance(preset, DictConfig):
            before = preset.get(key)
        else:
            before = preset[key] if isinstance(preset, ListConfig) and key < len(preset) else None
        _datasets_after_overrides(child, before, overrides, (*at, str(key)))


def _sets_key(item: str, at: tuple[str, ...], field: str) -> bool:
    """Whether an override sets `field` of the dataset at `at`: `data.name=...`, `data={..., name: ...}`, or a
    list of datasets whose entry at `at` holds it (`targets=[{...}, {..., name: ...}]`)."""
    key, value = item.split("=", 1)
    parts = tuple(re.findall(r"[^.\[\]]+", key))
    if parts == (*at, field):
        return True
    if parts != at[: len(parts)]:
        return False
    try:
        node = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={value}"]))["value"]
    except Exception:  # not YAML: the override itself says so when it is applied
        return False
    for part in at[len(parts):]:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return isinstance(node, dict) and field in node


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain data (for JSON manifests and config.yaml)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> Path:
    from ssdd.run.runtime import atomic_write

    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))

