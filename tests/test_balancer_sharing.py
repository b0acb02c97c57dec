"""Several connectors on one fuse: the connector list, the allocation (`share`, `least_cut`) and
`SharedBalancer` driven over simulated seconds (cars following their writes after a lag).

The connector-list shapes are those `CHARGEAMPS_CONNECTORS` takes (charge point id, connector
number from 1, optional `/PHASES` wiring), as the configuration documents them."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.balancer import Balancer, BalancerConfig
from bridge.balancer.sharing import (
    Claim,
    ConnectorSpec,
    SharedBalancer,
    least_cut,
    parse_connectors,
    share,
)
from bridge.sim.charger import ChargerModel

MIN = 6


# ---- the connector list -------------------------------------------------------------

def test_parse_connectors_reads_keys_and_phase_wiring():
    specs = parse_connectors("2001:1, 2001:2,2002:1/L2L3L1")
    assert [s.key for s in specs] == ["2001:1", "2001:2", "2002:1"]
    assert specs[0].phase_map == (0, 1, 2)
    assert specs[2].phase_map == (1, 2, 0)
    assert (specs[2].chargepoint, specs[2].connector) == ("2002", 1)
    assert all(s.priority == 5 for s in specs)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no connector listed"),
        ("2001", "'2001'"),
        ("2001:1,2001:x", "'2001:x'"),
        ("2001:0", "numbered from 1"),
        ("2001:1,,2001:2", "empty entry"),
        ("2001:1/L1L1L2", "'2001:1/L1L1L2'"),
        ("2001:1/L1L2", "'2001:1/L1L2'"),
        ("2001:1/L1L2L4", "'2001:1/L1L2L4'"),
        ("2001:1,2001:01", "listed twice"),
    ],
)
def test_parse_connectors_names_the_bad_entry(text, words):
    with pytest.raises(ValueError) as e:
        parse_connectors(text)
    assert words in str(e.value)


@pytest.mark.parametrize("priority", [-1, 10, 2.5, True, "5"])
def test_a_priority_outside_0_to_9_is_refused(priority):
    with pytest.raises(ValueError, match="priority must be a whole number from 0 to 9"):
        ConnectorSpec("2001:1", priority=priority)


# ---- the allocation ------------------------------------------------------------------

THREE = (0, 1, 2)


def test_equal_cars_share_the_binding_phase_equally():
    amps = share([20, 30, 30], [Claim("a", THREE, 16), Claim("b", THREE, 16)], MIN)
    assert amps == {"a": 10, "b": 10}


def test_a_one_phase_car_and_a_three_phase_car_share_max_min_fair():
    # L1 binds both; L2 and L3 only the three-phase car: equal amps on L1.
    amps = share([14, 30, 30], [Claim("one", (0,), 16), Claim("three", THREE, 16)], MIN)
    assert amps == {"one": 7, "three": 7}
    # With L1 free the three-phase car is limited by L2 alone and the one-phase car takes the rest.
    amps = share([30, 9, 30], [Claim("one", (0,), 16), Claim("three", THREE, 16)], MIN)
    assert amps == {"one": 16, "three": 9}


def test_the_higher_priority_is_served_to_its_cap_before_the_lower_gets_more_than_its_minimum():
    amps = share([26, 26, 26], [Claim("high", THREE, 16, priority=7), Claim("low", THREE, 16, priority=5)], MIN)
    assert amps == {"high": 16, "low": 10}
    amps = share([20, 20, 20], [Claim("high", THREE, 16, priority=7), Claim("low", THREE, 16, priority=5)], MIN)
    assert amps == {"high": 14, "low": 6}


def test_when_the_minimum_does_not_fit_for_all_the_last_in_precedence_pauses():
    amps = share([11, 11, 11], [Claim("first", THREE, 16), Claim("second", THREE, 16)], MIN)
    assert amps == {"first": 11, "second": 0}
    # A one-phase car on another phase still fits after a three-phase car is turned away.
    amps = share([8, 20, 20], [Claim("a", THREE, 16), Claim("b", THREE, 16), Claim("c", (1,), 16)], MIN)
    assert amps == {"a": 8, "b": 0, "c": 12}  # L2: 20 - 8


def test_a_charger_that_cannot_be_written_is_held_and_the_others_share_the_rest():
    amps = share([20, 20, 20], [Claim("stuck", THREE, 16, fixed=12), Claim("b", THREE, 16)], MIN)
    assert amps == {"stuck": 12, "b": 8}


def test_an_odd_amp_stays_with_the_car_that_has_it():
    claims = [Claim("a", THREE, 16, held=9), Claim("b", THREE, 16, held=10)]
    assert share([19, 19, 19], claims, MIN) == {"a": 9, "b": 10}


def test_least_cut_takes_an_overshoot_from_one_car_when_it_can():
    targets = {"a": 12, "b": 10}
    fair = share([19, 30, 30], [Claim("a", THREE, 16), Claim("b", THREE, 16)], MIN)
    new = least_cut([19, 30, 30], targets, fair, {"a": THREE, "b": THREE}, MIN)
    assert new == {"a": 9, "b": 10}  # one write: a gives the 3 A L1 needs


def test_least_cut_falls_back_to_the_fair_share_when_one_car_cannot_give_enough():
    targets = {"a": 8, "b": 8}
    fair = share([11, 30, 30], [Claim("a", THREE, 16), Claim("b", THREE, 16)], MIN)
    new = least_cut([11, 30, 30], targets, fair, {"a": THREE, "b": THREE}, MIN)
    assert new == {"a": 8, "b": 0}


claim_st = st.builds(
    lambda phases, cap, priority, held: (phases, cap, priority, held),
    st.sampled_from([(0,), (1,), (2,), (0, 1), (0, 1, 2)]),
    st.integers(0, 32), st.integers(0, 9), st.integers(0, 32),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-5, 60), min_size=3, max_size=3), st.lists(claim_st, min_size=1, max_size=5))
def test_share_properties(budget, raw):
    claims = [Claim(f"c{i}", ph, cap, prio, held=held) for i, (ph, cap, prio, held) in enumerate(raw)]
    amps = share(budget, claims, MIN)
    left = list(budget)
    for c in claims:
        for p in c.phases:
            left[p] -= amps[c.key]
    # Per house phase the cars on it together stay within the budget (nothing where it is below 0).
    assert all(x >= min(0.0, b) - 1e-9 for x, b in zip(left, budget))
    for c in claims:
        a = amps[c.key]
        # 0, or from the minimum up to the cap.
        assert a == 0 or MIN <= a <= c.cap
        # Nothing left unused: a car below its cap is held back by a phase with no amp left.
        if 0 < a < c.cap:
            assert any(left[p] < 1 for p in c.phases)
    for a in claims:
        for b in claims:
            if amps[a.key] == 0 or amps[b.key] == 0 or a is b:
                continue
            blocking_a = {p for p in a.phases if left[p] < 1}
            blocking_b = {p for p in b.phases if left[p] < 1}
            # Priority: a lower one above its minimum never holds amps a higher one below its cap
            # could take (every phase that blocks the higher one is one the lower one draws on).
            if a.priority > b.priority and amps[b.key] > MIN and amps[a.key] < a.cap:
                assert not blocking_a <= set(b.phases)
            # Max-min fair among equals: more than 1 A apart only when moving an amp from the
            # higher to the lower would not free every phase that blocks the lower one.
            if a.priority == b.priority and amps[a.key] > amps[b.key] + 1 and amps[b.key] < b.cap:
                assert not blocking_b <= set(a.phases)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 40), min_size=3, max_size=3), st.lists(claim_st, min_size=1, max_size=4),
       st.lists(st.integers(0, 16), min_size=4, max_size=4))
def test_least_cut_properties(headroom, raw, targets_raw):
    claims = [Claim(f"c{i}", ph, max(cap, MIN), prio) for i, (ph, cap, prio, _h) in enumerate(raw)]
    targets = {c.key: (t if t >= MIN else 0) for c, t in zip(claims, targets_raw)}
    fair = share(headroom, claims, MIN)
    phases = {c.key: c.phases for c in claims}
    new = least_cut(headroom, targets, fair, phases, MIN)
    assume(any(new[k] != targets[k] for k in targets))
    for k in targets:
        assert new[k] <= targets[k]  # a cut never raises
        assert new[k] == 0 or new[k] >= MIN
    for p in range(3):
        assert sum(new[k] for k in new if p in phases[k]) <= headroom[p] + 1e-9


# ---- SharedBalancer over simulated seconds --------------------------------------------

@dataclasses.dataclass
class Car:
    key: str
    phases: tuple[bool, bool, bool] = (True, True, True)
    demand: float = 16.0
    model: ChargerModel | None = None
    plugged: bool | None = None  # what the connector's status says with each report; None: not said


class Rig:
    """A house with a constant load per phase, cars that follow their writes after 10 s, the
    meter every second and each charger's report every 30 s."""

    def __init__(self, cfg: BalancerConfig, cars: list[Car], house=(2.0, 2.0, 2.0), specs=None) -> None:
        self.cfg = cfg
        self.cars = cars
        self.house = list(house)
        for car in cars:
            car.model = ChargerModel(lag_s=10, phases=car.phases, car_max_a=32, initial_a=cfg.default_current)
        self.b = SharedBalancer(cfg, specs or [ConnectorSpec(c.key) for c in cars])
        self.t = 0
        self.writes: list[tuple[int, str, int]] = []
        self.decisions = []
        self.fail: set[str] = set()

    def draw(self, car: Car) -> float:
        return min(car.model.draw(float(self.t)), car.demand) if car.demand >= 1 else 0.0

    def run(self, seconds: int, before_decide=None) -> None:
        """`before_decide(now, draws)`: called each second with what each car draws (as the
        service feeds the power limits before it decides)."""
        for _ in range(seconds):
            now = float(self.t)
            draws = [self.draw(c) for c in self.cars]
            for p in range(3):
                self.b.meter(now, p, self.house[p] + sum(d for d, c in zip(draws, self.cars) if c.phases[p]))
            if self.t % 30 == 0:
                for d, c in zip(draws, self.cars):
                    self.b.charger(now, c.key, tuple(d if on else 0.0 for on in c.phases), c.phases)
                    if c.plugged is not None:
                        self.b.car_plugged(now, c.key, c.plugged)
            if before_decide is not None:
                before_decide(now, draws)
            d = self.b.decide(now)
            self.decisions.append((self.t, d))
            for part in d.connectors:
                if part.command is not None and part.key not in self.fail:
                    car = next(c for c in self.cars if c.key == part.key)
                    car.model.write(now, part.command)
                    self.b.commanded(now, part.key, part.command)
                    self.writes.append((self.t, part.key, part.command))
            self.t += 1

    def setting(self, key: str) -> int:
        return self.decisions[-1][1].connector(key).charge_at

    def over_fuse_s(self) -> int:
        return 0


