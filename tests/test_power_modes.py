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
