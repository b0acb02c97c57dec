"""The power limits in the service: the capacity tariff's guard and each connector's charge mode.

Before every decision the house's net power (the meter's whole-house power, else its phases'
powers, else their currents times P1_VOLTAGE: `meter_input.house_power`; the capacity guard counts
export as no import) and the cars' draw (from the charger's report; with several connectors as the
shared balancer reads it, `SharedBalancer.car_draw`) go to the guard and to the surplus controller
(`SharedPowerLimits`). With one connector their cap goes to its `power_limit`. With several
sharing the fuse, the guard's allowance for all cars together becomes one power budget for every
connector and the surplus one budget for the connectors in `pv` and `minpv` together
(`SharedSurplus`), which the shared balancer divides as it divides the fuse; a connector in `off`,
or in `pv` before its car has started, is capped at 0. The fuse limits apply as well. The guard's
state (the month's peaks, the period so far) is kept in `capacity.json` in the state folder, so
that a restart keeps what the month has billed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from bridge.balancer.capacity import CapacityGuard, CapacityStatus
from bridge.balancer.power import SharedPowerLimits, SurplusConfig
from bridge.balancer.sharing import SharedBalancer
from bridge.config import Settings
from bridge.files import atomic_write_json, read_json_object
from bridge.mqtt.meter import DEMAND, MONTH_PEAK
from bridge.units import format_kw
from bridge.mqtt.topics import Topics
from bridge.service.meter_input import HousePower, MeterInput, house_power
from bridge.service.publisher import StatePublisher
from bridge.state import RuntimeSettings

log = logging.getLogger(__name__)

PUBLISH_EVERY_S = 10.0  # period_kw and projected_kw change every second; retained every 10 s is plenty
SAVE_EVERY_S = 300.0  # the period so far; the month's peaks are saved as soon as they change


def wall_clock(zone) -> Callable[[], datetime]:
    return lambda: datetime.now(zone)


class PowerLimits:
    def __init__(self, settings: Settings, topics: Topics, publisher: StatePublisher, balancer: SharedBalancer,
                 runtime: RuntimeSettings, *, meter: MeterInput | None = None,
                 wall: Callable[[], datetime] | None = None, path: Path | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.publisher = publisher
        self.balancer = balancer
        self.runtime = runtime
        self.meter = meter  # None: the house's power from the balancer's currents alone
        self.house_from: str | None = None
        self.zone = settings.local_zone()
        self.wall = wall or wall_clock(self.zone)
        self.path = path or settings.chargeamps_state_dir / "capacity.json"
        self.voltage = settings.p1_voltage
        surplus = SurplusConfig(
            window_s=settings.pv_window_s,
            import_allowance_w=settings.pv_import_allowance_w,
            enable_delay_s=settings.pv_enable_delay_s,
            disable_delay_s=settings.pv_disable_delay_s,
        )
        # The surplus and the allowance: for one car its caps, for several one budget for the cars together.
        self.limits = SharedPowerLimits(surplus, self.voltage)
        self.guard: CapacityGuard | None = None
        self.status: CapacityStatus | None = None
        self.last_error: str | None = None
        self._saved_peaks: object = None
        self._saved_at: float | None = None
        self._published_at: float | None = None
        self._register_at: float | None = None  # the meter's register reading last given to the guard
        self._demand_at: float | None = None  # the meter's demand figures last given to the guard
        self._build_guard()

    # ---- the guard -------------------------------------------------------------------

    @property
    def limit_kw(self) -> float | None:
        """The limit in force: set by command, else CAPACITY_LIMIT_KW; None = the guard is off."""
        cfg = self.settings.capacity_config(self.runtime.capacity_limit_kw)
        return None if cfg is None else cfg.limit_kw

    def _build_guard(self) -> None:
        cfg = self.settings.capacity_config(self.runtime.capacity_limit_kw)
        if cfg is None:
            self.guard = None
            self.status = None
            return
        if self.guard is not None:
            state = self.guard.to_state()
            self.guard = CapacityGuard(cfg)
            self.guard.restore(state, self.zone)
            return
        self.guard = CapacityGuard(cfg)
        self._load()

    def _load(self) -> None:
        assert self.guard is not None
        try:
            data = read_json_object(self.path)
            if data is not None:
                self.guard.restore(data, self.zone)
                log.info("capacity state restored from %s: %d peak(s) this month", self.path,
                         len(data.get("peaks", [])))
        except (OSError, ValueError) as e:
            self.last_error = f"capacity state {self.path} not used ({e}); the month's peaks start again"
            log.error(self.last_error)

    def save(self) -> None:
        if self.guard is None:
            return
        try:
            atomic_write_json(self.path, self.guard.to_state())
        except OSError as e:
            self.last_error = f"cannot write {self.path}: {e.strerror}"
            log.error(self.last_error)

    def set_limit(self, limit_kw: float) -> None:
        """A limit set by command (0 = off); the caller saves the runtime settings."""
        self.runtime.capacity_limit_kw = limit_kw
        self._build_guard()

    # ---- each decision -------------------------------------------------------------------

    def mode_of(self, key: str) -> str:
        """A connector's charge mode."""
        return self.runtime.charge_mode_of(key)

    def update(self, now: float) -> None:
        """Give the balancer the capacity guard's allowance for the cars and each connector's charge
        mode for `now` (`SharedPowerLimits` turns them into caps and budgets)."""
        shared = self.balancer
        keys = shared.keys
        modes = {k: self.mode_of(k) for k in keys}
        meter = shared.observations(keys[0]).meter
        if any(a is None for a in meter):
            for k in keys:
                shared.power_limit(now, k, 0 if modes[k] == "off" else None, "charge mode off")
            return
        house = self._house(now, meter)  # type: ignore[arg-type]
        draws = self.limits.draws_w(shared, now, modes, capacity=self.guard is not None)
        status = None
        if self.guard is not None:
            wall = self.wall()
            self._demand(now, wall)  # before the update: its status shows the meter's figure
            self.status = status = self.guard.update(wall, house.import_w, self.limits.reported_w(shared, draws),
                                                     car_in_doubt=self.limits.in_doubt(shared, now))
            self._register(now, wall)
            self._keep(now)
        self.limits.apply(now, shared, house.net_w, draws, modes, status)
        if self._published_at is None or now - self._published_at >= PUBLISH_EVERY_S:
            self.publish(now)

    def _register(self, now: float, wall: datetime) -> None:
        """A new reading of the meter's import register fixes the period's energy (the guard's
        `register`); a reading is given once, at the decision after it changed, with the wall-clock
        time it arrived (a busy worker takes it a moment later, perhaps after a period's start)."""
        reading = None if self.meter is None else self.meter.import_register()
        if self.guard is None or reading is None or reading[1] == self._register_at:
            return
        self._register_at = reading[1]
        self.guard.register(wall - timedelta(seconds=max(0.0, now - reading[1])), reading[0])

    def _demand(self, now: float, wall: datetime) -> None:
        """The meter's own quarter-hour demand and month peak (the guard's `demand` and `month_peak`),
        given once, at the decision after they changed, with the wall-clock time they arrived."""
        if self.guard is None or self.meter is None:
            return
        demand, peak = self.meter.demand_figure(DEMAND), self.meter.demand_figure(MONTH_PEAK)
        at = demand[1] if demand is not None else peak[1] if peak is not None else None
        if at is None or at == self._demand_at:
            return
        self._demand_at = at
        local = wall - timedelta(seconds=max(0.0, now - at))
        if demand is not None:
            self.guard.demand(local, demand[0].kw)
        if peak is not None:
            peak_at = None if peak[0].peak_at is None else peak[0].peak_at.replace(tzinfo=self.zone)
            self.guard.month_peak(local, peak[0].kw, peak_at)

    def _house(self, now: float, amps: tuple[float, float, float]) -> HousePower:
        house = (house_power(amps, self.voltage) if self.meter is None
                 else self.meter.house_power(now, amps, self.voltage))
        if house.source != self.house_from:
            log.info("the house's net power for the capacity guard and the charge mode: from %s", house.source)
            self.house_from = house.source
        return house

    def _keep(self, now: float) -> None:
        assert self.guard is not None
        state = self.guard.to_state()
        peaks = (state["month"], state["peaks"], state["period_register_start_kwh"], state["meter_month_peak"])
        if peaks != self._saved_peaks or self._saved_at is None or now - self._saved_at >= SAVE_EVERY_S:
            self._saved_peaks, self._saved_at = peaks, now
            self.save()

    # ---- topics ----------------------------------------------------------------------------

    def _idle_reason(self, limit: float | None) -> str:
        """Why the guard gives no status: off (and by which setting), or on and not fed yet."""
        if limit is not None:
            return f"capacity limit {limit:g} kW: waiting for the meter's first reading"
        configured = self.settings.capacity_limit_kw
        if self.runtime.capacity_limit_kw is not None and configured:
            return f"capacity limit off: set to 0 over MQTT (CAPACITY_LIMIT_KW={configured:g} is not used)"
        return "no capacity limit (CAPACITY_LIMIT_KW unset)"

    def publish(self, now: float | None = None, cp: str | None = None, n: int | None = None) -> None:
        if now is not None:
            self._published_at = now
        t = self.topics
        limit = self.limit_kw
        self.publisher.publish(t.capacity_limit_kw, format_kw(limit) if limit is not None else "0")
        s = self.status
        if s is None:
            state = {"active": False, "limit_kw": limit, "reason": self._idle_reason(limit)}
            self.publisher.publish(t.capacity_state, json.dumps(state))
            return
        self.publisher.publish(t.capacity_period_kw, format_kw(s.period_kw))
        self.publisher.publish(t.capacity_projected_kw, format_kw(s.projected_kw))
        self.publisher.publish(t.capacity_month_peaks, json.dumps([p.to_dict() for p in s.month_peaks]))
        self.publisher.publish(t.capacity_state, json.dumps({**s.to_dict(), "house_power_from": self.house_from}))
