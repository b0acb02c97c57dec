"""Faults of the Charge Amps cloud (the simulator): 5xx, timeouts, refused
connections, 429 with Retry-After, and the auth faults (token expiry, refresh
refused, credentials revoked). The bridge survives, says so in
`bridge/health`, backs off, and applies the latest ChargeAt once when the cloud
is back; it never storms the login."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.service import CloudBackoff, CommandBudget
from bridge.sim.cloud import CloudSimulator
from tests.e2e import (
    FAULT_FAST, Probe, feed_meter, max_current_writes, topic, wait_online, wait_until,
)

# `homey` raises to full power as soon as the meter is live (adaptive waits 15 s for
# the car to settle), which keeps these tests short; the cloud side is the same.
CLOUD_FAST = {**FAULT_FAST, "CHARGEAMPS_HTTP_TIMEOUT": "1", "BALANCER_STRATEGY": "homey"}
BRIDGE_DEFAULTS = CLOUD_FAST


def BRIDGE_IN_PROCESS() -> dict:
    """The service in the test process with a cloud backoff of 1 s doubling to 4 s
    (production: 5 s to 300 s), so that an outage shows several steps within seconds."""
    return {"backoff": CloudBackoff(initial_s=1, max_s=4)}


class MeterFeeder:
    """A live P1 meter: house load plus what the simulated car draws, published every 0.5 s."""

    def __init__(self, probe: Probe, env: dict, sim: CloudSimulator, house=(5.0, 5.0, 5.0)) -> None:
        self.probe, self.env, self.sim, self.house = probe, env, sim, house
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def car_a(self) -> float:
        c = self.sim.connector(1)
        if not c.car_plugged or c.mode != "On" or c.max_current < 6:
            return 0.0
        return min(c.max_current, c.car_max_a)

    def publish(self) -> None:
        car = self.car_a()
        feed_meter(self.probe, self.env, *(h + car for h in self.house))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.publish()
            self._stop.wait(0.5)

    def set(self, *house: float) -> None:
        self.house = house
        self.publish()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def health_since(probe: Probe, env: dict, since: float) -> list[dict]:
    import json
    return [json.loads(p) for t, top, p, _ in list(probe.messages)
            if top == topic(env, "bridge/health") and t >= since]


def worker_passed_by(probe: Probe, env: dict) -> None:
    """A refresh, answered: the worker handled everything queued before it (answered or
    refused by the command budget alike)."""
    t = time.monotonic()
    probe.publish(topic(env, "bridge/request/refresh"), "now")
    probe.wait_json(topic(env, "bridge/response"), lambda r: r["topic"].endswith("request/refresh"), since=t)


def charging_at_full_power(probe, env, sim, bridge) -> MeterFeeder:
    wait_online(probe, env, bridge)
    probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok", timeout=15)
    feeder = MeterFeeder(probe, env, sim)
    deadline = time.monotonic() + 20
    # The simulated charger starts at 16 A. The bridge writes what the meter allows (never the
    # fail-safe: the meter speaks within BALANCER_STALE_AFTER_S of the start), or nothing when it
    # finds 16 A right; either way the charger ends at 16 A with the balancer wanting 16 A.
    while not (sim.connector(1).max_current == 16
               and probe.latest.get(topic(env, "balancer/charge_at")) == b"16"):
        # A poll now shows the balancer that the car follows; it raises only then.
        probe.publish(topic(env, "bridge/request/refresh"), "now")
        time.sleep(1.0)
        assert time.monotonic() < deadline, f"charger never reached 16 A:\n{bridge.output()[-3000:]}"
    assert 6.0 not in max_current_writes(sim)[:1]
    probe.publish(topic(env, "bridge/request/refresh"), "now")
    return feeder


# ---- the backoff itself ---------------------------------------------------------

def test_cloud_backoff_doubles_to_its_cap_honours_retry_after_and_resets():
    b = CloudBackoff(initial_s=5, max_s=300)
    delays = [b.failed(now=0.0) for _ in range(9)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert not b.ready(299.0) and b.ready(300.0)
    assert b.failed(now=1000.0, at_least_s=900) == 900  # a longer Retry-After wins
    b.succeeded()
    assert b.ready(0.0) and b.failed(now=0.0) == 5


# ---- outages ----------------------------------------------------------------------

OUTAGES = ["http-503", "timeout", "refused", "http-429-retry-after"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", OUTAGES)
def test_cloud_outage_backs_off_reports_and_applies_only_the_latest_charge_at(kind, start_bridge, probe, sim):
    bridge, env = start_bridge()
    feeder = charging_at_full_power(probe, env, sim, bridge)
    try:
        retry_after = 6  # above the 2 s the client waits out itself
        start = time.monotonic()
        if kind == "http-503":
            sim.fail_next(100_000, 503)
        elif kind == "timeout":
            sim.latency_s = 2.0  # above CHARGEAMPS_HTTP_TIMEOUT=1
        elif kind == "refused":
            sim.stop()  # nothing listens on the port any more
        else:
            sim.fail_next(100_000, 429, retry_after=retry_after)

        # The house changes while the cloud is away: homey cuts to 12 A (L1 28 A), holds
        # (21 A), cuts to 6 A (30 A). A worker stuck in a slow call may skip the 12 A.
        for l1 in (12, 5, 14):  # house L1 with the car at 16 A
            feeder.set(l1, 5, 5)
            time.sleep(1.5)
        latest = "6"
        probe.wait_value(topic(env, "balancer/charge_at"), latest, since=start, timeout=20)
        time.sleep(max(0.0, start + 10 - time.monotonic()))  # ten seconds of outage in all

        health = [h for h in health_since(probe, env, start) if h["cloud"] == "error"]
        assert health, f"bridge/health never said cloud error; output:\n{bridge.output()[-3000:]}"
        assert all(h["last_error"] for h in health)
        retries = [h["cloud_retry_in_s"] for h in health]
        if kind == "http-429-retry-after":
            assert max(retries) >= retry_after - 0.5, retries
            # Retry-After honoured: no request to the cloud sooner than it said.
            times = [r.t for r in list(sim.requests) if r.t >= start]
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert all(g >= retry_after - 0.5 for g in gaps), gaps
        else:
            assert max(retries) >= 2 * min(r for r in retries if r > 0), f"backoff did not grow: {retries}"
        assert max(retries) <= max(4, retry_after if kind == "http-429-retry-after" else 0) + 0.5, retries
        # Backed off: a handful of attempts, not a request per meter message.
        during = [r for r in list(sim.requests) if r.t >= start]
        assert len(during) < 40, f"{len(during)} requests in 10 s of outage"
        # Nothing was written while the cloud was away; but a write whose answer is late (a
        # timeout) may have reached the charger: then it is the latest or one before it.
        written = max_current_writes(sim, since=start)
        assert written == [] if kind != "timeout" else set(written) <= {12.0, 6.0}, written

        back = time.monotonic()
        if kind == "http-503" or kind == "http-429-retry-after":
            with sim.lock:
                sim._faults.clear()  # the simulator has no public "clear faults"
        elif kind == "timeout":
            sim.latency_s = 0.0
        else:
            sim.start()
        wait_until(lambda: sim.connector(1).max_current == float(latest), 4 + retry_after + 3,
                   f"the latest ChargeAt ({latest} A)")
        probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok" and h["cloud_retry_in_s"] == 0,
                        since=back, timeout=15)
        worker_passed_by(probe, env)
        # Desired state, not a replay: one write, of the latest value, none of the missed ones
        # (after a timeout, the late ones land now too: the client's retry of the latest among them).
        after = max_current_writes(sim, since=back)
        assert after == [float(latest)] if kind != "timeout" else set(after) <= {float(latest)}, after
        assert probe.latest[topic(env, "balancer/charge_at")].decode() == latest
        assert bridge.alive()
        out = bridge.output()
        assert "Traceback" not in out
        assert all(r.valid for r in sim.requests), [r.error for r in sim.requests if not r.valid]
    finally:
        feeder.stop()


# ---- auth faults ------------------------------------------------------------------

def test_token_expiry_refreshes_without_login_and_refused_refresh_logs_in_once(start_bridge, probe, sim):
    bridge, env = start_bridge()
    wait_online(probe, env, bridge)
    probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "ok", timeout=15)
    logins, refreshes = sim.logins, sim.refreshes

    # 1. Every access token expires: the next call gets 401, the bridge refreshes, no login.
    sim.expire_tokens()
    t = time.monotonic()
    probe.publish(topic(env, "bridge/request/refresh"), "now")
    probe.wait_json(topic(env, "bridge/response"), lambda r: r["topic"].endswith("request/refresh"), since=t)
    assert sim.refreshes == refreshes + 1 and sim.logins == logins
    health = probe.wait_json(topic(env, "bridge/health"), lambda h: True, since=t)
    assert health["cloud"] == "ok"

    # 2. The refresh token is refused too: exactly one login.
    sim.expire_tokens()
    sim.invalidate_refresh_tokens()
    t = time.monotonic()
    probe.publish(topic(env, "bridge/request/refresh"), "now")
    answer = probe.wait_json(topic(env, "bridge/response"), lambda r: r["topic"].endswith("request/refresh"),
                             since=t)
    assert answer["status"] == "ok", answer
    assert sim.logins == logins + 1
    worker_passed_by(probe, env)
    assert sim.logins == logins + 1
    assert len(sim.requests_to("/auth/login")) == logins + 1
    assert bridge.alive()


@pytest.mark.slow
def test_revoked_credentials_give_auth_failed_and_never_a_login_storm(start_bridge, probe, sim):
    bridge, env = start_bridge()
    feeder = charging_at_full_power(probe, env, sim, bridge)
    try:
        attempts_before = len(sim.requests_to("/auth/login"))
        t = time.monotonic()
        sim.revoke_credentials()  # login 401, refresh 400 from now on
        sim.expire_tokens()
        health = probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "auth_failed",
                                 since=t, timeout=15)
        assert "CHARGEAMPS_PASSWORD" in health["last_error"] or "CHARGEAMPS_API_KEY" in health["last_error"], health
        # Twenty seconds of revoked credentials, with an overload that wants a cut each time.
        for l1 in (12, 5, 14, 18):
            feeder.set(l1, 5, 5)
            time.sleep(5)
        attempts = [r for r in sim.requests_to("/auth/login") if r.t >= t]
        steps = [h["cloud_retry_in_s"] for h in health_since(probe, env, t) if h["cloud"] == "auth_failed"]
        # One login attempt per backoff step at the very most; the client adds a 60 s
        # cool-down after a refused login, so within 20 s there is exactly one.
        assert 1 <= len(attempts) <= max(1, len(set(steps))), (len(attempts), steps)
        assert len(attempts) == 1, [a.t - t for a in attempts]
        assert len(sim.requests_to("/auth/login")) == attempts_before + 1
        assert probe.latest[topic(env, "bridge/health")] and bridge.alive()
        # Still balancing: the meter is read and decisions are published.
        probe.wait_value(topic(env, "meter/current_l1"), "34", timeout=5)  # house 18 + car 16
        assert "Traceback" not in bridge.output()
    finally:
        feeder.stop()


def test_command_budget_allows_a_burst_then_a_steady_rate():
    budget = CommandBudget(burst=5, per_minute=6, tokens=5)
    assert [budget.take(0.0) for _ in range(5)] == [0.0] * 5
    assert budget.take(0.0) == pytest.approx(10.0)  # one call per 10 s from now on
    assert budget.take(9.0) == pytest.approx(1.0)
    assert budget.take(10.0) == 0.0
    assert budget.take(10.0) > 0
    assert [budget.take(1000.0) for _ in range(6)][:5] == [0.0] * 5  # refilled, never above the burst
