"""Latency, throughput and idle cost of the running service.

Real mosquitto (started on a free loopback port), the cloud simulator in this
process, `chargeamps-bridge run` as a subprocess. Run from the repository root:

    python benchmarks/bench_service.py [--trials 200] [--burst 20000] [--idle-s 60] [--json]

Latency: from publishing an over-limit meter message to the simulator receiving
the cut (the PUT of the connector's maxCurrent). The bridge's own share is the
same span minus the broker's delivery, measured by a second subscriber that
receives the very same message: what is left is the service's parsing, decision
and HTTP client, plus the loopback GET of the read-modify-write.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.sim.cloud import CloudSimulator  # noqa: E402
from bridge.sim.demo import OwnBroker  # noqa: E402
from tests.e2e import BridgeProcess, Probe, bridge_env, rss_kb  # noqa: E402


class Broker:
    def __init__(self) -> None:
        self._own = OwnBroker()
        self.host, self.port = "127.0.0.1", self._own.port

    def close(self) -> None:
        self._own.close()


# Settings that let the balancer raise again at once, so that every trial can be a fresh cut;
# the cut itself is the same code path as with the defaults.
FAST_BALANCER = dict(BALANCER_RAISE_HOLD_S="0.5", BALANCER_QUICK_RAISE_HOLD_S="0.5", BALANCER_RAISE_HOLD_MAX_S="0.5",
                     BALANCER_SETTLE_S="0.2", BALANCER_MIN_COMMAND_INTERVAL_S="0",
                     BALANCER_WRITE_BUDGET_PER_H="100000", BALANCER_WRITE_BUDGET_BURST="1000",
                     BALANCER_MIN_PAUSE_S="0")


@contextlib.contextmanager
def running_bridge(env: dict, work: Path, broker: "Broker"):
    """`chargeamps-bridge run` online, and a probe of the broker: (bridge, probe). Its output goes to
    stderr when the benchmark fails, and when BENCH_LOG_LEVEL is set."""
    bridge = BridgeProcess(env, work).start()
    probe = Probe(broker.host, broker.port)
    try:
        probe.wait_value(f"{env['MQTT_BASE_TOPIC']}/bridge/state", "online", timeout=20)
        yield bridge, probe
    except BaseException:
        print(bridge.output()[-3000:], file=sys.stderr)
        raise
    finally:
        log_text = bridge.output()
        probe.close()
        bridge.close()
        if os.environ.get("BENCH_LOG_LEVEL"):
            print(log_text, file=sys.stderr)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def proc_stats(pid: int) -> tuple[float, float]:
    """(resident MB, CPU seconds) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss_kb(pid) / 1024, cpu


def maxcurrent_writes(sim: CloudSimulator) -> list[tuple[float, float]]:
    with sim.lock:
        return [(w[0], w[4]) for w in sim.writes if w[3] == "maxCurrent"]


