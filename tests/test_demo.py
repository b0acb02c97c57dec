"""`chargeamps-bridge demo`: one command, its own broker when none answers, a
live line a second, a summary, and nothing left running."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from tests.broker import free_port
from tests.e2e import REPO_ROOT

pytestmark = pytest.mark.slow


def test_demo_starts_its_own_broker_runs_and_cleans_up(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHARGEAMPS_", "MQTT_", "P1_", "BALANCER_"))}
    env.update(MQTT_HOST="127.0.0.1", MQTT_PORT=str(free_port()),  # nothing answers there
               PYTHONPATH=str(REPO_ROOT), CHARGEAMPS_STATE_DIR=str(tmp_path / "state"))
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--scenario", "kitchen-spikes", "--speed", "30", "--duration", "6"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "started mosquitto" in out
    assert "mosquitto_sub -h 127.0.0.1" in out
    live = [line for line in out.splitlines() if line[:8].count(":") == 2 and line[2] == ":"]
    assert len(live) >= 3, out
    assert "Summary after" in out and "cloud writes" in out
    assert "Traceback" not in done.stderr
    # The demo's broker is gone: nothing listens on its port any more (other tests' demos may be
    # running their own brokers meanwhile, so no count of processes).
    port = int(re.search(r"started mosquitto on 127\.0\.0\.1:(\d+)", out).group(1))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_demo_rejects_a_bad_speed(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bridge", "demo", "--speed", "500"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 2
    assert "--speed" in done.stderr


def ocpp_demo(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`demo --transport ocpp --scenario kitchen-spikes ARGS` with its own broker, no setting of the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHARGEAMPS_", "MQTT_", "P1_", "BALANCER_", "OCPP_", "CHARGER_TRANSPORT"))}
    env.update(MQTT_HOST="127.0.0.1", MQTT_PORT=str(free_port()), PYTHONPATH=str(REPO_ROOT),
               CHARGEAMPS_STATE_DIR=str(tmp_path / "state"))
    return subprocess.run([sys.executable, "-m", "bridge", "demo", "--transport", "ocpp", "--scenario",
                           "kitchen-spikes", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90)


@pytest.mark.slow
def test_demo_with_a_simulated_ocpp_charger(tmp_path):
    done = ocpp_demo(tmp_path, "--speed", "30", "--duration", "8")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "charger lag 2 s" in out  # the local charger's lag by default
    summary = next(line for line in out.splitlines() if line.startswith("Summary after"))
    profiles = int(summary.rsplit("charging profiles ", 1)[1])
    assert profiles >= 2  # the fail-safe and at least one limit reached the charger over OCPP
    energy = float(summary.split("car energy ", 1)[1].split(" kWh")[0])
    assert energy > 0  # the simulated charger's car charged under the bridge
    assert "Traceback" not in done.stderr and "WARNING" not in done.stderr


@pytest.mark.slow
def test_demo_over_ocpp_with_three_cars_on_two_chargers(tmp_path):
    # --cars 3 over OCPP: an Aura's two outlets (DEMO-AURA, its second car plugging in two simulated
    # minutes in) and a one-phase car on a Halo (DEMO-HALO, four minutes in), each charger connected
    # to the bridge on its own WebSocket, all balanced on one fuse.
    done = ocpp_demo(tmp_path, "--cars", "3", "--speed", "60", "--duration", "12")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # A connector's row: "<cp>:<n> priority P ChargeAt A A charging|not charging <reason>".
    rows = [line.split() for line in out.splitlines() if line.startswith(" ") and "ChargeAt" in line]
    charging = {fields[0] for fields in rows if fields[6] == "charging"}
    assert charging == {"DEMO-AURA:1", "DEMO-AURA:2", "DEMO-HALO:1"}, out
    summary = next(line for line in out.splitlines() if line.startswith("Summary after"))
    assert int(summary.rsplit("charging profiles ", 1)[1]) >= 6  # a fail-safe and a limit for each connector
    assert float(summary.split("car energy ", 1)[1].split(" kWh")[0]) > 0
    assert "Traceback" not in done.stderr and "WARNING" not in done.stderr
