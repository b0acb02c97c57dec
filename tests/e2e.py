"""End-to-end helpers: the bridge as a subprocess, and an MQTT probe that
watches and drives it through a real broker."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


REPO_ROOT = Path(__file__).resolve().parents[1]


class Probe:
    """A plain MQTT v5 client that records every message it sees."""

    def __init__(self, host: str, port: int, subscribe: str = "#") -> None:
        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.latest: dict[str, bytes] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe(subscribe, qos=1), connected.set())
        self.client.connect(host, port)
        self.client.loop_start()
        if not connected.wait(10):
            raise TimeoutError("probe could not connect")

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((time.monotonic(), msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.latest[msg.topic] = bytes(msg.payload)
            self._cond.notify_all()

    def publish(self, topic: str, payload: str | bytes, retain: bool = False, qos: int = 1,
                response_topic: str | None = None, correlation: bytes | None = None,
                user_properties: list[tuple[str, str]] | None = None) -> None:
        props = None
        if response_topic or user_properties:
            props = Properties(PacketTypes.PUBLISH)
        if response_topic:
            props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        if user_properties:
            props.UserProperty = user_properties
        self.client.publish(topic, payload, qos=qos, retain=retain, properties=props).wait_for_publish(5)

    def wait_for(self, topic: str, predicate: Callable[[bytes], bool] = lambda p: True,
                 timeout: float = 10.0, since: float | None = None) -> bytes:
        """The first message on `topic` (received after `since`) that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, top, payload, _ in self.messages:
                    if top == topic and (since is None or t >= since) and predicate(payload):
                        return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = self.latest.get(topic)
                    raise AssertionError(f"no matching message on {topic} within {timeout}s (latest: {seen!r})")
                self._cond.wait(remaining)

    def wait_value(self, topic: str, expected: str, timeout: float = 10.0, since: float | None = None) -> None:
        self.wait_for(topic, lambda p: p.decode(errors="replace") == expected, timeout, since)

    def wait_json(self, topic: str, predicate: Callable[[dict], bool], timeout: float = 10.0,
                  since: float | None = None) -> dict:
        def ok(p: bytes) -> bool:
            try:
                return predicate(json.loads(p))
            except (ValueError, KeyError, TypeError):
                return False
        return json.loads(self.wait_for(topic, ok, timeout, since))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class BridgeProcess:
    """`chargeamps-bridge run` as a subprocess, its output captured to a file."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"bridge-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "BridgeProcess":
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CHARGEAMPS_", "MQTT_", "P1_", "BALANCER_", "HA_"))}
        full_env.update(self.env)
        # The package from this checkout, installed or not.
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run"], env=full_env, cwd=self.workdir,
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        self._log.close()


class MovableWall:
    """Wall-clock time that runs at the real rate from a chosen start and can be moved ahead: the
    capacity tariff's periods in an in-process bridge (`wall_clock=`)."""

    def __init__(self, start: datetime) -> None:
        self.start, self.t0 = start, time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0)

    def move_to(self, when: datetime) -> None:
        self.start, self.t0 = when, time.monotonic()


class InProcessBridge:
    """The real BridgeService in the test process, configured from the same environment
    as a BridgeProcess, with collaborators passed in (e.g. a short cloud backoff). Its
    log records go to a file, so `output()` reads like the subprocess's."""

    def __init__(self, env: dict[str, str], workdir: Path, **collaborators: Any) -> None:
        from bridge.config import Settings, load_settings
        from bridge.service import BridgeService

        self.log_path = workdir / f"bridge-{uuid.uuid4().hex[:6]}.log"
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        self._logger = logging.getLogger("bridge")
        self._level = self._logger.level
        self._logger.addHandler(self._handler)  # from the start: restoring the state folder logs too
        self._logger.setLevel(logging.INFO)
        self._stopped = False
        fields = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
        try:
            self.service = BridgeService(load_settings(**fields), **collaborators)
        except BaseException:
            self.close()
            raise

    def start(self) -> "InProcessBridge":
        self.service.start()
        return self

    def output(self) -> str:
        self._handler.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        worker = getattr(self.service, "_worker", None)
        return not self._stopped and worker is not None and worker.is_alive()

    def terminate(self, timeout: float = 20) -> int:
        if not self._stopped:
            self._stopped = True
            if hasattr(self, "service"):
                self.service.stop()
        return 0

    def kill(self) -> None:
        self.terminate()

    def close(self) -> None:
        self.terminate()
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._level)
        self._handler.close()


