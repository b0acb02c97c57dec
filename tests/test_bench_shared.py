"""The bench with several cars: the oracle, the trace's demand columns, `--car`, and the figures
docs/benchmark.md's table of the two-car scenarios claims (default settings, 10 s lag).

The targets for several cars: longest run over the fuse at most lag + 3 s, energy at least 0.95
of the oracle's, fairness at least 0.9, at most 20 writes an hour per connector. Where a target
is missed (docs/benchmark.md says why), a floor at today's figure keeps the gap from growing."""

from __future__ import annotations

import json
import statistics

import pytest

from bridge.balancer import BalancerConfig
from bridge.sim import bench
from bridge.sim.bench import Limits, oracle_shared, run_bench, shared_target_misses
from bridge.sim.house import CarSpec, TraceError, load_trace, parse_car
from bridge.sim.scenarios import scenario, shared_scenario_names

LAG_S = 10.0
LIMITS = Limits(max_a=24, fuse_a=25, default_current=16)
THREE = CarSpec(phases=(True, True, True), max_a=16)
ONE_L1 = CarSpec(phases=(True, False, False), max_a=16)
# Today's figures where a target is missed (docs/benchmark.md, "Several cars on one fuse"); a floor each.
ENERGY_FLOORS = {"two-cars-winter": 0.895, "one-phase-beside": 0.91, "car-full-half-way": 0.915,
                 "wakes-and-unplugs": 0.935}


@pytest.fixture(scope="module")
def report() -> dict:
    traces = [scenario(name) for name in shared_scenario_names()]
    result, _raw = run_bench(traces, BalancerConfig(), ["adaptive"], None, lag_s=LAG_S)
    return result


def figures(report: dict) -> dict[str, dict]:
    entries = {e["name"]: e["strategies"]["adaptive"] for e in report["traces"]}
    assert set(entries) == set(shared_scenario_names())
    return entries


@pytest.mark.slow
def test_no_run_over_the_fuse_longer_than_the_lag_plus_3_s(report):
    for name, s in figures(report).items():
        assert s["longest_over_fuse_s"] <= LAG_S + 3, name


@pytest.mark.slow
def test_equal_cars_plugged_in_throughout_get_fair_shares(report):
    fair = {name: s["fairness"] for name, s in figures(report).items()}
    assert fair["car-full-half-way"] is None  # one car is full half way: nobody to compare it with
    for name in ("two-cars-winter", "one-phase-beside"):
        assert fair[name] >= 0.9, name


@pytest.mark.slow
def test_writes_per_hour_per_connector(report):
    for name, s in figures(report).items():
        assert s["max_writes_per_h_per_connector"] <= 20.0, name
        hours = report["traces"][0]["duration_s"] / 3600
        assert max(c["commands"] for c in s["cars"]) / hours == pytest.approx(
            s["max_writes_per_h_per_connector"], abs=0.01)


@pytest.mark.slow
def test_energy_keeps_to_its_floor_and_misses_name_only_the_known_gaps(report):
    for entry in report["traces"]:
        s = entry["strategies"]["adaptive"]
        assert s["energy_ratio"] >= ENERGY_FLOORS[entry["name"]], entry["name"]
        for miss in shared_target_misses(entry, LAG_S):
            assert miss.startswith("energy ratio"), miss


@pytest.mark.slow
def test_a_car_waking_up_adds_at_most_its_minimum_over_max_a_and_an_unplug_leaves_nobody_short(report):
    # wakes-and-unplugs: the first car is full twice and wakes up, the second is unplugged and
    # comes back. A car held at the minimum adds at most that when it wakes up; after an unplug the
    # car still plugged in has its share within one lag and BALANCER_SETTLE_S.
    cfg = BalancerConfig()
    entry = next(e for e in report["traces"] if e["name"] == "wakes-and-unplugs")
    s = entry["strategies"]["adaptive"]
    assert 0 < s["wake_over_max_a"] <= cfg.min_current  # its lent minimum was in use when it woke up
    assert 0 < s["unplug_short_s"] <= LAG_S + cfg.settle_s
    assert s["event_window_s"] == LAG_S + cfg.settle_s
    assert s["longest_over_fuse_s"] <= LAG_S + 3 and s["max_writes_per_h_per_connector"] <= 20
    assert all(m.startswith("energy ratio") for m in shared_target_misses(entry, LAG_S))