@pytest.mark.slow
def test_one_connector_decides_exactly_as_the_one_car_balancer():
    from bridge.sim.scenarios import evening_oven

    trace = evening_oven()
    cfg = BalancerConfig()
    single = Balancer(cfg)
    shared = SharedBalancer(cfg, [ConnectorSpec("2001:1")])
    car = ChargerModel(lag_s=10, initial_a=16)
    for t in range(2400):
        now = float(t)
        draw = car.draw(now)
        for p in range(3):
            amps = trace.base[p][t] + draw
            single.meter(now, p, amps)
            shared.meter(now, p, amps)
        if t % 30 == 0:
            report = (draw, draw, draw) if draw else None
            single.charger(now, report, (True, True, True) if draw else None)
            shared.charger(now, "2001:1", report, (True, True, True) if draw else None)
        a, b = single.decide(now), shared.decide(now)
        assert (b.charge_at, b.connectors[0].command, b.reason, b.loadbal) == \
               (a.charge_at, a.command, a.reason, a.loadbal), t
        assert {k: v for k, v in b.to_dict().items() if k != "connectors"} == a.to_dict()
        if a.command is not None:
            car.write(now, a.command)
            single.commanded(now, a.command)
            shared.commanded(now, "2001:1", a.command)


def test_homey_with_several_connectors_is_refused_saying_why():
    with pytest.raises(ValueError, match="one connector only"):
        SharedBalancer(BalancerConfig(), parse_connectors("2001:1,2001:2"), strategy="homey")
    SharedBalancer(BalancerConfig(), parse_connectors("2001:1"), strategy="homey")  # one is fine


def test_two_cars_share_and_stay_under_max_a_per_phase():
    rig = Rig(BalancerConfig(), [Car("1:1"), Car("1:2")], house=(4.0, 2.0, 2.0))
    rig.run(400)
    assert rig.setting("1:1") == rig.setting("1:2") == 10  # (24 - 4) / 2 on L1
    d = rig.decisions[-1][1]
    assert d.charge_at == 20
    assert [c["charge_at"] for c in d.to_dict()["connectors"]] == [10, 10]
    assert d.to_dict()["connectors"][0]["chargepoint"] == "1"


