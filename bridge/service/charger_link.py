"""The link to one charger connector through the Charge Amps cloud.

It finds the charge point, polls it, reads its settings, writes the current the
balancer decided (and pauses the way CHARGEAMPS_PAUSE_METHOD says), backs off
after a cloud error and keeps the cloud's side of `bridge/health`.

It keeps the charger at the balancer's decision (desired state): every poll
reads the setting back, and a setting changed outside the bridge (the Charge
Amps app, another tool, a reboot that restored an old value) is given to the
balancer as the charger's current setting, so that it writes its own value
again: a cut at once, a raise paced like any raise.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from bridge.balancer.sharing import ConnectorDecision, ConnectorView
from bridge.config import Settings
from bridge.eapi import ApiError, AuthError, EapiClient, EapiError, RateLimited
from bridge.mqtt.payloads import format_number
from bridge.service.backoff import CloudBackoff
from bridge.service.clock import Clock
from bridge.service.cloud_calls import CloudCalls, CloudJob, server_error
from bridge.service.health import Health, utc_now

log = logging.getLogger(__name__)

# A poll reads the settings back at the first poll and then every this many polls (a write reads
# them back itself): the desired-state loop at a quarter of the requests.
SETTINGS_EVERY = 4


@dataclass
class ChargerView:
    """What the bridge last learned of the charger from the cloud."""

    cp_id: str | None = None
    model: str | None = None
    name: str | None = None  # the charge point's name in the cloud (the owner's, or its kind)
    ocpp_version: str | None = None  # the charge point's firmware: None on Charge Amps' own protocol
    online: bool | None = None
    status: str | None = None
    max_current: float | None = None
    mode: str | None = None
    installation_current: int | None = None
    currents: tuple[float, float, float] = (0.0, 0.0, 0.0)
    power_kw: float = 0.0
    session_energy_kwh: float = 0.0
    polls: int = 0


def _no_op(*_: Any) -> None:
    return None


class ChargerLink:
    """One connector. The worker thread calls it; it never raises for a cloud error.

    `on_change()` runs when the charger's view changed (to publish it),
    `on_health(now)` when the cloud's health changed, `on_identified()` once the
    charge point is known.
    """

    def __init__(self, settings: Settings, cloud: EapiClient, balancer: ConnectorView, health: Health,
                 clock: Clock, backoff: CloudBackoff, *,
                 on_change: Callable[[], None] = _no_op,
                 on_health: Callable[[float], None] = _no_op,
                 on_identified: Callable[[], None] = _no_op,
                 on_installation_current: Callable[[float], None] = _no_op,
                 enabled: Callable[[], bool] = lambda: True,
                 chargepoint: str | None = None, connector: int | None = None,
                 phase_map: tuple[int, int, int] | None = None, listed: bool = False,
                 on_car_connectors: Callable[[float, str, list[int]], bool] = lambda *_: False,
                 calls: CloudCalls | None = None) -> None:
        self.settings = settings
        self.cloud = cloud
        self.balancer = balancer
        self.health = health
        self.clock = clock
        self.backoff = backoff
        # The account's calls (shared by every link of the service); alone, one that calls at once.
        self.calls = calls or CloudCalls(clock, lambda *_: None, per_minute=settings.chargeamps_requests_per_min,
                                         poll_interval=settings.chargeamps_poll_interval)
        self.own_status = False  # not among the organisation's charge points: it reads its own status
        self._connecting = False  # the account's charge points asked for
        self._writing: int | None = None  # the current queued or on its way to the cloud
        # The connector's settings as last read, and when: a write soon after writes them with its
        # current without reading them first.
        self._read: Any = None
        self._read_at = -math.inf
        self._read_back_due = False  # a write's setting is read back by the next poll
        self._unanswered: int | None = None  # a write that failed, maybe after reaching the charger
        # When the latest write settles: the worker decides then (a decision may be waiting for it).
        self.settles_at = -math.inf
        self.connector = connector if connector is not None else settings.chargeamps_connector_id
        self.wanted_cp = chargepoint if chargepoint is not None else settings.chargeamps_chargepoint_id
        self.view = ChargerView(cp_id=self.wanted_cp)
        # The house phases the charger's L1..L3 are wired to, when the balancer does not map them itself.
        self.phase_map = phase_map
        self.listed = listed  # named in CHARGEAMPS_CONNECTORS: a connector that does not exist is a config error
        self.config_error: str | None = None
        # A configuration error found in the cloud's first answer: the service refuses to run on it.
        # Found only later (the cloud did not answer at start), it is reported and the bridge runs on.
        self.fatal: str | None = None
        self.answered = False  # the cloud has answered this link's `owned` read once
        self._tried = False
        # At connect, when not listed: the charge point's car connectors; True when the service
        # takes them all over (this link then stops).
        self.on_car_connectors = on_car_connectors
        self.on_change = on_change
        self.on_health = on_health
        self.on_identified = on_identified
        self.on_installation_current = on_installation_current
        self.enabled = enabled  # whether the balancer drives the charger
        # What the charger's setting should read back (0 while paused): the bridge's
        # last write, or the setting found at connect; None until the first read.
        self.expected: float | None = None
        self._overridden: float | None = None  # a setting found changed outside the bridge, not yet restored
        self.ready = False  # the charge point is known and answered
        self._cloud_error: str | None = None  # the last_error this link reported, while it lasts
        self.next_poll = 0.0
        # CHARGEAMPS_PAUSE_METHOD=mode on a charger that refuses mode Off during a session (OCPP
        # firmware): from the first refusal on, this connector pauses by 0 A.
        self.pauses_by_current = settings.chargeamps_pause_method != "mode"
        # Why the latest pause could not be made (both ways refused, or the cloud failed); None
        # once a write succeeds. The service adds it to the decision's reason.
        self.pause_error: str | None = None

    # ---- the worker's rhythm ------------------------------------------------------

    def tick(self, now: float) -> None:
        """Connect when not connected yet, else poll when it is time; both wait out the backoff.
        Either is queued on the account's calls: the answer comes back as an event."""
        if not (self.backoff.ready(now) and self.calls.backoff.ready(now)):
            return
        if not self.ready:
            self.connect(now)
        elif now >= self.next_poll and (self.own_status or not self.calls.site_statuses):
            self.poll(now)

    def apply(self, now: float, decision: ConnectorDecision, enabled: bool) -> None:
        """Queue the decision's command, if it has one and the balancer may drive the charger now.
        A command already on its way is not queued again; a newer one replaces a queued older one.
        The balancer hears of it (`commanded`) when the cloud has taken it, stamped with when it was sent."""
        amps = decision.command
        if amps is None or not enabled or not self.known or not self.backoff.ready(now) \
                or not self.calls.backoff.ready(now):
            return
        if self._writing == amps:
            return
        self._writing = amps
        self.calls.submit(self._write_job(amps, decision.reason))

    # ---- cloud calls ----------------------------------------------------------------

    def call(self, now: float, what: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """One cloud operation made now, on the caller's thread (a user's command, which is
        answered with its outcome), with health bookkeeping and backoff; never raises."""
        if not self.backoff.ready(now):
            return False, None
        outcome: list[tuple[bool, Any]] = []
        self.calls.run_now(CloudJob(
            self.view.cp_id or "", what, fn,
            lambda at, value: (self._succeeded(at, what), outcome.append((True, value))),
            lambda at, error, wide: (self._failure(at, what, error, wide), outcome.append((False, None))),
            kind="write"), wait_s=2 * self.settings.chargeamps_http_timeout)
        return outcome[0]

    def _succeeded(self, now: float, what: str) -> None:
        was = self.health.cloud
        self.backoff.succeeded()
        self.health.cloud = "ok"
        self.health.last_cloud_call = {"at": utc_now(), "call": what, "result": "ok"}
        if was != "ok":
            log.info("cloud ok (%s)", what)
            if self.health.last_error is not None and self.health.last_error == self._cloud_error:
                # The cloud's error is over; an error of another part stays until it is over too.
                self.health.last_error = None
            self._cloud_error = None
            self.on_health(now)

    def _failure(self, now: float, what: str, error: BaseException, wide: bool) -> None:
        """A call failed. The cloud failing as a whole is the account's backoff, said once by the
        account's calls; an error of this charge point backs this link off and is said here."""
        state = "auth_failed" if isinstance(error, AuthError) else "error"
        if wide:
            delay = self.calls.backoff.retry_in(self.clock())
            self._failed(what, state, f"{error} (next try in {delay:.0f} s)", quiet=True)
            return
        # The backoff counts from the failure, not from the start of a call that may have spent
        # seconds in timeouts and retries.
        at_least = (error.retry_after_s or 0.0) if isinstance(error, RateLimited) else 0.0
        delay = self.backoff.failed(self.clock(), at_least_s=at_least)
        # A server error of one charge point is a warning: if it is the whole cloud's, the next
        # charge point's says so, once, as an error (the account's calls).
        level = logging.WARNING if server_error(error) else logging.ERROR
        self._failed(what, state, f"{error} (next try in {delay:.0f} s)", level=level)

    def _failed(self, what: str, state: str, message: str, quiet: bool = False, level: int = logging.ERROR) -> None:
        self.health.cloud = state
        self.health.last_error = self._cloud_error = f"{what}: {message}"
        self.health.last_cloud_call = {"at": utc_now(), "call": what, "result": state}
        if not quiet:
            log.log(level, "cloud %s failed: %s", what, message)
        self.on_health(self.clock())

    def connect(self, now: float) -> None:
        s = self.settings
        if not (s.chargeamps_email and s.chargeamps_password and s.chargeamps_api_key):
            if self.health.cloud != "not_configured":
                self.health.cloud = "not_configured"
                log.warning("CHARGEAMPS_EMAIL, CHARGEAMPS_PASSWORD or CHARGEAMPS_API_KEY not set: balancing without the charger")
            return
        if self._connecting:
            return
        self._connecting = True
        self.calls.read_owned(self.cloud, self._owned_answered, self._owned_failed)

    def _owned_failed(self, now: float, error: BaseException, wide: bool) -> None:
        self._connecting = False
        self._tried = True
        self._failure(now, "owned chargepoints", error, wide)

    def _owned_answered(self, now: float, cps: Any) -> None:
        self._connecting = False
        self._succeeded(now, "owned chargepoints")
        first_answer, self._tried = not self._tried, True  # the first read answered: at start
        self.answered = True
        wanted = self.wanted_cp
        chosen = next((cp for cp in cps if cp.id == wanted), None) if wanted else (cps[0] if cps else None)
        if chosen is None:
            self._failed(
                "owned chargepoints", "error",
                f"charge point {wanted} is not owned by this account" if wanted else "the account owns no charge point",
            )
            if self.listed and first_answer:
                self.fatal = (f"CHARGEAMPS_CONNECTORS lists {wanted}:{self.connector}, but charge point {wanted} "
                              f"is not owned by this account (it owns {', '.join(cp.id for cp in cps) or 'none'})")
            self.calls.forget_owned()  # the next try reads the account again
            self.backoff.failed(now)
            return
        if self.listed and not self._connector_exists(now, chosen):
            if first_answer:
                self.fatal = (self.config_error or "").removeprefix("configuration error: ")
            return
        if not self.listed:
            cars = sorted(c.connector_id for c in chosen.connectors if c.type != "Schuko")
            if len(cars) > 1 and self.on_car_connectors(now, chosen.id, cars):
                return
            self._warn_unbalanced(chosen)
        self.config_error = None
        self.view.cp_id = chosen.id
        self.view.model = chosen.type
        self.view.name = chosen.name
        self.view.ocpp_version = chosen.ocpp_version
        self.ready = True
        self.next_poll = now
        log.info("charge point %s (%s), connector %d", chosen.id, chosen.type, self.connector)
        self.on_identified()
        self.poll(now, first=True)

    def _connector_exists(self, now: float, chosen: Any) -> bool:
        """A connector named in CHARGEAMPS_CONNECTORS must be a car connector of its charge point:
        else a configuration error, in health and the log; the other connectors go on."""
        cars = sorted(c.connector_id for c in chosen.connectors if c.type != "Schuko")
        if not chosen.connectors or self.connector in cars:
            return True
        what = "a Schuko socket, not a car connector" if any(
            c.connector_id == self.connector for c in chosen.connectors) else "not there"
        self.config_error = (f"configuration error: CHARGEAMPS_CONNECTORS lists {chosen.id}:{self.connector}, "
                             f"but connector {self.connector} of charge point {chosen.id} is {what} "
                             f"(its car connectors: {', '.join(map(str, cars)) or 'none'})")
        if self.health.last_error != self.config_error:
            log.error("%s", self.config_error)
        self.health.last_error = self.config_error
        # Nothing can draw at a connector that is not there: counted at 0 A, not at its cap.
        self.balancer.commanded(now, 0)
        self.backoff.failed(now)
        self.on_health(now)
        return False

    def _warn_unbalanced(self, chosen: Any) -> None:
        """One connector configured on a charge point with more car outlets (an Aura): the
        others share the fuse unseen. Said in health and the log; the setting that fixes it named."""
        cars = sorted(c.connector_id for c in chosen.connectors if c.type != "Schuko")
        others = [n for n in cars if n != self.connector]
        if not others:
            return
        self.health.last_error = (
            f"charge point {chosen.id} has car connectors {', '.join(map(str, cars))}, but only connector "
            f"{self.connector} is balanced: set CHARGEAMPS_CONNECTORS="
            + ",".join(f"{chosen.id}:{n}" for n in cars) + " to share the fuse between them")
        log.warning("%s", self.health.last_error)

    @property
    def key(self) -> str:
        """The connector as CHARGEAMPS_CONNECTORS and the shared balancer name it: "CP:N"."""
        return f"{self.view.cp_id}:{self.connector}"

    @property
    def name(self) -> str:
        """The connector as a message names it to the user: "CP connector N"."""
        return f"{self.view.cp_id} connector {self.connector}"

    @property
    def due_at(self) -> float:
        """When this link next has cloud work: its poll, but not before its backoff ends (a worker
        that woke for a poll the backoff holds back would wake again at once, and spin). Never
        while its poll is on its way, nor while the organisation's call reads its status."""
        if self.ready and self.calls.site_statuses and not self.own_status or self.calls.pending(self._poll_slot):
            return math.inf
        return max(self.next_poll, self.backoff.retry_at, self.calls.backoff.retry_at)

    @property
    def failing(self) -> bool:
        """Not known yet (connected, its first read not in), a configuration error, or backing off
        after a cloud error (its own or the account's): the balancer cannot count on writing it."""
        return not self.known or self.backoff.failures > 0 or self.calls.backoff.failures > 0

    @property
    def first_read_pending(self) -> bool:
        """Its first read is queued or in flight (not failed)."""
        return self.calls.pending(self._poll_slot)

    @property
    def known(self) -> bool:
        """Connected, and its first read not on its way any more (answered, or failed: then the
        backoff says how far the balancer may count on it)."""
        return self.ready and (self.view.polls > 0 or self.expected is not None or not self.first_read_pending)

    @property
    def draw_is_house_load(self) -> bool:
        """Its charger takes no limit at all: its measured draw is counted as the house's load (the
        cloud's chargers always take one)."""
        return False

    def _mapped(self, values: tuple | None) -> tuple | None:
        if values is None or self.phase_map is None:
            return values
        out = [type(values[0])()] * 3
        for i, v in enumerate(values):
            out[self.phase_map[i]] = v
        return tuple(out)

    @property
    def _poll_slot(self) -> str:
        return f"poll {self.key}"

    def _settings_due(self) -> bool:
        """The settings are read back at the first poll and every SETTINGS_EVERY-th after it (and
        after every write, by the write itself): a setting changed outside the bridge is found
        within a few polls and written again."""
        return self.expected is None or self._read_back_due or self.view.polls % SETTINGS_EVERY == 0

    def poll(self, now: float, first: bool = False) -> None:
        """Queue the connector's status (unless the organisation's call reads it), and its settings
        when they are due."""
        if self.calls.pending(self._poll_slot):
            return
        with_status = self.own_status or not self.calls.site_statuses
        with_settings = self._settings_due()
        if not (with_status or with_settings):
            return
        # At start a write needs a connector's settings (one PUT of them), not its status: the
        # status is read next, behind the writes, so that a site's first cuts fit the account's
        # minute (20 chargers: 20 settings and 20 writes, then the statuses; not 40 reads first).
        status_next = first and with_status and with_settings
        if status_next:
            with_status = False
        if with_status:
            self.next_poll = math.inf  # set again by the answer
        by_cp = self.settings.chargeamps_current_level == "chargepoint"
        done = self._polled_then_status if status_next else self._polled
        self.calls.submit(CloudJob(
            self.view.cp_id or "", "status" if with_status else "connector settings",
            self._fetch(with_status, with_settings), done, self._poll_failed,
            kind="read" if first else "poll", cost=with_status + (1 + by_cp) * with_settings, slot=self._poll_slot))

    def _polled_then_status(self, now: float, result: tuple[Any, Any, Any]) -> None:
        self._polled(now, result)
        self.next_poll = math.inf  # set again by the status's answer
        self.calls.submit(CloudJob(self.view.cp_id or "", "status", self._fetch(True, False), self._polled,
                                   self._poll_failed, kind="read", cost=1, slot=self._poll_slot))

    def _fetch(self, with_status: bool, with_settings: bool) -> Callable[[], tuple[Any, Any, Any]]:
        """The reads of a poll, made on a call thread: what they need is taken from here now."""
        cloud, cp, n = self.cloud, self.view.cp_id, self.connector
        by_cp = self.settings.chargeamps_current_level == "chargepoint"

        def fetch() -> tuple[Any, Any, Any]:
            status = cloud.status(cp) if with_status else None
            cs = cloud.connector_settings(cp, n) if with_settings else None
            cps = cloud.chargepoint_settings(cp) if with_settings and by_cp else None
            return status, cs, cps

        return fetch

    def _polled(self, now: float, result: tuple[Any, Any, Any]) -> None:
        status, cs, cps = result
        self._succeeded(now, "status" if status is not None else "connector settings")
        if status is not None:
            self.next_poll = now + self.settings.chargeamps_poll_interval
            self._took_status(now, status)
        if cs is not None:
            self._took_settings(now, cs, cps)
        self.on_change()

    def _poll_failed(self, now: float, error: BaseException, wide: bool) -> None:
        if self.next_poll == math.inf:
            self.next_poll = now + self.settings.chargeamps_poll_interval
        self._failure(now, "status", error, wide)

    def took_site_status(self, now: float, status: Any) -> None:
        """Its status from the organisation's call; its settings read by itself when due."""
        settings_due = self._settings_due()
        self._succeeded(now, "organisation statuses")
        self._took_status(now, status)
        if settings_due:
            self.poll(now)  # its settings only
        self.on_change()

    def _took_status(self, now: float, status: Any) -> None:
        v = self.view
        v.polls += 1
        v.online = status.status == "Online"
        conn = status.connector(self.connector)
        currents = conn.phase_currents() if conn is not None else None
        if conn is not None:
            v.status = conn.status
            v.power_kw = conn.charging_power_kw or 0.0
            v.session_energy_kwh = conn.total_consumption_kwh or 0.0
        v.currents = currents or (0.0, 0.0, 0.0)
        self.balancer.charger(now, self._mapped(currents),
                              self._mapped(conn.active_phases() if conn is not None else None))
        # Several connectors share by who has a car plugged in (a paused outlet shows no draw);
        # one connector is balanced from its draw alone.
        car_plugged = getattr(self.balancer, "car_plugged", None)
        if car_plugged is not None:
            car_plugged(now, conn.car_plugged() if conn is not None else None)

    def _took_settings(self, now: float, cs: Any, cps: Any) -> None:
        self._read, self._read_at, self._read_back_due = cs, now, False
        v = self.view
        v.max_current = cs.max_current
        v.mode = str(cs.mode) if cs.mode is not None else None
        if cs.installation_current and cs.installation_current != v.installation_current:
            v.installation_current = int(cs.installation_current)
            # The installation's limit caps every command, whatever the default current says.
            self.balancer.reconfigure(now, installation_current=v.installation_current)
            log.info("installation current %d A caps the charging current", v.installation_current)
            self.on_installation_current(now)
        self._follow(now, self._read_back(cps))

    def _read_back(self, cps: Any) -> float | None:
        """What the charger is set to give the car, at the level the bridge writes: 0 while
        paused by mode, else the connector's (or the charge point's) max current."""
        if not self.pauses_by_current and self.view.mode == "Off":
            return 0.0
        if self.settings.chargeamps_current_level == "chargepoint":
            return cps.max_current if cps is not None else None
        return self.view.max_current

    def _follow(self, now: float, setting: float | None) -> None:
        """Compare the charger's setting with what the bridge set; take a change made outside
        the bridge as the charger's setting, so that the balancer writes its own value again."""
        if setting is None:
            return
        unanswered, self._unanswered = self._unanswered, None
        if setting == self.expected:
            self._overridden = None  # restored, or the balancer wanted that value anyway
            return
        if unanswered is not None and setting == unanswered:
            self.expected = setting  # a write that timed out, and was made all the same
            self.balancer.commanded(now, int(setting))
            return
        if self.expected is not None and self.enabled():
            self.health.charger_overrides += 1
            self._overridden = setting
            log.warning("charger set to %s A outside the bridge (the bridge had set %s A)",
                        format_number(setting), format_number(self.expected))
        # At connect, or while the balancer is off, the setting found is simply taken as it is.
        self.expected = setting
        self.balancer.commanded(now, int(setting))

    def _write_job(self, amps: int, why: str) -> CloudJob:
        """The balancer's current; 0 pauses by current or by mode (CHARGEAMPS_PAUSE_METHOD)."""
        cloud, cp, n, s = self.cloud, self.view.cp_id, self.connector, self.settings
        by_mode = s.chargeamps_pause_method == "mode"
        pause_by_mode = amps == 0 and not self.pauses_by_current
        resume_by_mode = by_mode and amps > 0 and self.view.mode == "Off"
        # Settings read within a poll interval are written back with the new current as they were
        # read (one request, not three); the next poll reads them back.
        fresh = self._read if s.chargeamps_current_level == "connector" and \
            self.clock() - self._read_at <= s.chargeamps_poll_interval else None

        def write() -> tuple[float, bool, ApiError | None]:
            refused = None
            if pause_by_mode:
                try:
                    cloud.set_mode(cp, n, "Off")
                    return 0.0, True, None
                except ApiError as e:
                    if e.status != 400:
                        raise
                    # A refused pause must not leave the car charging: 0 A pauses the session
                    # without ending it, on either firmware.
                    refused = e
            applied = cloud.set_current(cp, n, amps, level=s.chargeamps_current_level, current=fresh,
                                        read_back=False)
            if resume_by_mode:
                cloud.set_mode(cp, n, "On")
            return applied, False, refused

        what = f"set current {amps} A"
        # The write, and a read before it unless the settings are fresh; a pause or resume by mode: more.
        cost = 1 + (fresh is None) + 2 * (pause_by_mode or resume_by_mode)
        job = CloudJob(cp or "", what, write, lambda at, result: self._written(at, amps, why, result, job.started),
                       lambda at, error, wide: self._write_failed(at, amps, error, wide),
                       kind="write", cost=cost, slot=f"write {self.key}")
        return job

    def _written(self, now: float, amps: int, why: str, result: tuple[float, bool, ApiError | None],
                 sent: float) -> None:
        """The cloud took the write (answered at `now`, sent at `sent`). The balancer counts its
        settle from when it was sent: the car may follow from then, and counting from the answer
        would hold a decision waiting for it (a resume after the meter's silence) past its settle
        by the call's time and then to the next meter reading or tick."""
        applied, paused_by_mode, refused = result
        if self._writing == amps:
            self._writing = None
        self._succeeded(now, f"set current {amps} A")
        if refused is not None:
            self._mode_off_refused(refused)
        self.pause_error = None
        log.info("charger set to %d A (%s)", amps, why)
        if self.settings.chargeamps_pause_method == "mode":
            self.view.mode = "Off" if paused_by_mode else "On"
        self.expected = 0.0 if paused_by_mode else applied
        if self._overridden is not None:
            self.health.last_override = (f"charger set to {format_number(self._overridden)} A outside "
                                         f"the bridge: restored {amps} A")
            log.warning("%s", self.health.last_override)
            self._overridden = None
        self.view.max_current = applied
        if self._read is not None:
            # As written; a change of mode is not in it: read again before the next write.
            self._read = self._read.model_copy(update={"max_current": applied})
            if self.settings.chargeamps_pause_method == "mode":
                self._read_at = -math.inf
        self._read_back_due = True
        self.balancer.commanded(sent, amps)
        self.settles_at = sent + self.balancer.config.settle_s
        self.on_change()

    def _write_failed(self, now: float, amps: int, error: BaseException, wide: bool) -> None:
        if self._writing == amps:
            self._writing = None
        # A write whose answer never came may still have reached the charger: the next poll reads
        # the setting, and finding this value there is the bridge's own write, not a user's.
        self._unanswered = amps
        self._read_back_due = True
        self._failure(now, f"set current {amps} A", error, wide)
        self.pause_error = f"pause not made: {self.health.last_error}" if amps == 0 else None

    def write_current(self, now: float, amps: int, why: str) -> bool:
        """Write now, on the caller's thread; False when the cloud did not take it."""
        if not self.backoff.ready(now):
            return False
        ok = []
        job = self._write_job(amps, why)
        done, failed = job.done, job.failed
        job.done = lambda at, result: (done(at, result), ok.append(True))
        job.failed = lambda at, error, wide: (failed(at, error, wide), ok.append(False))
        self.calls.run_now(job)
        return ok[0]

    def _mode_off_refused(self, refused: ApiError) -> None:
        """Said once, in the log and on bridge/health: this connector pauses by 0 A from now on."""
        self.pauses_by_current = True
        firmware = f"OCPP {self.view.ocpp_version} firmware" if self.view.ocpp_version else "its firmware"
        message = (f"{self.name} refuses mode Off during a charging session ({firmware}; {refused}): "
                   "the bridge pauses it by 0 A instead from now on")
        self.health.pause_fallback[self.key] = message
        log.warning("%s", message)
        self.on_health(self.clock())

    def refresh(self, now: float) -> bool:
        """Poll now (status and settings), on the caller's thread; False when the cloud did not answer."""
        self.backoff.try_now(now)
        ok, result = self.call(now, "status", self._fetch(True, True))
        if ok:
            self._polled(self.clock(), result)
        return ok

    def set_current_directly(self, now: float, amps: int) -> bool:
        self.backoff.try_now(now)
        ok, _ = self.call(now, f"set current {amps} A",
                          lambda: self.cloud.set_current(self.view.cp_id, self.connector, amps,
                                                         level=self.settings.chargeamps_current_level))
        if ok:
            self.view.max_current = float(amps)
            self.expected = None  # the user's value: the next read-back is taken as it is
            self.on_change()
        return ok

    def set_mode(self, now: float, mode: str) -> bool:
        self.backoff.try_now(now)
        ok, _ = self.call(now, f"mode {mode}", lambda: self.cloud.set_mode(self.view.cp_id, self.connector, mode))
        if ok:
            self.view.mode = mode
            self.expected = None  # the user's value: the next read-back is taken as it is
            self.on_change()
        return ok

    def reboot(self, now: float) -> bool:
        self.backoff.try_now(now)
        ok, _ = self.call(now, "reboot", lambda: self.cloud.reboot(self.view.cp_id))
        return ok

    def addresses(self, cp: str | None, connector: int | None) -> bool:
        """Whether a command topic's charge point (and connector) is this link's. A connector listed
        in the configuration is addressed before the cloud has answered for it, so that a setting of
        the bridge's own (a charge mode, a priority) is taken during start-up too."""
        return (self.ready or self.listed) and cp == self.view.cp_id and connector in (None, self.connector)


def installation_limit(links: Sequence[ChargerLink]) -> tuple[int | None, str | None]:
    """The lowest installation current known among `links`, and, with several connectors,
    the name of the one it belongs to: a setting every connector shares (the default
    current) must fit each of them, so the lowest one bounds it."""
    known = [link for link in links if link.view.installation_current]
    if not known:
        return None, None
    lowest = min(known, key=lambda link: link.view.installation_current or 0)
    return lowest.view.installation_current, lowest.name if len(links) > 1 else None
