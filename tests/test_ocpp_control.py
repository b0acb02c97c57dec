"""The central system against the simulated charger on loopback: control, reading, commands.

Both ends are the `ocpp` library (the bridge as central system, the simulator as charge point)
over real WebSockets; nothing is mocked.
"""

from __future__ import annotations

import pytest

from bridge.ocpp import events as ev
from bridge.ocpp.profiles import (
    TX_DEFAULT_ON_CHARGE_POINT,
    TX_DEFAULT_ON_CONNECTOR,
    TX_PROFILE,
    composite_limit,
)
from bridge.sim.ocpp_charger import Behaviour
from tests.ocpp_helpers import sim_for, start_central, wait_until


@pytest.fixture
def world():
    """`start(identities, **central_kw)` and `charger(central, identity, **sim_kw)`; all stopped after."""
    centrals, sims = [], []

    class World:
        def start(self, identities=("CP1",), **kw):
            central, events = start_central(identities, **kw)
            centrals.append(central)
            return central, events

        def charger(self, central, identity="CP1", **kw):
            sim = sim_for(central, identity, **kw).start_in_thread()
            sims.append(sim)
            return sim

        def charging(self, central, events, amps, **kw):
            """A charger whose car draws `amps` under the bridge's limit."""
            sim = self.charger(central, **kw)
            events.wait(ev.TransactionChanged, cp="CP1", connector=1)
            assert central.set_current("CP1", 1, amps).result(5) is True
            wait_until(lambda: sim.draw(1) == amps, what=f"the car drawing {amps} A")
            return sim

    yield World()
    for s in sims:
        s.stop()
    for c in centrals:
        c.stop()


def test_generic_charger_takes_a_connector_default_profile_and_the_car_follows(world):
    central, events = world.start()
    sim = world.charger(central)
    booted = events.wait(ev.Booted, cp="CP1")
    assert (booted.vendor, booted.model, booted.firmware) == ("Sim", "Sim", "sim")
    assert central.set_current("CP1", 1, 10).result(5) is True
    assert events.wait(ev.ControlLearned, cp="CP1").method == TX_DEFAULT_ON_CONNECTOR
    wait_until(lambda: sim.draw(1) == 10, what="the car draws 10 A")
    # The profile under the limit is the fail-safe: no end, a lower stack level.
    purposes = {(p.stack_level, p.duration_s is None, p.connector) for p in sim.profiles}
    assert purposes == {(0, True, 1), (1, False, 1)}
    # The per-phase currents come back in MeterValues.
    events.wait(ev.MeterReading, cp="CP1", connector=1, currents=(10.0, 10.0, 10.0))


def test_boot_sets_the_meter_interval_and_measurands(world):
    central, events = world.start(meter_interval_s=7)
    sim = world.charger(central, profile="charge-amps")
    assert sim.config["MeterValueSampleInterval"] == "30"  # as a Charge Amps charger starts
    wait_until(lambda: sim.config["MeterValueSampleInterval"] == "7", what="the interval set at boot")
    wait_until(lambda: sim.config["MeterValuesSampledData"]
               == "Current.Import,Power.Active.Import,Energy.Active.Import.Register", what="the measurands")


def test_asks_for_fewer_measurands_when_the_charger_takes_fewer(world):
    central, events = world.start()
    sim = world.charger(central, sampled_data_max_length=1)
    wait_until(lambda: sim.config["MeterValuesSampledData"] == "Current.Import", what="only the currents")
    events.wait(ev.MeterReading, cp="CP1", connector=1, power_w=None, energy_wh=None)


def test_charge_amps_reports_connectors_0_1_2_and_takes_the_connector_default(world):
    central, events = world.start()
    sim = world.charger(central, profile="charge-amps")
    for connector in (0, 1, 2):
        events.wait(ev.StatusChanged, cp="CP1", connector=connector)
    assert central.set_current("CP1", 1, 8).result(5) is True
    assert central.method_of("CP1") == TX_DEFAULT_ON_CONNECTOR
    wait_until(lambda: sim.draw(1) == 8, what="the car draws 8 A")


def test_halo_169_takes_only_a_tx_profile_and_that_is_remembered(world):
    central, events = world.start()
    sim = world.charger(central, profile="charge-amps-169")
    events.wait(ev.TransactionChanged, cp="CP1", connector=1)
    assert central.set_current("CP1", 1, 12).result(5) is True
    assert events.wait(ev.ControlLearned, cp="CP1").method == TX_PROFILE
    wait_until(lambda: sim.draw(1) == 12, what="the car draws 12 A")
    tried = [(p["chargingProfilePurpose"] if "chargingProfilePurpose" in p else p["charging_profile_purpose"], c)
             for _, c, p in sim.received]
    assert tried[:3] == [("TxDefaultProfile", 1), ("TxDefaultProfile", 0), ("TxProfile", 1)]
    # Remembered: the next limit goes straight to the TxProfile.
    before = len(sim.received)
    assert central.set_current("CP1", 1, 7).result(5) is True
    assert [c for _, c, _ in sim.received[before:]] == [1]
    wait_until(lambda: sim.draw(1) == 7, what="the car draws 7 A")


def purposes_sent(sim, since: int = 0) -> list[tuple[str, int]]:
    return [(p.get("chargingProfilePurpose", p.get("charging_profile_purpose")), c) for _, c, p in sim.received[since:]]


def test_a_method_known_from_before_is_used_without_probing(world):
    # As after a restart: the state folder says this Halo 169 takes a TxProfile.
    central, events = world.start(methods={"CP1": TX_PROFILE})
    sim = world.charger(central, profile="charge-amps-169")
    events.wait(ev.TransactionChanged, cp="CP1", connector=1)
    assert central.set_current("CP1", 1, 11).result(5) is True
    wait_until(lambda: sim.draw(1) == 11, what="the car draws 11 A")
    sent = purposes_sent(sim)  # the fail-safe and the limit (sent again, as at the transaction's start)
    assert len(sent) >= 2 and set(sent) == {("TxProfile", 1)}
    assert events.of(ev.ControlLearned) == []


def test_a_known_method_the_charger_refuses_is_probed_again(world):
    # Remembered as a connector default, but the charger (a firmware update, say) takes only a TxProfile.
    central, events = world.start(methods={"CP1": TX_DEFAULT_ON_CONNECTOR, "CP9": "a method of no bridge"})
    sim = world.charger(central, profile="charge-amps-169")
    events.wait(ev.TransactionChanged, cp="CP1", connector=1)
    assert central.method_of("CP9") is None
    assert central.set_current("CP1", 1, 9).result(5) is True
    assert events.wait(ev.ControlLearned, cp="CP1").method == TX_PROFILE
    wait_until(lambda: sim.draw(1) == 9, what="the car draws 9 A")
    # The refused one, then the probe from the first: connector, connector 0, the transaction.
    assert purposes_sent(sim)[:4] == [("TxDefaultProfile", 1), ("TxDefaultProfile", 1), ("TxDefaultProfile", 0),
                                      ("TxProfile", 1)]
    before = len(sim.received)
    assert central.set_current("CP1", 1, 7).result(5) is True
    assert purposes_sent(sim, before) == [("TxProfile", 1)]


def test_a_charger_with_only_a_charge_point_default_is_limited_on_connector_0(world):
    central, events = world.start()
    only_zero = Behaviour({"TxDefaultProfile": "Accepted", "TxProfile": "Rejected"}, tx_default_on_connector=False)
    sim = world.charger(central, behaviour=only_zero)
    events.wait(ev.TransactionChanged, cp="CP1", connector=1)
    assert central.set_current("CP1", 1, 9).result(5) is True
    assert central.method_of("CP1") == TX_DEFAULT_ON_CHARGE_POINT
    wait_until(lambda: sim.draw(1) == 9, what="the car draws 9 A")
    assert {p.connector for p in sim.profiles} == {0}


def test_a_charger_that_accepts_no_profile_is_an_error_naming_it(world):
    central, events = world.start(("CP1", "CP2"))
    world.charger(central, "CP1", behaviour=Behaviour({}))
    other = world.charger(central, "CP2")
    events.wait(ev.TransactionChanged, cp="CP1", connector=1)
    assert central.set_current("CP1", 1, 10).result(5) is False
    error = events.wait(ev.NotControllable, cp="CP1")
    assert "CP1" in error.message
    assert central.set_current("CP1", 1, 8).result(5) is False
    assert len(events.of(ev.NotControllable)) == 1  # said once
    # The other charger is still controlled.
    assert central.set_current("CP2", 1, 10).result(5) is True
    wait_until(lambda: other.draw(1) == 10, what="the other car draws 10 A")


