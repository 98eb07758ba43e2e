"""Number formats shared by `ssdd report` and the `ssdd evaluate` summary: each kind of value printed with
the digits that are right for it (a speed-up of 0.51 is "0.51x", not "1x"; one seed has no "± 0.00")."""

from __future__ import annotations

import math

DASH = "-"


def significant(value: float, digits: int = 2) -> str:
    """`digits` significant digits below 10**digits (0.51, 2.1, 9.7, 21), whole numbers above (500, 1,234)."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    rounded = round(value, decimals)
    if rounded != 0 and math.floor(math.log10(abs(rounded))) > magnitude:  # 9.96 -> 10: one digit fewer
        decimals = max(0, decimals - 1)
    return f"{value:,.{decimals}f}"


def ratio(value: float | None, suffix: str = "x") -> str:
    """Speed-ups and compression: 0.51x, 2.1x, 21x, 500x."""
    return DASH if value is None else significant(value) + suffix


def fixed(value: float | None, decimals: int = 2, sign: bool = False) -> str:
    """value with `decimals` decimals (and its sign); a value that rounds to zero shows no minus sign."""
    if value is None:
        return DASH
    if round(value, decimals) == 0:
        value = 0.0  # -0.001 -> "+0.00", not "-0.00"
    return f"{value:{'+' if sign else ''},.{decimals}f}"


def mean_std(mean: float, std: float, n: int, decimals: int = 2, with_n: bool = True) -> str:
    """53.93 (n = 1) for one seed, 57.45 ± 0.86 (n = 3) for several."""
    text = f"{mean:.{decimals}f}" if n <= 1 else f"{mean:.{decimals}f} ± {std:.{decimals}f}"
    return f"{text} (n = {n})" if with_n else text


def seconds(value: float | None) -> str:
    """A wall-clock: 0.38 s, 8.9 s, 183 s, 12.5 min, 2.3 h."""
    if value is None:
        return DASH
    if value < 600:
        return significant(value) + " s" if value < 100 else f"{value:.0f} s"
    if value < 3 * 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def image_equivalents(value: float | None) -> str:
    """99.96 stored image-equivalents; 50,000 for whole data sets."""
    if value is None:
        return DASH
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"


def kib(n_bytes: float | None) -> str:
    return DASH if n_bytes is None else f"{n_bytes / 1024:,.1f}"


def percent_share(value: float | None) -> str:
    """A fraction in [0, 1] as a percentage with one decimal: 0.9904 -> 99.0 %."""
    return DASH if value is None else f"{100 * value:.1f} %"
