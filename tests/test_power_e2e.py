"""The capacity tariff and the charge modes end to end: a real broker, the cloud simulator and the
service (in this process, so that its wall clock can be moved to a period's end), driven over MQTT.

The meter payloads are plain amps per phase, as a dsmr-reader `current_l1` topic sends them; a
negative current is export, as the P1 meters that sign currents report it."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.e2e import MovableWall, Probe, feed_meter, response_for, topic, wait_online, wait_until

pytestmark = pytest.mark.slow

STOCKHOLM = ZoneInfo("Europe/Stockholm")


WALL = MovableWall(datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM))
BRIDGE_IN_PROCESS = lambda: {"wall_clock": WALL}  # noqa: E731 - the fixture calls it for each bridge
BRIDGE_DEFAULTS = {
    "BALANCER_RAISE_HOLD_S": "1",
    "BALANCER_MIN_COMMAND_INTERVAL_S": "0",
    "BALANCER_STALE_AFTER_S": "5",
    "TZ": "Europe/Stockholm",
    "PV_WINDOW_S": "2",
    "PV_ENABLE_DELAY_S": "2",
    "PV_DISABLE_DELAY_S": "2",
    "HA_DISCOVERY": "false",
}


@pytest.fixture
def base() -> str:
    return f"ca-power-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def probe(broker, base):
    """The bridge's base topic only (the bridges here run in this process): a probe of `#` would
    share the process's time with the service while it reads every retained message earlier
    tests left on the shared broker."""
    p = Probe(broker.host, broker.port, subscribe=f"{base}/#")
    yield p
    p.close()


def feed_for(probe: Probe, env: dict, amps: float, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        feed_meter(probe, env, amps, amps, amps)
        time.sleep(0.25)


def test_a_limit_set_over_mqtt_holds_across_a_restart(start_bridge, probe, base, tmp_path):
    state = tmp_path / "state"
    bridge, env = start_bridge(state_dir=state, MQTT_BASE_TOPIC=base)
    wait_online(probe, env, bridge)
    probe.wait_value(topic(env, "capacity/limit_kw"), "0")  # CAPACITY_LIMIT_KW unset: off
    since = time.monotonic()
    probe.publish(topic(env, "capacity/limit_kw/set"), "4.5")
    assert response_for(probe, env, topic(env, "capacity/limit_kw/set"), since)["status"] == "ok"
    probe.wait_value(topic(env, "capacity/limit_kw"), "4.5", since=since)
    # No meter reading yet: the guard is on and says so, not "unset".
    waiting = probe.wait_json(topic(env, "capacity/state"), lambda s: s.get("limit_kw") == 4.5, since=since)
    assert "4.5 kW: waiting for the meter" in waiting["reason"], waiting
    refused_at = time.monotonic()
    probe.publish(topic(env, "capacity/limit_kw/set"), "-3")
    answer = response_for(probe, env, topic(env, "capacity/limit_kw/set"), refused_at)
    assert answer["status"] == "error" and "0 (off) or from 0.5" in answer["error"]
    # Below the smallest limit that means anything: refused with an answer, not shown as 0 ("off").
    tiny_at = time.monotonic()
    probe.publish(topic(env, "capacity/limit_kw/set"), "0.0001")
    answer = response_for(probe, env, topic(env, "capacity/limit_kw/set"), tiny_at)
    assert answer["status"] == "error" and "0 (off) or from 0.5 to 1000 kW; got 0.0001" in answer["error"]
    probe.wait_value(topic(env, "capacity/limit_kw"), "4.5", since=tiny_at)  # shown again, unchanged
    bridge.terminate()
    restarted_at = time.monotonic()
    bridge2, _ = start_bridge(env=env)
    wait_online(probe, env, bridge2, since=restarted_at)
    probe.wait_value(topic(env, "capacity/limit_kw"), "4.5", since=restarted_at)
    state_json = probe.wait_json(topic(env, "capacity/state"), lambda s: s.get("limit_kw") == 4.5,
                                 since=restarted_at)
    assert "reason" in state_json


@pytest.fixture
def no_car(sim):
    """The simulator's car unplugged: the meter's import is the house's own load."""
    sim.connector(1).car_plugged = False
    yield
    sim.connector(1).car_plugged = True


