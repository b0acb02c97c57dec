"""Power limits with several connectors on one fuse: `share` under a power budget (the capacity
tariff's allowance for every car, the solar surplus for those charging from it), `SharedBalancer`'s
power inputs over simulated seconds, and the surplus shared among the cars in `pv` and `minpv`."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.balancer import BalancerConfig
from bridge.balancer.capacity import CapacityConfig, CapacityGuard
from bridge.balancer.power import SharedPowerLimits, SharedSurplus, SurplusCar, SurplusConfig
from bridge.balancer.sharing import Claim, ConnectorSpec, PowerBudget, SharedBalancer, share
from tests.test_balancer_sharing import MIN, THREE, Car, Rig, _meter

V = 230.0


# ---- share under a power budget ---------------------------------------------------------

def test_a_power_budget_for_every_car_is_shared_max_min_fair():
    claims = [Claim("a", THREE, 16), Claim("b", THREE, 16)]
    # 42 phase-amps (9.7 kW): 7 A each on three phases, far below the fuse's 30 A per phase.
    assert share([30, 30, 30], claims, MIN, [PowerBudget(42)]) == {"a": 7, "b": 7}
    # Room for one car's minimum only (30 < 2 x 18): the last in precedence pauses.
    assert share([30, 30, 30], claims, MIN, [PowerBudget(30)]) == {"a": 10, "b": 0}
    # A one-phase car costs one phase-amp per amp: equal amps, the rest to the one that fits.
    amps = share([30, 30, 30], [Claim("one", (0,), 16), Claim("three", THREE, 16)], MIN, [PowerBudget(30)])
    assert amps == {"one": 9, "three": 7}
    # The fuse binds as well: the budget never lifts a phase's limit.
    assert share([10, 30, 30], claims, MIN, [PowerBudget(90)]) == {"a": 10, "b": 0}


def test_a_budget_on_a_group_limits_only_its_members():
    claims = [Claim("fast", THREE, 16), Claim("solar", THREE, 16)]
    # 20 phase-amps of surplus for the solar car: 6 A (18); the fast car has the fuse's rest.
    amps = share([24, 24, 24], claims, MIN, [PowerBudget(20, frozenset({"solar"}))])
    assert amps == {"fast": 16, "solar": 6}
    # Not enough for its minimum: the solar car pauses, the fast one is not held back by it.
    amps = share([24, 24, 24], claims, MIN, [PowerBudget(17, frozenset({"solar"}))])
    assert amps == {"fast": 16, "solar": 0}


def test_an_outlet_without_a_car_counts_nothing_against_a_power_budget():
    claims = [Claim("car", THREE, 16), Claim("empty", THREE, MIN, power_phases=0)]
    assert share([30, 30, 30], claims, MIN, [PowerBudget(30)]) == {"car": 10, "empty": MIN}


def test_a_power_budget_below_zero_is_refused():
    with pytest.raises(ValueError, match="power budget"):
        PowerBudget(-1)


claim_st = st.builds(
    lambda phases, cap, priority, held, weight: (phases, cap, priority, held, weight),
    st.sampled_from([(0,), (1,), (2,), (0, 1), (0, 1, 2)]),
    st.integers(4, 32), st.integers(0, 9), st.integers(0, 32), st.sampled_from([None, None, 0, 1, 3]),
)
budget_st = st.tuples(st.floats(0, 48), st.none() | st.sets(st.integers(0, 4), min_size=1, max_size=5))


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.lists(st.floats(-5, 60), min_size=3, max_size=3), st.lists(claim_st, min_size=2, max_size=5),
       st.lists(budget_st, min_size=1, max_size=2))
def test_share_never_exceeds_a_power_budget_nor_a_phase(budget, raw, raw_powers):
    claims = [Claim(f"c{i}", ph, cap, prio, held=held, power_phases=w)
              for i, (ph, cap, prio, held, w) in enumerate(raw)]
    powers = [PowerBudget(pa, None if keys is None else frozenset(f"c{i}" for i in keys)) for pa, keys in raw_powers]
    amps = share(budget, claims, MIN, powers)
    left = list(budget)
    for c in claims:
        for p in c.phases:
            left[p] -= amps[c.key]
    room = [pb.phase_amps - sum(amps[c.key] * c.weight for c in claims if pb.holds(c.key)) for pb in powers]
    bound = [c for c in claims
             if amps[c.key] < c.cap and not any(left[p] < 1 for p in c.phases)
             and any(r < max(c.weight, 1) and pb.holds(c.key) for r, pb in zip(room, powers))]
    # Not vacuous: a power budget, not a phase, is what holds some car back.
    assume(bound)
    assert all(x >= min(0.0, b) - 1e-9 for x, b in zip(left, budget)), "a phase's budget exceeded"
    assert all(r >= -1e-9 for r in room), f"a power budget exceeded: {room}"
    for c in claims:
        a = amps[c.key]
        assert a == 0 or MIN <= a <= c.cap
        if 0 < a < c.cap:  # nothing left unused: a phase or a power budget has no amp left for it
            assert any(left[p] < 1 for p in c.phases) or any(
                r < c.weight for r, pb in zip(room, powers) if pb.holds(c.key))


# ---- SharedBalancer with power inputs ---------------------------------------------------------

def test_a_capacity_budget_holds_two_cars_cuts_at_once_and_says_so():
    cfg = BalancerConfig(min_command_interval_s=15)
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))
    rig.b.power_budget(0.0, "capacity", 42, reason="capacity 5 kW: 9.7 kW for the cars")
    rig.run(300)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (7, 7)
    assert "capacity 5 kW: 9.7 kW for the cars" in rig.decisions[-1][1].connector("1:1").reason
    # The allowance falls: both are cut in the very decision, not after a hold.
    t = rig.t
    rig.b.power_budget(float(t), "capacity", 36, reason="capacity 5 kW: 8.3 kW for the cars")
    rig.run(1)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (6, 6)
    assert [w for w in rig.writes if w[0] == t] == [(t, "1:1", 6), (t, "1:2", 6)]
    # Removed: the fuse alone; the cars go back to 11 A each (22 A for the cars per phase).
    rig.b.power_budget(float(rig.t), "capacity", None)
    rig.run(300)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (11, 11)
    assert "capacity" not in rig.decisions[-1][1].connector("1:1").reason


def test_a_connector_capped_to_zero_pauses_at_once_and_the_other_takes_the_room():
    rig = Rig(BalancerConfig(), [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))
    rig.run(200)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (11, 11)
    t = rig.t
    rig.b.power_limit(float(t), "1:2", 0, "charge mode off")
    rig.run(1)
    assert rig.setting("1:2") == 0 and (t, "1:2", 0) in rig.writes
    # The mode is why, not the headroom (22 A is room for its 6 A).
    assert rig.decisions[-1][1].connector("1:2").reason == "paused: charge mode off"
    rig.run(300)
    assert rig.setting("1:1") == 16
    assert rig.decisions[-1][1].connector("1:2").reason == "paused: charge mode off"
    with pytest.raises(ValueError, match="finite current"):
        rig.b.power_limit(float(rig.t), "1:1", -2)
    with pytest.raises(ValueError, match="unknown connector"):
        rig.b.power_budget(float(rig.t), "pv", 10, keys=["9:9"])


def test_one_connector_takes_a_budget_as_a_cap_on_its_current():
    b = SharedBalancer(BalancerConfig(), [ConnectorSpec("1:1")])
    for p in range(3):
        b.meter(0.0, p, 2.0)
    b.charger(0.0, "1:1", (16.0, 16.0, 16.0), (True, True, True))
    b.power_budget(0.0, "capacity", 30, reason="capacity 5 kW")
    d = b.decide(1.0)
    assert d.charge_at == 10 and "capacity 5 kW: at most 10 A" in d.reason


def test_a_paused_car_counts_the_phases_it_drew_on():
    b = SharedBalancer(BalancerConfig(), [ConnectorSpec("1:1"), ConnectorSpec("1:2")])
    b.charger(0.0, "1:1", (8.0, 0.0, 0.0), None)
    assert b.power_phases(0.0, "1:1") == 1
    b.charger(1.0, "1:1", (0.0, 0.0, 0.0), None)  # paused: the report shows no phase
    assert b.power_phases(1.0, "1:1") == 1
    assert b.power_phases(1.0, "1:2") == 3  # nothing seen: all three
    b.car_plugged(2.0, "1:1", False)
    assert b.power_phases(2.0, "1:1") == 3


@pytest.mark.slow
def test_under_a_budget_for_one_minimum_equal_cars_take_turns_no_faster_than_rotate_s():
    cfg = BalancerConfig(rotate_s=900)
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))  # the fuse has room for both
    # 20 phase-amps (4.6 kW): one three-phase car's minimum (18), not two.
    rig.b.power_budget(0.0, "capacity", 20, reason="capacity 5 kW: 4.6 kW for the cars")
    rig.run(4000)
    pauses = [(t, k) for t, k, a in rig.writes if a == 0]
    keys = [k for _t, k in pauses]
    assert len(pauses) >= 4 and all(a != b for a, b in zip(keys, keys[1:])), rig.writes
    for (t1, _k1), (t2, _k2) in zip(pauses[1:], pauses[2:]):
        assert t2 - t1 >= cfg.rotate_s - cfg.settle_s - 30  # turns no faster than rotate_s
    paused_at = {}
    for t, k, a in rig.writes:
        if a == 0:
            paused_at[k] = t
        elif k in paused_at:
            assert t - paused_at.pop(k) >= cfg.min_pause_s
    for t, d in rig.decisions:
        assert sum(p.charge_at for p in d.connectors) * 3 <= 20 or t < 1, t  # never both at once
    # The reasons name the budget, not the fuse's headroom, and why this car pauses.
    reasons = [d.connector(k).reason for t, d in rig.decisions for k in ("1:1", "1:2") if t in {p for p, _ in pauses[1:]}]
    assert any("paused: capacity 5 kW: 4.6 kW for the cars, short of 2 x 6 A; most energy in the last 15 min" in r
               for r in reasons), reasons
    assert not any("headroom" in r for r in reasons if r.startswith("paused")), reasons


@pytest.mark.slow
def test_a_budget_that_comes_and_goes_gives_its_windows_in_turn():
    """The allowance carries one car's minimum for 10 minutes, then nothing for 20 (longer than
    rotate_s: neither has charged in the last rotate_s when the next window opens). The windows go
    to the car that has had less since it plugged in, not always to the first listed."""
    cfg = BalancerConfig(rotate_s=900)
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))
    windows = []
    for _ in range(6):
        rig.b.power_budget(float(rig.t), "capacity", 20, reason="capacity 5 kW: 4.6 kW for the cars")
        start = rig.t
        rig.run(600)
        charging = {k for t, d in rig.decisions[start:] for k in ("1:1", "1:2") if d.connector(k).charge_at >= MIN}
        assert len(charging) == 1, rig.writes  # one at a time: the budget has room for one minimum
        windows.append(charging.pop())
        rig.b.power_budget(float(rig.t), "capacity", 8, reason="capacity 5 kW: 1.8 kW for the cars")
        rig.run(1200)
    assert windows.count("1:1") == windows.count("1:2") == 3, windows
    # The one waiting says why it waits though neither charged in the last rotate_s.
    waits = [d.connector(k).reason for _t, d in rig.decisions for k in ("1:1", "1:2")
             if d.connector(k).reason.startswith("paused: capacity")]
    assert any("short of 2 x 6 A; taking turns: 1:" in r for r in waits), waits


def test_a_falling_budget_is_followed_with_one_write_per_step():
    """Two one-phase cars on L1 and L2 under a surplus budget that falls two phase-amps at a time
    (a cloud's edge): each step is one car's write, the cars in turn, not a write of each."""
    cfg = BalancerConfig()
    cars = [Car("1:1", phases=(True, False, False)), Car("1:2", phases=(False, True, False))]
    rig = Rig(cfg, cars, house=(2.0, 2.0, 2.0))
    rig.b.power_budget(0.0, "pv", 24, reason="pv: surplus 5.5 kW")
    rig.run(400)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (12, 12)
    for step, budget in enumerate(range(22, 13, -2)):
        t = rig.t
        rig.b.power_budget(float(t), "pv", budget, reason=f"pv: surplus {budget * 0.23:.2f} kW")
        rig.run(20)
        assert len([w for w in rig.writes if w[0] >= t]) == 1, (budget, rig.writes[-4:])
        amps = (rig.setting("1:1"), rig.setting("1:2"))
        assert sum(amps) <= budget and max(amps) - min(amps) <= 2, (budget, amps)
    assert (rig.setting("1:1"), rig.setting("1:2")) in {(7, 7), (6, 8), (8, 6)}


def test_the_cars_draw_for_the_power_limits_is_the_setting_once_a_write_has_settled():
    """A report of the last poll, taken before a raise, is not what the car draws after it: the
    surplus would count the raise as the house's own load."""
    b = SharedBalancer(BalancerConfig(), [ConnectorSpec("1:1"), ConnectorSpec("1:2")])
    b.commanded(0.0, "1:1", 10)

    def car(t: int) -> float:  # the car follows each write 10 s later
        return 10.0 if t < 110 else 14.0 if t < 160 else 8.0

    for t in range(0, 200):
        if t == 100:
            b.commanded(100.0, "1:1", 14)  # a raise
        if t == 150:
            b.commanded(150.0, "1:1", 8)  # a cut
        for p in range(3):
            b.meter(float(t), p, 2.0 + car(t))
        if t % 30 == 0:  # the charger's report every 30 s: the last one before the raise at t = 90
            b.charger(float(t), "1:1", (car(t),) * 3, (True, True, True))
        if 100 <= t < 105 or 119 <= t < 120 or 150 <= t < 155:
            # The meter still shows the old setting just after a write; the new one once it settled,
            # though the last report (t = 90) is older than the raise.
            assert b.car_draw(float(t), "1:1") == (car(t),) * 3, t


# ---- the surplus shared among the cars in pv and minpv -------------------------------------------

def cars(*specs):
    return [SurplusCar(key, mode, phases, draw) for key, mode, phases, draw in specs]


def test_two_pv_cars_share_one_surplus_and_start_one_after_the_other():
    s = SharedSurplus(SurplusConfig(window_s=1, enable_delay_s=10, disable_delay_s=10, raise_interval_s=0))
    # 6 kW of export: room for one three-phase car's 4.1 kW, not two.
    for t in range(12):
        out = s.step(float(t), -6000.0, cars(("a", "pv", 3, 0.0), ("b", "pv", 3, 0.0)), V, MIN)
    assert out.caps == {"a": None, "b": 0}
    assert out.budget == 26  # 6000 / 230, whole: one budget for both, not 26 each
    assert "needed to start" in out.reasons["b"]
    # Car a draws 6 A (4.1 kW) of it: the surplus without the cars is the same, still one car's worth.
    for t in range(12, 30):
        out = s.step(float(t), -6000.0 + 4140.0, cars(("a", "pv", 3, 4140.0), ("b", "pv", 3, 0.0)), V, MIN)
    assert out.caps == {"a": None, "b": 0} and out.budget == 26
    # 10 kW: both start, the second after its enable delay, and share 43 phase-amps.
    for t in range(30, 42):
        out = s.step(float(t), -10000.0 + 4140.0, cars(("a", "pv", 3, 4140.0), ("b", "pv", 3, 0.0)), V, MIN)
    assert out.caps == {"a": None, "b": None} and out.budget == 43
    # The surplus falls below both minimums: after the disable delay the last started stops.
    for t in range(42, 54):
        out = s.step(float(t), -5000.0 + 8280.0, cars(("a", "pv", 3, 4140.0), ("b", "pv", 3, 4140.0)), V, MIN)
    assert out.caps == {"a": None, "b": 0}
    assert out.budget == 21  # 5000 / 230


def test_a_minpv_car_keeps_its_minimum_and_a_one_phase_pv_car_needs_1_4_kw():
    s = SharedSurplus(SurplusConfig(window_s=1, enable_delay_s=0, disable_delay_s=0, raise_interval_s=0))
    out = s.step(0.0, 500.0, cars(("m", "minpv", 3, 0.0), ("p", "pv", 1, 0.0)), V, MIN)
    assert out.caps == {"m": None, "p": 0} and out.budget == 18  # the minpv minimum from the grid
    # 1.5 kW of export: the minpv car's minimum takes it, the pv car would charge from the grid.
    out = s.step(1.0, -1500.0 + 4140.0, cars(("m", "minpv", 3, 4140.0), ("p", "pv", 1, 0.0)), V, MIN)
    assert out.caps == {"m": None, "p": 0}
    # 5.6 kW: 1.4 kW beyond the minpv car's minimum, and the one-phase pv car starts.
    out = s.step(2.0, -5600.0 + 4140.0, cars(("m", "minpv", 3, 4140.0), ("p", "pv", 1, 0.0)), V, MIN)
    assert out.caps == {"m": None, "p": None}
    assert out.budget == 24  # 5600 / 230


def test_the_surplus_budget_is_cut_a_phase_amp_further_and_raised_after_the_interval():
    s = SharedSurplus(SurplusConfig(window_s=1, enable_delay_s=0, disable_delay_s=600, raise_interval_s=120))
    members = cars(("a", "minpv", 1, 0.0), ("b", "minpv", 1, 0.0))
    assert s.step(0.0, -9200.0, members, V, MIN).budget == 40  # 9.2 kW: 40 phase-amps
    # 9.0 kW (39.1): cut at once, one phase-amp further than the surplus.
    assert s.step(1.0, -9000.0, members, V, MIN).budget == 38
    # 8.9 kW (38.7): within the margin, no change (no write).
    assert s.step(2.0, -8900.0, members, V, MIN).budget == 38
    # Back to 9.2 kW: raised only once the last change is raise_interval_s old.
    assert s.step(60.0, -9200.0, members, V, MIN).budget == 38
    assert s.step(121.0, -9200.0, members, V, MIN).budget == 40
    # Three-phase cars: their amps are three phase-amps apart, the budget follows the surplus.
    s = SharedSurplus(SurplusConfig(window_s=1, enable_delay_s=0, disable_delay_s=600, raise_interval_s=120))
    members = cars(("a", "minpv", 3, 0.0), ("b", "minpv", 3, 0.0))
    assert s.step(0.0, -9200.0, members, V, MIN).budget == 40
    assert s.step(1.0, -9000.0, members, V, MIN).budget == 39


def pv_cars(rig: Rig, export_w, modes: dict[str, str]):
    """The `before_decide` of a rig whose house exports `export_w(t)` without the cars: the surplus
    and its budget through `SharedPowerLimits`, as the service and the bench drive them."""
    limits = SharedPowerLimits(SurplusConfig(), V)

    def step(now: float, draws: list[float]) -> None:
        cars_w = sum(d * sum(c.phases) for d, c in zip(draws, rig.cars)) * V
        net_w = -export_w(now) + cars_w
        limits.apply(now, rig.b, net_w, limits.draws_w(rig.b, now), modes)
    return step


def first_charging(rig: Rig, key: str, since: int = 0) -> int:
    return next(t for t, d in rig.decisions if t >= since and d.connector(key).charge_at >= MIN)


def test_pv_cars_start_after_the_enable_delay_second_by_second():
    """6 kW of export carries one three-phase car's minimum (4.1 kW): the first pv car starts once it
    has for `enable_delay_s` (60 s), not before; at 12 kW the second once the surplus beyond the
    first's minimum has carried its own for 60 s. The cars are paused at the start (their pv cap is
    0): a minimum pause shorter than the delay, so that the delay, not the pause, holds them."""
    cfg = BalancerConfig(min_pause_s=30)
    delay = SurplusConfig().enable_delay_s
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))
    rise = 300
    step = pv_cars(rig, lambda now: 6000.0 if now < rise else 12000.0, {"1:1": "pv", "1:2": "pv"})
    rig.run(rise, step)
    for t, d in rig.decisions:
        if t < delay:
            assert d.connector("1:1").charge_at == 0, (t, d.connector("1:1").reason)
            assert "starting in" in d.connector("1:1").reason, t
        assert d.connector("1:2").charge_at == 0, (t, d.connector("1:2").reason)
    assert delay <= first_charging(rig, "1:1") <= delay + 30  # the raise hold, then the write
    rig.run(300, step)
    started = first_charging(rig, "1:2", since=rise)
    assert rise + delay <= started <= rise + cfg.rotate_s, started
    waits = [t for t, d in rig.decisions if t >= rise and "starting in" in d.connector("1:2").reason]
    assert waits and started - waits[0] >= delay, (waits[:3], started)  # counted down for the whole delay


