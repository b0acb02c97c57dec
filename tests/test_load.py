"""Load: a burst of 10,000 meter messages and 1,000 commands. The service keeps
up (its queue drains, every command is answered), its memory stays bounded,
and the cloud sees only the paced writes."""

from __future__ import annotations

import json
import random
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.sim.cloud import CloudSimulator
from tests.e2e import (
    FAULT_FAST, BridgeProcess, Probe, bridge_env, feed_meter, max_current_writes, rss_kb, topic, wait_online,
    wait_until,
)

pytestmark = pytest.mark.slow

METER_MESSAGES = 10_000
COMMANDS = 1_000


def test_burst_of_meter_messages_and_commands(broker, tmp_path):
    with CloudSimulator() as sim:
        sim.connector(1).car_plugged = True
        # The production pacing of raises (15 s); cuts are never delayed.
        env = bridge_env(broker, sim, tmp_path / "state", **{**FAULT_FAST, "BALANCER_MIN_COMMAND_INTERVAL_S": "15"})
        bridge = BridgeProcess(env, tmp_path).start()
        probe = Probe(broker.host, broker.port, subscribe=f"{env['MQTT_BASE_TOPIC']}/#")
        burst = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"burst-{uuid.uuid4().hex[:6]}",
                            protocol=mqtt.MQTTv5)
        burst.max_queued_messages_set(0)
        burst.max_inflight_messages_set(1000)
        burst.connect(broker.host, broker.port)
        burst.loop_start()
        try:
            wait_online(probe, env, bridge)
            probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok", timeout=15)
            for _ in range(4):
                feed_meter(probe, env, 5, 5, 5)
                time.sleep(0.5)
            rss_before = rss_kb(bridge.proc.pid)
            # Hold the worker in a slow cloud call (a refresh the simulator answers after
            # 6 s, twice: status and settings) while the burst arrives, so that the backlog
            # passes its limit and the flood path (newest reading per topic) surely runs.
            sim.latency_s = 6.0
            held_from = time.monotonic()
            probe.publish(topic(env, "bridge/request/refresh"), "now")
            wait_until(lambda: any(r.t >= held_from for r in list(sim.requests)), 10, "the worker in a cloud call")
            start = time.monotonic()

            rng = random.Random(5)
            infos = []
            for i in range(METER_MESSAGES):
                # A noisy house, 2..30 A per phase, now and then above MaxA.
                infos.append(burst.publish(env[f"P1_TOPIC_L{i % 3 + 1}"], f"{rng.uniform(2, 30):.2f}", qos=0))
                if i % 10 == 9:
                    cmd = i // 10
                    if cmd % 2:
                        infos.append(burst.publish(topic(env, "balancer/max_a/set"), str(20 + cmd % 5), qos=1))
                    else:
                        infos.append(burst.publish(topic(env, "balancer/enabled/set"), "ON", qos=1))
            for info in infos:
                info.wait_for_publish(30)
            sent_s = time.monotonic() - start
            sim.latency_s = 0.0
            assert sent_s < 10, f"the burst itself took {sent_s:.1f} s"

            def burst_answers() -> list[dict]:
                return [a for _, top, p, _ in list(probe.messages) if top == topic(env, "bridge/response")
                        and not (a := json.loads(p))["topic"].endswith("request/refresh")]

            def answered() -> int:
                return len(burst_answers())

            wait_until(lambda: answered() >= COMMANDS, 60, f"{COMMANDS} answers (got {answered()})", step=0.2)
            caught_up_s = time.monotonic() - start
            # The queue is back to ~0: the next health report says so.
            t = time.monotonic()
            health = probe.wait_json(topic(env, "bridge/health"), lambda h: True, since=t, timeout=12)
            assert health["queue"] <= 5, health
            # In a flood only the newest reading per topic is kept past the backlog limit
            # (the path ran: readings were superseded); commands are never dropped (all
            # answered above).
            assert 0 < health["meter_readings_superseded"] < METER_MESSAGES, health
            answers = burst_answers()
            assert len(answers) == COMMANDS and all(a["status"] == "ok" for a in answers)

            rss_after = rss_kb(bridge.proc.pid)
            grew_mb = (rss_after - rss_before) / 1024
            assert grew_mb < 50, f"RSS grew {grew_mb:.1f} MB"
            # The cloud saw a handful of paced writes, not one per message.
            writes = max_current_writes(sim, since=start)
            assert len(writes) <= 10, writes
            assert bridge.alive() and "Traceback" not in bridge.output()
            print(f"burst sent in {sent_s:.1f} s, all answered after {caught_up_s:.1f} s, "
                  f"RSS +{grew_mb:.1f} MB, {len(writes)} maxCurrent writes: {writes}")
        finally:
            burst.loop_stop()
            burst.disconnect()
            probe.close()
            bridge.close()
