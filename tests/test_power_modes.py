"""The charge modes' controller and the capacity cap (bridge/balancer/power.py): pure, time passed in."""

from __future__ import annotations

import pytest

from bridge.balancer.power import CapacityCap, SurplusConfig, SurplusController, check_charge_mode, combine

V = 230.0


def run(ctrl: SurplusController, mode: str, house_net_w, seconds: range, phases: int = 3, car_a=None):
    """Steps once a second; the car draws what it was last capped at (None: nothing). Returns the caps."""
    caps = []
    cap = 0
    for t in seconds:
        car_w = (cap or 0) * phases * V if car_a is None else car_a * phases * V
        cap, _why = ctrl.step(float(t), house_net_w(t) + car_w, car_w, mode, phases, V, 6, 16)
        caps.append(cap)
    return caps


def test_pv_starts_after_the_enable_delay_follows_and_stops_after_the_disable_delay():
    ctrl = SurplusController(SurplusConfig(window_s=10, enable_delay_s=60, disable_delay_s=30, raise_interval_s=0))
    # 6 kW of export: 8.7 A on three phases.
    caps = run(ctrl, "pv", lambda t: -6000.0, range(0, 100))
    assert caps[:59] == [0] * 59 and caps[70] == 8
    # The export falls to 2 kW (below the 4.1 kW of 6 A x 3): the minimum for 30 s, then stop.
    caps = run(ctrl, "pv", lambda t: -2000.0, range(100, 160))
    assert 6 in caps[:25] and caps[-1] == 0
    stop = caps.index(0)
    assert 25 <= stop <= 45


def test_one_phase_car_starts_at_1_4_kw_and_three_phase_at_4_1_kw():
    for phases, enough, short in ((1, -1450.0, -1300.0), (3, -4200.0, -4000.0)):
        for export, starts in ((enough, True), (short, False)):
            ctrl = SurplusController(SurplusConfig(window_s=5, enable_delay_s=10))
            caps = run(ctrl, "pv", lambda t, e=export: e, range(0, 30), phases=phases)
            assert (caps[-1] >= 6) is starts, (phases, export)


def test_minpv_never_below_the_minimum_off_pauses_fast_leaves_it():
    ctrl = SurplusController(SurplusConfig(window_s=5, raise_interval_s=0))
    assert set(run(ctrl, "minpv", lambda t: 500.0, range(0, 20))) == {6}
    assert run(ctrl, "minpv", lambda t: -8000.0, range(20, 40))[-1] == 11
    assert run(ctrl, "off", lambda t: -8000.0, range(40, 45)) == [0] * 5
    assert run(ctrl, "fast", lambda t: -8000.0, range(45, 50)) == [None] * 5


def test_pv_raises_wait_for_the_raise_interval_but_cuts_do_not():
    ctrl = SurplusController(SurplusConfig(window_s=1, enable_delay_s=0, raise_interval_s=120))
    assert run(ctrl, "pv", lambda t: -4500.0, range(0, 2))[-1] == 6
    assert run(ctrl, "pv", lambda t: -7000.0, range(2, 60))[-1] == 6  # more sun: the raise waits
    assert run(ctrl, "pv", lambda t: -7000.0, range(60, 125))[-1] == 10
    assert run(ctrl, "pv", lambda t: -5000.0, range(125, 127))[-1] == 7  # less sun: cut at once


def test_capacity_cap_dead_band_and_raise_hold():
    cap = CapacityCap(raise_hold_s=120)
    assert cap.step(0, 10 * 3 * V, 3, V, 16) == 10
    assert cap.step(1, 9.2 * 3 * V, 3, V, 16) == 10  # within the 1 A dead band
    assert cap.step(2, 8.5 * 3 * V, 3, V, 16) == 8  # beyond it: cut at once
    assert cap.step(3, 12 * 3 * V, 3, V, 16) == 8  # a raise waits 120 s from the last change
    assert cap.step(130, 12 * 3 * V, 3, V, 16) == 11
    assert cap.step(131, 40 * 3 * V, 3, V, 16) is None or cap.step(300, 40 * 3 * V, 3, V, 16) is None
    assert cap.step(400, None, 3, V, 16) is None


def test_combine_and_check_charge_mode():
    assert combine(8, "capacity", 6, "pv") == (6, "pv")
    assert combine(None, "", 6, "pv") == (6, "pv")
    assert combine(None, "", None, "") == (None, "")
    assert check_charge_mode(" PV ") == "pv"
    with pytest.raises(ValueError, match="fast, pv, minpv, off"):
        check_charge_mode("solar")


# ---- a pv car behind a lagging charger, replayed second by second --------------------------------
#
# The service's feed (bridge/service/power_limits.py): the meter's net power, and the car's draw as
# the balancer reads it (`Balancer.car_draw`: the charger's report once a write settled, or the
# setting the meter showed the car follow; in doubt while a write is on its way), the charger polled
# every 30 s. The car follows each write 10 s later (bridge.sim.charger.ChargerModel).

POLL_S = 30