def test_the_higher_priority_pv_car_starts_first_and_stops_last():
    s = SharedSurplus(SurplusConfig(window_s=1, enable_delay_s=10, disable_delay_s=10, raise_interval_s=0))
    # 6 kW: room for one car's minimum; the first listed has the lower priority.
    for t in range(12):
        out = s.step(float(t), -6000.0, [SurplusCar("low", "pv", 3, 0.0, priority=3),
                                         SurplusCar("high", "pv", 3, 0.0, priority=7)], V, MIN)
    assert out.caps == {"low": 0, "high": None}

    # The higher one started last (its priority was raised while both charged): it still stops last.
    s = SharedSurplus(SurplusConfig(window_s=1, enable_delay_s=10, disable_delay_s=10, raise_interval_s=0))
    for t in range(12):
        out = s.step(float(t), -10000.0, [SurplusCar("a", "pv", 3, 0.0), SurplusCar("b", "pv", 3, 0.0)], V, MIN)
    assert out.caps == {"a": None, "b": None}  # 10 kW: both, a first (as listed), b after it
    for t in range(12, 24):
        out = s.step(float(t), -5000.0 + 8280.0, [SurplusCar("a", "pv", 3, 4140.0, priority=3),
                                                  SurplusCar("b", "pv", 3, 4140.0, priority=8)], V, MIN)
    assert out.caps == {"a": 0, "b": None}  # 5 kW: one minimum; a has the lower priority


