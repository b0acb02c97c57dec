"""The benchmark: replay house traces through the real balancer and score it.

For every second of a trace the harness
1. asks the charger model what the car draws now (what was written `lag` ago),
2. sends the balancer the meter's per-phase reading (house + car) for each
   phase the meter reported this second; a gap sends nothing, as a silent
   meter would,
3. every 30 s sends the charger's own measurements, as the service's cloud poll
   does (`None` when the car is not drawing),
4. asks for a decision and "writes" any command to the charger model.

The score is computed on the house's true load plus the car's draw, so a meter
gap does not hide an overload. The oracle knows the house load with no lag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import pickle
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.balancer.from_env import config_values_from_env
from bridge.balancer.model import STRATEGIES
from bridge.sim.car_events import CarEvents
from bridge.sim.charger import IEC_MIN_CURRENT_A, ChargerModel
from bridge.sim.generate import DEFAULT_SKY, MIXED_SKY, SKY_CHOICES, generate_house
from bridge.sim.house import CarSpec, HouseTrace, load_trace, parse_car
from bridge.sim.pause_oracle import pause_oracle
from bridge.sim.scenarios import scenario, scenario_names, shared_scenario_names
from bridge.sim.targets import TARGET_FUSE_MARGIN_S, TARGET_WRITES_PER_HOUR

VOLTAGE_V = 230.0
CHARGER_POLL_S = 30
# From a write to the car drawing it, by CHARGER_TRANSPORT: the cloud's ~10 s, a local OCPP charger's ~2 s.
TRANSPORT_LAG_S = {"cloud": 10.0, "ocpp": 2.0}
DEFAULT_STRATEGIES = STRATEGIES

# Targets for the adaptive strategy on each built-in scenario (the fuse and writes ones: bridge.sim.targets).
TARGET_ENERGY_RATIO = 0.96
MAX_GENERATED_HOUSES = 10000
# Several cars on one fuse: energy against the oracle's, and the fairness among equal cars.
TARGET_SHARED_ENERGY_RATIO = 0.95
TARGET_FAIRNESS = 0.9
MAX_CARS = 6  # the oracle tries every set of cars that charge: 2^cars per second


class BenchError(ValueError):
    """Bad input to the benchmark (settings, traces); the message says what to fix."""


class BalancerLike(Protocol):
    def meter(self, now: float, phase: int, amps: float) -> None: ...
    def charger(self, now: float, currents: tuple[float, float, float] | None,
                phases: tuple[bool, bool, bool] | None) -> None: ...
    def commanded(self, now: float, amps: int) -> None: ...
    def decide(self, now: float) -> Any: ...
    def power_limit(self, now: float, amps_cap: float | None, reason: str = "") -> None: ...


@dataclass(frozen=True)
class Limits:
    """The numbers the score is measured against (from the balancer's config)."""

    max_a: float
    fuse_a: float
    default_current: int
    # The pause oracle keeps a paused car paused this long (BALANCER_MIN_PAUSE_S).
    min_pause_s: float = 300.0


@dataclass
class Series:
    """Per-second history of one replay, for plotting."""

    phase_totals: tuple[list[float], list[float], list[float]] = field(default_factory=lambda: ([], [], []))
    charge_at: list[float] = field(default_factory=list)
    car_draw: list[float] = field(default_factory=list)


@dataclass
class StrategyResult:
    energy_kwh: float
    seconds_over_max_a: int
    amp_seconds_over_max_a: float
    seconds_over_fuse: int
    longest_over_fuse_s: int
    commands: int
    pauses: int
    series: Series | None = None


# ---- settings -------------------------------------------------------------------

def balancer_config_from_env(config_cls: type, environ: Mapping[str, str] | None = None,
                             transport: str = "cloud") -> Any:
    """`config_cls` (a dataclass) with each field read from `BALANCER_<FIELD>` when that is set, the
    others at their defaults for `transport`, as the service sets them."""
    from bridge.balancer.model import transport_config_values

    names = {f.name for f in dataclasses.fields(config_cls)}
    try:
        given = config_values_from_env(config_cls, os.environ if environ is None else environ)
        return config_cls(**{k: v for k, v in transport_config_values(transport, given).items() if k in names})
    except (TypeError, ValueError) as e:
        raise BenchError(f"invalid BALANCER_* settings: {e}") from None


def limits_of(cfg: Any) -> Limits:
    return Limits(max_a=float(cfg.max_a), fuse_a=float(cfg.fuse_a), default_current=int(cfg.default_current),
                  min_pause_s=float(getattr(cfg, "min_pause_s", Limits.min_pause_s)))


# ---- oracle ---------------------------------------------------------------------

def oracle_current(base: Sequence[float], car_phases: Sequence[bool], limits: Limits, car_max_a: float) -> int:
    """What a lag-free balancer that knows the house load would let the car draw."""
    spare = min(limits.max_a - load for load, used in zip(base, car_phases) if used)
    amps = min(limits.default_current, math.floor(spare))
    if amps < IEC_MIN_CURRENT_A:
        return 0
    # The car cannot take more than its on-board charger allows, whatever it is offered.
    return int(min(amps, car_max_a))


def oracle_allowance(trace: HouseTrace, limits: Limits) -> list[int]:
    """The plain oracle's current for the trace's car, every second."""
    return [oracle_current(row, trace.car_phases, limits, trace.car_max_a) for row in zip(*trace.base)]


def oracle_energy_kwh(trace: HouseTrace, limits: Limits) -> float:
    return sum(oracle_allowance(trace, limits)) * sum(trace.car_phases) * VOLTAGE_V / 3.6e6


def ratio_or_none(energy_kwh: float, oracle_kwh: float) -> float | None:
    """Energy over an oracle's, rounded as the report gives it; None when the oracle gets nothing."""
    return round(energy_kwh / oracle_kwh, 4) if oracle_kwh > 0 else None


# ---- replay ---------------------------------------------------------------------

def replay(trace: HouseTrace, balancer: BalancerLike, limits: Limits, lag_s: float = 10.0,
           record: bool = False, power: Any = None) -> StrategyResult:
    """Run one balancer over one trace, one second at a time, and score it. `power` (a
    bridge.sim.power_bench.PowerRun) adds the capacity guard and the charge mode, as in the service."""
    # The car is plugged in and charging at the full default when the trace begins.
    charger = ChargerModel(lag_s=lag_s, phases=trace.car_phases, car_max_a=trace.car_max_a,
                           initial_a=limits.default_current)
    base1, base2, base3 = trace.base
    met1, met2, met3 = trace.metered
    p1, p2, p3 = trace.car_phases
    n_car_phases = sum(trace.car_phases)
    max_a, fuse_a = limits.max_a, limits.fuse_a
    series = Series() if record else None

    amp_seconds_drawn = 0.0
    seconds_over_max = 0
    amp_seconds_over_max = 0.0
    seconds_over_fuse = 0
    run_over_fuse = 0
    longest_over_fuse = 0
    commands = 0
    pauses = 0
    last_written = limits.default_current
    metered_totals = [0.0, 0.0, 0.0]  # the meter's last word on each phase, for the power limits

    for t in range(trace.duration_s):
        now = float(t)
        car = charger.draw(now)
        total1 = base1[t] + (car if p1 else 0.0)
        total2 = base2[t] + (car if p2 else 0.0)
        total3 = base3[t] + (car if p3 else 0.0)
        if met1[t]:
            balancer.meter(now, 0, total1)
        if met2[t]:
            balancer.meter(now, 1, total2)
        if met3[t]:
            balancer.meter(now, 2, total3)
        if power is not None:
            for n, (met, total) in enumerate(((met1, total1), (met2, total2), (met3, total3))):
                if met[t]:
                    metered_totals[n] = total
            cap, why = power.step(t, metered_totals, (total1, total2, total3),
                                  (base1[t], base2[t], base3[t]), car)
            balancer.power_limit(now, cap, why)
        if t % CHARGER_POLL_S == 0:
            if car > 0:
                balancer.charger(now, (car if p1 else 0.0, car if p2 else 0.0, car if p3 else 0.0),
                                 trace.car_phases)
            else:
                balancer.charger(now, None, None)
        decision = balancer.decide(now)
        command = decision.command
        if command is not None:
            charger.write(now, command)
            balancer.commanded(now, command)
            commands += 1
            if command < IEC_MIN_CURRENT_A <= last_written:
                pauses += 1
            last_written = command

        amp_seconds_drawn += car
        worst = max(total1, total2, total3)
        if worst > max_a:
            seconds_over_max += 1
            amp_seconds_over_max += worst - max_a
        if worst > fuse_a:
            seconds_over_fuse += 1
            run_over_fuse += 1
            if run_over_fuse > longest_over_fuse:
                longest_over_fuse = run_over_fuse
        else:
            run_over_fuse = 0
        if series is not None:
            series.phase_totals[0].append(total1)
            series.phase_totals[1].append(total2)
            series.phase_totals[2].append(total3)
            series.charge_at.append(decision.charge_at)
            series.car_draw.append(car)

    return StrategyResult(
        energy_kwh=amp_seconds_drawn * n_car_phases * VOLTAGE_V / 3.6e6,
        seconds_over_max_a=seconds_over_max,
        amp_seconds_over_max_a=amp_seconds_over_max,
        seconds_over_fuse=seconds_over_fuse,
        longest_over_fuse_s=longest_over_fuse,
        commands=commands,
        pauses=pauses,
        series=series,
    )


# ---- several cars on one fuse ---------------------------------------------------

def car_key(index: int) -> str:
    """The connector key of the bench's car `index` (from 0): an Aura-like charge point 1."""
    return f"1:{index + 1}"


def cars_of(trace: HouseTrace, cars: Sequence[CarSpec] | None) -> tuple[CarSpec, ...] | None:
    """The cars on `trace`: `cars` when given, else the trace's own; None for the one-car bench of old."""
    if cars:
        chosen = tuple(cars)
    elif trace.cars:
        chosen = trace.cars
    elif trace.car_demand:
        chosen = tuple(CarSpec(max_a=trace.car_max_a) for _ in trace.car_demand)
    else:
        return None
    if trace.car_demand and len(trace.car_demand) != len(chosen):
        raise BenchError(f"trace {trace.name}: {len(chosen)} cars (--car) but {len(trace.car_demand)} "
                         "demand columns (car1, car2, ...)")
    return chosen


def demand_at(trace: HouseTrace, car: int, t: int, spec: CarSpec) -> float:
    """What car `car` would take at second `t` (its demand column, capped by its own maximum)."""
    if trace.car_demand:
        return min(float(spec.max_a), trace.car_demand[car][t])
    return float(spec.max_a)


def oracle_shared(base: Sequence[float], demands: Sequence[float], cars: Sequence[CarSpec],
                  limits: Limits, circuits: Sequence[Any] = ()) -> tuple[int, ...]:
    """Every second, the allocation with the most amps in total under the per-phase headroom and
    every circuit's limit (`circuit_limits`: a circuit's load is its cars), each car 0 or 6 up to its
    demand, shared as equally as that allows: every set of cars that could charge is shared max-min
    fair (`share`); the set with the most amps wins, then the one whose least-served car has most."""
    from bridge.balancer.sharing import Claim, share

    budget = [limits.max_a - b for b in base]
    caps = [int(min(limits.default_current, math.floor(d))) for d in demands]
    phases = [tuple(p for p in range(3) if spec.phases[p]) for spec in cars]
    candidates = [i for i, cap in enumerate(caps) if cap >= IEC_MIN_CURRENT_A]
    best: tuple[tuple[int, int], tuple[int, ...]] = ((0, 0), tuple(0 for _ in cars))
    for mask in range(1, 1 << len(candidates)):
        chosen = [candidates[j] for j in range(len(candidates)) if mask >> j & 1]
        claims = [Claim(str(i), phases[i], caps[i]) for i in chosen]
        amps = share(budget, claims, IEC_MIN_CURRENT_A, (), circuits)
        if any(amps[str(i)] == 0 for i in chosen):
            continue  # not every car of this set fits: another set covers it
        allocation = tuple(amps.get(str(i), 0) for i in range(len(cars)))
        score = (sum(allocation), min(allocation[i] for i in candidates))
        if score > best[0]:
            best = (score, allocation)
    return best[1]


@dataclass
class CarResult:
    energy_kwh: float = 0.0
    commands: int = 0
    pauses: int = 0
    oracle_kwh: float = 0.0
    wants_throughout: bool = True
    pause_oracle_kwh: float = 0.0


@dataclass
class SharedResult:
    energy_kwh: float
    oracle_kwh: float
    seconds_over_max_a: int
    amp_seconds_over_max_a: float
    seconds_over_fuse: int
    longest_over_fuse_s: int
    cars: list[CarResult]
    phase_counts: tuple[int, ...]
    seconds_over_circuit: int | None = None  # seconds a circuit's cars drew above its limit; None: no circuit
    pause_oracle_kwh: float = 0.0
    events: dict[str, float | int] = field(default_factory=dict)  # bridge.sim.car_events: wake-ups, unplugs
    # The oracle's allocation every second, each car's amps times its phases: the power limits' oracles.
    oracle_phase_amps: list[int] = field(default_factory=list)

    @property
    def fairness(self) -> float | None:
        """The lowest over the highest charge among the cars that wanted to charge throughout
        (the bench's cars all have the same priority), in amp-hours per phase: a one-phase car given
        the same current as a three-phase one has had an equal share."""
        charge = [c.energy_kwh / p for c, p in zip(self.cars, self.phase_counts) if c.wants_throughout]
        if len(charge) < 2 or max(charge) <= 0:
            return None
        return min(charge) / max(charge)


def circuit_limits(cars: Sequence[CarSpec], circuits: Sequence[Any], max_a: float,
                   key: Callable[[int], str] = str) -> list[Any]:
    """The bench's circuits as the balancer's `CircuitRoom`s, each car named `key(i)`: a circuit's
    load is its cars alone (no house load of its own), so its room is its limit."""
    from bridge.balancer.circuits import CircuitTree, circuit_rooms

    tree = CircuitTree(circuits, max_a, {key(i): c.circuit for i, c in enumerate(cars)})  # ValueError names a fault
    return circuit_rooms(tree, {key(i): (0.0, 0.0, 0.0) for i in range(len(cars))}, {}, {}, 0)


def shared_pause_oracle(bases: Sequence[Sequence[float]], demands: Sequence[Sequence[float]],
                        allocations: Sequence[Sequence[int]], cars: Sequence[CarSpec],
                        limits: Limits, rooms: Sequence[Any] = ()) -> list[list[int]]:
    """Each car's amps every second in a schedule that keeps the minimum pause of each car, under
    the fuse and every circuit's limit every second (`bases`, `demands` and `allocations`: the
    house's load, each car's demand and the plain oracle's allocation, every second; `rooms`:
    `circuit_limits`, each car named by its index).

    The exact joint program has a state per car ((min pause + 1) ** cars a second: 90,601 for two
    cars at 300 s), too many for a day of seconds in pure Python. This one is a feasible schedule,
    so a lower bound of the exact pause oracle (the plain oracle is an upper one; with one car it is
    exact). The cars in turn get their pauses from the one-car program, over what the fuse and
    their circuits leave each with the cars before it at their schedule's amps and those after it
    at the plain oracle's (so a later car still has at least its plain allocation); then each car,
    in turn, takes what the others' pauses left it while it charges. A car whose demand is below
    the minimum takes nothing and is not paused (the bridge holds such a car at the minimum).
    O(T x cars x circuits)."""
    n, count = len(bases), len(cars)
    phases = [[p for p in range(3) if spec.phases[p]] for spec in cars]
    members = [[j for j in range(count) if any(r.holds(str(i)) and r.holds(str(j)) for r in rooms)]
               for i in range(count)]
    amps = [[0] * n for _ in cars]

    def room(i: int, t: int, others: Callable[[int], int]) -> float:
        spare = min(limits.max_a - bases[t][p] - sum(others(j) for j in range(count) if j != i and cars[j].phases[p])
                    for p in phases[i])
        for r in rooms:
            if r.holds(str(i)):
                spare = min(spare, *(r.room[p] - sum(others(j) for j in members[i]
                                                     if j != i and r.holds(str(j)) and cars[j].phases[p])
                                     for p in phases[i]))
        return spare

    def most(i: int, t: int, spare: float) -> int:
        return int(min(limits.default_current, math.floor(demands[t][i]), math.floor(spare)))

    for i in range(count):
        allowance, must_pause = [0] * n, [False] * n
        for t in range(n):
            if demands[t][i] < IEC_MIN_CURRENT_A:
                continue  # a full car: nothing to give, nothing to pause
            spare = room(i, t, lambda j, t=t: amps[j][t] if j < i else allocations[t][j])
            allowance[t] = most(i, t, spare)
            if allowance[t] < IEC_MIN_CURRENT_A:
                allowance[t], must_pause[t] = 0, True
        amps[i] = pause_oracle(allowance, limits.min_pause_s, must_pause).amps
    for i in range(count):
        for t in range(n):
            if amps[i][t]:
                amps[i][t] = max(amps[i][t], most(i, t, room(i, t, lambda j, t=t: amps[j][t])))
    return amps


def replay_shared(trace: HouseTrace, cars: Sequence[CarSpec], balancer: Any, limits: Limits,
                  lag_s: float = 10.0, power: Any = None, circuits: Sequence[Any] = ()) -> SharedResult:
    """Run a balancer of several connectors (`SharedBalancer`'s interface) over one trace. `power` (a
    bridge.sim.power_bench.SharedPowerRun) adds the capacity guard and the charge modes, as in the
    service; `circuits` (bridge.balancer.circuits.Circuit) the feeders the cars hang on (`CarSpec.circuit`)."""
    rooms = circuit_limits(cars, circuits, limits.max_a)
    over_circuit = 0
    models = [ChargerModel(lag_s=lag_s, phases=c.phases, car_max_a=c.max_a, initial_a=limits.default_current)
              for c in cars]
    keys = [car_key(i) for i in range(len(cars))]
    results = [CarResult() for _ in cars]
    last_written = [limits.default_current for _ in cars]
    met = trace.metered
    max_a, fuse_a = limits.max_a, limits.fuse_a
    over_max = fuse_s = run = longest = 0
    amp_over = 0.0
    kwh_per_as = VOLTAGE_V / 3.6e6
    n_phases = [sum(c.phases) for c in cars]
    for key in keys:
        # A car is plugged in unless the trace says otherwise (`car_plugged`); a demand of 0 is a full car.
        balancer.car_plugged(0.0, key, True)
    events = CarEvents(cars, limits.max_a, lag_s + balancer.config.settle_s)
    metered = [0.0, 0.0, 0.0]  # the meter's last word on each phase, for the power limits
    seen_bases: list[tuple[float, ...]] = []  # every second, for the pause oracle
    seen_demands: list[list[float]] = []
    seen_allocations: list[tuple[int, ...]] = []
    oracle_phase_amps: list[int] = []
    for t in range(trace.duration_s):
        now = float(t)
        plugged = [not trace.car_plugged or trace.car_plugged[i][t] for i in range(len(cars))]
        demands = [demand_at(trace, i, t, c) if plugged[i] else 0.0 for i, c in enumerate(cars)]
        draws = [min(m.draw(now), d) if d >= 1.0 else 0.0 for m, d in zip(models, demands)]
        totals = [trace.base[p][t] + sum(d for d, c in zip(draws, cars) if c.phases[p]) for p in range(3)]
        for p in range(3):
            if met[p][t]:
                balancer.meter(now, p, totals[p])
                metered[p] = totals[p]
        if power is not None:
            power.step_shared(t, balancer, metered, totals, [trace.base[p][t] for p in range(3)], draws)
        if t % CHARGER_POLL_S == 0:
            for key, d, c, p in zip(keys, draws, cars, plugged):
                balancer.charger(now, key, tuple(d if on else 0.0 for on in c.phases), c.phases)
                if trace.car_plugged:
                    balancer.car_plugged(now, key, p)  # the connector's status, with its report
        decision = balancer.decide(now)
        for i, part in enumerate(decision.connectors):
            if part.command is not None:
                models[i].write(now, part.command)
                balancer.commanded(now, keys[i], part.command)
                results[i].commands += 1
                if part.command < IEC_MIN_CURRENT_A <= last_written[i]:
                    results[i].pauses += 1
                last_written[i] = part.command
        base = tuple(trace.base[p][t] for p in range(3))
        oracle = oracle_shared(base, demands, cars, limits, rooms)
        seen_bases.append(base)
        seen_demands.append(demands)
        seen_allocations.append(oracle)
        oracle_phase_amps.append(sum(a * n for a, n in zip(oracle, n_phases)))
        if any(sum(d for i, (d, c) in enumerate(zip(draws, cars)) if str(i) in r.keys and c.phases[p]) > r.max_a
               for r in rooms for p in range(3)):
            over_circuit += 1
        if trace.car_plugged or trace.car_demand:
            held = oracle if all(plugged) else oracle_shared(
                events.held([trace.base[p][t] for p in range(3)], plugged), demands, cars, limits, rooms)
            events.step(now, plugged, demands, draws, totals, held)
        for i in range(len(cars)):
            results[i].energy_kwh += draws[i] * n_phases[i] * kwh_per_as
            results[i].oracle_kwh += oracle[i] * n_phases[i] * kwh_per_as
            if demands[i] < IEC_MIN_CURRENT_A:
                results[i].wants_throughout = False
        worst = max(totals)
        if worst > max_a:
            over_max += 1
            amp_over += worst - max_a
        if worst > fuse_a:
            fuse_s += 1
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    paced = shared_pause_oracle(seen_bases, seen_demands, seen_allocations, cars, limits, rooms)
    for r, amps, phase_count in zip(results, paced, n_phases):
        r.pause_oracle_kwh = sum(amps) * phase_count * kwh_per_as
    return SharedResult(
        energy_kwh=sum(r.energy_kwh for r in results), oracle_kwh=sum(r.oracle_kwh for r in results),
        seconds_over_max_a=over_max, amp_seconds_over_max_a=amp_over, seconds_over_fuse=fuse_s,
        longest_over_fuse_s=longest, cars=results, phase_counts=tuple(n_phases),
        seconds_over_circuit=over_circuit if rooms else None,
        pause_oracle_kwh=sum(r.pause_oracle_kwh for r in results), events=events.figures(),
        oracle_phase_amps=oracle_phase_amps)


def shared_figures(trace: HouseTrace, cars: Sequence[CarSpec], result: SharedResult) -> dict[str, Any]:
    """One strategy's figures on a trace with cars given (`--car`, or the trace's own)."""
    hours = trace.duration_s / 3600
    fairness = result.fairness
    return {
            "energy_kwh": round(result.energy_kwh, 4),
            "energy_ratio": ratio_or_none(result.energy_kwh, result.oracle_kwh),
            "energy_ratio_pause_oracle": ratio_or_none(result.energy_kwh, result.pause_oracle_kwh),
            "seconds_over_max_a": result.seconds_over_max_a,
            "amp_seconds_over_max_a": round(result.amp_seconds_over_max_a, 1),
            "seconds_over_fuse": result.seconds_over_fuse,
            "longest_over_fuse_s": result.longest_over_fuse_s,
            "commands": sum(c.commands for c in result.cars),
            "pauses": sum(c.pauses for c in result.cars),
            "fairness": None if fairness is None else round(fairness, 4),
            "max_writes_per_h_per_connector": round(max(c.commands for c in result.cars) / hours, 2),
            **({} if result.seconds_over_circuit is None else {"seconds_over_circuit": result.seconds_over_circuit}),
            **result.events,
            "cars": [{
                "car": car_key(i), "phases": spec.label, "energy_kwh": round(c.energy_kwh, 4),
                "oracle_kwh": round(c.oracle_kwh, 4), "pause_oracle_kwh": round(c.pause_oracle_kwh, 4),
                "commands": c.commands, "pauses": c.pauses,
                "wants_throughout": c.wants_throughout,
            } for i, (spec, c) in enumerate(zip(cars, result.cars))],
    }


def shared_target_misses(entry: dict, lag_s: float) -> list[str]:
    """The targets for several cars that one trace entry misses."""
    s = entry["strategies"].get("adaptive")
    if s is None:
        return []
    if "capacity" in s or "power_cars" in s:
        # Power limits hold the cars back on purpose: the fuse oracle's energy is no target.
        from bridge.sim.power_bench import shared_power_target_misses

        misses = _fuse_and_energy_misses(s, lag_s, 0.0) + shared_power_target_misses(s)
    else:
        misses = _fuse_and_energy_misses(s, lag_s, TARGET_SHARED_ENERGY_RATIO)
    if s["fairness"] is not None and s["fairness"] < TARGET_FAIRNESS:
        misses.append(f"fairness {s['fairness']:.3f} < {TARGET_FAIRNESS}")
    if s["max_writes_per_h_per_connector"] > TARGET_WRITES_PER_HOUR:
        misses.append(f"{s['max_writes_per_h_per_connector']:.1f} writes/h on a connector > "
                      f"{TARGET_WRITES_PER_HOUR:g}")
    if s.get("wake_over_max_a", 0.0) > IEC_MIN_CURRENT_A:
        misses.append(f"{s['wake_over_max_a']:.1f} A over MaxA when a car woke up > {IEC_MIN_CURRENT_A} A")
    if s.get("unplug_short_s", 0) > s.get("event_window_s", math.inf):
        misses.append(f"a car short of its share {s['unplug_short_s']} s after an unplug > "
                      f"{s['event_window_s']:g} s (one lag and BALANCER_SETTLE_S)")
    return misses


def shared_balancer(cfg: Any, strategy: str, cars: Sequence[CarSpec], circuits: Sequence[Any] = ()) -> Any:
    """The service's balancer of several connectors, one per car, on their circuits."""
    from bridge.balancer.sharing import ConnectorSpec, SharedBalancer

    return SharedBalancer(cfg, [ConnectorSpec(car_key(i), circuit=c.circuit) for i, c in enumerate(cars)],
                          strategy=strategy, circuits=circuits)


BalancerFactory = Callable[[Any, str], BalancerLike]


def run_bench(
    traces: Sequence[HouseTrace],
    cfg: Any,
    strategies: Sequence[str],
    balancer_factory: BalancerFactory,
    lag_s: float = 10.0,
    record: bool = False,
    cars: Sequence[CarSpec] | None = None,
    shared_factory: Callable[[Any, str, Sequence[CarSpec]], Any] | None = None,
    power_for: Callable[[HouseTrace], tuple[HouseTrace, Any]] | None = None,
    shared_power_for: Callable[[HouseTrace, Sequence[CarSpec], Sequence[str]], Any] | None = None,
    circuits: Sequence[Any] = (),
) -> tuple[dict, dict[str, dict[str, StrategyResult]]]:
    """Score every strategy on every trace: the JSON report and the raw results (with series when `record`).

    A trace with cars (`cars`, or the trace's own, or its demand columns) is replayed through a
    balancer of one connector per car (`shared_factory`, default `shared_balancer`); its entry has
    `cars` and `fairness` too. Others are replayed as before, one car, with `power_for`
    (bridge.sim.power_bench.power_run_factory) giving each trace its car and power limits;
    `shared_power_for` (bridge.sim.power_bench.shared_power_run_factory) gives several cars theirs;
    `circuits` the feeders the cars hang on, kept by the balancer and the oracle alike."""
    limits = limits_of(cfg)
    report: dict[str, Any] = {
        "traces": [],
        # Traces where the house alone exceeds MaxA: no balancer can meet a target there.
        "traces_house_over_max_a": [],
        "settings": {"charger_lag_s": lag_s, **_plain(cfg)},
    }
    raw: dict[str, dict[str, StrategyResult]] = {}
    for trace in traces:
        power_oracles: dict[str, float] = {}
        if power_for is not None:
            trace, power = power_for(trace)
            if power is not None:
                power_oracles = power.oracles(
                    lambda row, trace=trace: oracle_current(row, trace.car_phases, limits, trace.car_max_a),
                    limits.min_pause_s)
        allowance = oracle_allowance(trace, limits)
        kwh_per_as = sum(trace.car_phases) * VOLTAGE_V / 3.6e6
        oracle_kwh = sum(allowance) * kwh_per_as
        pause_oracle_kwh = pause_oracle(allowance, limits.min_pause_s).amp_seconds * kwh_per_as
        entry: dict[str, Any] = {
            "name": trace.name,
            "duration_s": trace.duration_s,
            "oracle": {"energy_kwh": round(oracle_kwh, 4), "pause_oracle_energy_kwh": round(pause_oracle_kwh, 4),
                       **power_oracles},
            "strategies": {},
        }
        raw[trace.name] = {}
        chosen = cars_of(trace, cars)
        if chosen is not None:
            entry = _shared_trace_entry(trace, chosen, cfg, strategies, shared_factory or shared_balancer,
                                        limits, lag_s, shared_power_for, circuits)
        else:
            for strategy in strategies:
                power = power_for(trace)[1] if power_for is not None else None
                result = replay(trace, balancer_factory(cfg, strategy), limits, lag_s=lag_s, record=record, power=power)
                raw[trace.name][strategy] = result
                entry["strategies"][strategy] = {
                    "energy_kwh": round(result.energy_kwh, 4),
                    "energy_ratio": ratio_or_none(result.energy_kwh, oracle_kwh),
                    "energy_ratio_pause_oracle": ratio_or_none(result.energy_kwh, pause_oracle_kwh),
                    "seconds_over_max_a": result.seconds_over_max_a,
                    "amp_seconds_over_max_a": round(result.amp_seconds_over_max_a, 1),
                    "seconds_over_fuse": result.seconds_over_fuse,
                    "longest_over_fuse_s": result.longest_over_fuse_s,
                    "commands": result.commands,
                    "pauses": result.pauses,
                    **(power.score(result.energy_kwh, power_oracles) if power is not None else {}),
                }
        house_over = trace.seconds_house_over(limits.max_a)
        if house_over:
            entry["house_seconds_over_max_a"] = house_over
            report["traces_house_over_max_a"].append(entry)
        else:
            report["traces"].append(entry)
    return report, raw


# ---- generated houses -----------------------------------------------------------

MAX_PROCESSES = 2


def _replay_house(job: tuple) -> tuple[dict, dict[str, Any]]:
    seed, index, cfg, strategies, balancer_factory, lag_s, cars, power, sky = job
    house = generate_house(seed, index, sky)
    power_for = shared_power_for = None
    if power is not None:
        # The power limits as the bench's scenarios have them (bridge.sim.power_bench), built here
        # from plain settings so that a job pickles.
        from bridge.sim.power_bench import power_run_factory, shared_power_run_factory

        environ, start, car, min_a, max_a = power
        power_for = power_run_factory(environ, start, car, lag_s, min_a, max_a)
        shared_power_for = shared_power_run_factory(environ, start, lag_s, min_a, max_a)
    report, _raw = run_bench([house.trace], cfg, strategies, balancer_factory, lag_s=lag_s, cars=cars,
                             power_for=power_for, shared_power_for=shared_power_for)
    entries = report["traces"] or report["traces_house_over_max_a"]
    entry = entries[0]
    entry["description"] = house.trace.description
    entry["appliances"] = [use.as_json() for use in house.uses]
    return report, entry


def _picklable(*things: object) -> bool:
    try:
        pickle.dumps(things)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def run_generated(n: int, seed: int, cfg: Any, strategies: Sequence[str], balancer_factory: BalancerFactory,
                  lag_s: float = 10.0, processes: int = MAX_PROCESSES, cars: tuple | None = None,
                  power: tuple | None = None, sky: str = DEFAULT_SKY) -> dict:
    """Replay `n` generated houses of `seed` (their roofs under `sky`; MIXED_SKY: each house's own); the
    report of `run_bench` with each house's appliances.
    With `cars` (two or more `CarSpec`) those cars share each house's fuse instead of its own car.
    With `power` ((CAPACITY_*/PV_*/TZ settings, --start, --car text or None, min A, max A)) each house
    is replayed with the power limits and scored against the capacity and surplus oracles.

    Each house is generated and replayed on its own, from its seed and number only, so the report is
    the same with one process or two; results are collected in house order.
    """
    jobs = [(seed, index, cfg, tuple(strategies), balancer_factory, lag_s, cars, power, sky) for index in range(n)]
    processes = max(1, min(processes, MAX_PROCESSES, n))
    if processes > 1 and _picklable(cfg, balancer_factory):
        # fork: `python -m bridge` has no main guard for a spawned child to import safely.
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            results = pool.map(_replay_house, jobs, chunksize=1)
    else:
        results = [_replay_house(job) for job in jobs]
    report: dict[str, Any] = {"generated": {"houses": n, "seed": seed}, "traces": [], "traces_house_over_max_a": []}
    for house_report, entry in results:
        report.setdefault("settings", house_report["settings"])
        key = "traces" if house_report["traces"] else "traces_house_over_max_a"
        report[key].append(entry)
    return report


def _shared_trace_entry(trace: HouseTrace, cars: Sequence[CarSpec], cfg: Any, strategies: Sequence[str],
                        factory: Callable[[Any, str, Sequence[CarSpec]], Any], limits: Limits,
                        lag_s: float, power_for: Callable[..., Any] | None = None,
                        circuits: Sequence[Any] = ()) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": trace.name, "duration_s": trace.duration_s,
                             "cars": [spec.label for spec in cars], "strategies": {}}
    if len(cars) > 1 or circuits:
        # Only `adaptive` shares a fuse or knows circuits (`homey` is the one-car original); run_cli
        # refuses others given by name.
        strategies = [s for s in strategies if s == "adaptive"]
    for strategy in strategies:
        keys = [car_key(i) for i in range(len(cars))]
        power = power_for(trace, cars, keys) if power_for is not None and len(cars) > 1 else None
        balancer = factory(cfg, strategy, cars, circuits) if circuits else factory(cfg, strategy, cars)
        result = replay_shared(trace, cars, balancer, limits, lag_s=lag_s, power=power, circuits=circuits)
        entry["oracle"] = {"energy_kwh": round(result.oracle_kwh, 4),
                           "pause_oracle_energy_kwh": round(result.pause_oracle_kwh, 4)}
        entry["strategies"][strategy] = shared_figures(trace, cars, result)
        if power is not None:
            entry["strategies"][strategy].update(power.score_shared(limits.max_a, result.oracle_phase_amps))
    return entry


