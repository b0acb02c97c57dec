"""One bridge per charger: a second `run` on the same state folder, a second bridge on the
same broker and base topic, a restart after a crash, and a second MQTT client with the
bridge's client id, all against one running bridge, a real broker and the cloud simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.sim.cloud import CloudSimulator
from tests.e2e import REPO_ROOT, BridgeProcess, Probe, bridge_env, topic, wait_online, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def running(broker, tmp_path_factory):
    """A bridge that runs for the whole module; the crash test at the end kills it."""
    work = tmp_path_factory.mktemp("single")
    with CloudSimulator() as sim:
        env = bridge_env(broker, sim, work / "state")
        probe = Probe(broker.host, broker.port, subscribe=f"{env['MQTT_BASE_TOPIC']}/#")
        bridge = BridgeProcess(env, work).start()
        try:
            wait_online(probe, env, bridge)
            yield bridge, env, probe, sim, work
        finally:
            bridge.close()
            probe.close()


def run_once(env: dict, cwd) -> subprocess.CompletedProcess:
    """`chargeamps-bridge run` that is expected to refuse to start, so to end by itself."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CHARGEAMPS_", "MQTT_", "P1_", "BALANCER_", "HA_"))}
    full.update(env, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "bridge", "run"], env=full, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def stored_instance_id(env: dict) -> str:
    return json.loads((REPO_ROOT / env["CHARGEAMPS_STATE_DIR"] / "instance.json").read_text())["instance_id"]


def test_second_run_on_the_same_state_folder_refuses_naming_the_first(running):
    bridge, env, probe, sim, work = running
    done = run_once(env, work)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"pid {bridge.proc.pid}" in lines[0] and env["CHARGEAMPS_STATE_DIR"] in lines[0]
    assert bridge.alive()


def test_second_bridge_on_the_same_base_topic_refuses_to_start(running, broker):
    bridge, env, probe, sim, work = running
    own = stored_instance_id(env)
    info = probe.wait_json(topic(env, "bridge/info"), lambda i: i["instance_id"] == own)
    assert info["base_topic"] == env["MQTT_BASE_TOPIC"]
    # Another machine: a state folder (so an instance id) of its own, the same broker and base topic.
    other = bridge_env(broker, sim, work / "other-state", MQTT_BASE_TOPIC=env["MQTT_BASE_TOPIC"])
    since = time.monotonic()
    done = run_once(other, work)
    assert done.returncode == 1, done.stderr
    refusal = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(refusal) == 1, done.stderr
    assert f"instance {own}" in refusal[0] and env["MQTT_BASE_TOPIC"] in refusal[0]
    # It never went online, never published, and the first bridge is untouched.
    assert not [m for m in probe.messages if m[0] >= since and m[1] == topic(env, "bridge/state")]
    assert bridge.alive()


@pytest.mark.slow
def test_two_bridges_on_one_host_with_other_base_topics_keep_their_own_sessions(broker, tmp_path):
    """MQTT_CLIENT_ID unset on both: the default is one per base topic, so neither takes the other's
    session (with one id per host, the second connect threw the first off the broker)."""
    with CloudSimulator() as sim:
        envs = [bridge_env(broker, sim, tmp_path / name, MQTT_BASE_TOPIC=f"ca-{name}-{os.getpid()}")
                for name in ("left", "right")]
        for env in envs:
            env.pop("MQTT_CLIENT_ID")
        probe = Probe(broker.host, broker.port)
        bridges = []
        try:
            for env in envs:
                bridges.append(BridgeProcess(env, tmp_path).start())
                wait_online(probe, env, bridges[-1])
            # The first still holds its connection: it answers a command at once.
            since = time.monotonic()
            probe.publish(topic(envs[0], "bridge/request/refresh"), "now")
            probe.wait_json(topic(envs[0], "bridge/response"), lambda r: r["topic"].endswith("refresh"),
                            timeout=5, since=since)
            for bridge in bridges:
                assert "session taken over" not in bridge.output(), bridge.output()[-2000:]
        finally:
            for bridge in bridges:
                bridge.close()
            probe.close()


class Intruder:
    """Another MQTT client that connects with the bridge's client id and counts how often the
    broker takes the connection from it (it reconnects after 1 s, as paho does by default)."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.drops = 0
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.client.on_disconnect = self._dropped
        self.client.connect_async(host, port)
        self.client.loop_start()

    def _dropped(self, *args) -> None:
        self.connected.clear()
        self.drops += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_duplicate_client_id_is_logged_as_such_and_the_bridge_backs_off(running, broker):
    bridge, env, probe, sim, work = running
    intruder = Intruder(broker.host, broker.port, env["MQTT_CLIENT_ID"])
    try:
        wait_until(lambda: "session taken over: another client uses MQTT client id" in bridge.output(), 20,
                   "the bridge to log the duplicate client id")
        line = next(x for x in bridge.output().splitlines() if "session taken over" in x)
        assert repr(env["MQTT_CLIENT_ID"]) in line and "MQTT_CLIENT_ID" in line and "reconnecting in 10 s" in line
        assert "Unspecified error" not in line
        wait_until(intruder.connected.is_set, 5, "the other client to get its connection back")
        # The bridge waits before it takes the id back: for this window the other client keeps
        # its connection (without the wait the two took it from each other every second).
        drops = intruder.drops
        window_end = time.monotonic() + 6
        while time.monotonic() < window_end:
            assert intruder.drops == drops, "the bridge took the client id back at once"
            time.sleep(0.1)
    finally:
        intruder.close()
    # Once the other client is gone the bridge is back by itself.
    since = time.monotonic()
    wait_online(probe, env, bridge, timeout=20, since=since)
    assert bridge.alive()


def test_the_same_instance_restarting_after_a_crash_is_never_refused(running, broker):
    bridge, env, probe, sim, work = running
    bridge.kill()
    probe.wait_value(topic(env, "bridge/state"), "offline", timeout=30)
    # A broker that lost the last will (or a restart before it fired) leaves `online` behind.
    probe.publish(topic(env, "bridge/state"), "online", retain=True)
    since = time.monotonic()
    again = BridgeProcess(env, work).start()
    try:
        probe.wait_json(topic(env, "bridge/health"), lambda h: h["mqtt"] == "connected", timeout=20, since=since)
        assert again.alive(), again.output()
        assert "another bridge" not in again.output()
    finally:
        again.close()
