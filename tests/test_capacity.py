"""The capacity-tariff guard (bridge/balancer/capacity.py): pure, the caller passes the local time."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bridge.balancer import Balancer, BalancerConfig
from bridge.balancer.capacity import (
    CapacityConfig,
    CapacityConfigError,
    HOUSE_WINDOW_S,
    SPREAD_S,
    CapacityGuard,
    parse_hours,
    parse_months,
    period_start,
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
BRUSSELS = ZoneInfo("Europe/Brussels")
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(guard: CapacityGuard, start: datetime, house_w, seconds: int, lag_s: int = 10, car_max_w: float = 11000.0,
        car_on=lambda t: True):
    """Drive the guard one second at a time with a car that follows its allowance `lag_s` late.

    `house_w(t)` is the house alone; returns the closed periods' averages (kW) by their start."""
    pending: deque[float] = deque([0.0] * lag_s)
    car_w = 0.0
    closed: dict[datetime, float] = {}  # by the period's start in UTC
    energy: dict[datetime, float] = {}
    for t in range(seconds):
        now = (start.astimezone(timezone.utc) + timedelta(seconds=t)).astimezone(start.tzinfo)
        net = house_w(t) + car_w
        status = guard.update(now, net, car_w, lag_s=lag_s)
        allowance = car_max_w if status.car_allowance_w is None else min(car_max_w, status.car_allowance_w)
        pending.append(allowance if car_on(t) else 0.0)
        # The import of this second, at this second's power: the period the second belongs to.
        # In UTC: within one zone, datetimes compare by wall clock, and the repeated autumn hour would merge.
        key = status.period_start.astimezone(timezone.utc)
        energy[key] = energy.get(key, 0.0) + max(0.0, net)
        car_w = pending.popleft()
    period_s = guard.cfg.period_s
    for key, ws in energy.items():
        closed[key] = ws / period_s / 1000.0
    return closed


def test_parse_hours_and_months():
    hours = parse_hours("Mon-Fri 07-19")
    assert hours is not None and hours.days == frozenset(range(5)) and (hours.start_hour, hours.end_hour) == (7, 19)
    assert parse_hours("Sat-Mon").days == frozenset({5, 6, 0})
    assert parse_hours("07-19").days == frozenset(range(7))
    assert parse_hours(None) is None and parse_hours(" ") is None
    assert parse_months("11-3") == frozenset({11, 12, 1, 2, 3})
    assert parse_months("1,2,12") == frozenset({1, 2, 12})
    assert parse_months("") is None
    for bad in ("Mon-Fry 07-19", "07-07", "7-25", "every day"):
        with pytest.raises(CapacityConfigError):
            parse_hours(bad)
    for bad in ("13-2", "0", "nov-mar"):
        with pytest.raises(CapacityConfigError):
            parse_months(bad)
    with pytest.raises(CapacityConfigError, match="60 or 15"):
        CapacityConfig(limit_kw=5, period_min=30)
    for tiny in (0, 0.0001, 0.499):
        with pytest.raises(CapacityConfigError, match="from 0.5 to 1000 kW"):
            CapacityConfig(limit_kw=tiny)
    assert CapacityConfig(limit_kw=0.5).limit_kw == 0.5


def test_counts_only_within_hours_and_months():
    cfg = CapacityConfig(limit_kw=5, hours=parse_hours("Mon-Fri 07-19"), months=parse_months("11-3"))
    assert cfg.counts(datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM))  # a Tuesday in January
    assert not cfg.counts(datetime(2027, 1, 12, 19, 0, tzinfo=STOCKHOLM))  # 19:00 is past 07-19
    assert not cfg.counts(datetime(2027, 1, 16, 16, 0, tzinfo=STOCKHOLM))  # Saturday
    assert not cfg.counts(datetime(2027, 5, 11, 16, 0, tzinfo=STOCKHOLM))  # May
    guard = CapacityGuard(cfg)
    status = guard.update(datetime(2027, 1, 16, 16, 0, tzinfo=STOCKHOLM), 9000.0, 6000.0)
    assert status.car_allowance_w is None and not status.active and "outside" in status.reason


def test_hourly_period_ends_at_the_limit_and_the_car_gets_the_rest():
    # A 2 kW house and a car that could take 11 kW: the car gets about 3 kW, the hour ends at 5 kW.
    guard = CapacityGuard(CapacityConfig(limit_kw=5))
    start = datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM)
    periods = run(guard, start, lambda t: 2000.0, 3 * 3600)
    assert len(periods) == 3
    for kw in periods.values():
        assert 4.95 <= kw <= 5.0 + 1e-9


