"""The bench's power limits: the capacity tariff and the charge modes, replayed and scored.

A replay with power limits feeds, every second, the meter's net power (the house and the car, per
phase current times the voltage; export negative) to the capacity guard and to the surplus
controller, as the service does, and gives the balancer their cap. One difference: the car's draw
is the charger model's of that second, where the service has the charger's report of its last
poll (every CHARGEAMPS_POLL_INTERVAL). The scores:

- `capacity`: the highest period average of the import (house + car) in the periods the tariff
  counts, the average the tariff would bill over the trace, and the periods above the limit; the
  car's energy against a capacity-aware oracle that knows the house load ahead and fills each
  period up to the limit (never over the fuse limits, one second at a time), both over the periods
  the trace holds whole (a period the trace cuts short is left out: see `_whole_periods`).
- `cars` (modes pv and minpv): the share of the car's energy that came from export (null below
  SOLAR_SHARE_MIN_KWH of energy) and the kWh it took from the grid; the car's energy against a surplus oracle that puts every watt of export
  (and the import allowed) into the car, whenever that reaches the minimum current.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bridge.balancer.capacity import CapacityConfig, CapacityGuard, billed, period_start
from bridge.balancer.power import (
    SURPLUS_MODES,
    CapacityCap,
    SharedPowerLimits,
    SurplusConfig,
    SurplusController,
    amps_for_watts,
    combine,
)
from bridge.limits import MIN_CURRENT_A
from bridge.sim.house import CarSpec, HouseTrace, parse_car
from bridge.sim.pause_oracle import CapacityPeriod, capacity_pause_oracle

# Targets (10 s lag), pinned by tests/test_bench_power.py and shown in docs/benchmark.md.
TARGET_PERIOD_MARGIN_KW = 0.05
TARGET_CAPACITY_ENERGY_RATIO = 0.95
TARGET_SOLAR_SHARE = 0.95
TARGET_SURPLUS_ENERGY_RATIO = 0.9
TARGET_WRITES_PER_HOUR = 20.0
# Below this a car's solar share is not given (null): a share of a few seconds' charge (a car
# paused by the first decision draws the default current until its charger follows) says nothing.
SOLAR_SHARE_MIN_KWH = 0.1
DEFAULT_START = "2027-01-12T00:00"
# The oracles' car energy over the periods the trace holds whole (PowerRun._whole_periods): the
# capacity energy ratios compare the car's energy in those periods with it.
WHOLE_PERIODS = "_whole_periods"


@dataclass(frozen=True)
class PowerSetup:
    """What a power scenario brings: its wall-clock start, its car and its settings (the environment wins)."""

    start: str
    car: str
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PowerSettings:
    capacity: CapacityConfig | None
    surplus: SurplusConfig
    zone: Any
    voltage: float


def power_settings(environ: Mapping[str, str], defaults: Mapping[str, str] = ()) -> PowerSettings:  # type: ignore[assignment]
    """CAPACITY_*, PV_*, TZ and P1_VOLTAGE read as the service reads them; `defaults` (a scenario's)
    apply where the environment says nothing. ValueError with the configuration's one line."""
    from pydantic import ValidationError

    from bridge.config import Settings, describe_validation_error

    names = ("CAPACITY_", "PV_", "TZ", "P1_VOLTAGE")
    values = {k.upper(): v for k, v in dict(defaults).items()}
    values.update({k.upper(): v for k, v in environ.items() if k.upper().startswith(names) and v != ""})
    try:
        settings = Settings(_env_file=None, **{k.lower(): v for k, v in values.items()})  # type: ignore[call-arg]
    except ValidationError as e:
        raise ValueError(f"invalid power settings: {describe_validation_error(e)}") from None
    surplus = SurplusConfig(
        window_s=settings.pv_window_s,
        import_allowance_w=settings.pv_import_allowance_w,
        enable_delay_s=settings.pv_enable_delay_s,
        disable_delay_s=settings.pv_disable_delay_s,
    )
    return PowerSettings(settings.capacity_config(), surplus, settings.local_zone(), settings.p1_voltage)


def parse_start(text: str, zone: Any) -> datetime:
    """`2027-01-12T16:00` (local, in `zone`) or with an offset."""
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--start {text!r}: expected a date and time such as 2027-01-12T16:00") from None
    return start.replace(tzinfo=zone) if start.tzinfo is None else start.astimezone(zone)


class PowerRun:
    """One replay's power limits: the service's guard and surplus controller, and what is scored."""

    def __init__(self, trace: HouseTrace, car: CarSpec, settings: PowerSettings, start: datetime, lag_s: float,
                 min_a: int, max_a: int) -> None:
        self.trace, self.car, self.settings, self.start, self.lag_s = trace, car, settings, start, lag_s
        self.min_a, self.max_a = min_a, max_a
        self.phases = sum(car.phases)
        self.guard = CapacityGuard(settings.capacity) if settings.capacity is not None else None
        self.cap = CapacityCap()
        self.surplus = SurplusController(settings.surplus)
        self._start_utc = start.astimezone(timezone.utc)
        self._import_ws: dict[datetime, float] = {}
        self._house_ws: dict[datetime, float] = {}  # the house alone, without the cars
        self._car_ws: dict[datetime, float] = {}  # the car's energy in each period
        self._seconds: dict[datetime, int] = {}  # the trace's seconds in each period
        self.car_ws = 0.0
        self.solar_ws = 0.0
        self.starts = 0  # the car going from no draw to a draw: a pause ended (pv: a start)
        self._drawing = False

    def local(self, t: int) -> datetime:
        return (self._start_utc + timedelta(seconds=t)).astimezone(self.settings.zone)

    def step(self, t: int, metered: Sequence[float], true_totals: Sequence[float], house: Sequence[float],
             car_a: float) -> tuple[int | None, str]:
        """The cap for this second from what the meter reports (`metered`); scores the true load."""
        v = self.settings.voltage
        local = self.local(t)
        net_w = sum(metered) * v
        car_w = car_a * self.phases * v
        capacity_cap, capacity_reason = None, ""
        if self.guard is not None:
            status = self.guard.update(local, net_w, car_w, lag_s=self.lag_s)
            capacity_cap = self.cap.step(float(t), status.car_allowance_w, self.phases, v, self.max_a)
            capacity_reason = status.reason
        mode_cap, mode_reason = self.surplus.step(float(t), net_w, car_w, self.car.mode, self.phases, v,
                                                  self.min_a, self.max_a)
        # Score on the true load.
        self._count_period(local, true_totals, house, car_w)
        export_w = max(0.0, -sum(house) * v)
        self.car_ws += car_w
        self.solar_ws += min(car_w, export_w)
        if (car_w > 0) and not self._drawing and t > 0:
            self.starts += 1
        self._drawing = car_w > 0
        return combine(capacity_cap, capacity_reason, mode_cap, mode_reason)

    def _count_period(self, local: datetime, true_totals: Sequence[float], house: Sequence[float],
                      car_w: float) -> None:
        """One second of the true load (the house's and the cars', W) in its capacity period."""
        cfg = self.settings.capacity
        if cfg is None:
            return
        v = self.settings.voltage
        key = period_start(cfg, local).astimezone(timezone.utc)
        self._import_ws[key] = self._import_ws.get(key, 0.0) + max(0.0, sum(true_totals) * v)
        self._house_ws[key] = self._house_ws.get(key, 0.0) + max(0.0, sum(house) * v)
        self._car_ws[key] = self._car_ws.get(key, 0.0) + car_w
        self._seconds[key] = self._seconds.get(key, 0) + 1

    def score(self, energy_kwh: float, oracles: dict[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        cfg = self.settings.capacity
        if cfg is not None:
            periods = self._periods(self._import_ws)
            house_kw = max((kw for _, kw in self._periods(self._house_ws)), default=0.0)
            out["capacity"] = {
                # The house alone above the limit in a period: no guard can keep that period under it.
                "house_max_period_kw": round(house_kw, 3),
                "house_over_capacity": house_kw > cfg.limit_kw,
                "limit_kw": cfg.limit_kw,
                "max_period_kw": round(max((kw for _, kw in periods), default=0.0), 3),
                "billed_kw": round(_billed_kw(cfg, periods), 3),
                "periods_over": sum(1 for _, kw in periods if kw > cfg.limit_kw + TARGET_PERIOD_MARGIN_KW),
                "energy_ratio": _ratio(*self._scored_energy(energy_kwh, oracles, "capacity_energy_kwh")),
                # Against the capacity oracle that keeps the minimum current and the minimum pause.
                "energy_ratio_pause_oracle": _ratio(
                    *self._scored_energy(energy_kwh, oracles, "capacity_pause_oracle_energy_kwh")),
            }
        if self.car.mode in SURPLUS_MODES:
            car_kwh = self.car_ws / 3.6e6
            out["cars"] = [{
                "car": self.car.label,
                "mode": self.car.mode,
                "energy_kwh": round(car_kwh, 4),
                "solar_share": solar_share(self.solar_ws, self.car_ws),
                "grid_kwh": round((self.car_ws - self.solar_ws) / 3.6e6, 4),
                # Against a surplus of a few seconds (an evening's last sun) a ratio says nothing.
                "energy_ratio": (_ratio(car_kwh, oracles.get("surplus_energy_kwh"))
                                 if oracles.get("surplus_energy_kwh", 0.0) >= SOLAR_SHARE_MIN_KWH else None),
                "starts": self.starts,
            }]
        return out

    def _scored_energy(self, energy_kwh: float, oracles: Mapping[str, float], oracle: str
                       ) -> tuple[float, float | None]:
        """The car's energy and the oracle's that its capacity ratio compares: over the periods the
        trace holds whole when it has any (`_whole_periods`), else over the whole trace."""
        whole = oracles.get(oracle + WHOLE_PERIODS)
        if whole is None:
            return energy_kwh, oracles.get(oracle)
        keys = self._whole_periods(self._seconds)
        return sum(self._car_ws[k] for k in keys) / 3.6e6, whole

    def _whole_periods(self, seconds: Mapping[datetime, int]) -> list[datetime]:
        """The periods the trace holds whole. A period the trace cuts short (its end, or a start
        within a period) is left out of the capacity energy ratios: there the oracle, knowing the
        trace ends, would spend a whole period's budget in the part it holds, while a guard (as the
        service, which sees the house go on) spreads it over the whole period."""
        cfg = self.settings.capacity
        assert cfg is not None
        return [k for k, n in seconds.items() if n >= cfg.period_s]

    def _periods(self, import_ws: Mapping[datetime, float]) -> list[tuple[datetime, float]]:
        """(start, average kW) of each period the tariff counts, in time order."""
        cfg = self.settings.capacity
        assert cfg is not None
        return [(k, ws / cfg.period_s / 1000.0) for k, ws in sorted(import_ws.items())
                if cfg.counts(k.astimezone(self.settings.zone))]

    # ---- oracles ------------------------------------------------------------------
    def oracles(self, fuse_current: Callable[[Sequence[float]], int], min_pause_s: float = 300.0
                ) -> dict[str, float]:
        """The capacity-aware and the surplus oracle's car energy (kWh) on this trace; with a limit,
        also the capacity oracle that keeps the car's minimum current and the minimum pause
        (`capacity_pause_oracle`)."""
        v, n = self.settings.voltage, self.phases
        rows = list(zip(*self.trace.base))
        fuse_w = [min(fuse_current(row), self.car.max_a) * n * v for row in rows]
        house_w = [sum(row) * v for row in rows]
        out: dict[str, float] = {}
        if self.settings.capacity is not None:
            by_period, car_ws, periods = self._capacity_oracle_ws(fuse_w, house_w)
            paced = capacity_pause_oracle([round(w / (n * v)) for w in fuse_w], house_w, periods, n * v,
                                          self.min_a, min_pause_s)
            paced_ws = {key: sum(paced.amps[t] for t in seconds) * n * v for key, seconds in by_period.items()}
            whole = self._whole_periods({key: len(seconds) for key, seconds in by_period.items()})
            for name, energy_ws in (("capacity_energy_kwh", car_ws), ("capacity_pause_oracle_energy_kwh", paced_ws)):
                out.update({k: round(kwh, 4) for k, kwh in _oracle_kwh(name, energy_ws, whole).items()})
        if self.car.mode in SURPLUS_MODES:
            allowance = self.settings.surplus.import_allowance_w
            car_ws = 0.0
            for t in range(len(rows)):
                avail = math.floor(amps_for_watts(max(0.0, -house_w[t]) + allowance, n, v))
                amps = min(avail, fuse_w[t] / (n * v))
                if self.car.mode == "minpv":
                    amps = max(amps, self.min_a) if fuse_w[t] >= self.min_a * n * v else 0
                elif amps < self.min_a:
                    amps = 0
                car_ws += amps * n * v
            out["surplus_energy_kwh"] = round(car_ws / 3.6e6, 4)
        return out

    def _capacity_oracle_ws(self, fuse_w: Sequence[float], house_w: Sequence[float]
                            ) -> tuple[dict[datetime, list[int]], dict[datetime, float], list[CapacityPeriod]]:
        """The plain capacity oracle from the most the fuse lets the car (or the cars together) draw
        each second (`fuse_w`) and the house's net power (`house_w`): each period's seconds, the
        oracle's car energy (W·s) in each period (a counted one: min(that, limit - house import +
        export), as if the car took any sliver), and the periods with their budgets (None: not
        counted), for the oracle that keeps the minimum pause."""
        cfg = self.settings.capacity
        assert cfg is not None
        by_period: dict[datetime, list[int]] = {}
        for t in range(len(house_w)):
            key = period_start(cfg, self.local(t)).astimezone(timezone.utc)
            by_period.setdefault(key, []).append(t)
        car_ws: dict[datetime, float] = {}
        periods = []
        for key, seconds in by_period.items():
            most = sum(fuse_w[t] for t in seconds)
            if not cfg.counts(key.astimezone(self.settings.zone)):
                car_ws[key] = most
                periods.append(CapacityPeriod(seconds, None))
                continue
            import_ws = sum(max(0.0, house_w[t]) for t in seconds)
            export_ws = sum(max(0.0, -house_w[t]) for t in seconds)
            room = max(0.0, cfg.limit_kw * 1000.0 * cfg.period_s - import_ws) + export_ws
            car_ws[key] = min(most, room)
            periods.append(CapacityPeriod(seconds, cfg.limit_kw * 1000.0 * cfg.period_s))
        return by_period, car_ws, periods


def _oracle_kwh(name: str, energy_ws: Mapping[datetime, float], whole: Sequence[datetime]) -> dict[str, float]:
    """An oracle's car energy (kWh) under `name` over the whole trace, and under `name` +
    WHOLE_PERIODS over the periods the trace holds whole (`whole`) when it holds any."""
    out = {name: sum(energy_ws.values()) / 3.6e6}
    if whole:
        out[name + WHOLE_PERIODS] = sum(energy_ws[k] for k in whole) / 3.6e6
    return out


def solar_share(solar_ws: float, car_ws: float) -> float | None:
    """The share of a car's energy that came from export; None below SOLAR_SHARE_MIN_KWH."""
    return round(solar_ws / car_ws, 4) if car_ws >= SOLAR_SHARE_MIN_KWH * 3.6e6 else None


def _ratio(value: float, oracle: float | None) -> float | None:
    return round(value / oracle, 4) if oracle else None


def _billed_kw(cfg: CapacityConfig, periods: list[tuple[datetime, float]]) -> float:
    """The mean of the highest periods the tariff bills, month by month, averaged over the months."""
    from bridge.balancer.capacity import Peak

    months: dict[str, list[Peak]] = {}
    for start, kw in periods:
        local = start.astimezone(start.tzinfo)
        months.setdefault(f"{local.year}-{local.month}", []).append(Peak(local, kw))
    means = []
    for peaks in months.values():
        top = billed(peaks, cfg.peaks, cfg.peaks_distinct_days)
        means.append(sum(p.kw for p in top) / len(top))
    return sum(means) / len(means) if means else 0.0


# ---- targets ------------------------------------------------------------------------

def power_target_misses(entry: dict, strategy: str = "adaptive") -> list[str]:
    s = entry["strategies"].get(strategy)
    if s is None:
        return []
    misses = []
    capacity = s.get("capacity")
    if capacity is not None:
        if not entry.get("house_over_capacity") and (
                capacity["max_period_kw"] > capacity["limit_kw"] + TARGET_PERIOD_MARGIN_KW):
            misses.append(f"max period {capacity['max_period_kw']:.3f} kW > limit + {TARGET_PERIOD_MARGIN_KW} kW")
        ratio = capacity["energy_ratio"]
        if ratio is not None and ratio < TARGET_CAPACITY_ENERGY_RATIO:
            misses.append(f"capacity energy ratio {ratio:.3f} < {TARGET_CAPACITY_ENERGY_RATIO}")
    for car in s.get("cars", []):
        if car["mode"] == "pv":
            if car["solar_share"] is not None and car["solar_share"] < TARGET_SOLAR_SHARE:
                misses.append(f"solar share {car['solar_share']:.3f} < {TARGET_SOLAR_SHARE}")
            if car["energy_ratio"] is not None and car["energy_ratio"] < TARGET_SURPLUS_ENERGY_RATIO:
                misses.append(f"surplus energy ratio {car['energy_ratio']:.3f} < {TARGET_SURPLUS_ENERGY_RATIO}")
    per_hour = s["commands"] / (entry["duration_s"] / 3600)
    if per_hour > TARGET_WRITES_PER_HOUR:
        misses.append(f"{per_hour:.1f} writes/h > {TARGET_WRITES_PER_HOUR:g}")
    return misses


# ---- scenarios ----------------------------------------------------------------------

def _se_winter_evening() -> HouseTrace:
    """16:00-20:00 on a January Tuesday in Sweden: heat pump, cooking, laundry; under 5 kW each hour."""
    from bridge.sim.scenarios import HOUR, L1, L2, L3, MINUTE, _House, amps

    h = _House(4 * HOUR, seed=1601)
    h.background((1.2, 0.9, 1.0))
    h.fridge(L3)
    t = 2 * MINUTE
    while t < h.n:  # a heat pump of about 1.8 kW cycling
        run = h.rng.uniform(15, 30) * MINUTE
        h.add_all(t, t + 2, (4.0, 4.0, 4.0))
        h.add_all(t + 2, t + run, (2.6, 2.6, 2.6))
        t += run + h.rng.uniform(10, 20) * MINUTE
    h.thermostat(70 * MINUTE, 110 * MINUTE, (amps(700), amps(800), amps(700)), on_s=(40, 90), off_s=(60, 140))
    h.pulsing(L1, 80 * MINUTE, 100 * MINUTE, amps(1500), on_s=6, period_s=15)
    h.add(L2, 95 * MINUTE, 99 * MINUTE, amps(2000))  # kettle
    h.add(L3, 150 * MINUTE, 200 * MINUTE, amps(600))  # dishwasher
    h.add(L3, 155 * MINUTE, 170 * MINUTE, amps(1500))
    h.noise()
    return h.trace("capacity-se-evening", "Swedish winter evening, 5 kW hourly capacity limit",
                   car_phases=(True, True, True), car_max_a=16)


def _be_evening() -> HouseTrace:
    """17:00-21:00 in Flanders: cooking and a kettle; quarter-hours under 4 kW, a one-phase car."""
    from bridge.sim.scenarios import HOUR, L1, L2, L3, MINUTE, _House, amps

    h = _House(4 * HOUR, seed=1702)
    h.background((1.0, 0.7, 0.8))
    h.fridge(L2)
    h.thermostat(40 * MINUTE, 90 * MINUTE, (amps(600), amps(600), amps(500)), on_s=(40, 90), off_s=(60, 140))
    h.pulsing(L1, 55 * MINUTE, 75 * MINUTE, amps(1400), on_s=6, period_s=15)
    h.add(L2, 60 * MINUTE, 63 * MINUTE, amps(2000))  # kettle
    h.add(L3, 130 * MINUTE, 175 * MINUTE, amps(500))  # washing machine
    h.add(L3, 135 * MINUTE, 147 * MINUTE, amps(1200))
    h.noise()
    return h.trace("capacity-be-evening", "Flemish evening, 4 kW quarter-hour capacity limit, one-phase car",
                   car_phases=(True, False, False), car_max_a=32)


def _pv_spring_day() -> HouseTrace:
    """10:00-16:00 on an April day: a three-phase 8 kW inverter under passing clouds, a house at ~1 kW."""
    from bridge.sim.scenarios import HOUR, L1, L2, L3, MINUTE, _House, amps

    h = _House(6 * HOUR, seed=2004)
    h.background((0.6, 0.5, 0.6), wander=0.2)
    h.fridge(L2)
    peak = amps(8000) / 3
    sun = 1.0
    cloud_until = 0
    for start in range(0, h.n, 10):
        if start >= cloud_until and h.rng.random() < 0.008:
            cloud_until = start + int(h.rng.uniform(60, 900))
        target = 0.25 if start < cloud_until else 1.0
        sun += (target - sun) * 0.4  # cloud edges take tens of seconds
        noon = 1.0 - ((start - 3 * HOUR) / (4 * HOUR)) ** 2
        for phase in (L1, L2, L3):
            h.add(phase, start, start + 10, -peak * noon * sun)
    h.add(L1, 60 * MINUTE, 140 * MINUTE, 0.5)
    h.add(L1, 65 * MINUTE, 80 * MINUTE, amps(2000))  # washing machine heating
    h.add(L2, 120 * MINUTE, 123 * MINUTE, amps(2200))  # kettle at lunch
    h.pulsing(L3, 125 * MINUTE, 145 * MINUTE, amps(1800), on_s=6, period_s=15)
    h.noise()
    return h.trace("pv-spring-day", "spring day, 8 kW three-phase solar under clouds, a pv car",
                   car_phases=(True, True, True), car_max_a=16)


POWER_SCENARIOS: dict[str, tuple[Callable[[], HouseTrace], PowerSetup]] = {
    "capacity-se-evening": (_se_winter_evening, PowerSetup(
        start="2027-01-12T16:00", car="L1L2L3:16:fast",
        settings={"CAPACITY_LIMIT_KW": "5", "CAPACITY_PERIOD_MIN": "60", "TZ": "Europe/Stockholm"})),
    "capacity-be-evening": (_be_evening, PowerSetup(
        start="2027-01-12T17:00", car="L1:32:fast",
        settings={"CAPACITY_LIMIT_KW": "4", "CAPACITY_PERIOD_MIN": "15", "TZ": "Europe/Brussels"})),
    "pv-spring-day": (_pv_spring_day, PowerSetup(
        start="2027-04-20T10:00", car="L1L2L3:16:pv", settings={"TZ": "Europe/Brussels"})),
}


def power_scenario_names() -> list[str]:
    return list(POWER_SCENARIOS)


def power_run_factory(environ: Mapping[str, str], start: str | None, car: str | None, lag_s: float,
                      min_a: int, max_a: int) -> Callable[[HouseTrace], tuple[HouseTrace, PowerRun | None]]:
    """For each trace: the trace with its car (from `car` or the scenario) and a fresh PowerRun, or
    None when neither capacity nor a charge mode other than fast applies. Checks the settings now."""
    car_spec = parse_car(car) if car else None
    power_settings(environ)  # bad settings fail before minutes of replay
    if start is not None:
        parse_start(start, power_settings(environ).zone)

    def make(trace: HouseTrace) -> tuple[HouseTrace, PowerRun | None]:
        setup = POWER_SCENARIOS[trace.name][1] if trace.name in POWER_SCENARIOS else None
        settings = power_settings(environ, setup.settings if setup else {})
        spec = car_spec or (parse_car(setup.car) if setup else CarSpec(trace.car_phases, trace.car_max_a))
        trace = dataclasses.replace(trace, car_phases=spec.phases, car_max_a=spec.max_a)
        if settings.capacity is None and spec.mode == "fast":
            return trace, None
        when = parse_start(start or (setup.start if setup else DEFAULT_START), settings.zone)
        return trace, PowerRun(trace, spec, settings, when, lag_s, min_a, max_a)

    return make


# ---- several cars on one fuse ---------------------------------------------------------

class SharedPowerRun(PowerRun):
    """One replay's power limits with several cars on one fuse: the service's guard and the shared
    power limits (bridge.balancer.power.SharedPowerLimits) drive the shared balancer, fed as in the
    service with the cars' draws as the balancer reads them (`SharedBalancer.car_draw`). Scored like `PowerRun`; each car in `pv` or `minpv` has its
    solar share: the export (after what the `fast` cars take) that the cars charging from the surplus
    took, shared among them by their draw."""

    def __init__(self, trace: HouseTrace, cars: Sequence[CarSpec], keys: Sequence[str], settings: PowerSettings,
                 start: datetime, lag_s: float, min_a: int, max_a: int) -> None:
        super().__init__(trace, cars[0], settings, start, lag_s, min_a, max_a)
        self.cars, self.keys = list(cars), list(keys)
        self.limits = SharedPowerLimits(settings.surplus, settings.voltage)
        self.each_ws = [0.0 for _ in cars]
        self.each_solar_ws = [0.0 for _ in cars]

    def step_shared(self, t: int, shared: Any, metered: Sequence[float], true_totals: Sequence[float],
                    house: Sequence[float], draws_a: Sequence[float]) -> None:
        v = self.settings.voltage
        local = self.local(t)
        net_w = sum(metered) * v
        reported = self.limits.draws_w(shared, float(t))
        status = None
        if self.guard is not None:
            status = self.guard.update(local, net_w, sum(reported.values()), lag_s=self.lag_s)
        modes = {k: c.mode for k, c in zip(self.keys, self.cars)}
        self.limits.apply(float(t), shared, net_w, reported, modes, status)
        car_w = [a * sum(c.phases) * v for a, c in zip(draws_a, self.cars)]
        self._count_period(local, true_totals, house, sum(car_w))
        solar = [c.mode in SURPLUS_MODES for c in self.cars]
        fast_w = sum(w for w, s in zip(car_w, solar) if not s)
        group_w = sum(w for w, s in zip(car_w, solar) if s)
        export_w = max(0.0, -(sum(house) * v + fast_w))
        for i, w in enumerate(car_w):
            self.each_ws[i] += w
            if solar[i] and group_w > 0:
                self.each_solar_ws[i] += min(group_w, export_w) * w / group_w

    def score_shared(self, fuse_max_a: float | None = None, oracle_phase_amps: Sequence[int] = ()
                     ) -> dict[str, Any]:
        """`fuse_max_a`: the balancer's MaxA, for the surplus oracle's per-phase headroom;
        `oracle_phase_amps`: the fuse oracle's allocation every second, the cars' amps times their
        phases (`bench.SharedResult.oracle_phase_amps`), for the capacity oracle of the cars together."""
        out = {k: v for k, v in self.score(0.0, {}).items() if k == "capacity"}
        if "capacity" in out:
            # The cars together against the plain capacity oracle over the fuse oracle's allocation,
            # when every car is `fast` (that oracle knows no charge mode; the one that keeps each
            # car's minimum and pause is for one car).
            ratio = None
            if oracle_phase_amps and all(c.mode == "fast" for c in self.cars):
                v = self.settings.voltage
                house_w = [sum(row) * v for row in zip(*self.trace.base)]
                _by_period, oracle_ws, _periods = self._capacity_oracle_ws([a * v for a in oracle_phase_amps], house_w)
                oracles = _oracle_kwh("capacity_energy_kwh", oracle_ws, self._whole_periods(self._seconds))
                ratio = _ratio(*self._scored_energy(sum(self.each_ws) / 3.6e6, oracles, "capacity_energy_kwh"))
            out["capacity"]["energy_ratio"] = ratio
            out["capacity"]["energy_ratio_pause_oracle"] = None
        cars = []
        for i, c in enumerate(self.cars):
            if c.mode not in SURPLUS_MODES:
                continue
            ws, solar = self.each_ws[i], self.each_solar_ws[i]
            cars.append({"car": self.keys[i], "mode": c.mode, "energy_kwh": round(ws / 3.6e6, 4),
                         "solar_share": solar_share(solar, ws),
                         "grid_kwh": round((ws - solar) / 3.6e6, 4), "energy_ratio": None})
        if cars:
            out["power_cars"] = cars
        if fuse_max_a is not None and cars and all(c.mode == "pv" for c in self.cars):
            oracle = self.surplus_oracle_kwh(fuse_max_a)
            out["surplus"] = {"oracle_kwh": round(oracle, 4),
                              "energy_ratio": _ratio(sum(self.each_ws) / 3.6e6, oracle)}
        return out

    def surplus_oracle_kwh(self, fuse_max_a: float) -> float:
        """The cars (all in `pv`) together, every second: the export (and the import allowed) in
        whole phase-amps as one power budget and the per-phase headroom under `fuse_max_a`, the
        set of cars that fits with most amps, each 0 or the minimum up to its maximum, shared max-min
        fair (`share`, as the fuse's oracle does)."""
        from bridge.balancer.sharing import Claim, PowerBudget, share

        v = self.settings.voltage
        allowance = self.settings.surplus.import_allowance_w
        phases = [tuple(p for p in range(3) if c.phases[p]) for c in self.cars]
        caps = [min(c.max_a, self.max_a) for c in self.cars]
        ws = 0.0
        for row in zip(*self.trace.base):
            room = math.floor((max(0.0, -sum(row) * v) + allowance) / v)
            if room < self.min_a:
                continue
            budget = [fuse_max_a - b for b in row]
            best = 0
            for mask in range(1, 1 << len(self.cars)):
                claims = [Claim(str(i), phases[i], caps[i]) for i in range(len(self.cars)) if mask >> i & 1]
                amps = share(budget, claims, self.min_a, [PowerBudget(room)])
                if all(amps[c.key] > 0 for c in claims):
                    best = max(best, sum(amps[c.key] * len(c.phases) for c in claims))
            ws += best * v
        return ws / 3.6e6


def shared_power_run_factory(environ: Mapping[str, str], start: str | None, lag_s: float, min_a: int, max_a: int
                             ) -> Callable[[HouseTrace, Sequence[CarSpec], Sequence[str]], SharedPowerRun | None]:
    """For each trace with several cars: a fresh SharedPowerRun, or None when neither capacity nor a
    charge mode other than fast applies."""
    power_settings(environ)

    def make(trace: HouseTrace, cars: Sequence[CarSpec], keys: Sequence[str]) -> SharedPowerRun | None:
        setup = POWER_SCENARIOS[trace.name][1] if trace.name in POWER_SCENARIOS else None
        settings = power_settings(environ, setup.settings if setup else {})
        if settings.capacity is None and all(c.mode == "fast" for c in cars):
            return None
        when = parse_start(start or (setup.start if setup else DEFAULT_START), settings.zone)
        return SharedPowerRun(trace, cars, keys, settings, when, lag_s, min_a, max_a)

    return make


def shared_power_target_misses(s: dict, limit_margin_applies: bool = True) -> list[str]:
    """The power targets of a trace with several cars: the highest period within the limit, the solar
    share of each car in pv."""
    misses = []
    capacity = s.get("capacity")
    if capacity is not None and limit_margin_applies and (
            capacity["max_period_kw"] > capacity["limit_kw"] + TARGET_PERIOD_MARGIN_KW):
        misses.append(f"max period {capacity['max_period_kw']:.3f} kW > limit + {TARGET_PERIOD_MARGIN_KW} kW")
    for car in s.get("power_cars", []):
        if car["mode"] == "pv" and car["solar_share"] is not None and car["solar_share"] < TARGET_SOLAR_SHARE:
            misses.append(f"{car['car']}: solar share {car['solar_share']:.3f} < {TARGET_SOLAR_SHARE}")
    ratio = (s.get("surplus") or {}).get("energy_ratio")
    if ratio is not None and ratio < TARGET_SURPLUS_ENERGY_RATIO:
        misses.append(f"surplus energy ratio {ratio:.3f} < {TARGET_SURPLUS_ENERGY_RATIO}")
    return misses
