"""Circuits: the tree of fuses under the main one (`CIRCUITS`, `@NAME` on a connector), the
allocation that keeps every phase of every circuit within its limit, max-min fair by priority over
the whole tree, and `SharedBalancer` driven over simulated seconds with circuits and sub-meters.

The shapes are those the settings take: `CIRCUITS=garage:16,box1:10:garage` (NAME:MAX_A[:PARENT])
and `CHARGEAMPS_CONNECTORS=2001:1@garage,2001:2@garage,2002:1`."""

from __future__ import annotations

import os

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.balancer import BalancerConfig
from bridge.balancer.circuits import Circuit, CircuitRoom, CircuitTree, parse_circuits
from bridge.balancer.sharing import Claim, SharedBalancer, parse_connectors, share
from tests.test_balancer_sharing import Car, Rig

MIN = 6
THREE = (0, 1, 2)


# ---- the settings ---------------------------------------------------------------------

def test_parse_circuits_and_connectors_on_them():
    circuits = parse_circuits("garage:16, box1:10:garage")
    assert circuits == [Circuit("garage", 16.0), Circuit("box1", 10.0, "garage")]
    specs = parse_connectors("2001:1@garage,2001:2/L2L3L1@box1,2002:1")
    assert [(s.key, s.circuit, s.phase_map) for s in specs] == [
        ("2001:1", "garage", (0, 1, 2)), ("2001:2", "box1", (1, 2, 0)), ("2002:1", "main", (0, 1, 2))]
    tree = CircuitTree(circuits, 24, {s.key: s.circuit for s in specs})
    assert tree.keys_under("garage") == {"2001:1", "2001:2"}
    assert tree.keys_under("box1") == {"2001:2"}
    assert tree.circuits_of("2001:2") == ["box1", "garage"]
    assert tree.order == ["box1", "garage"]


@pytest.mark.parametrize(
    ("circuits", "connectors", "words"),
    [
        ("garage:16:shed", "1:1@garage", "circuit garage: unknown parent circuit 'shed'"),
        ("a:10:b,b:10:a", "1:1@a", "circuit a: its parents make a cycle (a -> b -> a)"),
        ("a:10:a", "1:1@a", "circuit a: its parents make a cycle"),
        ("garage:16", "1:1@shed", "connector 1:1: unknown circuit 'shed'"),
        ("garage:30", "1:1@garage", "circuit garage: its limit 30 A is above the main fuse's BALANCER_MAX_A (24 A)"),
        ("garage:16,box:20:garage", "1:1@box", "circuit box: its limit 20 A is above its parent garage's (16 A)"),
    ],
)
def test_a_broken_tree_is_refused_naming_it(circuits, connectors, words):
    specs = parse_connectors(connectors)
    with pytest.raises(ValueError) as e:
        SharedBalancer(BalancerConfig(max_a=24), specs, circuits=parse_circuits(circuits))
    assert words in str(e.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("garage", "expected NAME:MAX_A[:PARENT]"),
        ("garage:x", "the limit 'x' is not a number"),
        ("garage:0", "above 0"),
        ("main:16", "'main' is the main fuse"),
        ("gar-age:16", "must be a letter then letters, digits or _"),
        ("garage:16,GARAGE:10", "listed twice"),
        ("garage:16,,shed:10", "empty entry"),
    ],
)
def test_a_bad_circuit_entry_is_named(text, words):
    with pytest.raises(ValueError) as e:
        parse_circuits(text)
    assert words in str(e.value)


def test_a_connector_on_an_empty_circuit_name_is_refused():
    with pytest.raises(ValueError, match="no circuit named after @"):
        parse_connectors("2001:1@")


def test_homey_on_a_circuit_is_refused_saying_why():
    with pytest.raises(ValueError, match="knows the main fuse only"):
        SharedBalancer(BalancerConfig(), parse_connectors("1:1@garage"), strategy="homey",
                       circuits=parse_circuits("garage:16"))


