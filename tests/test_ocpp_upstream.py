"""The vendor's backend kept beside the bridge (OCPP_UPSTREAM_URL): a fake upstream central system
built on the `ocpp` library, on loopback, a simulated charger, and the bridge's central system
between them. Real WebSockets, nothing mocked."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import serve

from bridge.ocpp import events as ev
from bridge.ocpp.identity import basic_credentials, identity_of
from bridge.ocpp.upstream import cap_of
from tests.ocpp_helpers import sim_for, start_central, wait_until

UPSTREAM_TX = 4242
FAST = {"relay_timeout_s": 1.0, "backoff_s": (0.1, 0.4)}


class _UpstreamSession(ChargePoint):
    """The upstream's side of one charger: what a billing backend answers (payload shapes as the
    `ocpp` library's v16 call_result types, OCPP 1.6 sections 6.2, 6.46, 6.50)."""

    def __init__(self, fake: "FakeUpstream", identity: str, connection: Any) -> None:
        super().__init__(identity, connection, response_timeout=5)
        self.fake = fake

    def _seen(self, action: str, **kw: Any) -> None:
        self.fake.received.append((action, kw))

    @on(Action.boot_notification)
    def on_boot(self, **kw: Any):
        self._seen("BootNotification", **kw)
        return call_result.BootNotification(current_time="2026-12-07T12:00:00Z", interval=300, status="Accepted")

    @on(Action.status_notification)
    def on_status(self, **kw: Any):
        self._seen("StatusNotification", **kw)
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter(self, **kw: Any):
        self._seen("MeterValues", **kw)
        return call_result.MeterValues()

    @on(Action.heartbeat)
    def on_heartbeat(self, **kw: Any):
        self._seen("Heartbeat", **kw)
        return call_result.Heartbeat(current_time="2026-12-07T12:00:00Z")

    @on(Action.authorize)
    def on_authorize(self, id_tag: str):
        self._seen("Authorize", id_tag=id_tag)
        return call_result.Authorize(id_tag_info={"status": "Blocked" if id_tag == "BLOCKED" else "Accepted"})

    @on(Action.start_transaction)
    async def on_start(self, **kw: Any):
        self._seen("StartTransaction", **kw)
        await asyncio.sleep(self.fake.start_delay_s)
        return call_result.StartTransaction(transaction_id=UPSTREAM_TX, id_tag_info={"status": "Accepted"})

    @on(Action.stop_transaction)
    def on_stop(self, **kw: Any):
        self._seen("StopTransaction", **kw)
        return call_result.StopTransaction()


