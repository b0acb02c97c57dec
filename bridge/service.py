"""The service: wires the balancer, the EAPI client and MQTT.

paho's network thread only enqueues events. One worker thread owns all state:
it parses, runs the balancer, makes the HTTP calls and publishes.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from bridge import __version__
from bridge.balancer import Balancer, Decision
from bridge.config import ConfigError, Settings
from bridge.eapi import AuthError, EapiClient, EapiError, RateLimited, TokenStore
from bridge.mqtt.client import Message, MqttClient, Subscription
from bridge.mqtt.discovery import discovery_messages, ha_status_topic
from bridge.mqtt.meter import MeterConfigError, MeterState
from bridge.mqtt.payloads import PayloadError, format_bool, format_number, parse_bool, parse_mode, parse_number
from bridge.mqtt.topics import Topics
from bridge.state import RuntimeSettings, RuntimeStore

log = logging.getLogger(__name__)

TICK_S = 1.0
HEALTH_EVERY_S = 10.0
SETTINGS_EVERY_POLLS = 10
# Past this backlog a meter reading no longer queues: only the newest one per topic
# is kept (a reading is state, not an event), so a flood neither grows memory nor
# pushes commands out.
METER_BACKLOG_LIMIT = 5_000
BAD_PAYLOAD_LOG_EVERY_S = 60.0


class CommandRefused(ValueError):
    """A command that is understood but not allowed; the message says why."""


@dataclass
class CloudBackoff:
    """Exponential backoff for cloud calls after an error: 5 s doubling to 5 min."""

    initial_s: float = 5.0
    max_s: float = 300.0
    failures: int = 0
    retry_at: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.retry_at

    def failed(self, now: float, at_least_s: float = 0.0) -> float:
        delay = min(self.max_s, self.initial_s * (2 ** self.failures))
        delay = max(delay, at_least_s)
        self.failures += 1
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0


def _backoff_from_env() -> CloudBackoff:
    """The cloud backoff; `BRIDGE_CLOUD_BACKOFF_S="initial,max"` (hidden, for tests) shortens it."""
    raw = os.environ.get("BRIDGE_CLOUD_BACKOFF_S", "").strip()
    if not raw:
        return CloudBackoff()
    try:
        initial, maximum = (float(x) for x in raw.split(","))
        if not 0 < initial <= maximum:
            raise ValueError
    except ValueError:
        log.warning("ignored BRIDGE_CLOUD_BACKOFF_S=%r: expected 'initial,max' seconds", raw)
        return CloudBackoff()
    return CloudBackoff(initial_s=initial, max_s=maximum)


@dataclass
class CommandBudget:
    """Cloud calls that MQTT commands may cause: a burst, then a steady rate. No
    flood of commands can make the bridge spam the cloud (Charge Amps blocks API
    keys that call it heavily)."""

    burst: float = 5.0
    per_minute: float = 6.0
    tokens: float = 5.0
    at: float | None = None

    def take(self, now: float) -> float:
        """0 when a call may go now (and counts it), else the seconds until one may."""
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.per_minute / 60.0)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) * 60.0 / self.per_minute


@dataclass
class Health:
    cloud: str = "unknown"
    last_cloud_call: dict[str, Any] | None = None
    last_error: str | None = None
    invalid_meter_payloads: int = 0
    meter_readings_superseded: int = 0
    commands_refused: int = 0


@dataclass
class ChargerView:
    """What the bridge last learned of the charger from the cloud."""

    cp_id: str | None = None
    model: str | None = None
    firmware: str | None = None
    online: bool | None = None
    status: str | None = None
    max_current: float | None = None
    mode: str | None = None
    installation_current: int | None = None
    currents: tuple[float, float, float] = (0.0, 0.0, 0.0)
    power_kw: float = 0.0
    session_energy_kwh: float = 0.0
    polls: int = 0


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class BridgeService:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic,
                 speed: float = 1.0) -> None:
        self.settings = settings
        self.clock = clock
        # The demo runs simulated time faster than real time; waits shrink with it.
        self.speed = speed
        self.topics = Topics(settings.mqtt_base_topic)
        try:
            self.meter = settings.meter_source()
        except MeterConfigError as e:
            raise ConfigError(str(e)) from None
        self.meter_state = MeterState(self.meter, fuse_a=settings.balancer_fuse_a,
                                      stale_after_s=settings.balancer_stale_after_s)
        self.connector = settings.chargeamps_connector_id
        self.charger = ChargerView(cp_id=settings.chargeamps_chargepoint_id)
        self.health = Health()
        self.store = RuntimeStore(settings.runtime_file)
        self.runtime = self._restore_runtime()
        self.health.last_error = self.store.last_error  # a corrupt or unreadable state file
        self.balancer = Balancer(
            settings.balancer_config(
                max_a=self.runtime.max_a, default_current=self.runtime.default_current
            ),
            strategy=settings.balancer_strategy,
        )
        self.cloud = EapiClient(
            settings.chargeamps_base_url,
            settings.chargeamps_email or "",
            settings.chargeamps_password,
            settings.chargeamps_api_key,
            token_store=TokenStore(settings.token_file),
            timeout=settings.chargeamps_http_timeout,
            # The worker must not sleep through a long Retry-After inside a request:
            # anything above 2 s goes to the service's own backoff, which honours it.
            max_retry_after_s=2.0,
            # One quick retry for a blip; past that the service's backoff takes over, so a
            # dead cloud holds the worker for at most two timeouts per attempt.
            retries=1,
        )
        self.backoff = _backoff_from_env()
        self.command_budget = CommandBudget()
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._meter_overflow: dict[str, Message] = {}
        self._overflow_lock = threading.Lock()
        self.stop_event = threading.Event()
        self.decision: Decision | None = None
        self._published: dict[str, str] = {}
        self._bad_payload_logged: dict[str, float] = {}
        self._last_meter_at: float | None = None
        self._next_poll = 0.0
        self._next_health = 0.0
        self._cloud_ready = False
        self.mqtt = MqttClient(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_client_id,
            will_topic=self.topics.bridge_state,
            username=settings.mqtt_username,
            password=settings.mqtt_password,
            tls=settings.mqtt_tls,
            ca_file=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
            on_message=self._enqueue_message,
            on_connection=lambda ok, why: self._enqueue("connection", (ok, why)),
        )
        self.mqtt.subscribe_on_connect(self._subscriptions())

    # ---- set-up -------------------------------------------------------------

    def _restore_runtime(self) -> RuntimeSettings:
        s = self.settings
        defaults = RuntimeSettings(max_a=s.balancer_max_a, default_current=s.balancer_default_current)
        loaded = self.store.load(defaults)
        # A hand-edited file must not lift a hard limit.
        if not (s.balancer_min_current <= loaded.max_a <= s.balancer_fuse_a):
            log.error("stored MaxA %.1f A is outside %d..%.0f A; using %.1f A",
                      loaded.max_a, s.balancer_min_current, s.balancer_fuse_a, defaults.max_a)
            loaded.max_a = defaults.max_a
        if not (6 <= loaded.default_current <= 32):
            log.error("stored default current %d A is outside 6..32 A; using %d A",
                      loaded.default_current, defaults.default_current)
            loaded.default_current = defaults.default_current
        return loaded

    def _subscriptions(self) -> list[Subscription]:
        subs = [Subscription(t) for t in self.meter.subscriptions()]
        t = self.topics
        commands = [t.max_a_set, t.default_current_set, t.enabled_set, t.request_refresh,
                    f"{t.base}/charger/+/reboot/set", f"{t.base}/charger/+/+/max_current/set",
                    f"{t.base}/charger/+/+/mode/set"]
        subs += [Subscription(c, skip_retained=True) for c in commands]
        if self.settings.ha_discovery:
            subs.append(Subscription(ha_status_topic(self.settings.ha_discovery_prefix)))
        return subs

    # ---- threads --------------------------------------------------------------

    def _enqueue(self, kind: str, item: Any) -> None:
        self.events.put_nowait((kind, item))

    def _enqueue_message(self, msg: Message) -> None:
        """On paho's thread: queue the message, or during a meter flood keep only the newest reading."""
        if self.events.qsize() >= METER_BACKLOG_LIMIT and self.topics.classify(msg.topic) is None:
            with self._overflow_lock:
                if msg.topic in self._meter_overflow:
                    self.health.meter_readings_superseded += 1  # superseded by this newer reading
                self._meter_overflow[msg.topic] = msg
            return
        self._enqueue("message", msg)

    def _take_meter_overflow(self) -> list[Message]:
        with self._overflow_lock:
            held, self._meter_overflow = list(self._meter_overflow.values()), {}
        return held

    def start(self) -> None:
        log.info(
            "chargeamps-bridge %s starting: strategy %s, MaxA %.1f A, fuse %.0f A, broker %s:%d, base topic %s",
            __version__, self.settings.balancer_strategy, self.runtime.max_a,
            self.settings.balancer_fuse_a, self.settings.mqtt_host, self.settings.mqtt_port,
            self.topics.base,
        )
        log.info("meter: %s", self.meter.describe())
        self.mqtt.start()
        self._worker = threading.Thread(target=self._work, name="bridge-worker", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._enqueue("stop", None)
        if getattr(self, "_worker", None):
            self._worker.join(timeout=15)
        self.mqtt.stop(final_topic=self.topics.bridge_state, final_payload="offline")
        log.info("stopped")

    def run_forever(self) -> int:
        """Run until SIGTERM or SIGINT; publish `offline` and return 0."""
        def _signal(signum, frame):
            log.info("signal %s received, stopping", signal.Signals(signum).name)
            self.stop_event.set()
            self._enqueue("stop", None)

        signal.signal(signal.SIGTERM, _signal)
        signal.signal(signal.SIGINT, _signal)
        self.start()
        while not self.stop_event.wait(0.5):
            pass
        self.stop()
        return 0

    def _work(self) -> None:
        next_tick = self.clock()
        while not self.stop_event.is_set():
            now = self.clock()
            wait = max(0.0, min(next_tick, self._next_poll if self._cloud_ready else next_tick) - now) / self.speed
            try:
                kind, item = self.events.get(timeout=wait)
            except queue.Empty:
                kind, item = "tick", None
            self._handle(kind, item)
            if self.events.empty():
                for msg in self._take_meter_overflow():
                    self._handle("message", msg)
            if self.clock() >= next_tick:
                # A slow cloud call leaves a backlog of meter readings in the queue: read
                # what is there before deciding, or a phase whose fresh reading is still
                # queued would look stale and trip the fail-safe.
                for _ in range(self.events.qsize()):
                    try:
                        kind, item = self.events.get_nowait()
                    except queue.Empty:
                        break
                    self._handle(kind, item)
                now = self.clock()
                next_tick = now + TICK_S
                self._handle("tick", now)

    def _handle(self, kind: str, item: Any) -> None:
        try:
            if kind == "message":
                self._on_message(item)
            elif kind == "connection":
                self._on_connection(*item)
            elif kind == "tick" and item is not None:
                self._tick(item)
        except Exception as e:  # the loop must outlive any bug in a handler
            log.exception("worker: %s failed", kind)
            self.health.last_error = f"internal error: {type(e).__name__}: {e}"

    # ---- events ---------------------------------------------------------------

    def _on_connection(self, ok: bool, why: str) -> None:
        if not ok:
            log.warning("MQTT disconnected: %s", why)
            return
        log.info("MQTT connected to %s:%d", self.settings.mqtt_host, self.settings.mqtt_port)
        self._published.clear()
        self._publish(self.topics.bridge_state, "online")
        self._publish_info()
        self._publish_discovery()
        self._publish_all(self.clock())

    def _on_message(self, msg: Message) -> None:
        command = self.topics.classify(msg.topic)
        if command is not None:
            if msg.retain:
                log.warning("ignored retained command on %s: commands are never applied from retained messages", msg.topic)
                return
            self._on_command(command, msg)
            return
        if self.settings.ha_discovery and msg.topic == ha_status_topic(self.settings.ha_discovery_prefix):
            if msg.payload.strip() == b"online":
                log.info("Home Assistant is online: re-publishing discovery and state")
                self._published.clear()
                self._publish_discovery()
                self._publish_all(self.clock())
            return
        self._on_meter(msg)

    def _on_meter(self, msg: Message) -> None:
        now = self.clock()
        update = self.meter_state.on_message(msg.topic, msg.payload, msg.retain, now)
        if update.invalid is not None:
            self.health.invalid_meter_payloads += 1
            last = self._bad_payload_logged.get(msg.topic)
            if last is None or now - last >= BAD_PAYLOAD_LOG_EVERY_S:
                self._bad_payload_logged[msg.topic] = now
                log.warning("ignored meter payload on %s: %s", msg.topic, update.invalid)
            return
        if update.note:
            log.info("%s", update.note)
        if update.gap:
            log.warning("%s", update.gap)
        t = self.topics
        for value in update.phases:
            self.balancer.meter(now, value.phase, value.amps)
            if value.power_w is not None:
                self._publish(t.meter_power(value.phase), format_number(round(value.power_w, 1)))
        if update.heartbeat:
            # After the phases: a heartbeat vouches only for phases that have a value.
            self.balancer.meter_alive(now)
        if update.total_power_w is not None:
            self._publish(t.meter_power_total, format_number(round(update.total_power_w, 1)))
        if update.phases or update.heartbeat:
            self._last_meter_at = now
        if update.phases and self.events.empty():  # else the next queued reading decides (see _work)
            self._decide_and_apply(now)

    def _tick(self, now: float) -> None:
        if self._cloud_ready or self.backoff.ready(now):
            if not self._cloud_ready:
                self._connect_cloud(now)
            elif now >= self._next_poll and self.backoff.ready(now):
                self._poll_charger(now)
        self._decide_and_apply(now)
        if now >= self._next_health:
            self._next_health = now + HEALTH_EVERY_S
            self._publish_health(self.clock())  # `now` is old after a slow cloud call

    # ---- cloud ------------------------------------------------------------------

    def _cloud_call(self, now: float, what: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """One cloud operation with health bookkeeping and backoff; never raises."""
        if not self.backoff.ready(now):
            return False, None
        try:
            result = fn()
        except RateLimited as e:
            # The backoff counts from the failure, not from the start of a call that
            # may have spent seconds in timeouts and retries.
            delay = self.backoff.failed(self.clock(), at_least_s=e.retry_after_s or 0.0)
            self._cloud_failed(what, "error", f"{e} (next try in {delay:.0f} s)")
            return False, None
        except AuthError as e:
            delay = self.backoff.failed(self.clock())
            self._cloud_failed(what, "auth_failed", f"{e} (next try in {delay:.0f} s)")
            return False, None
        except (EapiError, ValueError) as e:
            # ValueError: the client refused to send what the installation does not allow.
            delay = self.backoff.failed(self.clock())
            self._cloud_failed(what, "error", f"{e} (next try in {delay:.0f} s)")
            return False, None
        was = self.health.cloud
        self.backoff.succeeded()
        self.health.cloud = "ok"
        self.health.last_cloud_call = {"at": _utc_now(), "call": what, "result": "ok"}
        if was != "ok":
            log.info("cloud ok (%s)", what)
            self._publish_health(now)
        return True, result

    def _cloud_failed(self, what: str, state: str, message: str) -> None:
        self.health.cloud = state
        self.health.last_error = f"{what}: {message}"
        self.health.last_cloud_call = {"at": _utc_now(), "call": what, "result": state}
        log.error("cloud %s failed: %s", what, message)
        self._publish_health(self.clock())

    def _connect_cloud(self, now: float) -> None:
        if not (self.settings.chargeamps_email and self.settings.chargeamps_password and self.settings.chargeamps_api_key):
            if self.health.cloud != "not_configured":
                self.health.cloud = "not_configured"
                log.warning("CHARGEAMPS_EMAIL, CHARGEAMPS_PASSWORD or CHARGEAMPS_API_KEY not set: balancing without the charger")
            return
        ok, cps = self._cloud_call(now, "owned chargepoints", self.cloud.owned_chargepoints)
        if not ok:
            return
        wanted = self.settings.chargeamps_chargepoint_id
        chosen = next((cp for cp in cps if cp.id == wanted), None) if wanted else (cps[0] if cps else None)
        if chosen is None:
            self._cloud_failed(
                "owned chargepoints", "error",
                f"charge point {wanted} is not owned by this account" if wanted else "the account owns no charge point",
            )
            self.backoff.failed(now)
            return
        self.charger.cp_id = chosen.id
        self.charger.model = chosen.type
        self.charger.firmware = getattr(chosen, "firmware_version", None)
        self._cloud_ready = True
        self._next_poll = now
        log.info("charge point %s (%s), connector %d", chosen.id, chosen.type, self.connector)
        self._publish_info()
        self._publish_discovery()
        self._poll_charger(now, with_settings=True)

    def _poll_charger(self, now: float, with_settings: bool = False) -> None:
        cp = self.charger.cp_id
        self._next_poll = now + self.settings.chargeamps_poll_interval
        ok, status = self._cloud_call(now, "status", lambda: self.cloud.status(cp))
        if not ok:
            return
        self.charger.polls += 1
        self.charger.online = status.status == "Online"
        conn = status.connector(self.connector)
        currents = conn.phase_currents() if conn is not None else None
        if conn is not None:
            self.charger.status = conn.status
            self.charger.power_kw = conn.charging_power_kw or 0.0
            self.charger.session_energy_kwh = conn.total_consumption_kwh or 0.0
        self.charger.currents = currents or (0.0, 0.0, 0.0)
        self.balancer.charger(now, currents, conn.active_phases() if conn is not None else None)
        if with_settings or self.charger.polls % SETTINGS_EVERY_POLLS == 0:
            self._read_connector_settings(now)
        self._publish_charger()

    def _read_connector_settings(self, now: float) -> None:
        ok, cs = self._cloud_call(now, "connector settings",
                                  lambda: self.cloud.connector_settings(self.charger.cp_id, self.connector))
        if ok:
            self.charger.max_current = cs.max_current
            self.charger.mode = str(cs.mode) if cs.mode is not None else None
            if cs.installation_current and cs.installation_current != self.charger.installation_current:
                self.charger.installation_current = int(cs.installation_current)
                # The installation's limit caps every command, whatever the default current says.
                self.balancer.reconfigure(now, installation_current=self.charger.installation_current)
                log.info("installation current %d A caps the charging current", self.charger.installation_current)

    def _write_current(self, now: float, amps: int, why: str) -> bool:
        cp = self.charger.cp_id
        s = self.settings

        def write() -> float:
            if s.chargeamps_pause_method == "mode":
                if amps == 0:
                    self.cloud.set_mode(cp, self.connector, "Off")
                    return 0.0
                applied = self.cloud.set_current(cp, self.connector, amps, level=s.chargeamps_current_level)
                if self.charger.mode == "Off":
                    self.cloud.set_mode(cp, self.connector, "On")
                return applied
            return self.cloud.set_current(cp, self.connector, amps, level=s.chargeamps_current_level)

        ok, applied = self._cloud_call(now, f"set current {amps} A", write)
        if ok:
            log.info("charger set to %d A (%s)", amps, why)
            if s.chargeamps_pause_method == "mode":
                self.charger.mode = "Off" if amps == 0 else "On"
            self.charger.max_current = applied
            self._publish_charger()
        return ok

    # ---- balancing --------------------------------------------------------------

    def _decide_and_apply(self, now: float) -> None:
        d = self.balancer.decide(now)
        previous = self.decision
        self.decision = d
        if previous is None or previous.reason != d.reason or previous.charge_at != d.charge_at:
            log.log(logging.INFO if previous is None or previous.charge_at != d.charge_at else logging.DEBUG,
                    "decision: ChargeAt %d A (%s)", d.charge_at, d.reason)
        if (
            d.command is not None
            and self.runtime.enabled
            and self._cloud_ready
            and self.backoff.ready(now)
        ):
            if self._write_current(now, d.command, d.reason):
                self.balancer.commanded(now, d.command)
        self._publish_balancer(d)

    # ---- commands ---------------------------------------------------------------

    def _on_command(self, command, msg: Message) -> None:
        name = command.name
        try:
            value = self._apply_command(command, msg.payload)
        except (PayloadError, CommandRefused) as e:
            self.health.commands_refused += 1
            log.warning("refused %s: %s", msg.topic, e)
            self._respond(msg, "error", None, str(e))
            self._republish_for(name)
            return
        except EapiError as e:
            self._respond(msg, "error", None, f"the cloud did not accept it: {e}")
            self._republish_for(name)
            return
        self._respond(msg, "ok", value, None)

    def _apply_command(self, command, payload: bytes) -> Any:
        now = self.clock()
        s = self.settings
        name = command.name
        if name == "max_a":
            value = parse_number(payload)
            if not (s.balancer_min_current <= value <= s.balancer_fuse_a):
                raise CommandRefused(
                    f"MaxA must be between {s.balancer_min_current} and {s.balancer_fuse_a:g} A (BALANCER_FUSE_A); got {value:g}"
                )
            self.runtime.max_a = value
            self.balancer.reconfigure(now, max_a=value)
            self._save_runtime(now)
            log.info("MaxA set to %g A by command", value)
            self._decide_and_apply(now)
            return value
        if name == "default_current":
            value = parse_number(payload)
            limit = min(32, self.charger.installation_current or 32)
            if value != int(value):
                raise CommandRefused(f"the default current must be whole amps; got {value:g}")
            if not (max(6, s.balancer_min_current) <= value <= limit):
                raise CommandRefused(
                    f"the default current must be between {max(6, s.balancer_min_current)} and {limit} A"
                    f"{' (the installation current)' if limit < 32 else ''}; got {value:g}"
                )
            self.runtime.default_current = int(value)
            self.balancer.reconfigure(now, default_current=int(value))
            self._save_runtime(now)
            log.info("default current set to %d A by command", int(value))
            self._decide_and_apply(now)
            return int(value)
        if name == "enabled":
            value = parse_bool(payload)
            self.runtime.enabled = value
            self._save_runtime(now)
            log.info("balancer %s by command", "enabled" if value else "disabled (the charger keeps its last value)")
            self._decide_and_apply(now)
            return format_bool(value)
        if name == "refresh":
            if not self._cloud_ready:
                raise CommandRefused("the charger is not known yet: the cloud has not answered")
            self._check_cloud_allowed(now, "refresh")
            self._poll_charger(now, with_settings=True)
            if self.health.cloud != "ok":
                raise CommandRefused(f"refresh failed: {self.health.last_error}")
            return None
        # Commands addressed to a charger.
        if not self._cloud_ready or (command.cp != self.charger.cp_id or (command.connector not in (None, self.connector))):
            raise CommandRefused(f"unknown charge point or connector in {command.topic!r}; this bridge drives {self.charger.cp_id} connector {self.connector}")
        if name == "charger_max_current":
            value = parse_number(payload)
            if self.runtime.enabled:
                raise CommandRefused(
                    "the balancer is enabled and owns the charger's current: set "
                    f"{self.topics.default_current_set} instead, or turn the balancer off first"
                )
            limit = min(self.runtime.default_current, self.charger.installation_current or 32)
            if value != int(value) or not (value == 0 or 6 <= value <= limit):
                raise CommandRefused(f"the charger's current must be 0 or whole amps from 6 to {limit}; got {value:g}")
            self._direct_cloud(now, f"set current {int(value)} A",
                               lambda: self.cloud.set_current(self.charger.cp_id, self.connector, int(value),
                                                              level=s.chargeamps_current_level))
            self.charger.max_current = float(value)
            self._publish_charger()
            return int(value)
        if name == "charger_mode":
            mode = parse_mode(payload)
            self._direct_cloud(now, f"mode {mode}", lambda: self.cloud.set_mode(self.charger.cp_id, self.connector, mode))
            self.charger.mode = mode
            self._publish_charger()
            return mode
        if name == "reboot":
            self._direct_cloud(now, "reboot", lambda: self.cloud.reboot(self.charger.cp_id))
            return None
        raise CommandRefused(f"unknown command {name}")

    def _save_runtime(self, now: float) -> None:
        """Persist the runtime settings; a failure is reported in health, the change holds until restart."""
        if not self.store.save(self.runtime):
            self.health.last_error = self.store.last_error
            self._publish_health(now)

    def _check_cloud_allowed(self, now: float, what: str) -> None:
        """A user's command is tried now, even during the backoff, as long as the command
        budget allows it; if not, the refusal says when."""
        wait = self.command_budget.take(now)
        if wait > 0:
            raise CommandRefused(
                f"{what} not sent: too many commands for the cloud, try again in {wait:.0f} s "
                f"(at most {self.command_budget.burst:.0f} at once, {self.command_budget.per_minute:.0f} a minute)"
            )
        self.backoff.retry_at = min(self.backoff.retry_at, now)

    def _direct_cloud(self, now: float, what: str, fn: Callable[[], Any]) -> Any:
        """A user's command: sent now if the command budget allows; its error goes back to the user."""
        self._check_cloud_allowed(now, what)
        ok, result = self._cloud_call(now, what, fn)
        if not ok:
            raise CommandRefused(f"{what} failed: {self.health.last_error}")
        return result

    def _respond(self, msg: Message, status: str, value: Any, error: str | None) -> None:
        answer = json.dumps({"topic": msg.topic, "status": status, "value": value, "error": error})
        self.mqtt.publish(self.topics.response, answer, retain=False)
        if msg.response_topic:
            self.mqtt.publish(msg.response_topic, answer, retain=False, correlation_data=msg.correlation_data)

    def _republish_for(self, name: str) -> None:
        """After a refusal, say the current value again so a slider snaps back."""
        t = self.topics
        if name == "max_a":
            self._publish(t.max_a, format_number(self.runtime.max_a), force=True)
        elif name == "default_current":
            self._publish(t.default_current, format_number(self.runtime.default_current), force=True)
        elif name == "enabled":
            self._publish(t.enabled, format_bool(self.runtime.enabled), force=True)
        elif name == "charger_max_current" and self.charger.cp_id and self.charger.max_current is not None:
            self._publish(t.charger_max_current(self.charger.cp_id, self.connector),
                          format_number(self.charger.max_current), force=True)
        elif name == "charger_mode" and self.charger.cp_id and self.charger.mode is not None:
            self._publish(t.charger_mode(self.charger.cp_id, self.connector), self.charger.mode, force=True)

    # ---- publishing -------------------------------------------------------------

    def _publish(self, topic: str, payload: str, force: bool = False) -> None:
        if not force and self._published.get(topic) == payload:
            return
        self._published[topic] = payload
        self.mqtt.publish(topic, payload)

    def _publish_all(self, now: float) -> None:
        if self.decision is not None:
            self._publish_balancer(self.decision)
        self._publish_charger()
        self._publish_health(now)

    def _publish_info(self) -> None:
        info = {
            "version": __version__,
            "strategy": self.settings.balancer_strategy,
            "chargepoint_id": self.charger.cp_id,
            "connector_id": self.connector,
            "base_topic": self.topics.base,
            "current_level": self.settings.chargeamps_current_level,
        }
        self._publish(self.topics.bridge_info, json.dumps(info))

    def _publish_health(self, now: float) -> None:
        h = asdict(self.health)
        h["mqtt"] = "connected" if self.mqtt.connected else "disconnected"
        h["meter_age_s"] = None if self._last_meter_at is None else round(now - self._last_meter_at, 1)
        h["cloud_retry_in_s"] = round(max(0.0, self.backoff.retry_at - now), 1) if self.backoff.failures else 0
        h["queue"] = self.events.qsize()
        self.mqtt.publish(self.topics.bridge_health, json.dumps(h))

    def _publish_balancer(self, d: Decision) -> None:
        t = self.topics
        self._publish(t.charge_at, format_number(d.charge_at))
        for i in range(3):
            self._publish(t.loadbal(i), format_number(round(d.loadbal[i], 2)))
            current = d.phase_currents[i]
            if current is not None:
                self._publish(t.meter_current(i), format_number(round(current, 2)))
        self._publish(t.max_a, format_number(self.runtime.max_a))
        self._publish(t.default_current, format_number(self.runtime.default_current))
        self._publish(t.enabled, format_bool(self.runtime.enabled))
        self._publish(t.meter_stale, format_bool(d.meter_stale))
        self._publish(t.balancer_paused, format_bool(d.paused))
        state = d.to_dict()
        state["enabled"] = self.runtime.enabled
        state["max_a"] = self.runtime.max_a
        state["default_current"] = self.runtime.default_current
        self._publish(t.balancer_state, json.dumps(state))

    def _publish_charger(self) -> None:
        c = self.charger
        if not c.cp_id or c.polls == 0 and c.max_current is None:
            return
        t, n = self.topics, self.connector
        if c.online is not None:
            self._publish(t.charger_online(c.cp_id), format_bool(c.online))
        if c.status is not None:
            self._publish(t.charger_status(c.cp_id, n), c.status)
        if c.max_current is not None:
            self._publish(t.charger_max_current(c.cp_id, n), format_number(c.max_current))
        if c.mode is not None:
            self._publish(t.charger_mode(c.cp_id, n), c.mode)
        for i in range(3):
            self._publish(t.charger_current(c.cp_id, n, i), format_number(round(c.currents[i], 2)))
        self._publish(t.charger_power_kw(c.cp_id, n), format_number(round(c.power_kw, 3)))
        self._publish(t.charger_session_energy_kwh(c.cp_id, n), format_number(round(c.session_energy_kwh, 3)))

    def _publish_discovery(self) -> None:
        if not self.settings.ha_discovery or not self.charger.cp_id:
            return
        s = self.settings
        limits = {
            "max_a_min": s.balancer_min_current,
            "max_a_max": s.balancer_fuse_a,
            "default_current_min": max(6, s.balancer_min_current),
            "default_current_max": min(32, self.charger.installation_current or 32),
        }
        for topic, payload in discovery_messages(
            self.topics, s.ha_discovery_prefix, self.topics.base, self.charger.cp_id, self.connector,
            self.charger.model, __version__, limits,
        ):
            self._publish(topic, json.dumps(payload))