# ---- the allocation --------------------------------------------------------------------

def room(name, amps, keys, current=(0.0, 0.0, 0.0)):
    return CircuitRoom(name, float(max(amps)), frozenset(keys), tuple(float(a) for a in amps), current)


def test_a_car_on_a_full_feeder_does_not_hold_back_a_car_elsewhere():
    claims = [Claim("g1", THREE, 16), Claim("g2", THREE, 16), Claim("house", THREE, 16)]
    amps = share([40, 40, 40], claims, MIN, circuits=[room("garage", (16, 16, 16), {"g1", "g2"})])
    assert amps == {"g1": 8, "g2": 8, "house": 16}


def test_a_circuit_binds_per_phase_and_a_one_phase_car_on_another_phase_goes_on():
    # garage L1 has 10 A: the three-phase car stops at 10; the one-phase car on L2 takes its cap.
    claims = [Claim("three", THREE, 16), Claim("one", (1,), 16)]
    amps = share([40, 40, 40], claims, MIN, circuits=[room("garage", (10, 30, 30), {"three", "one"})])
    assert amps == {"three": 10, "one": 16}


def test_priority_within_a_circuit_and_across_the_tree():
    claims = [Claim("g1", THREE, 16, priority=7), Claim("g2", THREE, 16, priority=5), Claim("h", THREE, 16)]
    amps = share([30, 30, 30], claims, MIN, circuits=[room("garage", (20, 20, 20), {"g1", "g2"})])
    assert amps == {"g1": 14, "g2": 6, "h": 10}


# Trees of up to three circuits over up to five claims: a parent index per circuit (-1: main).
tree_st = st.lists(st.tuples(st.floats(0, 40), st.integers(-1, 2)), min_size=1, max_size=3)
claim_st = st.tuples(st.sampled_from([(0,), (1,), (2,), (0, 1), THREE]), st.integers(0, 32),
                     st.integers(0, 9), st.integers(-1, 2))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 60), min_size=3, max_size=3), tree_st, st.lists(claim_st, min_size=1, max_size=5),
       st.lists(st.floats(-5, 40), min_size=9, max_size=9))
def test_no_circuit_phase_is_ever_exceeded_and_the_allocation_is_max_min_fair(budget, tree, raw, rooms_raw):
    # A parent must come before its child (no cycle); a child's rooms are random, not below its parent's.
    parents = [p if p < i else -1 for i, (_a, p) in enumerate(tree)]
    claims = [Claim(f"c{i}", ph, cap, prio) for i, (ph, cap, prio, _c) in enumerate(raw)]
    own = {c.key: (circ if circ < len(tree) else -1) for c, (_p, _cap, _pr, circ) in zip(claims, raw)}

    def under(i):  # the claims a circuit feeds: its own and its children's
        out = set()
        for k, c in own.items():
            while c != -1:
                if c == i:
                    out.add(k)
                c = parents[c]
        return out

    rooms = [room(f"r{i}", rooms_raw[3 * i:3 * i + 3], under(i)) for i in range(len(tree))]
    assume(any(r.keys for r in rooms))  # a circuit feeds a car: not the main fuse alone
    amps = share(budget, claims, MIN, circuits=rooms)
    # Every limit: the main fuse's phases and each circuit's, as (its claims, per-phase amount left).
    limits = [(set(own), list(budget))] + [(set(r.keys), list(r.room)) for r in rooms]
    for keys, left in limits:
        for c in claims:
            if c.key in keys:
                for p in c.phases:
                    left[p] -= amps[c.key]
    bound = [(set(own), budget)] + [(set(r.keys), r.room) for r in rooms]
    for (keys, left), (_k, start) in zip(limits, bound):
        assert all(x >= min(0.0, s) - 1e-9 for x, s in zip(left, start)), (keys, left)

    def blocking(c):
        return {(i, p) for i, (keys, left) in enumerate(limits) if c.key in keys for p in c.phases if left[p] < 1}

    # The fairness half needs a car held back by a limit (about one example in five); the safety
    # half above holds for every example. An assume here filtered so much that Hypothesis's health
    # check failed on some seeds.
    if not any(0 < amps[c.key] < c.cap for c in claims):
        return
    for c in claims:
        a = amps[c.key]
        assert a == 0 or MIN <= a <= c.cap
        if 0 < a < c.cap:
            assert blocking(c), c  # held back only by a limit with no amp left
    for a in claims:
        for b in claims:
            if a is b or amps[a.key] == 0 or amps[b.key] == 0:
                continue
            reach_a = {(i, p) for i, (keys, _l) in enumerate(limits) if a.key in keys for p in a.phases}
            # Priority: a lower one above its minimum never holds amps a higher one could take.
            if a.priority > b.priority and amps[b.key] > MIN and amps[a.key] < a.cap:
                reach_b = {(i, p) for i, (keys, _l) in enumerate(limits) if b.key in keys for p in b.phases}
                assert not blocking(a) <= reach_b
            # Max-min fair among equals: more than 1 A apart only when an amp moved from the higher
            # to the lower would not free every limit that blocks the lower.
            if a.priority == b.priority and amps[a.key] > amps[b.key] + 1 and amps[b.key] < b.cap:
                assert not blocking(b) <= reach_a