def replay_pv(export_w, seconds: int, cfg: SurplusConfig, phases=(True, True, True), lag_s: float = 10.0,
              mode: str = "pv"):
    """(writes as (t, amps), the net power (W) each second)."""
    from bridge.balancer import Balancer, BalancerConfig
    from bridge.sim.charger import ChargerModel

    b = Balancer(BalancerConfig(max_a=24, fuse_a=25), strategy="adaptive")
    car = ChargerModel(lag_s=lag_s, phases=phases)
    ctrl = SurplusController(cfg)
    n = sum(phases)
    b.commanded(0.0, 0)
    writes, net = [], []
    for t in range(seconds):
        now = float(t)
        draw = car.phase_draw(now)
        house = -export_w(t) / 3 / V
        for p in range(3):
            b.meter(now, p, house + draw[p])
        if t % POLL_S == 0:
            b.charger(now, draw, phases)
        net_w = sum(house + d for d in draw) * V
        car_draw, in_doubt = b.car_draw(now)
        cap, why = ctrl.step(now, net_w, None if in_doubt else sum(car_draw) * V, mode, n, V, 6, 16)
        b.power_limit(now, cap, why)
        d = b.decide(now)
        if d.command is not None:
            car.write(now, d.command)
            b.commanded(now, d.command)
            writes.append((t, d.command))
        net.append(net_w)
    return writes, net


SHORT = SurplusConfig(window_s=5, enable_delay_s=5, disable_delay_s=5)


@pytest.mark.parametrize("phases, export", [((True, True, True), 5000.0), ((True, False, False), 2500.0)])
def test_a_steady_export_with_short_delays_gives_one_start_and_no_stop(phases, export):
    """The car's own draw is counted from the moment the meter shows it follow (three phases) or its
    write has settled, not from the next report: a start does not read as the house's load."""
    writes, net = replay_pv(lambda t: export, 900, SHORT, phases=phases)
    starts = [w for w in writes if w[1] >= 6]
    assert len(starts) == 1 and not [w for w in writes if w[1] < 6], writes
    assert max(net) <= 0.0, max(net)  # never imports (PV_IMPORT_ALLOWANCE_W = 0)


def test_a_steady_6_kw_export_with_the_defaults_starts_at_8_a_and_stays():
    writes, net = replay_pv(lambda t: 6000.0, 900, SurplusConfig())
    assert [a for _t, a in writes] == [8], writes
    assert max(net) <= 0.0


def test_a_start_takes_the_latest_reading_when_it_has_less_than_the_window():
    """The export falls just before the enable delay ends: the window still averages 6 kW, the
    latest reading says 4.5 kW; the start takes 6 A (4.1 kW), not 8 A (5.5 kW, importing)."""
    writes, net = replay_pv(lambda t: 6000.0 if t < 58 else 4500.0, 300, SurplusConfig())
    assert writes and writes[0][1] == 6, writes
    assert max(net[writes[0][0]:]) <= 0.0


def test_a_shared_pv_car_with_short_delays_starts_once_and_stays():
    """Two connectors on one fuse, one car in pv: the shared surplus leaves out the readings taken
    while its draw is in doubt, as the one-connector controller does."""
    from bridge.balancer import BalancerConfig
    from bridge.balancer.power import SharedPowerLimits
    from bridge.balancer.sharing import ConnectorSpec, SharedBalancer
    from bridge.sim.charger import ChargerModel

    b = SharedBalancer(BalancerConfig(max_a=24, fuse_a=25), [ConnectorSpec("1:1"), ConnectorSpec("1:2")])
    limits = SharedPowerLimits(SHORT, V)
    car = ChargerModel(lag_s=10.0)
    b.commanded(0.0, "1:1", 0)
    b.commanded(0.0, "1:2", 0)
    writes, net = [], []
    for t in range(900):
        now = float(t)
        draw = car.phase_draw(now)
        house = -5000.0 / 3 / V
        for p in range(3):
            b.meter(now, p, house + draw[p])
        if t % POLL_S == 0:
            b.charger(now, "1:1", draw, (True, True, True))
            b.car_plugged(now, "1:1", True)
            b.charger(now, "1:2", (0.0, 0.0, 0.0), None)
            b.car_plugged(now, "1:2", False)
        net_w = sum(house + d for d in draw) * V
        limits.apply(now, b, net_w, limits.draws_w(b, now), {"1:1": "pv", "1:2": "fast"})
        d = b.decide(now)
        amps = d.commands.get("1:1")
        if amps is not None:
            car.write(now, amps)
            b.commanded(now, "1:1", amps)
            writes.append((t, amps))
        net.append(net_w)
    assert len([w for w in writes if w[1] >= 6]) == 1 and not [w for w in writes if w[1] < 6], writes
    assert max(net) <= 0.0


@pytest.mark.parametrize("phases, low, high, level", [(1, 2850.0, 3000.0, 12), (3, 8000.0, 8900.0, 12)])
def test_a_surplus_wandering_by_an_amp_is_not_a_write_each_way(phases, low, high, level):
    """The export swings every 150 s between two levels an amp apart on the car's phases (one
    phase: 12.4 and 13.0 A; three phases: 11.6 and 12.9 A). A one-phase car settles an amp under
    the surplus and stays: no write per swing. A three-phase car's amp is 690 W, already a step worth
    a write: it follows as before (cut at once, raised after the raise interval)."""
    ctrl = SurplusController(SurplusConfig(window_s=1, enable_delay_s=0, raise_interval_s=120))
    caps = run(ctrl, "pv", lambda t: -high if (t // 150) % 2 == 0 else -low, range(0, 3600), phases=phases)
    changes = sum(1 for a, b in zip(caps, caps[1:]) if a != b)
    if phases == 1:
        assert caps[-1] == level and changes <= 2
    else:
        assert changes >= 20
