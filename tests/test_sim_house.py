"""House traces (CSV), built-in scenarios and the charger model."""

from __future__ import annotations

import statistics

import pytest

from bridge.sim.charger import ChargerModel
from bridge.sim.house import HouseTrace, TraceError, load_trace, parse_trace
from bridge.sim.scenarios import SCENARIOS, scenario, scenario_names

MAX_A_DEFAULT = 24


def parse(text: str, name: str = "t") -> HouseTrace:
    return parse_trace(text.splitlines(keepends=True), source="house.csv", name=name)


# ---- CSV ------------------------------------------------------------------------

def test_csv_values_per_second_with_gaps_held_and_unmetered():
    trace = parse("t,l1,l2,l3\n0,1.5,2,-3\n1,1.6,,-3.1\n4,2,2.5,-1\n")
    assert trace.duration_s == 5
    assert trace.base[0] == [1.5, 1.6, 1.6, 1.6, 2.0]
    assert trace.base[1] == [2.0, 2.0, 2.0, 2.0, 2.5]
    assert trace.base[2] == [-3.0, -3.1, -3.1, -3.1, -1.0]
    assert trace.metered[0] == [True, True, False, False, True]
    assert trace.metered[1] == [True, False, False, False, True]
    assert trace.car_phases == (True, True, True)


def test_csv_time_starts_at_zero_is_rounded_and_last_row_of_a_second_wins():
    trace = parse("t,l1,l2,l3\n1000,1,1,1\n1000.9,2,2,2\n1001.2,3,3,3\n1002,4,4,4\n")
    assert trace.duration_s == 3
    assert trace.base[0] == [1.0, 3.0, 4.0]


def test_csv_first_value_missing_is_taken_from_the_first_reading_but_not_metered():
    trace = parse("t,l1,l2,l3\n0,,1,1\n1,,1,1\n2,5,1,1\n")
    assert trace.base[0] == [5.0, 5.0, 5.0]
    assert trace.metered[0] == [False, False, True]


def test_csv_comments_set_car_phases_and_max_and_bom_and_blank_lines_are_fine(tmp_path):
    path = tmp_path / "garage.csv"
    path.write_text("\ufeff# car_phases: L2\n# car_max_a: 16\n# any other remark\n\nT, L1, L2, L3\n0,1,2,3\n",
                    encoding="utf-8")
    trace = load_trace(path)
    assert trace.name == "garage"
    assert trace.car_phases == (False, True, False)
    assert trace.car_max_a == 16


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("time,a,b,c\n0,1,1,1\n", 1, "header must be 't,l1,l2,l3'"),
        ("t,l1,l2\n0,1,1\n", 1, "header"),
        ("t,l1,l2,l3\n0,1,1,1\n1,1,1\n", 3, "expected 4 values"),
        ("t,l1,l2,l3\n0,1,1,1\n1,1,x,1\n", 3, "L2: 'x' is not a number"),
        ("t,l1,l2,l3\n0,1,nan,1\n", 2, "L2: 'nan' is not a finite number"),
        ("t,l1,l2,l3\n5,1,1,1\n4,1,1,1\n", 3, "goes back in time"),
        ("t,l1,l2,l3\n0,1,1,1\n,1,1,1\n", 3, "t is empty"),
        ("t,l1,l2,l3\n0,1,1,1\n1e12,1,1,1\n", 3, "is t in seconds"),
        ("# car_phases: L4\nt,l1,l2,l3\n0,1,1,1\n", 1, "car_phases"),
        ("# car_max_a: 3\nt,l1,l2,l3\n0,1,1,1\n", 1, "car_max_a"),
    ],
)
def test_broken_csv_names_file_line_and_fault(text, line, words):
    with pytest.raises(TraceError) as excinfo:
        parse(text)
    message = str(excinfo.value)
    assert message.startswith(f"house.csv, line {line}: ")
    assert words in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty trace"),
        ("t,l1,l2,l3\n", "no data rows"),
        ("t,l1,l2,l3\n0,1,,1\n1,1,,1\n", "L2 has no value in any row"),
    ],
)
def test_csv_without_usable_data_is_refused(text, words):
    with pytest.raises(TraceError, match=words):
        parse(text)