def test_the_phase_map_puts_a_chargers_l1_on_the_house_phase_it_is_wired_to():
    # A one-phase car on the charger's L1, wired to house L2 ("/L2L3L1"): only L2's load limits it.
    cfg = BalancerConfig()
    b = SharedBalancer(cfg, parse_connectors("2001:1,2001:2/L2L3L1"))
    b.charger(0.0, "2001:2", (8.0, 0.0, 0.0), (True, False, False))
    d = b.decide(0.0)
    assert d.connector("2001:2").phases == (1,)


def test_lowest_priority_pauses_first_and_the_reason_says_so():
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0),
              specs=[ConnectorSpec("1:1", priority=3), ConnectorSpec("1:2", priority=7)])
    rig.run(200)
    assert (rig.setting("1:2"), rig.setting("1:1")) == (16, 6)  # the higher to its cap first
    rig.house = [13.0, 2.0, 2.0]  # 11 A left on L1: one car
    rig.run(60)
    assert rig.setting("1:1") == 0 and rig.setting("1:2") >= MIN
    reason = rig.decisions[-1][1].connector("1:1").reason
    assert "paused" in [r for _t, d in rig.decisions[-60:] for r in [d.connector("1:1").reason]
                        if "paused" in r][0]
    assert reason


@pytest.mark.slow
def test_equal_cars_take_turns_no_faster_than_rotate_s():
    cfg = BalancerConfig(rotate_s=900)
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(13.0, 2.0, 2.0))  # room for one car only
    rig.run(3700)
    pauses = [(t, k) for t, k, a in rig.writes if a == 0]
    # They alternate, and no connector is paused again sooner than rotate_s after it resumed.
    keys = [k for _t, k in pauses]
    assert len(pauses) >= 3 and all(a != b for a, b in zip(keys, keys[1:]))
    for (t1, _k1), (t2, _k2) in zip(pauses, pauses[1:]):
        assert t2 - t1 >= cfg.rotate_s - cfg.settle_s - 30
    resumes = {}
    for t, k, a in rig.writes:
        if a == 0:
            resumes[k] = t
        elif k in resumes:
            assert t - resumes.pop(k) >= cfg.min_pause_s  # no connector pauses and resumes faster
    reasons = [d.connector(k).reason for t, d in rig.decisions for k in ("1:1", "1:2") if t in {p for p, _ in pauses}]
    assert any("most energy in the last 15 min" in r for r in reasons), reasons


def test_a_car_paused_by_a_short_load_resumes_after_the_minimum_pause_not_before():
    """An oven on L1 for 40 s leaves room for one car: one pauses. Once it is off both fit again, so
    neither the rotation (rotate_s far longer) nor the headroom holds the paused car back: only the
    minimum pause does, and it resumes as soon as that is over (the raise hold and the write pacing
    add seconds, not minutes)."""
    cfg = BalancerConfig(rotate_s=7200)
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))
    rig.run(200)
    assert rig.setting("1:1") == rig.setting("1:2") == 11  # (24 - 2) / 2
    rig.house = [15.0, 2.0, 2.0]  # 9 A left on L1: one minimum, not two
    rig.run(40)
    rig.house = [2.0, 2.0, 2.0]
    rig.run(600)
    pauses = [(t, k) for t, k, a in rig.writes if a == 0]
    assert len(pauses) == 1, rig.writes
    paused_at, key = pauses[0]
    resumed = [t for t, k, a in rig.writes if k == key and t > paused_at and a >= MIN]
    assert resumed, rig.writes
    # Second by second: paused until the minimum is over, then charging again within a minute.
    for t, d in rig.decisions:
        if paused_at <= t < paused_at + cfg.min_pause_s:
            assert d.connector(key).charge_at == 0, (t, d.connector(key).reason)
    assert cfg.min_pause_s <= resumed[0] - paused_at <= cfg.min_pause_s + 60, rig.writes


def test_moving_amps_writes_the_cut_first_and_the_raise_after_it_settled():
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))
    rig.run(300)
    assert rig.setting("1:1") == rig.setting("1:2") == 11
    start = rig.t
    rig.b.set_priority(float(rig.t), "1:2", 9)
    rig.run(200)
    moves = [(t, k, a) for t, k, a in rig.writes if t >= start]
    cut = next(w for w in moves if w[1] == "1:1")
    raise_ = next(w for w in moves if w[1] == "1:2")
    assert cut[2] < 11 and raise_[2] > 11
    assert raise_[0] >= cut[0] + cfg.settle_s  # never raise one car with amps the other still draws
    assert rig.setting("1:2") == 16


def test_a_connector_without_a_car_is_held_at_the_minimum_and_counted():
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1"), Car("1:2", demand=0.0)], house=(2.0, 2.0, 2.0))
    rig.run(600)
    assert rig.setting("1:2") == MIN
    assert rig.setting("1:1") == 16  # 22 - 6 held for the empty connector
    d = rig.decisions[-1][1]
    assert not d.connector("1:2").charging and d.connector("1:1").charging
    # A car plugging in then draws at most the minimum: the fuse is never taken over.
    rig.cars[1].demand = 16.0
    rig.run(40)
    assert max(rig.house[0] + rig.draw(rig.cars[0]) + rig.draw(rig.cars[1]) for _ in [0]) <= cfg.max_a


def test_a_car_plugging_into_an_outlet_paused_without_a_car_gets_its_turn():
    cfg = BalancerConfig(rotate_s=900)
    rig = Rig(cfg, [Car("1:1"), Car("1:2", demand=0.0, plugged=False)], house=(13.0, 2.0, 2.0))  # one car's room
    rig.run(600)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (11, 0)  # the outlet without a car pauses first
    plugged_at = rig.t
    rig.cars[1].demand, rig.cars[1].plugged = 16.0, True  # a car plugs in: at 0 A it cannot show a draw
    rig.run(cfg.rotate_s + 300)
    resumed = [t for t, k, a in rig.writes if k == "1:2" and a >= MIN and t >= plugged_at]
    assert resumed, [d.connector("1:2").reason for _t, d in rig.decisions[-3:]]
    # It waits for the charging car's turn (rotate_s from its start), not longer than a turn and the pauses.
    assert resumed[0] - plugged_at <= cfg.rotate_s + cfg.settle_s + 60
    assert rig.setting("1:2") >= MIN and rig.setting("1:1") == 0


