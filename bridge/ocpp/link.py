"""One connector of a charger that speaks OCPP to the bridge: the same interface as the cloud's
`ChargerLink`, so that the balancer, the commands and MQTT see no difference.

The worker owns it. What the charger says arrives as events from the central system's
thread (`on_event`); what the balancer decides goes out through the central system, which
answers with an event too (`LimitApplied`), so the worker never waits on a charger, except
for a user's command (mode, reboot, a current set by hand), which waits at most
`USER_CALL_WAIT_S` for the answer, as a cloud call would.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
from typing import Any, Callable

from bridge.balancer.sharing import ConnectorDecision
from bridge.config import Settings
from bridge.eapi.models import status_meaning
from bridge.ocpp import events as ev
from bridge.service.backoff import CloudBackoff
from bridge.service.charger_link import ChargerLink
from bridge.service.clock import Clock
from bridge.service.health import Health

log = logging.getLogger(__name__)

USER_CALL_WAIT_S = 10.0
ACTIVE_PHASE_A = 1.0  # a phase carrying at least this much is one the car charges on


class OcppLink(ChargerLink):
    def __init__(self, settings: Settings, central: Any, balancer: Any, health: Health, clock: Clock,
                 backoff: CloudBackoff, *, chargepoint: str | None = None, connector: int | None = None,
                 **callbacks: Any) -> None:
        chargepoint = chargepoint or settings.chargeamps_chargepoint_id or settings.ocpp_identities()[0]
        known = {k: v for k, v in callbacks.items() if k in (
            "on_change", "on_health", "on_identified", "on_installation_current", "enabled", "phase_map", "listed")}
        super().__init__(settings, None, balancer, health, clock, backoff,  # type: ignore[arg-type]
                         chargepoint=chargepoint, connector=connector, **known)
        self.central = central
        self.next_poll = math.inf  # nothing to poll: the charger reports by itself
        self.controllable = True
        self.boot: dict[str, str | None] | None = None
        self._sent: float | None = None  # a limit asked for, its answer not in yet
        self._energy_at_start: float | None = None
        self._error: str | None = None
        self.upstream_cap: float | None = None  # the vendor's backend's SetChargingProfile, a ceiling
        self._installed: dict[int, float] = {}  # what the charger says it is installed for (0: all of it)

    # ---- the worker's rhythm ------------------------------------------------------------

    def tick(self, now: float) -> None:
        return None  # the central system renews the limits itself

    @property
    def failing(self) -> bool:
        return not self.ready or not self.controllable

    @property
    def draw_is_house_load(self) -> bool:
        # Connected but taking no profile: its car draws what it wants, which MeterValues and the
        # meter tell. (A charger gone holds its last limit, then its fail-safe: the last setting.)
        return self.ready and not self.controllable

    def capped(self, amps: float) -> float:
        """`amps` under the upstream's cap; a cap below the least current a car takes pauses."""
        if self.upstream_cap is None or amps <= self.upstream_cap:
            return amps
        return float(math.floor(self.upstream_cap)) if self.upstream_cap >= self.settings.balancer_min_current else 0.0

    def apply(self, now: float, decision: ConnectorDecision, enabled: bool) -> None:
        amps = decision.command
        if amps is None or not enabled or self.failing:
            return
        wanted, amps = amps, self.capped(amps)
        if self._sent == amps or (amps != wanted and self._sent is None and self.view.max_current == amps):
            return  # held at the cap already: the balancer's wish to go higher is not sent again
        self._sent = amps
        self.central.set_current(self.view.cp_id, self.connector, amps)
        log.info("%s: limit %d A asked for (%s)", self.name, amps, decision.reason)

    # ---- what the charger says ----------------------------------------------------------------

    def on_event(self, now: float, event: Any) -> None:
        if getattr(event, "cp", None) != self.view.cp_id:
            return
        connector = getattr(event, "connector", None)
        if connector is not None and connector not in (self.connector, 0):
            return
        v = self.view
        if isinstance(event, ev.Connected):
            first = not self.ready
            self.ready, v.online = True, True
            self._sent = None  # a limit asked for while it was away may never have been answered
            if first:
                self.on_identified()
        elif isinstance(event, ev.Disconnected):
            self.ready, v.online = False, False
            log.warning("%s: the charger's connection is gone; it falls to its fail-safe profile", self.name)
        elif isinstance(event, ev.Booted):
            self.boot = {"vendor": event.vendor, "model": event.model, "firmware": event.firmware}
            v.model = event.model
            self.on_identified()
        elif isinstance(event, ev.StatusChanged) and connector == self.connector:
            v.status = event.status
            v.mode = "Off" if event.status == "Unavailable" else "On"
            car_plugged = getattr(self.balancer, "car_plugged", None)
            if car_plugged is not None:
                car_plugged(now, status_meaning(event.status).car_plugged)
        elif isinstance(event, ev.MeterReading) and connector == self.connector:
            self._meter(now, event)
        elif isinstance(event, ev.TransactionChanged) and connector == self.connector:
            self._energy_at_start = None  # the next register reading starts the session's energy
        elif isinstance(event, ev.LimitApplied) and connector == self.connector:
            self._limit_applied(now, event)
            return
        elif isinstance(event, ev.InstallationCurrent):
            self._installation_current(now, event)
        elif isinstance(event, ev.NotControllable):
            self.controllable = False
            self._set_error(event.message)
        elif isinstance(event, ev.ControlLearned):
            self.controllable = True
        elif isinstance(event, ev.UpstreamCap):
            self.upstream_cap = event.amps
            log.info("%s: the upstream central system caps it at %s", self.name,
                     "nothing" if event.amps is None else f"{event.amps:g} A")
            held = self._sent if self._sent is not None else self.view.max_current  # in flight, or in force
            if held is not None and self.ready and self.controllable and self.capped(held) != held:
                self._sent = self.capped(held)  # lowered now, not at the balancer's next change
                self.central.set_current(v.cp_id, self.connector, self._sent)
        elif isinstance(event, ev.CallFailed):
            self._set_error(f"{self.view.cp_id}: {event.message}")
            return
        else:
            return
        self.on_change()

    def _installation_current(self, now: float, e: ev.InstallationCurrent) -> None:
        # As the cloud's installation current: it caps every command and the numbers' ranges.
        self._installed[e.connector] = e.amps
        amps = int(min(self._installed.values()))
        if amps != self.view.installation_current:
            self.view.installation_current = amps
            self.balancer.reconfigure(now, installation_current=amps)
            log.info("%s: installation current %d A caps the charging current", self.name, amps)
            self.on_installation_current(now)

    def _meter(self, now: float, r: ev.MeterReading) -> None:
        v = self.view
        v.polls += 1
        if r.currents is not None:
            v.currents = r.currents
            phases = tuple(a >= ACTIVE_PHASE_A for a in r.currents)
            self.balancer.charger(now, self._mapped(r.currents), self._mapped(phases))
        if r.power_w is not None:
            v.power_kw = r.power_w / 1000
        if r.energy_wh is not None:
            if self._energy_at_start is None or r.energy_wh < self._energy_at_start:
                self._energy_at_start = r.energy_wh
            v.session_energy_kwh = (r.energy_wh - self._energy_at_start) / 1000

    def _limit_applied(self, now: float, e: ev.LimitApplied) -> None:
        if self._sent == e.amps:
            self._sent = None
        if not e.accepted:
            self._set_error(f"{self.name}: the charger did not take the limit of {e.amps:g} A")
            return
        if self._error is not None and self.health.last_error == self._error:
            self.health.last_error = None
            self.on_health(now)
        self._error = None
        self.expected = e.amps
        self.view.max_current = e.amps
        self.balancer.commanded(now, int(e.amps))
        self.on_change()

    def _set_error(self, message: str) -> None:
        self._error = self.health.last_error = message
        self.on_health(self.clock())

    # ---- a user's commands ------------------------------------------------------------------------

    def _wait(self, future: concurrent.futures.Future, what: str) -> bool:
        try:
            ok = bool(future.result(USER_CALL_WAIT_S))
        except concurrent.futures.TimeoutError:
            ok = False
        if not ok:
            self.health.last_error = f"{self.name}: {what} not accepted by the charger"
        return ok

    def refresh(self, now: float) -> bool:
        return self.ready

    def set_current_directly(self, now: float, amps: int) -> bool:
        ok = self._wait(self.central.set_current(self.view.cp_id, self.connector, amps), f"{amps} A")
        if ok:
            self.view.max_current = float(amps)
            self.on_change()
        return ok

    def set_mode(self, now: float, mode: str) -> bool:
        ok = self._wait(self.central.set_available(self.view.cp_id, self.connector, mode == "On"), f"mode {mode}")
        if ok:
            self.view.mode = mode
            self.on_change()
        return ok

    def reboot(self, now: float) -> bool:
        return self._wait(self.central.reset(self.view.cp_id), "reset")


def central_system(settings: Settings, emit: Callable[[object], None], methods: dict[str, str] | None = None):
    """The central system CHARGER_TRANSPORT=ocpp runs, from the OCPP_* settings."""
    from bridge.ocpp.central import CentralSystem

    password = settings.ocpp_password.get_secret_value() if settings.ocpp_password else None
    tls = (settings.ocpp_tls_cert, settings.ocpp_tls_key) if settings.ocpp_tls_cert and settings.ocpp_tls_key else None
    return CentralSystem(settings.ocpp_identities(), emit, host=settings.ocpp_host, port=settings.ocpp_port,
                         password=password, tls=tls, meter_interval_s=settings.ocpp_meter_interval_s,
                         profile_ttl_s=settings.ocpp_profile_ttl_s, failsafe_a=settings.balancer_failsafe_current,
                         upstream_url=settings.ocpp_upstream_url,
                         upstream_password=settings.ocpp_upstream_password.get_secret_value()
                         if settings.ocpp_upstream_password else None, methods=methods)
