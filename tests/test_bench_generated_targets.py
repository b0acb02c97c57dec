"""Generated houses that once broke the safety targets, replayed with the default settings and
the 10 s lag (`bench --generate 100 --seed 1` has them; docs/benchmark.md, "Generated households").

The whole distribution takes minutes and is measured with the bench, not here; these few houses
pin the mechanisms that brought their longest run over the fuse under the targets."""

from __future__ import annotations

import pytest

from bridge.balancer import Balancer, BalancerConfig
from bridge.sim.bench import run_bench
from bridge.sim.generate import generate_house

LAG_S = 10.0
SEED = 1


def longest_over_fuse_s(number: int) -> int:
    house = generate_house(SEED, number - 1)
    report, _raw = run_bench([house.trace], BalancerConfig(), ["adaptive"],
                             lambda cfg, strategy: Balancer(cfg, strategy=strategy), lag_s=LAG_S)
    (entry,) = report["traces"]
    return entry["strategies"]["adaptive"]["longest_over_fuse_s"]


@pytest.mark.slow
@pytest.mark.parametrize("number, why, bound_s", [
    # A meter gap while the car was paused: the fail-safe raised it to 6 A for 96 s over the fuse.
    (90, "the fail-safe never raises", 2 * LAG_S + 5),
    # An oven came on as the meter fell silent: 34 s over the fuse until the fail-safe at 30 s landed.
    (75, "a meter heard every second is stale after 8 s", LAG_S + 3),
    # A load came on while a raise was in flight: the cut counted the raise and fell 3 A short (19 s).
    (13, "a cut while a raise is in flight counts the car where it was", LAG_S + 3),
])
def test_a_house_that_broke_the_safety_targets_meets_them(number, why, bound_s):
    assert longest_over_fuse_s(number) <= bound_s, why
