"""The `ssdd` command line's argparse parser, and the key=value overrides that follow a flag taking several values.

Kept free of torch so that building the parser stays fast."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

# a config override: a dotted key, list entries indexed as `targets[0].name` or `targets.0.name`, then "="
# (ssdd.config's key=value: an index updates that entry; a list's length changes only by giving the whole list)
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\[\]-]*=")


def is_override(token: str) -> bool:
    """`key=value` (a config override) and not an existing path that happens to hold '='."""
    return bool(_OVERRIDE.match(token)) and not Path(token).exists()


def move_overrides(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """Take the key=value overrides that a flag taking several values swallowed (`--distilled A out_dir=X`)
    back from that flag's list; returns every override (the positional ones, those, then `extra`) in order."""
    moved: list[str] = []
    for dest, value in vars(args).items():
        if dest == "overrides" or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            continue
        kept = [v for v in value if not is_override(v)]
        if len(kept) != len(value):
            moved += [v for v in value if is_override(v)]
            setattr(args, dest, kept)
    return [*args.overrides, *moved, *extra]


class Formatter(argparse.HelpFormatter):
    """argparse's help, where a ChannelValues option shows as `--mean R,G,B` (not `R,G,B [R,G,B ...]`, which
    reads as any number of triples)."""

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if getattr(action, "one_or_three", False):
            return self._metavar_formatter(action, default_metavar)(1)[0]
        return super()._format_args(action, default_metavar)


class Parser(argparse.ArgumentParser):
    """argparse's parser, where a ChannelValues option (ssdd.cli.channel_args) consumes one word or three (never
    more) and shows as one in the help (Formatter), whose usage errors are printed by rank 0 only under torchrun,
    and whose description may be computed when the help is printed (`describe`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)  # subcommands' parsers too (add_parser builds this class)
        super().__init__(*args, **kwargs)

    def _get_nargs_pattern(self, action: argparse.Action) -> str:
        if getattr(action, "one_or_three", False) and action.option_strings:
            return "(A(?:AA)?)"
        return super()._get_nargs_pattern(action)

    # a callable giving the description, called only when the help is printed (it may import the registries)
    describe: Callable[[], str] | None = None

    def format_help(self) -> str:
        if self.describe is not None:
            self.description = self.describe()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        from ssdd.run.distributed import is_main_process

        if is_main_process():
            self.print_usage(sys.stderr)
            self.exit(2, f"{self.prog}: error: {message}\n")
        self.exit(2)
