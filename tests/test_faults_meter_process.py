"""Meter faults (silence, frozen repeats, garbage, retained values at subscribe)
and process faults (SIGTERM, SIGKILL, corrupt or unwritable state) against the
real service, a real broker and the cloud simulator."""

from __future__ import annotations

import json
import time


import pytest

from tests.e2e import (
    FAULT_FAST, bridge_env, feed_meter, max_current_writes, response_for, topic,
    wait_online, wait_until,
)

pytestmark = pytest.mark.slow

# homey goes to full power as soon as the meter is live, which keeps the steps short.
FAST = {**FAULT_FAST, "BALANCER_STRATEGY": "homey"}
BRIDGE_DEFAULTS = FAST


def feed_for(probe, env, seconds: float, values=(5, 5, 5)) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        feed_meter(probe, env, *values)
        time.sleep(0.5)


# ---- meter faults ------------------------------------------------------------------

def test_meter_faults_retained_garbage_frozen_silence_hold_and_end_the_fail_safe(broker, start_bridge, probe,
                                                                                  sim, tmp_path):
    env = bridge_env(broker, sim, tmp_path / "state", **FAST)
    # Out-of-date values retained on the meter topics before the bridge subscribes.
    for n in (1, 2, 3):
        probe.publish(env[f"P1_TOPIC_L{n}"], "3", retain=True)
    try:
        bridge, env = start_bridge(env=env)
        wait_online(probe, env, bridge)
        # 1. Retained values have unknown age: not fresh, the fail-safe holds.
        probe.wait_value(topic(env, "meter/stale"), "ON")
        wait_until(lambda: all(f"retained meter value on {env[f'P1_TOPIC_L{n}']}" in bridge.output()
                               for n in (1, 2, 3)), 10, "the bridge to set the three retained values aside")
        probe.wait_value(topic(env, "balancer/charge_at"), "6")
        assert probe.latest[topic(env, "meter/stale")] == b"ON"
        wait_until(lambda: sim.connector(1).max_current == 6, 5, "the fail-safe 6 A on the charger")

        # 2. Garbage is not a reading: still fail-safe.
        t = time.monotonic()
        for _ in range(5):
            for n in (1, 2, 3):
                probe.publish(env[f"P1_TOPIC_L{n}"], b"\xff garbage NaN")
            time.sleep(0.3)
        health = probe.wait_json(topic(env, "bridge/health"), lambda h: h["invalid_meter_payloads"] >= 15,
                                 since=t, timeout=12)
        assert probe.latest[topic(env, "meter/stale")] == b"ON"
        assert health["meter_age_s"] is None

        # 3. Live data ends the fail-safe.
        t = time.monotonic()
        feed_meter(probe, env, 5, 5, 5)
        probe.wait_value(topic(env, "meter/stale"), "OFF", since=t, timeout=3)
        probe.wait_value(topic(env, "balancer/charge_at"), "16", since=t, timeout=5)

        # 4. Frozen repeats: the same value, again and again, for longer than the stale
        #    deadline. Each message is a fresh reading (a P1 meter whose load does not
        #    change repeats itself), so the meter stays live. A source that publishes
        #    only changes needs P1_HEARTBEAT_TOPIC instead.
        t = time.monotonic()
        feed_for(probe, env, 5, (5, 5, 5))
        assert not [p for ts, top, p, _ in list(probe.messages)
                    if top == topic(env, "meter/stale") and ts >= t and p == b"ON"]

        # 5. Silence: stale within a second of the 3 s deadline, the charger at 6 A.
        last = time.monotonic()
        probe.wait_value(topic(env, "meter/stale"), "ON", since=last, timeout=6)
        assert time.monotonic() - last <= 3 + 1.5
        probe.wait_value(topic(env, "balancer/charge_at"), "6", since=last, timeout=3)
        wait_until(lambda: sim.connector(1).max_current == 6, 3, "the fail-safe on the charger")

        # 6. Fresh data ends it again.
        t = time.monotonic()
        feed_meter(probe, env, 5, 5, 5)
        probe.wait_value(topic(env, "meter/stale"), "OFF", since=t, timeout=3)
        wait_until(lambda: sim.connector(1).max_current == 16, 5, "full power again")
        assert bridge.alive() and "Traceback" not in bridge.output()
    finally:
        for n in (1, 2, 3):
            probe.publish(env[f"P1_TOPIC_L{n}"], "", retain=True)


