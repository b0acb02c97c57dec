"""The oracle that keeps the minimum pause (`bridge.sim.pause_oracle`): traces small enough that
the answer is known by hand, a search of every schedule on tiny ones, and the rules it keeps."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.sim.bench import Limits, oracle_allowance, oracle_energy_kwh, oracle_shared, shared_pause_oracle
from bridge.sim.charger import IEC_MIN_CURRENT_A as IEC_MIN
from bridge.sim.house import CarSpec, HouseTrace
from bridge.sim.pause_oracle import pause_oracle

PAUSE = 300
MINUTES_20 = 20 * 60


def dip(length: int, at: int, seconds: int, amps: int = 16) -> list[int]:
    """`amps` every second, but 0 (below the minimum current) for `seconds` from `at`."""
    return [0 if at <= t < at + seconds else amps for t in range(length)]


def test_a_10_s_dip_in_20_minutes_costs_exactly_the_rest_of_the_pause():
    allowance = dip(MINUTES_20, at=600, seconds=10)
    schedule = pause_oracle(allowance, PAUSE)
    assert sum(allowance) - schedule.amp_seconds == 16 * (PAUSE - 10)
    assert len(schedule.pauses) == 1
    start, end = schedule.pauses[0]
    assert end - start == PAUSE and start <= 600 and end >= 610


def test_without_a_minimum_pause_it_is_the_plain_oracle():
    allowance = dip(MINUTES_20, at=600, seconds=10)
    assert pause_oracle(allowance, 0).amp_seconds == sum(allowance)


def test_the_pause_goes_where_the_allowance_is_lowest():
    # 7 A for the 200 s before the dip, 16 A elsewhere: the pause ends with the dip and covers the 7 A.
    allowance = [7 if 400 <= t < 600 else a for t, a in enumerate(dip(MINUTES_20, at=600, seconds=10))]
    schedule = pause_oracle(allowance, PAUSE)
    assert schedule.pauses == [(310, 610)]
    assert sum(allowance) - schedule.amp_seconds == 7 * 200 + 16 * 90


def test_two_dips_closer_than_the_pause_are_one_pause():
    allowance = [0 if t in range(500, 510) or t in range(600, 610) else 16 for t in range(MINUTES_20)]
    schedule = pause_oracle(allowance, PAUSE)
    assert len(schedule.pauses) == 1
    assert sum(allowance) - schedule.amp_seconds == 16 * (PAUSE - 20)


def test_a_dip_near_the_end_pauses_only_until_the_trace_ends():
    allowance = dip(MINUTES_20, at=1100, seconds=10)
    schedule = pause_oracle(allowance, PAUSE)
    assert schedule.pauses == [(1100, MINUTES_20)]
    assert sum(allowance) - schedule.amp_seconds == 16 * 90


def test_a_dip_at_the_start_pauses_for_the_whole_minimum():
    # The car charges when the trace begins (as in the bench's replay): a pause at 0 is a pause.
    schedule = pause_oracle(dip(MINUTES_20, at=0, seconds=10), PAUSE)
    assert schedule.pauses == [(0, PAUSE)]


def test_a_full_car_is_not_paused():
    # Allowance 0 for a car that takes nothing: nothing is lost, no pause is needed.
    allowance = dip(MINUTES_20, at=600, seconds=10)
    idle = [False] * MINUTES_20
    schedule = pause_oracle(allowance, PAUSE, must_pause=idle)
    assert schedule.pauses == [] and schedule.amp_seconds == sum(allowance)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="must_pause has 2 seconds"):
        pause_oracle([6, 6, 6], 10, must_pause=[False, False])
    with pytest.raises(ValueError, match="min_pause_s"):
        pause_oracle([6], -1)


def every_schedule_best(allowance: list[int], pause: int) -> int:
    """The most amp-seconds over every schedule that keeps the rule, by trying them all."""
    n, best = len(allowance), 0
    for paused in itertools.product((False, True), repeat=n):
        if any(a == 0 and not p for a, p in zip(allowance, paused)):
            continue
        if all(end == n or end - start >= pause for start, end in runs(list(paused))):
            best = max(best, sum(a for a, p in zip(allowance, paused) if not p))
    return best


def runs(paused: list[bool]) -> list[tuple[int, int]]:
    """The maximal runs of paused seconds, as [start, end)."""
    out, start = [], None
    for t, p in enumerate([*paused, False]):
        if p and start is None:
            start = t
        elif not p and start is not None:
            out.append((start, t))
            start = None
    return out


allowances = st.lists(st.sampled_from([0, 0, 6, 7, 10, 16]), min_size=1, max_size=9)


@settings(max_examples=300, deadline=None)
@given(allowances, st.integers(min_value=0, max_value=6))
def test_on_tiny_traces_it_finds_the_best_schedule(allowance, pause):
    assume(0 in allowance and any(allowance))  # a pause is needed, and it costs something
    assert pause_oracle(allowance, pause).amp_seconds == every_schedule_best(allowance, pause)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 6, 9, 16]), st.integers(min_value=1, max_value=40)),
                min_size=1, max_size=30),
       st.integers(min_value=0, max_value=120))
def test_it_never_exceeds_the_plain_oracle_nor_breaks_the_pause_rule(steps, pause):
    allowance = [a for a, seconds in steps for _ in range(seconds)]
    assume(0 in allowance and any(allowance))
    schedule = pause_oracle(allowance, pause)
    assert all(0 <= amps <= a for amps, a in zip(schedule.amps, allowance))  # the fuse, every second
    assert all(p for a, p in zip(allowance, schedule.paused) if a == 0)  # below 6 A: paused
    assert all(amps == (0 if p else a) for amps, a, p in zip(schedule.amps, allowance, schedule.paused))
    assert runs(schedule.paused) == schedule.pauses
    for start, end in schedule.pauses:
        assert end - start >= pause or end == len(allowance), (start, end)
    assert schedule.amp_seconds <= sum(allowance)


def test_it_takes_a_day_of_seconds_in_linear_time():
    # A dip every 10 minutes over a day: O(T), whatever the minimum pause (a check of cost, not speed).
    allowance = [0 if t % 600 < 5 else 16 for t in range(86400)]
    assert pause_oracle(allowance, PAUSE).amp_seconds == 16 * (86400 - 144 * PAUSE)


# ---- in the bench ---------------------------------------------------------------------

LIMITS = Limits(max_a=24, fuse_a=25, default_current=16, min_pause_s=PAUSE)


def house(l1: list[float]) -> HouseTrace:
    n = len(l1)
    return HouseTrace(name="t", base=(l1, [0.0] * n, [0.0] * n), metered=([True] * n,) * 3)


def test_the_bench_reports_the_pause_oracle_beside_the_plain_one():
    from bridge.balancer import Balancer, BalancerConfig
    from bridge.sim.bench import run_bench

    # An oven for 10 s leaves less than 6 A: the pause oracle loses the rest of a pause.
    trace = house([20.0 if 600 <= t < 610 else 2.0 for t in range(MINUTES_20)])
    assert oracle_allowance(trace, LIMITS)[600] == 0
    report, _ = run_bench([trace], BalancerConfig(), ["adaptive"], lambda cfg, s: Balancer(cfg, strategy=s))
    (entry,) = report["traces"]
    kwh_per_as = 3 * 230 / 3.6e6
    assert entry["oracle"]["energy_kwh"] == pytest.approx(oracle_energy_kwh(trace, LIMITS), abs=1e-4)
    assert entry["oracle"]["pause_oracle_energy_kwh"] == pytest.approx(
        (16 * MINUTES_20 - 16 * PAUSE) * kwh_per_as, abs=1e-4)
    s = entry["strategies"]["adaptive"]
    assert s["energy_ratio_pause_oracle"] == pytest.approx(
        s["energy_kwh"] / entry["oracle"]["pause_oracle_energy_kwh"], abs=1e-3)
    assert s["energy_ratio_pause_oracle"] > s["energy_ratio"]


def test_several_cars_keep_each_cars_pause_under_the_fuse():
    two = (CarSpec(), CarSpec())
    n = MINUTES_20
    # Room for both at 10 A, but for 10 s only for one car's minimum: the second car pauses.
    bases = [(15.0 if 600 <= t < 610 else 4.0, 0.0, 0.0) for t in range(n)]
    demands = [[16.0, 16.0] for _ in range(n)]
    allocations = [(9, 0) if 600 <= t < 610 else (10, 10) for t in range(n)]
    car1, car2 = map(sum, shared_pause_oracle(bases, demands, allocations, two, LIMITS))
    # Car 2 is paused for the minimum; car 1 takes what car 2 leaves (16 A) while it is.
    assert car2 == 10 * (n - PAUSE)
    assert car1 == 10 * (n - PAUSE) + 16 * (PAUSE - 10) + 9 * 10


def joint_best(bases, demands, cars, limits: Limits) -> int:
    """The exact pause oracle of several cars on a tiny trace: every pause pattern of every car that
    keeps the rule, each second the most amps in total with the cars not paused at 6 A or more."""
    n, count = len(bases), len(cars)
    caps = [[int(min(limits.default_current, d)) for d in row] for row in demands]

    def best_second(t: int, charging: tuple[int, ...]) -> int | None:
        choices = [range(IEC_MIN, caps[t][i] + 1) for i in charging]
        best = None
        for amps in itertools.product(*choices):
            if all(bases[t][p] + sum(a for a, i in zip(amps, charging) if cars[i].phases[p]) <= limits.max_a
                   for p in range(3)):
                best = max(best or 0, sum(amps))
        return best

    patterns = [pattern for pattern in itertools.product((False, True), repeat=n)
                if all(end == n or end - start >= limits.min_pause_s for start, end in runs(list(pattern)))]
    best = 0
    for joint in itertools.product(patterns, repeat=count):
        total = 0
        for t in range(n):
            got = best_second(t, tuple(i for i in range(count) if not joint[i][t]))
            if got is None:
                break
            total += got
        else:
            best = max(best, total)
    return best


load = st.sampled_from([2.0, 8.0, 13.0, 19.0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(load, load, load), min_size=2, max_size=6), st.integers(min_value=1, max_value=3),
       st.sampled_from([((True, True, True), (True, True, True)), ((True, False, False), (True, True, True)),
                        ((True, False, False), (False, True, False))]))
def test_several_cars_get_a_schedule_within_the_rules_and_at_most_the_exact_optimum(bases, pause, phases):
    cars = tuple(CarSpec(phases=p) for p in phases)
    limits = Limits(max_a=24, fuse_a=25, default_current=16, min_pause_s=pause)
    demands = [[16.0, 16.0] for _ in bases]
    allocations = [oracle_shared(b, d, cars, limits) for b, d in zip(bases, demands)]
    plain = sum(map(sum, allocations))
    assume(any(0 in a for a in allocations) and plain > 0)  # a car must pause somewhere
    amps = shared_pause_oracle(bases, demands, allocations, cars, limits)
    for t, base in enumerate(bases):  # under MaxA every second, each car 0 or 6 A up to its cap
        assert all(base[p] + sum(a[t] for a, c in zip(amps, cars) if c.phases[p]) <= limits.max_a for p in range(3))
        assert all(a[t] == 0 or IEC_MIN <= a[t] <= 16 for a in amps)
    for a in amps:  # each car's pauses keep the minimum
        assert all(end == len(bases) or end - start >= pause for start, end in runs([x == 0 for x in a]))
    assert sum(map(sum, amps)) <= joint_best(bases, demands, cars, limits) <= plain


def test_several_cars_on_a_circuit_stay_under_its_limit_while_one_is_paused():
    from bridge.balancer.circuits import parse_circuits
    from bridge.sim.bench import circuit_limits

    # Two cars on a 12 A garage feeder under a 24 A main: 6 A each. For 10 s the house leaves the
    # main 10 A: one car pauses, and the other may take the garage's room (12 A), not the main's.
    two = (CarSpec(circuit="garage"), CarSpec(circuit="garage"))
    rooms = circuit_limits(two, parse_circuits("garage:12"), LIMITS.max_a)
    n = MINUTES_20
    bases = [(14.0 if 600 <= t < 610 else 2.0, 0.0, 0.0) for t in range(n)]
    demands = [[16.0, 16.0] for _ in range(n)]
    allocations = [oracle_shared(b, d, two, LIMITS, rooms) for b, d in zip(bases, demands)]
    assert allocations[0] == (6, 6) and sorted(allocations[600]) == [0, 10]
    car1, car2 = shared_pause_oracle(bases, demands, allocations, two, LIMITS, rooms)
    assert all(a + b <= 12 for a, b in zip(car1, car2))  # the garage, every second
    assert max(car1) == 12 and sum(car2) == 6 * (n - PAUSE)  # car 2 paused for the minimum
