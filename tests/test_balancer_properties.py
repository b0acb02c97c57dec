"""Properties over random house traces, replayed through a car that follows commands after a lag."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bridge.balancer import Balancer, BalancerConfig, Decision

LAG = 10
CFG = BalancerConfig()
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A trace: segments of (seconds, house L1, L2, L3), the house alone under MaxA.
segment = st.tuples(
    st.integers(min_value=1, max_value=120),
    st.floats(min_value=-5, max_value=23.5),
    st.floats(min_value=-5, max_value=23.5),
    st.floats(min_value=-5, max_value=23.5),
)
traces = st.lists(segment, min_size=1, max_size=25)
car_phases = st.sampled_from([(True, True, True), (True, False, False), (False, True, False), (False, False, True)])


def replay(strategy: str, trace, phases=(True, True, True), report_charger: bool = True):
    """Yields (now, house, totals, car draw, decision, last commanded before it)."""
    b = Balancer(CFG, strategy)
    writes: list[tuple[int, int]] = []
    setpoint = CFG.default_current
    last: int | None = None
    t = 0
    for seconds, *house in trace:
        for _ in range(seconds):
            while writes and writes[0][0] + LAG <= t:
                setpoint = writes.pop(0)[1]
            car = float(setpoint) if setpoint >= 6 else 0.0
            totals = [house[n] + (car if phases[n] else 0.0) for n in range(3)]
            for n in range(3):
                b.meter(t, n, totals[n])
            if report_charger and t % 30 == 0:  # the service's poll: (0, 0, 0) while the car is paused
                b.charger(t, tuple(car if p else 0.0 for p in phases), phases if car else (False, False, False))
            d = b.decide(t)
            yield t, house, totals, car, d, last
            if d.command is not None:
                writes.append((t, d.command))
                b.commanded(t, d.command)
                last = d.command
            t += 1


@pytest.mark.slow
@SETTINGS
@given(traces, st.sampled_from(["adaptive", "homey"]))
def test_command_is_always_pause_or_within_min_and_default(trace, strategy) -> None:
    for *_, d, _last in replay(strategy, trace):
        assert d.charge_at == 0 or CFG.min_current <= d.charge_at <= CFG.default_current
        assert d.command is None or d.command == d.charge_at
        assert isinstance(d.charge_at, int)


@pytest.mark.slow
@SETTINGS
@given(traces, car_phases)
def test_never_raised_while_a_used_phase_is_above_max_a(trace, phases) -> None:
    for _t, _house, totals, _car, d, last in replay("adaptive", trace, phases):
        if d.command is not None and last is not None and d.command > last:
            assert all(totals[n] <= CFG.max_a for n in range(3) if phases[n])


house_load = st.tuples(*[st.floats(min_value=-5, max_value=23.5)] * 3)


@pytest.mark.slow
@SETTINGS
@given(house_load, house_load, car_phases, st.floats(min_value=9, max_value=23.5), st.integers(0, 2))
def test_after_a_cut_the_phase_is_at_or_below_max_a_once_the_charger_follows(before, after, phases, high,
                                                                              which) -> None:
    # One of the car's phases rises to `high` (9 A and more: above what leaves 16 A), so that
    # most examples cut; those that do not (the car already lower) are discarded.
    used = [n for n in range(3) if phases[n]]
    after = tuple(max(after[n], high) if n == used[which % len(used)] else after[n] for n in range(3))
    steps = list(replay("adaptive", [(100, *before), (300, *after)], phases))
    cuts = [t for t, _h, _tot, _car, d, last in steps[100:] if d.command is not None and last is not None
            and d.command < last]
    assume(cuts)  # traces with no cut say nothing about what follows one
    for _t, _house, totals, _car, _d, _last in steps[cuts[-1] + LAG:]:
        assert all(totals[n] <= CFG.max_a for n in range(3) if phases[n])


@pytest.mark.slow
@SETTINGS
@given(traces, car_phases, st.booleans())
def test_same_input_gives_same_output(trace, phases, report) -> None:
    first = [d for *_, d, _ in replay("adaptive", trace, phases, report)]
    second = [d for *_, d, _ in replay("adaptive", trace, phases, report)]
    assert first == second


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(min_value=-50, max_value=80)), min_size=1, max_size=200))
def test_homey_output_never_emits_1_to_5_or_negative(readings) -> None:
    b = Balancer(CFG, "homey")
    for n in range(3):
        b.meter(0, n, 10.0)
    for i, (phase, amps) in enumerate(readings, start=1):
        b.meter(i * 7, phase, amps)
        for n in range(3):
            b.meter_alive(i * 7)
        d: Decision = b.decide(i * 7)
        assert d.charge_at == 0 or 6 <= d.charge_at <= 16
        if d.command is not None:
            b.commanded(i * 7, d.command)


@SETTINGS
@given(st.floats(min_value=0, max_value=1e6), st.integers(min_value=0, max_value=60), house_load,
       st.sampled_from(["adaptive", "homey"]))
def test_nothing_is_written_before_the_meter_had_stale_after_s_to_speak(start, first_reading_s, house,
                                                                       strategy) -> None:
    b = Balancer(CFG, strategy)
    for i in range(90):
        now = start + i
        if i >= first_reading_s:
            for n in range(3):
                b.meter(now, n, house[n])
        d = b.decide(now)
        if i < min(first_reading_s, CFG.stale_after_s):
            assert d.command is None and d.waiting_for_meter and not d.meter_stale
        elif first_reading_s <= i:
            assert not d.meter_stale and not d.waiting_for_meter
        else:  # silent since the start for stale_after_s: the fail-safe
            assert d.meter_stale and d.charge_at == CFG.failsafe_current
            assert d.command == (CFG.failsafe_current if i == CFG.stale_after_s else None)
        if d.command is not None:
            b.commanded(now, d.command)
