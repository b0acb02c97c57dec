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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.balancer.sharing import DEFAULT_PRIORITY
from bridge.units import format_kw

CHARGE_MODES = ("fast", "pv", "minpv", "off")
# The charge modes whose cars charge from the surplus (with several connectors: one budget for them).
SURPLUS_MODES = ("pv", "minpv")
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


class WindowMean:
    """The mean of the samples of the last `window_s` seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, now: float, value: float) -> None:
        samples = self._samples
        samples.append((now, value))
        self._sum += value
        while samples and samples[0][0] <= now - self.window_s:
            self._sum -= samples.popleft()[1]

    def mean(self) -> float | None:
        return self._sum / len(self._samples) if self._samples else None

    def latest(self) -> float | None:
        return self._samples[-1][1] if self._samples else None


class SurplusController:
    """The current a `pv` or `minpv` car may draw from the surplus, per connector.

    The surplus is what the house without the car exports, averaged over the window, plus the import
    allowed: the car's own draw is taken out of the net power so that the estimate does not wait for
    the car to settle after each change. A reading taken while the car's draw is in doubt (a write on
    its way that neither the meter nor the charger has shown the car follow: `car_w` None) is left
    out of the window: counted at the old draw, a start would read as the house's own load (the
    surplus falls, the car stops) and a stop as export (it starts again). A start takes the lower of
    the window's mean and the latest reading, so that it never imports beyond the allowance."""

    def __init__(self, cfg: SurplusConfig | None = None) -> None:
        self.cfg = cfg or SurplusConfig()
        self._house = WindowMean(self.cfg.window_s)  # the house's net power without the car
        self._level = 0
        self._changed_at: float | None = None
        self._enough_since: float | None = None
        self._short_since: float | None = None

    @property
    def level(self) -> int:
        return self._level

    def surplus_w(self) -> float | None:
        house = self._house.mean()
        return None if house is None else self.cfg.import_allowance_w - house

    def start_surplus_w(self) -> float | None:
        """The surplus a start may take: the window's, unless the latest reading has less."""
        house, latest = self._house.mean(), self._house.latest()
        return None if house is None or latest is None else self.cfg.import_allowance_w - max(house, latest)

    def step(self, now: float, net_w: float, car_w: float | None, mode: str, phases: int, voltage: float,
             min_a: int, max_a: int) -> tuple[int | None, str]:
        """The cap for the car (None = none from the mode) and why; `car_w` None: its draw in doubt."""
        if car_w is not None:
            self._house.add(now, net_w - car_w)
        if mode == "fast":
            self._level = 0
            return None, ""
        if mode == "off":
            self._level = 0
            return 0, "charge mode off"
        surplus = self.surplus_w()
        if surplus is None:  # no reading yet with the car's draw known
            level = max(self._level, min_a) if mode == "minpv" else self._level
            return level, "pv: waiting for a reading with the car's draw known"
        possible = amps_for_watts(surplus, phases, voltage)
        need_w = min_a * phases * voltage
        if mode == "minpv":
            self._enough_since = self._short_since = None
            target = max(min_a, min(max_a, math.floor(possible)))
            self._move(now, target, phases, min_a)
            return self._level, f"minpv: surplus {format_kw(surplus / 1000)} kW, {self._level} A"
        # pv
        if self._level < min_a:
            self._short_since = None
            if possible < min_a:
                self._enough_since = None
                self._level = 0
                return 0, f"pv: surplus {format_kw(surplus / 1000)} kW, {format_kw(need_w / 1000)} kW needed to start"
            if self._enough_since is None:
                self._enough_since = now
            if now - self._enough_since < self.cfg.enable_delay_s:
                return 0, f"pv: surplus {format_kw(surplus / 1000)} kW, starting in {self.cfg.enable_delay_s - (now - self._enough_since):.0f} s"
            start = self.start_surplus_w()
            assert start is not None
            if amps_for_watts(start, phases, voltage) < min_a:
                return 0, f"pv: surplus {format_kw(start / 1000)} kW now, {format_kw(need_w / 1000)} kW needed to start"
            self._enough_since = None
            self._set(now, min(max_a, math.floor(amps_for_watts(start, phases, voltage))))
            return self._level, f"pv: surplus {format_kw(surplus / 1000)} kW, started at {self._level} A"
        self._enough_since = None
        if possible < min_a:
            if self._short_since is None:
                self._short_since = now
            if now - self._short_since >= self.cfg.disable_delay_s:
                self._short_since = None
                self._set(now, 0)
                return 0, f"pv: surplus {format_kw(surplus / 1000)} kW below {format_kw(need_w / 1000)} kW: stopped"
            self._move(now, min_a, phases, min_a)
            return self._level, f"pv: surplus {format_kw(surplus / 1000)} kW below {format_kw(need_w / 1000)} kW, the minimum current until it stops"
        self._short_since = None
        self._move(now, min(max_a, math.floor(possible)), phases, min_a)
        return self._level, f"pv: surplus {format_kw(surplus / 1000)} kW, {self._level} A"

    def _move(self, now: float, target: int, phases: int = 3, floor_a: int = 0) -> None:
        """Cuts at once; raises when the last change is `raise_interval_s` old. A car on fewer than
        three phases stays the margin under the surplus (SURPLUS_CUT_MARGIN_PHASE_A; never below
        `floor_a`): cut that far, raised only to that far under, so that a surplus wandering by an
        amp (230 W) is not a write each way."""
        margin = SURPLUS_CUT_MARGIN_PHASE_A // max(1, phases)
        if target < self._level:
            self._set(now, max(min(floor_a, target), target - margin))
        elif target >= self._level + 1 + margin and (
                self._changed_at is None or now - self._changed_at >= self.cfg.raise_interval_s):
            self._set(now, target - margin)

    def _set(self, now: float, level: int) -> None:
        if level != self._level:
            self._level = level
            self._changed_at = now