def test_the_average_resets_at_a_period_boundary_and_the_peak_is_kept():
    guard = CapacityGuard(CapacityConfig(limit_kw=5, period_min=15))
    start = datetime(2027, 1, 12, 16, 0, tzinfo=BRUSSELS)
    run(guard, start, lambda t: 3000.0, 900, car_on=lambda t: False)
    status = guard.update(start + timedelta(seconds=900), 1000.0)
    assert status.period_start == start + timedelta(minutes=15)
    assert status.period_kw == pytest.approx(1.0)
    assert [round(p.kw, 2) for p in status.month_peaks] == [3.0]


def test_follow_month_peak_allows_up_to_what_is_billed_already():
    cfg = CapacityConfig(limit_kw=5)
    guard = CapacityGuard(cfg)
    start = datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM)
    run(guard, start, lambda t: 7000.0, 3600, car_on=lambda t: False)  # the house alone: a 7 kW hour
    for s in range(200):  # longer than the window the house is averaged over
        status = guard.update(start + timedelta(hours=1, seconds=s), 2000.0)
    assert status.allowed_kw == pytest.approx(7.0)
    # 7 kW less the 2 kW house, and what the car left unused in the first 199 s, over the rest of the hour.
    assert status.car_allowance_w == pytest.approx((7000.0 * 3600 - 2000.0 * 199 - 2000.0 * 10) / 3391 - 2000.0)
    unfollowed = CapacityGuard(CapacityConfig(limit_kw=5, follow_month_peak=False))
    unfollowed.restore(guard.to_state(), STOCKHOLM)
    assert unfollowed.update(start + timedelta(hours=1), 2000.0).allowed_kw == 5.0


def test_month_peaks_reset_when_the_month_changes_and_survive_a_restore():
    guard = CapacityGuard(CapacityConfig(limit_kw=5, peaks=3))
    start = datetime(2027, 1, 31, 22, 0, tzinfo=STOCKHOLM)
    run(guard, start, lambda t: 3000.0 if t < 3600 else 4000.0, 7200, car_on=lambda t: False)
    status = guard.update(start + timedelta(hours=2), 1000.0)  # 00:00 on 1 February
    assert status.month_peaks == () and status.billed_kw == 0.0
    assert guard.to_state()["month"] == "2027-02"
    # Before the boundary the state holds January's peaks, and a restored guard continues from it.
    guard2 = CapacityGuard(CapacityConfig(limit_kw=5, peaks=3))
    run(guard2, start, lambda t: 3000.0, 3601, car_on=lambda t: False)
    state = guard2.to_state()
    restored = CapacityGuard(CapacityConfig(limit_kw=5, peaks=3))
    restored.restore(state, STOCKHOLM)
    assert [p.to_dict() for p in restored.billed_peaks()] == state["peaks"]
    assert state["peaks"][0]["kw"] == pytest.approx(3.0)


