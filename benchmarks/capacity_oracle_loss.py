"""Where the capacity guard loses energy against the capacity oracle that keeps the minimum current
and the minimum pause.

    CAPACITY_LIMIT_KW=5 [CAPACITY_PERIOD_MIN=15 TZ=Europe/Brussels] \\
        python benchmarks/capacity_oracle_loss.py [--generate N] [--seed S]

Replays each generated house with the capacity guard (default BALANCER_* settings, 10 s lag, the
car the house has) beside that oracle's schedule, and files each counted period's shortfall (the
oracle's car energy less the car's) under what the guard said in it: the cars' allowance below the
car's minimum for most of the period (the car paused though the period had room for a run at the
minimum), or at least the minimum (charging below the oracle: the dead band, the raise hold, the
lag). Periods the tariff does not count, and the period the trace cuts short at its end (the
oracle, knowing the trace ends, spends a whole period's budget in its part; the bench's ratios
leave it out), are filed apart. Prints the spread of the ratios over the periods the trace holds
whole, and the totals.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.balancer import BalancerConfig  # noqa: E402
from bridge.balancer.capacity import period_start  # noqa: E402
from bridge.sim.bench import limits_of, oracle_current, real_balancer, replay  # noqa: E402
from bridge.sim.distribution import percentile  # noqa: E402
from bridge.sim.generate import generate_house  # noqa: E402
from bridge.sim.pause_oracle import CapacityPeriod, capacity_pause_oracle  # noqa: E402
from bridge.sim.power_bench import power_run_factory  # noqa: E402

LAG_S = 10.0


def house_loss(job: tuple[int, int]) -> tuple[str, float, float, float, Counter, int]:
    seed, index = job
    cfg = BalancerConfig()
    limits = limits_of(cfg)
    make = power_run_factory(dict(os.environ), None, None, LAG_S, cfg.min_current, cfg.current_cap)
    trace, power = make(generate_house(seed, index).trace)
    capacity = power.settings.capacity
    v, n = power.settings.voltage, power.phases
    rows = list(zip(*trace.base))
    allowance = [oracle_current(row, trace.car_phases, limits, trace.car_max_a) for row in rows]
    house_w = [sum(row) * v for row in rows]
    by_period: dict = {}
    for t in range(len(rows)):
        by_period.setdefault(period_start(capacity, power.local(t)), []).append(t)
    if any(capacity.counts(k) and sum(max(0.0, house_w[t]) for t in s) > capacity.limit_kw * 1000 * capacity.period_s
           for k, s in by_period.items()):
        return trace.name, 0.0, 0.0, 0.0, Counter(), 0  # the house alone over the limit: not scored
    periods = [CapacityPeriod(s, capacity.limit_kw * 1000 * capacity.period_s if capacity.counts(k) else None)
               for k, s in by_period.items()]
    schedule = capacity_pause_oracle(allowance, house_w, periods, n * v, cfg.min_current, limits.min_pause_s)
    below = [False] * len(rows)
    step = power.step

    def recording(t, metered, totals, house, car_a):
        cap = step(t, metered, totals, house, car_a)
        below[t] = power.cap._cap is not None and power.cap._cap < cfg.min_current
        return cap

    power.step = recording
    result = replay(trace, real_balancer(cfg, "adaptive"), limits, lag_s=LAG_S, record=True, power=power)
    draw = result.series.car_draw
    losses: Counter = Counter()
    got = oracle = 0  # amp-seconds of the periods the trace holds whole
    for key, seconds in by_period.items():
        short = sum(schedule.amps[t] - draw[t] for t in seconds)
        if len(seconds) < capacity.period_s:
            what = "period cut short by the trace"
        else:
            got += sum(draw[t] for t in seconds)
            oracle += sum(schedule.amps[t] for t in seconds)
            if not capacity.counts(key):
                what = "period not counted"
            elif sum(below[t] for t in seconds) > len(seconds) / 2:
                what = "allowance below the minimum most of the period"
            else:
                what = "allowance at least the minimum most of the period"
        losses[what + (" (short)" if short > 0 else " (above the oracle)")] += short
    return trace.name, got / oracle if oracle else 0.0, float(oracle), float(got), losses, schedule.amp_seconds


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generate", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        rows = [r for r in pool.map(house_loss, [(args.seed, i) for i in range(args.generate)], chunksize=1)
                if r[2] > 0]
    ratios = sorted(r[1] for r in rows)
    print(f"guard / capacity pause oracle over whole periods: {len(rows)} houses, p10 {percentile(ratios, 0.1):.4f} "
          f"median {percentile(ratios, 0.5):.4f} min {ratios[0]:.4f}")
    total: Counter = Counter()
    for r in rows:
        total.update(r[4])
    oracle = sum(r[5] for r in rows)
    for what, amp_s in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"{what:<66} {amp_s / 1000:8.1f} kA·s {100 * amp_s / oracle:6.1f} % of the oracle")
    print("    " + ", ".join(f"{r[0]} {r[1]:.3f}" for r in sorted(rows, key=lambda r: r[1])[:8]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
