"""How a figure is printed, defined once: the MQTT payloads, the reasons, the logs and the CLI.

Pure. A kW figure is rounded to the watt everywhere, so that a limit of 12.6608 kW reads
12.661 in a reason as on its topic and in the state JSON.
"""

from __future__ import annotations

import math

KW_DECIMALS = 3  # a watt


def plain_decimal(x: float, decimals: int) -> str:
    """`16`, `10.5`, `0.333`: at most `decimals` decimals, no trailing zeros, never `-0`."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"cannot print {x!r} as a number")
    if isinstance(x, int):
        return str(x)
    text = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def round_kw(kw: float) -> float:
    """A kW figure as every output shows it (the JSON's numbers)."""
    return round(kw, KW_DECIMALS)


def format_kw(kw: float) -> str:
    """A kW figure in text: `12.661`, `5`, `0.25` (without the unit)."""
    return plain_decimal(float(kw), KW_DECIMALS)