@pytest.mark.slow
def test_distinct_days_keep_one_peak_a_day():
    cfg = CapacityConfig(limit_kw=5, peaks=3, peaks_distinct_days=True)
    guard = CapacityGuard(cfg)
    start = datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM)
    # Two high hours on the 12th, one on the 13th: the 12th counts once.
    levels = {0: 6000.0, 1: 7000.0, 2: 1000.0}
    run(guard, start, lambda t: levels[t // 3600], 3 * 3600, car_on=lambda t: False)
    run(guard, start + timedelta(days=1), lambda t: 6500.0, 3600 + 1, car_on=lambda t: False)
    peaks = guard.billed_peaks()
    assert sorted(round(p.kw, 2) for p in peaks) == [6.5, 7.0]
    assert len({p.start.date() for p in peaks}) == len(peaks)
    # Two days billed out of three: the next new day would add a peak, so only the limit is free
    # on a third day; on the 13th up to its own peak changes nothing.
    assert guard.allowed_kw(datetime(2027, 1, 14, 10, 0, tzinfo=STOCKHOLM)) == 5.0
    assert guard.allowed_kw(datetime(2027, 1, 13, 18, 0, tzinfo=STOCKHOLM)) == pytest.approx(6.5)


@pytest.mark.slow
def test_dst_autumn_the_repeated_hour_is_its_own_period():
    guard = CapacityGuard(CapacityConfig(limit_kw=5))
    # 31 October 2027: Stockholm goes from 03:00 CEST back to 02:00 CET; 01:00 local to 04:00 local is 4 h.
    start = datetime(2027, 10, 31, 1, 0, tzinfo=STOCKHOLM)
    periods = run(guard, start, lambda t: 1000.0 * (1 + t // 3600), 4 * 3600, car_on=lambda t: False)
    assert len(periods) == 4
    assert sorted(round(kw, 3) for kw in periods.values()) == [1.0, 2.0, 3.0, 4.0]
    assert [p.kw for p in sorted(guard.billed_peaks(), key=lambda p: p.start)] == [pytest.approx(3.0)]


def test_dst_spring_the_missing_hour_is_skipped():
    guard = CapacityGuard(CapacityConfig(limit_kw=5))
    # 28 March 2027: 02:00 CET jumps to 03:00 CEST; 01:00 to 04:00 local is 2 h.
    start = datetime(2027, 3, 28, 1, 0, tzinfo=STOCKHOLM)
    periods = run(guard, start, lambda t: 2000.0, 2 * 3600)
    assert [k.astimezone(STOCKHOLM).hour for k in sorted(periods)] == [1, 3]
    for kw in periods.values():
        assert kw <= 5.0 + 1e-9


def test_a_garbage_state_changes_nothing():
    guard = CapacityGuard(CapacityConfig(limit_kw=5))
    run(guard, datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM), lambda t: 3000.0, 3601, car_on=lambda t: False)
    before = guard.to_state()
    for bad in ({"peaks": [{"start": "yesterday", "kw": 1}]}, {"peaks": [{"kw": 1}]}, {"month": "January"},
                {"peaks": [{"start": "2027-01-12T16:00:00+01:00", "kw": float("nan")}]}, {"peaks": 5}):
        with pytest.raises(ValueError, match="not a capacity state"):
            guard.restore(bad, STOCKHOLM)
        assert guard.to_state() == before


def test_the_cars_keep_their_present_draw_for_the_charger_lag():
    """60 s before the hour ends, the hour so far at the limit, the car draws 6 kW over a 1 kW house: its
    next value counts only after the lag, so the guard plans the lag at today's import."""
    start = datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM)
    for lag_s, expected in ((0, 4000.0), (10, 3600.0)):
        guard = CapacityGuard(CapacityConfig(limit_kw=5))
        guard.restore({"period_start": start.isoformat(), "period_energy_wh": 5000.0 * 3540 / 3600,
                       "period_observed_s": 3540}, STOCKHOLM)
        status = guard.update(start + timedelta(seconds=3540), 7000.0, 6000.0, lag_s=lag_s)
        # 300 kJ left for 60 s; 7 kW for the lag, then 1 kW of house: (300 - 7 x lag) kJ / (60 - lag) s - 1 kW.
        assert status.car_allowance_w == pytest.approx(expected)
        assert status.projected_kw == pytest.approx((5000.0 * 3540 + 7000.0 * 60) / 3600 / 1000)


def test_energy_to_spare_near_the_end_is_spread():
    """Energy left over 30 s before the end is spread over SPREAD_S, not poured into the last seconds."""
    start = datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM)
    guard = CapacityGuard(CapacityConfig(limit_kw=5), house_window_s=0.0)
    guard.restore({"period_start": start.isoformat(), "period_energy_wh": 4000.0 * 3570 / 3600,
                   "period_observed_s": 3570}, STOCKHOLM)
    status = guard.update(start + timedelta(seconds=3570), 1000.0, 0.0, lag_s=0)
    spare_ws = 5000.0 * 3600 - 4000.0 * 3570 - 5000.0 * 30
    assert status.car_allowance_w == pytest.approx(5000.0 + spare_ws / SPREAD_S - 1000.0)


def test_power_limit_caps_at_once_and_raises_paced():
    b = Balancer(BalancerConfig(max_a=24, fuse_a=25, default_current=16))
    for now in (0.0, 1.0):
        for phase in range(3):
            b.meter(now, phase, 2.0)
    first = b.decide(1.0)
    b.commanded(1.0, first.charge_at)
    b.power_limit(2.0, 9.4, "capacity 5 kW")
    cut = b.decide(2.0)
    assert cut.command == 9 and "capacity 5 kW" in cut.reason
    b.commanded(2.0, 9)
    b.power_limit(3.0, None)
    raised = b.decide(3.0)
    assert raised.command is None and "pacing" in raised.reason
    b.power_limit(4.0, 3.0, "charge mode off")
    paused = b.decide(4.0)
    assert paused.command == 0  # below the minimum current: a pause
    assert paused.reason == "paused: charge mode off"  # the limit is why, not the 22 A of headroom
    with pytest.raises(ValueError):
        b.power_limit(5.0, float("nan"))


local_starts = st.sampled_from([
    datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM),
    datetime(2027, 3, 28, 0, 30, tzinfo=STOCKHOLM),  # spring DST
    datetime(2027, 10, 31, 1, 15, tzinfo=STOCKHOLM),  # autumn DST
    datetime(2027, 10, 31, 2, 40, tzinfo=ZoneInfo("Europe/Stockholm")).replace(fold=1),
    datetime(2027, 1, 31, 22, 50, tzinfo=BRUSSELS),  # month boundary
])