class CapacityCap:
    """The capacity allowance (W for the car) as a whole-amp cap: cut when the allowance falls a dead
    band under it, raised when it rises a dead band over the next amp and the last change is
    `raise_hold_s` old (each change is a cloud write; a raise put off is spent later in the period)."""

    def __init__(self, raise_hold_s: float = CAPACITY_RAISE_HOLD_S, deadband_a: float = CAPACITY_DEADBAND_A) -> None:
        self.raise_hold_s = raise_hold_s
        self.deadband_a = deadband_a
        self._cap: int | None = None
        self._changed_at: float | None = None

    def step(self, now: float, allowance_w: float | None, phases: int, voltage: float, max_a: int) -> int | None:
        if allowance_w is None:
            self._cap = None
            return None
        amps = amps_for_watts(allowance_w, phases, voltage)
        cap = self._cap
        if cap is None or amps < cap - self.deadband_a:
            cap = math.floor(amps)
        elif amps >= cap + 1 + self.deadband_a and (
                self._changed_at is None or now - self._changed_at >= self.raise_hold_s):
            cap = math.floor(amps - self.deadband_a)
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


# ---- several connectors on one fuse ---------------------------------------------------

# While a car on fewer than three phases charges from the surplus, a cut of the shared budget goes
# this far below the surplus (phase-amps: an amp of a one-phase car, 230 W), so that a surplus
# falling over the window (a cloud's edge) is followed in steps of two phase-amps, one write of one
# car, not a write per 230 W. A three-phase car's amps are three phase-amps apart already: there the
# margin only costs energy. Measured on pv-spring-day (docs/benchmark.md): two one-phase cars 19.3 writes/h
# per connector (24.7 without) and more energy; 2 or 3 cost energy and save no writes.
# One car alone (SurplusController) stays as far under the surplus, cut and raised alike (a dead
# band of one amp): on the generated houses with solar of `bench --generate 30 --seed 1 --car
# L1:16:pv`, writes/h p90 32.0 -> 18.9, solar share the same (mean +0.001), surplus energy median
# 0.907 -> 0.865, p10 0.664 -> 0.652. Raising to the surplus itself (no band up): 19.7 writes/h, 0.877.
SURPLUS_CUT_MARGIN_PHASE_A = 1