class FakeUpstream:
    """A vendor's central system on loopback, in a thread of its own; `stop` and `start` again on the
    same port play its going away and coming back."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        self.port = 0
        self.received: list[tuple[str, dict]] = []
        self.sessions: dict[str, _UpstreamSession] = {}
        self.authorizations: list[str | None] = []
        self.start_delay_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def actions(self) -> list[str]:
        return [a for a, _ in list(self.received)]

    def start(self) -> "FakeUpstream":
        ready = threading.Event()

        def main() -> None:
            async def go() -> None:
                self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

                def check(connection, request):
                    self.authorizations.append(request.headers.get("Authorization"))
                    given = basic_credentials(request.headers.get("Authorization"))
                    if self.password is not None and given != (identity_of(request.path), self.password):
                        return connection.respond(401, "no\n")
                    return None

                async def handler(connection) -> None:
                    session = _UpstreamSession(self, identity_of(connection.request.path), connection)
                    self.sessions[session.id] = session
                    try:
                        await session.start()
                    except Exception:  # noqa: BLE001 - the connection ended
                        pass
                    finally:
                        self.sessions.pop(session.id, None)

                async with serve(handler, "127.0.0.1", self.port, subprotocols=["ocpp1.6"],
                                 process_request=check) as server:
                    self.port = server.sockets[0].getsockname()[1]
                    ready.set()
                    await self._stop.wait()
            asyncio.run(go())

        self._thread = threading.Thread(target=main, name="fake-upstream", daemon=True)
        self._thread.start()
        assert ready.wait(5)
        return self

    def call(self, identity: str, payload: Any, suppress: bool = True) -> Any:
        """Upstream's call to the charger (through the bridge) and the answer it gets."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(
            self.sessions[identity].call(payload, suppress=suppress), self._loop).result(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._thread = None
        self.sessions.clear()


@pytest.fixture
def upstream():
    made: list[FakeUpstream] = []

    def make(password: str | None = None) -> FakeUpstream:
        u = FakeUpstream(password).start()
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


@pytest.fixture
def bridge():
    started = []

    def start(up: FakeUpstream, password: str | None = None, **kw: Any):
        c, events = start_central(("CP1",), upstream_url=up.url, upstream_password=password,
                                  upstream_options={**FAST, **kw})
        started.append(c)
        return c, events

    yield start
    for c in started:
        c.stop()


@pytest.fixture
def chain(upstream, bridge):
    """A fake upstream, the bridge's central system forwarding to it, and a simulated charger on it."""
    sims = []

    def start(start_delay_s: float = 0.0, **sim_kw: Any):
        up = upstream()
        up.start_delay_s = start_delay_s
        c, events = bridge(up)
        sims.append(sim_for(c, **sim_kw).start_in_thread())
        return up, c, events, sims[-1]

    yield start
    for sim in sims:
        sim.stop()


def test_the_chargers_transactions_are_upstreams_and_its_other_messages_copied(chain):
    up, c, events, sim = chain()
    # Upstream issues the transaction id: the charger has it, and so does the bridge (a TxProfile needs it).
    wait_until(lambda: sim.transactions.get(1) == UPSTREAM_TX, what="the charger given upstream's transaction")
    events.wait(ev.TransactionChanged, cp="CP1", connector=1, transaction_id=UPSTREAM_TX)
    wait_until(lambda: {"BootNotification", "StatusNotification", "MeterValues"} <= set(up.actions()),
               what="the charger's other messages copied upstream")
    boot = dict(up.received)["BootNotification"]
    assert boot["charge_point_vendor"] == "Sim"
    # The bridge still runs the charger: its limit reaches the car.
    assert c.set_current("CP1", 1, 10).result(5) is True
    wait_until(lambda: sim.draw(1) == 10, what="the car at the bridge's limit")
    # Upstream's refusal is the charger's answer.
    answer = sim.submit(lambda: sim.point.call(call.Authorize(id_tag="BLOCKED")))
    assert answer.id_tag_info["status"] == "Blocked"


def test_upstreams_calls_reach_the_charger_and_its_profile_is_a_cap(chain):
    up, c, events, sim = chain()
    wait_until(lambda: "CP1" in up.sessions and sim.transactions.get(1) == UPSTREAM_TX, what="all connected")
    got = up.call("CP1", call.GetConfiguration(key=["HeartbeatInterval"]))
    assert got.configuration_key == [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}]
    assert up.call("CP1", call.RemoteStartTransaction(id_tag="APP", connector_id=1)).status == "Accepted"
    assert up.call("CP1", call.TriggerMessage(requested_message="StatusNotification", connector_id=1)).status \
        == "Accepted"
    assert ("StatusNotification", 1) in sim.triggered
    # The bridge owns the limit: upstream's profile is Accepted and taken as a cap, the charger never sees it.
    received = len(sim.received)
    profile = {"chargingProfileId": 77, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
               "chargingProfileKind": "Absolute", "chargingSchedule": {
                   "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}}
    answer = up.call("CP1", call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile))
    assert answer.status == "Accepted"
    events.wait(ev.UpstreamCap, cp="CP1", connector=1, amps=10.0)
    assert all(p.get("chargingProfileId") != 77 for _, _, p in sim.received[received:])
    # The meter configuration is the bridge's: upstream's interval thins its own copies only.
    interval = sim.config["MeterValueSampleInterval"]
    assert up.call("CP1", call.ChangeConfiguration(key="MeterValueSampleInterval", value="900")).status \
        == "Accepted"
    assert sim.config["MeterValueSampleInterval"] == interval
    assert up.call("CP1", call.ChangeConfiguration(key="HeartbeatInterval", value="120")).status == "Accepted"
    assert sim.config["HeartbeatInterval"] == "120"
    # Anything else upstream asks for is refused, not passed on.
    from ocpp.exceptions import NotSupportedError
    with pytest.raises(NotSupportedError):
        up.call("CP1", call.ClearChargingProfile(), suppress=False)


def test_upstream_gone_the_charger_keeps_charging_under_the_bridge(chain, caplog):
    caplog.set_level(logging.INFO, logger="bridge.ocpp")
    up, c, events, sim = chain(undo_remote_stop_s=0.3)
    wait_until(lambda: sim.transactions.get(1) == UPSTREAM_TX, what="a transaction of upstream's")
    assert c.set_current("CP1", 1, 12).result(5) is True
    wait_until(lambda: sim.draw(1) == 12, what="charging")
    port = up.port
    up.stop()
    wait_until(lambda: "upstream closed the connection" in caplog.text or "again in" in caplog.text,
               what="the bridge seeing upstream gone")
    # A new session while upstream is gone: the bridge answers the Stop and the Start itself.
    sim.submit(lambda: sim.remote_stop(UPSTREAM_TX))
    wait_until(lambda: sim.transactions.get(1) not in (None, UPSTREAM_TX), timeout=5,
               what="a transaction the bridge gave")
    wait_until(lambda: sim.draw(1) == 12, what="the car charging again under the bridge's limit")
    assert c.connected() == {"CP1"} and sim.connections == 1
    # Upstream back on its port: the bridge reconnects by itself and replays the charger's boot.
    again = FakeUpstream()
    again.port = port
    again.start()
    try:
        wait_until(lambda: "BootNotification" in again.actions(), what="the boot replayed to upstream")
        assert sim.connections == 1  # the charger itself never reconnected nor rebooted
    finally:
        again.stop()


def test_a_slow_upstream_is_answered_for_by_the_bridge(chain):
    up, c, events, sim = chain(start_delay_s=3)  # longer than the relay's wait (1 s here)
    tx = events.wait(ev.TransactionChanged, cp="CP1", connector=1).transaction_id
    assert tx != UPSTREAM_TX
    wait_until(lambda: sim.transactions.get(1) == tx, what="the charger given the bridge's transaction")


def test_the_upstream_password_is_sent_never_logged_and_retried_with_backoff(upstream, bridge, caplog):
    caplog.set_level(logging.DEBUG)
    up = upstream(password="up-s3cret")
    c, _ = bridge(up, password="wrong-s3cret")
    sim = sim_for(c).start_in_thread()
    try:
        def delays():
            return [float(d) for d in re.findall(r"upstream ws://\S+: .*?; again in ([\d.]+) s", caplog.text)]

        wait_until(lambda: len(delays()) >= 4, what="four refused attempts")
        assert delays()[:4] == [0.1, 0.2, 0.4, 0.4]  # doubling, to the most
        assert basic_credentials(up.authorizations[0]) == ("CP1", "wrong-s3cret")
        assert "CP1" not in up.sessions
    finally:
        sim.stop()
    c2, _ = bridge(up, password="up-s3cret")
    sim2 = sim_for(c2).start_in_thread()
    try:
        wait_until(lambda: "CP1" in up.sessions and "BootNotification" in up.actions(), what="accepted upstream")
    finally:
        sim2.stop()
    text = caplog.text + "".join(repr(getattr(s, "upstream", None)) for s in c2._sessions.values())
    assert "s3cret" not in text


def test_an_upstream_profile_in_watts_is_a_cap_in_amps():
    # OCPP 1.6 section 7.13 ChargingSchedule: chargingRateUnit W or A, periods with an optional numberPhases.
    watts = {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6900, "numberPhases": 3}]}
    assert cap_of({"chargingSchedule": watts}) == pytest.approx(10.0)
    one_phase = {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 2300, "numberPhases": 1}]}
    assert cap_of({"chargingSchedule": one_phase}) == pytest.approx(10.0)
    later_first = {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 600, "limit": 6},
                                                                       {"startPeriod": 0, "limit": 16}]}
    assert cap_of({"chargingSchedule": later_first}) == 16
    assert cap_of({"chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": []}}) is None


