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