def test_an_unplugged_car_makes_its_outlet_idle_and_the_reason_shows_short_turns_in_seconds():
    cfg = BalancerConfig(rotate_s=90, min_pause_s=30)
    rig = Rig(cfg, [Car("1:1", plugged=True), Car("1:2", plugged=True)], house=(13.0, 2.0, 2.0))
    rig.run(400)
    reasons = [d.connector(k).reason for _t, d in rig.decisions for k in ("1:1", "1:2")]
    assert any("most energy in the last 90 s" in r for r in reasons), reasons
    assert not any("0 min" in r for r in reasons)
    charging = "1:1" if rig.setting("1:1") else "1:2"
    other = "1:2" if charging == "1:1" else "1:1"
    car = next(c for c in rig.cars if c.key == charging)
    car.demand, car.plugged = 0.0, False  # unplugged: the other car takes the room
    rig.run(200)
    assert rig.setting(other) >= MIN and rig.setting(charging) in (0, MIN)


def test_a_car_taking_less_than_offered_gives_the_rest_to_the_other():
    cfg = BalancerConfig(default_current=16)
    rig = Rig(cfg, [Car("1:1", demand=8.0), Car("1:2")], house=(2.0, 2.0, 2.0))
    rig.run(900)
    assert rig.setting("1:1") <= 10
    assert rig.setting("1:2") == 16 or rig.setting("1:1") + rig.setting("1:2") >= 21


def test_a_charger_that_cannot_be_written_is_assumed_at_its_last_setting():
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))
    # At start, before the charger was read, no write was tried: it has no "last setting" yet.
    rig.b.charger_failed(0.0, "1:1")
    rig.fail.add("1:1")
    for p in range(3):
        rig.b.meter(0.0, p, 2.0)
    start = rig.b.decide(0.0).connector("1:1").reason
    assert "not read yet" in start and "cannot be written" not in start and "last setting" not in start
    rig.b.charger_failed(0.0, "1:1", False)
    rig.fail.clear()
    rig.run(300)
    assert rig.setting("1:1") == 11
    rig.b.charger_failed(float(rig.t), "1:1")
    rig.fail.add("1:1")
    rig.house = [8.0, 2.0, 2.0]  # 16 A left: 11 stays with the stuck charger, the other gets 5 -> pauses
    rig.run(60)
    d = rig.decisions[-1][1]
    assert d.connector("1:1").charge_at == 11 and d.connector("1:1").command is None
    assert "last setting 11 A" in d.connector("1:1").reason
    assert d.connector("1:2").charge_at == 0


def test_a_charger_that_takes_no_limit_is_counted_as_house_load_from_its_draw():
    # An OCPP charger that accepts no charging profile: never written, its car draws what it wants.
    cfg = BalancerConfig()
    stuck, other = Car("1:1", demand=16.0), Car("1:2")
    rig = Rig(cfg, [stuck, other], house=(2.0, 2.0, 2.0))
    rig.fail.add("1:1")
    rig.b.charger_failed(0.0, "1:1", house_load=True)
    rig.run(120)
    d = rig.decisions[-1][1]
    assert d.connector("1:1").command is None and "house load" in d.connector("1:1").reason
    assert not [w for w in rig.writes if w[1] == "1:1"]
    assert rig.setting("1:2") == 6  # MaxA 24 less the house's 2 A and the stuck car's 16 A
    assert rig.draw(stuck) + rig.draw(other) + 2.0 <= cfg.max_a
    stuck.demand = 4.0  # its car takes less by itself: the meter shows it, the other gets the room
    rig.run(400)
    assert rig.setting("1:2") == 16


def test_per_connector_settings_and_errors():
    b = SharedBalancer(BalancerConfig(), parse_connectors("2001:1,2001:2"))
    with pytest.raises(ValueError, match="unknown connector '9:9'"):
        b.set_priority(0.0, "9:9", 5)
    with pytest.raises(ValueError, match="priority"):
        b.set_priority(0.0, "2001:1", 11)
    with pytest.raises(ValueError, match="per connector"):
        b.reconfigure(0.0, installation_current=10)
    with pytest.raises(ValueError, match="unknown balancer setting"):
        b.reconfigure(0.0, nonsense=1)
    b.set_installation_current(0.0, "2001:2", 10)
    assert b.reconfigure(0.0, max_a=20).max_a == 20
    for p in range(3):
        b.meter(0.0, p, 0.0)
    d = b.decide(0.0)
    assert d.connector("2001:2").charge_at <= 10 and d.connector("2001:1").charge_at <= 16


def test_a_bad_shared_setting_changes_nothing_and_caps_survive_a_reconfigure():
    b = SharedBalancer(BalancerConfig(installation_current=10), parse_connectors("2001:1,2001:2"))
    with pytest.raises(ValueError, match="max_a"):
        b.reconfigure(0.0, max_a=40)
    assert b.config.max_a == 24
    b.reconfigure(0.0, max_a=20)
    for p in range(3):
        b.meter(0.0, p, 0.0)
    d = b.decide(0.0)
    assert all(c.charge_at <= 10 for c in d.connectors)  # the installation current is kept


def test_one_connector_takes_the_installation_current_as_the_one_car_balancer_does():
    b = SharedBalancer(BalancerConfig(), parse_connectors("2001:1"))
    assert b.reconfigure(0.0, installation_current=10).installation_current == 10


def test_a_full_car_gives_all_it_is_offered_to_the_other_and_says_so():
    # A car plugged in that takes nothing (full) stays at the minimum to start again, but it is not
    # counted: the other car has the whole headroom (24 - 10 on L1), not that less 6 A.
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1", plugged=True), Car("1:2", demand=0.0, plugged=True)], house=(10.0, 2.0, 2.0))
    rig.run(600)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (14, MIN)
    d = rig.decisions[-1][1].connector("1:2")
    assert "takes nothing" in d.reason and not d.charging
    # It starts again: the meter shows its draw at once and the other car is cut for it.
    rig.cars[1].demand = 16.0
    rig.run(60)
    assert rig.setting("1:1") + MIN <= 14 + cfg.cut_tolerance_a


def test_a_meter_heard_every_second_is_stale_after_its_gap_limit_not_after_stale_after_s():
    cfg = BalancerConfig()  # stale after 30 s; a phase heard every second: after 8 intervals, at least 8 s
    b = SharedBalancer(cfg, parse_connectors("2001:1,2001:2"))
    for t in range(120):
        for p in range(3):
            b.meter(float(t), p, 5.0)
        assert not b.decide(float(t)).meter_stale
    d = b.decide(119.0 + 9)
    assert d.meter_stale, d.reason
    assert "silent 9 s" in d.reason and "fail-safe" in d.reason