def test_missing_file_is_a_trace_error_naming_it(tmp_path):
    with pytest.raises(TraceError, match="nope.csv: cannot read"):
        load_trace(tmp_path / "nope.csv")


# ---- scenarios ------------------------------------------------------------------

@pytest.fixture(scope="module")
def scenarios() -> dict[str, HouseTrace]:
    return {name: scenario(name) for name in scenario_names()}


def test_scenarios_cover_the_cases_a_balancer_must_handle(scenarios):
    assert {"evening-oven", "kitchen-spikes", "heat-pump", "one-phase-car-l2", "meter-dropout",
            "solar-export"} <= set(scenarios)
    assert scenarios["one-phase-car-l2"].car_phases == (False, True, False)
    assert min(scenarios["solar-export"].base[2]) < -5
    gap = scenarios["meter-dropout"].metered[0]
    assert max(len(run) for run in "".join("x" if m else "." for m in gap).split("x")) == 180


def test_house_alone_stays_under_max_a_except_in_the_flagged_scenario(scenarios):
    for name, trace in scenarios.items():
        if trace.meant_to_exceed_max_a:
            assert trace.house_peak_a() > MAX_A_DEFAULT, name
        else:
            assert trace.house_peak_a() < MAX_A_DEFAULT, name
    assert [t.name for t in scenarios.values() if t.meant_to_exceed_max_a] == ["overloaded-house"]


def test_scenarios_are_a_few_hours_at_one_second_and_need_a_balancer(scenarios):
    for name, trace in scenarios.items():
        assert 3600 <= trace.duration_s <= 6 * 3600, name
        used = [p for p, u in zip(trace.base, trace.car_phases) if u]
        # A 16 A car on top of the house must cross MaxA at some point, or the scenario tests nothing.
        assert max(max(p) for p in used) + 16 > MAX_A_DEFAULT, name


def test_scenarios_are_deterministic(scenarios):
    for name in ("evening-oven", "solar-export"):
        again = SCENARIOS[name]()
        assert again.base == scenarios[name].base
        assert again.metered == scenarios[name].metered


def test_meter_noise_is_a_few_tenths_of_an_amp(scenarios):
    steps = [b - a for a, b in zip(scenarios["heat-pump"].base[2], scenarios["heat-pump"].base[2][1:])]
    small = [abs(s) for s in steps if abs(s) < 1.0]
    assert 0.1 < statistics.pstdev(small) < 0.4


# ---- charger --------------------------------------------------------------------

def test_charger_follows_a_write_after_the_lag():
    charger = ChargerModel(lag_s=10, initial_a=16)
    charger.write(100.0, 10)
    assert charger.draw(109.0) == 16.0
    assert charger.draw(110.0) == 10.0


def test_charger_applies_writes_in_flight_in_order():
    charger = ChargerModel(lag_s=10, initial_a=16)
    charger.write(0.0, 12)
    charger.write(5.0, 8)
    assert [charger.draw(t) for t in (9.0, 10.0, 14.0, 15.0)] == [16.0, 12.0, 12.0, 8.0]


@pytest.mark.parametrize(("written", "drawn"), [(0, 0.0), (5, 0.0), (6, 6.0), (13, 13.0), (32, 16.0)])
def test_car_draws_nothing_below_6_a_and_never_above_its_own_maximum(written, drawn):
    charger = ChargerModel(lag_s=0, car_max_a=16)
    charger.write(0.0, written)
    assert charger.draw(0.0) == drawn


def test_one_phase_car_draws_on_its_phase_only():
    charger = ChargerModel(lag_s=0, phases=(False, True, False), initial_a=10)
    assert charger.phase_draw(0.0) == (0.0, 10.0, 0.0)


def test_charger_refuses_nonsense():
    with pytest.raises(ValueError):
        ChargerModel(lag_s=-1)
    with pytest.raises(ValueError):
        ChargerModel(phases=(False, False, False))


def test_the_bundled_example_trace_parses_with_its_gap_and_one_phase_car():
    from importlib.resources import files

    trace = load_trace(files("bridge.sim") / "traces" / "dryer-l2-with-gap.csv")
    assert trace.car_phases == (False, True, False)
    assert trace.car_max_a == 16
    assert trace.duration_s == 900
    assert trace.metered[1][599:646] == [True] + [False] * 45 + [True]
