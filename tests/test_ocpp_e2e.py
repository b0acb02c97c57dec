"""`chargeamps-bridge run` with CHARGER_TRANSPORT=ocpp end to end: a real broker, the service as a
subprocess listening for chargers, a simulated OCPP charger connecting to it, watched over MQTT."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bridge.sim.ocpp_charger import SimCharger
from tests.broker import free_port
from tests.e2e import BridgeProcess, bridge_env, metered_until, response_for, topic, wait_online, wait_until

PASSWORD = "ocpp-e2e-secret"


# No cloud: bridge_env leaves out the settings whose value is empty.
NO_CLOUD = SimpleNamespace(email="", password="", api_key="", url="")


def ocpp_env(broker, state_dir, port: int) -> dict[str, str]:
    return bridge_env(broker, NO_CLOUD, state_dir, CHARGER_TRANSPORT="ocpp", OCPP_HOST="127.0.0.1",
                      OCPP_PORT=port, OCPP_CHARGE_POINTS="HALO1", OCPP_PASSWORD=PASSWORD, OCPP_METER_INTERVAL_S=1,
                      CHARGEAMPS_POLL_INTERVAL="", BALANCER_RAISE_HOLD_S=1, BALANCER_MIN_COMMAND_INTERVAL_S=0,
                      BALANCER_STALE_AFTER_S=3)


@pytest.mark.slow
def test_the_bridge_balances_a_charger_over_ocpp(broker, probe, tmp_path):
    port = free_port()
    env = ocpp_env(broker, tmp_path / "state", port)
    bridge = BridgeProcess(env, tmp_path).start()
    sim = SimCharger(f"ws://127.0.0.1:{port}/ocpp", "HALO1", profile="charge-amps", cars={1: 16}, lag_s=0.3,
                     password=PASSWORD, backoff_s=(0.2, 1))
    try:
        wait_online(probe, env, bridge)
        sim.start_in_thread()
        probe.wait_value(topic(env, "charger/HALO1/online"), "ON", timeout=15)

        def quiet_house_until(condition, what, timeout=20.0, house=(4.0, 4.0, 4.0)):
            metered_until(probe, env, bridge, lambda: sim.draw(1), condition, what, house, timeout)

        quiet_house_until(lambda: sim.draw(1) == 16, "the car raised to 16 A")
        probe.wait_value(topic(env, "charger/HALO1/1/status"), "Charging", timeout=10)
        probe.wait_for(topic(env, "charger/HALO1/1/current_l1"), lambda p: float(p) == 16, timeout=10)
        info = probe.wait_json(topic(env, "bridge/info"), lambda i: "HALO1" in i.get("chargers", {}))
        assert info["chargers"]["HALO1"]["vendor"] == "Charge Amps"

        # The house takes 15 A more on L1: the car is cut within seconds, by a charging profile.
        quiet_house_until(lambda: 0 < sim.draw(1) < 16 or sim.draw(1) == 0, "the car cut", timeout=10,
                          house=(19.0, 4.0, 4.0))
        assert any(p.get("chargingSchedule", p.get("charging_schedule", {})) for _, _, p in sim.received)

        # Mode Off is ChangeAvailability: the connector is Unavailable.
        since = time.monotonic()
        probe.publish(topic(env, "charger/HALO1/1/mode/set"), "Off")
        response_for(probe, env, topic(env, "charger/HALO1/1/mode/set"), since)
        wait_until(lambda: sim.available[1] is False, 10, "the connector made unavailable")
        probe.wait_value(topic(env, "charger/HALO1/1/status"), "Unavailable", timeout=10)

        # A charger the bridge does not know is refused at the handshake, and counted.
        with pytest.raises(InvalidStatus):
            connect(f"ws://127.0.0.1:{port}/ocpp/STRANGER", subprotocols=["ocpp1.6"], open_timeout=5)
        probe.wait_json(topic(env, "bridge/health"), lambda h: h.get("ocpp_refused") == 1, timeout=15)

        # The charger goes away: its online topic says so.
        sim.stop()
        probe.wait_value(topic(env, "charger/HALO1/online"), "OFF", timeout=10)
        assert PASSWORD not in bridge.output()
        assert bridge.terminate() == 0
    finally:
        sim.stop()
        bridge.close()


@pytest.mark.slow
def test_a_restarted_bridge_remembers_how_each_charger_takes_its_limit(broker, probe, tmp_path):
    # A Halo on firmware 169 takes only a TxProfile: learned once by probing, kept in the state folder,
    # and after a restart the limit goes straight to a TxProfile for the session under way.
    port = free_port()
    env = ocpp_env(broker, tmp_path / "state", port)
    sim = SimCharger(f"ws://127.0.0.1:{port}/ocpp", "HALO1", profile="charge-amps-169", cars={1: 16}, lag_s=0.3,
                     password=PASSWORD, backoff_s=(0.2, 0.5))
    bridges = []

    def run_until(bridge, condition, what, house=(4.0, 4.0, 4.0)):
        metered_until(probe, env, bridge, lambda: sim.draw(1), condition, what, house)

    def purposes(since: int = 0) -> list[str]:
        # As the simulator's handler got them: the `ocpp` library hands it snake_case.
        return [p["charging_profile_purpose"] for _, _, p in sim.received[since:]]

    try:
        first = BridgeProcess(env, tmp_path).start()
        bridges.append(first)
        wait_online(probe, env, first)
        sim.start_in_thread()
        run_until(first, lambda: "TxProfile" in purposes(), "the first limit")
        assert purposes()[:2] == ["TxDefaultProfile", "TxDefaultProfile"]  # probed: connector, connector 0
        stored = tmp_path / "state" / "ocpp.json"
        wait_until(lambda: stored.exists(), 10, "the learned method stored")
        assert json.loads(stored.read_text()) == {"control_methods": {"HALO1": "TxProfile for the transaction"}}
        assert first.terminate() == 0
        sim.connected.clear()
        before, transaction = len(sim.received), sim.transactions[1]

        second = BridgeProcess(env, tmp_path).start()
        bridges.append(second)
        wait_online(probe, env, second, since=time.monotonic())
        wait_until(sim.connected.is_set, 15, "the charger back on the restarted bridge")
        # The house takes 15 A more on L1: the limit (and the fail-safe under it) is a TxProfile, at once.
        run_until(second, lambda: len(purposes(before)) >= 2, "a limit after the restart", house=(19.0, 4.0, 4.0))
        assert set(purposes(before)) == {"TxProfile"}
        assert {p.get("transaction_id") for _, _, p in sim.received[before:]} == {transaction}
        assert sim.transactions[1] == transaction  # the same session, never stopped
        assert "finding again" not in second.output()
        assert second.terminate() == 0
    finally:
        sim.stop()
        for b in bridges:
            b.close()
