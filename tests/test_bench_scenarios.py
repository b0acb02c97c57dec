"""The benchmark's targets on the built-in scenarios, with the default settings and the 10 s lag.

These pin what docs/benchmark.md's table claims, so a change to the balancer that gives
back safety, energy or cloud writes fails here rather than in a user's fuse box. Safety
is bounded by how long an overload lasts (what opens a fuse), not by comparing seconds
over the fuse with `homey`, which is over less because it gives the car less."""

from __future__ import annotations

import pytest

from bridge.balancer import Balancer, BalancerConfig
from bridge.sim.bench import run_bench, target_misses
from bridge.sim.scenarios import scenario, scenario_names

pytestmark = pytest.mark.slow

LAG_S = 10.0
ENERGY_TARGET = 0.96
# evening-oven misses the energy target (docs/benchmark.md): this floor keeps the gap from growing.
# meter-dropout: its 3-minute dropout pauses the car after BALANCER_FAILSAFE_PAUSE_AFTER_S (120 s) of
# silence, while the oracle, which sees the house throughout, charges on.
KNOWN_ENERGY_GAPS = {"evening-oven": 0.955, "meter-dropout": 0.955}


@pytest.fixture(scope="module")
def report() -> dict:
    traces = [scenario(name) for name in scenario_names()]
    result, _raw = run_bench(traces, BalancerConfig(), ["adaptive", "homey"],
                             lambda cfg, strategy: Balancer(cfg, strategy=strategy), lag_s=LAG_S)
    return result


def entries(report: dict) -> list[dict]:
    assert len(report["traces"]) >= 6, "every built-in scenario but the overloaded house is scored"
    return report["traces"]


def test_adaptive_never_stays_over_the_fuse_longer_than_the_lag_plus_3_s(report):
    for entry in entries(report):
        adaptive = entry["strategies"]["adaptive"]
        assert adaptive["longest_over_fuse_s"] <= LAG_S + 3, entry["name"]


def test_adaptive_writes_at_most_20_times_an_hour(report):
    for entry in entries(report):
        writes_per_h = entry["strategies"]["adaptive"]["commands"] * 3600 / entry["duration_s"]
        assert writes_per_h <= 20, entry["name"]


def test_adaptive_gets_more_energy_than_homey_everywhere(report):
    for entry in entries(report):
        s = entry["strategies"]
        assert s["adaptive"]["energy_kwh"] > s["homey"]["energy_kwh"], entry["name"]


def test_adaptive_energy_meets_the_target_but_for_the_known_gap(report):
    for entry in entries(report):
        floor = KNOWN_ENERGY_GAPS.get(entry["name"], ENERGY_TARGET)
        assert entry["strategies"]["adaptive"]["energy_ratio"] >= floor, entry["name"]


def test_target_misses_name_only_the_known_gap(report):
    missed = {entry["name"]: target_misses(entry, LAG_S) for entry in entries(report)}
    assert {name for name, misses in missed.items() if misses} <= set(KNOWN_ENERGY_GAPS)
    for name in KNOWN_ENERGY_GAPS:
        assert all("energy" in miss for miss in missed[name]), missed[name]


def test_homey_shows_the_originals_long_runs_over_the_fuse(report):
    longest = [entry["strategies"]["homey"]["longest_over_fuse_s"] for entry in entries(report)]
    assert max(longest) > 4 * (LAG_S + 3)


def test_the_scored_scenarios_keep_the_house_alone_under_max_a(report):
    assert [e["name"] for e in report["traces_house_over_max_a"]] == ["overloaded-house"]
    for entry in entries(report):
        assert "house_seconds_over_max_a" not in entry
