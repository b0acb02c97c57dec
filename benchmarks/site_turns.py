"""Turns on a housing co-op's site: 20 three-phase cars, room for 9 at the minimum.

    python benchmarks/site_turns.py [--cars N] [--hours H] [--wall-s S] [ROTATE_S ...]

For each BALANCER_ROTATE_S given (default 600 900 1200 1800) replays `bridge.sim.site_turns` (fuse
3 x 100 A, BALANCER_MAX_A 96, 40 A house load, chargers 5 s late, every car at 16 A at start) and
prints the energy, the fairness (least over most kWh), the most writes an hour on a connector, the
longest any car waited, when the last car first charged and the seconds with no car drawing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.sim.site_turns import replay_site, site_balancer, site_config  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rotate_s", nargs="*", type=float, default=[600.0, 900.0, 1200.0, 1800.0])
    p.add_argument("--cars", type=int, default=20)
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--wall-s", type=float, default=300.0, help="the wall clock's seconds past a boundary at start")
    args = p.parse_args()
    print("rotate_s   kWh  fairness  writes/h  longest wait  last first charge  s at 0 A")
    for rotate in args.rotate_s:
        r = replay_site(site_balancer(site_config(rotate), args.cars, args.wall_s), args.cars,
                        int(args.hours * 3600))
        firsts = [t for t in r.first_charge_s if t is not None]
        never = len(r.first_charge_s) - len(firsts)
        last = f"{max(firsts) / 60:.1f} min" if not never else f"never ({never} cars)"
        print(f"{rotate:8.0f} {sum(r.energy_kwh):5.1f} {r.fairness:9.3f} {r.max_writes_per_h:9.1f} "
              f"{r.longest_wait_s / 60:9.1f} min {last:>18} {r.zero_after_start_s:10d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