def test_with_several_connectors_the_surplus_goes_to_the_higher_priority_first():
    cfg = BalancerConfig(min_pause_s=30)  # the cars are paused at the start: not what decides here
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0),
              specs=[ConnectorSpec("1:1", priority=3), ConnectorSpec("1:2", priority=7)])
    step = pv_cars(rig, lambda now: 6000.0, {"1:1": "pv", "1:2": "pv"})  # one car's minimum
    rig.run(200, step)
    assert rig.setting("1:2") >= MIN and rig.setting("1:1") == 0
    assert all(d.connector("1:1").charge_at == 0 for _t, d in rig.decisions)
    # A priority set later counts from then on: the surplus still has room for one only.
    rig.b.set_priority(float(rig.t), "1:1", 9)
    rig.run(10, step)
    assert rig.setting("1:2") >= MIN  # a running car is not stopped for a higher one


@pytest.mark.parametrize("keys", [["1:1"], ["1:1", "1:2"]], ids=["one car", "two cars"])
def test_a_pause_a_power_limit_made_waits_the_minimum_pause_with_one_car_or_two(keys):
    """One car is one connector: a car that its charge mode paused (`off`, or `pv` without
    surplus) is paused like any other, and resumes no sooner than `min_pause_s` after its pause
    however soon the limit lifts; second by second, and its reason says how long is left."""
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car(k) for k in keys], house=(2.0, 2.0, 2.0))
    rig.run(60)
    assert rig.setting("1:1") >= MIN
    rig.b.power_limit(float(rig.t), "1:1", 0, "charge mode off")
    rig.run(30)
    paused = [t for t, k, a in rig.writes if k == "1:1" and a == 0]
    assert paused, rig.writes
    rig.b.power_limit(float(rig.t), "1:1", None)
    held = rig.t
    rig.run(int(cfg.min_pause_s))
    for t, d in rig.decisions:
        if held <= t < paused[0] + cfg.min_pause_s:
            assert d.connector("1:1").charge_at == 0, (t, d.connector("1:1").reason)
    waiting = [d.connector("1:1").reason for t, d in rig.decisions if held <= t < paused[0] + cfg.min_pause_s - 10]
    assert "resumes no sooner than 5 min after its pause" in waiting[-1], waiting[-1]
    resumed = [t for t, k, a in rig.writes if k == "1:1" and a >= MIN and t > paused[0]]
    assert resumed and resumed[0] - paused[0] <= cfg.min_pause_s + 30, rig.writes