# ---- the balancer over simulated seconds ---------------------------------------------------

class CircuitRig(Rig):
    """`Rig` with circuits: `sub_load` gives a metered circuit's own load (beyond its cars) per phase."""

    def __init__(self, cfg, cars, circuits, connectors, house=(2.0, 2.0, 2.0), sub_load=None):
        super().__init__(cfg, cars, house)
        self.b = SharedBalancer(cfg, parse_connectors(connectors), circuits=parse_circuits(circuits))
        self.sub_load = dict(sub_load or {})
        self.silent: set[str] = set()

    def run(self, seconds: int) -> None:
        for _ in range(seconds):
            now = float(self.t)
            for name, extra in self.sub_load.items():
                if name in self.silent:
                    continue
                keys = self.b.circuits.keys_under(name)
                for p in range(3):
                    cars = sum(self.draw(c) for c in self.cars if c.key in keys and c.phases[p])
                    self.b.circuit_meter(now, name, p, extra[p] + cars)
            super().run(1)

    def worst(self, keys, seconds=None):
        """The most the cars in `keys` were given together on one phase (after the first decision)."""
        return max(sum(d.connector(k).charge_at for k in keys) for _t, d in self.decisions[1:])


def test_a_child_circuit_holds_its_cars_and_the_car_elsewhere_takes_the_rest():
    # Two cars on a garage feeder of 16 A under a 32 A main fuse, a third on the main fuse.
    cfg = BalancerConfig(max_a=32, fuse_a=35)
    rig = CircuitRig(cfg, [Car("1:1"), Car("1:2"), Car("2:1")], "garage:16", "1:1@garage,1:2@garage,2:1",
                     house=(2.0, 2.0, 2.0))
    rig.run(400)
    assert rig.worst(["1:1", "1:2"]) <= 16
    assert (rig.setting("1:1"), rig.setting("1:2")) == (8, 8)
    assert rig.setting("2:1") == 14  # 32 - 2 - 16
    d = rig.decisions[-1][1]
    garage = next(r for r in d.circuits if r.name == "garage")
    assert garage.room == (16.0, 16.0, 16.0)
    assert "garage L1 at" in d.connector("1:1").reason, d.connector("1:1").reason


