"""The bench with power limits: the capacity tariff's and the surplus modes' targets on the built-in
power scenarios (10 s lag, default settings), the --car and --start options and the JSON fields.

These pin what the power-limits tables of docs/benchmark.md claim."""

from __future__ import annotations

import json

import pytest

from bridge.balancer import Balancer, BalancerConfig
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

LAG_S = 10.0
# Every power setting left at its default: the scenarios bring their own limit, period and zone.
NO_ENVIRONMENT: dict[str, str] = {}


@pytest.fixture(scope="module")
def report() -> dict:
    cfg = BalancerConfig()
    traces = [build() for build, _setup in POWER_SCENARIOS.values()]
    power_for = power_run_factory(NO_ENVIRONMENT, None, None, LAG_S, cfg.min_current, cfg.current_cap)
    result, _raw = bench.run_bench(traces, cfg, ["adaptive"], lambda c, s: Balancer(c, strategy=s), lag_s=LAG_S,
                                   power_for=power_for)
    return {entry["name"]: entry for entry in result["traces"]}


def adaptive(report: dict, name: str) -> dict:
    return report[name]["strategies"]["adaptive"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["capacity-se-evening", "capacity-be-evening"])
def test_capacity_periods_end_at_the_limit_with_the_energy_of_the_capacity_oracle(report, name):
    capacity = adaptive(report, name)["capacity"]
    assert capacity["max_period_kw"] <= capacity["limit_kw"] + TARGET_PERIOD_MARGIN_KW
    assert capacity["periods_over"] == 0
    assert capacity["billed_kw"] <= capacity["max_period_kw"]
    assert capacity["energy_ratio"] >= TARGET_CAPACITY_ENERGY_RATIO


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
    assert bench.target_misses(entry, LAG_S) == []


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


def run_cli(argv: list[str], environ: dict[str, str]) -> int:
    args = bench.build_parser().parse_args(argv)
    return bench.run_cli(args, BalancerConfig, bench.real_balancer, environ=environ)


def test_cli_json_has_capacity_and_car_fields_with_start_and_car(tmp_path, capsys):
    # Half an hour of a 2 kW house starting at 16:45 local: periods 16:45-17:00 and 17:00-17:15.
    path = tmp_path / "house.csv"
    path.write_text("t,l1,l2,l3\n" + "".join(f"{t},3,3,2.7\n" for t in range(1800)))
    environ = {"CAPACITY_LIMIT_KW": "4", "CAPACITY_PERIOD_MIN": "15", "TZ": "Europe/Brussels"}
    assert run_cli(["--trace", str(path), "--start", "2027-01-12T16:45", "--car", "L1L2L3:16:minpv",
                    "--strategy", "adaptive", "--json"], environ) == 0
    entry = json.loads(capsys.readouterr().out)["traces"][0]
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
    path = tmp_path / "house.csv"
    path.write_text("t,l1,l2,l3\n" + "".join(f"{t},3,3,2.7\n" for t in range(1800)))
    environ = {"CAPACITY_LIMIT_KW": "4", "CAPACITY_PERIOD_MIN": "15", "TZ": "Europe/Brussels"}
    assert run_cli(["--trace", str(path), "--start", "2027-01-12T16:45", "--car", "L1:16", "--car", "L2:16:pv",
                    "--strategy", "adaptive", "--json"], environ) == 0
    s = json.loads(capsys.readouterr().out)["traces"][0]["strategies"]["adaptive"]
    assert s["capacity"]["limit_kw"] == 4 and s["capacity"]["periods_over"] == 0
    assert s["capacity"]["max_period_kw"] <= 4 + TARGET_PERIOD_MARGIN_KW
    fast, pv = s["cars"]
    assert fast["energy_kwh"] > 0.5  # the fast car charges within the allowance
    (solar,) = s["power_cars"]  # no export: the pv car waits (its first seconds at the default aside)
    assert solar["mode"] == "pv" and pv["energy_kwh"] < 0.05
    # A share of those few seconds would say nothing: none is given below SOLAR_SHARE_MIN_KWH.
    assert solar["solar_share"] is None and solar["energy_kwh"] < SOLAR_SHARE_MIN_KWH


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
