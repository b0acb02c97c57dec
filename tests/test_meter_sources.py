"""Real meter sources through the real broker and the running service: the
shapes the upstream projects publish, partial and retained messages, signed
per-phase power, and readings no installation can carry.

Each test says where its payload shape comes from. Bridges are shared within a
test where the source allows, and the cloud simulator within the module.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.e2e import Probe, max_current_writes, plugged_in_sim, probing, topic, wait_online, wait_until

# homey goes to full power as soon as every phase is live, which keeps the checks short.
QUICK = {"BALANCER_STRATEGY": "homey", "BALANCER_MIN_COMMAND_INTERVAL_S": "0", "BALANCER_RAISE_HOLD_S": "1"}


# Each test names its meter preset (start_module_bridge(P1_PRESET=...)), not P1_TOPIC_L1..L3.
BRIDGE_DEFAULTS = {"P1_TOPIC_L1": "", "P1_TOPIC_L2": "", "P1_TOPIC_L3": "", **QUICK}


@pytest.fixture(scope="module")
def sim():
    """One simulator for the module's bridges (start_module_bridge)."""
    yield from plugged_in_sim()


@pytest.fixture(scope="module")
def probe(broker):
    yield from probing(broker)


def number(probe: Probe, env: dict, name: str) -> float:
    return float(probe.latest[topic(env, name)])


def wait_number(probe: Probe, env: dict, name: str, expected: float, since: float, tol: float = 0.006,
                timeout: float = 5) -> None:
    probe.wait_for(topic(env, name), lambda p: abs(float(p) - expected) <= tol, timeout=timeout, since=since)


def health(probe: Probe, env: dict, since: float, predicate=lambda h: True, timeout: float = 15) -> dict:
    return probe.wait_json(topic(env, "bridge/health"), predicate, since=since, timeout=timeout)


def invalid_count(probe: Probe, env: dict) -> int:
    """The count in the latest health message (published every 10 s; the tests send garbage only on purpose)."""
    return json.loads(probe.latest[topic(env, "bridge/health")])["invalid_meter_payloads"]


# ---- ESPHome dsmr: one topic per value, a DSMR 5 telegram every second -------------------------------


@pytest.fixture(scope="module")
def esphome(start_module_bridge, probe):
    """A bridge on the esphome-dsmr preset. Topics are ESPHome's `<node>/sensor/<name>/state` with the
    SlimmeLezer's sensor names (zuidwijk/dsmr slimmelezer.yaml: "Current Phase 1", "Power Consumed
    Phase 1", "Power Produced Phase 1", "Voltage Phase 1"; kW with three decimals, V, whole amps)."""
    node = f"sl-{uuid.uuid4().hex[:6]}"
    bridge, env = start_module_bridge(P1_PRESET="esphome-dsmr", P1_DEVICE=node)
    wait_online(probe, env, bridge)
    health(probe, env, None, lambda h: h["cloud"] == "ok")
    return bridge, env, node


def telegram(probe: Probe, node: str, phase: int, amps: str, delivered_kw: str, returned_kw: str, volts: str) -> None:
    """One phase of a DSMR telegram as ESPHome publishes it: 31.7.0, 21.7.0, 22.7.0, 32.7.0."""
    for name, value in ((f"voltage_phase_{phase}", volts), (f"power_produced_phase_{phase}", returned_kw),
                        (f"power_consumed_phase_{phase}", delivered_kw), (f"current_phase_{phase}", amps)):
        probe.publish(f"{node}/sensor/{name}/state", value)


def test_telegram_power_and_voltage_give_2_17_a_where_the_current_says_2(esphome, probe, sim):
    bridge, env, node = esphome
    t = time.monotonic()
    # 1-0:31.7.0(002*A) 1-0:21.7.0(00.500*kW) 1-0:22.7.0(00.000*kW) 1-0:32.7.0(230.4*V)
    telegram(probe, node, 1, "2", "0.500", "0.000", "230.4")
    telegram(probe, node, 2, "1", "0.230", "0.000", "230.0")
    telegram(probe, node, 3, "0", "0.000", "0.000", "230.0")
    wait_number(probe, env, "meter/current_l1", 2.17, since=t)
    wait_number(probe, env, "meter/power_l1", 500, since=t, tol=0.01)
    wait_number(probe, env, "meter/current_l2", 1.0, since=t)
    # the balancer decides on the refined value, every phase live
    probe.wait_json(topic(env, "balancer/state"), lambda s: not s["meter_stale"]
                    and abs(s["phase_currents"][0] - 2.17) < 0.01, since=t)
    wait_until(lambda: sim.connector(1).max_current == 16, 10, "full power with a live meter")


