"""The oracle that keeps the minimum pause: the most a car could charge under the bridge's own rules.

The plain oracle gives the car, every second, the most the fuse allows (0 below the minimum
current). No controller can follow it: once the bridge pauses a car, the car stays paused at least
`min_pause_s` (`BALANCER_MIN_PAUSE_S`), for the car's and the charger's contactor. This oracle has
the same perfect knowledge and no lag, never exceeds what the plain one allows in any second (fuse
safety), and keeps the pause rule; it picks when to pause and resume by dynamic programming over
the whole trace.

Charging below what is allowed never helps: whether a car charges at 6 A or at the most allowed,
what it may do next is the same. So every second the car is either charging at what is allowed
or paused, and the energy lost is the allowance of the seconds it is paused. A schedule is a set of
pause runs, each at least `min_pause_s` long (one that reaches the end of the trace may be shorter:
the trace ends, not the pause), covering every second whose allowance is below the minimum. The
dynamic program over the boundaries between seconds is exact and takes O(T):

    best[e] = the least loss over [0, e) with the car not paused at e
            = best[e - 1]                                     when second e - 1 may charge
              S[e] + min over s <= e - P of (best[s] - S[s])  a pause run [s, e)

where S is the prefix sum of the allowance and P the minimum pause: the inner minimum is a running
one, so a second costs O(1) whatever P is. The car is charging when the trace begins (as in the
bench's replay), so a pause at the start counts like any other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass


@dataclass(frozen=True)
class PauseSchedule:
    """What the pause oracle does: the amps each second (0 while paused), whether it is paused, and
    its pause runs as [start, end) seconds."""

    amps: list[int]
    paused: list[bool]
    pauses: list[tuple[int, int]]

    @property
    def amp_seconds(self) -> int:
        return sum(self.amps)


def pause_oracle(allowance: Sequence[int], min_pause_s: float,
                 must_pause: Sequence[bool] | None = None) -> PauseSchedule:
    """The schedule with the most amp-seconds under `allowance` (what the plain oracle gives each
    second) that keeps every pause at least `min_pause_s` long.

    `must_pause[t]`: the car cannot charge at second t (by default: its allowance is 0). A second of
    allowance 0 that need not pause (a full car takes nothing, yet the bridge does not pause it) is
    passed with `must_pause` False."""
    n = len(allowance)
    if must_pause is None:
        must_pause = [a <= 0 for a in allowance]
    elif len(must_pause) != n:
        raise ValueError(f"must_pause has {len(must_pause)} seconds, allowance {n}")
    if min_pause_s < 0 or not math.isfinite(min_pause_s):
        raise ValueError(f"min_pause_s must be a finite number of seconds of at least 0, got {min_pause_s!r}")
    span = max(1, math.ceil(min_pause_s))  # a pause run has at least one second
    prefix = [0] * (n + 1)
    for t, a in enumerate(allowance):
        prefix[t + 1] = prefix[t] + a
    inf = math.inf
    best: list[float] = [inf] * (n + 1)
    # via[e]: -1 when second e - 1 charged; else the start s of the pause run [s, e).
    via = [-1] * (n + 1)
    best[0] = 0
    run_min, run_arg = inf, -1  # min of best[s] - S[s] over s <= e - span
    for e in range(1, n + 1):
        s = e - span
        if s >= 0 and best[s] - prefix[s] < run_min:
            run_min, run_arg = best[s] - prefix[s], s
        charge = best[e - 1] if not must_pause[e - 1] else inf
        pause = prefix[e] + run_min
        if charge <= pause:
            best[e], via[e] = charge, -1
        else:
            best[e], via[e] = pause, run_arg
    # The last pause run may end with the trace, shorter than the minimum.
    end_arg, end_loss = n, best[n]
    for s in range(n):
        loss = best[s] + prefix[n] - prefix[s]
        if loss < end_loss:
            end_loss, end_arg = loss, s
    if end_loss == inf:  # cannot happen: a pause over the whole trace is always allowed
        raise AssertionError("no schedule")
    paused = [False] * n
    pauses: list[tuple[int, int]] = []
    e = n
    if end_arg < n:
        pauses.append((end_arg, n))
        e = end_arg
    while e > 0:
        if via[e] == -1:
            e -= 1
        else:
            pauses.append((via[e], e))
            e = via[e]
    pauses.reverse()
    # Two runs that touch are one pause.
    merged: list[tuple[int, int]] = []
    for s, end in pauses:
        if merged and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((s, end))
    for s, end in merged:
        for t in range(s, end):
            paused[t] = True
    amps = [0 if p else int(a) for a, p in zip(allowance, paused)]
    return PauseSchedule(amps=amps, paused=paused, pauses=merged)


@dataclass(frozen=True)
class CapacityPeriod:
    """One period of a capacity tariff for `capacity_pause_oracle`: its seconds (indices into the
    trace) and the import energy it may take in all (Ws; None: the tariff does not count it)."""

    seconds: Sequence[int]
    budget_ws: float | None


def capacity_pause_oracle(allowance: Sequence[int], house_w: Sequence[float], periods: Sequence[CapacityPeriod],
                          watts_per_amp: float, min_a: int, min_pause_s: float) -> PauseSchedule:
    """The car's whole amps each second under a capacity tariff, with the rules a real car and the
    bridge keep: 0 or `min_a` up to `allowance[t]` (the fuse's, at most the car's maximum), and a
    pause at least `min_pause_s` long. Every counted period's import (house and car, export counting
    as none) stays within its budget; never more in any second than `allowance`.

    The plain capacity oracle gives each period min(fuse allowance, limit - house import + export) as
    if the car could take any sliver. This one builds each period's schedule, then keeps the pauses:

    1. A period whose budget takes the car at its allowance every second: the allowance.
    2. Else its budget is shared out cheapest amp first, an amp's price being the import it adds
       (nothing while it only takes the export; a second's first `min_a` amps are bought together,
       the minimum current): the most amp-seconds its budget buys. Of the two ways to buy (every
       second charging, at least the minimum, the budget's rest on top; or whole seconds at the
       allowance in time order, one pause for the rest of the period) the one with more amp-seconds
       wins, the first on a tie: without export both buy the whole budget, and the first leaves no
       pause to keep.
    3. The pause oracle (`pause_oracle`) over the result: a second the periods left at 0 must pause.

    Not a proof of the optimum: pauses that straddle periods are kept by step 3, not chosen with the
    budget. The plain oracle bounds it from above (the bench reports both)."""
    n = len(allowance)
    if len(house_w) != n:
        raise ValueError(f"house_w has {len(house_w)} seconds, allowance {n}")
    if watts_per_amp <= 0 or min_a < 1:
        raise ValueError("watts_per_amp must be above 0 and min_a at least 1")
    amps = [int(a) if a >= min_a else 0 for a in allowance]
    for period in periods:
        if period.budget_ws is None:
            continue
        seconds = [t for t in period.seconds if amps[t] > 0]
        house_import = sum(max(0.0, house_w[t]) for t in period.seconds)
        budget = period.budget_ws - house_import

        def cost(t: int, a: int) -> float:
            """The import that `a` amps at second t add to the house's."""
            return max(0.0, house_w[t] + a * watts_per_amp) - max(0.0, house_w[t])

        if sum(cost(t, amps[t]) for t in seconds) <= budget:
            continue
        spread = _buy_amps(seconds, amps, cost, budget, min_a, every_second=True)
        whole = _buy_amps(seconds, amps, cost, budget, min_a, every_second=False)
        chosen = spread if spread is not None and sum(spread.values()) >= sum(whole.values()) else whole
        for t in period.seconds:
            amps[t] = chosen.get(t, 0)
    return pause_oracle(amps, min_pause_s, [a == 0 for a in amps])