# ---- process faults ----------------------------------------------------------------

def test_sigterm_then_sigkill_then_restart_reuses_settings_and_tokens(start_bridge, probe, sim, tmp_path):
    state = tmp_path / "persist"
    bridge, env = start_bridge(state_dir=state)
    wait_online(probe, env, bridge)
    probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok", timeout=15)
    t = time.monotonic()
    assert bridge.terminate() == 0
    probe.wait_value(topic(env, "bridge/state"), "offline", since=t, timeout=5)
    assert "Traceback" not in bridge.output()

    bridge2, _ = start_bridge(env=env)
    t = time.monotonic()
    wait_online(probe, env, bridge2, since=t - 1)
    probe.publish(topic(env, "balancer/max_a/set"), "18")
    probe.wait_value(topic(env, "balancer/max_a"), "18", since=t)
    probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok", since=t - 1, timeout=15)
    logins = sim.logins
    t = time.monotonic()
    bridge2.kill()  # SIGKILL: no chance to say goodbye; the broker sends the last will
    probe.wait_value(topic(env, "bridge/state"), "offline", since=t, timeout=50)

    bridge3, _ = start_bridge(env=env)
    t = time.monotonic()
    wait_online(probe, env, bridge3, since=t)
    probe.wait_value(topic(env, "balancer/max_a"), "18", since=t)
    probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok", since=t, timeout=15)
    assert sim.logins == logins, "the restart logged in instead of using the stored tokens"


def test_corrupt_state_files_are_reported_and_defaults_used(start_bridge, probe, sim, tmp_path):
    state = tmp_path / "corrupt"
    state.mkdir()
    (state / "runtime.json").write_text('{"max_a": 18')
    (state / "tokens.json").write_text("\x00\x01 not json")
    bridge, env = start_bridge(state_dir=state)
    wait_online(probe, env, bridge)
    probe.wait_value(topic(env, "balancer/max_a"), "24")
    health = probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok", timeout=15)
    assert "corrupt" in health["last_error"], health
    assert list(state.glob("runtime.json.corrupt-*"))
    assert "corrupt" in bridge.output()
    assert json.loads((state / "tokens.json").read_text())  # replaced by good tokens after one login
    assert sim.logins == 1


def test_unwritable_state_folder_is_reported_and_balancing_goes_on(start_bridge, probe, sim, tmp_path):
    # Tests run as root, which ignores permission bits: a folder under a regular file
    # cannot be created by anyone.
    (tmp_path / "afile").write_text("not a folder")
    bridge, env = start_bridge(state_dir=tmp_path / "afile" / "state")
    wait_online(probe, env, bridge)
    probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok", timeout=15)
    t = time.monotonic()
    probe.publish(topic(env, "balancer/max_a/set"), "20")
    answer = response_for(probe, env, topic(env, "balancer/max_a/set"), t)
    assert answer["status"] == "ok"  # applied, held until restart
    probe.wait_value(topic(env, "balancer/max_a"), "20", since=t)
    health = probe.wait_json(topic(env, "bridge/health"), lambda h: "cannot write" in (h["last_error"] or ""),
                             since=t, timeout=12)
    assert "afile" in health["last_error"]
    assert "cannot write" in bridge.output()
    # Still balancing: live data, an overload, a cut on the charger.
    t = time.monotonic()
    feed_for(probe, env, 1.5)
    feed_meter(probe, env, 30, 5, 5)
    probe.wait_for(topic(env, "balancer/charge_at"), lambda p: float(p) < 16, since=t, timeout=5)
    wait_until(lambda: max_current_writes(sim, since=t) and max_current_writes(sim, since=t)[-1] < 16, 5,
               "a cut on the charger")
    assert bridge.alive() and "Traceback" not in bridge.output()
