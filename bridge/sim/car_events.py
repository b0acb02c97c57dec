"""The bench's score of what a household's cars do besides charging: a car that wakes up (full, or
on its own timer, and drawing again) and a car that is unplugged while another charges.

- `wake_over_max_a`: the most any phase was above MaxA from a car's wake-up until one charger lag
  plus `settle_s` after it (a car held at the minimum adds at most that minimum);
- `unplug_short_s`: the longest time after an unplug that a car still plugged in drew 1 A or more
  below its share, the share being the oracle's with the empty outlet held at the minimum on its
  phases (counted, for a car to come).

Pure bookkeeping over the replay's seconds; None when the trace has no such event."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.limits import MIN_CURRENT_A
from bridge.sim.house import CarSpec

SHORT_A = 1.0  # below its share by this much or more: short


class CarEvents:
    def __init__(self, cars: Sequence[CarSpec], max_a: float, window_s: float) -> None:
        self._cars = list(cars)
        self._max_a = max_a
        self._window_s = window_s
        self._wanted: list[bool] | None = None  # before the first second: nothing wakes up at the start
        self._plugged = [True] * len(cars)
        self._woke_at: float | None = None
        self._unplugged_at: float | None = None
        self.wake_over_max_a: float | None = None
        self.unplug_short_s: int | None = None

    def held(self, base: Sequence[float], plugged: Sequence[bool]) -> list[float]:
        """The house with each empty outlet held at the minimum on the phases of its car."""
        return [b + sum(MIN_CURRENT_A for c, p in zip(self._cars, plugged) if not p and c.phases[n])
                for n, b in enumerate(base)]

    def step(self, t: float, plugged: Sequence[bool], demands: Sequence[float], draws: Sequence[float],
             totals: Sequence[float], shares: Sequence[int]) -> None:
        """One second: each car's plug-in state, demand and draw, the phases' totals, and each car's
        share (`shares`, from the oracle over `held`)."""
        wants = [p and d >= MIN_CURRENT_A for p, d in zip(plugged, demands)]
        wanted = self._wanted if self._wanted is not None else wants
        if any(w and not was and p and still for w, was, p, still in zip(wants, wanted, plugged, self._plugged)):
            self._woke_at = t
            self.wake_over_max_a = max(self.wake_over_max_a or 0.0, 0.0)
        if any(was and not p for was, p in zip(self._plugged, plugged)):
            self._unplugged_at = t
            self.unplug_short_s = max(self.unplug_short_s or 0, 0)
        self._wanted, self._plugged = wants, list(plugged)
        if self._woke_at is not None:
            if t - self._woke_at <= self._window_s:
                self.wake_over_max_a = max(self.wake_over_max_a or 0.0, max(totals) - self._max_a)
            else:
                self._woke_at = None
        if self._unplugged_at is not None:
            short = any(p and draw < share - SHORT_A for p, draw, share in zip(plugged, draws, shares))
            if short:
                self.unplug_short_s = max(self.unplug_short_s or 0, int(t - self._unplugged_at) + 1)
            else:
                self._unplugged_at = None

    def figures(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        if self.wake_over_max_a is not None:
            out["wake_over_max_a"] = round(self.wake_over_max_a, 2)
        if self.unplug_short_s is not None:
            out["unplug_short_s"] = self.unplug_short_s
        if out:
            out["event_window_s"] = self._window_s
        return out
