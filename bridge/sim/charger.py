"""A charger with a car plugged in, as the balancer experiences it.

The value written to the cloud reaches the car only after `lag_s` (the cloud
pushes it to the charger, the charger changes its pilot signal, the car ramps).
The car cannot charge below 6 A (IEC 61851), so a lower value, 0 included,
pauses it; it never draws more than its own on-board charger allows.
"""

from __future__ import annotations

from collections import deque

from bridge.limits import MIN_CURRENT_A as IEC_MIN_CURRENT_A


class ChargerModel:
    def __init__(
        self,
        lag_s: float = 10.0,
        phases: tuple[bool, bool, bool] = (True, True, True),
        car_max_a: float = 32,
        initial_a: int = 0,
    ) -> None:
        if lag_s < 0:
            raise ValueError("the charger's lag cannot be negative")
        if not any(phases):
            raise ValueError("the car must charge on at least one phase")
        self.lag_s = lag_s
        self.phases = phases
        self.car_max_a = car_max_a
        self._setpoint = initial_a
        self._pending: deque[tuple[float, int]] = deque()

    def write(self, now: float, amps: int) -> None:
        """The cloud accepted `amps` at `now`; the car follows from `now + lag_s`."""
        self._pending.append((now + self.lag_s, amps))

    def setpoint(self, now: float) -> int:
        """The value the charger is applying at `now` (what was written `lag_s` ago)."""
        pending = self._pending
        while pending and pending[0][0] <= now:
            self._setpoint = pending.popleft()[1]
        return self._setpoint

    def draw(self, now: float) -> float:
        """Amps the car draws at `now` on each of its phases."""
        amps = self.setpoint(now)
        if amps < IEC_MIN_CURRENT_A:
            return 0.0
        return float(min(amps, self.car_max_a))

    def phase_draw(self, now: float) -> tuple[float, float, float]:
        """Amps the car draws at `now` on L1, L2, L3."""
        amps = self.draw(now)
        p1, p2, p3 = self.phases
        return (amps if p1 else 0.0, amps if p2 else 0.0, amps if p3 else 0.0)
