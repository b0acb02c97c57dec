"""The bench with power limits: the capacity tariff's and the surplus modes' targets on the built-in
power scenarios (10 s lag, default settings), the --car and --start options and the JSON fields.

These pin what the power-limits tables of docs/benchmark.md claim, on what `bench` itself prints: the
scenarios are run through `bench.run_cli`, so through the service's balancer of one connector
(`bench.real_balancer`, with the minimum pause after a power limit's pause) and bench's own settings."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from bridge.balancer import BalancerConfig
from bridge.sim import bench
from bridge.sim.house import CarSpec, parse_car
from bridge.sim.power_bench import (
    POWER_SCENARIOS,
    TARGET_CAPACITY_ENERGY_RATIO,
    TARGET_PERIOD_MARGIN_KW,
    TARGET_SOLAR_SHARE,
    TARGET_SURPLUS_ENERGY_RATIO,
    SOLAR_SHARE_MIN_KWH,
    TARGET_WRITES_PER_HOUR,
    power_run_factory,
    power_settings,
    solar_share,
)

LAG_S = 10.0  # the cloud's, bench's default
# Every power setting left at its default: the scenarios bring their own limit, period and zone.
NO_ENVIRONMENT: dict[str, str] = {}
# The capacity energy against the capacity oracle, per scenario (docs/benchmark.md's table): the target
# where bench meets it; where it misses it, today's figure as a floor (capacity-be-evening: 0.946 < 0.95,
# a car a power limit paused keeps the minimum pause).
CAPACITY_ENERGY_FLOORS = {"capacity-se-evening": TARGET_CAPACITY_ENERGY_RATIO, "capacity-be-evening": 0.946}


def run_cli(argv: list[str], environ: dict[str, str]) -> int:
    args = bench.build_parser().parse_args(argv)
    return bench.run_cli(args, BalancerConfig, bench.real_balancer, environ=environ)


@pytest.fixture(scope="module")
def report() -> dict:
    """What `chargeamps-bridge bench --scenario ... --strategy adaptive --json` prints for the power scenarios."""
    argv = [word for name in POWER_SCENARIOS for word in ("--scenario", name)] + ["--strategy", "adaptive", "--json"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_cli(argv, NO_ENVIRONMENT) == 0
    return {entry["name"]: entry for entry in json.loads(out.getvalue())["traces"]}


def adaptive(report: dict, name: str) -> dict:
    return report[name]["strategies"]["adaptive"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CAPACITY_ENERGY_FLOORS))
def test_capacity_periods_end_at_the_limit_with_the_energy_of_the_capacity_oracle(report, name):
    capacity = adaptive(report, name)["capacity"]
    assert capacity["max_period_kw"] <= capacity["limit_kw"] + TARGET_PERIOD_MARGIN_KW
    assert capacity["periods_over"] == 0
    assert capacity["billed_kw"] <= capacity["max_period_kw"]
    assert capacity["energy_ratio"] >= CAPACITY_ENERGY_FLOORS[name]


def test_the_capacity_scenarios_keep_the_house_alone_under_the_limit():
    for name in ("capacity-se-evening", "capacity-be-evening"):
        build, setup = POWER_SCENARIOS[name]
        trace = build()
        limit_kw = float(setup.settings["CAPACITY_LIMIT_KW"])
        period = 60 * int(setup.settings["CAPACITY_PERIOD_MIN"])
        house_kw = [sum(row) * 230 / 1000 for row in zip(*trace.base)]
        worst = max(sum(house_kw[i:i + period]) / period for i in range(0, len(house_kw), period))
        assert worst < limit_kw, name


@pytest.mark.slow
def test_pv_car_charges_from_export_with_the_energy_of_the_surplus_oracle(report):
    (car,) = adaptive(report, "pv-spring-day")["cars"]
    assert car["mode"] == "pv"
    assert car["solar_share"] >= TARGET_SOLAR_SHARE
    assert car["energy_ratio"] >= TARGET_SURPLUS_ENERGY_RATIO
    assert car["grid_kwh"] == pytest.approx(car["energy_kwh"] * (1 - car["solar_share"]), abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(POWER_SCENARIOS))
def test_power_limits_write_at_most_20_times_an_hour_and_keep_the_fuse(report, name):
    entry = report[name]
    s = adaptive(report, name)
    assert s["commands"] * 3600 / entry["duration_s"] <= TARGET_WRITES_PER_HOUR
    assert s["longest_over_fuse_s"] <= LAG_S + bench.TARGET_FUSE_MARGIN_S
    # bench's own verdict: every target met, but the capacity energy where its floor is below the target.
    expected = []
    if CAPACITY_ENERGY_FLOORS.get(name, TARGET_CAPACITY_ENERGY_RATIO) < TARGET_CAPACITY_ENERGY_RATIO:
        expected = [f"capacity energy ratio {s['capacity']['energy_ratio']:.3f} < {TARGET_CAPACITY_ENERGY_RATIO}"]
    assert bench.target_misses(entry, LAG_S) == expected


@pytest.mark.slow
def test_the_capacity_oracle_fills_each_period_up_to_the_limit(report):
    oracle = report["capacity-se-evening"]["oracle"]
    # Four hours at 5 kW at most, less the house's own import: well under the fuse-only oracle.
    assert oracle["capacity_energy_kwh"] < oracle["energy_kwh"]
    assert oracle["capacity_energy_kwh"] <= 4 * 5.0


@pytest.mark.parametrize(
    ("text", "car"),
    [
        ("L1L2L3", CarSpec((True, True, True), 32, "fast")),
        ("L2", CarSpec((False, True, False), 32, "fast")),
        ("L1L2L3:16:pv", CarSpec((True, True, True), 16, "pv")),
        ("l1:10:MinPV", CarSpec((True, False, False), 10, "minpv")),
        ("L3::off", CarSpec((False, False, True), 32, "off")),
    ],
)
def test_parse_car(text, car):
    assert parse_car(text) == car


@pytest.mark.parametrize(("text", "words"), [("L4", "phases"), ("L1:5", "between 6 and 80"),
                                               ("L1:16:solar", "fast, pv, minpv, off"), ("L1:x", "whole amps")])
def test_parse_car_refuses_with_a_message(text, words):
    with pytest.raises(ValueError, match=words):
        parse_car(text)


def test_power_settings_come_from_the_environment_over_the_scenario():
    settings = power_settings({"CAPACITY_LIMIT_KW": "3.5", "PV_WINDOW_S": "30", "TZ": "Europe/Oslo"},
                              {"CAPACITY_LIMIT_KW": "5", "CAPACITY_PERIOD_MIN": "15"})
    assert settings.capacity.limit_kw == 3.5 and settings.capacity.period_min == 15
    assert settings.surplus.window_s == 30 and str(settings.zone) == "Europe/Oslo"
    with pytest.raises(ValueError, match="CAPACITY_HOURS"):
        power_settings({"CAPACITY_HOURS": "Mon-Fry 07-19"})


def two_kw_half_hour(tmp_path, capsys, cars: list[str]) -> dict:
    """bench --json on half an hour of a 2 kW house from 16:45 local (periods 16:45-17:00 and 17:00-17:15)
    under a 4 kW quarter-hour limit, with `cars` (--car each): its trace entry."""
    path = tmp_path / "house.csv"
    path.write_text("t,l1,l2,l3\n" + "".join(f"{t},3,3,2.7\n" for t in range(1800)))
    environ = {"CAPACITY_LIMIT_KW": "4", "CAPACITY_PERIOD_MIN": "15", "TZ": "Europe/Brussels"}
    argv = ["--trace", str(path), "--start", "2027-01-12T16:45", "--strategy", "adaptive", "--json"]
    assert run_cli(argv + [word for car in cars for word in ("--car", car)], environ) == 0
    return json.loads(capsys.readouterr().out)["traces"][0]


def test_cli_json_has_capacity_and_car_fields_with_start_and_car(tmp_path, capsys):
    entry = two_kw_half_hour(tmp_path, capsys, ["L1L2L3:16:minpv"])
    s = entry["strategies"]["adaptive"]
    assert set(s["capacity"]) >= {"limit_kw", "max_period_kw", "billed_kw", "periods_over"}
    assert s["capacity"]["limit_kw"] == 4
    assert s["capacity"]["max_period_kw"] <= 4 + TARGET_PERIOD_MARGIN_KW
    (car,) = s["cars"]
    assert car["mode"] == "minpv" and car["solar_share"] == 0.0 and car["grid_kwh"] > 0
    assert "capacity_energy_kwh" in entry["oracle"] and "surplus_energy_kwh" in entry["oracle"]


@pytest.mark.slow
def test_two_cars_share_the_capacity_allowance_and_each_charges_by_its_mode(tmp_path, capsys):
    # Half an hour of a 2 kW house, a 4 kW quarter-hour limit: the cars together may draw about 2 kW,
    # while the fuse alone would give each 16 A.
    s = two_kw_half_hour(tmp_path, capsys, ["L1:16", "L2:16:pv"])["strategies"]["adaptive"]
    assert s["capacity"]["limit_kw"] == 4 and s["capacity"]["periods_over"] == 0
    assert s["capacity"]["max_period_kw"] <= 4 + TARGET_PERIOD_MARGIN_KW
    fast, pv = s["cars"]
    assert fast["energy_kwh"] > 0.5  # the fast car charges within the allowance
    (solar,) = s["power_cars"]  # no export: the pv car waits (its first seconds at the default aside)
    assert solar["mode"] == "pv" and pv["energy_kwh"] < 0.05
    # A share of those few seconds would say nothing: none is given below SOLAR_SHARE_MIN_KWH.
    assert solar["solar_share"] is None and solar["energy_kwh"] < SOLAR_SHARE_MIN_KWH


def test_two_fast_cars_are_scored_together_against_the_capacity_oracle(tmp_path, capsys):
    # Half an hour of a 2 kW house under a 4 kW quarter-hour limit: about 2 kW for the two cars together,
    # less than the fuse would give them; the plain capacity oracle gives the cars that 2 kW of each period.
    s = two_kw_half_hour(tmp_path, capsys, ["L1:16", "L2:16"])["strategies"]["adaptive"]
    oracle_kwh = 2 * (4.0 - (3 + 3 + 2.7) * 230 / 1000) * 0.25
    assert s["capacity"]["energy_ratio"] == pytest.approx(s["energy_kwh"] / oracle_kwh, abs=0.002)
    # A period may end TARGET_PERIOD_MARGIN_KW over the limit: the cars then had that much over their 2 kW.
    assert 0.5 < s["capacity"]["energy_ratio"] <= (2.0 + TARGET_PERIOD_MARGIN_KW) / 2.0


def test_solar_share_is_given_from_a_tenth_of_a_kwh():
    assert solar_share(0.0, 0.09 * 3.6e6) is None
    assert solar_share(0.05 * 3.6e6, 0.1 * 3.6e6) == 0.5


# Two `pv` cars on pv-spring-day (docs/benchmark.md's table): the writes target met on every connector, the
# solar share of each, and the energy of the cars together against the surplus oracle: the target
# for two three-phase cars, today's figure for two one-phase cars (0.896: the target is just missed).
SURPLUS_FLOORS = {("L1:16:pv", "L2:16:pv"): 0.89, ("L1L2L3:16:pv", "L1L2L3:16:pv"): TARGET_SURPLUS_ENERGY_RATIO}


@pytest.mark.slow
@pytest.mark.parametrize("cars", list(SURPLUS_FLOORS))
def test_two_pv_cars_share_the_surplus_within_the_writes_target(cars, capsys):
    argv = ["--scenario", "pv-spring-day", "--strategy", "adaptive", "--json"]
    for car in cars:
        argv += ["--car", car]
    assert run_cli(argv, {}) == 0
    s = json.loads(capsys.readouterr().out)["traces"][0]["strategies"]["adaptive"]
    assert s["max_writes_per_h_per_connector"] <= TARGET_WRITES_PER_HOUR
    shares = [c["solar_share"] for c in s["power_cars"] if c["solar_share"] is not None]
    assert shares and all(x >= TARGET_SOLAR_SHARE for x in shares)
    assert s["surplus"]["energy_ratio"] >= SURPLUS_FLOORS[cars]


@pytest.mark.parametrize(
    ("argv", "environ", "words"),
    [
        (["--start", "tomorrow"], {}, "--start 'tomorrow'"),
        (["--car", "L1:16:solar"], {}, "fast, pv, minpv, off"),
        ([], {"CAPACITY_PERIOD_MIN": "30"}, "CAPACITY_PERIOD_MIN"),
        ([], {"TZ": "Mars/Olympus_Mons", "CAPACITY_LIMIT_KW": "5"}, "TZ"),
    ],
)
def test_cli_bad_power_input_exits_2_with_one_line(argv, environ, words, capsys):
    assert run_cli(["--scenario", "pv-spring-day", "--strategy", "adaptive", *argv], environ) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


# ---- the capacity oracle that keeps the minimum current and the minimum pause ----------------

def _plain_capacity_as(allowance, house_w, periods, watts_per_amp):
    """The plain capacity oracle's amp-seconds (power_bench.PowerRun.oracles): each counted period
    min(fuse allowance, limit - house import + export), as if the car took any sliver."""
    total = 0.0
    for p in periods:
        most = sum(allowance[t] for t in p.seconds) * watts_per_amp
        if p.budget_ws is None:
            total += most
            continue
        imp = sum(max(0.0, house_w[t]) for t in p.seconds)
        exp = sum(max(0.0, -house_w[t]) for t in p.seconds)
        total += min(most, max(0.0, p.budget_ws - imp) + exp)
    return total / watts_per_amp


def _period_import_ws(schedule, house_w, p, watts_per_amp):
    return sum(max(0.0, house_w[t] + schedule.amps[t] * watts_per_amp) for t in p.seconds)


def test_capacity_pause_oracle_on_a_trace_checked_by_hand():
    """Two 600 s periods of a 6 kW limit, a one-phase car (230 W an amp, 6 to 16 A), the house at
    5.31 kW: each period leaves 690 W x 600 s = 414 kJ for the car, 1800 amp-seconds. The plain
    oracle takes it as a sliver of 3 A through each period, below any car's minimum; 6 A through the
    period would need 3600 A·s. The fair oracle charges whole seconds at the allowance: 16 A for
    112 s (1792 A·s), 8 A for one second (the 8 A·s left), then pauses to the period's end (487 s).
    In the second period the fuse allows nothing for the first 100 s: that pause runs on from the
    first period's (587 s in all), then the same run of 112 s + 1 s, then a pause to the end."""
    from bridge.sim.pause_oracle import CapacityPeriod, capacity_pause_oracle

    v = 230.0
    house = [5310.0] * 1200
    allowance = [16] * 600 + [0] * 100 + [16] * 500
    periods = [CapacityPeriod(range(0, 600), 6000.0 * 600), CapacityPeriod(range(600, 1200), 6000.0 * 600)]
    schedule = capacity_pause_oracle(allowance, house, periods, v, 6, 300.0)
    assert _plain_capacity_as(allowance, house, periods, v) == pytest.approx(3600)
    assert schedule.amps[:113] == [16] * 112 + [8]
    assert schedule.amps[700:813] == [16] * 112 + [8]
    assert schedule.pauses == [(113, 700), (813, 1200)]
    assert schedule.amp_seconds == 3600
    for p in periods:
        assert _period_import_ws(schedule, house, p, v) <= 6000.0 * 600 + 1e-6
    assert all(a == 0 or 6 <= a <= allowance[t] for t, a in enumerate(schedule.amps))
    for start, end in schedule.pauses:
        assert end - start >= 300 or end == len(house)