def test_with_the_meter_stale_the_cars_together_take_the_failsafe_current_and_a_paused_car_stays_paused():
    # Blind, the house's load is unknown: what one car may take is what all of them may, so two
    # cars at the fail-safe are not twice the fail-safe. A car paused before stays paused.
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1"), Car("1:2"), Car("1:3")], house=(4.0, 4.0, 4.0))
    rig.run(300)
    assert all(rig.setting(k) >= MIN for k in ("1:1", "1:2", "1:3"))
    rig.b.meter_alive(float(rig.t))  # the heartbeat, then silence: no reading for stale_after_s
    d = rig.b.decide(rig.t + cfg.stale_after_s + 1)
    assert d.meter_stale
    settings = [c.charge_at for c in d.connectors]
    assert sorted(settings) == [0, 0, cfg.failsafe_current], [c.reason for c in d.connectors]
    assert all("fail-safe 6 A for the cars together" in c.reason for c in d.connectors)
    # Paused by the fail-safe (or before it), a car is not raised by the next stale decision either.
    again = rig.b.decide(rig.t + cfg.stale_after_s + 20)
    assert [c.charge_at for c in again.connectors] == settings
    paused_before = Rig(cfg, [Car("1:1"), Car("1:2")], house=(13.0, 2.0, 2.0))  # room for one car
    paused_before.run(300)
    stopped = [k for k in ("1:1", "1:2") if paused_before.setting(k) == 0]
    assert len(stopped) == 1
    d = paused_before.b.decide(paused_before.t + cfg.stale_after_s + 1)
    assert d.meter_stale and d.connector(stopped[0]).charge_at == 0


def test_two_minimums_that_fit_within_the_cut_tolerance_pause_nobody():
    # 24 - 12.3 = 11.7 A for the cars on L1: 2 x 6 A is 0.3 A over, inside the cut tolerance
    # (0.5 A, below the fuse), where nobody would be cut; so nobody is paused for it either.
    cfg = BalancerConfig()
    assert cfg.cut_tolerance_a >= 0.3
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(12.3, 2.0, 2.0))
    rig.run(300)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (MIN, MIN)
    assert not any(a == 0 for _t, _k, a in rig.writes)


@pytest.mark.slow
def test_raises_wait_for_the_write_budget_and_a_one_amp_raise_for_a_fuller_one():
    # A tight budget (6 writes an hour, 8 at most): a load that comes and goes spends it, and then a
    # connector's raise waits for it (cuts never do); a raise of a single amp waits until the budget
    # is within a few writes of full again.
    tight = BalancerConfig(write_budget_per_h=6.0, write_budget_burst=8)
    rig = Rig(tight, [Car("1:1"), Car("1:2")], house=(4.0, 2.0, 2.0))
    rig.run(300)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (10, 10)
    for _ in range(4):
        rig.house[0] = 10.0
        rig.run(60)
        assert rig.setting("1:1") + rig.setting("1:2") <= 14  # cut at once, budget or not
        rig.house[0] = 4.0
        rig.run(90)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (7, 7)
    assert "raise to 10 A when its write budget allows" in rig.decisions[-1][1].connector("1:1").reason
    rig.house[0] = 3.0  # room for 11 + 10
    rig.run(300)
    assert rig.setting("1:1") + rig.setting("1:2") == 20
    reasons = [rig.decisions[-1][1].connector(k).reason for k in ("1:1", "1:2")]
    assert any("a raise of less than 2 A waits for a fuller write budget" in r for r in reasons), reasons
    rig.run(3600)  # the budget refills: the last amp is given
    assert rig.setting("1:1") + rig.setting("1:2") == 21


# ---- a household's cars: sleeping, leaving, arriving, a restart, a silent meter ------------------

def house_peak(rig: Rig) -> float:
    """The highest phase of the house with every car's draw of this second."""
    draws = [rig.draw(c) for c in rig.cars]
    return max(rig.house[p] + sum(d for d, c in zip(draws, rig.cars) if c.phases[p]) for p in range(3))


def run_watching_peak(rig: Rig, seconds: int) -> float:
    peak = 0.0
    for _ in range(seconds):
        rig.run(1)
        peak = max(peak, house_peak(rig))
    return peak


def test_a_car_that_stops_drawing_is_held_at_the_minimum_so_waking_up_adds_at_most_that():
    # MaxA 24, the house at 3 A: two cars at 11 A and 10 A. The second stops drawing (full, or its
    # own timer) but stays plugged in: it is never offered more than the minimum, so when it draws
    # again the house is at most 6 A over MaxA until the cut lands.
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1", plugged=True), Car("1:2", plugged=True)], house=(3.0, 3.0, 3.0))
    rig.run(300)
    assert sorted((rig.setting("1:1"), rig.setting("1:2"))) == [10, 11]
    stopped_at = rig.t
    rig.cars[1].demand = 0.0
    rig.run(300)
    assert all(a <= 11 for t, k, a in rig.writes if k == "1:2" and t >= stopped_at), rig.writes
    assert rig.setting("1:2") == MIN and rig.setting("1:1") == 16  # its minimum is lent to the other
    reason = rig.decisions[-1][1].connector("1:2").reason
    assert "takes nothing" in reason and "held at 6 A until it draws again" in reason
    rig.cars[1].demand = 16.0
    assert run_watching_peak(rig, 120) <= cfg.max_a + MIN


def test_a_car_that_wakes_up_on_the_minimum_it_lent_is_the_one_that_waits_for_room():
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1", plugged=True), Car("1:2", plugged=True)], house=(10.0, 2.0, 2.0))
    rig.run(300)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (7, 7)
    rig.cars[1].demand = 0.0
    rig.run(400)
    rig.house[0] = 13.0  # 11 A left for the cars: room for one car's minimum only
    rig.run(120)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (11, MIN)  # the sleeper is not counted
    woke_at = rig.t
    rig.cars[1].demand = 16.0
    peak = run_watching_peak(rig, 60)
    assert peak <= cfg.max_a + MIN
    # Both minimums do not fit: the car that woke up pauses, the one charging all along keeps its 11 A.
    assert rig.setting("1:2") == 0 and rig.setting("1:1") == 11
    assert not [w for w in rig.writes if w[0] >= woke_at and w[1] == "1:1"]
    assert "woke up" in rig.decisions[-60][1].connector("1:2").reason