# The cars' capacity allowance as one budget in phase-amps (amps times the phases each car draws on):
# the dead band of one three-phase car's amp, so that two cars make no more writes than one.
SHARED_CAPACITY_DEADBAND_PHASE_A = 3 * CAPACITY_DEADBAND_A


@dataclass(frozen=True)
class SurplusCar:
    """One connector, for `SharedSurplus`."""

    key: str
    mode: str
    phases: int  # the house phases its car draws on (those it drew on last while paused)
    draw_w: float | None  # what it draws now; None: in doubt (a write on its way, not seen followed)
    priority: int = DEFAULT_PRIORITY  # 0..9: a higher one starts first from the surplus and stops last


@dataclass(frozen=True)
class SurplusShare:
    """What `SharedSurplus` gives: one budget (phase-amps) for the cars in `pv` and `minpv` together
    (None when none is), a cap per connector (0 for a `pv` car not started; None: the budget
    applies), why, and the budget's reason."""

    budget: int | None
    caps: dict[str, int | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    surplus_w: float | None = None


class SharedSurplus:
    """The surplus for the connectors in `pv` and `minpv` when several share the fuse: one budget for
    them together, so that the surplus is shared, never given to each car in full.

    The surplus is what the house without these cars exports, averaged over the window, plus the
    import allowed. A `minpv` car always has its minimum. A `pv` car starts when the surplus beyond
    the minimums of the cars charging from it has carried its own minimum (on the phases its car
    draws on) for `enable_delay_s`, the higher priority first (then in the order given); when the
    surplus has been below the minimums of those charging for `disable_delay_s`, a `pv` car stops: of
    the lowest priority charging, the one started last. The budget follows the surplus down at once and up at most every `raise_interval_s`
    (each change may be a cloud write), never below the minimums of the cars charging from it."""

    def __init__(self, cfg: SurplusConfig | None = None) -> None:
        self.cfg = cfg or SurplusConfig()
        self._house = WindowMean(self.cfg.window_s)
        self._running: list[str] = []  # `pv` cars charging, in the order they started
        self._enough_since: dict[str, float] = {}
        self._short_since: float | None = None
        self._level = 0
        self._changed_at: float | None = None

    def step(self, now: float, net_w: float, cars: Sequence[SurplusCar], voltage: float, min_a: int) -> SurplusShare:
        # Precedence: the higher priority first, then as given (a stable sort).
        members = sorted((c for c in cars if c.mode in SURPLUS_MODES), key=lambda c: -c.priority)
        # A reading with a car's draw in doubt is left out (see SurplusController).
        if all(c.draw_w is not None for c in members):
            self._house.add(now, net_w - sum(max(0.0, c.draw_w or 0.0) for c in members))
        pv = [c.key for c in members if c.mode == "pv"]
        self._running = [k for k in self._running if k in pv]
        self._enough_since = {k: t for k, t in self._enough_since.items() if k in pv and k not in self._running}
        if not members:
            self._level, self._short_since = 0, None
            return SurplusShare(None)
        house = self._house.mean()
        if house is None:  # no reading yet with every car's draw known: as it was
            floor = sum(min_a * max(1, c.phases) for c in members if c.mode == "minpv" or c.key in self._running)
            self._level = max(self._level, floor)
            return SurplusShare(self._level, {c.key: 0 for c in members if c.mode == "pv" and c.key not in self._running},
                                reason="pv: waiting for a reading with the cars' draws known")
        surplus = self.cfg.import_allowance_w - house
        possible = surplus / voltage  # phase-amps
        need = {c.key: min_a * max(1, c.phases) for c in members}
        caps: dict[str, int | None] = {}
        reasons: dict[str, str] = {}

        def floor_of() -> int:
            return sum(need[c.key] for c in members if c.mode == "minpv" or c.key in self._running)

        if self._running and possible < floor_of():
            if self._short_since is None:
                self._short_since = now
            if now - self._short_since >= self.cfg.disable_delay_s:
                self._short_since = None
                priority = {c.key: c.priority for c in members}
                lowest = min(priority[k] for k in self._running)
                stopped = next(k for k in reversed(self._running) if priority[k] == lowest)
                self._running.remove(stopped)
                reasons[stopped] = (f"pv: surplus {format_kw(surplus / 1000)} kW below the "
                                    f"{format_kw(floor_of() * voltage / 1000 + need[stopped] * voltage / 1000)} kW "
                                    "the cars charging from it need: stopped")
        else:
            self._short_since = None
        started = False
        spare = possible - floor_of()
        for c in members:
            if c.mode != "pv" or c.key in self._running:
                continue
            if spare >= need[c.key]:
                since = self._enough_since.setdefault(c.key, now)
                if now - since >= self.cfg.enable_delay_s:
                    del self._enough_since[c.key]
                    self._running.append(c.key)
                    spare -= need[c.key]
                    started = True
                    continue
                reasons.setdefault(c.key, f"pv: surplus {format_kw(surplus / 1000)} kW, starting in "
                                          f"{self.cfg.enable_delay_s - (now - since):.0f} s")
            else:
                self._enough_since.pop(c.key, None)
                beyond = " beyond the other cars' minimum" if spare < possible else ""
                reasons.setdefault(c.key, f"pv: surplus {format_kw(surplus / 1000)} kW, "
                                          f"{format_kw(need[c.key] * voltage / 1000)} kW needed to start{beyond}")
            caps[c.key] = 0
        for c in members:
            caps.setdefault(c.key, None)
        floor = floor_of()
        target = max(floor, math.floor(possible))
        if target < self._level:
            # A cut goes a margin further, so that a falling surplus (a cloud's edge, over the
            # window) is followed in steps worth a write, not an amp of a one-phase car at a time.
            fine = any(max(1, c.phases) < 3 for c in members if c.mode == "minpv" or c.key in self._running)
            margin = SURPLUS_CUT_MARGIN_PHASE_A if fine else 0
            self._level, self._changed_at = max(floor, target - margin), now
        elif started or self._changed_at is None or now - self._changed_at >= self.cfg.raise_interval_s:
            if target > self._level:
                self._level, self._changed_at = target, now
        self._level = max(self._level, floor)
        charging = [c.key for c in members if c.mode == "minpv" or c.key in self._running]
        reason = (f"pv: surplus {format_kw(surplus / 1000)} kW, {format_kw(self._level * voltage / 1000)} kW for "
                  f"{', '.join(charging)}" if charging else f"pv: surplus {format_kw(surplus / 1000)} kW")
        return SurplusShare(self._level, caps, reasons, reason, surplus)


class SharedPowerLimits:
    """The capacity allowance and the charge modes for a balancer of several connectors
    (bridge.balancer.sharing.SharedBalancer): the allowance for all cars together becomes one power
    budget for every connector, the surplus one for the connectors in `pv` and `minpv` together, and
    a connector in `off` (or in `pv` before its car has started) is capped at 0. The service and the
    bench both drive the shared balancer through this."""

    def __init__(self, surplus: SurplusConfig, voltage: float) -> None:
        self.voltage = voltage
        self.surplus = SharedSurplus(surplus)
        self.cap = CapacityCap(deadband_a=SHARED_CAPACITY_DEADBAND_PHASE_A)
        # One connector on the main fuse: the one-car controllers, on its charger's report.
        self.one_surplus = SurplusController(surplus)
        self.one_cap = CapacityCap()

    def draws_w(self, shared: Any, now: float, modes: dict[str, str] | None = None,
                capacity: bool = True) -> dict[str, float]:
        """What each connector's car draws in the meter's reading, as the shared balancer reads it
        (`car_draw`): its charger's report only when taken after the last write settled. With `modes`
        and no capacity limit (`capacity` False), only the draws the power limits read: those of the
        cars that charge from the surplus (none: no draw is read at each decision). A report of
        the last poll taken before a raise would count the raise as the house's own load, and the
        surplus (and the capacity allowance) would fall an amp at a time until the next report; the
        new setting taken at once would count a cut's last seconds the same way."""
        if shared.one_car:
            # As its one-car flow reads it: the charger's last report alone lags a start or a stop
            # by up to a poll, and the surplus would count the car as the house's own load.
            return {shared.keys[0]: sum(shared.one_car_draw(now)[0]) * self.voltage}
        keys = shared.keys if modes is None or capacity else [k for k in shared.keys if modes[k] in SURPLUS_MODES]
        return {k: sum(shared.car_draw(now, k)) * self.voltage for k in keys}

    def apply(self, now: float, shared: Any, net_w: float, draws_w: dict[str, float], modes: dict[str, str],
              status: Any = None) -> None:
        """`status`: the capacity guard's (bridge.balancer.capacity.CapacityStatus), None without a
        limit. Who starts first from the surplus: the connectors' priorities in `shared`."""
        if shared.one_car:
            self._apply_one(now, shared, net_w, draws_w, modes, status)
            return
        v = self.voltage
        cfg = shared.config
        keys = shared.keys
        capacity, why = None, ""
        if status is not None:
            capacity = self.cap.step(now, status.car_allowance_w, 1, v, 3 * cfg.current_cap * len(keys))
            if capacity is not None:
                why = (f"capacity {format_kw(status.allowed_kw)} kW: {format_kw(capacity * v / 1000)} kW for the cars "
                       f"(period {format_kw(status.period_kw)} kW so far, projected {format_kw(status.projected_kw)} kW)")
        shared.power_budget(now, "capacity", capacity, None, why)
        # Only the cars that charge from the surplus are its members (the others' draws are not read).
        surplus_keys = [k for k in keys if modes[k] in SURPLUS_MODES]
        cars = [SurplusCar(k, modes[k], shared.power_phases(now, k),
                           None if shared.car_draw_in_doubt(now, k) else draws_w[k], shared.priority(k))
                for k in surplus_keys]
        pv = self.surplus.step(now, net_w, cars, v, cfg.min_current)
        shared.power_budget(now, "pv", pv.budget, surplus_keys, pv.reason)
        for k in keys:
            if modes[k] == "off":
                shared.power_limit(now, k, 0, "charge mode off")
            else:
                shared.power_limit(now, k, pv.caps.get(k), pv.reasons.get(k, ""))

    def in_doubt(self, shared: Any, now: float) -> bool:
        """Whether any car's draw in the meter's latest reading is in doubt (a write on its way, not
        yet seen followed): the capacity guard then takes no house load from the reading."""
        if shared.one_car:
            return shared.one_car_draw(now)[1]
        return any(shared.car_draw_in_doubt(now, k) for k in shared.keys)

    def reported_w(self, shared: Any, draws_w: dict[str, float]) -> float:
        """The cars' draw for the capacity guard. One car: before its charger's first report it
        counts as the house's load (the guard then counts the part of the period it did not see at
        the present import, never lower)."""
        if shared.one_car:
            key = shared.keys[0]
            return draws_w[key] if shared.observations(key).charger_currents is not None else 0.0
        return sum(draws_w.values())

    def _apply_one(self, now: float, shared: Any, net_w: float, draws_w: dict[str, float], modes: dict[str, str],
                   status: Any) -> None:
        """One car: the capacity allowance and the surplus each a cap on its current, the lower wins."""
        v = self.voltage
        key = shared.keys[0]
        cfg = shared.connector_config(key)
        obs = shared.observations(key)
        phases = sum(obs.charger_phases) if obs.charger_phases else 3
        car_w = draws_w[key]
        in_doubt = shared.one_car_draw(now)[1]
        capacity_cap, capacity_reason = None, ""
        if status is not None:
            capacity_cap = self.one_cap.step(now, status.car_allowance_w, phases, v, cfg.current_cap)
            capacity_reason = status.reason
        mode_cap, mode_reason = self.one_surplus.step(now, net_w, None if in_doubt else car_w, modes[key], phases, v,
                                                      cfg.min_current, cfg.current_cap)
        cap, reason = combine(capacity_cap, capacity_reason, mode_cap, mode_reason)
        shared.power_limit(now, key, cap, reason)
