"""The service's clock: the time it runs the balancer on, and how long a wait for it really lasts."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds, monotonic."""

    def real_seconds(self, seconds: float) -> float:
        """How many real seconds `seconds` of this clock take (the worker's waits)."""


class MonotonicClock:
    """Real time."""

    def __call__(self) -> float:
        return time.monotonic()

    def real_seconds(self, seconds: float) -> float:
        return seconds


def local_seconds(wall: datetime) -> float:
    """Seconds of the local clock `wall` (aware) reads: the quarter hours the site sees are its
    multiples of 900 (the cars' turns change there)."""
    offset = wall.utcoffset()
    return wall.timestamp() + (offset.total_seconds() if offset else 0.0)