@pytest.mark.parametrize(("priorities", "leaving"), [((5, 5), "1:2"), ((7, 5), "1:2"), ((7, 5), "1:1")])
def test_an_unplug_is_the_car_leaving_not_the_house_falling(priorities, leaving):
    # Two cars share 21 A (MaxA 24, the house at 3 A); one is unplugged between two reports. Its
    # draw vanishing from the meter is that car leaving: the empty outlet goes to 6 A and the other
    # car gets the rest, in at most two writes, written within settle_s of the unplug.
    cfg = BalancerConfig()
    specs = [ConnectorSpec("1:1", priority=priorities[0]), ConnectorSpec("1:2", priority=priorities[1])]
    rig = Rig(cfg, [Car("1:1", plugged=True), Car("1:2", plugged=True)], house=(3.0, 3.0, 3.0), specs=specs)
    rig.run(315)
    before = (rig.setting("1:1"), rig.setting("1:2"))
    assert sum(before) == 21
    staying = "1:1" if leaving == "1:2" else "1:2"
    unplugged_at = rig.t
    car = next(c for c in rig.cars if c.key == leaving)
    car.demand, car.plugged = 0.0, False
    rig.run(300)
    after = [w for w in rig.writes if w[0] >= unplugged_at]
    assert len(after) <= 2, after
    assert (rig.setting(staying), rig.setting(leaving)) == (15, MIN)
    raised = [t for t, k, a in after if k == staying]
    if rig.decisions[unplugged_at - 1][1].connector(staying).charge_at < 15:
        assert raised and raised[0] - unplugged_at <= cfg.settle_s, after


def test_a_car_plugging_into_the_outlet_held_at_the_minimum_cuts_nobody():
    # Car 1 at 15 A, outlet 2 empty and held at 6 A (counted): a car plugging in there draws its
    # 6 A, the meter lands at exactly MaxA, and nobody needs a cut.
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1", plugged=True), Car("1:2", demand=0.0, plugged=False)], house=(3.0, 3.0, 3.0))
    rig.run(315)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (15, MIN)
    plugged_at = rig.t
    rig.cars[1].demand, rig.cars[1].plugged = 16.0, True
    assert run_watching_peak(rig, 120) <= cfg.max_a
    # No cut for the fuse: car 1 gives the newcomer only what equal shares of 21 A ask, in one write.
    after = [w for w in rig.writes if w[0] >= plugged_at]
    assert [a for _t, k, a in after if k == "1:1"] in ([], [11]), after
    assert len(after) <= 2 and sum(rig.setting(k) for k in ("1:1", "1:2")) == 21


def restarted(cfg: BalancerConfig, budget: float | None = None) -> tuple[SharedBalancer, float]:
    """A bridge started with connector 1 found at 0 A (paused before the restart) and connector 2 at
    16 A, both cars plugged in, the house at 3 A: the service's order (the meter and decisions before
    the cloud answers, then each connector's report, status and setting)."""
    b = SharedBalancer(cfg, parse_connectors("2001:1,2001:2"))
    for t in range(20):
        for p in range(3):
            b.meter(float(t), p, 3.0 + 16.0)
        for k in ("2001:1", "2001:2"):
            b.charger_failed(float(t), k)
        if budget is not None:
            b.power_budget(float(t), "pv", budget, keys=["2001:1"], reason="solar surplus")
        b.decide(float(t))
    now = 20.0
    b.charger(now, "2001:1", (0.0, 0.0, 0.0), (False, False, False))
    b.car_plugged(now, "2001:1", True)
    b.commanded(now, "2001:1", 0)
    b.charger(now, "2001:2", (16.0, 16.0, 16.0), (True, True, True))
    b.car_plugged(now, "2001:2", True)
    b.commanded(now, "2001:2", 16)
    for k in ("2001:1", "2001:2"):
        b.charger_failed(now, k, False)
    return b, now


@pytest.mark.parametrize("budget", [None, 60.0], ids=["fast", "pv"])
def test_after_a_restart_a_car_found_paused_resumes_when_there_is_room_and_says_what_it_waits_for(budget):
    # 21 A of room: 16 + 6 do not fit, so connector 2 gives way first and connector 1 resumes once
    # that cut settled, in about a minute (the writes settling, the hold), not after min_pause_s.
    cfg = BalancerConfig()
    b, start = restarted(cfg, budget)
    cars = {"2001:1": ChargerModel(lag_s=10, initial_a=0), "2001:2": ChargerModel(lag_s=10, initial_a=16)}
    resumed = None
    for t in range(int(start), int(start) + 200):
        now = float(t)
        for p in range(3):
            b.meter(now, p, 3.0 + sum(m.draw(now) for m in cars.values()))
        if budget is not None:
            b.power_budget(now, "pv", budget, keys=["2001:1"], reason="solar surplus")
        d = b.decide(now)
        for part in d.connectors:
            assert "()" not in part.reason, part.reason
            assert "resumes no sooner" not in part.reason, part.reason
        if d.connector("2001:1").command and resumed is None:
            resumed = now
        for part in d.connectors:
            if part.command is not None:
                b.commanded(now, part.key, part.command)
                cars[part.key].write(now, part.command)
    assert resumed is not None, d.connector("2001:1").reason
    assert resumed - start <= 2 * cfg.settle_s + cfg.raise_hold_s + cfg.quick_raise_hold_s
    assert d.connector("2001:1").charge_at >= MIN and d.connector("2001:2").charge_at >= MIN


def test_a_car_plugging_into_an_outlet_paused_empty_has_no_minimum_pause_to_wait_out():
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1", plugged=True), Car("1:2", demand=0.0, plugged=False)], house=(2.0, 2.0, 2.0))
    rig.run(300)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (16, MIN)
    rig.house[0] = 13.0  # 11 A: room for one car, the empty outlet pauses
    rig.run(60)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (11, 0)
    rig.house[0] = 2.0  # the house falls: 22 A, room for both
    rig.run(60)
    plugged_at = rig.t
    rig.cars[1].demand, rig.cars[1].plugged = 16.0, True
    rig.run(120)
    resumed = [t for t, k, a in rig.writes if k == "1:2" and a >= MIN and t >= plugged_at]
    assert resumed and resumed[0] - plugged_at <= 30 + cfg.raise_hold_s, \
        [d.connector("1:2").reason for _t, d in rig.decisions[-3:]]