def test_the_parent_circuit_binds_its_childrens_cars_together():
    # building 20 A, under it box 16 A: a car in the box and a car on the building's own outlet.
    cfg = BalancerConfig(max_a=40, fuse_a=50)
    rig = CircuitRig(cfg, [Car("1:1"), Car("1:2"), Car("2:1")], "building:20,box:16:building",
                     "1:1@box,1:2@building,2:1", house=(2.0, 2.0, 2.0))
    rig.run(400)
    assert rig.worst(["1:1", "1:2"]) <= 20
    assert (rig.setting("1:1"), rig.setting("1:2")) == (10, 10)
    assert rig.setting("2:1") == 16  # the main fuse has room: the building's cars do not hold it back
    assert "building L1 at" in rig.decisions[-1][1].connector("1:2").reason


def test_a_sub_meter_counts_the_feeders_other_load_and_names_the_phase_that_binds():
    cfg = BalancerConfig(max_a=24)
    rig = CircuitRig(cfg, [Car("1:1"), Car("1:2")], "garage:16", "1:1@garage,1:2@garage",
                     house=(2.0, 2.0, 2.0), sub_load={"garage": (1.0, 4.0, 1.0)})
    rig.run(400)
    # L2: 16 - 4 = 12 A for the two cars: equal at 6 A.
    assert (rig.setting("1:1"), rig.setting("1:2")) == (6, 6)
    assert "garage L2 at 16.0 A" in rig.decisions[-1][1].connector("1:1").reason
    rig.sub_load["garage"] = (1.0, 7.0, 1.0)  # 9 A left on L2: one car
    rig.run(60)
    assert sorted([rig.setting("1:1"), rig.setting("1:2")]) == [0, 9]
    paused = next(k for k in ("1:1", "1:2") if rig.setting(k) == 0)
    assert "garage L2 at" in rig.decisions[-1][1].connector(paused).reason


def test_a_stale_sub_meter_puts_its_cars_to_the_failsafe_together_and_the_others_charge_on():
    cfg = BalancerConfig(max_a=40, fuse_a=50)
    rig = CircuitRig(cfg, [Car("1:1"), Car("1:2"), Car("2:1")], "garage:16", "1:1@garage,1:2@garage,2:1",
                     sub_load={"garage": (0.0, 0.0, 0.0)})
    rig.run(300)
    assert (rig.setting("1:1"), rig.setting("1:2"), rig.setting("2:1")) == (8, 8, 16)
    rig.silent.add("garage")
    rig.run(int(cfg.stale_after_s) + 5)
    d = rig.decisions[-1][1]
    assert sorted([rig.setting("1:1"), rig.setting("1:2")]) == [0, cfg.failsafe_current]
    assert rig.setting("2:1") == 16
    assert all("circuit garage meter stale" in d.connector(k).reason for k in ("1:1", "1:2"))
    assert not d.meter_stale
    assert next(r for r in d.circuits if r.name == "garage").stale is not None
    rig.run(120)  # never raised while stale
    assert sorted([rig.setting("1:1"), rig.setting("1:2")]) == [0, cfg.failsafe_current]


def test_one_connector_on_a_circuit_keeps_to_the_circuit():
    cfg = BalancerConfig(max_a=24)
    rig = CircuitRig(cfg, [Car("1:1")], "garage:10", "1:1@garage")
    rig.run(300)
    assert rig.worst(["1:1"]) <= 10
    assert rig.setting("1:1") == 10


# ---- the settings: CIRCUITS, @NAME, CIRCUIT_<NAME>_* ------------------------------------------