def test_a_current_field_above_power_over_voltage_wins(esphome, probe):
    bridge, env, node = esphome
    t = time.monotonic()
    # A motor at power factor 0.65: the meter's 6 A against 0.897 kW at 230 V (3.9 A)
    telegram(probe, node, 2, "6", "0.897", "0.000", "230.0")
    wait_number(probe, env, "meter/current_l2", 6.0, since=t)
    wait_number(probe, env, "meter/power_l2", 897, since=t, tol=0.01)


def test_export_on_a_phase_gives_a_negative_current(esphome, probe):
    bridge, env, node = esphome
    t = time.monotonic()
    # Solar on L3: 31.7.0 is unsigned (005*A); 22.7.0 says 1.150 kW returned
    telegram(probe, node, 3, "5", "0.000", "1.150", "230.0")
    wait_number(probe, env, "meter/current_l3", -5.0, since=t)
    wait_number(probe, env, "meter/power_l3", -1150, since=t, tol=0.01)


@pytest.mark.slow
def test_a_power_in_w_sent_as_amps_is_ignored_and_counted_not_a_pause(esphome, probe, sim):
    bridge, env, node = esphome
    telegram(probe, node, 1, "2", "0.500", "0.000", "230.4")
    telegram(probe, node, 2, "1", "0.230", "0.000", "230.0")
    telegram(probe, node, 3, "0", "0.000", "0.000", "230.0")
    wait_until(lambda: sim.connector(1).max_current == 16, 10, "full power before the bad reading")
    before = invalid_count(probe, env)
    t = time.monotonic()
    # 920 W published as amps on the current topic (a mis-set ESPHome filter): 4 x 25 A is the bound
    probe.publish(f"{node}/sensor/current_phase_1/state", "920")
    # a power beyond the bound is refused the same way: 30 kW on one phase is 130 A
    probe.publish(f"{node}/sensor/power_consumed_phase_1/state", "30.000")
    # The meter speaks on (a telegram a second) while health (every 10 s) counts the bad readings:
    # a meter heard every second is stale after 8 s of silence, and that fail-safe is not under test.
    def telegrams_and_counted() -> bool:
        telegram(probe, node, 1, "2", "0.500", "0.000", "230.4")
        telegram(probe, node, 2, "1", "0.230", "0.000", "230.0")
        telegram(probe, node, 3, "0", "0.000", "0.000", "230.0")
        latest = probe.latest.get(topic(env, "bridge/health"))
        return latest is not None and json.loads(latest)["invalid_meter_payloads"] >= before + 2

    wait_until(telegrams_and_counted, 25, "the two bad readings counted in health", step=1.0)
    h = json.loads(probe.latest[topic(env, "bridge/health")])
    assert h["invalid_meter_payloads"] == before + 2
    assert probe.latest[topic(env, "balancer/paused")] == b"OFF"
    assert probe.latest[topic(env, "balancer/charge_at")] == b"16"
    assert number(probe, env, "meter/current_l1") == pytest.approx(2.17, abs=0.006)
    assert sim.connector(1).max_current == 16
    out = bridge.output()
    assert "920 A is at or beyond ±100 A (4 x BALANCER_FUSE_A)" in out and "30000 W (130 A) is at or beyond ±100 A" in out
    assert bridge.alive() and "Traceback" not in bridge.output()


# ---- dsmr-reader: retained split topics, change-only, a timestamp every telegram ------------------------