@pytest.mark.slow
def test_the_running_bridge_forwards_to_upstream_and_keeps_the_limit_its_own(broker, probe, tmp_path):
    """`chargeamps-bridge run` with OCPP_UPSTREAM_URL, a real broker, a simulated Halo and an upstream
    central system: the transaction is upstream's, the limit the bridge's, upstream's profile a cap."""
    from bridge.sim.ocpp_charger import SimCharger
    from tests.broker import free_port
    from tests import e2e
    from tests.e2e import BridgeProcess, topic, wait_online
    from tests.test_ocpp_e2e import PASSWORD, ocpp_env

    up = FakeUpstream().start()
    port = free_port()
    env = ocpp_env(broker, tmp_path / "state", port)
    env["OCPP_UPSTREAM_URL"] = up.url
    bridge = BridgeProcess(env, tmp_path).start()
    sim = SimCharger(f"ws://127.0.0.1:{port}/ocpp", "HALO1", profile="charge-amps", cars={1: 16}, lag_s=0.3,
                     password=PASSWORD, backoff_s=(0.2, 1), undo_remote_stop_s=0.3)
    house = [4.0, 4.0, 4.0]

    def metered_until(condition, what):
        e2e.metered_until(probe, env, bridge, lambda: sim.draw(1), condition, what, house)

    def limits_sent(since: int = 0) -> list[float]:
        return [p["charging_schedule"]["charging_schedule_period"][0]["limit"] for _, _, p in sim.received[since:]
                if p["stack_level"] == 1]

    try:
        wait_online(probe, env, bridge)
        sim.start_in_thread()
        probe.wait_value(topic(env, "charger/HALO1/online"), "ON", timeout=15)
        # A car charges; its StartTransaction went upstream and upstream's answer reached the charger.
        metered_until(lambda: sim.draw(1) == 16, "the car charging at 16 A")
        wait_until(lambda: sim.transactions.get(1) == UPSTREAM_TX, what="the charger given upstream's transaction")
        assert "StartTransaction" in up.actions() and "BootNotification" in up.actions()

        # Upstream's SetChargingProfile is answered Accepted and becomes the user's cap.
        profile = {"chargingProfileId": 77, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                   "chargingProfileKind": "Absolute", "chargingSchedule": {
                       "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}}
        since = time.monotonic()
        assert up.call("HALO1", call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)).status \
            == "Accepted"
        probe.wait_value(topic(env, "charger/HALO1/1/max_current"), "10", timeout=10, since=since)
        metered_until(lambda: sim.draw(1) == 10, "the car held at upstream's cap")
        assert all(p["charging_profile_id"] != 77 for _, _, p in sim.received)  # never passed through

        # The meter steps: the bridge cuts the car with a SetChargingProfile under the cap.
        before = len(sim.received)
        house[0] = 17.0
        metered_until(lambda: sim.draw(1) == 7, "the car cut to what is left under MaxA (24 - 17)")
        assert 7.0 in limits_sent(before)

        # Upstream gone: a new session is answered by the bridge, and the car charges under it.
        up.stop()
        sim.submit(lambda: sim.remote_stop(UPSTREAM_TX))
        wait_until(lambda: sim.transactions.get(1) not in (None, UPSTREAM_TX), timeout=10,
                   what="a transaction the bridge gave")
        before = len(sim.received)
        house[0] = 16.0
        metered_until(lambda: sim.draw(1) == 8, "the car charging under the bridge's limit without upstream")
        assert 8.0 in limits_sent(before)
        assert sim.connections == 1  # the charger never lost the bridge
        assert PASSWORD not in bridge.output()
        assert bridge.terminate() == 0
    finally:
        sim.stop()
        bridge.close()
        up.stop()
