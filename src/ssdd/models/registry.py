"""Name -> backbone builder. Every backbone maps (B,3,R,R) images to (B, feature_dim) features."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ssdd.config import ModelConfig, is_count
from ssdd.plugins import ENV, GROUP, load_plugins

Builder = Callable[[ModelConfig, int], nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"model '{name}' is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def available() -> list[str]:
    load_plugins()
    return sorted(_BUILDERS)


def build_model(cfg: ModelConfig, resolution: int) -> nn.Module:
    """Build a backbone; the module has an int attribute `feature_dim`."""
    load_plugins()
    if cfg.name not in _BUILDERS:
        raise ValueError(f"unknown model '{cfg.name}' (available: {', '.join(available())}; a plugin's: name its "
                         f"module in {ENV}, or install it as an entry point of {GROUP})")
    if not is_count(resolution):
        raise ValueError(f"model '{cfg.name}': the resolution is a whole number of pixels, at least 1; got "
                         f"{resolution!r}")
    model = _BUILDERS[cfg.name](cfg, int(resolution))  # a NumPy integer too
    if not isinstance(getattr(model, "feature_dim", None), int):
        raise TypeError(f"model '{cfg.name}' does not define an int feature_dim")
    return model


def describe(cfg: ModelConfig) -> dict[str, object]:
    """What is needed to rebuild the architecture (stored in manifests)."""
    return {"name": cfg.name, "width": cfg.width, "depth": cfg.depth, "feature": cfg.feature}
