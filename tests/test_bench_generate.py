"""Generated households in the bench: determinism, the appliance mix, houses over MaxA, the distribution.

The distribution's figures are recomputed here with `statistics` from the per-house
entries of the same report, so a wrong percentile or a house counted in the wrong
place fails. Kept small (a few houses) so the file runs in seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
from dataclasses import dataclass

import pytest

from bridge.sim import bench
from bridge.sim.appliances import LIBRARY
from bridge.sim.distribution import (
    METRICS,
    distribution,
    distribution_misses,
    percentile,
)
from bridge.sim.generate import KINDS, generate_house, generate_houses


@dataclass(frozen=True)
class StandInConfig:
    max_a: float = 24
    fuse_a: float = 25
    default_current: int = 16


@dataclass(frozen=True)
class IdleDecision:
    charge_at: int = 16
    command: int | None = None


class IdleBalancer:
    """Never writes: the car draws 16 A throughout; the cheapest balancer to replay."""

    def meter(self, now, phase, amps) -> None: ...
    def charger(self, now, currents, phases) -> None: ...
    def commanded(self, now, amps) -> None: ...

    def decide(self, now) -> IdleDecision:
        return IdleDecision()


def idle_factory(cfg, strategy: str) -> IdleBalancer:
    if strategy not in ("idle", "also-idle"):
        raise ValueError(f"unknown strategy {strategy!r}")
    return IdleBalancer()


# ---- the generator --------------------------------------------------------------

def test_the_same_seed_gives_the_same_house_and_another_seed_another():
    first, again, other = generate_house(7, 3), generate_house(7, 3), generate_house(8, 3)
    assert first.trace == again.trace and first.uses == again.uses
    assert first.trace.base != other.trace.base


def test_a_house_does_not_depend_on_how_many_are_generated_with_it():
    assert generate_houses(3, 5)[2].trace == generate_house(5, 2).trace


@pytest.fixture(scope="module")
def twenty() -> list:
    return generate_houses(20, 1)


@pytest.mark.slow
def test_every_appliance_kind_appears_across_twenty_houses(twenty):
    houses = twenty
    seen = set().union(*(house.kinds for house in houses))
    assert seen == set(KINDS)


@pytest.mark.slow
def test_a_house_shows_its_appliances_in_its_load(twenty):
    houses = twenty
    solar = next(h for h in houses if "solar-export" in h.kinds)
    assert min(min(phase) for phase in solar.trace.base) < -2  # export: negative house current
    for house in houses:
        for use in house.uses:
            assert 0 <= use.start_s < use.end_s <= house.trace.duration_s, (house.trace.name, use)
        silent = {(p, s) for p in range(3) for s, live in enumerate(house.trace.metered[p]) if not live}
        gaps = {(int(name[1]) - 1, s) for use in house.uses if use.kind == "meter-gap"
                for name in use.phases.split(",") for s in range(use.start_s, use.end_s)}
        assert silent == gaps, house.trace.name


@pytest.mark.slow
def test_an_induction_hob_changes_level_within_a_minute(twenty):
    hob_house = next(h for h in twenty if "hob" in h.kinds)
    use = next(u for u in hob_house.uses if u.kind == "hob")
    phase = int(use.phases[1]) - 1
    series = hob_house.trace.base[phase][use.start_s:use.end_s]
    steps = sum(1 for a, b in zip(series, series[1:]) if abs(b - a) > 2)
    assert steps >= (use.end_s - use.start_s) / 60  # at least one switch of 2 A or more a minute


def test_every_range_of_the_library_is_a_range_with_a_source():
    for key, span in LIBRARY.items():
        assert span.low <= span.high, key
        assert span.source.strip(), key


# ---- the report -----------------------------------------------------------------

@pytest.mark.slow
def test_houses_over_max_a_are_reported_apart_and_left_out_of_the_distribution():
    # The first six houses of seed 1 peak at 15.4-22.8 A on their own: MaxA 16 A puts them on both sides.
    report = bench.run_generated(6, 1, StandInConfig(max_a=16, fuse_a=17), ["idle"], idle_factory, processes=1)
    over, scored = report["traces_house_over_max_a"], report["traces"]
    assert over and scored, "MaxA 16 A: some houses exceed it alone, some do not"
    assert len(over) + len(scored) == 6
    for entry in over:
        assert entry["house_seconds_over_max_a"] > 0
        assert generate_house(1, int(entry["name"][-3:]) - 1).trace.seconds_house_over(16) > 0
    for entry in scored:
        assert "house_seconds_over_max_a" not in entry
        assert entry["appliances"] and entry["description"]
    assert distribution(scored, ["idle"])["idle"]["writes_per_h"]["houses"] == len(scored)


@pytest.mark.parametrize("values", [[0.5], [3.0, 1.0], [5, 1, 4, 2, 3, 9, 7]])
def test_percentile_matches_statistics_inclusive_quantiles(values):
    ordered = sorted(values)
    if len(values) >= 2:
        deciles = statistics.quantiles(values, n=10, method="inclusive")
        assert percentile(ordered, 0.1) == pytest.approx(deciles[0])
        assert percentile(ordered, 0.9) == pytest.approx(deciles[8])
    assert percentile(ordered, 0.5) == pytest.approx(statistics.median(values))
    assert (percentile(ordered, 0), percentile(ordered, 1)) == (ordered[0], ordered[-1])


def figures_by_hand(entries: list[dict], strategy: str, metric: str) -> list[float]:
    out = []
    for entry in entries:
        s, hours = entry["strategies"][strategy], entry["duration_s"] / 3600
        value = {"energy_ratio": s["energy_ratio"], "energy_ratio_pause_oracle": s["energy_ratio_pause_oracle"],
                 "writes_per_h": s["commands"] / hours,
                 "longest_over_fuse_s": s["longest_over_fuse_s"],
                 "seconds_over_fuse_per_h": s["seconds_over_fuse"] / hours}[metric]
        if value is not None:
            out.append(value)
    return out


@pytest.fixture(scope="module")
def real_report() -> dict:
    """Four generated houses through the real balancer, by the command line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.bench_main(["--generate", "4", "--seed", "3", "--json"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.slow
def test_the_distribution_agrees_with_the_per_house_figures(real_report):
    doc = real_report
    assert doc["generated"] == {"houses": 4, "seed": 3}
    assert set(doc["distribution"]) == {"adaptive", "homey"}
    for strategy in ("adaptive", "homey"):
        for metric in METRICS:
            figures = doc["distribution"][strategy][metric]
            values = figures_by_hand(doc["traces"], strategy, metric)
            deciles = statistics.quantiles(values, n=10, method="inclusive")
            expected = {"houses": len(values), "p10": deciles[0], "median": statistics.median(values),
                        "p90": deciles[8], "min": min(values), "max": max(values)}
            assert figures == pytest.approx(expected, abs=1e-4), (strategy, metric)
    assert doc["distribution"]["adaptive"]["energy_ratio"]["p10"] <= doc["distribution"]["adaptive"]["energy_ratio"]["median"]


def test_the_plot_of_the_distribution_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "gen.png"
    assert run(["--generate", "3", "--strategy", "idle,also-idle", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_two_processes_give_the_report_of_one():
    from bridge.balancer import BalancerConfig

    one = bench.run_generated(3, 2, BalancerConfig(), ["adaptive"], bench.real_balancer, processes=1)
    two = bench.run_generated(3, 2, BalancerConfig(), ["adaptive"], bench.real_balancer, processes=2)
    assert json.dumps(one) == json.dumps(two)


def test_distribution_misses_name_each_target():
    def dist(**changes):
        base = {"energy_ratio": {"houses": 100, "p10": 0.95, "median": 0.97},
                "energy_ratio_pause_oracle": {"houses": 100, "p10": 0.965, "median": 0.99},
                "writes_per_h": {"median": 12.0, "p90": 20.0},
                "longest_over_fuse_s": {"p90": 13.0, "max": 25.0},
                "seconds_over_fuse_per_h": {"median": 45.0}}
        for key, value in changes.items():
            metric, figure = key.split("__")
            base[metric] = {**base[metric], figure: value}
        return {"adaptive": base}

    assert distribution_misses(dist(), lag_s=10) == []
    for change, words in [({"energy_ratio__p10": 0.949}, "energy_ratio p10"),
                          ({"energy_ratio__median": 0.969}, "energy_ratio median"),
                          ({"energy_ratio_pause_oracle__p10": 0.964}, "energy_ratio_pause_oracle p10"),
                          ({"energy_ratio_pause_oracle__median": 0.989}, "energy_ratio_pause_oracle median"),
                          ({"writes_per_h__median": 12.1}, "writes_per_h median"),
                          ({"writes_per_h__p90": 20.1}, "writes_per_h p90"),
                          ({"longest_over_fuse_s__p90": 14.0}, "longest_over_fuse_s p90"),
                          ({"longest_over_fuse_s__max": 26.0}, "longest_over_fuse_s max"),
                          ({"seconds_over_fuse_per_h__median": 45.5}, "seconds_over_fuse_per_h median")]:
        misses = distribution_misses(dist(**change), lag_s=10)
        assert len(misses) == 1 and words in misses[0], (change, misses)


# ---- command line ---------------------------------------------------------------

def run(argv: list[str]) -> int:
    return bench.run_cli(bench.build_parser().parse_args(argv), StandInConfig, idle_factory, environ={})


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--generate", "0"], "--generate needs between 1 and 10000 houses, got 0"),
        (["--generate", "-3"], "--generate needs between 1 and 10000 houses, got -3"),
        (["--generate", "10001"], "got 10001"),
        (["--generate", "2", "--seed", "-1"], "--seed cannot be negative"),
        (["--seed", "4"], "--seed needs --generate N"),
        (["--sky", "clear"], "--sky needs --generate N"),
        (["--generate", "2", "--scenario", "heat-pump"], "cannot be combined with --trace or --scenario"),
        (["--generate", "2", "--strategy", "greedy"], "unknown strategy 'greedy'"),
    ],
)
def test_cli_bad_generate_flags_exit_2_with_a_message(argv, words, capsys):
    assert run(["--strategy", "idle", *argv]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--generate", "many"], ["--generate", "2", "--seed", "1.5"]])
def test_cli_generate_flags_must_be_whole_numbers(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_cli_generate_table_ends_with_the_distribution(capsys):
    assert run(["--generate", "2", "--strategy", "idle,also-idle"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 generated houses, seed 1")
    assert "house-001" in out and "house-002" in out
    assert "-- distribution over the scored traces --" in out
    for words in ("energy ratio", "writes/h", "longest > fuse (s)", "s > fuse per h"):
        assert words in out


def test_cli_without_generate_reports_the_distribution_of_its_traces(tmp_path, capsys):
    path = tmp_path / "flat.csv"
    path.write_text("t,l1,l2,l3\n" + "".join(f"{t},10,1,1\n" for t in range(120)))
    assert run(["--trace", str(path), "--strategy", "idle", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["distribution"]["idle"]["energy_ratio"]["houses"] == 1
    assert doc["distribution"]["idle"]["writes_per_h"]["median"] == 0


# ---- generated houses with power limits ------------------------------------------------------

def generated_json(argv: list[str], monkeypatch, seed: int = 1, **env: str) -> dict:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.bench_main(["--generate", "3", "--seed", str(seed), "--strategy", "adaptive", "--json",
                                 *argv]) == 0
    return json.loads(out.getvalue())


@pytest.mark.slow
def test_a_capacity_limit_scores_every_generated_house_against_the_capacity_oracle(monkeypatch):
    doc = generated_json([], monkeypatch, CAPACITY_LIMIT_KW="5", TZ="Europe/Stockholm")
    dist = doc["distribution"]["adaptive"]
    capacity = [e["strategies"]["adaptive"]["capacity"] for e in doc["traces"]]
    assert len(capacity) == 3 and all(c["limit_kw"] == 5 for c in capacity)
    # A house whose own load is over the limit is scored apart (its second house on an overcast evening).
    scored = [c for c in capacity if not c["house_over_capacity"]]
    assert dist["capacity_energy_ratio"]["houses"] == len(scored) >= 2
    assert dist["capacity_energy_ratio"]["median"] == pytest.approx(
        statistics.median(c["energy_ratio"] for c in scored), abs=1e-4)
    over = max(c["max_period_kw"] - 5 for c in scored)
    assert dist["max_period_over_limit_kw"]["max"] == pytest.approx(over, abs=1e-3)
    assert "solar_share" not in dist and "starts_per_h" not in dist  # no pv car


@pytest.mark.slow
def test_a_pv_car_is_scored_on_the_houses_with_solar_with_its_starts(monkeypatch):
    # Seed 3's third house is a day with solar export (the others are evenings).
    doc = generated_json(["--car", "L1L2L3:16:pv", "--start", "2027-04-20T08:00"], monkeypatch, seed=3)
    dist = doc["distribution"]["adaptive"]
    cars = [(e, e["strategies"]["adaptive"]["cars"][0]) for e in doc["traces"]]
    assert all(c["mode"] == "pv" and isinstance(c["starts"], int) for _e, c in cars)
    starts = sorted(c["starts"] / (e["duration_s"] / 3600) for e, c in cars)
    assert dist["starts_per_h"]["houses"] == 3 and dist["starts_per_h"]["max"] == pytest.approx(starts[-1], abs=1e-4)
    assert "capacity_energy_ratio" not in dist
    assert starts[-1] > 0  # some house has the sun to start on


def test_the_sky_over_a_roof_is_chosen_or_drawn_and_leaves_the_other_loads_alone():
    """A clear day gives the sun's smooth curve, an overcast one about a third of it; a house's
    other loads are the same under any sky (the sky has its own draws)."""
    from bridge.sim.generate import SKIES

    index = next(i for i in range(40) if "solar-export" in generate_house(1, i).kinds
                 and generate_house(1, i).trace.description.startswith(tuple(s for s in ("summer", "spring"))))
    clear, overcast = generate_house(1, index, "clear"), generate_house(1, index, "overcast")
    assert "(clear)" in clear.trace.description and "(overcast)" in overcast.trace.description
    export = {name: -sum(min(0.0, a) for phase in h.trace.base for a in phase)
              for name, h in (("clear", clear), ("overcast", overcast))}
    assert export["overcast"] < 0.5 * export["clear"]
    assert [u for u in clear.uses if u.kind != "solar-export"] == [u for u in overcast.uses if u.kind != "solar-export"]
    drawn = {generate_house(1, i, "mixed").trace.description.rpartition("(")[2].rstrip(")")
             for i in range(60) if "solar-export" in generate_house(1, i).kinds}
    assert drawn == {name for name, _share in SKIES}
    # Unless asked, a roof keeps the sky generated houses always had, so a seed's houses stay the same.
    assert generate_house(1, index).trace.base == generate_house(1, index, "passing-clouds").trace.base
    with pytest.raises(ValueError, match="the sky is one of clear, passing-clouds, overcast, mixed"):
        generate_house(1, index, "foggy")