def test_capacity_pause_oracle_loses_to_the_plain_one_where_the_minimum_current_bites():
    """A period whose budget pays for 2 A through it, with the fuse allowing only 6 A every other
    100 s: the plain oracle takes 2 A throughout; a car at 6 A at least must pause between the
    fuse's windows, and a pause is 300 s at least: it gets one window of 100 s at 6 A."""
    from bridge.sim.pause_oracle import CapacityPeriod, capacity_pause_oracle

    v = 230.0
    allowance = ([6] * 100 + [0] * 100) * 3
    house = [1000.0] * 600
    periods = [CapacityPeriod(range(600), (1000.0 + 2 * v) * 600)]
    plain = _plain_capacity_as(allowance, house, periods, v)
    schedule = capacity_pause_oracle(allowance, house, periods, v, 6, 300.0)
    assert plain == pytest.approx(1200)
    assert schedule.amp_seconds == 600  # 100 s at 6 A in the first window, then paused to the end
    assert schedule.amp_seconds < plain


@pytest.mark.parametrize("seed", range(40))
def test_capacity_pause_oracle_never_beats_the_plain_one_nor_passes_the_limit(seed):
    """Random houses (import and export), fuse allowances and budgets: the fair oracle keeps the
    car's rules, never gets more than the plain oracle, and no counted period imports more than
    its budget unless the house alone does."""
    import random

    from bridge.sim.pause_oracle import CapacityPeriod, capacity_pause_oracle

    rng = random.Random(seed)
    v = rng.choice([230.0, 690.0])
    n = rng.randint(300, 2400)
    length = rng.choice([300, 600, 900])
    house = []
    level = rng.uniform(-3000, 4000)
    for _ in range(n):
        if rng.random() < 0.01:
            level = rng.uniform(-3000, 4000)
        house.append(level + rng.uniform(-300, 300))
    allowance = [0 if rng.random() < 0.05 else rng.choice([0, 6, 8, 10, 16]) for _ in range(n)]
    limit_w = rng.uniform(1000, 8000)
    periods = [CapacityPeriod(range(s, min(n, s + length)), None if rng.random() < 0.2 else limit_w * length)
               for s in range(0, n, length)]
    min_pause = rng.choice([0.0, 60.0, 300.0])
    schedule = capacity_pause_oracle(allowance, house, periods, v, 6, min_pause)
    assert schedule.amp_seconds <= _plain_capacity_as(allowance, house, periods, v) + 1e-6
    assert all(a == 0 or 6 <= a <= allowance[t] for t, a in enumerate(schedule.amps))
    for start, end in schedule.pauses:
        assert end - start >= min_pause or end == n
    for p in periods:
        if p.budget_ws is None:
            continue
        alone = sum(max(0.0, house[t]) for t in p.seconds)
        assert _period_import_ws(schedule, house, p, v) <= max(p.budget_ws, alone) + 1e-6