def test_a_pause_is_a_zero_amp_profile_never_a_remote_stop(world):
    central, events = world.start()
    sim = world.charging(central, events, 16)
    assert central.set_current("CP1", 1, 0).result(5) is True
    wait_until(lambda: sim.draw(1) == 0, what="paused")
    assert 1 in sim.transactions  # the session goes on
    assert sim.status[1] == "SuspendedEVSE" or wait_until(lambda: sim.status[1] == "SuspendedEVSE")
    assert central.set_current("CP1", 1, 6).result(5) is True
    wait_until(lambda: sim.draw(1) == 6, what="resumed")


@pytest.mark.slow
def test_the_limit_is_renewed_before_its_duration_ends(world):
    central, events = world.start(profile_ttl_s=1.5)
    sim = world.charger(central)
    events.wait(ev.TransactionChanged, cp="CP1", connector=1)
    assert central.set_current("CP1", 1, 10).result(5) is True
    first = len(sim.received)
    wait_until(lambda: len(sim.received) >= first + 3, timeout=5, what="three renewals")
    # Never a moment without the limit: each renewal came before the previous one ran out.
    times = [t for t, _, p in sim.received[first - 1:]]
    assert max(b - a for a, b in zip(times, times[1:])) < 1.5
    assert sim.draw(1) == 10


@pytest.mark.slow
def test_without_the_bridge_the_charger_falls_to_the_failsafe_within_the_ttl(world):
    import time

    ttl = 2.0
    central, events = world.start(profile_ttl_s=ttl, failsafe_a=6)
    sim = world.charging(central, events, 16)
    # The last renewal may have just happened: the limit ends within the TTL of stopping.
    central.stop()
    gone = time.monotonic()
    wait_until(lambda: sim.draw(1) == 6, timeout=ttl + 3, what="the fail-safe current")
    assert time.monotonic() - gone <= ttl + sim.cars[1].lag_s + 0.5
    assert not sim.connected.is_set()


def test_mode_off_and_on_is_change_availability_and_reboot_is_a_soft_reset(world):
    central, events = world.start()
    sim = world.charging(central, events, 10)
    assert central.set_available("CP1", 1, False).result(5) is True
    wait_until(lambda: sim.draw(1) == 0, what="off")
    events.wait(ev.StatusChanged, cp="CP1", connector=1, status="Unavailable")
    assert central.set_available("CP1", 1, True).result(5) is True
    wait_until(lambda: sim.draw(1) == 10, what="on again")
    assert central.reset("CP1").result(5) is True
    wait_until(lambda: sim.connections == 2, what="the charger back after its reset")
    assert sim.resets == 1


@pytest.mark.slow
def test_a_silent_connector_is_asked_with_trigger_message(world):
    central, events = world.start(meter_interval_s=1)
    sim = world.charger(central, sends_meter_values=False)
    wait_until(lambda: ("MeterValues", 1) in sim.triggered, timeout=6, what="a TriggerMessage for connector 1")
    events.wait(ev.MeterReading, cp="CP1", connector=1)


def test_limits_set_while_a_charger_is_away_are_sent_when_it_boots(world):
    central, events = world.start()
    central.set_current("CP1", 1, 11)
    sim = world.charger(central)
    wait_until(lambda: sim.draw(1) == 11, what="the car draws the limit set before it came")
    from datetime import datetime, timezone

    assert composite_limit(sim.profiles, 1, datetime.now(timezone.utc), sim.transactions.get(1)) == 11


@pytest.mark.slow
def test_the_simulate_charger_command_connects_and_follows(world, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    central, events = world.start(("CLI1",), password="cli-pass")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OCPP_PASSWORD": "cli-pass"}
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "simulate-charger", f"ws://127.0.0.1:{central.port}",
                             "--identity", "CLI1", "--profile", "charge-amps", "--car", "1:16", "--lag-s", "0.2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        events.wait(ev.Booted, cp="CLI1", vendor="Charge Amps")
        events.wait(ev.TransactionChanged, cp="CLI1", connector=1)
        assert central.set_current("CLI1", 1, 8).result(5) is True
        events.wait(ev.MeterReading, cp="CLI1", connector=1, currents=(8.0, 8.0, 8.0), timeout=15)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert "cli-pass" not in out


def test_the_simulate_charger_command_refuses_a_bad_car():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "bridge", "simulate-charger", "ws://127.0.0.1:1", "--car", "1:99"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "the car's maximum is 1..32 A" in result.stderr