# dsmr-reader's split topics (github.com/dsmrreader/dsmr-reader/issues/1558 lists them as its MQTT client sends them:
# `dsmr/reading/phase_currently_delivered_l1 0.046`, `dsmr/reading/phase_voltage_l3 236.0`,
# `dsmr/reading/timestamp 2022-01-16T15:00:06Z`); it publishes them retained and re-sends an
# unchanged value only after its cache timeout (github.com/dsmrreader/dsmr-reader/issues/723).
DSMR_READER = {
    "dsmr/reading/phase_power_current_l1": "2",
    "dsmr/reading/phase_currently_delivered_l1": "0.500",
    "dsmr/reading/phase_currently_returned_l1": "0.000",
    "dsmr/reading/phase_voltage_l1": "230.4",
    "dsmr/reading/phase_power_current_l2": "5",
    "dsmr/reading/phase_currently_delivered_l2": "0.000",
    "dsmr/reading/phase_currently_returned_l2": "1.150",
    "dsmr/reading/phase_voltage_l2": "230.0",
    "dsmr/reading/phase_power_current_l3": "1",
    "dsmr/reading/phase_currently_delivered_l3": "0.230",
    "dsmr/reading/phase_currently_returned_l3": "0.000",
    "dsmr/reading/phase_voltage_l3": "230.0",
}
HEARTBEAT = "dsmr/reading/timestamp"


