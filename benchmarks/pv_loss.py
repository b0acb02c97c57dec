"""Where a `pv` car loses against the surplus oracle and where it imports, house by house.

    [PV_*=...] python benchmarks/pv_loss.py --car L1L2L3:16:pv [--generate N] [--seed S] [--sky SKY]

Replays each generated house whose surplus oracle gets 0.1 kWh or more (the houses `bench
--generate` scores for `pv`) with the service's surplus controller (default BALANCER_* settings,
10 s lag), and files every second under what the controller and the balancer were doing:

- the energy the car took from the grid while charging in `pv` (what its solar share misses): a
  stop or a cut on its way to the car (the lag), the first minute after a start, the minimum
  current above the export while the controller holds it (`PV_DISABLE_DELAY_S`), the controller's
  estimate (the `PV_WINDOW_S` average) above the export;
- the oracle's energy the car did not take (what its surplus energy misses): paused for the
  minimum pause after a stop, waiting `PV_ENABLE_DELAY_S`, the estimate below the minimum though
  the export carries it (the window lags a rising export), a start or a raise on its way, charging
  under the oracle's amps (the raise interval, the dead band, the window), the fuse; and what the
  car took above the oracle (at the minimum through a cloud: energy, but from the grid).

Prints, per house and in total, each cause as a share of the car's energy (import) or of the
oracle's (surplus energy not taken), with the bench's solar share and surplus energy ratio.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.balancer import BalancerConfig  # noqa: E402
from bridge.sim.bench import limits_of, oracle_current, real_balancer, replay  # noqa: E402
from bridge.sim.distribution import percentile  # noqa: E402
from bridge.sim.generate import DEFAULT_SKY, generate_house  # noqa: E402
from bridge.sim.power_bench import SOLAR_SHARE_MIN_KWH, power_run_factory  # noqa: E402

LAG_S = 10.0
AFTER_START_S = 60  # the seconds after a start filed as the start's

IMPORT_CAUSES = ("stop on its way", "cut on its way", "first minute after a start",
                 "minimum above the export (holding until the stop)", "estimate above the export")
SHORT_CAUSES = ("minimum pause after a stop", "PV_ENABLE_DELAY_S", "estimate below the minimum",
                "latest reading below the minimum", "start on its way", "raise on its way",
                "charging under the oracle", "other (fuse, meter)")


def house_loss(job: tuple[int, int, str, str]) -> dict | None:
    seed, index, car, sky = job
    cfg = BalancerConfig()
    limits = limits_of(cfg)
    make = power_run_factory(dict(os.environ), None, car, LAG_S, cfg.min_current, cfg.current_cap)
    trace, power = make(generate_house(seed, index, sky).trace)
    oracles = power.oracles(lambda row: oracle_current(row, trace.car_phases, limits, trace.car_max_a),
                            limits.min_pause_s)
    if oracles["surplus_energy_kwh"] < SOLAR_SHARE_MIN_KWH:
        return None
    v, n, min_a = power.settings.voltage, power.phases, cfg.min_current
    controller = power.surplus
    rows = list(zip(*trace.base))
    export_w = [max(0.0, -sum(row) * v) for row in rows]
    fuse_a = [min(oracle_current(row, trace.car_phases, limits, trace.car_max_a), trace.car_max_a) for row in rows]
    oracle_a = []
    for t in range(len(rows)):
        amps = min(math.floor(export_w[t] / (n * v)), fuse_a[t])
        oracle_a.append(amps if amps >= min_a else 0)
    state: list[tuple] = []
    surplus_step = controller.step

    def recording(now, net_w, car_w, mode, phases, voltage, lo, hi):
        cap, why = surplus_step(now, net_w, car_w, mode, phases, voltage, lo, hi)
        state.append((cap, why, controller.surplus_w(), controller.start_surplus_w()))
        return cap, why

    controller.step = recording
    balancer = real_balancer(cfg, "adaptive")
    reasons: list[str] = []
    decide = balancer.decide

    def deciding(now):
        decision = decide(now)
        reasons.append(decision.reason)
        return decision

    balancer.decide = deciding
    result = replay(trace, balancer, limits, lag_s=LAG_S, record=True, power=power)
    draw = result.series.car_draw
    imports: Counter = Counter()
    short: Counter = Counter()
    above = 0.0
    below_min_export = 0.0  # export the oracle cannot take either: under the car's minimum
    started_at = -10 ** 9
    for t in range(len(rows)):
        car_w = draw[t] * n * v
        if draw[t] > 0 and (t == 0 or draw[t - 1] == 0):
            started_at = t
        cap, why, surplus, start_surplus = state[t]
        if oracle_a[t] == 0:
            below_min_export += export_w[t]
        grid = max(0.0, car_w - export_w[t])
        if grid > 0:
            if cap == 0:
                what = IMPORT_CAUSES[0]
            elif cap is not None and draw[t] > cap:
                what = IMPORT_CAUSES[1]
            elif t - started_at < AFTER_START_S:
                what = IMPORT_CAUSES[2]
            elif export_w[t] < min_a * n * v and draw[t] <= min_a:
                what = IMPORT_CAUSES[3]
            else:
                what = IMPORT_CAUSES[4]
            imports[what] += grid
        gap = (oracle_a[t] - draw[t]) * n * v
        if gap < 0:
            above -= gap
        elif gap > 0:
            reason = reasons[t]
            if draw[t] == 0:
                if "resumes no sooner than" in reason:
                    what = SHORT_CAUSES[0]
                elif cap == 0 and "starting in" in why:
                    what = SHORT_CAUSES[1]
                elif cap == 0 and "needed to start" in why and "now" in why:
                    what = SHORT_CAUSES[3]
                elif cap == 0:
                    what = SHORT_CAUSES[2]
                elif result.series.charge_at[t] >= min_a:
                    what = SHORT_CAUSES[4]
                else:
                    what = SHORT_CAUSES[7]
            elif result.series.charge_at[t] > draw[t]:
                what = SHORT_CAUSES[5]
            elif cap is not None and cap <= draw[t]:
                what = SHORT_CAUSES[6]
            else:
                what = SHORT_CAUSES[7]
            short[what] += gap
    car_ws = sum(draw) * n * v
    oracle_ws = sum(oracle_a) * n * v
    return {"name": trace.name, "hours": len(rows) / 3600, "car_kwh": car_ws / 3.6e6, "oracle_kwh": oracle_ws / 3.6e6,
            "grid_kwh": sum(imports.values()) / 3.6e6, "imports": imports, "short": short, "above": above,
            "below_min_export_kwh": below_min_export / 3.6e6, "writes": result.commands,
            "starts": power.starts}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--car", default="L1L2L3:16:pv")
    p.add_argument("--generate", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sky", default=DEFAULT_SKY)
    p.add_argument("--summary", action="store_true", help="only the spread and the totals")
    args = p.parse_args(argv)
    jobs = [(args.seed, i, args.car, args.sky) for i in range(args.generate)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        houses = [h for h in pool.map(house_loss, jobs, chunksize=1) if h is not None]
    shares = sorted(1 - h["grid_kwh"] / h["car_kwh"] for h in houses if h["car_kwh"] >= SOLAR_SHARE_MIN_KWH)
    ratios = sorted(h["car_kwh"] / h["oracle_kwh"] for h in houses)
    print(f"{len(houses)} houses, car {args.car}: solar share p10 {percentile(shares, 0.1):.3f} median "
          f"{percentile(shares, 0.5):.3f}; surplus energy p10 {percentile(ratios, 0.1):.3f} median "
          f"{percentile(ratios, 0.5):.3f}; over these houses writes/h p90 "
          f"{percentile(sorted(h['writes'] / h['hours'] for h in houses), 0.9):.1f}, starts/h p90 "
          f"{percentile(sorted(h['starts'] / h['hours'] for h in houses), 0.9):.1f}")
    print("\nImport while charging, % of the car's energy:")
    print(f"| house | car kWh | solar share | {' | '.join(IMPORT_CAUSES)} |")
    print("|---|---|---|" + "---|" * len(IMPORT_CAUSES))
    total_imports: Counter = Counter()
    for h in houses:
        total_imports.update(h["imports"])
        car = h["car_kwh"] * 3.6e6
        if not car:
            continue
        cells = " | ".join(f"{100 * h['imports'][c] / car:.1f}" for c in IMPORT_CAUSES)
        if not args.summary:
            print(f"| {h['name']} | {h['car_kwh']:.2f} | {1 - h['grid_kwh'] / h['car_kwh']:.3f} | {cells} |")
    car_all = sum(h["car_kwh"] for h in houses) * 3.6e6
    print(f"| all | {car_all / 3.6e6:.2f} | {1 - sum(total_imports.values()) / car_all:.3f} | "
          + " | ".join(f"{100 * total_imports[c] / car_all:.1f}" for c in IMPORT_CAUSES) + " |")
    print("\nSurplus energy not taken, % of the oracle's energy (above: what the car took over the oracle):")
    print(f"| house | oracle kWh | ratio | {' | '.join(SHORT_CAUSES)} | above | export under the minimum kWh |")
    print("|---|---|---|" + "---|" * (len(SHORT_CAUSES) + 2))
    total_short: Counter = Counter()
    for h in houses:
        total_short.update(h["short"])
        oracle = h["oracle_kwh"] * 3.6e6
        cells = " | ".join(f"{100 * h['short'][c] / oracle:.1f}" for c in SHORT_CAUSES)
        if not args.summary:
            print(f"| {h['name']} | {h['oracle_kwh']:.2f} | {h['car_kwh'] / h['oracle_kwh']:.3f} | {cells} | "
                  f"{100 * h['above'] / oracle:.1f} | {h['below_min_export_kwh']:.2f} |")
    oracle_all = sum(h["oracle_kwh"] for h in houses) * 3.6e6
    print(f"| all | {oracle_all / 3.6e6:.2f} | {car_all / oracle_all:.3f} | "
          + " | ".join(f"{100 * total_short[c] / oracle_all:.1f}" for c in SHORT_CAUSES)
          + f" | {100 * sum(h['above'] for h in houses) / oracle_all:.1f} | "
          f"{sum(h['below_min_export_kwh'] for h in houses):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
