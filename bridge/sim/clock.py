"""Simulated time that runs faster than real time, for the demo."""

from __future__ import annotations

import time


class ScaledClock:
    """`speed` simulated seconds per real second, from `start_s` at creation; the
    service's waits shrink with it."""

    def __init__(self, speed: float, start_s: float = 0.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be above 0, got {speed!r}")
        self.speed = speed
        self.start_s = start_s
        self._start = time.monotonic()

    def __call__(self) -> float:
        return self.start_s + (time.monotonic() - self._start) * self.speed

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed
