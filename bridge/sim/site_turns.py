"""A site of many equal cars on one fuse, more than fit at once: how their turns go.

The bench's several-car replay scores against an oracle that tries every set of cars (2^cars per
second), so it stops at a handful of cars; this replay drives the same `SharedBalancer` and charger
model over a site of any size with a steady house load and scores turns only: when each car first
charges, the longest any car waits, the site's total draw at changeovers, energy and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.balancer.model import BalancerConfig
from bridge.balancer.sharing import SharedBalancer
from bridge.sim.bench import CHARGER_POLL_S, car_key, shared_balancer
from bridge.sim.house import CarSpec
from bridge.sim.charger import ChargerModel

VOLTAGE_V = 230.0


@dataclass
class SiteTurns:
    duration_s: int
    first_charge_s: list[float | None]  # when each car first drew after the start's cut (60 s), None: never
    longest_wait_s: float  # the longest any car drew nothing after the first minute
    energy_kwh: list[float]
    writes: list[int]
    zero_after_start_s: int  # seconds after the first car charged with no car drawing
    totals: list[float] = field(default_factory=list)  # the cars' draw per second, all phases' worst
    written: list[tuple[float, int, int]] = field(default_factory=list)  # (when, car, amps)

    @property
    def fairness(self) -> float:
        return min(self.energy_kwh) / max(self.energy_kwh) if max(self.energy_kwh) > 0 else 0.0

    @property
    def max_writes_per_h(self) -> float:
        return max(self.writes) / (self.duration_s / 3600)


def site_config(rotate_s: float, **overrides: float) -> BalancerConfig:
    """The co-op's garage: a 3 x 100 A fuse, 96 A for the balancer."""
    return BalancerConfig(max_a=96.0, fuse_a=100.0, rotate_s=rotate_s, **overrides)  # type: ignore[arg-type]


def site_balancer(cfg: BalancerConfig, cars: int, wall_s: float = 0.0) -> SharedBalancer:
    """`cars` three-phase connectors; turns aligned to a wall clock reading `wall_s` at 0."""
    balancer = shared_balancer(cfg, "adaptive", [CarSpec() for _ in range(cars)])
    balancer.align_turns(0.0, wall_s)
    return balancer


def replay_site(balancer: SharedBalancer, cars: int, duration_s: int, base_a: float = 40.0,
                car_max_a: float = 16.0, lag_s: float = 5.0) -> SiteTurns:
    """Every car plugged in at 0 wanting `car_max_a` throughout, each charger following a setting
    `lag_s` late, the meter once a second, the chargers' reports every CHARGER_POLL_S."""
    models = [ChargerModel(lag_s=lag_s, car_max_a=car_max_a, initial_a=16) for _ in range(cars)]
    keys = [car_key(i) for i in range(cars)]
    first: list[float | None] = [None] * cars
    idle_since = [0.0] * cars
    longest = 0.0
    energy = [0.0] * cars
    writes = [0] * cars
    totals: list[float] = []
    written: list[tuple[float, int, int]] = []
    zero = 0
    for key in keys:
        balancer.car_plugged(0.0, key, True)
    for t in range(duration_s):
        now = float(t)
        draws = [m.draw(now) for m in models]
        total = sum(draws)
        totals.append(total)
        for p in range(3):
            balancer.meter(now, p, base_a + total)
        if t % CHARGER_POLL_S == 0:
            for key, d in zip(keys, draws):
                balancer.charger(now, key, (d, d, d), (True, True, True))
        decision = balancer.decide(now)
        for i, part in enumerate(decision.connectors):
            if part.command is not None:
                models[i].write(now, part.command)
                balancer.commanded(now, keys[i], part.command)
                writes[i] += 1
                written.append((now, i, part.command))
        for i, d in enumerate(draws):
            energy[i] += d * 3 * VOLTAGE_V / 3.6e6
            if d > 0:
                if first[i] is None and t >= 60:
                    first[i] = now
                idle_since[i] = now
            elif t >= 60:
                longest = max(longest, now - idle_since[i])
        if total == 0 and any(f is not None for f in first):
            zero += 1
    return SiteTurns(duration_s, first, longest, energy, writes, zero, totals, written)
