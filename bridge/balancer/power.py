"""Power limits on a connector's current: the capacity tariff's allowance and the charge mode.

The capacity guard (bridge/balancer/capacity.py) says how many watts the cars may draw; the charge
mode says whether a car charges at all and from what: `fast` (as much as fuse and capacity allow),
`pv` (only from export), `minpv` (the minimum current always, more from export), `off`. This module
turns both into one current cap for the balancer's `power_limit` input, with the hysteresis that
keeps cloud writes rare. Pure: the caller passes the time (monotonic seconds) and the readings.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

CHARGE_MODES = ("fast", "pv", "minpv", "off")
DEFAULT_CHARGE_MODE = "fast"
# The capacity allowance in amps may dip this far under the present cap before the cap is cut, and
# must rise this far over the next whole amp before it is raised: the guard re-plans every second,
# so a short excess is repaid later in the period, and the jitter of the house's load (a hob
# pulsing, a fridge starting) does not turn into cloud writes.
CAPACITY_DEADBAND_A = 1.0
CAPACITY_RAISE_HOLD_S = 120.0


def check_charge_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode not in CHARGE_MODES:
        raise ValueError(f"the charge mode must be one of {', '.join(CHARGE_MODES)}; got {value[:40]!r}")
    return mode


def amps_for_watts(watts: float, phases: int, voltage: float) -> float:
    """The per-phase current that carries `watts` on `phases` phases."""
    return watts / (max(1, phases) * voltage)


@dataclass(frozen=True)
class SurplusConfig:
    """How charging from solar surplus follows the export (the PV_* settings)."""

    window_s: float = 60.0
    import_allowance_w: float = 0.0
    enable_delay_s: float = 60.0
    disable_delay_s: float = 30.0
    # A raise waits this long after the last change: each change is a cloud write.
    raise_interval_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("window_s", "import_allowance_w", "enable_delay_s", "disable_delay_s", "raise_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of at least 0, got {value!r}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be above 0 s, got {self.window_s!r}")


class SurplusController:
    """The current a `pv` or `minpv` car may draw from the surplus, per connector.

    The surplus is what the house without the car exports, averaged over the window, plus the import
    allowed: the car's own draw is taken out of the net power so that the estimate does not wait for
    the car to settle after each change."""

    def __init__(self, cfg: SurplusConfig | None = None) -> None:
        self.cfg = cfg or SurplusConfig()
        self._samples: deque[tuple[float, float]] = deque()
        self._sum = 0.0
        self._level = 0
        self._changed_at: float | None = None
        self._enough_since: float | None = None
        self._short_since: float | None = None

    @property
    def level(self) -> int:
        return self._level

    def surplus_w(self) -> float | None:
        if not self._samples:
            return None
        return self.cfg.import_allowance_w - self._sum / len(self._samples)

    def step(self, now: float, net_w: float, car_w: float, mode: str, phases: int, voltage: float,
             min_a: int, max_a: int) -> tuple[int | None, str]:
        """The cap for the car (None = none from the mode) and why."""
        self._sample(now, net_w - car_w)
        if mode == "fast":
            self._level = 0
            return None, ""
        if mode == "off":
            self._level = 0
            return 0, "charge mode off"
        surplus = self.surplus_w()
        assert surplus is not None
        possible = amps_for_watts(surplus, phases, voltage)
        need_w = min_a * phases * voltage
        if mode == "minpv":
            self._enough_since = self._short_since = None
            target = max(min_a, min(max_a, math.floor(possible)))
            self._move(now, target)
            return self._level, f"minpv: surplus {surplus / 1000:.2f} kW, {self._level} A"
        # pv
        if self._level < min_a:
            self._short_since = None
            if possible < min_a:
                self._enough_since = None
                self._level = 0
                return 0, f"pv: surplus {surplus / 1000:.2f} kW, {need_w / 1000:.1f} kW needed to start"
            if self._enough_since is None:
                self._enough_since = now
            if now - self._enough_since < self.cfg.enable_delay_s:
                return 0, f"pv: surplus {surplus / 1000:.2f} kW, starting in {self.cfg.enable_delay_s - (now - self._enough_since):.0f} s"
            self._enough_since = None
            self._set(now, min(max_a, math.floor(possible)))
            return self._level, f"pv: surplus {surplus / 1000:.2f} kW, started at {self._level} A"
        self._enough_since = None
        if possible < min_a:
            if self._short_since is None:
                self._short_since = now
            if now - self._short_since >= self.cfg.disable_delay_s:
                self._short_since = None
                self._set(now, 0)
                return 0, f"pv: surplus {surplus / 1000:.2f} kW below {need_w / 1000:.1f} kW: stopped"
            self._move(now, min_a)
            return self._level, f"pv: surplus {surplus / 1000:.2f} kW below {need_w / 1000:.1f} kW, the minimum current until it stops"
        self._short_since = None
        self._move(now, min(max_a, math.floor(possible)))
        return self._level, f"pv: surplus {surplus / 1000:.2f} kW, {self._level} A"

    def _sample(self, now: float, house_net_w: float) -> None:
        samples = self._samples
        samples.append((now, house_net_w))
        self._sum += house_net_w
        while samples and samples[0][0] <= now - self.cfg.window_s:
            self._sum -= samples.popleft()[1]

    def _move(self, now: float, target: int) -> None:
        """Cuts at once; raises when the last change is `raise_interval_s` old."""
        if target < self._level:
            self._set(now, target)
        elif target > self._level and (self._changed_at is None or now - self._changed_at >= self.cfg.raise_interval_s):
            self._set(now, target)

    def _set(self, now: float, level: int) -> None:
        if level != self._level:
            self._level = level
            self._changed_at = now


class CapacityCap:
    """The capacity allowance (W for the car) as a whole-amp cap: cut when the allowance falls a dead
    band under it, raised when it rises a dead band over the next amp and the last change is
    `raise_hold_s` old (each change is a cloud write; a raise put off is spent later in the period)."""

    def __init__(self, raise_hold_s: float = CAPACITY_RAISE_HOLD_S) -> None:
        self.raise_hold_s = raise_hold_s
        self._cap: int | None = None
        self._changed_at: float | None = None

    def step(self, now: float, allowance_w: float | None, phases: int, voltage: float, max_a: int) -> int | None:
        if allowance_w is None:
            self._cap = None
            return None
        amps = amps_for_watts(allowance_w, phases, voltage)
        cap = self._cap
        if cap is None or amps < cap - CAPACITY_DEADBAND_A:
            cap = math.floor(amps)
        elif amps >= cap + 1 + CAPACITY_DEADBAND_A and (
                self._changed_at is None or now - self._changed_at >= self.raise_hold_s):
            cap = math.floor(amps - CAPACITY_DEADBAND_A)
        cap = max(0, min(max_a, cap))
        if cap != self._cap:
            self._changed_at = now
        self._cap = cap
        return None if cap >= max_a else cap


def combine(capacity_cap: int | None, capacity_reason: str, mode_cap: int | None, mode_reason: str
            ) -> tuple[int | None, str]:
    """The lower of the two caps, with the reason of the one that binds."""
    caps = [(c, r) for c, r in ((capacity_cap, capacity_reason), (mode_cap, mode_reason)) if c is not None]
    if not caps:
        return None, ""
    return min(caps, key=lambda cr: cr[0])
