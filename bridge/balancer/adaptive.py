"""Strategy `adaptive` (the default): per-phase headroom, immediate cuts, careful raises.

The house's own load on a phase is the meter minus what the car draws there.
The car's draw comes from the charger's own measurements when they are fresh
and taken after the latest command settled; otherwise from the commands: while
a command is in flight (`settle_s` after it was written: the cloud and the car
take seconds to follow) the car is taken to draw the larger of the old and the
new value, so an overshoot already being cut is not cut twice, and a raise on
its way is not mistaken for a new load.

Cuts are immediate and by the whole overshoot. Raises need the headroom (less
`raise_margin_a`, which keeps meter noise from being chased) to have held for
the raise hold. A raise that a cut follows within `cycle_window_s` means a load
is cycling (oven or sauna thermostat, heat pump): each such punished raise
doubles the hold, up to `raise_hold_max_s`, and each `cycle_forget_s` without
one halves it again. A short spike (a kettle) costs one cut and one raise; a
cycling load soon stops being chased.
"""

from __future__ import annotations

import math
from typing import Callable

from bridge.balancer.model import (
    PHASES,
    BalancerConfig,
    Observations,
    Proposal,
    Triple,
    phase_name,
)

PHASE_IN_USE_A = 1.0  # a measured phase current at or above this is a phase the car uses


