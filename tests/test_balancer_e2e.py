"""The balancer's start-up and its idea of the car's draw, through the real service:
a real broker, the cloud simulator and `chargeamps-bridge run` as a subprocess."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.e2e import feed_meter, max_current_writes, topic, wait_online

pytestmark = pytest.mark.slow

BRIDGE_DEFAULTS = {
    "BALANCER_STALE_AFTER_S": "6",
    "BALANCER_MIN_COMMAND_INTERVAL_S": "0",
    "CHARGEAMPS_POLL_INTERVAL": "10",
}


def test_no_car_and_a_late_meter_no_failsafe_write_and_the_headroom_is_the_houses(start_bridge, probe, sim):
    sim.connector(1).car_plugged = False  # connector status `Available`, no measurements
    sim.connector(1).max_current = 10  # not what the balancer wants, so it has a write to make
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    state = topic(env, "balancer/state")

    def waited_s(s: dict) -> float:
        m = re.match(r"waiting for the meter \((\d+)/6 s", s["reason"])
        return float(m.group(1)) if m else -1.0

    # The meter speaks only some seconds after the start, within BALANCER_STALE_AFTER_S.
    waiting = probe.wait_json(state, lambda s: waited_s(s) >= 2, timeout=10)
    assert waiting["waiting_for_meter"] and not waiting["meter_stale"]
    # Nothing is known of the meter yet: no `meter/stale` OFF (Home Assistant shows unknown).
    assert topic(env, "meter/stale") not in probe.latest
    assert max_current_writes(sim) == []
    deadline = time.monotonic() + 20
    while not max_current_writes(sim):
        assert time.monotonic() < deadline, f"no write; the bridge said:\n{bridge.output()}"
        feed_meter(probe, env, 5, 5, 5)
        time.sleep(0.3)
    assert max_current_writes(sim)[0] == 16  # never the fail-safe's 6 A first
    probe.wait_value(topic(env, "meter/stale"), "OFF")  # the meter has spoken
    # With no car drawing, the house is the whole meter: 24 - 5 = 19 A of headroom, also
    # right after the write (not the 35 A of a car taken to draw the 16 A written).
    since = time.monotonic()
    for _ in range(10):
        feed_meter(probe, env, 5, 5, 5)
        time.sleep(0.3)
    states = [json.loads(p) for t, top, p, _ in list(probe.messages) if top == state and t >= since]
    assert states and all(s["headroom"] == [19.0, 19.0, 19.0] for s in states), states[-1]
    assert "fail-safe" not in bridge.output()