def test_a_meter_silent_on_every_phase_pauses_every_car_and_they_resume_when_it_speaks():
    cfg = BalancerConfig(failsafe_pause_after_s=120)
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(4.0, 2.0, 2.0))
    rig.run(300)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (10, 10)
    silent_from = rig.t
    for t in range(silent_from, silent_from + 200):
        d = rig.b.decide(float(t))
        for part in d.connectors:
            if part.command is not None:
                rig.b.commanded(float(t), part.key, part.command)
                rig.cars[int(part.key[-1]) - 1].model.write(float(t), part.command)
        if t - silent_from < cfg.failsafe_pause_after_s - 1:
            assert d.charge_at > 0, (t - silent_from, d.reason)
    assert d.charge_at == 0 and all(c.charge_at == 0 for c in d.connectors)
    assert "BALANCER_FAILSAFE_PAUSE_AFTER_S 120 s" in d.connectors[0].reason
    assert "until the meter speaks again" in d.connectors[0].reason
    rig.t = silent_from + 200
    back = rig.t
    rig.run(5)
    resumes = [w for w in rig.writes if w[0] >= back and w[2] >= MIN]
    assert {k for _t, k, _a in resumes} == {"1:1", "1:2"} and all(t == back for t, _k, _a in resumes), rig.writes[-4:]


def test_one_car_pauses_when_the_meter_is_silent_for_failsafe_pause_after_s_and_resumes_when_it_speaks():
    cfg = BalancerConfig(failsafe_pause_after_s=120)
    b = Balancer(cfg)
    car = ChargerModel(lag_s=10, initial_a=16)
    for t in range(300):
        for p in range(3):
            b.meter(float(t), p, 4.0 + car.draw(float(t)))
        d = b.decide(float(t))
        if d.command is not None:
            b.commanded(float(t), d.command)
            car.write(float(t), d.command)
    assert d.charge_at == 16
    for t in range(300, 300 + 119):
        d = b.decide(float(t))
        if d.command is not None:
            b.commanded(float(t), d.command)
    assert d.charge_at == cfg.failsafe_current  # blind: the fail-safe current
    d = b.decide(300 + 121.0)
    assert d.command == 0 and "BALANCER_FAILSAFE_PAUSE_AFTER_S" in d.reason
    b.commanded(421.0, 0)
    for p in range(3):
        b.meter(500.0, p, 4.0)
    d = b.decide(500.0)
    assert d.command is not None and d.command >= MIN, d.reason  # no minimum pause for the silence's pause


# ---- turns on a site of many cars ----------------------------------------------------------
# A housing co-op's garage: 20 three-phase cars under a 3 x 100 A fuse (96 A for the balancer),
# 40 A of house load: 56 A free, 9 cars at the 6 A minimum at once.

@pytest.mark.slow
# Whenever the evening starts on the clock: 5 min past a boundary, on one, and 10 min past (the
# latest first charges, 35 min, measured 2026-12-07).
@pytest.mark.parametrize("wall_s", [300.0, 0.0, 600.0])
def test_every_car_of_twenty_charges_within_the_first_hour_where_nine_fit(wall_s):
    from bridge.sim.site_turns import replay_site, site_balancer, site_config

    cfg = site_config(rotate_s=BalancerConfig().rotate_s)
    result = replay_site(site_balancer(cfg, 20, wall_s=wall_s), 20, 3600)
    assert max(result.totals[120:]) >= 9 * MIN - 1  # the site is full: the turns are what is tested
    assert all(t is not None for t in result.first_charge_s), result.first_charge_s
    assert max(result.longest_wait_s, max(t for t in result.first_charge_s if t is not None)) < 3600


@pytest.mark.slow
def test_a_changeover_never_leaves_the_site_at_zero():
    from bridge.sim.site_turns import replay_site, site_balancer, site_config

    cfg = site_config(rotate_s=600.0)
    result = replay_site(site_balancer(cfg, 20, wall_s=0.0), 20, 1900)
    drawing = [t for t, total in enumerate(result.totals) if total > 0]
    assert drawing and drawing[0] == 0
    # Turns changed (cars first charged after the first boundaries) and the cars drew throughout.
    assert sum(1 for t in result.first_charge_s if t is not None and t > 600) >= 9
    assert result.zero_after_start_s == 0, [t for t, total in enumerate(result.totals) if total == 0][:20]
    assert_minimum_pauses(result, cfg.min_pause_s, 9)


def assert_minimum_pauses(result, min_pause_s: float, at_least: int) -> None:
    """No car of a site replay resumed sooner than `min_pause_s` after its pause (and some resumed)."""
    paused_at: dict[int, float] = {}
    resumes = 0
    for t, car, amps in result.written:
        if amps == 0:
            paused_at[car] = t
        elif car in paused_at:
            assert t - paused_at.pop(car) >= min_pause_s, (car, t)
            resumes += 1
    assert resumes >= at_least


def test_a_change_of_turns_waits_for_the_minimum_pause():
    from bridge.sim.site_turns import replay_site, site_balancer, site_config

    # The first boundary (600 s) comes before the cars paused at the start may resume (800 s).
    cfg = site_config(rotate_s=600.0, min_pause_s=800.0)
    result = replay_site(site_balancer(cfg, 20, wall_s=0.0), 20, 1000)
    assert not [t for t in result.first_charge_s if t is not None and 120 < t < 800], result.first_charge_s
    assert_minimum_pauses(result, cfg.min_pause_s, 9)


def test_turns_change_at_the_clocks_boundaries():
    from bridge.sim.site_turns import replay_site, site_balancer, site_config

    cfg = site_config(rotate_s=600.0)
    # The wall clock reads 7 min past a 10-min boundary at 0: the first boundary is 180 s later, too
    # soon for a turn begun at 0 (less than half a turn), so the first change is at 780 s, then 1380 s.
    balancer = site_balancer(cfg, 20, wall_s=420.0)
    assert balancer._turn_ends(0.0) == 780.0
    assert balancer._turn_ends(100.0) == 780.0
    assert balancer._turn_ends(500.0) == 1380.0  # 280 s before 780: on to the next boundary
    result = replay_site(balancer, 20, 1500)
    firsts = sorted(t for t in result.first_charge_s if t is not None and t > 120)
    assert firsts, result.first_charge_s
    # Every car that took over did so at a boundary (within the changeover's steps), none between.
    assert all(780 <= t < 780 + 120 or 1380 <= t < 1380 + 120 for t in firsts), firsts


