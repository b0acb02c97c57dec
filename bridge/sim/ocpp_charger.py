"""A simulated OCPP 1.6J charger (the charge point role, on the `ocpp` library).

A car on a connector follows the limit in force (the composite schedule of the
installed charging profiles, `bridge.ocpp.profiles.composite_limit`) within the
lag of `ChargerModel`; the charger reports statuses, runs transactions, sends
MeterValues every MeterValueSampleInterval with the measurands asked for, keeps its
profiles while the central system is gone and reconnects with backoff.

Profiles of behaviour (`--profile`), from public reports on Charge Amps chargers:
- `generic` accepts every charging profile;
- `charge-amps` accepts TxDefaultProfile on connector 0 and on connectors (and
  TxProfile), answers ChargePointMaxProfile with NotSupported, acknowledges a
  RemoteStopTransaction and undoes it after 30 s, reports connectors 0, 1 and 2
  (2 is a Halo's Schuko outlet) and starts with MeterValueSampleInterval 30;
- `charge-amps-169` (a Halo on firmware 169) answers ChargePointMaxProfile with
  NotSupported, rejects TxDefaultProfile and accepts TxProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge.limits import MAX_CURRENT_A
from bridge.ocpp.identity import basic_header
from bridge.ocpp.profiles import InstalledProfile, composite_limit
from bridge.ocpp.wire import SUBPROTOCOL, frame_logger
from bridge.sim.charger import ChargerModel

log = logging.getLogger(__name__)

VOLTAGE_V = 230.0
TICK_S = 0.05


@dataclass(frozen=True)
class Behaviour:
    purposes: dict[str, str]  # purpose -> the answer to a SetChargingProfile of it
    tx_default_on_connector: bool = True  # False: a TxDefaultProfile only on connector 0
    min_connectors: int = 1
    sample_interval_s: int = 10
    undo_remote_stop_s: float | None = None
    reports_max_current: bool = False  # Charge Amps' read-only MaxCurrent key: "<connector>.<A>,..."


BEHAVIOURS = {
    "generic": Behaviour({"ChargePointMaxProfile": "Accepted", "TxDefaultProfile": "Accepted", "TxProfile": "Accepted"}),
    "charge-amps": Behaviour({"ChargePointMaxProfile": "NotSupported", "TxDefaultProfile": "Accepted",
                              "TxProfile": "Accepted"}, min_connectors=2, sample_interval_s=30,
                             undo_remote_stop_s=30, reports_max_current=True),
    "charge-amps-169": Behaviour({"ChargePointMaxProfile": "NotSupported", "TxDefaultProfile": "Rejected",
                                  "TxProfile": "Accepted"}, reports_max_current=True),
}


def _unique_id(raw_msg: Any) -> str | None:
    """The unique id of a CALLRESULT or CALLERROR frame (3 or 4), else None."""
    try:
        frame = json.loads(raw_msg)
    except (TypeError, ValueError):
        return None
    if isinstance(frame, list) and len(frame) > 1 and frame[0] in (3, 4) and isinstance(frame[1], str):
        return frame[1]
    return None


def _utc() -> datetime:
    return datetime.now(timezone.utc)


class _Point(ChargePoint):
    def __init__(self, sim: "SimCharger", connection: Any) -> None:
        super().__init__(sim.identity, connection, response_timeout=sim.call_timeout_s,
                         logger=frame_logger("bridge.sim.ocpp_charger.wire"))
        self.sim = sim

    async def route_message(self, raw_msg: Any) -> None:
        if not self.sim.answers_calls and raw_msg.lstrip("[ ").startswith("2,"):
            return  # a charger that never answers the central system's calls (2: a CALL frame)
        await super().route_message(raw_msg)
        # A charger takes in the answer to its own call (a StartTransaction's transaction id) before
        # the central system's next message; the library hands the answer over on a queue and reads
        # on, so the next message waits until the call that got it has finished with it.
        done = self.sim._answered.get(_unique_id(raw_msg))
        if done is not None:
            try:
                await asyncio.wait_for(done.wait(), 5)
            except asyncio.TimeoutError:
                pass

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict) -> call_result.SetChargingProfile:
        return call_result.SetChargingProfile(status=self.sim.install(connector_id, cs_charging_profiles))

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **kw: Any) -> call_result.ClearChargingProfile:
        return call_result.ClearChargingProfile(status=self.sim.clear(**kw))

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list | None = None) -> call_result.GetConfiguration:
        known = [{"key": k, "readonly": False, "value": v} for k, v in self.sim.config.items() if not key or k in key]
        unknown = [k for k in key or [] if k not in self.sim.config]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> call_result.ChangeConfiguration:
        return call_result.ChangeConfiguration(status=self.sim.configure(key, value))

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str) -> call_result.ChangeAvailability:
        for c in self.sim.connector_ids() if connector_id == 0 else [connector_id]:
            self.sim.available[c] = type == "Operative"
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.reset)
    def on_reset(self, type: str) -> call_result.Reset:
        self.sim.resets += 1
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    async def after_reset(self, type: str) -> None:
        await self.sim.reboot()

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        found = transaction_id in self.sim.transactions.values()
        return call_result.RemoteStopTransaction(status="Accepted" if found else "Rejected")

    @after(Action.remote_stop_transaction)
    async def after_remote_stop(self, transaction_id: int) -> None:
        await self.sim.remote_stop(transaction_id)

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **_: Any) -> call_result.RemoteStartTransaction:
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.trigger_message)
    def on_trigger(self, requested_message: str, connector_id: int | None = None) -> call_result.TriggerMessage:
        self.sim.triggered.append((requested_message, connector_id))
        return call_result.TriggerMessage(status="Accepted")

    @after(Action.trigger_message)
    async def after_trigger(self, requested_message: str, connector_id: int | None = None) -> None:
        if requested_message == "BootNotification":
            await self.sim.boot()
        elif requested_message == "MeterValues":
            for c in [connector_id] if connector_id else self.sim.connector_ids():
                await self.sim.send_meter_values(c)
        elif requested_message == "StatusNotification":
            await self.sim.send_statuses()
        elif requested_message == "Heartbeat":
            await self.sim.point.call(call.Heartbeat())


class SimCharger:
    """One charger; `run()` in a loop, or `start_in_thread()` / `stop()` from tests."""

    def __init__(self, url: str, identity: str = "SIM1", *, connectors: int = 1, profile: str = "generic",
                 cars: dict[int, float] | None = None, lag_s: float = 1.0, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, backoff_s: tuple[float, float] = (1.0, 30.0),
                 answers_calls: bool = True, call_timeout_s: float = 30, sampled_data_max_length: int = 3,
                 undo_remote_stop_s: float | None = None, boot_on_connect: bool = True,
                 sends_meter_values: bool = True, behaviour: Behaviour | None = None,
                 model: str | None = None, installation_current: int = 16) -> None:
        if profile not in BEHAVIOURS:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(BEHAVIOURS)}")
        self.url = url.rstrip("/") + "/" + identity
        self.identity = identity
        self.behaviour = behaviour or BEHAVIOURS[profile]
        self.sends_meter_values = sends_meter_values
        self.profile = profile
        # What BootNotification says it is: a Charge Amps profile is a Halo unless told (an Aura, say).
        self.model = model or ("Sim" if profile == "generic" else "Halo")
        self.n_connectors = max(connectors, self.behaviour.min_connectors)
        self.cars = {c: ChargerModel(lag_s=lag_s, car_max_a=max_a) for c, max_a in (cars or {}).items()}
        self._password = password
        self.ssl_context = ssl_context
        self.backoff_s = backoff_s
        self.answers_calls = answers_calls
        self.call_timeout_s = call_timeout_s
        self.boot_on_connect = boot_on_connect
        self.undo_remote_stop_s = undo_remote_stop_s if undo_remote_stop_s is not None \
            else self.behaviour.undo_remote_stop_s
        self.config: dict[str, str] = {
            "MeterValueSampleInterval": str(self.behaviour.sample_interval_s),
            "MeterValuesSampledData": "Energy.Active.Import.Register",
            "MeterValuesSampledDataMaxLength": str(sampled_data_max_length),
            "HeartbeatInterval": "60",
        }
        if self.behaviour.reports_max_current:
            # As a Halo answers (https://github.com/evcc-io/evcc/issues/15943): the charge point and its
            # car outlet (a Halo's Schuko outlet is not listed); an Aura's two outlets both.
            outlets = [1] if self.model == "Halo" else self.connector_ids()
            self.config["MaxCurrent"] = ",".join(f"{c}.{installation_current}" for c in [0, *outlets])
        # Kept while the central system is gone, as a charger keeps them.
        self.profiles: list[InstalledProfile] = []
        self.transactions: dict[int, int] = {}
        self.stopped_until: dict[int, float] = {}  # connector -> monotonic time a stopped session may resume
        self.available = {c: True for c in self.connector_ids()}
        self.energy_wh = {c: 0.0 for c in self.connector_ids()}
        self.status: dict[int, str] = {}
        self.received: list[tuple[float, int, dict]] = []  # (monotonic, connectorId, profile): what came
        self.triggered: list[tuple[str, int | None]] = []
        self.resets = 0
        self.connections = 0
        self.point: _Point | None = None
        self.connected = threading.Event()
        self._written: dict[int, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._connection: Any = None
        self._offline_until = 0.0
        self._answered: dict[str, asyncio.Event] = {}  # our calls in flight, by unique id: set once handled

    def __repr__(self) -> str:  # never the password
        return f"SimCharger({self.identity!r}, profile={self.profile!r})"

    def connector_ids(self) -> list[int]:
        return list(range(1, self.n_connectors + 1))

    # ---- the charger's logic -------------------------------------------------------------

    def install(self, connector_id: int, payload: dict) -> str:
        profile = InstalledProfile.from_wire(connector_id, payload)
        self.received.append((time.monotonic(), connector_id, payload))
        answer = self.behaviour.purposes.get(profile.purpose, "Rejected")
        if profile.purpose == "ChargePointMaxProfile" and connector_id != 0:
            answer = "Rejected"
        if profile.purpose == "TxProfile" and (connector_id == 0 or connector_id not in self.transactions):
            answer = "Rejected"  # OCPP 1.6: a TxProfile needs the connector's running transaction
        if profile.purpose == "TxDefaultProfile" and connector_id != 0 and not self.behaviour.tx_default_on_connector:
            answer = "Rejected"  # per-connector ids are reported unreliable on some chargers
        if connector_id > self.n_connectors:
            answer = "Rejected"
        if answer != "Accepted":
            return answer
        # The same id, or the same purpose and stack level on the connector, replaces it (section 3.13.2).
        self.profiles = [p for p in self.profiles if p.profile_id != profile.profile_id and not (
            p.connector == connector_id and p.purpose == profile.purpose and p.stack_level == profile.stack_level)]
        self.profiles.append(profile)
        self.tick()
        return "Accepted"

    def clear(self, id: int | None = None, connector_id: int | None = None,
              charging_profile_purpose: str | None = None, stack_level: int | None = None) -> str:
        def matches(p: InstalledProfile) -> bool:
            if id is not None:
                return p.profile_id == id
            return ((connector_id is None or p.connector == connector_id)
                    and (charging_profile_purpose is None or p.purpose == charging_profile_purpose)
                    and (stack_level is None or p.stack_level == stack_level))
        kept = [p for p in self.profiles if not matches(p)]
        cleared = len(kept) < len(self.profiles)
        self.profiles = kept
        return "Accepted" if cleared else "Unknown"

    def configure(self, key: str, value: str) -> str:
        if key == "MeterValueSampleInterval":
            try:
                if int(value) < 0:
                    return "Rejected"
            except ValueError:
                return "Rejected"
        if key == "MeterValuesSampledData":
            items = [v for v in value.split(",") if v]
            if len(items) > int(self.config["MeterValuesSampledDataMaxLength"]):
                return "Rejected"
        if key in ("MeterValuesSampledDataMaxLength", "MaxCurrent"):
            return "Rejected"  # read-only
        self.config[key] = value
        return "Accepted"

    def limit(self, connector: int) -> float:
        """The current the charger offers `connector` now (the pilot signal)."""
        if not self.available.get(connector, True) or connector not in self.transactions:
            return 0.0
        in_force = composite_limit(self.profiles, connector, _utc(), self.transactions.get(connector))
        return MAX_CURRENT_A if in_force is None else min(in_force, MAX_CURRENT_A)

    def tick(self) -> None:
        now = time.monotonic()
        for c, car in self.cars.items():
            amps = int(self.limit(c))
            if self._written.get(c) != amps:
                self._written[c] = amps
                car.write(now, amps)

    def draw(self, connector: int) -> float:
        car = self.cars.get(connector)
        return 0.0 if car is None else car.draw(time.monotonic())

    def connector_status(self, c: int) -> str:
        if not self.available.get(c, True):
            return "Unavailable"
        if c not in self.cars:
            return "Available"
        if c not in self.transactions:
            return "Finishing" if c in self.stopped_until else "Preparing"
        if self.draw(c) > 0:
            return "Charging"
        return "SuspendedEVSE" if self.limit(c) < 6 else "SuspendedEV"

    # ---- messages to the central system -------------------------------------------------------

    async def _call(self, payload: Any, then: Callable[[Any], None] | None = None) -> Any:
        """Send `payload`; its answer (None when there is none), handed to `then` first."""
        if self.point is None:
            return None
        unique_id, done = str(uuid.uuid4()), asyncio.Event()
        self._answered[unique_id] = done
        try:
            answer = await self.point.call(payload, unique_id=unique_id)
            if then is not None and answer is not None:
                then(answer)
            return answer
        except (ConnectionClosed, asyncio.TimeoutError):
            return None
        finally:
            done.set()
            self._answered.pop(unique_id, None)

    async def boot(self) -> None:
        await self._call(call.BootNotification(charge_point_vendor="Charge Amps" if self.profile != "generic" else "Sim",
                                               charge_point_model=self.model,
                                               firmware_version="169" if self.profile == "charge-amps-169" else "sim"))
        await self.send_statuses()

    async def send_statuses(self) -> None:
        ids = ([0] if self.profile.startswith("charge-amps") else []) + self.connector_ids()
        for c in ids:
            status = "Available" if c == 0 else self.connector_status(c)
            self.status[c] = status
            await self._call(call.StatusNotification(connector_id=c, error_code="NoError", status=status))

    async def send_meter_values(self, c: int) -> None:
        car = self.cars.get(c)
        phases = car.phase_draw(time.monotonic()) if car else (0.0, 0.0, 0.0)
        wanted = self.config["MeterValuesSampledData"].split(",")
        samples: list[dict[str, Any]] = []
        # Shapes as OCPP 1.6 section 7.43 SampledValue: a phase per current, the unit named.
        if "Current.Import" in wanted:
            samples += [{"value": f"{a:.1f}", "measurand": "Current.Import", "phase": f"L{i + 1}", "unit": "A"}
                        for i, a in enumerate(phases)]
        if "Power.Active.Import" in wanted:
            samples.append({"value": f"{sum(phases) * VOLTAGE_V:.0f}", "measurand": "Power.Active.Import", "unit": "W"})
        if "Energy.Active.Import.Register" in wanted:
            samples.append({"value": f"{self.energy_wh.get(c, 0.0):.0f}",
                            "measurand": "Energy.Active.Import.Register", "unit": "Wh"})
        if samples:
            tx = self.transactions.get(c)
            await self._call(call.MeterValues(connector_id=c, transaction_id=tx,
                                              meter_value=[{"timestamp": _utc().isoformat(), "sampled_value": samples}]))

    async def start_transaction(self, c: int) -> None:
        await self._call(call.StartTransaction(connector_id=c, id_tag="SIMTAG", meter_start=int(self.energy_wh[c]),
                                               timestamp=_utc().isoformat()),
                         then=lambda answer: self.transactions.__setitem__(c, answer.transaction_id))

    async def remote_stop(self, transaction_id: int) -> None:
        for c, tx in list(self.transactions.items()):
            if tx == transaction_id:
                del self.transactions[c]
                undo = self.undo_remote_stop_s
                self.stopped_until[c] = time.monotonic() + undo if undo is not None else float("inf")
                self.tick()
                await self._call(call.StopTransaction(transaction_id=tx, meter_stop=int(self.energy_wh[c]),
                                                      timestamp=_utc().isoformat(), reason="Remote"))

    def go_offline(self, seconds: float) -> None:
        """The charger's network goes for `seconds` (thread-safe): the connection drops, the car goes on."""
        assert self._loop is not None

        async def drop() -> None:
            self._offline_until = time.monotonic() + seconds
            # The central system may have accepted the connection before this side has taken it
            # up: wait for it, or the network "goes" with the connection still open.
            deadline = time.monotonic() + 5
            while not self.connected.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if self.connected.is_set() and self._connection is not None:
                self._connection.transport.abort()  # the network gone: no closing handshake
        asyncio.run_coroutine_threadsafe(drop(), self._loop).result(5)

    async def reboot(self) -> None:
        """A soft reset: transactions end, the connection is closed and opened again."""
        for c, tx in list(self.transactions.items()):
            del self.transactions[c]
            await self._call(call.StopTransaction(transaction_id=tx, meter_stop=int(self.energy_wh[c]),
                                                  timestamp=_utc().isoformat(), reason="SoftReset"))
        if self._connection is not None:
            await self._connection.close()

    # ---- the loops --------------------------------------------------------------------------

    async def _physics(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.tick()
            for c, car in self.cars.items():
                self.energy_wh[c] += sum(car.phase_draw(now)) * VOLTAGE_V * (now - last) / 3600
            last = now

    async def _session(self) -> None:
        """What the charger does while connected: statuses, transactions, meter values."""
        if self.boot_on_connect:
            await self.boot()
        next_meter = time.monotonic()
        while True:
            now = time.monotonic()
            for c in list(self.cars):
                if c not in self.transactions and self.available.get(c, True) and self.stopped_until.get(c, 0) <= now:
                    self.stopped_until.pop(c, None)
                    await self.start_transaction(c)
                status = self.connector_status(c)
                if self.status.get(c) != status:
                    self.status[c] = status
                    await self._call(call.StatusNotification(connector_id=c, error_code="NoError", status=status))
            interval = float(self.config.get("MeterValueSampleInterval") or 0)
            if self.sends_meter_values and interval > 0 and now >= next_meter:
                next_meter = now + interval
                for c in self.connector_ids():
                    await self.send_meter_values(c)
            await asyncio.sleep(TICK_S)

    async def run(self) -> None:
        """Connect, and connect again with backoff, until stopped."""
        self._stop = self._stop or asyncio.Event()
        physics = asyncio.ensure_future(self._physics())
        delay = self.backoff_s[0]
        headers = {"Authorization": basic_header(self.identity, self._password)} if self._password else None
        try:
            while not self._stop.is_set():
                try:
                    async with websockets.connect(self.url, subprotocols=[SUBPROTOCOL], additional_headers=headers,
                                                  ssl=self.ssl_context, open_timeout=5) as ws:
                        delay = self.backoff_s[0]
                        await self._connected(ws)
                except (OSError, ConnectionClosed, InvalidStatus, asyncio.TimeoutError) as e:
                    log.info("%s: connection lost or refused (%s); again in %.1f s", self.identity, type(e).__name__,
                             delay)
                self.connected.clear()
                self.point = None
                try:
                    await asyncio.wait_for(self._stop.wait(), max(delay, self._offline_until - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, self.backoff_s[1])
        finally:
            physics.cancel()

    async def _connected(self, ws: Any) -> None:
        self._connection = ws
        self.point = _Point(self, ws)
        self.connections += 1
        self.connected.set()
        tasks = [asyncio.ensure_future(self.point.start()), asyncio.ensure_future(self._session()),
                 asyncio.ensure_future(self._stop.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None and not isinstance(
                        task.exception(), ConnectionClosed):
                    log.warning("%s: %r", self.identity, task.exception())
        finally:
            for task in tasks:
                task.cancel()

    # ---- from another thread ---------------------------------------------------------------------

    def start_in_thread(self) -> "SimCharger":
        ready = threading.Event()

        def main() -> None:
            async def go() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                ready.set()
                await self.run()
            asyncio.run(go())

        self._thread = threading.Thread(target=main, name=f"sim-{self.identity}", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def plug(self, connector: int, car: ChargerModel) -> None:
        """A car plugs into `connector` now (thread-safe): a transaction starts, and it follows the limit."""
        def plugged() -> None:
            self.cars[connector] = car
            self.n_connectors = max(self.n_connectors, connector)
            self.available.setdefault(connector, True)
            self.energy_wh.setdefault(connector, 0.0)
        if self._loop is None:
            plugged()
        else:
            self._loop.call_soon_threadsafe(plugged)

    def submit(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` (a coroutine function) on the charger's loop and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)


def _car(text: str) -> tuple[int, float]:
    connector, _, max_a = text.partition(":")
    try:
        c = int(connector)
        amps = float(max_a) if max_a else float(MAX_CURRENT_A)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give CONNECTOR or CONNECTOR:MAX_A, e.g. 1:16") from None
    if c < 1 or not 0 < amps <= MAX_CURRENT_A:
        raise argparse.ArgumentTypeError(f"{text!r}: the connector counts from 1, the car's maximum is 1..{MAX_CURRENT_A} A")
    return c, amps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chargeamps-bridge simulate-charger",
                                description="Run a simulated OCPP 1.6J charger against a central system at URL.")
    p.add_argument("url", metavar="URL", help="the central system, e.g. ws://127.0.0.1:8887 (the identity is appended)")
    p.add_argument("--identity", default="SIM1", help="the charge point identity (default SIM1)")
    p.add_argument("--connectors", type=int, default=1, help="connectors (default 1)")
    p.add_argument("--profile", choices=list(BEHAVIOURS), default="generic", help="which charger to behave like")
    p.add_argument("--car", type=_car, action="append", default=[], metavar="CONNECTOR[:MAX_A]",
                   help="a car plugged into CONNECTOR drawing at most MAX_A (repeatable)")
    p.add_argument("--lag-s", type=float, default=1.0, help="seconds the car takes to follow a limit (default 1)")
    p.add_argument("--password-env", default="OCPP_PASSWORD", metavar="NAME",
                   help="the environment variable holding the HTTP Basic password (default OCPP_PASSWORD)")
    p.add_argument("--ca-file", help="the CA certificate to trust for wss://")
    args = p.parse_args(argv)
    import os

    context = None
    if args.url.startswith("wss://"):
        context = ssl.create_default_context(cafile=args.ca_file)
    sim = SimCharger(args.url, args.identity, connectors=args.connectors, profile=args.profile,
                     cars=dict(args.car), lag_s=args.lag_s, password=os.environ.get(args.password_env) or None,
                     ssl_context=context)
    try:
        asyncio.run(sim.run())
    except KeyboardInterrupt:
        pass
    return 0
