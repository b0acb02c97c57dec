"""Every command of examples/COOKBOOK.md, run as written against a real broker
with the bridge (default base topic, the simulator's charge point) behind it."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from bridge.sim.cloud import CloudSimulator
from tests.e2e import BridgeProcess, Probe, bridge_env, wait_online

COOKBOOK = Path(__file__).resolve().parents[1] / "examples" / "COOKBOOK.md"


def cookbook_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", COOKBOOK.read_text(), flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_cookbook_has_commands_for_every_tool():
    tools = {shlex.split(c)[0] for c in cookbook_commands()}
    assert tools == {"mosquitto_pub", "mosquitto_sub", "mosquitto_rr"}


@pytest.fixture(scope="module")
def running_bridge(tmp_path_factory):
    from tests.broker import MosquittoBroker

    broker = MosquittoBroker().start()
    sim = CloudSimulator().start()
    sim.connector(1).car_plugged = True
    work = tmp_path_factory.mktemp("cookbook")
    env = bridge_env(broker, sim, work / "state", MQTT_BASE_TOPIC="chargeamps", HA_DISCOVERY="true",
                     BALANCER_RAISE_HOLD_S="1", BALANCER_MIN_COMMAND_INTERVAL_S="0")
    for n in (1, 2, 3):
        env.pop(f"P1_TOPIC_L{n}")  # the defaults p1/current_lN, as the cookbook uses them
    bridge = BridgeProcess(env, work).start()
    probe = Probe(broker.host, broker.port)
    wait_online(probe, env, bridge)
    probe.wait_value(f"chargeamps/charger/{sim.chargepoint_id}/online", "ON", timeout=15)
    for n in (1, 2, 3):
        probe.publish(f"p1/current_l{n}", "5")
    yield broker, sim, bridge, probe
    probe.close()
    bridge.close()
    sim.stop()
    broker.close()


@pytest.mark.parametrize("command", cookbook_commands())
def test_cookbook_command_works_as_written(running_bridge, command):
    broker, sim, bridge, probe = running_bridge
    argv = shlex.split(command)
    assert "-h" in argv and argv[argv.index("-h") + 1] == "localhost", "cookbook commands name the broker"
    argv[argv.index("-h") + 1] = broker.host
    argv[1:1] = ["-p", str(broker.port)]
    for n in (1, 2, 3):  # keep the meter fresh so the bridge is in its normal state
        probe.publish(f"p1/current_l{n}", "5")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, f"{command!r} exited {done.returncode}: {done.stderr}"
    if argv[0] in ("mosquitto_sub", "mosquitto_rr"):
        assert done.stdout.strip(), f"{command!r} printed nothing"
    if argv[0] == "mosquitto_rr":
        assert '"status"' in done.stdout
    assert bridge.alive(), bridge.output()
    time.sleep(0.05)