def probing(broker):
    """A Probe of every topic on `broker`, closed when the generator resumes: the body of a
    `probe` fixture of any scope."""
    p = Probe(broker.host, broker.port)
    yield p
    p.close()


def plugged_in_sim():
    """A started cloud simulator with a car plugged in that takes up to 16 A, stopped when
    the generator resumes: the body of a `sim` fixture of any scope."""
    from bridge.sim.cloud import CloudSimulator

    with CloudSimulator() as s:
        c = s.connector(1)
        c.car_plugged = True
        c.car_max_a = 16
        yield s


def bridge_env(broker, sim, state_dir: Path, **extra: Any) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    env = {
        "P1_TOPIC_L1": f"p1-{tag}/current_l1",
        "P1_TOPIC_L2": f"p1-{tag}/current_l2",
        "P1_TOPIC_L3": f"p1-{tag}/current_l3",
        "CHARGEAMPS_EMAIL": sim.email,
        "CHARGEAMPS_PASSWORD": sim.password,
        "CHARGEAMPS_API_KEY": sim.api_key,
        "CHARGEAMPS_BASE_URL": sim.url,
        "CHARGEAMPS_STATE_DIR": str(state_dir),
        "CHARGEAMPS_POLL_INTERVAL": "10",
        "MQTT_HOST": broker.host,
        "MQTT_PORT": str(broker.port),
        "MQTT_CLIENT_ID": f"bridge-test-{tag}",
        "MQTT_BASE_TOPIC": f"ca-{tag}",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return {k: v for k, v in env.items() if v != ""}


# ---- shared by the fault tests --------------------------------------------------

# Short settings so that a fault test runs in seconds. A test that needs a short cloud
# backoff (5 s doubling to 300 s in production) runs an InProcessBridge and passes one.
FAULT_FAST = {
    "BALANCER_RAISE_HOLD_S": "1",
    "BALANCER_MIN_COMMAND_INTERVAL_S": "0",
    "BALANCER_STALE_AFTER_S": "3",
    "CHARGEAMPS_POLL_INTERVAL": "10",
}


def topic(env: dict, rest: str) -> str:
    return f"{env['MQTT_BASE_TOPIC']}/{rest}"


def feed_meter(probe: Probe, env: dict, l1: float, l2: float, l3: float) -> None:
    for n, v in enumerate((l1, l2, l3), start=1):
        probe.publish(env[f"P1_TOPIC_L{n}"], str(v))


def metered_until(probe: Probe, env: dict, bridge: Any, car: Callable[[], float], condition: Callable[[], bool],
                  what: str, house: Any = (4.0, 4.0, 4.0), timeout: float = 20.0) -> None:
    """Feed the meter every 0.25 s (the house on each phase plus the car's draw `car()`, as a meter
    sees a three-phase car) until `condition` holds; `house` may be a list the test changes meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached; bridge output:\n{bridge.output()[-3000:]}")
        draw = car()
        feed_meter(probe, env, house[0] + draw, house[1] + draw, house[2] + draw)
        time.sleep(0.25)


def wait_online(probe: Probe, env: dict, bridge: BridgeProcess, timeout: float = 15,
                since: float | None = None) -> None:
    try:
        probe.wait_value(topic(env, "bridge/state"), "online", timeout=timeout, since=since)
    except AssertionError:
        raise AssertionError(f"bridge did not come online; its output:\n{bridge.output()}") from None


def response_for(probe: Probe, env: dict, command_topic: str, since: float, timeout: float = 10) -> dict:
    return probe.wait_json(topic(env, "bridge/response"), lambda r: r["topic"] == command_topic,
                           timeout=timeout, since=since)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def rss_kb(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def max_current_writes(sim, since: float = 0.0) -> list[float]:
    """The maxCurrent values the cloud saw written, in order, after `since`."""
    return [w[4] for w in list(sim.writes) if w[3] == "maxCurrent" and w[0] >= since]