def _buy_amps(seconds: Sequence[int], most: Sequence[int], cost: Any, budget: float, min_a: int,
              every_second: bool) -> dict[int, int] | None:
    """Amps per second bought with `budget`, cheapest amp first (ties: earlier seconds, whole seconds
    first). `every_second`: each second gets its minimum first (None when the budget does not reach);
    else a second's minimum is one item at its price per amp, and nothing is bought past the first
    item that does not fit, so that the seconds bought are whole runs and the rest one pause."""
    got: dict[int, int] = {}
    left = budget
    items: list[tuple[float, int, int]] = []  # (price per amp, second, amps it makes)
    if every_second:
        for t in seconds:
            left -= cost(t, min_a)
            got[t] = min_a
        if left < 0:
            return None
    else:
        items = [(round(cost(t, min_a) / min_a, 3), t, min_a) for t in seconds]
    for t in seconds:
        for a in range(min_a + 1, most[t] + 1):
            items.append((round(cost(t, a) - cost(t, a - 1), 3), t, a))
    items.sort()
    for _price, t, a in items:
        if got.get(t, 0) != a - (min_a if a == min_a else 1):
            continue  # its second's amps below it were not bought
        step = cost(t, a) - cost(t, got.get(t, 0))
        if step > left:
            if every_second:
                continue
            break
        left -= step
        got[t] = a
    return got