def test_where_one_car_fits_the_next_starts_once_the_stop_has_settled():
    from bridge.sim.site_turns import replay_site, site_balancer, site_config

    # Two cars, 8 A free: one at a time. A change of turns cannot keep one charging; the next car
    # is written as soon as the stop has settled (BALANCER_SETTLE_S), without a further hold.
    cfg = site_config(rotate_s=600.0)
    result = replay_site(site_balancer(cfg, 2, wall_s=0.0), 2, 1900, base_a=88.0)
    starts = [t for t, _car, amps in result.written if amps and t > 0]
    assert len(starts) >= 2, result.written
    stops = [t for t, _car, amps in result.written if amps == 0 and t > 0]
    assert [s - p for p, s in zip(stops, starts)] == [cfg.settle_s] * len(starts), result.written


def test_with_two_cars_an_unexplained_cut_soon_after_a_raise_doubles_the_hold_up_to_its_maximum():
    """As with one car (`test_balancer_adaptive.py`): the house creeps up on L2 (never a step the
    load tracker takes for a load switching on), so nothing explains the cuts; each cut within
    `cycle_window_s` of the raise before it doubles the hold before the next raise, up to
    `raise_hold_max_s`. A 3 A raise after a cut is not worth a quick raise while loads cycle."""
    cfg = BalancerConfig()
    rig = Rig(cfg, [Car("1:1"), Car("1:2")], house=(2.0, 2.0, 2.0))
    rig.run(120)

    def creep_up() -> None:
        for i in range(1, 33):
            rig.house[1] = 2.0 + 0.25 * i  # 2 -> 10 A on L2 in 32 s: both cut to 7 A
            rig.run(1)
        rig.run(60)
        assert rig.setting("1:1") == rig.setting("1:2") == 7, rig.writes[-2:]

    def raised_after(seconds: int) -> set[int]:
        rig.house[1] = 2.0
        start, before = rig.t, len(rig.writes)
        rig.run(seconds)
        return {t - start for t, _k, _a in rig.writes[before:]}

    for hold in (60, 120, 240, 240):
        creep_up()
        assert raised_after(hold + 20) == {hold}, rig.writes[-2:]


def test_with_the_meter_stale_a_car_cut_below_the_failsafe_current_is_not_raised_to_it():
    # The fail-safe never raises (as with one car, `test_balancer_adaptive.py`): a car the house cut
    # to 8 A stays at 8 A under a fail-safe current of 10 A; a car above it is cut to it.
    cfg = BalancerConfig(failsafe_current=10)
    cars = [Car("1:1", phases=(True, False, False)), Car("1:2", phases=(False, True, False))]
    rig = Rig(cfg, cars, house=(16.0, 2.0, 2.0))  # L1 has 8 A for its car, L2 16 A and more
    rig.run(300)
    assert (rig.setting("1:1"), rig.setting("1:2")) == (8, 16)
    rig.b.meter_alive(float(rig.t))
    d = rig.b.decide(rig.t + cfg.stale_after_s + 1)
    assert d.meter_stale
    assert (d.connector("1:1").charge_at, d.connector("1:2").charge_at) == (8, 10), d.reason


def _report_before_any_write(b: SharedBalancer, keys: list[str]) -> None:
    # An OCPP charger holding its car until its first profile reports Current.Import 0 A on each
    # phase (MeterValues, OCPP 1.6 section 4.7; as bridge/sim/ocpp_charger.py sends them).
    for k in keys:
        b.charger(0.0, k, (0.0, 0.0, 0.0), (False, False, False))


def _meter(b: SharedBalancer, t: float, amps: float) -> None:
    for p in range(3):
        b.meter(t, p, amps)


def test_a_car_that_starts_on_its_first_limit_is_not_counted_idle_from_a_report_before_it():
    # One connector. The charger reported no draw before anything was written (it held its car until
    # its first limit): that says nothing about what the car draws once offered 16 A. A second limit
    # follows closely (upstream's cap of 10 A, written by the charger link) and the meter shows the
    # car at 16 A before it follows the cap: the car is that 16 A, not house load (20 A on L1 would
    # leave 4 A and pause the car for min_pause_s).
    cfg = BalancerConfig(settle_s=5.0)
    b = SharedBalancer(cfg, [ConnectorSpec("CP1:1")])
    _report_before_any_write(b, ["CP1:1"])
    _meter(b, 0.0, 4.0)
    assert b.decide(0.0).connectors[0].command == 16
    b.commanded(0.1, "CP1:1", 16)
    _meter(b, 0.5, 4.0)
    assert not b.decide(0.5).paused
    b.commanded(1.0, "CP1:1", 10)  # the upstream cap, confirmed by the charger
    for t, car in ((1.1, 16.0), (1.5, 16.0), (2.0, 10.0), (3.0, 10.0)):
        _meter(b, t, 4.0 + car)
        d = b.decide(t)
        assert not d.paused and d.connectors[0].command != 0, (t, d.reason)
        if t == 1.1:
            assert b.one_car_draw(t) == ((16.0, 16.0, 16.0), True)  # the setting it followed, a cap on its way


def test_with_two_connectors_cars_that_start_on_their_first_limits_are_counted_at_them_through_a_second():
    # Two connectors, both reported drawing nothing before anything was written. The cars start on
    # their first limits, then one is given a second (a cap) while its report is still the one from
    # before, and the house steps: each car is counted at the setting it followed (the several-car
    # path assumes a charger left alone at its cap, and counts a car whose report shows no draw at
    # its setting), so nobody is cut or paused for its own car's draw.
    cfg = BalancerConfig(settle_s=5.0, max_a=40.0, fuse_a=40.0)
    keys = ["CP1:1", "CP1:2"]
    b = SharedBalancer(cfg, [ConnectorSpec(k) for k in keys])
    _report_before_any_write(b, keys)
    _meter(b, 0.0, 4.0)
    d = b.decide(0.0)
    assert [c.command for c in d.connectors] == [16, 16]
    for k in keys:
        b.commanded(0.1, k, 16)
    _meter(b, 1.0, 36.0)  # both cars draw their 16 A
    assert not b.decide(1.0).paused
    b.commanded(2.0, "CP1:1", 10)  # a second limit for the first
    for t, meter in ((2.1, 36.0), (3.0, 40.0), (4.0, 40.0)):  # the house steps by 4 A
        _meter(b, t, meter)
        d = b.decide(t)
        assert [c.charge_at for c in d.connectors] == [10, 16], (t, d.reason)
