"""`chargeamps-bridge run` end to end: a real broker, the cloud simulator, the
service as a subprocess, driven and watched over MQTT as a user would."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from bridge.sim.cloud import CloudSimulator
from tests.e2e import (
    BridgeProcess, Probe, bridge_env, feed_meter, response_for, topic, wait_online, wait_until,
)

FAST = {
    "BALANCER_RAISE_HOLD_S": "1",
    "BALANCER_MIN_COMMAND_INTERVAL_S": "0",
    "BALANCER_STALE_AFTER_S": "3",
}
BRIDGE_DEFAULTS = FAST


def charge_steadily(probe: Probe, env: dict, sim: CloudSimulator, amps_house: float = 5.0,
                    until_current: float = 16, timeout: float = 20) -> None:
    """Feed a quiet house until the balancer has raised the charger to full power."""
    deadline = time.monotonic() + timeout
    conn = sim.connector(1)
    while time.monotonic() < deadline:
        feed_meter(probe, env, amps_house, amps_house, amps_house)
        if conn.max_current == until_current:
            return
        time.sleep(0.3)
    raise AssertionError(f"charger never reached {until_current} A (at {conn.max_current})")


def test_online_info_health_then_sigterm_publishes_offline_and_exits_0(start_bridge, probe, sim):
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    info = probe.wait_json(topic(env, "bridge/info"), lambda i: i["chargepoint_id"] is not None)
    assert info["chargepoint_id"] == sim.chargepoint_id
    assert info["connector_id"] == 1 and info["strategy"] == "adaptive"
    health = probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok")
    assert health["mqtt"] == "connected"
    probe.wait_value(topic(env, f"charger/{sim.chargepoint_id}/online"), "ON")
    since = time.monotonic()
    assert bridge.terminate() == 0
    probe.wait_value(topic(env, "bridge/state"), "offline", since=since)
    assert "Traceback" not in bridge.output()


def test_kill_9_leaves_the_last_will_offline(start_bridge, probe):
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    since = time.monotonic()
    bridge.kill()
    # The broker sends the will once it notices the dead connection (keepalive 30 s
    # at the most; a killed process resets its socket at once).
    probe.wait_value(topic(env, "bridge/state"), "offline", timeout=50, since=since)


def test_phase_above_max_a_cuts_the_charger_within_a_second(start_bridge, probe, sim):
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    charge_steadily(probe, env, sim)
    cp = sim.chargepoint_id
    since = time.monotonic()
    # House 14 A + car 16 A on L1: 30 A against MaxA 24 -> at most 10 A.
    feed_meter(probe, env, 30, 21, 21)
    probe.wait_for(topic(env, "balancer/charge_at"), lambda p: float(p) <= 10, timeout=2, since=since)
    wait_until(lambda: sim.connector(1).max_current <= 10, 2, "the charger cut to 10 A or less", step=0.02)
    probe.wait_for(topic(env, f"charger/{cp}/1/max_current"), lambda p: float(p) <= 10, since=since)
    state = probe.wait_json(topic(env, "balancer/state"), lambda s: s["charge_at"] <= 10, since=since)
    assert "L1" in state["reason"]
    assert all(r.valid for r in sim.requests), [r.error for r in sim.requests if not r.valid]


@pytest.mark.slow
def test_commands_apply_refuse_answer_and_snap_back(start_bridge, probe, sim):
    # mode Off during a session reaches a charger on CAPI; OCPP refuses it (test_ocpp_firmware.py).
    sim.charge_points[sim.chargepoint_id].firmware = "capi"
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    cp = sim.chargepoint_id
    probe.wait_value(topic(env, f"charger/{cp}/online"), "ON")

    t = time.monotonic()
    probe.publish(topic(env, "balancer/max_a/set"), "20")
    assert response_for(probe, env, topic(env, "balancer/max_a/set"), t)["status"] == "ok"
    probe.wait_value(topic(env, "balancer/max_a"), "20", since=t)

    t = time.monotonic()
    probe.publish(topic(env, "balancer/max_a/set"), "26")  # above the 25 A fuse
    answer = response_for(probe, env, topic(env, "balancer/max_a/set"), t)
    assert answer["status"] == "error" and "25" in answer["error"]
    probe.wait_value(topic(env, "balancer/max_a"), "20", since=t)  # snaps back

    t = time.monotonic()
    probe.publish(topic(env, "balancer/default_current/set"), '{"value": 12}')
    assert response_for(probe, env, topic(env, "balancer/default_current/set"), t)["value"] == 12
    probe.wait_value(topic(env, "balancer/default_current"), "12", since=t)

    t = time.monotonic()
    probe.publish(topic(env, "balancer/default_current/set"), "20")  # installation current is 16
    answer = response_for(probe, env, topic(env, "balancer/default_current/set"), t)
    assert answer["status"] == "error" and "16" in answer["error"]

    t = time.monotonic()
    probe.publish(topic(env, f"charger/{cp}/1/max_current/set"), "8")
    answer = response_for(probe, env, topic(env, f"charger/{cp}/1/max_current/set"), t)
    assert answer["status"] == "error" and "default_current" in answer["error"]

    t = time.monotonic()
    probe.publish(topic(env, "balancer/enabled/set"), "OFF")
    assert response_for(probe, env, topic(env, "balancer/enabled/set"), t)["status"] == "ok"
    probe.wait_value(topic(env, "balancer/enabled"), "OFF", since=t)

    t = time.monotonic()
    probe.publish(topic(env, f"charger/{cp}/1/max_current/set"), "8")
    assert response_for(probe, env, topic(env, f"charger/{cp}/1/max_current/set"), t)["status"] == "ok"
    assert sim.connector(1).max_current == 8
    probe.wait_value(topic(env, f"charger/{cp}/1/max_current"), "8", since=t)

    t = time.monotonic()
    probe.publish(topic(env, f"charger/{cp}/1/mode/set"), "off", response_topic=topic(env, "bridge/response/test"),
                  correlation=b"abc")
    assert response_for(probe, env, topic(env, f"charger/{cp}/1/mode/set"), t)["value"] == "Off"
    assert sim.connector(1).mode == "Off"
    probe.wait_value(topic(env, f"charger/{cp}/1/mode"), "Off", since=t)
    # The MQTT v5 response topic gets the same answer.
    probe.wait_json(topic(env, "bridge/response/test"), lambda r: r["value"] == "Off", since=t)

    t = time.monotonic()
    probe.publish(topic(env, f"charger/{cp}/1/mode/set"), "sideways")
    assert response_for(probe, env, topic(env, f"charger/{cp}/1/mode/set"), t)["status"] == "error"

    reboots = sim.charge_points[cp].reboots
    t = time.monotonic()
    probe.publish(topic(env, f"charger/{cp}/reboot/set"), "PRESS")
    assert response_for(probe, env, topic(env, f"charger/{cp}/reboot/set"), t)["status"] == "ok"
    assert sim.charge_points[cp].reboots == reboots + 1

    t = time.monotonic()
    probe.publish(topic(env, "bridge/request/refresh"), "now")
    assert response_for(probe, env, topic(env, "bridge/request/refresh"), t)["status"] == "ok"

    t = time.monotonic()
    probe.publish(topic(env, "charger/other/1/mode/set"), "On")
    assert response_for(probe, env, topic(env, "charger/other/1/mode/set"), t)["status"] == "error"

    # A command topic no command has gets an answer naming the commands, and changes nothing.
    t = time.monotonic()
    for unknown in ("balancer/foo/set", "bridge/request/everything"):
        probe.publish(topic(env, unknown), "20")
        answer = response_for(probe, env, topic(env, unknown), t)
        assert answer["status"] == "error" and "unknown command topic" in answer["error"]
        assert "balancer/max_a/set" in answer["error"] and "capacity/limit_kw/set" in answer["error"]
    # Each command is answered once, although wide subscriptions bring every `/set` topic: the
    # answer to a later command comes after any second copy of the earlier ones would have.
    t_last = time.monotonic()
    probe.publish(topic(env, "balancer/max_a/set"), "21")
    response_for(probe, env, topic(env, "balancer/max_a/set"), t_last)
    answered = [json.loads(m[2])["topic"] for m in list(probe.messages)
                if m[0] >= t and m[1] == topic(env, "bridge/response")]
    assert sorted(answered) == sorted(topic(env, c) for c in
                                      ("balancer/foo/set", "bridge/request/everything", "balancer/max_a/set"))
    assert bridge.alive()
    assert all(r.valid for r in sim.requests), [r.error for r in sim.requests if not r.valid]


@pytest.mark.slow
def test_retained_command_is_never_applied(start_bridge, probe):
    base = f"ca-retained-{uuid.uuid4().hex[:6]}"
    # A retained MaxA command is already on the broker when the bridge subscribes.
    probe.publish(f"{base}/balancer/max_a/set", "10", retain=True)
    try:
        bridge, env = start_bridge(MQTT_BASE_TOPIC=base)
        wait_online(probe, env, bridge)
        probe.wait_value(topic(env, "balancer/max_a"), "24")
        # A later command is answered only after every message before it was handled.
        t = time.monotonic()
        probe.publish(topic(env, "balancer/enabled/set"), "ON")
        response_for(probe, env, topic(env, "balancer/enabled/set"), t)
        assert probe.latest[topic(env, "balancer/max_a")] == b"24"
        assert not [m for m in list(probe.messages) if m[1] == topic(env, "bridge/response")
                    and json.loads(m[2])["topic"].endswith("max_a/set")]
    finally:
        probe.publish(f"{base}/balancer/max_a/set", "", retain=True)  # clear it from the broker


@pytest.mark.slow
def test_garbage_on_every_input_topic_leaves_the_process_alive(start_bridge, probe, sim):
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    cp = sim.chargepoint_id
    garbage = [b"", b"abc", b"NaN", b"inf", b"1e308", b"-2000", b"{", b'{"value": "x"}', b"[[[[[[[[[[",
               b"\xff\xfe\x00", "\u2603".encode(), b"9" * 5000, b'{"value": ' * 200]
    inputs = [env["P1_TOPIC_L1"], env["P1_TOPIC_L2"], env["P1_TOPIC_L3"],
              topic(env, "balancer/max_a/set"), topic(env, "balancer/default_current/set"),
              topic(env, "balancer/enabled/set"), topic(env, f"charger/{cp}/1/max_current/set"),
              topic(env, f"charger/{cp}/1/mode/set")]
    t = time.monotonic()
    for top in inputs:
        for g in garbage:
            probe.publish(top, g)
    # Every command got an answer, and each said error.
    for top in inputs[3:]:
        answer = response_for(probe, env, top, t)
        assert answer["status"] == "error"
    health = probe.wait_json(topic(env, "bridge/health"), lambda h: h["invalid_meter_payloads"] >= 3 * len(garbage),
                             timeout=15, since=t)
    assert health["commands_refused"] >= 5 * len(garbage) - 5
    assert bridge.alive()
    probe.wait_value(topic(env, "balancer/max_a"), "24")
    assert "Traceback" not in bridge.output()


@pytest.mark.slow
def test_stale_meter_drops_to_failsafe_and_fresh_data_ends_it(start_bridge, probe, sim):
    bridge, env = start_bridge(BALANCER_STALE_AFTER_S="3", BALANCER_FAILSAFE_CURRENT="6")
    wait_online(probe, env, bridge)
    charge_steadily(probe, env, sim)
    probe.wait_value(topic(env, "meter/stale"), "OFF")
    last_feed = time.monotonic()
    probe.wait_value(topic(env, "meter/stale"), "ON", timeout=6, since=last_feed)
    went_stale = time.monotonic()
    # Within one second of the 3 s deadline.
    assert went_stale - last_feed <= 3 + 1.5
    # (On a loaded machine a late meter message may already have cut to 6 A before `last_feed`.)
    wait_until(lambda: probe.latest.get(topic(env, "balancer/charge_at")) == b"6", 10, "ChargeAt 6 A")
    wait_until(lambda: sim.connector(1).max_current == 6, 3, "the fail-safe 6 A on the charger")
    # While it stays stale the reason's countdown ("L1 silent 5 s") changes every second, its meaning
    # does not: the connector's retained reason topic is not sent again each second.
    quiet_from = time.monotonic()
    prefix = topic(env, "charger/")
    wait_until(lambda: time.monotonic() - quiet_from > 3.5, 5, "3.5 s of a stale meter")
    resent = [m for m in probe.messages if m[0] >= quiet_from and m[1].startswith(prefix) and m[1].endswith("/reason")]
    assert len(resent) <= 1, resent
    t = time.monotonic()
    feed_meter(probe, env, 5, 5, 5)
    probe.wait_value(topic(env, "meter/stale"), "OFF", since=t)


@pytest.mark.slow
def test_a_meter_silent_for_failsafe_pause_after_s_pauses_the_car_and_its_return_resumes_it(start_bridge, probe, sim):
    bridge, env = start_bridge(BALANCER_STALE_AFTER_S="2", BALANCER_FAILSAFE_PAUSE_AFTER_S="5",
                               BALANCER_MIN_PAUSE_S="300")
    wait_online(probe, env, bridge)
    charge_steadily(probe, env, sim)
    last_feed = time.monotonic()
    wait_until(lambda: sim.connector(1).max_current == 0, 20, "paused after 5 s of silence")
    assert time.monotonic() - last_feed >= 5  # (the fail-safe 6 A first, from 2 s)
    # The state topic follows the write: wait for the pause's reason to arrive.
    state = topic(env, "balancer/state")
    wait_until(lambda: "BALANCER_FAILSAFE_PAUSE_AFTER_S 5 s" in json.loads(probe.latest.get(state, "{}")).get("reason", ""),
               10, f"the silence pause's reason ({probe.latest.get(state)})")
    # The meter is back: no minimum pause (300 s) for a pause the silence made. The pause's write
    # settles for 15 s (nothing can show the car following while the meter is silent), so the
    # resume comes then; 20 s leaves a loaded machine room and is far from the 300 s pause.
    deadline = time.monotonic() + 20
    while sim.connector(1).max_current < 6 and time.monotonic() < deadline:
        feed_meter(probe, env, 5, 5, 5)
        time.sleep(0.3)
    assert sim.connector(1).max_current >= 6, probe.latest.get(topic(env, "balancer/state"))


@pytest.mark.slow
def test_runtime_settings_survive_a_restart(start_bridge, probe, sim, tmp_path):
    state = tmp_path / "persist"
    bridge, env = start_bridge(state_dir=state)
    wait_online(probe, env, bridge)
    t = time.monotonic()
    probe.publish(topic(env, "balancer/max_a/set"), "18.5")
    probe.publish(topic(env, "balancer/default_current/set"), "10")
    probe.publish(topic(env, "balancer/enabled/set"), "false")
    probe.wait_value(topic(env, "balancer/enabled"), "OFF", since=t)
    logins = sim.logins
    assert bridge.terminate() == 0

    bridge2, env2 = start_bridge(state_dir=state, MQTT_BASE_TOPIC=env["MQTT_BASE_TOPIC"],
                                 P1_TOPIC_L1=env["P1_TOPIC_L1"])
    t = time.monotonic()
    wait_online(probe, env2, bridge2)
    probe.wait_value(topic(env, "balancer/max_a"), "18.5", since=t)
    probe.wait_value(topic(env, "balancer/default_current"), "10", since=t)
    probe.wait_value(topic(env, "balancer/enabled"), "OFF", since=t)
    probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok", since=t)
    assert sim.logins == logins  # the stored tokens were reused: no new login


@pytest.mark.slow
def test_corrupt_state_file_is_set_aside_and_defaults_used(start_bridge, probe, tmp_path):
    state = tmp_path / "corrupt"
    state.mkdir()
    (state / "runtime.json").write_text("{not json")
    bridge, env = start_bridge(state_dir=state)
    wait_online(probe, env, bridge)
    probe.wait_value(topic(env, "balancer/max_a"), "24")
    assert list(state.glob("runtime.json.corrupt-*"))
    assert "corrupt" in bridge.output()


def test_invalid_configuration_exits_2_with_one_line(tmp_path, broker, sim):
    env = bridge_env(broker, sim, tmp_path / "s", BALANCER_MAX_A="30")
    bridge = BridgeProcess(env, tmp_path).start()
    assert bridge.proc.wait(20) == 2
    out = bridge.output()
    assert "BALANCER_MAX_A" in out and "Traceback" not in out
    bridge.close()


def test_discovery_is_published_and_sent_again_when_home_assistant_comes_online(start_bridge, probe, sim):
    prefix = f"ha-{uuid.uuid4().hex[:6]}"
    bridge, env = start_bridge(HA_DISCOVERY="true", HA_DISCOVERY_PREFIX=prefix)
    wait_online(probe, env, bridge)
    config_topic = f"{prefix}/number/{env['MQTT_BASE_TOPIC']}/max_a/config"
    first = probe.wait_json(config_topic, lambda c: "command_topic" in c)
    assert first["command_topic"] == topic(env, "balancer/max_a/set")
    assert first["availability"][0]["topic"] == topic(env, "bridge/state")
    assert first["device"]["identifiers"] == [f"chargeamps_{sim.chargepoint_id}"]
    since = time.monotonic()
    probe.publish(f"{prefix}/status", "online")
    again = probe.wait_json(config_topic, lambda c: "command_topic" in c, since=since)
    assert again == first
    probe.wait_value(topic(env, "balancer/max_a"), "24", since=since)  # the state again too


@pytest.mark.slow
def test_a_flood_of_charger_commands_never_floods_the_cloud(start_bridge, probe, sim):
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    cp = sim.chargepoint_id
    probe.wait_value(topic(env, f"charger/{cp}/online"), "ON")
    reboots = sim.charge_points[cp].reboots
    t = time.monotonic()
    for _ in range(30):
        probe.publish(topic(env, f"charger/{cp}/reboot/set"), "PRESS")
    def answers() -> list[dict]:
        return [json.loads(p) for ts, top, p, _ in list(probe.messages)
                if top == topic(env, "bridge/response") and ts >= t]

    wait_until(lambda: len(answers()) >= 30, 10, "an answer to every command")  # every command answered
    answers = answers()
    assert len(answers) == 30
    ok = [a for a in answers if a["status"] == "ok"]
    refused = [a for a in answers if a["status"] == "error"]
    assert len(ok) == 5 and sim.charge_points[cp].reboots == reboots + 5
    assert all("too many commands" in a["error"] for a in refused)
