"""`--mean`/`--std` of the importers: three numbers, one per channel, written `R,G,B` (one word) or `R G B` (three),
in [0, 1] pixel units (a pixel's value / 255: a mean lies in [0, 1], a std in (0, 1]); the two go together.

Both `ssdd import-teacher` and `ssdd import-distilled` take them through `add_channel_argument`. The command-line
parser (ssdd.cli.parser.Parser) lets such an option take one word or three, so that a positional argument after it
(`--mean 0.5,0.5,0.5 x_syn.pt`) is not swallowed. Kept free of torch so that building the parser stays fast.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

PIXEL_UNITS = "in [0, 1] pixel units"
# what each flag may hold in those units: (lowest, lowest allowed itself, highest)
RANGES = {"--mean": (0.0, True, 1.0), "--std": (0.0, False, 1.0)}


def three_floats(words: Sequence[str]) -> list[float]:
    """Three finite numbers from `["R,G,B"]`, `["R", "G", "B"]` or any mix of commas and spaces."""
    text = " ".join(words)
    parts = [p for p in text.replace(",", " ").split()]
    expected = f"expected 3 numbers, one per channel (R,G,B or R G B) {PIXEL_UNITS}, got '{text}'"
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(expected) from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(expected)
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected 3 finite numbers, got '{text}'")
    return values


def check_range(flag: str, values: list[float]) -> None:
    """Values of `flag` (a key of RANGES) inside its range in [0, 1] pixel units; a likely 0-255 value is named."""
    low, low_allowed, high = RANGES[flag]
    if all((v >= low if low_allowed else v > low) and v <= high for v in values):
        return
    allowed = f"[{low:g}, {high:g}]" if low_allowed else f"({low:g}, {high:g}]"
    hint = " (0-255 pixel values? divide them by 255)" if max(values) > high else ""
    raise argparse.ArgumentTypeError(f"expected 3 numbers in {allowed} (pixel / 255, one per channel), got "
                                     f"{','.join(f'{v:g}' for v in values)}{hint}")


class ChannelValues(argparse.Action):
    """Stores three_floats(values), checked against the flag's range (RANGES); ssdd.cli.parser.Parser gives it one
    word or three and shows it as one `R,G,B` in the usage line."""

    one_or_three = True

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        try:
            numbers = three_floats([values] if isinstance(values, str) else list(values))
            check_range(self.option_strings[0], numbers)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        setattr(namespace, self.dest, numbers)


def add_channel_argument(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """`flag` (--mean or --std) taking three numbers, `R,G,B` or `R G B` (None when not given); its help says
    what they are after `help`."""
    other = "--std" if flag == "--mean" else "--mean"
    parser.add_argument(flag, action=ChannelValues, nargs="+", default=None, metavar="R,G,B",
                        help=f"{help}: 3 numbers, one per channel, {PIXEL_UNITS} (pixel / 255), written R,G,B or "
                             f"R G B; give {other} with it")
