"""The central system: a WebSocket server the chargers connect to, one handler per connection.

It runs its own asyncio loop in a thread of its own and only hands events to the
service (`emit`, which must not block: the service's queue). The worker asks it
to act through thread-safe methods that return at once with a Future.

Each charger's calls are its own (the `ocpp` library serializes a connection's
calls): one that never answers costs its own calls a timeout, never another
charger's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Coroutine

from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import InternalError, NotImplementedError, NotSupportedError, OCPPError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    AvailabilityType,
    ChargingProfileStatus,
    MessageTrigger,
    RegistrationStatus,
    ResetType,
)
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.ocpp import events
from bridge.ocpp.identity import identity_of, refusal
from bridge.ocpp.upstream import RELAYED, TO_CHARGER, Upstream, cap_of
from bridge.ocpp.wire import SUBPROTOCOL, frame_logger, raw_call
from bridge.ocpp.profiles import (
    CONTROL_METHODS,
    TX_DEFAULT_ON_CHARGE_POINT,
    TX_PROFILE,
    failsafe_profile,
    limit_profile,
    target_connector,
)

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0  # OCPP-J's customary wait for an answer (evcc's default too)
HEARTBEAT_INTERVAL_S = 60
SILENT_INTERVALS = 3  # a connector without MeterValues for this many intervals is asked with TriggerMessage
# Asked for in this order; a charger whose MeterValuesSampledDataMaxLength is smaller gets the first ones.
MEASURANDS = ("Current.Import", "Power.Active.Import", "Energy.Active.Import.Register")
# The bridge sets these on each charger; upstream asking for other values is answered Accepted and not
# passed on (its MeterValueSampleInterval thins the MeterValues copied to it instead).
BRIDGE_OWNED_KEYS = ("MeterValueSampleInterval", "MeterValuesSampledData")
# Charge Amps' own read-only key: what each connector is installed for, as `<connector>.<A>` pairs
# (a Halo on firmware 180 answers "0.16,1.16": https://github.com/evcc-io/evcc/issues/15943). The
# cloud gives the same figure; without it the numbers' ranges in Home Assistant would differ.
INSTALLATION_KEY = "MaxCurrent"

_wire_log = frame_logger("bridge.ocpp.wire")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Session(ChargePoint):
    """One connected charger, from the central system's side."""

    def __init__(self, central: "CentralSystem", identity: str, connection: ServerConnection) -> None:
        super().__init__(identity, connection, response_timeout=central.call_timeout_s, logger=_wire_log)
        self.central = central
        self.booted = False
        self._boot_asked = False
        self._tasks: set[asyncio.Task] = set()
        self.connectors: set[int] = set()
        self.last_meter: dict[int, float] = {}
        self.transactions: dict[int, int] = {}  # connector -> transaction id
        self._next_transaction = int(time.time()) % 1_000_000
        self.failsafe_sent: set[tuple[int, int | None]] = set()  # (connector sent to, transaction)
        # One limit at a time per charger: two must not both learn, nor overtake each other.
        self._apply_lock = asyncio.Lock()
        self.upstream: Upstream | None = None  # OCPP_UPSTREAM_URL: the vendor's backend beside the bridge

    # ---- the frames --------------------------------------------------------------

    async def route_message(self, raw_msg: Any) -> None:
        # A frame that is no OCPP message (garbage, a JSON object, a short list) is logged and
        # dropped; the connection stays (the library lets some shapes escape as TypeError/KeyError).
        try:
            await super().route_message(raw_msg)
        except Exception as e:  # noqa: BLE001 - one bad frame must not end the connection
            log.warning("%s: dropped a frame that is no OCPP message (%s)", self.id, type(e).__name__)

    async def _handle_call(self, msg: Any) -> Any:
        if msg.action != Action.boot_notification and not self.booted and not self._boot_asked:
            # A charger that reconnects (to a restarted bridge, say) often sends no new
            # BootNotification: its messages are answered, and it is asked for one.
            self._boot_asked = True
            self.spawn(self._ask_boot())
        if msg.action not in self.route_map:
            # OCPP-J 1.6 section 4.2.3: NotImplemented is an action the receiver does not know,
            # NotSupported one it knows and does not support (the library has them the other way).
            known = msg.action in {a.value for a in Action}
            raise (NotSupportedError if known else NotImplementedError)(
                details={"cause": f"{msg.action} is not handled by this central system"})
        if msg.action == Action.boot_notification:
            self.central.last_boot[self.id] = msg.payload
        if self.upstream is not None:
            if msg.action in RELAYED:
                answer = await self.upstream.relay(msg.action, msg.payload)
                if answer is not None:  # else answered here, as without upstream
                    self._upstream_answered(msg.action, camel_to_snake_case(msg.payload), answer)
                    await self._send(msg.create_call_result(answer).to_json())
                    return None
            else:
                self.upstream.copy(msg.action, msg.payload)
        return await super()._handle_call(msg)

    def _upstream_answered(self, action: str, payload: dict, answer: dict) -> None:
        # Upstream issues the transaction ids: the bridge keeps the one the charger was given.
        if action == "StartTransaction" and isinstance(answer.get("transactionId"), int):
            self._started(payload.get("connector_id"), answer["transactionId"])
        elif action == "StopTransaction":
            self._stopped(payload.get("transaction_id"))

    async def from_upstream(self, action: str, payload: dict) -> dict:
        """Upstream's call (camelCase, schema-checked): passed to the charger and its answer returned,
        or answered here; an OCPPError raised is upstream's CallError."""
        if action == "SetChargingProfile":
            # The bridge owns the limit: upstream's is a cap on the connector, never passed through.
            self.central.emit(events.UpstreamCap(self.id, payload["connectorId"], cap_of(payload["csChargingProfiles"])))
            return {"status": "Accepted"}
        if action == "ChangeConfiguration" and payload["key"] in BRIDGE_OWNED_KEYS:
            if payload["key"] == "MeterValueSampleInterval" and self.upstream is not None:
                try:
                    self.upstream.meter_every_s = max(0.0, float(payload["value"]))
                except ValueError:
                    return {"status": "Rejected"}
            return {"status": "Accepted"}
        if action not in TO_CHARGER:
            raise NotSupportedError(details={"cause": f"{action} from upstream is not passed to the charger"})
        try:
            return await raw_call(self, action, payload, self.central.call_timeout_s)
        except asyncio.TimeoutError:
            raise InternalError(details={"cause": f"the charger did not answer {action}"}) from None
        except ConnectionClosed:
            raise InternalError(details={"cause": "the charger is not connected"}) from None

    # ---- the charger's messages ----------------------------------------------------

    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **kw: Any) -> call_result.BootNotification:
        self.booted = True
        self.central.emit(events.Booted(self.id, charge_point_vendor, charge_point_model, kw.get("firmware_version")))
        self.spawn(self._after_boot())
        return call_result.BootNotification(current_time=_now().isoformat(), interval=HEARTBEAT_INTERVAL_S,
                                            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=_now().isoformat())

    @on(Action.status_notification)
    def on_status(self, connector_id: int, error_code: str, status: str, **_: Any) -> call_result.StatusNotification:
        if connector_id > 0 and connector_id not in self.connectors:
            self.connectors.add(connector_id)
            self.last_meter.setdefault(connector_id, time.monotonic())
        self.central.emit(events.StatusChanged(self.id, connector_id, status, error_code))
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: list, transaction_id: int | None = None,
                        **_: Any) -> call_result.MeterValues:
        self.last_meter[connector_id] = time.monotonic()
        if transaction_id is not None and connector_id > 0 and connector_id not in self.transactions:
            # A transaction begun before this connection (the bridge restarted mid-session): a
            # TxProfile needs its id, which only its StartTransaction or its MeterValues tell.
            self._started(connector_id, transaction_id)
        reading = meter_reading(self.id, connector_id, meter_value)
        if reading is not None:
            self.central.emit(reading)
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> call_result.Authorize:
        # The charger's own RFID and autostart settings decide who charges.
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id: int, id_tag: str, **_: Any) -> call_result.StartTransaction:
        self._next_transaction += 1
        tx = self._next_transaction
        self._started(connector_id, tx)
        return call_result.StartTransaction(transaction_id=tx, id_tag_info={"status": AuthorizationStatus.accepted})

    def _started(self, connector_id: int, tx: int) -> None:
        self.transactions[connector_id] = tx
        self.central.emit(events.TransactionChanged(self.id, connector_id, tx))
        # A TxProfile can only be set now: the limits in force are sent for this transaction.
        if self.central.method_of(self.id) in (None, TX_PROFILE):
            self.spawn(self.apply(connector_id))

    @on(Action.stop_transaction)
    def on_stop_transaction(self, transaction_id: int, **_: Any) -> call_result.StopTransaction:
        self._stopped(transaction_id)
        return call_result.StopTransaction(id_tag_info={"status": AuthorizationStatus.accepted})

    def _stopped(self, transaction_id: int | None) -> None:
        for connector, tx in list(self.transactions.items()):
            if tx == transaction_id:
                del self.transactions[connector]
                self.central.emit(events.TransactionChanged(self.id, connector, None))

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.firmware_status_notification)
    def on_firmware_status(self, status: str) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status(self, status: str) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

    # ---- the central system's calls ----------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def ask(self, payload: Any) -> Any | None:
        """The charger's answer to `payload`, or None (a timeout or a CallError, each an event)."""
        action = type(payload).__name__
        try:
            return await self.call(payload, suppress=False)
        except asyncio.TimeoutError:
            message = f"no answer to {action} within {self.central.call_timeout_s:g} s"
        except OCPPError as e:
            message = f"{action} answered with {type(e).__name__}: {e.description}"
        except ConnectionClosed:
            message = f"disconnected before answering {action}"
        log.warning("%s: %s", self.id, message)
        self.central.emit(events.CallFailed(self.id, action, message))
        return None

    async def _ask_boot(self) -> None:
        await self.ask(call.TriggerMessage(requested_message=MessageTrigger.boot_notification))

    async def _after_boot(self) -> None:
        await self.configure_meter_values()
        for connector in sorted(self.central.limits_of(self.id)):
            await self.apply(connector)

    async def configure_meter_values(self) -> None:
        interval = str(int(round(self.central.meter_interval_s)))
        await self.ask(call.ChangeConfiguration(key="MeterValueSampleInterval", value=interval))
        most = len(MEASURANDS)
        answer = await self.ask(call.GetConfiguration(key=["MeterValuesSampledDataMaxLength", INSTALLATION_KEY]))
        for item in (answer.configuration_key or []) if answer else []:
            if item.get("key") == "MeterValuesSampledDataMaxLength":
                try:
                    most = max(1, min(most, int(item.get("value"))))
                except (TypeError, ValueError):
                    pass
            elif item.get("key") == INSTALLATION_KEY:
                for connector, amps in installation_currents(item.get("value")).items():
                    self.central.emit(events.InstallationCurrent(self.id, connector, amps))
        await self.ask(call.ChangeConfiguration(key="MeterValuesSampledData", value=",".join(MEASURANDS[:most])))

    async def _set_profile(self, connector_id: int, profile: dict[str, Any]) -> str | None:
        answer = await self.ask(call.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=profile))
        return None if answer is None else str(answer.status)

    async def _learn(self, connector: int) -> str | None:
        """Find what this charger accepts, probing with the fail-safe profile (needed anyway)."""
        central = self.central
        tried = central.rejected.setdefault(self.id, set())
        for method in CONTROL_METHODS:
            if method in tried:
                continue
            tx = self.transactions.get(connector)
            if method == TX_PROFILE and tx is None:
                return None  # tried again when a transaction starts
            target = target_connector(method, connector)
            status = await self._set_profile(
                target, failsafe_profile(method, connector, central.failsafe_a, _now(), tx))
            if status is None:
                return None  # no answer: nothing learned, tried again with the next limit
            if status == ChargingProfileStatus.accepted:
                central.learned(self.id, method)
                self.failsafe_sent.add((target, tx if method == TX_PROFILE else None))
                return method
            tried.add(method)
        central.not_controllable(self.id)
        return None

    async def apply(self, connector: int) -> bool:
        """Send the limit in force for `connector` (and the fail-safe under it, once)."""
        async with self._apply_lock:
            return await self._apply(connector)

    async def _apply(self, connector: int, reprobe: bool = True) -> bool:
        central = self.central
        amps = central.limits_of(self.id).get(connector)
        if amps is None:
            return False
        method = central.method_of(self.id) or await self._learn(connector)
        if method is None:
            return False
        status = await self._send_limit(connector, method, amps)
        if status is None or status == ChargingProfileStatus.accepted:
            return status is not None
        if not reprobe:
            return False
        # The method it took before (in this run, or remembered from the last) is refused now: a
        # firmware update, another charger under the same identity. Learned again, from the first.
        log.warning("%s refused its limit as %s (%s): finding again how it takes one", self.id, method, status)
        central.forget(self.id)
        return await self._apply(connector, reprobe=False)

    async def _send_limit(self, connector: int, method: str, amps: float) -> str | None:
        """Send the limit as `method` (the fail-safe under it first, once): the charger's answer, or
        None when nothing was sent or answered."""
        central = self.central
        tx = self.transactions.get(connector) if method == TX_PROFILE else None
        if method == TX_PROFILE and tx is None:
            return None  # no transaction, so nothing charges; sent when one starts
        target = target_connector(method, connector)
        if method == TX_DEFAULT_ON_CHARGE_POINT:
            # One limit for the whole charge point: the lowest its connectors are given.
            amps = min(central.limits_of(self.id).values())
        now = _now()
        if (target, tx) not in self.failsafe_sent:
            status = await self._set_profile(target, failsafe_profile(method, connector, central.failsafe_a, now, tx))
            if status != ChargingProfileStatus.accepted:
                return status
            self.failsafe_sent.add((target, tx))
        status = await self._set_profile(target, limit_profile(method, connector, amps, now, central.profile_ttl_s, tx))
        if status == ChargingProfileStatus.accepted:
            central.sent(self.id, connector, amps)
        return status

    async def renew(self) -> None:
        """Each limit is sent again before its `duration` ends."""
        while True:
            await asyncio.sleep(self.central.profile_ttl_s / 2)
            for connector in sorted(self.central.limits_of(self.id)):
                await self.apply(connector)

    async def watch_meter(self) -> None:
        interval = self.central.meter_interval_s
        while True:
            await asyncio.sleep(interval / 2)
            now = time.monotonic()
            for connector in sorted(self.connectors):
                if now - self.last_meter.get(connector, now) >= SILENT_INTERVALS * interval:
                    self.last_meter[connector] = now  # asked again after as many intervals
                    self.spawn(self.ask(call.TriggerMessage(requested_message=MessageTrigger.meter_values,
                                                            connector_id=connector)))