def capacity_cars(rig: Rig, guard, start, since: float, allowances: list):
    """The `before_decide` of a rig whose house draws its constant load: from `since` on the capacity
    guard (its wall clock `start` at `since`) and its budget through `SharedPowerLimits`, as the
    service drives them; each allowance (W, None: none) goes to `allowances`."""
    limits = SharedPowerLimits(SurplusConfig(), V)
    modes = {c.key: "fast" for c in rig.cars}

    def step(now: float, draws: list[float]) -> None:
        net_w = (sum(rig.house) + sum(d * sum(c.phases) for d, c in zip(draws, rig.cars))) * V
        draws_w = limits.draws_w(rig.b, now)
        status = None
        if now >= since:
            status = guard.update(start + timedelta(seconds=now - since), net_w, limits.reported_w(rig.b, draws_w),
                                  car_in_doubt=limits.in_doubt(rig.b, now))
            allowances.append(status.car_allowance_w)
        limits.apply(now, rig.b, net_w, draws_w, modes, status)
    return step


@pytest.mark.parametrize("cut_before_s", [0, 3])
def test_a_limit_set_at_a_period_start_holds_two_cars_at_the_allowance_while_their_cut_is_on_its_way(
        cut_before_s):
    """Two cars at their fuse share; a 13 kW limit set at a period's start (right as the cars are cut
    to their share, or with the cut 3 s on its way). The cars follow a write 10 s late and report
    every 30 s: a reading taken while a cut is on its way, or a report showing the new setting read
    against the old, makes the house's own load (the meter less the cars) wrong by the whole cut: the
    allowance above what the limit leaves, or below the cars' minimum (a pause of min_pause_s)."""
    rig = Rig(BalancerConfig(fuse_a=25.0), [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))
    guard = CapacityGuard(CapacityConfig(limit_kw=13.0))
    start = datetime(2027, 1, 12, 17, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    allowances: list = []
    since = 200 + cut_before_s
    step = capacity_cars(rig, guard, start, since, allowances)
    rig.run(200, step)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (11, 11)
    rig.house = [5.0, 5.0, 5.0]  # the cars' share falls to 10 A: cut at once
    rig.run(120, step)
    house_kw = 15 * V / 1000
    known = [a for a in allowances if a is not None]
    assert known, allowances
    # At most what the limit leaves beside the house (and the few seconds of the period's start
    # spent at the cars' old draw only lower it), never a pause.
    assert max(known) / 1000 <= 13.0 - house_kw + 0.05, [round(a) for a in known]
    assert min(known) / 1000 >= 13.0 - house_kw - 1.0, [round(a) for a in known]
    assert all(d.connector(k).charge_at >= MIN for t, d in rig.decisions if t >= 200 for k in ("1:1", "1:2"))
    assert 6 <= rig.setting("1:1") < 10 and 6 <= rig.setting("1:2") < 10


@pytest.mark.parametrize("reading", ["before the writes", "after the writes, before the cars followed"])
def test_a_report_newer_than_a_reading_is_not_what_the_car_drew_in_it(reading):
    """Replays the service at a period's start (times as logged): two cars at 16 A, cut to their fuse
    share of 10 A each, and a 13 kW limit set while the cuts land. The chargers follow a write as soon
    as it arrives and report right after it; the meter reading the guard takes was taken before the
    cars followed (before the writes were sent, or after it but before they arrived). Read against a
    report newer than it, a car counts at its new 10 A in a reading that carries its 16 A: the house's
    own load looks 6 A per car per phase heavier, the allowance (the cap cuts at once and raises only
    after CAPACITY_RAISE_HOLD_S) has room for one car, and the other is paused."""
    cfg = BalancerConfig(max_a=25.0, fuse_a=25.0, settle_s=2.0, min_command_interval_s=0.0)
    keys = ["1:1", "1:2"]
    b = SharedBalancer(cfg, [ConnectorSpec(k) for k in keys])
    limits = SharedPowerLimits(SurplusConfig(), V)
    guard = CapacityGuard(CapacityConfig(limit_kw=13.0))
    start = datetime(2027, 1, 12, 17, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    house_a = 5.0
    offered = {k: 16 for k in keys}  # what each charger lets its car draw (the cars want 16 A)
    read = [0.0]  # the meter's latest reading (A per phase)

    def meter(t: float) -> None:
        read[0] = house_a + sum(a for a in offered.values() if a >= MIN)
        _meter(b, t, read[0])

    def report(t: float, k: str) -> None:
        b.charger(t, k, (float(offered[k]),) * 3, (True, True, True))

    for k in keys:  # found on the chargers at 16 A, and reported so
        b.commanded(0.0, k, 16)
        report(0.0, k)
    meter(0.1)
    assert [c.command for c in b.decide(0.1).connectors] == [10, 10]

    def written(t: float, k: str, amps: int) -> None:  # sent at t, on the charger at once
        offered[k] = amps
        b.commanded(t, k, amps)

    if reading == "before the writes":
        meter(0.2)
        written(0.25, "1:1", 10)
        written(0.26, "1:2", 10)
        report(0.27, "1:2")
    else:
        b.commanded(0.2, "1:1", 10)
        b.commanded(0.21, "1:2", 10)
        meter(0.22)  # sent, not arrived yet: the cars still draw 16 A
        offered.update({"1:1": 10, "1:2": 10})
        report(0.25, "1:1")
        report(0.25, "1:2")
    limit_at = 0.3  # the limit set: a period begins (the wall clock moved to 17:00)
    allowances, decisions = [], []
    for i in range(200):  # 60 s: the meter every 0.3 s, a report of each car every 3 s
        now = round(limit_at + 0.3 * i, 3)
        if i:
            meter(now)
            if i % 10 == 0:
                for k in keys:
                    report(now, k)
        net_w = read[0] * 3 * V
        draws_w = limits.draws_w(b, now)
        status = guard.update(start + timedelta(seconds=now - limit_at), net_w, limits.reported_w(b, draws_w),
                              car_in_doubt=limits.in_doubt(b, now))
        allowances.append(status.car_allowance_w)
        limits.apply(now, b, net_w, draws_w, {k: "fast" for k in keys}, status)
        d = b.decide(now)
        decisions.append((now, d))
        for part in d.connectors:
            if part.command is not None:
                written(now + 0.01, part.key, part.command)
    paused = [(t, c.key, c.reason) for t, d in decisions for c in d.connectors if c.charge_at < MIN]
    assert not paused, paused[:3]
    known = [a for a in allowances if a is not None]
    # The allowance carries both cars at their minimum (6 A on three phases: 8.3 kW) all along.
    assert known and min(known) / 1000 >= 2 * MIN * 3 * V / 1000, [round(a) for a in known]
    # Never more than the limit leaves beside the house (the period's first seconds at the cars' old
    # draw only lower it), and the period goes on within the limit.
    house_kw = house_a * 3 * V / 1000
    assert max(known) / 1000 <= 13.0 - house_kw + 0.05, [round(a) for a in known]
    assert status.projected_kw <= 13.0, status.reason
    assert all(MIN <= offered[k] < 10 for k in keys), offered