@pytest.mark.slow
@SETTINGS
@given(
    start=local_starts,
    period_min=st.sampled_from([60, 15]),
    limit_kw=st.floats(2.0, 20.0),
    steps=st.lists(st.tuples(st.integers(30, 1200), st.floats(0.0, 1.0)), min_size=1, max_size=12),
    lag_s=st.integers(0, 30),
    house_window_s=st.sampled_from([0.0, 60.0, HOUSE_WINDOW_S]),
)
# A rise the guard sees one reading (1 s) late, with no lag and no window: found by Hypothesis.
@example(start=datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM), period_min=15, limit_kw=2.0,
         steps=[(405, 0.0), (495, 0.9999999999999999)], lag_s=0, house_window_s=0.0)
def test_periods_end_at_or_below_the_limit_when_the_house_alone_stays_under_it(start, period_min, limit_kw, steps,
                                                                               lag_s, house_window_s):
    """The house is a step function under the limit; the car takes whatever it is allowed, late by the
    charger's lag. A house that rises by dP is seen in full only after the window it is averaged over,
    and the car follows after the lag: a period may end at most dP x (lag + window) over the limit's
    energy, and only when the rise comes too late to be made up for. That, and nothing more, is allowed."""
    levels = [fraction * limit_kw * 1000.0 for _, fraction in steps]
    assume(max(levels) < limit_kw * 1000.0)
    edges = []
    t = 0
    for (length, _), level in zip(steps, levels):
        edges.append((t, t + length, level))
        t += length

    def house(second: int) -> float:
        for lo, hi, level in edges:
            if lo <= second < hi:
                return level
        return levels[-1]

    guard = CapacityGuard(CapacityConfig(limit_kw=limit_kw, period_min=period_min), house_window_s=house_window_s)
    periods = run(guard, start, house, t, lag_s=lag_s)
    biggest_rise_w = max([0.0] + [b - a for a, b in zip(levels, levels[1:])])
    # Several rises may fall into one period: each costs at most its own rise x (lag + window), and
    # the one reading interval (1 s here) before the guard can see the rise at all.
    rises_ws = sum(max(0.0, b - a) for a, b in zip(levels, levels[1:])) * (lag_s + house_window_s + 1)
    for key, kw in periods.items():
        assert kw <= limit_kw + rises_ws / (period_min * 60) / 1000.0 + 1e-3, (key, kw, biggest_rise_w)


def test_a_kw_figure_reads_the_same_in_a_reason_as_in_the_state_and_on_its_topic():
    import re

    from bridge.balancer.power import SharedPowerLimits, SurplusConfig
    from bridge.balancer.sharing import ConnectorSpec, SharedBalancer
    from bridge.units import format_kw

    start = datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM)
    guard = CapacityGuard(CapacityConfig(limit_kw=12.6608), house_window_s=0.0)
    status = guard.update(start + timedelta(seconds=600), 13_000.0, 0.0, lag_s=0)
    # The shared balancer's reason for its capacity budget, built from the same status.
    shared = SharedBalancer(BalancerConfig(), [ConnectorSpec("1:1"), ConnectorSpec("1:2")])
    SharedPowerLimits(SurplusConfig(), 230.0).apply(600.0, shared, 13_000.0, {"1:1": 0.0, "1:2": 0.0},
                                                    {"1:1": "fast", "1:2": "fast"}, status)
    budget_reason = shared._budgets["capacity"].reason
    for reason in (status.reason, budget_reason):
        assert "capacity 12.661 kW" in reason and "12.6608" not in reason, reason
        figures = re.findall(r"(-?\d+(?:\.\d+)?) kW", reason)
        assert figures and all(len(f.partition(".")[2]) <= 3 for f in figures), reason
    assert status.to_dict()["limit_kw"] == 12.661 and format_kw(status.limit_kw) == "12.661"