def installation_currents(value: Any) -> dict[int, float]:
    """`MaxCurrent`'s "0.16,1.16" as {0: 16.0, 1: 16.0}; a pair that does not read so is left out."""
    out: dict[int, float] = {}
    for pair in str(value or "").split(","):
        connector, sep, amps = pair.strip().partition(".")
        try:
            if sep and int(connector) >= 0 and 0 < float(amps) <= 80:
                out[int(connector)] = float(amps)
        except ValueError:
            continue
    return out


def meter_reading(cp: str, connector: int, meter_value: list) -> events.MeterReading | None:
    """The newest per-phase currents, power and energy of a MeterValues payload (snake_case, as the
    `ocpp` library hands it; OCPP 1.6 section 7.43 SampledValue: a missing measurand is
    Energy.Active.Import.Register, a missing unit Wh, A or W by measurand)."""
    currents: list[float | None] = [None, None, None]
    power_w = energy_wh = None
    for value in meter_value:
        for sample in value.get("sampled_value", []):
            measurand = sample.get("measurand") or "Energy.Active.Import.Register"
            unit = (sample.get("unit") or "").lower()
            try:
                number = float(sample["value"])
            except (KeyError, TypeError, ValueError):
                continue
            phase = (sample.get("phase") or "")[:2]
            if measurand == "Current.Import" and phase in ("L1", "L2", "L3"):
                currents[int(phase[1]) - 1] = number
            elif measurand == "Power.Active.Import" and not phase:
                power_w = number * 1000 if unit == "kw" else number
            elif measurand == "Energy.Active.Import.Register" and not phase:
                energy_wh = number * 1000 if unit == "kwh" else number
    phases = None if all(c is None for c in currents) else tuple(c or 0.0 for c in currents)
    if phases is None and power_w is None and energy_wh is None:
        return None
    return events.MeterReading(cp, connector, phases, power_w, energy_wh)  # type: ignore[arg-type]


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class CentralSystem:
    """The server and its sessions; see the module's text."""

    def __init__(self, identities: tuple[str, ...], emit: Callable[[object], None], *,
                 host: str = "0.0.0.0", port: int = 8887, password: str | None = None,
                 tls: tuple[Path, Path] | None = None, meter_interval_s: float = 10,
                 profile_ttl_s: float = 120, failsafe_a: float = 6, call_timeout_s: float = CALL_TIMEOUT_S,
                 upstream_url: str | None = None, upstream_password: str | None = None,
                 upstream_options: dict[str, Any] | None = None, methods: dict[str, str] | None = None) -> None:
        self.identities = frozenset(identities)
        self.emit = emit
        self.host = host
        self.port = port
        self._password = password
        self._tls = tls
        self.meter_interval_s = meter_interval_s
        self.profile_ttl_s = profile_ttl_s
        self.failsafe_a = failsafe_a
        self.call_timeout_s = call_timeout_s
        self.refused = 0
        self.upstream_url = upstream_url
        self._upstream_password = upstream_password
        self._upstream_options = upstream_options or {}  # Upstream's keywords (timeouts, backoff)
        self.last_boot: dict[str, dict] = {}  # identity -> its last BootNotification, replayed upstream
        # Kept across reconnections, owned by the loop's thread.
        # How each charger takes its limit, as learned before (the state folder's): not probed again.
        self._methods: dict[str, str | None] = {}
        for cp, method in (methods or {}).items():
            if method in CONTROL_METHODS:
                self._methods[cp] = method
            else:
                log.warning("%s: the remembered control method %r is not one the bridge knows; probing again",
                            cp, method)
        self.rejected: dict[str, set[str]] = {}
        self._uncontrollable: set[str] = set()
        self._limits: dict[str, dict[int, float]] = {}
        self._sessions: dict[str, _Session] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        if password is None:
            log.warning("OCPP_PASSWORD is not set: any charger that names a listed identity is accepted "
                        "without authentication")

    # ---- the worker's side (thread-safe, never blocking) ------------------------------

    def start(self, timeout_s: float = 10) -> None:
        """Listen; raises OSError when the port cannot be had."""
        ready = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="ocpp-central", daemon=True)
        self._thread.start()
        ready.result(timeout_s)

    def stop(self, timeout_s: float = 10) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def set_current(self, cp: str, connector: int, amps: float) -> concurrent.futures.Future:
        """Limit `connector` of `cp` to `amps` (0 pauses); True once the charger accepted it."""
        return self._submit(self._set_current(cp, connector, amps))

    def set_available(self, cp: str, connector: int, available: bool) -> concurrent.futures.Future:
        kind = AvailabilityType.operative if available else AvailabilityType.inoperative
        return self._submit(self._accepted(cp, call.ChangeAvailability(connector_id=connector, type=kind),
                                           ("Accepted", "Scheduled")))

    def reset(self, cp: str) -> concurrent.futures.Future:
        return self._submit(self._accepted(cp, call.Reset(type=ResetType.soft), ("Accepted",)))

    def connected(self) -> set[str]:
        return set(self._sessions)

    # ---- the loop's side ------------------------------------------------------------------

    def method_of(self, cp: str) -> str | None:
        return self._methods.get(cp)

    def limits_of(self, cp: str) -> dict[int, float]:
        return self._limits.get(cp, {})

    def learned(self, cp: str, method: str) -> None:
        self._methods[cp] = method
        log.info("%s takes its limit as %s", cp, method)
        self.emit(events.ControlLearned(cp, method))

    def forget(self, cp: str) -> None:
        """The charger refused the method it took: it is probed again from the first."""
        self._methods.pop(cp, None)
        self.rejected.pop(cp, None)
        self._uncontrollable.discard(cp)
        session = self._sessions.get(cp)
        if session is not None:
            session.failsafe_sent.clear()  # sent again under whichever method it takes now

    def not_controllable(self, cp: str) -> None:
        if cp in self._uncontrollable:
            return  # said once; every later limit for it is refused the same way
        self._uncontrollable.add(cp)
        message = (f"charger {cp} accepted no charging profile (TxDefaultProfile on the connector or on "
                   "connector 0, TxProfile): its connectors cannot be controlled")
        log.error(message)
        self.emit(events.NotControllable(cp, message))

    def sent(self, cp: str, connector: int, amps: float) -> None:
        log.debug("%s:%d limited to %g A", cp, connector, amps)

    def _submit(self, coro: Coroutine[Any, Any, bool]) -> concurrent.futures.Future:
        if self._loop is None:
            coro.close()
            failed: concurrent.futures.Future = concurrent.futures.Future()
            failed.set_result(False)
            return failed
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _set_current(self, cp: str, connector: int, amps: float) -> bool:
        self._limits.setdefault(cp, {})[connector] = amps
        session = self._sessions.get(cp)
        if session is None:
            return False  # kept, and sent once the charger is back
        accepted = await session.apply(connector)
        self.emit(events.LimitApplied(cp, connector, amps, accepted))
        return accepted

    async def _accepted(self, cp: str, payload: Any, ok: tuple[str, ...]) -> bool:
        session = self._sessions.get(cp)
        if session is None:
            return False
        answer = await session.ask(payload)
        return answer is not None and str(answer.status) in ok

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        identity = identity_of(request.path)
        reason = refusal(identity, self.identities, self._password, request.headers.get("Authorization"))
        if reason is None:
            return None
        self.refused += 1
        log.warning("refused a charger: %s", reason)
        self.emit(events.Refused(identity, reason))
        if identity not in self.identities:
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "authentication required\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
        return response

    async def _handler(self, connection: ServerConnection) -> None:
        identity = identity_of(connection.request.path)
        old = self._sessions.get(identity)
        if old is not None:  # the charger came back before its old connection timed out
            await old._connection.close()
        session = _Session(self, identity, connection)
        self._sessions[identity] = session
        self.emit(events.Connected(identity))
        session.spawn(session.renew())
        if self.upstream_url:
            session.upstream = Upstream(identity, self.upstream_url, self._upstream_password, session.from_upstream,
                                        last_boot=lambda: self.last_boot.get(identity), **self._upstream_options)
            session.spawn(session.upstream.run())
        session.spawn(session.watch_meter())
        try:
            await session.start()
        except ConnectionClosed:
            pass
        finally:
            session.cancel_tasks()
            if self._sessions.get(identity) is session:
                del self._sessions[identity]
                self.emit(events.Disconnected(identity))

    def _run(self, ready: concurrent.futures.Future) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: concurrent.futures.Future) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        context = server_ssl_context(*self._tls) if self._tls else None
        try:
            server: Server = await serve(self._handler, self.host, self.port, subprotocols=[SUBPROTOCOL],
                                         process_request=self._process_request, ssl=context,
                                         ping_interval=20, ping_timeout=20)
        except Exception as e:  # noqa: BLE001 - handed to start()'s caller
            ready.set_exception(e)
            return
        self.port = server.sockets[0].getsockname()[1]
        ready.set_result(None)
        await self._stop.wait()
        server.close()
        await server.wait_closed()
        self._loop = None