def test_a_period_boundary_resets_the_average_and_the_months_peaks_persist(start_bridge, probe, base, tmp_path,
                                                                           no_car):
    WALL.move_to(datetime(2027, 1, 12, 16, 59, 45, tzinfo=STOCKHOLM))
    bridge, env = start_bridge(state_dir=tmp_path / "state", CAPACITY_LIMIT_KW="5", MQTT_BASE_TOPIC=base)
    wait_online(probe, env, bridge)
    # 10 A on each phase at 230 V: 6.9 kW until 17:00, then 2 A: 1.38 kW. The hour's 59 minutes
    # not seen count at the house's own load: 6.9 kW, no car drawing.
    feed_for(probe, env, 10.0, 3)
    probe.wait_for(topic(env, "capacity/period_kw"), lambda p: float(p) > 6.0, timeout=20)
    guessed = probe.wait_json(topic(env, "capacity/state"), lambda s: s.get("period_estimated_s", 0) > 3000)
    assert "not seen, counted at the house's own load" in guessed["reason"]
    wait_until(lambda: WALL() >= datetime(2027, 1, 12, 17, 0, 1, tzinfo=STOCKHOLM), 30, "17:00", step=0.2)
    since = time.monotonic()
    feed_for(probe, env, 2.0, 3)
    # The new hour's average: the 1.38 kW of now, not the 6.9 kW of the hour before.
    state = probe.wait_json(topic(env, "capacity/state"),
                            lambda s: s.get("period_start", "").startswith("2027-01-12T17:00")
                            and s["period_kw"] < 2.0, timeout=20, since=since)
    assert state["month_peaks"][0]["kw"] > 1.0
    peaks = json.loads(probe.wait_for(topic(env, "capacity/month_peaks"), lambda p: p != b"[]", since=since))
    assert len(peaks) == 1 and peaks[0]["start"].startswith("2027-01-12T16:00") and peaks[0]["estimated"]
    bridge.terminate()
    restarted_at = time.monotonic()
    bridge2, _ = start_bridge(env=env)
    wait_online(probe, env, bridge2, since=restarted_at)
    feed_for(probe, env, 2.0, 1)
    again = json.loads(probe.wait_for(topic(env, "capacity/month_peaks"), lambda p: p != b"[]",
                                      since=restarted_at, timeout=20))
    assert again == peaks
    # Set to 0 over MQTT while CAPACITY_LIMIT_KW sets 5: the state says which one holds.
    since = time.monotonic()
    probe.publish(topic(env, "capacity/limit_kw/set"), "0")
    off = probe.wait_json(topic(env, "capacity/state"), lambda s: s.get("active") is False and s["limit_kw"] is None,
                          since=since)
    assert "set to 0 over MQTT (CAPACITY_LIMIT_KW=5 is not used)" in off["reason"], off


def test_a_pv_car_starts_with_the_surplus_and_stops_without_it(start_bridge, probe, base, sim):
    WALL.move_to(datetime(2027, 4, 20, 12, 0, tzinfo=STOCKHOLM))
    # A car the surplus paused waits out the minimum pause like any other: short here, so that the
    # surplus's start is what is timed.
    bridge, env = start_bridge(MQTT_BASE_TOPIC=base, BALANCER_MIN_PAUSE_S="3")
    wait_online(probe, env, bridge)
    cp = sim.chargepoint_id
    probe.wait_json(topic(env, "bridge/info"), lambda i: i["chargepoint_id"] == cp)
    probe.wait_value(topic(env, f"charger/{cp}/1/charge_mode"), "fast")
    since = time.monotonic()
    probe.publish(topic(env, f"charger/{cp}/1/charge_mode/set"), "pv")
    assert response_for(probe, env, topic(env, f"charger/{cp}/1/charge_mode/set"), since)["status"] == "ok"
    probe.wait_value(topic(env, f"charger/{cp}/1/charge_mode"), "pv", since=since)
    # No surplus: the car is paused.
    feed_for(probe, env, 3.0, 1)
    wait_until(lambda: (feed_meter(probe, env, 3, 3, 3) or True) and sim.connector(1).max_current == 0, 20,
               "the pv car paused without surplus", step=0.3)
    # 9 A of export on each phase: 6.2 kW, above the 4.1 kW a three-phase car needs.
    wait_until(lambda: (feed_meter(probe, env, -9, -9, -9) or True) and sim.connector(1).max_current >= 6, 30,
               "the pv car started with the surplus", step=0.3)
    state = json.loads(probe.wait_for(topic(env, "balancer/state"), lambda p: b"pv:" in p))
    assert "surplus" in state["reason"]
    # The surplus gone: after PV_DISABLE_DELAY_S the car stops.
    wait_until(lambda: (feed_meter(probe, env, 4, 4, 4) or True) and sim.connector(1).max_current == 0, 30,
               "the pv car stopped without surplus", step=0.3)
    assert all(r.valid for r in sim.requests), [r.error for r in sim.requests if not r.valid]