def _plain(cfg: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(cfg):
        return {k: v for k, v in dataclasses.asdict(cfg).items() if isinstance(v, (int, float, str, bool, type(None)))}
    return {}


def _fuse_and_energy_misses(s: dict, lag_s: float, energy_target: float) -> list[str]:
    misses = []
    if s["longest_over_fuse_s"] > lag_s + TARGET_FUSE_MARGIN_S:
        misses.append(f"longest over fuse {s['longest_over_fuse_s']} s > lag + {TARGET_FUSE_MARGIN_S:g} s")
    if s["energy_ratio"] is not None and s["energy_ratio"] < energy_target:
        misses.append(f"energy ratio {s['energy_ratio']:.3f} < {energy_target}")
    return misses


def target_misses(entry: dict, lag_s: float, strategy: str = "adaptive") -> list[str]:
    """The per-trace targets that `strategy` misses on one trace entry of the report."""
    s = entry["strategies"].get(strategy)
    if s is None:
        return []
    if "capacity" in s or ("cars" in s and "cars" not in entry):
        # Power limits hold the car back on purpose: their own oracles and targets apply.
        from bridge.sim.power_bench import power_target_misses

        misses = _fuse_and_energy_misses(s, lag_s, 0.0)
        return misses + power_target_misses(entry, strategy)
    misses = _fuse_and_energy_misses(s, lag_s, TARGET_ENERGY_RATIO)
    per_hour = s["commands"] / (entry["duration_s"] / 3600)
    if per_hour > TARGET_WRITES_PER_HOUR:
        misses.append(f"{per_hour:.1f} writes/h > {TARGET_WRITES_PER_HOUR:g}")
    return misses


# ---- output ---------------------------------------------------------------------

_COLUMNS = ("strategy", "kWh", "ratio", "ratio/p.o", "s>MaxA", "A·s>MaxA", "s>fuse", "longest", "writes", "writes/h", "pauses")


def format_table(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"charger lag {s['charger_lag_s']:g} s; MaxA {s.get('max_a', '?')} A, fuse {s.get('fuse_a', '?')} A, "
        f"default {s.get('default_current', '?')} A (BALANCER_* from the environment)",
        "longest = longest run over the fuse (s); writes = commands sent to the cloud; ratio/p.o = energy "
        "against the oracle that keeps the minimum pause",
    ]
    for title, entries in (("", report["traces"]),
                           ("the house alone exceeds MaxA here; no balancer can meet the targets",
                            report["traces_house_over_max_a"])):
        if not entries:
            continue
        lines.append("")
        if title:
            lines.append(f"-- {title} --")
        lines.append(f"{'trace':<18} {'hours':>5} " + " ".join(f"{c:>9}" for c in _COLUMNS))
        for entry in entries:
            hours = entry["duration_s"] / 3600
            paced = entry["oracle"].get("pause_oracle_energy_kwh")
            lines.append(f"{entry['name']:<18} {hours:>5.1f} {'oracle':>9} {entry['oracle']['energy_kwh']:>9.2f}"
                         + ("" if paced is None else f"  (keeping the minimum pause {paced:.2f})"))
            for name, m in entry["strategies"].items():
                ratio = "-" if m["energy_ratio"] is None else f"{m['energy_ratio']:.3f}"
                paced_ratio = m.get("energy_ratio_pause_oracle")
                paced_ratio = "-" if paced_ratio is None else f"{paced_ratio:.3f}"
                cells = (name, f"{m['energy_kwh']:.2f}", ratio, paced_ratio, m["seconds_over_max_a"],
                         f"{m['amp_seconds_over_max_a']:.0f}", m["seconds_over_fuse"], m["longest_over_fuse_s"],
                         m["commands"], f"{m['commands'] / hours:.1f}", m["pauses"])
                lines.append(f"{'':<18} {'':>5} " + " ".join(f"{c!s:>9}" for c in cells))
            if "cars" in entry:
                lines.extend(_car_lines(entry, s["charger_lag_s"]))
                continue
            for name, m in entry["strategies"].items():
                lines.extend(_power_lines(name, m))
            if "house_seconds_over_max_a" in entry:
                lines.append(f"{'':<24} house alone over MaxA for {entry['house_seconds_over_max_a']} s")
            elif "adaptive" in entry["strategies"]:
                misses = target_misses(entry, s["charger_lag_s"])
                lines.append(f"{'':<24} adaptive targets: " + ("met" if not misses else "MISSED: " + "; ".join(misses)))
    return "\n".join(lines)


def _car_lines(entry: dict, lag_s: float) -> list[str]:
    """Per car of a trace with cars: its energy, writes and pauses; the fairness and the targets."""
    lines = []
    for name, m in entry["strategies"].items():
        fairness = "-" if m["fairness"] is None else f"{m['fairness']:.3f}"
        lines.append(f"{'':<24} {name}: cars {', '.join(entry['cars'])}; fairness {fairness}; "
                     f"most writes/h on a connector {m['max_writes_per_h_per_connector']:.1f}")
        for car in m["cars"]:
            lines.append(f"{'':<28} car {car['car']} {car['phases']:<11} {car['energy_kwh']:7.2f} kWh "
                         f"(oracle {car['oracle_kwh']:.2f}), {car['commands']} writes, {car['pauses']} pauses")
        lines.extend(_power_lines(name, {"capacity": m.get("capacity"), "cars": m.get("power_cars", [])}))
        surplus = m.get("surplus")
        if surplus is not None:
            ratio = "-" if surplus["energy_ratio"] is None else f"{surplus['energy_ratio']:.3f}"
            lines.append(f"{'':<24} {name} the pv cars together: energy/surplus oracle {ratio} "
                         f"(oracle {surplus['oracle_kwh']:.2f} kWh)")
    if "adaptive" in entry["strategies"]:
        misses = shared_target_misses(entry, lag_s)
        lines.append(f"{'':<24} targets for several cars: " + ("met" if not misses else "MISSED: " + "; ".join(misses)))
    return lines


def _power_lines(name: str, m: dict) -> list[str]:
    lines = []
    c = m.get("capacity")
    if c is not None:
        ratio = "-" if c["energy_ratio"] is None else f"{c['energy_ratio']:.3f}"
        paced = c.get("energy_ratio_pause_oracle")
        paced_text = "" if paced is None else f" (keeping the minimum current and pause {paced:.3f})"
        lines.append(f"{'':<24} {name} capacity: limit {c['limit_kw']:g} kW, highest period {c['max_period_kw']:.3f} kW, "
                     f"billed {c['billed_kw']:.3f} kW, {c['periods_over']} periods over; energy/capacity oracle {ratio}"
                     f"{paced_text}")
    for car in m.get("cars", []):
        share = "-" if car["solar_share"] is None else f"{car['solar_share']:.3f}"
        ratio = "-" if car["energy_ratio"] is None else f"{car['energy_ratio']:.3f}"
        lines.append(f"{'':<24} {name} car {car['car']}: {car['energy_kwh']:.2f} kWh, solar share {share}, "
                     f"{car['grid_kwh']:.2f} kWh from the grid; energy/surplus oracle {ratio}")
    return lines


def plot(path: str, traces: Sequence[HouseTrace], raw: dict[str, dict[str, StrategyResult]], limits: Limits) -> None:
    """One panel per trace and strategy: phase currents, MaxA, fuse, ChargeAt and the car's draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(trace, name, result) for trace in traces for name, result in raw[trace.name].items()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(14, 3.2 * len(panels)), squeeze=False)
    for ax, (trace, name, result) in zip(axes[:, 0], panels):
        series = result.series
        assert series is not None, "plot needs a replay with record=True"
        minutes = [t / 60 for t in range(trace.duration_s)]
        for phase, colour in zip(range(3), ("tab:brown", "tab:gray", "tab:purple")):
            ax.plot(minutes, series.phase_totals[phase], lw=0.6, color=colour, label=f"L{phase + 1} (house + car)")
        ax.axhline(limits.max_a, color="tab:red", ls="--", lw=1, label="MaxA")
        ax.axhline(limits.fuse_a, color="tab:red", ls=":", lw=1, label="fuse")
        ax.step(minutes, series.charge_at, where="post", color="black", lw=1, label="ChargeAt")
        ax.fill_between(minutes, series.car_draw, step="post", color="tab:green", alpha=0.25, label="car draw")
        ax.set_title(f"{trace.name}: {name}", loc="left", fontsize=10)
        ax.set_ylabel("A")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("minutes")
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---- command line ---------------------------------------------------------------

def _power_scenario_names() -> list[str]:
    from bridge.sim.power_bench import power_scenario_names

    return power_scenario_names()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chargeamps-bridge bench",
        description="Replay house load traces through the balancer and score each strategy against an "
                    "oracle with no lag. Balancer settings come from the BALANCER_* environment variables; "
                    "the capacity tariff and charging from surplus from CAPACITY_*, PV_* and TZ, as for the "
                    "service.",
    )
    p.add_argument("--trace", action="append", default=[], metavar="FILE",
                   help="a t,l1,l2,l3 CSV of the house load without the car (repeatable)")
    p.add_argument("--scenario", action="append", default=[], metavar="NAME",
                   help=f"a built-in scenario (repeatable): {', '.join(scenario_names())}; "
                        "default: all of them, unless --trace is given; with their own capacity tariff "
                        f"or charge mode: {', '.join(_power_scenario_names())}")
    p.add_argument("--start", metavar="YYYY-MM-DDTHH:MM",
                   help="the trace's wall-clock start in the local time of TZ, so that capacity periods, "
                        "CAPACITY_HOURS and CAPACITY_MONTHS apply (default: the scenario's, else 2027-01-12T00:00)")
    p.add_argument("--strategy", default=None,
                   help=f"comma-separated strategies (default: {','.join(DEFAULT_STRATEGIES)}; with several cars "
                        "adaptive, the only one that shares a fuse)")
    p.add_argument("--car", action="append", default=[], metavar="PHASES[:MAX_A][:MODE]",
                   help="put a car on every trace (repeatable, one per car): the house phases it charges on, "
                        "the most it draws and its charge mode (fast, pv, minpv, off), e.g. "
                        "L1L2L3, L2, L1L2L3:10, L1L2L3:16:pv; a trace's car1, car2, ... columns give each car's "
                        "demand. Default: the trace's car, fast (a two-car scenario: its own cars)")
    p.add_argument("--circuit", action="append", default=[], metavar="NAME:MAX_A[:PARENT]",
                   help="a circuit under the main fuse (repeatable), as CIRCUITS gives it, e.g. garage:16; a car "
                        "joins one with @NAME (--car L1L2L3:16@garage). A circuit's load is its cars'")
    p.add_argument("--transport", choices=tuple(TRANSPORT_LAG_S), default="cloud",
                   help="the way to the charger, as CHARGER_TRANSPORT: its lag and the balancer's defaults for it "
                        "(default: %(default)s)")
    p.add_argument("--charger-lag-s", type=float, default=None, metavar="S",
                   help="seconds from a write to the car drawing the new value (default: 10 with the cloud, "
                        "2 with ocpp)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="draw currents, MaxA, ChargeAt and the car's draw "
                                                      "(with --generate: each metric's distribution over the houses)")
    p.add_argument("--generate", type=int, metavar="N",
                   help="replay N generated houses instead of the built-in scenarios (see --seed)")
    p.add_argument("--seed", type=int, metavar="S", help="the generated houses' seed (default 1); the same "
                                                         "seed gives the same houses")
    p.add_argument("--sky", choices=SKY_CHOICES, default=None,
                   help=f"with --generate: every roof under this sky, or {MIXED_SKY}: each house draws its own "
                        f"(default {DEFAULT_SKY}, the sky generated houses always had)")
    return p


def bench_main(argv: list[str]) -> int:
    """The `bench` command: 0 when it ran, 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        from bridge.balancer import BalancerConfig
    except ImportError as e:
        print(f"bench: the balancer is not available: {e}", file=sys.stderr)
        return 2

    return run_cli(args, BalancerConfig, real_balancer)


def real_balancer(cfg: Any, strategy: str) -> BalancerLike:
    """The service's balancer with one connector, seen as one car (a module-level function, so
    replays can run in a second process)."""
    from bridge.balancer.sharing import ConnectorSpec, ConnectorView, SharedBalancer

    return ConnectorView(SharedBalancer(cfg, [ConnectorSpec(car_key(0))], strategy=strategy), car_key(0))


def run_cli(args: argparse.Namespace, config_cls: type, balancer_factory: BalancerFactory,
            environ: Mapping[str, str] | None = None) -> int:
    transport = getattr(args, "transport", "cloud")
    if args.charger_lag_s is None:
        args.charger_lag_s = TRANSPORT_LAG_S[transport]
    explicit = args.strategy is not None
    strategies = [s.strip() for s in (args.strategy or ",".join(DEFAULT_STRATEGIES)).split(",") if s.strip()]
    if not strategies:
        print("bench: --strategy lists no strategy", file=sys.stderr)
        return 2
    try:
        cars = [parse_car(text) for text in getattr(args, "car", [])]
    except ValueError as e:
        print(f"bench: --car {e}", file=sys.stderr)
        return 2
    if len(cars) > MAX_CARS:
        print(f"bench: at most {MAX_CARS} cars (--car), got {len(cars)}", file=sys.stderr)
        return 2
    if len(cars) == 1 and args.generate is not None and cars[0].mode == "fast":
        print("bench: a generated house has its own car; give one --car in pv or minpv to charge it from "
              "the surplus, or two --car or more to put several cars on the generated houses instead",
              file=sys.stderr)
        return 2
    if args.charger_lag_s < 0:
        print("bench: --charger-lag-s cannot be negative", file=sys.stderr)
        return 2
    circuits = []
    if getattr(args, "circuit", []) or any(c.circuit != "main" for c in cars):
        from bridge.balancer.circuits import parse_circuits

        if args.generate is not None:
            print("bench: --circuit applies to the scenarios and traces, not to --generate", file=sys.stderr)
            return 2
        try:
            circuits = parse_circuits(",".join(args.circuit))
            circuit_limits(cars, circuits, float(balancer_config_from_env(config_cls, environ).max_a), car_key)
        except ValueError as e:
            print(f"bench: --circuit {e}", file=sys.stderr)
            return 2
    generate_error = _generate_arguments_error(args)
    if generate_error:
        print(f"bench: {generate_error}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("bench: --plot needs matplotlib: pip install chargeamps-bridge[plot]", file=sys.stderr)
            return 2
    try:
        cfg = balancer_config_from_env(config_cls, environ, transport)
        if args.generate is not None:
            for strategy in strategies:
                balancer_factory(cfg, strategy)
                if cars and explicit:
                    shared_balancer(cfg, strategy, cars)  # `homey` refuses several cars, saying why
            if len(cars) > 1:
                strategies = [s for s in strategies if s == "adaptive"]
            return _run_generated_cli(args, cfg, strategies, balancer_factory, cars,
                                      _generated_power(os.environ if environ is None else environ, args, cfg, cars))
        from bridge.sim.power_bench import POWER_SCENARIOS, power_run_factory, shared_power_run_factory

        traces = [load_trace(path) for path in args.trace]
        names = args.scenario or ([] if args.trace else scenario_names())
        traces += [POWER_SCENARIOS[name][0]() if name in POWER_SCENARIOS else scenario(name) for name in names]
        power_for = power_run_factory(os.environ if environ is None else environ, args.start,
                                      args.car[0] if len(args.car) == 1 else None, args.charger_lag_s,
                                      int(getattr(cfg, "min_current", IEC_MIN_CURRENT_A)),
                                      int(getattr(cfg, "current_cap", cfg.default_current)))
        shared_power_for = shared_power_run_factory(os.environ if environ is None else environ, args.start,
                                                    args.charger_lag_s,
                                                    int(getattr(cfg, "min_current", IEC_MIN_CURRENT_A)),
                                                    int(getattr(cfg, "current_cap", cfg.default_current)))
        for strategy in strategies:
            balancer_factory(cfg, strategy)  # an unknown strategy fails now, not after minutes of replay
        for trace in traces:
            chosen = cars_of(trace, cars)
            if len(cars) == 1 and cars_of(trace, None) is not None:
                raise BenchError(f"trace {trace.name} has {len(cars_of(trace, None) or ())} cars: "
                                 "give one --car per car")
            if chosen is not None and len(chosen) > MAX_CARS:
                raise BenchError(f"trace {trace.name}: at most {MAX_CARS} cars, it has {len(chosen)}")
            if chosen is not None and (len(chosen) > 1 or circuits) and explicit:
                for strategy in strategies:
                    # `homey` refuses several cars and circuits, saying why
                    shared_balancer(cfg, strategy, chosen, circuits if cars else ())
    except KeyError as e:  # unknown scenario; the message lists the built-in names
        print(f"bench: {e.args[0]}", file=sys.stderr)
        return 2
    except ValueError as e:  # BenchError, TraceError, and the balancer refusing a strategy
        print(f"bench: {e}", file=sys.stderr)
        return 2

    # One car: the one-connector bench, with its power limits; on a circuit, the balancer of the tree.
    shared_cars = cars if len(cars) > 1 or circuits else None
    if args.plot and any(cars_of(trace, shared_cars) is not None for trace in traces):
        print("bench: --plot draws one car; it cannot be combined with several cars (--car or a two-car scenario)",
              file=sys.stderr)
        return 2
    report, raw = run_bench(traces, cfg, strategies, balancer_factory, lag_s=args.charger_lag_s,
                            record=bool(args.plot), cars=shared_cars, power_for=power_for,
                            shared_power_for=shared_power_for, circuits=circuits)
    from bridge.sim.distribution import distribution, format_distribution

    everywhere = [s for s in strategies if all(s in e["strategies"] for e in report["traces"])]
    report["distribution"] = distribution(report["traces"], everywhere)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        print(format_distribution(report["distribution"], args.charger_lag_s, with_targets=False))
    if args.plot:
        plot(args.plot, traces, raw, limits_of(cfg))
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 0


def _generate_arguments_error(args: argparse.Namespace) -> str | None:
    if args.generate is None:
        return next((f"{flag} needs --generate N" for flag, value in (("--seed", args.seed), ("--sky", args.sky))
                     if value is not None), None)
    if args.trace or args.scenario:
        return "--generate replays generated houses; it cannot be combined with --trace or --scenario"
    if not 1 <= args.generate <= MAX_GENERATED_HOUSES:
        return f"--generate needs between 1 and {MAX_GENERATED_HOUSES} houses, got {args.generate}"
    if args.seed is not None and args.seed < 0:
        return f"--seed cannot be negative, got {args.seed}"
    return None


def _generated_power(environ: Any, args: argparse.Namespace, cfg: Any, cars: Sequence[CarSpec]) -> tuple | None:
    """The power limits for generated houses (run_generated's `power`), or None
    when neither CAPACITY_LIMIT_KW nor a pv/minpv car asks for them. Bad settings raise ValueError now."""
    from bridge.sim.power_bench import power_settings

    settings = {k: v for k, v in environ.items() if k.upper().startswith(("CAPACITY_", "PV_", "TZ", "P1_VOLTAGE"))}
    one_car = args.car[0] if len(cars) == 1 else None
    if power_settings(settings).capacity is None and one_car is None and not any(c.mode != "fast" for c in cars):
        return None
    return (settings, args.start, one_car, int(getattr(cfg, "min_current", IEC_MIN_CURRENT_A)),
            int(getattr(cfg, "current_cap", cfg.default_current)))


def _run_generated_cli(args: argparse.Namespace, cfg: Any, strategies: Sequence[str],
                       balancer_factory: BalancerFactory, cars: Sequence[CarSpec] = (),
                       power: tuple | None = None) -> int:
    from bridge.sim.distribution import distribution, format_distribution, plot_distribution

    seed = 1 if args.seed is None else args.seed
    shared = tuple(cars) if len(cars) > 1 else None  # one car: each house's car, in its charge mode
    report = run_generated(args.generate, seed, cfg, strategies, balancer_factory, lag_s=args.charger_lag_s,
                           cars=shared, power=power, sky=args.sky or DEFAULT_SKY)
    report["distribution"] = distribution(report["traces"], strategies)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        with_cars = (f", cars {', '.join(c.label for c in cars)} instead of each house's own" if shared
                     else f", each house's car as {cars[0].label}" if cars else "")
        print(f"{args.generate} generated houses, seed {seed}{with_cars}")
        print(format_table(report))
        # The distribution's targets are the one-car ones; with several cars writes/h is the most on a connector.
        print(format_distribution(report["distribution"], args.charger_lag_s, with_targets=not shared))
    if args.plot:
        plot_distribution(args.plot, report, args.charger_lag_s)
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 0