# ---- a start within a period ------------------------------------------------------------------

def step_guard(guard: CapacityGuard, start: datetime, seconds: range, house_w: float, car_w: float):
    status = None
    for t in seconds:
        now = (start.astimezone(timezone.utc) + timedelta(seconds=t)).astimezone(start.tzinfo)
        status = guard.update(now, house_w + car_w, car_w)
    return status


def test_a_start_within_a_period_counts_the_time_not_seen_at_the_house_s_own_load():
    """Started 13 minutes into an hour with the car at 16 A (11 kW) and the house at 2.5 kW: the
    13 minutes not seen count at 2.5 kW, not at the 13.54 kW the meter shows with the car."""
    guard = CapacityGuard(CapacityConfig(limit_kw=3))
    start = datetime(2027, 1, 12, 16, 13, tzinfo=STOCKHOLM)
    status = step_guard(guard, start, range(0, 1), 2500.0, 11040.0)
    assert status.period_kw == pytest.approx(2.5, abs=0.01)
    assert status.period_estimated_s == pytest.approx(13 * 60)
    assert "13 min of it not seen" in status.reason and status.to_dict()["period_estimated_s"] == 780
    # The car left at 16 A is cut to what the hour still allows: (3 - 2.5) kW over 47 minutes.
    assert status.car_allowance_w < 1000.0


def test_enabling_within_a_period_and_a_restart_after_a_saved_part_follow_one_rule():
    """The guard enabled (or the bridge restarted) with a saved part of the period: the saved
    part stays as measured, the rest not seen counts at the house's own load, never at 0."""
    start = datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM)
    first = CapacityGuard(CapacityConfig(limit_kw=5))
    step_guard(first, start, range(0, 301), 4000.0, 0.0)  # 5 minutes at 4 kW, then saved
    state = first.to_state()
    for restored in (True, False):
        guard = CapacityGuard(CapacityConfig(limit_kw=5))
        if restored:
            guard.restore(state, STOCKHOLM)
        status = step_guard(guard, start + timedelta(minutes=13), range(0, 1), 1000.0, 7000.0)
        expected = (4.0 * 300 + 1.0 * 480) / 780 if restored else 1.0
        assert status.period_kw == pytest.approx(expected, abs=0.01), restored
        assert status.period_estimated_s == pytest.approx(480 if restored else 780, abs=1.5)


def test_a_guessed_period_never_raises_the_allowance_of_the_month():
    """Started 7.5 minutes into a quarter with two cars at full power: the quarter becomes a month
    peak (marked estimated) but the allowance stays at the limit; a measured peak raises it."""
    cfg = CapacityConfig(limit_kw=5, period_min=15, follow_month_peak=True)
    start = datetime(2027, 1, 12, 18, 7, 30, tzinfo=BRUSSELS)
    guard = CapacityGuard(cfg)
    # 7.5 minutes seen at 12 kW (the cars not cut in time: a house over its limit), the rest guessed at 1 kW.
    step_guard(guard, start, range(0, 451), 1000.0, 11000.0)
    status = step_guard(guard, start + timedelta(seconds=451), range(0, 5), 1000.0, 0.0)
    (peak,) = status.month_peaks
    assert peak.estimated and peak.kw > 5.0 and peak.to_dict()["estimated"] is True
    assert status.allowed_kw == 5.0
    # The flag survives a restart.
    again = CapacityGuard(cfg)
    again.restore(guard.to_state(), BRUSSELS)
    assert again.billed_peaks()[0].estimated
    # A quarter measured whole at 6 kW is billed as it is: it raises the allowance.
    step_guard(guard, start + timedelta(seconds=456), range(0, 15 * 60), 6000.0, 0.0)
    status = step_guard(guard, start + timedelta(seconds=456 + 900), range(0, 5), 1000.0, 0.0)
    assert status.allowed_kw == pytest.approx(6.0, abs=0.05)


