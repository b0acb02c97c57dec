"""Fault: the broker goes away and comes back (the real mosquitto, stopped and
started). The bridge reconnects, re-subscribes, re-publishes its retained state
and discovery, and commands work again; no acknowledged command is lost."""

from __future__ import annotations

import os
import signal
import time


import pytest

from tests.broker import MosquittoBroker
from tests.e2e import (
    FAULT_FAST, BridgeProcess, Probe, bridge_env, feed_meter, response_for, topic, wait_online, wait_until,
)

pytestmark = pytest.mark.slow

PERSISTENT_CONF = (
    "listener {port} 127.0.0.1\nallow_anonymous true\n"
    "persistence true\npersistence_location {dir}/\nautosave_interval 1\n"
    # mosquitto started as root drops to the user `mosquitto`, who cannot write the test folder.
    + ("user root\n" if os.geteuid() == 0 else "")
)


def retained_snapshot(broker, env: dict, wait_s: float = 1.0) -> dict[str, bytes]:
    """What a client that connects now receives as retained, under the base topic and discovery."""
    p = Probe(broker.host, broker.port, subscribe=f"{env['MQTT_BASE_TOPIC']}/#")
    p.client.subscribe("homeassistant/#", qos=1)
    time.sleep(wait_s)
    p.close()
    return {t: payload for _, t, payload, retained in p.messages if retained}


def probe_connected(probe: Probe, timeout: float = 15) -> None:
    wait_until(probe.client.is_connected, timeout, "the probe to reconnect")


def test_broker_restarts_reconnect_republish_and_commands_work(own_broker, sim, tmp_path):
    env = bridge_env(own_broker, sim, tmp_path / "state", **FAULT_FAST)
    bridge = BridgeProcess(env, tmp_path).start()
    probe = Probe(own_broker.host, own_broker.port)
    try:
        wait_online(probe, env, bridge)
        cp = sim.chargepoint_id
        probe.wait_value(topic(env, f"charger/{cp}/online"), "ON", timeout=15)
        feed_meter(probe, env, 5, 5, 5)
        before = retained_snapshot(own_broker, env)
        assert before[topic(env, "bridge/state")] == b"online"
        assert any(t.startswith("homeassistant/") for t in before), sorted(before)

        for n, down_s in enumerate((0.5, 2.0, 4.0)):
            own_broker.restart(down_s=down_s)
            started = time.monotonic()
            probe_connected(probe)
            # A fresh broker without persistence: everything retained now was re-published by the bridge.
            wait_online(probe, env, bridge, timeout=15, since=started)
            reconnect_s = time.monotonic() - started
            # paho's reconnect backoff starts at 1 s and is reset by a successful connection:
            # a few seconds at most, even after the third restart.
            assert reconnect_s < 8, f"restart {n}: online only {reconnect_s:.1f} s after the broker came back"
            time.sleep(0.5)
            after = retained_snapshot(own_broker, env)
            missing = sorted(set(before) - set(after))
            assert not missing, f"restart {n}: not re-published: {missing}"
            assert after[topic(env, "bridge/state")] == b"online"

            # Re-subscribed: a command works and the meter is read again.
            t = time.monotonic()
            value = str(20 - n)
            probe.publish(topic(env, "balancer/max_a/set"), value)
            assert response_for(probe, env, topic(env, "balancer/max_a/set"), t)["status"] == "ok"
            probe.wait_value(topic(env, "balancer/max_a"), value, since=t)
            feed_meter(probe, env, 6 + n, 5, 5)
            probe.wait_value(topic(env, "meter/current_l1"), str(6 + n), since=t)

        # The bridge still drives the charger: an overload cuts it.
        t = time.monotonic()
        feed_meter(probe, env, 40, 5, 5)
        probe.wait_for(topic(env, "balancer/charge_at"), lambda p: float(p) < 6, timeout=5, since=t)
        out = bridge.output()
        assert out.count("MQTT connected") >= 4, out
        assert "Traceback" not in out
        assert bridge.alive()
    finally:
        probe.close()
        bridge.close()


def test_acknowledged_commands_survive_a_broker_restart(tmp_path, sim):
    """A command the broker acknowledged (QoS 1) is applied, whether it reached the bridge
    just before the broker died or was queued for it while it was reconnecting
    (a broker with persistence, as the shipped mosquitto.conf, keeps the bridge's session)."""
    broker = MosquittoBroker(PERSISTENT_CONF).start()
    env = bridge_env(broker, sim, tmp_path / "state", **FAULT_FAST)
    bridge = BridgeProcess(env, tmp_path).start()
    probe = Probe(broker.host, broker.port)
    try:
        wait_online(probe, env, bridge)
        probe.wait_value(topic(env, f"charger/{sim.chargepoint_id}/online"), "ON", timeout=15)

        # 1. Acknowledged by the broker while the bridge is connected, broker killed right after.
        probe.publish(topic(env, "balancer/max_a/set"), "17")  # waits for the PUBACK
        broker.stop()
        time.sleep(1.0)
        broker.start()
        probe_connected(probe)
        t = time.monotonic()
        wait_online(probe, env, bridge, since=t - 5)
        probe.wait_value(topic(env, "balancer/max_a"), "17", timeout=10)

        # 2. Published (and acknowledged) while the bridge is away: the bridge is frozen
        #    (SIGSTOP) across the restart so that it certainly reconnects after the command.
        os.kill(bridge.proc.pid, signal.SIGSTOP)
        try:
            broker.stop()
            time.sleep(0.5)
            broker.start()
            probe_connected(probe)
            t = time.monotonic()
            probe.publish(topic(env, "balancer/default_current/set"), "12")
        finally:
            os.kill(bridge.proc.pid, signal.SIGCONT)
        wait_online(probe, env, bridge, timeout=15, since=t)
        probe.wait_value(topic(env, "balancer/default_current"), "12", timeout=10)
        answer = response_for(probe, env, topic(env, "balancer/default_current/set"), t)
        assert answer["status"] == "ok", answer
        # Persisted too.
        assert '"default_current": 12' in (tmp_path / "state" / "runtime.json").read_text()
        assert '"max_a": 17' in (tmp_path / "state" / "runtime.json").read_text()
    finally:
        probe.close()
        bridge.close()
        broker.close()
