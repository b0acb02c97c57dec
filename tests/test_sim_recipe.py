"""`simulate-cloud` as a new user runs it: an account with a car plugged in, a meter the simulator
publishes itself, and `run` against both; the five-command recipe "against the simulator" ends in
a real cut. Subprocesses for both commands, a real broker, `mosquitto_pub` for the last command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from bridge.sim.cloud import (
    ACCOUNTS, AURA_CHARGEPOINT_ID, DEFAULT_CHARGEPOINT_ID, SECOND_HALO_ID, build_account, main, parse_car,
)
from bridge.sim.house_meter import HouseMeter, parse_house_a
from tests.broker import free_port, wait_for_port
from tests.e2e import REPO_ROOT, BridgeProcess, Probe, wait_until


def simulate_cloud(*args: str, log) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHARGEAMPS_", "MQTT_", "P1_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "bridge", "simulate-cloud", *args], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="the recipe's last command is mosquitto_pub")
def test_the_recipe_against_the_simulator_charges_a_car_and_cuts_it(broker, tmp_path):
    tag = uuid.uuid4().hex[:6]
    device, base, port = f"p1-{tag}", f"ca-{tag}", free_port()
    cp = DEFAULT_CHARGEPOINT_ID
    # 2. chargeamps-bridge simulate-cloud --car 1 --meter-topic p1 --house-a 3
    sim_log = open(tmp_path / "simulate-cloud.log", "wb")
    sim = simulate_cloud("--port", str(port), "--car", "1", "--meter-topic", device, "--house-a", "3",
                         "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), log=sim_log)
    probe = Probe(broker.host, broker.port)
    bridge = None
    try:
        wait_for_port("127.0.0.1", port)
        meter_l1 = f"{device}/sensor/current_phase_1/state"
        # The car takes its 16 A from the start: the meter shows the house's 3 A and the car's.
        probe.wait_for(meter_l1, lambda p: float(p) == 19, timeout=10)
        # 3. the bridge with the settings simulate-cloud printed, and the meter's preset
        bridge = BridgeProcess({
            "CHARGEAMPS_BASE_URL": f"http://127.0.0.1:{port}", "CHARGEAMPS_EMAIL": "demo@example.invalid",
            "CHARGEAMPS_PASSWORD": "demo-password", "CHARGEAMPS_API_KEY": "demo-api-key-0000",
            "P1_PRESET": "esphome-dsmr", "P1_DEVICE": device,
            "MQTT_HOST": broker.host, "MQTT_PORT": str(broker.port), "MQTT_BASE_TOPIC": base,
            "MQTT_CLIENT_ID": f"recipe-{tag}", "CHARGEAMPS_STATE_DIR": str(tmp_path / "state"),
            "PYTHONUNBUFFERED": "1",
        }, tmp_path).start()
        # 4. what mosquitto_sub -v -t 'chargeamps/#' shows: the bridge sees the car charging
        state = probe.wait_json(f"{base}/balancer/state",
                                lambda s: not s["waiting_for_meter"] and s["charge_at"] == 16, timeout=40)
        assert state["phase_currents"] == [19, 19, 19]
        # 5. mosquitto_pub -t p1/house_a/set -m 12: the house takes 12 A, 28 A with the car: over MaxA 24
        t = time.monotonic()
        subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port),
                        "-t", f"{device}/house_a/set", "-m", "12"], check=True, timeout=10)
        cut = probe.wait_json(f"{base}/balancer/state", lambda s: 6 <= s["charge_at"] <= 12, since=t, timeout=20)
        assert "28.0 A" in cut["reason"], cut["reason"]
        probe.wait_value(f"{base}/charger/{cp}/1/max_current", str(cut["charge_at"]), since=t, timeout=20)
        probe.wait_for(meter_l1, lambda p: float(p) <= 24, since=t, timeout=10)  # the fuse is safe again
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- bridge:\n{bridge.output()[-3000:] if bridge else ''}\n--- simulate-cloud:\n"
                             f"{(tmp_path / 'simulate-cloud.log').read_text(errors='replace')[-2000:]}") from None
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.close()
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(5)
        sim_log.close()
        probe.close()
    assert sim.returncode == 0


def test_the_meter_adds_the_cars_draws_to_the_house_and_takes_a_new_house_load(broker):
    tag = uuid.uuid4().hex[:6]
    sim = build_account(ACCOUNTS["aura"], dict(parse_car(c, ACCOUNTS["aura"]) for c in ("1", "2:10")))
    probe = Probe(broker.host, broker.port, subscribe=f"m-{tag}/#")
    with sim:
        meter = HouseMeter(sim.draws, f"m-{tag}", (3, 4, 5), broker.host, broker.port, interval_s=0.2).start()
        try:
            # Two cars on the Aura: 16 A and 10 A on every phase, the house 3/4/5 A.
            probe.wait_for(f"m-{tag}/sensor/current_phase_1/state", lambda p: float(p) == 29)
            probe.wait_for(f"m-{tag}/sensor/current_phase_3/state", lambda p: float(p) == 31)
            probe.wait_for(f"m-{tag}/sensor/power_consumed_phase_1/state",
                           lambda p: float(p) == pytest.approx(29 * 230 / 1000))
            t = time.monotonic()
            probe.publish(f"m-{tag}/house_a/set", "garbage")  # refused: the load stays
            probe.publish(f"m-{tag}/house_a/set", "1,2,3")
            probe.wait_for(f"m-{tag}/sensor/current_phase_2/state", lambda p: float(p) == 28, since=t)
            assert meter.house_a == (1, 2, 3)
            sim.connector(2, AURA_CHARGEPOINT_ID).max_current = 0  # paused: that car takes nothing
            probe.wait_for(f"m-{tag}/sensor/current_phase_1/state", lambda p: float(p) == 17, since=t)
        finally:
            meter.stop()
            probe.close()


@pytest.mark.parametrize("text, expected", [
    ("1", ((DEFAULT_CHARGEPOINT_ID, 1), 16.0)),
    ("1:11", ((DEFAULT_CHARGEPOINT_ID, 1), 11.0)),
    (f"{DEFAULT_CHARGEPOINT_ID}:1:6", ((DEFAULT_CHARGEPOINT_ID, 1), 6.0)),
])
def test_car_option(text, expected):
    where, car = parse_car(text, ACCOUNTS["halo"])
    assert (where, car.max_a) == expected


@pytest.mark.parametrize("argv, says", [
    (["--car", "2"], "Schuko"),
    (["--car", "3"], "no connector 3"),
    (["--car", "1:40"], "MAX_A"),
    (["--car", "one"], "CONNECTOR[:MAX_A]"),
    (["--account", "halo", "--car", f"{SECOND_HALO_ID}:1"], "CONNECTOR[:MAX_A]"),
    (["--house-a", "70"], "0 to 63"),
    (["--house-a", "1,2"], "three"),
    (["--firmware", "ocpp2"], "invalid choice"),
    (["--account", "garage"], "invalid choice"),
])
def test_bad_options_are_refused_with_a_message(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--port", "0", *argv])
    assert exit_.value.code == 2 and says in capsys.readouterr().err


def test_house_load_parsing():
    assert parse_house_a("3") == (3, 3, 3) and parse_house_a(" 1, 2.5 ,3") == (1, 2.5, 3)
    with pytest.raises(ValueError):
        parse_house_a("nan")


def test_the_accounts_and_their_firmware():
    for name, specs in ACCOUNTS.items():
        for firmware in ("ocpp", "capi"):
            sim = build_account(specs, firmware=firmware)
            assert [cp.id for cp in sim.charge_points.values()] == [s.cp_id for s in specs], name
            assert {cp.firmware for cp in sim.charge_points.values()} == {firmware}
    aura = build_account(ACCOUNTS["aura"]).charge_points[AURA_CHARGEPOINT_ID]
    assert [c.type for c in aura.connectors.values()] == ["Charger", "Charger"]


def test_what_simulate_cloud_prints(capsys):
    import threading

    from bridge.sim.cloud import serve

    stop = threading.Event()
    stop.set()
    sim = build_account(ACCOUNTS["aura+halo"], {(SECOND_HALO_ID, 1): parse_car("1:10", ACCOUNTS["halo"])[1]},
                        firmware="capi")
    serve(sim, stop=stop)
    out = capsys.readouterr().out
    assert f"charge point {SECOND_HALO_ID} (Halo, CAPI firmware): connector 1 Charger, a car up to 10 A" in out
    assert f"charge point {AURA_CHARGEPOINT_ID} (Aura, CAPI firmware)" in out
    assert "CHARGEAMPS_API_KEY=demo-api-key-0000" in out