def test_an_event_past_its_bound_is_a_miss():
    entry = {"strategies": {"adaptive": {
        "energy_ratio": 0.99, "longest_over_fuse_s": 5, "fairness": None, "max_writes_per_h_per_connector": 10,
        "wake_over_max_a": 7.5, "unplug_short_s": 40, "event_window_s": 25.0}}}
    misses = shared_target_misses(entry, LAG_S)
    assert any("7.5 A over MaxA when a car woke up" in m for m in misses), misses
    assert any("short of its share 40 s after an unplug > 25 s" in m for m in misses), misses


@pytest.mark.slow
def test_per_car_figures_add_up(report):
    for entry in report["traces"]:
        s = entry["strategies"]["adaptive"]
        assert sum(c["energy_kwh"] for c in s["cars"]) == pytest.approx(s["energy_kwh"], abs=1e-3)
        assert sum(c["commands"] for c in s["cars"]) == s["commands"]
        assert sum(c["oracle_kwh"] for c in s["cars"]) == pytest.approx(entry["oracle"]["energy_kwh"], abs=1e-3)


# ---- the oracle ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("base", "demands", "cars", "expected"),
    [
        ((4.0, 2.0, 2.0), (16, 16), (THREE, THREE), (10, 10)),    # 20 A on L1, shared equally
        ((13.0, 2.0, 2.0), (16, 16), (THREE, THREE), (11, 0)),    # 11 A: one car only
        ((4.0, 2.0, 2.0), (16, 0), (THREE, THREE), (16, 0)),      # the second car takes nothing
        ((4.0, 2.0, 2.0), (16, 3), (THREE, THREE), (16, 0)),      # below 6 A it cannot charge
        ((10.0, 2.0, 2.0), (16, 16), (ONE_L1, THREE), (7, 7)),    # L1 shared by both
        ((19.0, 2.0, 2.0), (16, 16), (ONE_L1, THREE), (0, 0)),    # 5 A on L1: nobody
        ((2.0, 2.0, 2.0), (16, 16), (THREE, CarSpec(max_a=10)), (12, 10)),
    ],
)
def test_oracle_shared(base, demands, cars, expected):
    limited = tuple(min(d, c.max_a) for d, c in zip(demands, cars))
    assert oracle_shared(base, limited, cars, LIMITS) == expected


# ---- traces, --car and the command line ---------------------------------------------------

def test_parse_car():
    assert parse_car("L1L2L3") == CarSpec()
    assert parse_car("l2") == CarSpec(phases=(False, True, False))
    assert parse_car("L1L2L3:10") == CarSpec(max_a=10)


@pytest.mark.parametrize("text", ["", "L4", "L1L1", "L1:", "L1:ten", "L1:5", "L1:100", "X"])
def test_a_bad_car_is_refused_naming_it(text):
    with pytest.raises(ValueError, match="car"):
        parse_car(text)