def test_the_meter_s_import_register_makes_a_restart_within_a_period_exact():
    """The register at the period's start is kept across a restart: the minutes the bridge did not
    see are the register's count, not a guess. The register is a cumulative kWh count, as a P1
    meter's 1-0:1.8.1 + 1-0:1.8.2 (dsmr-reader `electricity_delivered_1` + `_2`)."""
    cfg = CapacityConfig(limit_kw=5)
    start = datetime(2027, 1, 12, 16, 0, tzinfo=STOCKHOLM)
    register = 12345.678
    guard = CapacityGuard(cfg)
    for t in range(0, 601):  # 10 minutes at 2 kW, the register read every 10 s
        now = start + timedelta(seconds=t)
        guard.update(now, 2000.0, 0.0)
        if t % 10 == 0:
            guard.register(now, register + 2.0 * t / 3600)
    state = guard.to_state()
    assert state["period_register_start_kwh"] == pytest.approx(register)
    # Down for 3 minutes while a car drew 11 kW on top of the house's 2.5 kW: 13.54 kW.
    at_restart = register + 2.0 * 600 / 3600 + 13.54 * 180 / 3600
    again = CapacityGuard(cfg)
    again.restore(state, STOCKHOLM)
    restart = start + timedelta(minutes=13)
    status = again.update(restart, 13540.0, 11040.0)
    assert status.period_estimated_s == pytest.approx(180)  # guessed until the register is read
    again.register(restart, at_restart)
    status = again.update(restart + timedelta(seconds=1), 13540.0, 11040.0)
    exact = (2.0 * 600 + 13.54 * 180) / 780
    assert status.period_kw == pytest.approx(exact, abs=0.05) and status.period_estimated_s == 0
    # A register that runs backwards (another meter, a wrong topic) is not taken.
    again.register(restart + timedelta(seconds=1), 10.0)
    assert again.update(restart + timedelta(seconds=2), 13540.0, 11040.0).period_kw == pytest.approx(exact, abs=0.05)


def test_a_register_is_not_anchored_in_a_period_whose_start_was_not_seen():
    guard = CapacityGuard(CapacityConfig(limit_kw=5))
    start = datetime(2027, 1, 12, 16, 20, tzinfo=STOCKHOLM)
    guard.update(start, 3000.0, 0.0)
    guard.register(start, 100.0)
    assert guard.to_state()["period_register_start_kwh"] is None
    # The next hour is seen whole: its register start is the first reading less what was counted.
    nxt = datetime(2027, 1, 12, 17, 0, 10, tzinfo=STOCKHOLM)
    for t in range(-20, 1):
        guard.update(nxt + timedelta(seconds=t), 3600.0, 0.0)
    guard.register(nxt, 101.0)
    assert guard.to_state()["period_register_start_kwh"] == pytest.approx(101.0 - 3.6 * 10 / 3600, abs=1e-3)


def test_a_period_seen_whole_is_not_partly_guessed_by_float_rounding():
    """Readings at these moments leave the period's elapsed time 1.4e-17 s above the sum of the
    intervals seen (float rounding): no second of the period went unseen, so the register is
    anchored at the first reading and the period's peak is a measured one."""
    guard = CapacityGuard(CapacityConfig(limit_kw=5))
    at = datetime(2027, 1, 12, 16, 59, 59, 850497, tzinfo=STOCKHOLM)
    guard.update(at, 1380.0, 0.0)
    after = datetime(2027, 1, 12, 17, 0, 0, 100560, tzinfo=STOCKHOLM)
    status = guard.update(after, 1380.0, 0.0)
    assert status.period_estimated_s == 0 and "not seen" not in status.reason
    guard.register(after, 4321.0224)
    assert guard.to_state()["period_register_start_kwh"] == pytest.approx(4321.0224 - 1380 * 0.10056 / 3.6e6)


def test_the_register_at_the_start_lies_between_the_readings_on_either_side():
    """A register read once a minute (Shelly's EMData) and a meter power that is not the import (a
    P1 current has no sign: 2 kW of export reads as 2 kW of import): the register at the start is
    placed between the reading before it and the one after, not from the power."""
    guard = CapacityGuard(CapacityConfig(limit_kw=5, period_min=15))
    start = datetime(2027, 1, 12, 17, 0, tzinfo=BRUSSELS)
    for t in range(-90, 41):  # the house imports 1 kW; the guard is told 3 kW
        guard.update(start + timedelta(seconds=t), 3000.0, 0.0)
        if t in (-20, 40):
            guard.register(start + timedelta(seconds=t), 100.0 + 1.0 * (t + 20) / 3600)
    anchored = guard.to_state()["period_register_start_kwh"]
    assert anchored == pytest.approx(100.0 + 20 / 3600, abs=1e-6)
    # From the register: 40 s at 1 kW, not at 3 kW.
    assert guard.to_state()["period_energy_wh"] == pytest.approx(40 / 3.6, abs=0.05)


