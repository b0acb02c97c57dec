"""Commands and the retain flag: a retained command is refused with an answer also when it
is published while the bridge runs (MQTT v5 "retain as published"), never applied."""

from __future__ import annotations

import time

import pytest

from tests.e2e import response_for, topic, wait_online

pytestmark = pytest.mark.slow


def test_retained_command_published_while_running_is_refused_with_an_answer(start_bridge, probe):
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    probe.wait_value(topic(env, "balancer/max_a"), "24")
    command = topic(env, "balancer/max_a/set")
    # As `mosquitto_pub -r -t <base>/balancer/max_a/set -m 10` sends it.
    t = time.monotonic()
    probe.publish(command, "10", retain=True)
    try:
        answer = response_for(probe, env, command, t)
        assert answer["status"] == "error" and "retained" in answer["error"]
        probe.wait_json(topic(env, "bridge/health"), lambda h: h["commands_refused"] >= 1, timeout=15, since=t)
        assert probe.latest[topic(env, "balancer/max_a")] == b"24"
        assert (bridge.workdir / env["CHARGEAMPS_STATE_DIR"] / "runtime.json").exists() is False
        # The same command sent live is applied: the refusal was the retain flag's doing.
        t = time.monotonic()
        probe.publish(command, "10")
        assert response_for(probe, env, command, t)["status"] == "ok"
        probe.wait_value(topic(env, "balancer/max_a"), "10", since=t)
    finally:
        probe.publish(command, "", retain=True)  # clear it from the broker
