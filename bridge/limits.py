"""The limits on a charging current and on a meter reading, defined once for every part of the bridge.

Pure: the CLI, the MQTT commands, the runtime file, Home Assistant discovery,
the configuration and the balancer's output stage all ask here.
"""

from __future__ import annotations

import math

MIN_CURRENT_A = 6  # IEC 61851: below 6 A a charger may not signal a charge
MAX_CURRENT_A = 32  # the most a Charge Amps connector is set to


# A meter reading beyond this many main fuses is no current the installation
# carries (a power in W sent as amps, a unit mix-up): it is refused like garbage.
IMPLAUSIBLE_FUSE_MULTIPLE = 4


def meter_amps_bound(fuse_a: float) -> float:
    """The current, either way, that no meter reading of one phase reaches."""
    return IMPLAUSIBLE_FUSE_MULTIPLE * fuse_a


def meter_amps_plausible(amps: float, bound: float) -> bool:
    """A reading inside the bound: one at the bound (100 A on a 25 A fuse) is as impossible as one
    beyond it, and would pause the car."""
    return abs(amps) < bound


class LimitError(ValueError):
    """A value outside a limit; the message says which and why, for the user."""


def current_ceiling(installation_current: int | float | None) -> int:
    """The highest current the charger may be set to: 32 A, or the installation current below it."""
    if installation_current:
        return min(MAX_CURRENT_A, int(installation_current))
    return MAX_CURRENT_A


def max_a_range(min_current: int, fuse_a: float) -> tuple[int, float]:
    """MaxA lies between the lowest charging current and the main fuse."""
    return min_current, fuse_a


def default_current_range(min_current: int, installation_current: int | float | None) -> tuple[int, int]:
    return max(MIN_CURRENT_A, min_current), current_ceiling(installation_current)


def check_max_a(value: float, min_current: int, fuse_a: float) -> float:
    low, high = max_a_range(min_current, fuse_a)
    if not (math.isfinite(value) and low <= value <= high):
        raise LimitError(f"MaxA must be between {low} and {high:g} A (BALANCER_FUSE_A); got {value:g}")
    return value


def check_default_current(value: float, min_current: int, installation_current: int | float | None,
                          whose: str | None = None) -> int:
    """`whose`: the connector the installation current is that of, named when several share the setting."""
    low, high = default_current_range(min_current, installation_current)
    if not math.isfinite(value) or value != int(value):
        raise LimitError(f"the default current must be whole amps; got {value:g}")
    if not (low <= value <= high):
        why = "" if high >= MAX_CURRENT_A else f" (the installation current of {whose})" if whose \
            else " (the installation current)"
        raise LimitError(f"the default current must be between {low} and {high} A{why}; got {value:g}")
    return int(value)


def check_charger_current(value: float, highest: int | float) -> int:
    """A current written to the charger: 0 (pause) or whole amps from the IEC minimum to `highest`."""
    if not math.isfinite(value) or value != int(value) or not (value == 0 or MIN_CURRENT_A <= value <= highest):
        raise LimitError(
            f"the charger's current must be 0 or whole amps from {MIN_CURRENT_A} to {highest:g}; got {value:g}"
        )
    return int(value)