def wait_until(cond, timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def measure_latency(probe: Probe, env: dict, sim: CloudSimulator, trials: int) -> dict:
    conn = sim.connector(1)
    return measure_cuts(probe, env, lambda: conn.max_current, lambda: maxcurrent_writes(sim), trials)


def measure_cuts(probe: Probe, env: dict, setting: Callable[[], float],
                 writes: Callable[[], list[tuple[float, float]]], trials: int) -> dict:
    """Times `trials` cuts of 2 A: from publishing an over-limit meter reading to the charger's end
    receiving the lower value. `setting()` is the charger's current setting, `writes()` the
    (monotonic time, amps) of every value it received, in order."""
    topics = [env[f"P1_TOPIC_L{n}"] for n in (1, 2, 3)]
    total, share, transit = [], [], []
    missed = 0

    def feed(l1: float, l2: float, l3: float) -> None:
        for t, v in zip(topics, (l1, l2, l3)):
            probe.publish(t, f"{v:.2f}")

    def back_to_full_power() -> None:
        deadline = time.monotonic() + 120
        while setting() < 16 and time.monotonic() < deadline:
            cmd = setting()
            feed(4 + cmd, 4 + cmd, 4 + cmd)
            time.sleep(0.25)
        if setting() < 16:
            raise RuntimeError("the balancer did not raise back to 16 A within 120 s")

    back_to_full_power()
    while len(total) < trials:
        cmd = setting()
        if cmd - 2 < 6:
            back_to_full_power()
            continue
        house = 24 - (cmd - 2)  # exactly enough for a cut of 2 A
        before = len(writes())
        seen_before = len(probe.messages)
        t0 = time.monotonic()
        feed(house + cmd, 4 + cmd, 4 + cmd)
        if not wait_until(lambda: any(a < cmd for _, a in writes()[before:]), 3.0):
            missed += 1
            back_to_full_power()
            continue
        t_write = next(t for t, a in writes()[before:] if a < cmd)
        arrivals = [m[0] for m in probe.messages[seen_before:] if m[1] == topics[0]]
        t_recv = arrivals[0] if arrivals else t0
        total.append((t_write - t0) * 1000)
        transit.append((t_recv - t0) * 1000)
        share.append((t_write - t_recv) * 1000)
        if share[-1] > 200:
            print(f"slow trial {len(total)}: {share[-1]:.0f} ms at {cmd} A", file=sys.stderr)
        time.sleep(0.6)  # past settle_s, so that the next overshoot is a new one

    def spread(values: list[float]) -> dict:
        return {"p50": round(percentile(values, 50), 2), "p99": round(percentile(values, 99), 2),
                "max": round(max(values), 2), "mean": round(statistics.mean(values), 2)}

    return {"trials": len(total), "missed": missed, "total_ms": spread(total), "broker_ms": spread(transit),
            "bridge_ms": spread(share)}


def measure_throughput(probe: Probe, env: dict, burst: int) -> dict:
    """Publish a burst of valid meter messages as fast as the broker takes them;
    the answer to a command sent right after them comes once the queue drained."""
    topic = env["P1_TOPIC_L2"]
    base = env["MQTT_BASE_TOPIC"]
    t0 = time.monotonic()
    for i in range(burst):
        probe.client.publish(topic, f"{5 + (i % 7) * 0.1:.1f}", qos=0)
    t_sent = time.monotonic()
    since = time.monotonic()
    probe.publish(f"{base}/bridge/request/refresh", "x")
    probe.wait_json(f"{base}/bridge/response", lambda r: r["topic"].endswith("refresh"), timeout=120, since=since)
    t_done = time.monotonic()
    return {
        "messages": burst,
        "publish_s": round(t_sent - t0, 2),
        "drained_s": round(t_done - t0, 2),
        "messages_per_s": round(burst / (t_done - t0)),
    }


def measure_idle(pid: int, seconds: float) -> dict:
    rss0, cpu0 = proc_stats(pid)
    time.sleep(seconds)
    rss1, cpu1 = proc_stats(pid)
    return {"seconds": seconds, "rss_mb_start": round(rss0, 1), "rss_mb_end": round(rss1, 1),
            "cpu_percent": round(100 * (cpu1 - cpu0) / seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--burst", type=int, default=20000)
    ap.add_argument("--idle-s", type=float, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    broker = Broker()
    sim = CloudSimulator().start()
    conn = sim.connector(1)
    conn.car_plugged = True
    conn.car_max_a = 16
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    env = bridge_env(broker, sim, work / "state", CHARGEAMPS_POLL_INTERVAL="3600", LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
                     HA_DISCOVERY="false", **FAST_BALANCER)
    result: dict = {}
    try:
        with running_bridge(env, work, broker) as (bridge, probe):
            result["idle"] = measure_idle(bridge.proc.pid, args.idle_s)
            result["latency"] = measure_latency(probe, env, sim, args.trials)
            rss_before, _ = proc_stats(bridge.proc.pid)
            result["throughput"] = measure_throughput(probe, env, args.burst)
            result["throughput"]["rss_mb_before"] = round(rss_before, 1)
            result["throughput"]["rss_mb_after"] = round(proc_stats(bridge.proc.pid)[0], 1)
            result["cloud_writes_during_run"] = len(maxcurrent_writes(sim))
    finally:
        sim.stop()
        broker.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        lat, thr, idle = result["latency"], result["throughput"], result["idle"]
        print(f"latency over {lat['trials']} cuts (missed {lat['missed']}):")
        print(f"  publish -> simulator receives the cut  p50 {lat['total_ms']['p50']} ms  p99 {lat['total_ms']['p99']} ms")
        print(f"  of which broker delivery               p50 {lat['broker_ms']['p50']} ms  p99 {lat['broker_ms']['p99']} ms")
        print(f"  of which the bridge                    p50 {lat['bridge_ms']['p50']} ms  p99 {lat['bridge_ms']['p99']} ms")
        print(f"throughput: {thr['messages']} meter messages drained in {thr['drained_s']} s "
              f"= {thr['messages_per_s']} msg/s; RSS {thr['rss_mb_before']} -> {thr['rss_mb_after']} MB")
        print(f"idle {idle['seconds']:g} s: RSS {idle['rss_mb_start']} -> {idle['rss_mb_end']} MB, CPU {idle['cpu_percent']} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
