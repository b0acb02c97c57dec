"""Argument types shared by the command line and its subcommands (the demo parses its own options)."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def number_argument(name: str, minimum: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number (float() also takes "nan" and "inf"), at least `minimum`."""
    def parse(text: str) -> float:
        wanted = "a number" if minimum is None else f"a number from {minimum:g}"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {wanted}, got {text[:20]!r}") from None
        if not math.isfinite(value) or (minimum is not None and value < minimum):
            raise argparse.ArgumentTypeError(f"{name} must be {wanted}, got {text[:20]!r}")
        return value
    return parse