def test_the_capacity_energy_ratio_leaves_out_a_period_the_trace_cuts_short():
    """90 minutes of a steady 1.38 kW house under a 5 kW hourly limit: the second hour is cut at
    its half. Knowing the trace ends there, the oracle would spend that hour's whole budget (4.3
    kWh) in its 30 minutes; the guard, like the service, spreads it over the hour. The ratio
    compares the car and the oracle over the first hour alone, where the guard gets nearly all."""
    from bridge.sim.house import HouseTrace

    n = 90 * 60
    trace = HouseTrace("steady-house", ([2.0] * n, [2.0] * n, [2.0] * n), ([True] * n,) * 3,
                       car_phases=(True, True, True), car_max_a=16)
    cfg = BalancerConfig()
    power_for = power_run_factory({"CAPACITY_LIMIT_KW": "5"}, "2027-01-12T00:00", None, LAG_S, cfg.min_current,
                                  cfg.current_cap)
    result, _raw = bench.run_bench([trace], cfg, ["adaptive"], bench.real_balancer, lag_s=LAG_S,
                                   power_for=power_for)
    entry = result["traces"][0]
    oracle, capacity = entry["oracle"], entry["strategies"]["adaptive"]["capacity"]
    assert oracle["capacity_energy_kwh_whole_periods"] == pytest.approx(5.0 - 1.38, abs=0.05)
    assert oracle["capacity_energy_kwh"] > oracle["capacity_energy_kwh_whole_periods"] + 4.0
    # The car's energy of the first hour against the oracle's, neither the whole trace's.
    assert TARGET_CAPACITY_ENERGY_RATIO <= capacity["energy_ratio"] <= 1.0
    assert TARGET_CAPACITY_ENERGY_RATIO <= capacity["energy_ratio_pause_oracle"] <= 1.0
    assert capacity["max_period_kw"] <= 5.0 + TARGET_PERIOD_MARGIN_KW
