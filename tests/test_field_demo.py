"""`chargeamps-bridge demo` beside a running installation: its own base topic and meter
topics, no Home Assistant discovery unless asked, nothing retained left behind (also after
Ctrl-C); and the Quick start's command shows balancing, with a summary that agrees with
the table."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from bridge.mqtt.client import read_retained
from tests.broker import free_port
from tests.e2e import REPO_ROOT, Probe, wait_until

pytestmark = pytest.mark.slow

# time, L1, L2, L3, ChargeAt, LoadBal, car
ROW = re.compile(r"^(\d\d:\d\d:\d\d)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s")
SUMMARY = re.compile(r"Summary after (\d\d:\d\d:\d\d) simulated, (\d\d:\d\d:\d\d) to (\d\d:\d\d:\d\d):")


def seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


def demo_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHARGEAMPS_", "MQTT_", "P1_", "BALANCER_", "HA_"))}
    env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", **settings)
    return env


class Demo:
    """The demo as a subprocess whose output lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str], cwd) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge", "demo", *args], env=env, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def rows(self) -> list[re.Match]:
        return [m for m in map(ROW.match, list(self.lines)) if m]

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        rc = self.proc.wait(timeout)
        self._reader.join(10)
        return rc, self.proc.stderr.read()


def test_quick_start_demo_shows_balancing_and_its_summary_matches_the_table(tmp_path):
    command = next(line for line in (REPO_ROOT / "README.md").read_text().splitlines()
                   if line.startswith("chargeamps-bridge demo "))
    args = shlex.split(command)[2:]
    speed, duration = float(args[args.index("--speed") + 1]), float(args[args.index("--duration") + 1])
    # The same stretch of simulated time, run six times faster than the README's command.
    fast = 60.0
    args[args.index("--speed") + 1] = f"{fast:g}"
    args[args.index("--duration") + 1] = f"{duration * speed / fast:g}"
    demo = Demo(args, demo_env(MQTT_HOST="127.0.0.1", MQTT_PORT=str(free_port())), tmp_path)
    rc, err = demo.finish()
    out = "\n".join(demo.lines)
    assert rc == 0, err
    rows = demo.rows()
    # Full power first, then a phase over MaxA makes the balancer cut below it.
    full = next(i for i, r in enumerate(rows) if int(r[5]) == 16)
    cuts = [r for r in rows[full:] if 6 <= int(r[5]) < 16 and float(r[6]) > 0]
    assert cuts, out
    summary = SUMMARY.search(out)
    assert summary, out
    span, first, last = (seconds(x) for x in summary.groups())
    assert seconds(rows[-1][1]) == last and span == last - first, out
    assert seconds(rows[0][1]) >= first
    assert abs(span - speed * duration) <= 0.1 * speed * duration, out


def test_demo_on_a_running_installations_broker_keeps_to_its_own_topics_and_cleans_up_on_ctrl_c(broker, tmp_path):
    tag = uuid.uuid4().hex[:6]
    # The settings of the bridge that runs on this broker: the demo must not touch its topics.
    installed = dict(MQTT_HOST=broker.host, MQTT_PORT=str(broker.port), MQTT_BASE_TOPIC=f"home-{tag}",
                     P1_TOPIC_L1=f"meter-{tag}/l1", P1_TOPIC_L2=f"meter-{tag}/l2", P1_TOPIC_L3=f"meter-{tag}/l3",
                     HA_DISCOVERY="true", HA_DISCOVERY_PREFIX=f"ha-{tag}")
    probe = Probe(broker.host, broker.port)
    try:
        demo = Demo(["--scenario", "kitchen-spikes", "--speed", "30"], demo_env(**installed), tmp_path)
        wait_until(lambda: len(demo.rows()) >= 3 or demo.proc.poll() is not None, 60, "three rows of the demo")
        demo.proc.send_signal(signal.SIGINT)
        rc, err = demo.finish(60)
        assert rc == 0 and "Traceback" not in err, err
        assert any(line.startswith("Summary after") for line in demo.lines), demo.lines
        # What was published while the probe listened (the shared broker holds other tests' retained topics).
        topics = {t for _, t, _, retained in list(probe.messages) if not retained}
        assert "chargeamps-demo/bridge/state" in topics and "chargeamps-demo/meter-sim/current_l1" in topics
        ours = [t for t in topics if t.startswith((f"home-{tag}/", f"meter-{tag}/", f"ha-{tag}/"))]
        assert ours == []
        assert not [t for t in topics if t.startswith("homeassistant/")]
        assert read_retained(broker.host, broker.port, ["chargeamps-demo/#"]) == {}
    finally:
        probe.close()


def test_demo_with_ha_discovery_removes_its_entities_when_it_ends(broker, tmp_path):
    tag = uuid.uuid4().hex[:6]
    prefix = f"ha-{tag}"
    probe = Probe(broker.host, broker.port, subscribe=f"{prefix}/#")
    try:
        demo = Demo(["--scenario", "kitchen-spikes", "--speed", "30", "--duration", "5", "--ha-discovery"],
                    demo_env(MQTT_HOST=broker.host, MQTT_PORT=str(broker.port), HA_DISCOVERY_PREFIX=prefix),
                    tmp_path)
        rc, err = demo.finish(60)
        assert rc == 0, err
        configs = {m[1] for m in list(probe.messages) if m[2]}
        assert configs and all(t.startswith(f"{prefix}/") and "/chargeamps-demo/" in t for t in configs)
        assert read_retained(broker.host, broker.port, [f"{prefix}/#", "chargeamps-demo/#"]) == {}
    finally:
        probe.close()
