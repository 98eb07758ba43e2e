"""Plugins: distillation methods, network architectures and Boost's views registered by modules outside ssdd.

A plugin is a module that calls `ssdd.distill.registry.register_method` (or `ssdd.models.register`, or
`ssdd.distill.views.register_view`) when it is imported. ssdd imports it the first time it looks a method, an
architecture or a view up, in every process it runs (the command, each torchrun rank, each process of
`ssdd evaluate --processes`), when it is named in either way:

- an installed package declares it as an entry point of the group `ssdd.plugins`, in its pyproject.toml:
  `[project.entry-points."ssdd.plugins"]` then `means = "my_package.means"`;
- the environment variable `SSDD_PLUGINS` lists modules importable from the Python path, separated by commas:
  `SSDD_PLUGINS=my_method,my_backbone PYTHONPATH=. ssdd distill method=means ...` (the `ssdd` command does not
  look in the current folder by itself).

Nothing here imports torch: `ssdd distill --help` names the plugins without loading them.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

GROUP = "ssdd.plugins"  # the entry-point group of installed plugins
ENV = "SSDD_PLUGINS"  # modules to import, separated by commas
_state = "not loaded"  # | "loading" | "loaded"
_failure: str | None = None  # the one-line error of a plugin that failed to import, raised again by every lookup


def plugin_modules() -> list[tuple[str, str]]:
    """(module, where it is named) of every plugin, SSDD_PLUGINS first, then the installed entry points; a module
    named twice once."""
    named = [(name.strip(), ENV) for name in os.environ.get(ENV, "").split(",") if name.strip()]
    named += [(point.module, f"the entry point {point.name!r} of {GROUP}") for point in entry_points(group=GROUP)]
    first: dict[str, str] = {}
    for module, where in named:
        first.setdefault(module, where)
    return list(first.items())


def load_plugins() -> None:
    """Import every plugin, once per process. A plugin that fails to import is a ValueError in one line, the same
    at every later lookup (importing it again could fail otherwise: a method it registered before failing would be
    "registered twice"). A plugin that looks a method up while it imports does not recurse."""
    global _state, _failure
    if _failure is not None:
        raise ValueError(_failure)
    if _state != "not loaded":
        return
    _state = "loading"
    for module, where in plugin_modules():
        try:
            importlib.import_module(module)
        except Exception as exc:  # its own error, whatever it is: one line naming the plugin
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            hint = (" (a module in the current folder: add the folder to PYTHONPATH; the `ssdd` command does not "
                    "look there)" if isinstance(exc, ModuleNotFoundError) and exc.name == module else "")
            _failure = f"plugin {module} (named by {where}) failed to import: {type(exc).__name__}: {first}{hint}"
            raise ValueError(_failure) from None
    _state = "loaded"
