"""Simulated time that runs faster than real time, for the demo."""

from __future__ import annotations

import time


class ScaledClock:
    """`speed` simulated seconds per real second, from 0 at creation; the service's
    waits shrink with it."""

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be above 0, got {speed!r}")
        self.speed = speed
        self._start = time.monotonic()

    def __call__(self) -> float:
        return (time.monotonic() - self._start) * self.speed

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed
