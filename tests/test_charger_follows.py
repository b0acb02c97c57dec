"""What a real installation does to the bridge's side of the charger: a setting changed
outside the bridge, a restart, deliberate payloads, who sent a command, a hand-edited
runtime file, and an error that is over. Real broker, cloud simulator."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from bridge.service import CloudBackoff
from bridge.sim.cloud import CloudSimulator
from tests.e2e import (
    FAULT_FAST, InProcessBridge, Probe, bridge_env, feed_meter, max_current_writes, response_for, topic,
    wait_online, wait_until,
)

pytestmark = pytest.mark.slow

# homey charges at the default current as soon as the meter is live and the house is quiet.
BRIDGE_DEFAULTS = {**FAULT_FAST, "BALANCER_STRATEGY": "homey", "BALANCER_DEFAULT_CURRENT": "12"}


class QuietHouse:
    """A live P1 meter: 5 A on every phase, every 0.5 s."""

    def __init__(self, probe: Probe, env: dict) -> None:
        self.probe, self.env = probe, env
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            feed_meter(self.probe, self.env, 5, 5, 5)
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def refresh(probe: Probe, env: dict) -> dict:
    """Poll now; the answer also marks that the worker handled everything queued before."""
    t = time.monotonic()
    probe.publish(topic(env, "bridge/request/refresh"), "now")
    return response_for(probe, env, topic(env, "bridge/request/refresh"), t)


def health_after(probe: Probe, env: dict, since: float, predicate, timeout: float = 15) -> dict:
    return probe.wait_json(topic(env, "bridge/health"), predicate, since=since, timeout=timeout)


def in_process(broker, sim, tmp_path, **extra) -> tuple[InProcessBridge, dict, Probe]:
    """The service in the test process with a 1 s cloud backoff (production: 5 s doubling), and a
    probe of its base topic only: a probe of `#` would share the process's time with the service
    while it reads every retained message earlier tests left on the shared broker."""
    env = bridge_env(broker, sim, tmp_path / "state", **{**BRIDGE_DEFAULTS, **extra})
    probe = Probe(broker.host, broker.port, subscribe=f"{env['MQTT_BASE_TOPIC']}/#")
    try:
        return InProcessBridge(env, tmp_path, backoff=CloudBackoff(initial_s=1, max_s=2)).start(), env, probe
    except BaseException:
        probe.close()
        raise


# ---- the charger follows the balancer's decision ---------------------------------------

def test_a_setting_changed_outside_the_bridge_is_restored_and_counted(start_bridge, probe, sim):
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    house = QuietHouse(probe, env)
    try:
        wait_until(lambda: sim.connector(1).max_current == 12, 15, "the bridge's 12 A on the charger")

        # The Charge Amps app sets 16 A: cut back to 12 A at once.
        t = time.monotonic()
        sim.connector(1).max_current = 16
        refresh(probe, env)
        try:
            wait_until(lambda: sim.connector(1).max_current == 12, 15, "12 A restored")
        except AssertionError as e:
            raise AssertionError(f"{e}:\n{bridge.output()[-4000:]}") from None
        health = health_after(probe, env, t, lambda h: h["charger_overrides"] == 1)
        # 12 A; on a loaded machine a late meter message may make it the fail-safe 6 A first.
        assert re.fullmatch(r"charger set to 16 A outside the bridge: restored (12|6) A", health["last_override"])
        assert "charger set to 16 A outside the bridge" in bridge.output()

        # A reboot restores an old 6 A: raised again, paced like any raise (here: no pacing).
        t = time.monotonic()
        sim.connector(1).max_current = 6
        refresh(probe, env)
        wait_until(lambda: sim.connector(1).max_current == 12, 15, "12 A restored after 6 A")
        health = health_after(probe, env, t, lambda h: h["charger_overrides"] >= 2)
        assert health["last_override"] == "charger set to 6 A outside the bridge: restored 12 A"

        # The balancer off: the charger is left alone.
        t = time.monotonic()
        probe.publish(topic(env, "balancer/enabled/set"), "OFF")
        response_for(probe, env, topic(env, "balancer/enabled/set"), t)
        sim.connector(1).max_current = 16
        refresh(probe, env)
        refresh(probe, env)
        assert sim.connector(1).max_current == 16 and max_current_writes(sim, since=t) == []
        health = health_after(probe, env, t, lambda h: True)
        assert health["charger_overrides"] == 2
        assert all(r.valid for r in sim.requests), [r.error for r in sim.requests if not r.valid]
    finally:
        house.stop()


def test_a_restart_with_a_live_meter_writes_nothing_when_the_charger_is_right(broker, tmp_path):
    with CloudSimulator() as sim:
        sim.connector(1).car_plugged = True
        sim.connector(1).max_current = 12  # what the balancer wants: the default current, quiet house
        sim.down = True  # the cloud answers only after the meter has spoken
        env = bridge_env(broker, sim, tmp_path / "state", **BRIDGE_DEFAULTS)
        probe = Probe(broker.host, broker.port, subscribe=f"{env['MQTT_BASE_TOPIC']}/#")
        house = QuietHouse(probe, env)
        bridge = InProcessBridge(env, tmp_path, backoff=CloudBackoff(initial_s=1, max_s=2)).start()
        try:
            probe.wait_json(topic(env, "balancer/state"), lambda s: not s["meter_stale"] and s["charge_at"] == 12,
                            timeout=15)
            sim.down = False
            probe.wait_value(topic(env, f"charger/{sim.chargepoint_id}/online"), "ON", timeout=15)
            refresh(probe, env)
            assert max_current_writes(sim) == [], max_current_writes(sim)
            assert sim.connector(1).max_current == 12
        finally:
            house.stop()
            probe.close()
            bridge.close()


# ---- commands that act on the charger --------------------------------------------------

def started_with_charger(start_bridge, probe, sim) -> tuple:
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    probe.wait_value(topic(env, f"charger/{sim.chargepoint_id}/online"), "ON", timeout=15)
    return bridge, env


def send(probe: Probe, env: dict, command_topic: str, payload: str, **properties) -> dict:
    """Publish a command and return its answer."""
    t = time.monotonic()
    probe.publish(command_topic, payload, **properties)
    return response_for(probe, env, command_topic, t)


def test_reboot_needs_a_deliberate_payload_and_every_command_a_small_one(start_bridge, probe, sim):
    bridge, env = started_with_charger(start_bridge, probe, sim)
    cp = sim.chargepoint_id
    reboot = topic(env, f"charger/{cp}/reboot/set")
    reboots = sim.charge_points[cp].reboots
    # "" is how a retained message is cleared; the others are mistakes.
    for payload in ("", "   ", "yes", "1", "ON", "PRESSED"):
        answer = send(probe, env, reboot, payload)
        assert answer["status"] == "error" and "PRESS or reboot" in answer["error"], (payload, answer)
    # PRESS is what a Home Assistant button sends (its default payload_press).
    for payload in ("PRESS", "press", "reboot", "Reboot"):
        assert send(probe, env, reboot, payload)["status"] == "ok", payload
    assert sim.charge_points[cp].reboots == reboots + 4
    # A size limit on every command topic, also where the payload is not read.
    answer = send(probe, env, topic(env, "bridge/request/refresh"), "x" * 5000)
    assert answer["status"] == "error" and "payload too large" in answer["error"], answer


def test_commands_on_the_charger_are_logged_with_their_sender_and_outcome(start_bridge, probe, sim):
    bridge, env = started_with_charger(start_bridge, probe, sim)
    cp = sim.chargepoint_id
    mode = topic(env, f"charger/{cp}/1/mode/set")
    reboot = topic(env, f"charger/{cp}/reboot/set")
    current = topic(env, f"charger/{cp}/1/max_current/set")
    send(probe, env, mode, "On", user_properties=[("client_id", "kitchen-panel")])
    send(probe, env, reboot, "now", response_topic=topic(env, "bridge/response/tablet"))
    send(probe, env, current, "8")
    out = bridge.output()
    assert f"INFO    bridge.service.commands: {mode} from client_id=kitchen-panel: done (On)" in out, out[-2000:]
    assert (f"refused {reboot} from response topic {topic(env, 'bridge/response/tablet')}: "
            "reboot needs the payload PRESS or reboot") in out
    assert f"refused {current} from an unnamed sender:" in out


# ---- start-up and plausibility ----------------------------------------------------------

def test_runtime_file_values_are_checked_like_the_commands(broker, tmp_path):
    # The simulated charger is installed for 16 A; BALANCER_DEFAULT_CURRENT is 12 A.
    for stored, words in (({"default_current": 32}, "between 6 and 16 A (the installation current); got 32"),
                          ({"default_current": 12.5, "enabled": "maybe"}, "whole amps; got 12.5"),
                          ({"default_current": 14, "enabled": "OFF"}, None)):
        with CloudSimulator() as sim:
            state = tmp_path / f"state-{len(words or '')}"
            state.mkdir()
            (state / "runtime.json").write_text(json.dumps({"max_a": 24, **stored}))
            bridge, env, probe = in_process(broker, sim, tmp_path, CHARGEAMPS_STATE_DIR=str(state))
            try:
                probe.wait_value(topic(env, f"charger/{sim.chargepoint_id}/online"), "ON", timeout=15)
                expected = "12" if words else "14"
                wait_until(lambda: probe.latest.get(topic(env, "balancer/default_current")) == expected.encode(),
                           10, f"default current {expected} A")
                assert bridge.service.balancer.config.default_current == int(expected)
                if words:
                    assert words in bridge.output(), bridge.output()[-2000:]
                if "enabled" in stored:
                    probe.wait_value(topic(env, "balancer/enabled"), "ON" if stored["enabled"] == "maybe" else "OFF")
            finally:
                bridge.close()
                probe.close()


def test_last_error_clears_once_the_cloud_is_back(broker, sim, tmp_path):
    bridge, env, probe = in_process(broker, sim, tmp_path)
    try:
        probe.wait_value(topic(env, f"charger/{sim.chargepoint_id}/online"), "ON", timeout=15)
        t = time.monotonic()
        sim.fail_next(1000, 503)
        refresh(probe, env)
        health = health_after(probe, env, t, lambda h: h["cloud"] == "error")
        assert "503" in health["last_error"]
        with sim.lock:
            sim._faults.clear()  # the simulator has no public "clear faults"
        back = time.monotonic()
        health = health_after(probe, env, back, lambda h: h["cloud"] == "ok")
        assert health["last_error"] is None, health
    finally:
        bridge.close()
        probe.close()