def test_a_trace_carries_each_cars_demand(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("t,l1,l2,l3,car1,car2\n0,1,1,1,16,0\n1,1,1,1,,\n2,1,1,1,8,16\n")
    trace = load_trace(path)
    assert trace.car_demand == ([16.0, 16.0, 8.0], [0.0, 0.0, 16.0])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("t,l1,l2,l3,car2\n0,1,1,1,1\n", "car1,car2"),
        ("t,l1,l2,l3,car1\n0,1,1,1\n", "expected 5 values"),
        ("t,l1,l2,l3,car1\n0,1,1,1,-3\n", "car1: a car's demand cannot be negative"),
        ("t,l1,l2,l3,car1\n0,1,1,1,lots\n", "car1: 'lots' is not a number"),
    ],
)
def test_a_broken_demand_column_names_the_line(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as e:
        load_trace(path)
    assert words in str(e.value) and "bad.csv" in str(e.value)


def run(argv: list[str]) -> int:
    args = bench.build_parser().parse_args(argv)
    return bench.run_cli(args, BalancerConfig, bench.real_balancer, environ={})


def test_cli_cars_on_a_trace_give_per_car_figures_and_fairness(tmp_path, capsys):
    path = tmp_path / "evening.csv"
    path.write_text("t,l1,l2,l3\n" + "".join(f"{t},4,2,2\n" for t in range(600)))
    assert run(["--trace", str(path), "--car", "L1L2L3:16", "--car", "L1L2L3:16", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["traces"][0]
    assert entry["cars"] == ["L1L2L3:16", "L1L2L3:16"]
    s = entry["strategies"]["adaptive"]
    assert set(entry["strategies"]) == {"adaptive"}  # homey balances one car only: left out by default
    assert [c["car"] for c in s["cars"]] == ["1:1", "1:2"]
    assert {"energy_kwh", "commands", "pauses"} <= set(s["cars"][0])
    assert s["fairness"] > 0.9


@pytest.mark.slow
def test_cli_table_shows_each_car(capsys):
    assert run(["--scenario", "car-full-half-way"]) == 0
    out = capsys.readouterr().out
    for words in ("car 1:1", "car 1:2", "fairness", "targets for several cars"):
        assert words in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--car", "L4"], "--car car 'L4'"),
        (["--car", "L1:3"], "between 6 and 80 A"),
        (["--generate", "2", "--car", "L1"], "a generated house has its own car; give one --car in pv or minpv"),
        (["--generate", "2", "--car", "L1", "--car", "L2", "--strategy", "homey"], "one connector only"),
        (["--scenario", "two-cars-winter", "--strategy", "homey"], "one connector only"),
        (["--scenario", "two-cars-winter", "--plot", "x.png"], "cannot be combined with several cars"),
        (["--car"] * 0 + [f"--car=L1" for _ in range(7)], "at most 6 cars"),
    ],
)
def test_cli_bad_cars_exit_2_with_a_message(argv, words, capsys):
    pytest.importorskip("matplotlib") if "--plot" in argv else None
    assert run(argv) == 2
    assert words in capsys.readouterr().err


def test_cli_cars_must_match_the_demand_columns(tmp_path, capsys):
    path = tmp_path / "two.csv"
    path.write_text("t,l1,l2,l3,car1,car2\n0,1,1,1,16,16\n1,1,1,1,16,16\n")
    assert run(["--trace", str(path), "--car", "L1"]) == 2
    assert "1 cars (--car) but 2 demand columns" in capsys.readouterr().err


@pytest.mark.slow
def test_one_car_through_the_shared_balancer_scores_as_the_one_car_bench():
    trace = scenario("kitchen-spikes")
    old, _ = run_bench([trace], BalancerConfig(), ["adaptive"], bench.real_balancer, lag_s=LAG_S)
    new, _ = run_bench([trace], BalancerConfig(), ["adaptive"], bench.real_balancer, lag_s=LAG_S,
                       cars=[CarSpec(max_a=trace.car_max_a)])
    a, b = old["traces"][0]["strategies"]["adaptive"], new["traces"][0]["strategies"]["adaptive"]
    for key in ("energy_kwh", "commands", "pauses", "longest_over_fuse_s", "seconds_over_fuse"):
        assert a[key] == pytest.approx(b[key], abs=0.01 if key == "energy_kwh" else 0), key


@pytest.mark.slow
def test_generated_houses_with_two_cars_share_each_fuse_and_the_distribution_counts_per_connector(capsys):
    # `--generate` with two `--car`: the generated houses' own car is replaced by the two cars.
    assert run(["--generate", "2", "--seed", "3", "--car", "L1L2L3:16", "--car", "L1:16", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["generated"] == {"houses": 2, "seed": 3}
    entries = doc["traces"] + doc["traces_house_over_max_a"]
    assert len(entries) == 2 and all(e["cars"] == ["L1L2L3:16", "L1:16"] for e in entries)
    assert set(doc["distribution"]) == {"adaptive"}
    writes = sorted(e["strategies"]["adaptive"]["max_writes_per_h_per_connector"] for e in doc["traces"])
    figures = doc["distribution"]["adaptive"]["writes_per_h"]
    assert (figures["min"], figures["max"]) == pytest.approx((writes[0], writes[-1]), abs=1e-4)
    # The fairness over the houses is each house's own, as bench reports it per house.
    fairness = sorted(f for e in doc["traces"] if (f := e["strategies"]["adaptive"]["fairness"]) is not None)
    assert fairness, "no house where both cars wanted to charge throughout"
    figures = doc["distribution"]["adaptive"]["fairness"]
    assert figures["houses"] == len(fairness)
    assert (figures["min"], figures["median"], figures["max"]) == pytest.approx(
        (fairness[0], statistics.median(fairness), fairness[-1]), abs=1e-4)
    assert run(["--generate", "1", "--car", "L1L2L3:16", "--car", "L1L2L3:16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 generated houses, seed 1, cars L1L2L3:16, L1L2L3:16 instead of each house's own")
    assert "targets for several cars" in out


# ---- circuits: bench --circuit, a car @NAME ----------------------------------------------------

def test_parse_car_on_a_circuit():
    assert parse_car("L1L2L3:16@garage") == CarSpec(max_a=16, circuit="garage")
    assert parse_car("L2@garage").label == "L2@garage"
    with pytest.raises(ValueError, match="no circuit named after @"):
        parse_car("L1@")


def test_the_oracle_keeps_the_circuits():
    from bridge.balancer.circuits import Circuit

    cars = (CarSpec(circuit="garage"), CarSpec(circuit="garage"), CarSpec())
    rooms = bench.circuit_limits(cars, [Circuit("garage", 15)], LIMITS.max_a)
    # 22 A for the cars on the main fuse, the garage's 15 A for its two: 7 + 7 (then 8 where fair), the rest elsewhere.
    amps = oracle_shared((2.0, 2.0, 2.0), (16, 16, 16), cars, LIMITS, rooms)
    assert amps[0] + amps[1] <= 15 and amps[2] == 22 - amps[0] - amps[1]
    assert oracle_shared((2.0, 2.0, 2.0), (16, 16, 16), cars, LIMITS) == (8, 7, 7)  # without the garage


def test_one_car_on_a_circuit_is_held_by_it(tmp_path, capsys):
    path = tmp_path / "quiet.csv"
    path.write_text("t,l1,l2,l3\n" + "".join(f"{t},2,2,2\n" for t in range(600)))
    assert run(["--trace", str(path), "--circuit", "garage:10", "--car", "L1L2L3:16@garage", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["traces"][0]
    assert set(entry["strategies"]) == {"adaptive"}  # homey knows no circuits: left out by default
    s = entry["strategies"]["adaptive"]
    assert s["seconds_over_circuit"] <= LAG_S + 1 and s["energy_ratio"] > 0.95


def test_cli_cars_on_a_circuit_stay_within_it(tmp_path, capsys):
    path = tmp_path / "quiet.csv"
    path.write_text("t,l1,l2,l3\n" + "".join(f"{t},2,2,2\n" for t in range(900)))
    assert run(["--trace", str(path), "--circuit", "garage:15", "--car", "L1L2L3:16@garage",
                "--car", "L1L2L3:16@garage", "--car", "L1L2L3:16", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["traces"][0]
    assert entry["cars"] == ["L1L2L3:16@garage", "L1L2L3:16@garage", "L1L2L3:16"]
    s = entry["strategies"]["adaptive"]
    # Over the garage's limit only until the first cut reaches the cars (the charger's lag).
    assert s["seconds_over_circuit"] <= LAG_S + 1
    assert s["energy_ratio"] > 0.95
    garage = s["cars"][0]["energy_kwh"] + s["cars"][1]["energy_kwh"]
    assert garage < s["cars"][2]["energy_kwh"] * 15 / 7 * 1.1  # the garage's two share 15 A


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--car", "L1@garage", "--car", "L2"], "connector 1:1: unknown circuit 'garage'"),
        (["--circuit", "garage:30", "--car", "L1@garage", "--car", "L2"], "above the main fuse's BALANCER_MAX_A"),
        (["--circuit", "a:10:b", "--circuit", "b:10:a", "--car", "L1@a", "--car", "L2"], "make a cycle"),
        (["--generate", "2", "--circuit", "garage:15", "--car", "L1@garage", "--car", "L2"], "not to --generate"),
        (["--scenario", "evening-oven", "--circuit", "garage:10", "--car", "L1L2L3@garage", "--strategy", "homey"],
         "knows the main fuse only"),
    ],
)
def test_cli_bad_circuits_exit_2_naming_them(argv, words, capsys):
    assert run(argv) == 2
    assert words in capsys.readouterr().err