BAD_CONFIGURATIONS = {
    "a cycle": ({"CIRCUITS": "a:10:b,b:10:a", "CHARGEAMPS_CONNECTORS": "2001:1@a,2001:2"},
                "CIRCUITS: circuit a: its parents make a cycle (a -> b -> a)"),
    "an unknown parent": ({"CIRCUITS": "garage:16:shed", "CHARGEAMPS_CONNECTORS": "2001:1@garage,2001:2"},
                          "circuit garage: unknown parent circuit 'shed'"),
    "a connector on an unknown circuit": ({"CIRCUITS": "garage:16", "CHARGEAMPS_CONNECTORS": "2001:1@shed,2001:2"},
                                          "connector 2001:1: unknown circuit 'shed'"),
    "a child above its parent": ({"CIRCUITS": "garage:16,box:20:garage",
                                  "CHARGEAMPS_CONNECTORS": "2001:1@box,2001:2"},
                                 "circuit box: its limit 20 A is above its parent garage's (16 A)"),
    "a circuit above the main fuse": ({"CIRCUITS": "garage:30", "CHARGEAMPS_CONNECTORS": "2001:1@garage,2001:2"},
                                      "above the main fuse's BALANCER_MAX_A (24 A)"),
    "a bad entry": ({"CIRCUITS": "garage=16"}, "circuit entry 'garage=16': expected NAME:MAX_A[:PARENT]"),
    "a sub-meter without every phase": ({"CIRCUITS": "garage:16", "CIRCUIT_GARAGE_TOPIC_L1": "feeder/l1"},
                                        "CIRCUIT_GARAGE_TOPIC_L2, CIRCUIT_GARAGE_TOPIC_L3 not set"),
    "a sub-meter's unit": ({"CIRCUITS": "garage:16", **{f"CIRCUIT_GARAGE_TOPIC_L{n}": f"f/{n}" for n in (1, 2, 3)},
                            "CIRCUIT_GARAGE_UNIT": "volts"}, "CIRCUIT_GARAGE_UNIT: must be one of A, W, kW"),
}


@pytest.fixture
def circuit_env(monkeypatch, tmp_path):
    from tests.test_config import OWN_PREFIXES

    for name in list(os.environ):
        if name.upper().startswith((*OWN_PREFIXES, "CIRCUIT")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return monkeypatch


@pytest.mark.parametrize("case", list(BAD_CONFIGURATIONS))
def test_a_broken_circuit_setting_is_a_config_error_naming_it(circuit_env, case):
    from bridge.config import ConfigError, load_settings

    values, words = BAD_CONFIGURATIONS[case]
    for name, value in values.items():
        circuit_env.setenv(name, value)
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert words in str(e.value)


def test_circuits_and_a_sub_meter_from_the_settings(circuit_env):
    from bridge.config import load_settings

    circuit_env.setenv("CIRCUITS", "garage:16, box1:10:garage")
    circuit_env.setenv("CHARGEAMPS_CONNECTORS", "2001:1@garage,2001:2@box1,2002:1")
    # A sub-meter in the P1_* shapes: one JSON topic per phase with a path, in W.
    for n in (1, 2, 3):
        circuit_env.setenv(f"CIRCUIT_GARAGE_TOPIC_L{n}", f"feeder/garage/l{n}")
        circuit_env.setenv(f"CIRCUIT_GARAGE_JSON_PATH_L{n}", "power")
    circuit_env.setenv("CIRCUIT_GARAGE_UNIT", "w")
    s = load_settings()
    tree = s.circuit_tree()
    assert tree.keys_under("garage") == {"2001:1", "2001:2"}
    sources = s.circuit_meter_sources()
    assert list(sources) == ["garage"]
    assert sources["garage"].subscriptions() == ["feeder/garage/l1", "feeder/garage/l2", "feeder/garage/l3"]


@pytest.mark.slow
def test_run_exits_2_naming_the_broken_tree(tmp_path):
    # The real command line: a configuration error stops `run` before it talks to anyone.
    from tests.test_cli import base_env, run_cli_parallel

    runs = []
    for values, _words in BAD_CONFIGURATIONS.values():
        env = {k: v for k, v in base_env().items() if not k.upper().startswith("CIRCUIT")}
        env.update(values, CHARGEAMPS_STATE_DIR=str(tmp_path / "state"))
        runs.append((["run"], env))
    for (case, (_values, words)), result in zip(BAD_CONFIGURATIONS.items(), run_cli_parallel(runs, tmp_path)):
        assert result.returncode == 2, (case, result.stderr)
        assert "Traceback" not in result.stderr
        assert words in result.stderr, (case, result.stderr)