class AdaptiveStrategy:
    name = "adaptive"

    def __init__(self, cfg: Callable[[], BalancerConfig]) -> None:
        self._cfg = cfg
        self.target: int | None = None  # what the car should draw; 0 = paused
        self.paused_at: float | None = None
        self._raise_since: float | None = None
        self._raise_level = 0
        self._last_raise_at: float | None = None
        self._cycle_level = 0
        self._cycle_seen_at: float | None = None

    # ---- hooks --------------------------------------------------------------
    def on_meter(self, now: float, phase: int, amps: float, previous: float | None) -> None:
        pass

    def on_reconfigure(self, now: float, old: BalancerConfig) -> None:
        self._raise_since = None

    def on_fail_safe(self, now: float, current: int) -> None:
        self._raise_since = None
        if self.target is None or current < self.target:
            self._set_target(now, current)

    # ---- the car's draw -----------------------------------------------------
    def used_phases(self, now: float, obs: Observations) -> tuple[int, ...]:
        """The phases the car charges on; all three when nothing says otherwise."""
        if self._charger_fresh(now, obs):
            if obs.charger_phases is not None and any(obs.charger_phases):
                return tuple(n for n in PHASES if obs.charger_phases[n])
            if obs.charger_currents is not None:
                measured = tuple(n for n in PHASES if obs.charger_currents[n] >= PHASE_IN_USE_A)
                if measured:
                    return measured
        return PHASES

    def _charger_fresh(self, now: float, obs: Observations) -> bool:
        return obs.charger_at is not None and now - obs.charger_at <= self._cfg().charger_stale_after_s

    def _drawn(self, amps: int | None) -> int:
        """What a car draws when told `amps`: nothing below the minimum."""
        if amps is None or amps < self._cfg().min_current:
            return 0
        return amps

    def car_draw(self, now: float, obs: Observations, used: tuple[int, ...]) -> tuple[Triple, float]:
        """The car's draw per phase, and the seconds left until the latest command has settled."""
        cfg = self._cfg()
        settle_left = 0.0
        if obs.commanded_at is not None:
            settle_left = max(0.0, obs.commanded_at + cfg.settle_s - now)
        fresh = self._charger_fresh(now, obs)
        if fresh and obs.charger_at is not None and (
            obs.commanded_at is None or obs.charger_at >= obs.commanded_at + cfg.settle_s
        ):
            # Measured after the latest change settled: the ground truth.
            measured = obs.charger_currents or (0.0, 0.0, 0.0)
            return (measured[0], measured[1], measured[2]), settle_left
        if not obs.recent_commands:
            # Nothing written and nothing measured yet (the bridge just started): a
            # charger left alone charges at full power, and taking the meter as all
            # house would pause the car for min_pause_s on every restart.
            amps0 = float(self._drawn(cfg.current_cap))
            draw0 = tuple(amps0 if n in used else 0.0 for n in PHASES)
            return (draw0[0], draw0[1], draw0[2]), settle_left
        # Any command still settling may be the one the car follows: assume the largest.
        horizon = now - cfg.settle_s
        settled = [a for t, a in obs.recent_commands if t <= horizon][-1:]
        unsettled = [a for t, a in obs.recent_commands if t > horizon]
        amps = float(max((self._drawn(a) for a in settled + unsettled), default=0))
        draw = tuple(amps if n in used else 0.0 for n in PHASES)
        return (draw[0], draw[1], draw[2]), settle_left

    # ---- state changes ------------------------------------------------------
    def _set_target(self, now: float, amps: int) -> None:
        if amps == 0 and self.target != 0:
            self.paused_at = now
        elif amps > 0:
            self.paused_at = None
        self.target = amps

    def raise_hold(self, now: float) -> float:
        """The current raise hold: the base, doubled for each recent punished raise."""
        cfg = self._cfg()
        level = self._cycle_level_at(now)
        return min(cfg.raise_hold_max_s, cfg.raise_hold_s * (2**level))

    def _cycle_level_at(self, now: float) -> int:
        if self._cycle_seen_at is None or self._cycle_level == 0:
            return self._cycle_level
        forgotten = int((now - self._cycle_seen_at) // self._cfg().cycle_forget_s)
        return max(0, self._cycle_level - forgotten)

    def _note_cut(self, now: float) -> None:
        cfg = self._cfg()
        if self._last_raise_at is not None and now - self._last_raise_at <= cfg.cycle_window_s:
            self._cycle_level = min(self._cycle_level_at(now) + 1, 16)
            self._cycle_seen_at = now
            self._last_raise_at = None

    # ---- decision -----------------------------------------------------------
    def propose(self, now: float, obs: Observations) -> Proposal:
        cfg = self._cfg()
        cap = cfg.current_cap
        used = self.used_phases(now, obs)
        draw, settle_left = self.car_draw(now, obs, used)
        meter = [0.0 if m is None else m for m in obs.meter]
        headroom = tuple(cfg.max_a - (meter[n] - draw[n]) for n in PHASES)
        binding = min(used, key=lambda n: (headroom[n], n))
        available = headroom[binding]
        loadbal = tuple(max(0.0, cap - headroom[n]) if n in used else 0.0 for n in PHASES)
        where = f"{phase_name(binding)} at {meter[binding]:.1f} A"

        def proposal(reason: str) -> Proposal:
            assert self.target is not None
            return Proposal(
                target=self.target,
                loadbal=(loadbal[0], loadbal[1], loadbal[2]),
                headroom=(headroom[0], headroom[1], headroom[2]),
                reason=reason,
            )

        if self.target is None:
            self._set_target(now, self._fitting(available))
            return proposal(f"start: {where}, {self.target} A fits")

        if self.target > cap or (self.target > 0 and self.target > available + cfg.cut_tolerance_a):
            new = min(self._fitting(available), cap)
            self._note_cut(now)
            self._raise_since = None
            self._set_target(now, new)
            if new == 0:
                return proposal(f"{where}, pause (only {max(available, 0):.1f} A left)")
            return proposal(f"{where}, cut to {new} A")

        if settle_left > 0:
            self._raise_since = None
            return proposal(
                f"{where}; waiting for the charger to follow {obs.commanded} A "
                f"({cfg.settle_s - settle_left:.0f}/{cfg.settle_s:.0f} s)"
            )
        return self._consider_raise(now, available, where, proposal)

    def _fitting(self, available: float) -> int:
        """The most the car may draw within `available` amps per phase: whole amps, or 0."""
        cfg = self._cfg()
        amps = min(math.floor(available), cfg.current_cap)
        return amps if amps >= cfg.min_current else 0

    def _consider_raise(
        self, now: float, available: float, where: str, proposal: Callable[[str], Proposal]
    ) -> Proposal:
        cfg = self._cfg()
        assert self.target is not None
        paused = self.target == 0
        candidate = min(cfg.current_cap, math.floor(available - cfg.raise_margin_a))
        needed = cfg.min_current + 1 if paused else self.target + 1
        paused_for = 0.0 if self.paused_at is None else now - self.paused_at
        if candidate < needed:
            self._raise_since = None
            if paused:
                return proposal(
                    f"paused {paused_for:.0f}/{cfg.min_pause_s:.0f} s; {where}, "
                    f"resume needs {needed} A"
                )
            if self.target >= cfg.current_cap:
                return proposal(f"full power {self.target} A")
            return proposal(f"{where}, holding {self.target} A")
        if self._raise_since is None:
            self._raise_since = now
            self._raise_level = candidate
        else:
            self._raise_level = min(self._raise_level, candidate)
        held = now - self._raise_since
        hold = self.raise_hold(now)
        if held >= hold and (not paused or paused_for >= cfg.min_pause_s):
            level = self._raise_level
            self._raise_since = None
            self._last_raise_at = now
            self._set_target(now, level)
            verb = "resume at" if paused else "raise to"
            return proposal(f"headroom held {held:.0f} s: {verb} {level} A")
        if paused:
            return proposal(
                f"paused {paused_for:.0f}/{cfg.min_pause_s:.0f} s; "
                f"resume at {self._raise_level} A held {held:.0f}/{hold:.0f} s"
            )
        return proposal(f"raise to {self._raise_level} A held {held:.0f}/{hold:.0f} s")