@pytest.mark.slow
def test_dsmr_reader_retained_values_with_a_live_heartbeat_survive_a_restart(start_module_bridge, probe, sim,
                                                                             tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("dsmr-state")
    fast = {"P1_PRESET": "dsmr-reader", "BALANCER_STALE_AFTER_S": "3"}
    beat = {"stop": False}

    def heartbeats(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            probe.publish(HEARTBEAT, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), retain=True)
            time.sleep(0.5)

    try:
        first, env = start_module_bridge(state_dir=state_dir, **fast)
        wait_online(probe, env, first)
        health(probe, env, None, lambda h: h["cloud"] == "ok")
        t = time.monotonic()
        for name, value in DSMR_READER.items():  # dsmr-reader publishes every value retained
            probe.publish(name, value, retain=True)
        heartbeats(1.0)
        wait_number(probe, env, "meter/current_l2", -5.0, since=t)
        assert first.terminate() == 0

        # The restart: nothing changes in the house, so dsmr-reader sends only its timestamp.
        second, env2 = start_module_bridge(state_dir=state_dir, MQTT_BASE_TOPIC=env["MQTT_BASE_TOPIC"],
                                  MQTT_CLIENT_ID=env["MQTT_CLIENT_ID"], **fast)
        t = time.monotonic()
        wait_online(probe, env2, second, since=t)
        heartbeats(6.0)  # twice BALANCER_STALE_AFTER_S, and no value message at all
        wait_number(probe, env2, "meter/current_l1", 2.17, since=t)
        wait_number(probe, env2, "meter/current_l2", -5.0, since=t)
        wait_number(probe, env2, "meter/current_l3", 1.0, since=t)
        wait_number(probe, env2, "meter/power_l2", -1150, since=t, tol=0.01)
        assert probe.latest[topic(env2, "meter/stale")] == b"OFF"
        state = json.loads(probe.latest[topic(env2, "balancer/state")])
        assert not state["meter_stale"] and "no reading yet" not in state["reason"]
        assert sim.connector(1).max_current == 16
        assert 6 not in max_current_writes(sim, since=t)  # the fail-safe was never written
        out = second.output()
        assert "retained values of L1, L2, L3 taken as current: the heartbeat on dsmr/reading/timestamp is live" in out
        # the change-only topics are quiet on purpose: no gap warning for them
        assert "apart, more than BALANCER_STALE_AFTER_S" not in out
    finally:
        for name in [*DSMR_READER, HEARTBEAT]:
            probe.publish(name, "", retain=True)


# ---- Tasmota SML: one key per immediate message, TelePeriod for the rest ---------------------------------


@pytest.mark.slow
def test_tasmota_one_key_messages_and_a_telemetry_gap_said_once(start_module_bridge, probe):
    device = f"p1-{uuid.uuid4().hex[:6]}"
    bridge, env = start_module_bridge(P1_PRESET="tasmota-sml", P1_DEVICE=device, BALANCER_STALE_AFTER_S="3")
    wait_online(probe, env, bridge)
    sensor = f"tele/{device}/SENSOR"

    def immediate(key: str, value: float) -> None:
        # SML_Immediate_MQTT in Tasmota's xsns_53_sml.ino: {"Time":...,"<prefix>":{"<name>":value}}
        probe.publish(sensor, json.dumps({"Time": time.strftime("%Y-%m-%dT%H:%M:%S"), "SML": {key: value}}))

    t = time.monotonic()
    immediate("current_l1", 4.5)
    immediate("current_l2", 0.75)
    immediate("current_l3", 1.25)
    wait_number(probe, env, "meter/current_l1", 4.5, since=t)
    wait_number(probe, env, "meter/current_l2", 0.75, since=t)
    wait_number(probe, env, "meter/current_l3", 1.25, since=t)
    # The bridge may still be in its start-up wait for the meter (never stale), so wait for a
    # decision made on the readings rather than for `meter/stale` to change.
    probe.wait_json(topic(env, "balancer/state"),
                    lambda s: not s["meter_stale"] and not s["waiting_for_meter"], since=t)
    t = time.monotonic()
    immediate("current_l2", 3.0)  # one phase changes, the others keep their values
    wait_number(probe, env, "meter/current_l2", 3.0, since=t)
    assert number(probe, env, "meter/current_l1") == 4.5
    # An immediate value the bridge does not read is neither a reading nor garbage.
    before = invalid_count(probe, env)
    immediate("Total_in", 12345.678)

    # The default TelePeriod (300 s) against a 3 s stale limit: silence, then one SENSOR message.
    time.sleep(4)
    full = {"Time": "2024-01-01T10:05:00", "SML": {"current_l1": 4.5, "current_l2": 3.0, "current_l3": 1.25,
                                                     "Total_in": 12345.678}}
    probe.publish(sensor, json.dumps(full))
    wait_until(lambda: "apart, more than BALANCER_STALE_AFTER_S (3 s)" in bridge.output(), 5, "the gap warning")
    time.sleep(4)
    t = time.monotonic()
    probe.publish(sensor, json.dumps(full))
    probe.wait_value(topic(env, "meter/stale"), "OFF", since=t)
    assert bridge.output().count("apart, more than BALANCER_STALE_AFTER_S") == 1
    assert "TelePeriod" in bridge.output()
    assert health(probe, env, t)["invalid_meter_payloads"] == before


# ---- Shelly Pro 3EM: full status, then NotifyStatus with only what changed -------------------------------


@pytest.mark.slow
def test_shelly_pro_3em_notify_status_with_one_phase(start_module_bridge, probe):
    device = f"shellypro3em-{uuid.uuid4().hex[:6]}"
    bridge, env = start_module_bridge(P1_PRESET="shelly-pro-3em", P1_DEVICE=device)
    wait_online(probe, env, bridge)
    t = time.monotonic()
    # <id>/status/em:0: the EM component's whole status (Shelly Gen2 API documentation, EM.GetStatus)
    probe.publish(f"{device}/status/em:0", json.dumps({
        "id": 0, "a_current": 3.1, "a_voltage": 230.0, "a_act_power": 690.0, "a_aprt_power": 713.0, "a_pf": 0.97,
        "b_current": 1.0, "b_voltage": 231.0, "b_act_power": 231.0, "b_aprt_power": 231.0, "b_pf": 1.0,
        "c_current": 2.2, "c_voltage": 229.0, "c_act_power": -460.0, "c_aprt_power": 503.8, "c_pf": -0.91,
        "n_current": None, "total_current": 6.3, "total_act_power": 461.0, "total_aprt_power": 1447.8,
        "user_calibrated_phase": []}))
    wait_number(probe, env, "meter/current_l1", 3.1, since=t)
    wait_number(probe, env, "meter/current_l3", -2.2, since=t)  # exporting: the power's sign
    wait_number(probe, env, "meter/power", 461, since=t, tol=0.01)
    before = invalid_count(probe, env)
    t = time.monotonic()
    # NotifyStatus on <id>/events/rpc carries only the changed fields (Shelly Gen2 API documentation,
    # Notifications: "some or all unchanged attributes ... may not be visible")
    probe.publish(f"{device}/events/rpc", json.dumps({
        "src": device, "dst": f"{device}/events", "method": "NotifyStatus",
        "params": {"ts": 1732800000.12, "em:0": {"id": 0, "b_current": 9.8, "b_act_power": 2254.0}}}))
    wait_number(probe, env, "meter/current_l2", 9.8, since=t)
    wait_number(probe, env, "meter/power_l2", 2254, since=t, tol=0.01)
    assert number(probe, env, "meter/current_l1") == 3.1
    # Another component's NotifyStatus on the same topic is not garbage.
    probe.publish(f"{device}/events/rpc", json.dumps({
        "src": device, "dst": f"{device}/events", "method": "NotifyStatus",
        "params": {"ts": 1732800001.0, "sys": {"available_updates": {}}}}))
    t = time.monotonic()
    probe.publish(f"{device}/events/rpc", json.dumps({
        "src": device, "dst": f"{device}/events", "method": "NotifyStatus",
        "params": {"ts": 1732800002.0, "em:0": {"id": 0, "a_current": 3.3}}}))
    wait_number(probe, env, "meter/current_l1", 3.3, since=t)
    assert health(probe, env, t)["invalid_meter_payloads"] == before
    assert probe.latest[topic(env, "meter/stale")] == b"OFF"
    assert bridge.alive() and "Traceback" not in bridge.output()


# ---- HomeWizard on a single-phase connection: no _l2/_l3 fields at all -----------------------------------


@pytest.mark.slow
def test_homewizard_on_a_single_phase_connection_needs_no_fail_safe_and_l1_silence_still_gives_it(
        start_module_bridge, probe, sim):
    device = f"hw-{uuid.uuid4().hex[:6]}"
    # A charge point of its own: the module's other bridges still run and write to theirs.
    cp = f"ONEPHASE-{device}"
    charger = sim.add_chargepoint(cp).connectors[1]
    charger.car_plugged, charger.car_max_a = True, 16
    bridge, env = start_module_bridge(P1_PRESET="homewizard", P1_DEVICE=device, P1_PHASES="1", BALANCER_STALE_AFTER_S="3",
                             CHARGEAMPS_CHARGEPOINT_ID=cp)
    wait_online(probe, env, bridge)
    health(probe, env, None, lambda h: h["cloud"] == "ok")
    # HomeWizard's API documentation, "Recent Measurement (/api/v1/data)", example "HWE-P1 (1-phase,
    # no gas)": the _l1 fields only, l2/l3 left out (its trailing comma dropped, active_current_l1_a from
    # the documented parameters added, import instead of export). 28 A on L1 is 4 A over MaxA 24.
    data = json.dumps({
        "smr_version": 50, "meter_model": "ISKRA  2M550T-101", "wifi_ssid": "My Wi-Fi", "wifi_strength": 100,
        "total_power_import_t1_kwh": 10830.511, "total_power_import_t2_kwh": 2948.827,
        "total_power_export_t1_kwh": 1285.951, "total_power_export_t2_kwh": 2876.51,
        "active_power_w": 6440, "active_power_l1_w": 6440, "active_current_l1_a": 28})
    t = time.monotonic()
    probe.publish(f"homewizard/{device}", data)
    wait_number(probe, env, "meter/current_l1", 28.0, since=t)
    wait_number(probe, env, "meter/current_l2", 0.0, since=t)
    wait_number(probe, env, "meter/current_l3", 0.0, since=t)
    wait_number(probe, env, "meter/power_l2", 0.0, since=t)

    def meter_speaks_and_charger_is_at(amps: int) -> bool:
        probe.publish(f"homewizard/{device}", data)  # a P1 meter sends every second or so
        return charger.max_current == amps

    # homey: L1's 4 A over MaxA comes off the 16 A default; L2 and L3 take nothing.
    wait_until(lambda: meter_speaks_and_charger_is_at(12), 10, "ChargeAt 12 A on the charger", step=0.5)
    assert float(probe.latest[topic(env, "balancer/charge_at")]) == 12
    state = json.loads(probe.latest[topic(env, "balancer/state")])
    assert not state["meter_stale"] and "no reading yet" not in state["reason"]
    writes = [w[4] for w in list(sim.writes) if w[1] == cp and w[3] == "maxCurrent" and w[0] >= t]
    assert 6 not in writes  # the fail-safe was never written
    # L1 falls silent: L2 and L3 have nothing of their own to keep the meter live.
    t = time.monotonic()
    probe.wait_value(topic(env, "meter/stale"), "ON", since=t, timeout=8)
    wait_until(lambda: charger.max_current == 6, 5, "the fail-safe on the charger")
    assert bridge.alive() and "Traceback" not in bridge.output()