def test_the_register_at_the_start_is_placed_also_when_the_guard_did_not_see_the_start():
    """The meter's phases went silent for two minutes across the start (the period is partly
    guessed) while the register kept coming: the readings on either side place the start, and
    the period is counted from the register, not guessed."""
    guard = CapacityGuard(CapacityConfig(limit_kw=5, period_min=15))
    start = datetime(2027, 1, 12, 17, 0, tzinfo=BRUSSELS)
    guard.update(start - timedelta(seconds=140), 2000.0, 0.0)
    guard.register(start - timedelta(seconds=5), 200.0)
    status = guard.update(start + timedelta(seconds=5), 2000.0, 0.0)
    assert status.period_estimated_s == pytest.approx(5)
    guard.register(start + timedelta(seconds=5), 200.0 + 2.0 * 10 / 3600)
    assert guard.to_state()["period_register_start_kwh"] == pytest.approx(200.0 + 2.0 * 5 / 3600)
    assert guard.update(start + timedelta(seconds=6), 2000.0, 0.0).period_estimated_s == 0
    # Readings too far apart place nothing: the next quarter, not seen, has no register at its start.
    later = start + timedelta(minutes=15)
    guard.register(start + timedelta(minutes=14, seconds=59) - timedelta(seconds=200), 200.5)
    guard.update(later + timedelta(seconds=150), 2000.0, 0.0)
    guard.register(later + timedelta(seconds=150), 200.6)
    assert guard.to_state()["period_register_start_kwh"] is None


def test_the_period_follows_the_meter_s_own_quarter_hour_demand():
    """A Belgian meter's 1-0:1.4.0 (HomeWizard `active_power_average_w`): the running quarter-hour's
    average, what the bill is computed from. The guard integrates 3 kW (a P1 current without a
    sign counts export as import); the meter says 1.2 kW: the period is the meter's."""
    cfg = CapacityConfig(limit_kw=4, period_min=15)
    guard = CapacityGuard(cfg)
    start = datetime(2027, 1, 12, 17, 0, tzinfo=BRUSSELS)
    for t in range(0, 301):
        guard.update(start + timedelta(seconds=t), 3000.0, 0.0)
    guard.demand(start + timedelta(seconds=300), 1.2)
    status = guard.update(start + timedelta(seconds=301), 3000.0, 0.0)
    assert status.period_kw == pytest.approx((1.2 * 300 + 3.0) / 301, abs=0.01)
    # A restart 7.5 minutes into the next quarter with two cars at full power: the minutes not seen
    # are the meter's, not a guess, and the period is no longer partly estimated.
    again = CapacityGuard(cfg)
    again.restore(guard.to_state(), BRUSSELS)
    restart = start + timedelta(minutes=22, seconds=30)
    assert again.update(restart, 22000.0, 20000.0).period_estimated_s == pytest.approx(450)
    again.demand(restart, 2.1)
    status = again.update(restart + timedelta(seconds=1), 22000.0, 20000.0)
    assert status.period_estimated_s == 0 and status.period_kw == pytest.approx((2.1 * 450 + 22) / 451, abs=0.01)
    # Hourly periods are not the meter's quarter-hours: its demand is not theirs.
    hourly = CapacityGuard(CapacityConfig(limit_kw=4))
    hourly.update(start, 3000.0, 0.0)
    hourly.update(start + timedelta(seconds=60), 3000.0, 0.0)
    hourly.demand(start + timedelta(seconds=60), 1.2)
    assert hourly.update(start + timedelta(seconds=61), 3000.0, 0.0).period_kw == pytest.approx(3.0)