def test_the_house_power_topic_drives_the_capacity_guard_and_the_currents_stand_in_when_it_stops(
        start_bridge, probe, base, tmp_path):
    # The whole house's power as HomeWizard's local API v1 (`/api/v1/data`) documents it,
    # re-published on MQTT as users do from Node-RED: `active_power_w`, import positive.
    WALL.move_to(datetime(2027, 1, 12, 18, 0, tzinfo=STOCKHOLM))
    house = f"homewizard-{tmp_path.name[-12:]}/p1"
    bridge, env = start_bridge(state_dir=tmp_path / "state", CAPACITY_LIMIT_KW="5",
                               P1_POWER_TOPIC=house, P1_POWER_JSON_PATH="active_power_w", MQTT_BASE_TOPIC=base)
    wait_online(probe, env, bridge)
    since = time.monotonic()

    def feed(total_w: float | None) -> bool:
        feed_meter(probe, env, 1, 1, 1)  # unsigned whole amps: 0.69 kW, far below the house's 4 kW
        if total_w is not None:
            probe.publish(house, json.dumps({"wifi_strength": 78, "active_tariff": 2,
                                             "active_power_w": total_w, "active_power_l1_w": 1400.0}))
        return True

    # 4 kW from the house power topic, not the 0.69 kW the currents give.
    wait_until(lambda: feed(4000.0) and float(probe.latest.get(topic(env, "capacity/period_kw"), b"0")) > 3.5,
               30, "capacity/period_kw from the house power topic", step=0.25)
    state = probe.wait_json(topic(env, "capacity/state"), lambda s: s.get("house_power_from") == "P1_POWER_TOPIC",
                            since=since, timeout=20)
    assert state["period_kw"] > 3.5
    # The house power falls silent: past BALANCER_STALE_AFTER_S the currents stand in.
    stopped = time.monotonic()
    wait_until(lambda: feed(None) and time.monotonic() - stopped > 6, 30, "the house power stale", step=0.25)
    state = probe.wait_json(topic(env, "capacity/state"),
                            lambda s: s.get("house_power_from") == "currents x P1_VOLTAGE", since=stopped,
                            timeout=20)
    assert state["projected_kw"] < 1.5  # 0.69 kW for the rest of the hour


def test_the_meter_s_import_register_counts_the_minutes_a_restart_did_not_see(start_bridge, probe, base, tmp_path,
                                                                             no_car):
    """The register at the period's start is kept in capacity.json: after 13 minutes down, the
    period's energy is the register's count, not a guess. The register is a plain kWh number on its
    own topic, as dsmr-reader's split topic `dsmr/reading/electricity_delivered_1` sends it."""
    register = f"{base}-p1/electricity_delivered_1"
    # The guard must be running before 17:00 to anchor the register there: 15 s for the bridge to
    # come online, also on a loaded machine.
    WALL.move_to(datetime(2027, 1, 12, 16, 59, 45, tzinfo=STOCKHOLM))
    bridge, env = start_bridge(state_dir=tmp_path / "state", CAPACITY_LIMIT_KW="5", MQTT_BASE_TOPIC=base,
                               P1_ENERGY_IMPORT_TOPIC=register)
    wait_online(probe, env, bridge)
    kwh = 4321.0

    def feed() -> bool:
        nonlocal kwh
        kwh += 0.0004  # 1.38 kW for a quarter of a second
        probe.publish(register, f"{kwh:.4f}")
        feed_meter(probe, env, 2, 2, 2)
        return True

    wait_until(lambda: feed() and WALL() >= datetime(2027, 1, 12, 17, 0, 4, tzinfo=STOCKHOLM), 45, "17:00", step=0.25)
    saved = tmp_path / "state" / "capacity.json"

    def anchored() -> bool:  # the register at 17:00 is in capacity.json
        feed()
        try:
            state = json.loads(saved.read_text())
        except (OSError, ValueError):
            return False
        return state.get("period_start", "").startswith("2027-01-12T17:00") and bool(state["period_register_start_kwh"])

    wait_until(anchored, 60, "the register at 17:00 saved", step=0.25)
    bridge.terminate()
    # 13 minutes down while a car drew 11 kW: 3 kWh more on the register.
    WALL.move_to(datetime(2027, 1, 12, 17, 13, 0, tzinfo=STOCKHOLM))
    kwh += 3.0
    restarted_at = time.monotonic()
    bridge2, _ = start_bridge(env=env)
    wait_online(probe, env, bridge2, since=restarted_at)
    state = None

    def exact() -> bool:
        nonlocal state
        feed()
        raw = probe.latest.get(topic(env, "capacity/state"))
        state = json.loads(raw) if raw else None
        return bool(state and state.get("period_start", "").startswith("2027-01-12T17:00")
                    and state.get("period_estimated_s") == 0 and state["period_kw"] > 10)

    wait_until(exact, 30, "the period counted from the register", step=0.25)
    assert state["period_kw"] == pytest.approx(3.0 / (13 / 60), rel=0.05), state
