"""Strategy `homey`: the original Homey flows, arithmetic unchanged.

The flows ElAmp1..3 fire when a phase *becomes greater than* MaxA (upward
crossing only) and grow that phase's reduction by the overshoot; ElRestore runs every `restore_interval_s` while ChargeAt is
below the default. Both flows set ChargeAt one second after the LoadBal update
(the flows' "after 1 s" delay), reading the variables as they are by then.
ChargeAt and LoadBal keep the flows' raw values (fractions, below 6, below 0);
only the shared output stage turns them into what the charger may be sent.
"""

from __future__ import annotations

from typing import Callable

from bridge.balancer.model import PHASES, BalancerConfig, Observations, Proposal, phase_name

FLOW_CHARGEAT_DELAY_S = 1.0  # the flows' "after 1 s" between LoadBal and ChargeAt


class HomeyStrategy:
    name = "homey"

    def __init__(self, cfg: Callable[[], BalancerConfig]) -> None:
        self._cfg = cfg
        self.charge_at: float = float(cfg().default_current)
        self.loadbal: list[float] = [0.0, 0.0, 0.0]
        self._chargeat_due: float | None = None
        self._next_restore: float | None = None
        self._last_event = f"full power {cfg().default_current} A"

    # ---- the flows ----------------------------------------------------------
    def on_meter(self, now: float, phase: int, amps: float, previous: float | None) -> None:
        self._start_restore_timer(now)
        max_a = self._cfg().max_a
        # Homey's "becomes greater than" fires on the transition; with no earlier
        # value the first reading above MaxA counts as one.
        crossed = amps > max_a and (previous is None or previous <= max_a)
        if not crossed:
            return
        self.loadbal[phase] = max(0.0, self.loadbal[phase] + amps - max_a)
        self._chargeat_due = now + FLOW_CHARGEAT_DELAY_S
        self._last_event = (
            f"{phase_name(phase)} rose to {amps:.1f} A over MaxA {max_a:g} A: "
            f"LoadBal{phase_name(phase)} {self.loadbal[phase]:.1f}"
        )

    def _restore(self, now: float, meter: tuple[float | None, ...]) -> None:
        cfg = self._cfg()
        reduction = cfg.default_current - self.charge_at
        for n in PHASES:
            amps = meter[n] if meter[n] is not None else cfg.max_a
            self.loadbal[n] = max(0.0, reduction - max(0.0, cfg.max_a - amps))
        self._chargeat_due = now + FLOW_CHARGEAT_DELAY_S
        self._last_event = "restore (every {:g} s)".format(cfg.restore_interval_s)

    def _start_restore_timer(self, now: float) -> None:
        if self._next_restore is None:
            self._next_restore = now + self._cfg().restore_interval_s

    def _apply_chargeat(self) -> None:
        self.charge_at = self._cfg().default_current - max(self.loadbal)
        self._chargeat_due = None

    # ---- façade hooks -------------------------------------------------------
    def on_reconfigure(self, now: float, old: BalancerConfig) -> None:
        if self._cfg().default_current != old.default_current:
            self._apply_chargeat()

    def on_fail_safe(self, now: float, current: int) -> None:
        # The original flows have no fail-safe; their variables carry on untouched.
        pass

    def propose(self, now: float, obs: Observations) -> Proposal:
        cfg = self._cfg()
        self._start_restore_timer(now)
        if self._chargeat_due is not None and now >= self._chargeat_due:
            self._apply_chargeat()
        assert self._next_restore is not None
        if now >= self._next_restore:
            # A timer that fires once per interval; a late tick does not replay missed runs.
            while self._next_restore <= now:
                self._next_restore += cfg.restore_interval_s
            if self.charge_at < cfg.default_current:
                self._restore(now, obs.meter)
        headroom = tuple(None if a is None else cfg.max_a - a for a in obs.meter)
        if self._chargeat_due is not None:
            reason = f"{self._last_event}; ChargeAt follows in {self._chargeat_due - now:.0f} s"
        else:
            reason = f"{self._last_event}; ChargeAt {self.charge_at:g}"
        return Proposal(
            target=self.charge_at,
            loadbal=(self.loadbal[0], self.loadbal[1], self.loadbal[2]),
            headroom=headroom,  # type: ignore[arg-type]
            reason=reason,
        )