def test_the_meter_s_month_peak_sets_the_allowance_and_a_guessed_period_never_raises_it():
    """CAPACITY_FOLLOW_MONTH_PEAK with a meter that gives its month peak (1-0:1.6.0, HomeWizard
    `montly_power_peak_w` with `montly_power_peak_timestamp`): a quarter below the month's peak
    raises no bill, so the allowance is that peak; the guard's own periods, a guessed one
    included, do not count beside it."""
    cfg = CapacityConfig(limit_kw=4, period_min=15)
    guard = CapacityGuard(cfg)
    start = datetime(2027, 1, 12, 17, 7, 30, tzinfo=BRUSSELS)
    # Started 7.5 minutes into a quarter with two cars at full power: a guessed 18 kW quarter.
    step_guard(guard, start, range(0, 451), 18000.0, 4000.0)
    status = step_guard(guard, start + timedelta(seconds=451), range(0, 5), 1000.0, 0.0)
    assert status.month_peaks[0].estimated and status.allowed_kw == 4.0
    now = start + timedelta(seconds=460)
    guard.month_peak(now, 5.2, datetime(2027, 1, 9, 18, 15, 0, tzinfo=BRUSSELS))
    status = guard.update(now, 1000.0, 0.0)
    assert status.allowed_kw == pytest.approx(5.2) and status.to_dict()["meter_month_peak_kw"] == 5.2
    # Kept across a restart.
    again = CapacityGuard(cfg)
    again.restore(guard.to_state(), BRUSSELS)
    assert again.update(now + timedelta(seconds=1), 1000.0, 0.0).allowed_kw == pytest.approx(5.2)
    # A peak of the month before (the meter not reset yet at the month's start) is not this month's.
    feb = datetime(2027, 2, 1, 0, 5, tzinfo=BRUSSELS)
    guard.month_peak(feb, 5.2, datetime(2027, 1, 9, 18, 15, 0, tzinfo=BRUSSELS))
    assert guard.update(feb, 1000.0, 0.0).allowed_kw == 4.0
    # Without CAPACITY_FOLLOW_MONTH_PEAK, with several peaks billed, or with hourly periods: the limit.
    for other in (CapacityConfig(limit_kw=4, period_min=15, follow_month_peak=False),
                  CapacityConfig(limit_kw=4, period_min=15, peaks=3), CapacityConfig(limit_kw=4)):
        g = CapacityGuard(other)
        g.update(now, 1000.0, 0.0)
        g.month_peak(now, 5.2, datetime(2027, 1, 9, 18, 15, 0, tzinfo=BRUSSELS))
        assert g.update(now + timedelta(seconds=1), 1000.0, 0.0).allowed_kw == 4.0


def test_a_month_peak_without_its_time_counts_once_the_meter_changed_it_this_month():
    """ESPHome's dsmr sensor gives 1-0:1.6.0's value without its time: a value the bridge finds at
    the month's start may be the month before's, so it counts once the meter changed it."""
    guard = CapacityGuard(CapacityConfig(limit_kw=4, period_min=15))
    feb = datetime(2027, 2, 1, 0, 5, tzinfo=BRUSSELS)
    guard.update(feb, 1000.0, 0.0)
    guard.month_peak(feb, 7.0)  # January's, still shown
    assert guard.update(feb + timedelta(seconds=1), 1000.0, 0.0).allowed_kw == 4.0
    guard.month_peak(feb + timedelta(minutes=10), 0.8)  # the meter reset it: February's own
    guard.month_peak(feb + timedelta(minutes=40), 4.6)
    assert guard.update(feb + timedelta(minutes=40), 1000.0, 0.0).allowed_kw == pytest.approx(4.6)


def test_a_reading_with_the_cars_draw_in_doubt_counts_its_energy_but_not_as_the_house_s_load():
    """A write to a car on its way: the meter's import still counts in the period, but the house's
    own load (the meter less the cars' believed draw) is not taken from the reading; before any
    reading with the draw known there is no allowance (the cars keep what the fuse gives)."""
    start = datetime(2027, 1, 12, 17, 0, tzinfo=STOCKHOLM)
    doubtful = CapacityGuard(CapacityConfig(limit_kw=13.0))
    sure = CapacityGuard(CapacityConfig(limit_kw=13.0))
    status = doubtful.update(start, 17000.0, 9000.0, car_in_doubt=True)
    assert status.car_allowance_w is None and "waiting for the cars' draw" in status.reason
    for t in range(1, 6):  # the cars believed at 9 kW while the meter shows them at 13.8 kW
        status = doubtful.update(start + timedelta(seconds=t), 17250.0, 9000.0, car_in_doubt=True)
        assert status.car_allowance_w is None
    for t in range(0, 6):
        sure.update(start + timedelta(seconds=t), 17250.0, 13800.0)
    later = start + timedelta(seconds=6)
    known, expected = doubtful.update(later, 12000.0, 8550.0), sure.update(later, 12000.0, 8550.0)
    assert known.period_kw == pytest.approx(expected.period_kw, rel=0.01)  # the energy counted all the same
    assert known.car_allowance_w == pytest.approx(13000.0 - 3450.0, abs=100.0)  # from the known reading alone
