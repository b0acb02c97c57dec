"""Where the one-car balancer loses energy against the oracle that keeps the minimum pause.

    python benchmarks/pause_oracle_loss.py [--generate N] [--seed S] [--worst K] [--transport cloud|ocpp]

Replays each generated house (settings from BALANCER_* over the transport's defaults, with its lag:
10 s for the cloud, 2 s for ocpp) beside the pause oracle's
schedule and files every second's shortfall (the oracle's amps less what the car draws, per phase)
under the controller's state that second, from its decision: the charger still following a write
that already gives the oracle's amps (the lag), the controller paused (its own minimum pause, the
pause it decided, a resume waiting for the raise hold, a stale meter), or charging below the oracle
(a raise hold, a write in flight, a cycling load kept free, a cut deeper than the oracle's). Seconds
where the car draws more than the oracle (above MaxA while a cut is on its way) are summed apart.
Prints the spread of the ratios (the pause oracle against the plain one; the controller, and a
lag-free controller without foresight, against the pause oracle), then the totals over every scored
house and over the K with the lowest energy_ratio_pause_oracle.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.balancer import Balancer, BalancerConfig  # noqa: E402
from bridge.sim.bench import TRANSPORT_LAG_S, balancer_config_from_env, limits_of, oracle_allowance, replay  # noqa: E402
from bridge.sim.distribution import percentile  # noqa: E402
from bridge.sim.generate import generate_house  # noqa: E402
from bridge.sim.pause_oracle import pause_oracle  # noqa: E402

PAUSED = re.compile(r"paused (\d+)/(\d+) s")


class Recording:
    """The real balancer, keeping each decision's reason and setting."""

    def __init__(self, inner: Balancer) -> None:
        self.inner = inner
        self.reasons: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def decide(self, now: float):
        d = self.inner.decide(now)
        self.reasons.append(d.reason)
        return d


def kind(reason: str, charge_at: int) -> str:
    if "meter stale" in reason or "waiting for the meter" in reason or "meter back" in reason:
        return "meter gap (fail-safe, return)"
    if charge_at == 0:
        paused = PAUSED.search(reason)
        if paused and float(paused.group(1)) < float(paused.group(2)):
            return "paused: within its minimum pause (the oracle's pause lies elsewhere)"
        if paused and "resume needs" in reason:
            return "paused: after the minimum, headroom short of a resume as seen"
        if paused:
            return "paused: after the minimum, resume waits for the raise hold"
        if "pause (only" in reason:
            return "paused: the pause decision itself"
        return "paused: other"
    if "waiting for the charger to follow" in reason:
        return "charging low: a write in flight (settle)"
    if "cycling" in reason:
        return "charging low: a cycling load kept free"
    if "held" in reason or "holding" in reason:
        return "charging low: raise hold"
    if "command pacing" in reason:
        return "charging low: command pacing"
    if "cut to" in reason:
        return "charging low: cut below the oracle"
    return "charging low: other (" + reason.split(":")[0][:40] + ")"


def causal_pause_amp_seconds(allowance: list[int], min_pause_s: float) -> int:
    """A lag-free controller that knows the present but not the future: it pauses when the
    allowance falls below the minimum current and resumes once the pause is over and the allowance
    allows. Against the pause oracle, what foresight alone is worth."""
    got, until = 0, -1.0
    for t, amps in enumerate(allowance):
        if t < until:
            continue
        if amps == 0:
            until = t + min_pause_s
        else:
            got += amps
    return got


def house_loss(job: tuple[int, int, str]) -> tuple[str, float, float, Counter, float, float, float]:
    seed, index, transport = job
    cfg = balancer_config_from_env(BalancerConfig, transport=transport)
    limits = limits_of(cfg)
    trace = generate_house(seed, index).trace
    if trace.seconds_house_over(limits.max_a):
        return trace.name, 0.0, 0.0, Counter(), 0.0, 0.0, 0.0
    allowance = oracle_allowance(trace, limits)
    schedule = pause_oracle(allowance, limits.min_pause_s)
    if not schedule.amp_seconds:
        return trace.name, 0.0, 0.0, Counter(), 0.0, 0.0, 0.0
    causal = causal_pause_amp_seconds(allowance, limits.min_pause_s)
    balancer = Recording(Balancer(cfg, strategy="adaptive"))
    result = replay(trace, balancer, limits, lag_s=TRANSPORT_LAG_S[transport], record=True)
    series = result.series
    assert series is not None
    losses: Counter = Counter()
    gained = 0.0
    for t, (amps, draw, charge_at, reason) in enumerate(zip(schedule.amps, series.car_draw, series.charge_at,
                                                            balancer.reasons)):
        short = amps - draw
        if short < 0:
            gained -= short
        elif short > 0:
            losses["charger lag: the setting gives it, the car not yet" if charge_at >= amps
                   else kind(reason, int(charge_at))] += short
    ratio = sum(series.car_draw) / schedule.amp_seconds
    return (trace.name, ratio, float(schedule.amp_seconds), losses, gained,
            schedule.amp_seconds / sum(allowance), causal / schedule.amp_seconds)


def table(title: str, rows: list[tuple[str, float, float, Counter, float]]) -> str:
    total: Counter = Counter()
    for _name, _ratio, _oracle, losses, *_rest in rows:
        total.update(losses)
    lost = sum(total.values())
    gained = sum(r[4] for r in rows)
    oracle = sum(r[2] for r in rows)
    lines = [f"-- {title}: {len(rows)} houses, pause oracle {oracle / 1000:.0f} kA·s (per phase), "
             f"short of it {lost / 1000:.1f} kA·s, above it {gained / 1000:.1f} kA·s --"]
    for what, amp_s in total.most_common():
        lines.append(f"{what:<62} {amp_s / 1000:8.1f} kA·s {100 * amp_s / lost:5.1f} %")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generate", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--worst", type=int, default=10)
    p.add_argument("--transport", choices=tuple(TRANSPORT_LAG_S), default="cloud")
    args = p.parse_args(argv)
    jobs = [(args.seed, i, args.transport) for i in range(args.generate)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        rows = [r for r in pool.map(house_loss, jobs, chunksize=1) if r[2] > 0]
    def spread(title: str, values: list[float]) -> str:
        ordered = sorted(values)
        return (f"{title:<48} p10 {percentile(ordered, 0.1):.4f}  median {percentile(ordered, 0.5):.4f}  "
                f"min {ordered[0]:.4f}")

    print(spread("pause oracle / plain oracle", [r[5] for r in rows]))
    print(spread("controller / pause oracle", [r[1] for r in rows]))
    print(spread("lag-free causal controller / pause oracle", [r[6] for r in rows]))
    print(spread("controller / lag-free causal controller", [r[1] / r[6] for r in rows]))
    print()
    print(table("every scored house", rows))
    worst = sorted(rows, key=lambda r: r[1])[:args.worst]
    print()
    print(table(f"the {len(worst)} lowest energy_ratio_pause_oracle", worst))
    print("    " + ", ".join(f"{r[0]} {r[1]:.3f}" for r in worst))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
