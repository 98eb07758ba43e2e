"""`--mean`/`--std` of the importers: three numbers, one per channel, written `R,G,B` (one word) or `R G B` (three).

Both `ssdd import-teacher` and `ssdd import-distilled` take them through `add_channel_argument`. The command-line
parser (ssdd.cli.parser.Parser) lets such an option take one word or three, so that a positional argument after it
(`--mean 0.5,0.5,0.5 x_syn.pt`) is not swallowed. Kept free of torch so that building the parser stays fast.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any


def three_floats(words: Sequence[str]) -> list[float]:
    """Three finite numbers from `["R,G,B"]`, `["R", "G", "B"]` or any mix of commas and spaces."""
    text = " ".join(words)
    parts = [p for p in text.replace(",", " ").split()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 3 numbers (R,G,B or R G B), got '{text}'") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 numbers, one per channel (R,G,B or R G B), got '{text}'")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected 3 finite numbers, got '{text}'")
    return values


class ChannelValues(argparse.Action):
    """Stores three_floats(values); ssdd.cli.parser.Parser gives it one word or three."""

    one_or_three = True

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        try:
            setattr(namespace, self.dest, three_floats([values] if isinstance(values, str) else list(values)))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None


def add_channel_argument(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """`flag` taking three numbers, `R,G,B` or `R G B` (None when not given)."""
    parser.add_argument(flag, action=ChannelValues, nargs="+", default=None, metavar="R,G,B", help=help)
