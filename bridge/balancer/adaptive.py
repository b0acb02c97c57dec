"""Strategy `adaptive` (the default): per-phase headroom, immediate cuts, budgeted quick raises.

The house's own load on a phase is the meter minus what the car draws there.
The car's draw comes from the charger's own measurements when they are fresh
and taken after the latest command settled; otherwise from the commands: while
a command is in flight (`settle_s` after it was written: the cloud and the car
take seconds to follow) the car may draw the old or the new value. Whether to
cut is judged with the car at the larger (an overshoot already being cut is not
cut twice, a raise on its way is not mistaken for a new load); for a raise the
smaller (the house is never taken for lighter than it may be). A report that
the car draws nothing while it was offered at least the minimum current (no
car, or a car that does not want to charge now) holds whatever is written
next: the car is taken to draw nothing until a report says otherwise, so the
house is never taken for lighter than it is when such a car starts on its own.
A command's flight ends early when the meter shows the car following it (two
or more of its phases stepping by the command's change at once).

Cuts are sized with the car where it was before the commands in flight: a cut
in flight has most likely not reached it yet, and a raise in flight may not
have either (counting it would leave the cut short by the raise).

Cuts are immediate and by the whole overshoot (beyond `overshoot_tolerance_a`,
which never reaches the fuse). Raises go to the level the headroom allowed at
every reading of the raise hold (less `raise_margin_a`): the hold is a window
over the house's own load, so a load that pulses faster than the hold (an
induction hob at a low setting) is fitted in its on-state instead of chased.

How long the hold is depends on what a raise may cost. Every raise after a cut
invites the next cut when the same load comes back (oven and sauna thermostats,
hob pulses): two writes, and `lag` seconds over MaxA. The strategy tells the
same load coming back from a different load coming on (`loads.LoadTracker`:
a load's signature is the phases it steps on and its step on each). A load that
came back and whose learned off-time is too short to pay for a raise (the amps
won times the off-time less the hold and `settle_s`, below
`cycle_follow_gain_as`) is a cycling load: while it is off its step is kept
free (its reserve), so the car holds the level that fits the load's on-state
and nothing is chased. When it stops for good (off longer than
`load_forget_factor` times its longest off-time, and at least `cycle_window_s`)
the reserve is dropped and the car raises after the short hold. Cuts explained
by a load seen switching on (within `cut_explained_s`, or once the car's draw
is sure again after a change in flight) never lengthen the hold.

The hold itself: the strategy keeps a budget of cloud writes
(`write_budget_per_h`, at most `write_budget_burst` saved up). While the budget
can pay for a raise and the cut it may invite, raises wait only
`quick_raise_hold_s`. A cut that no switching load explains, within
`cycle_window_s` of a raise, doubles the hold when the budget runs short, up to
`raise_hold_max_s`, and each `cycle_forget_s` without one halves it again.

After the meter fail-safe, the first settled decision on live readings goes
straight to the level they allow: the fail-safe's cut was the silence's, not
the house's.

Pauses: below the minimum current the car pauses; it resumes, at the level the
headroom held, as soon as `min_pause_s` has passed since the pause began and
min + 1 A has held for the hold (the hold may run during the pause).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable

from bridge.balancer.loads import LoadTracker
from bridge.balancer.model import (
    PHASES,
    BalancerConfig,
    Observations,
    Proposal,
    Triple,
    CutCycles,
    WriteBudget,
    min_pause_left,
    phase_name,
    raise_holds,
    whole_amps_for_charger,
)

PHASE_IN_USE_A = 1.0  # a measured phase current at or above this is a phase the car uses
WRITES_PER_RAISE = 2  # a raise, and the cut a cycling load may answer it with
# A command's landing is seen on the meter when at least two of the car's phases step by the
# command's change within this tolerance, from one reading to the next.
LANDING_TOLERANCE_A = 1.0
LANDING_MIN_CHANGE_A = 2.0


class AdaptiveStrategy:
    name = "adaptive"

    def __init__(self, cfg: Callable[[], BalancerConfig]) -> None:
        self._cfg = cfg
        self.target: int | None = None  # what the car should draw; 0 = paused
        self.paused_at: float | None = None
        self._cycles = CutCycles()
        # The spare current on the car's phases (the least of them), reading by reading.
        self._history: deque[tuple[float, float]] = deque()
        self._history_since: float | None = None
        self._history_phases: tuple[int, ...] = ()
        self._budget = WriteBudget.full(cfg())
        self._loads = LoadTracker()
        self._reserved_load = None
        self._after_fail_safe = False
        self._fail_safe_paused = False  # paused by the fail-safe (the meter's silence), not by the house
        # When the meter showed the car following a command (command time -> reading time), and
        # the readings of the previous decision to see it by.
        self._landed: dict[float, float] = {}
        self._previous_readings: tuple[tuple[float | None, ...], tuple[float | None, ...]] | None = None

    # ---- hooks --------------------------------------------------------------
    def on_meter(self, now: float, phase: int, amps: float, previous: float | None) -> None:
        pass

    def on_reconfigure(self, now: float, old: BalancerConfig) -> None:
        self._forget_history()
        self._budget.fit(self._cfg())

    def on_fail_safe(self, now: float, current: int) -> None:
        self._forget_history()
        self._loads.reset()
        if self.target is None or current < self.target:
            if current == 0 and self.target:
                self._fail_safe_paused = True
            self._set_target(now, current)
        self._after_fail_safe = True

    def _forget_history(self) -> None:
        self._history.clear()
        self._history_since = None

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
        return (obs.charger_currents is not None and obs.charger_at is not None
                and now - obs.charger_at <= self._cfg().charger_stale_after_s)

    def _drawn(self, amps: int | None) -> int:
        """What a car draws when told `amps`: nothing below the minimum."""
        if amps is None or amps < self._cfg().min_current:
            return 0
        return amps

    def car_draw_range(self, now: float, obs: Observations,
                       used: tuple[int, ...]) -> tuple[Triple, Triple, Triple, float]:
        """The most and the least the car may have drawn per phase when that phase's meter reading
        was taken, what it drew if none of the commands still in flight had reached it, and the
        seconds until the latest command settles.

        A reading is matched with the draw of its own moment: a reading taken before a cut reached
        the car still carries the old draw, and read against the new one it would cut again."""
        cfg = self._cfg()
        settle_left = 0.0
        if obs.commanded_at is not None and self._landed.get(obs.commanded_at, math.inf) > now:
            settle_left = max(0.0, obs.commanded_at + cfg.settle_s - now)
        high = [0.0, 0.0, 0.0]
        low = [0.0, 0.0, 0.0]
        before = [0.0, 0.0, 0.0]
        for n in used:
            high[n], low[n], before[n] = self._draw_at(self._reading_at(now, obs, n), obs, n)
        return (high[0], high[1], high[2]), (low[0], low[1], low[2]), (before[0], before[1], before[2]), settle_left

    def car_draw(self, now: float, obs: Observations) -> tuple[Triple, bool]:
        """What the car draws per phase in the meter's latest reading (`car_draw_range`'s third), and
        whether that is in doubt: a write is on its way and neither the meter (the car seen following
        it) nor a report taken after it settled says yet whether the car draws the old setting or
        the new. A reading in doubt, taken as the house's own load, would count the car's start as
        the house's (the surplus falls, the car stops) or its stop as export (it starts again)."""
        used = self.used_phases(now, obs)
        high, low, before, _settle = self.car_draw_range(now, obs, used)
        if all(abs(h - lo) <= 1e-9 for h, lo in zip(high, low)):
            return before, False
        report = obs.charger_currents
        if (report is not None and self._charger_fresh(now, obs) and obs.commanded_at is not None
                and obs.charger_at is not None and obs.charger_at >= obs.commanded_at
                and all(self._reading_at(now, obs, n) >= obs.charger_at for n in used)):
            # The charger reported after the last write, and the meter read after the report: when
            # the report shows the new setting, the car followed it before that reading. A reading
            # older than the report may have been taken before the car followed: in doubt.
            expected = float(self._drawn(obs.commanded))
            if all(abs(report[n] - expected) <= LANDING_TOLERANCE_A for n in used):
                return report, False
        return before, True

    @staticmethod
    def _reading_at(now: float, obs: Observations, phase: int) -> float:
        """When the meter's latest reading on `phase` was taken (`now` before any)."""
        at = obs.meter_at[phase]
        return now if at is None else min(at, now)

    def _draw_at(self, t: float, obs: Observations, phase: int) -> tuple[float, float, float]:
        """The most and the least the car may have drawn on `phase` at time `t`, and what it drew
        if no command still in flight at `t` had reached it."""
        cfg = self._cfg()
        commands = obs.recent_commands
        # Commands written after `t` had no part in a reading taken at `t`.
        known = [(ct, a) for ct, a in commands if ct <= t] or list(commands[:1])
        last_at = known[-1][0] if known else None
        report = obs.charger_currents if self._charger_fresh(t, obs) else None
        if report is not None and obs.charger_at is not None:
            # A report taken after a command written since `t` may show the car at that newer
            # setting, not at the one a reading at `t` carries (a cut read so counts as house load).
            newer = any(t < ct <= obs.charger_at for ct, _a in commands)
            if not newer and (last_at is None
                              or (obs.charger_at >= last_at + cfg.settle_s and t >= last_at + cfg.settle_s)):
                # Measured after that command settled: the ground truth.
                return report[phase], report[phase], report[phase]
            offered = obs.charger_offered
            if offered is None:
                # Reported before any setting was known: a setting learned since that was already on
                # the charger then (found there, or a charger left alone assumed at its cap) was its offer.
                in_force = [a for ct, a in commands if ct <= obs.charger_at][-1:]
                offered = in_force[0] if in_force else None
            if max(report) < PHASE_IN_USE_A and offered is not None and offered >= cfg.min_current:
                # Offered enough to charge and not charging: no car, or one that does not want to
                # charge now. Another current does not change that; when the car starts on its
                # own the next report says so (until then its draw is taken for the house's).
                # At an offer not known (the first write came after the report) it says nothing of
                # the kind: the charger may have held its car until then (an OCPP charger before its
                # first profile, or its transaction's start) and the car draws the write at once.
                return 0.0, 0.0, 0.0
        if not known:
            # Nothing written and nothing measured yet (the bridge just started): a
            # charger left alone charges at full power, and taking the meter as all
            # house would pause the car for min_pause_s on every restart.
            amps0 = float(self._drawn(cfg.current_cap))
            return amps0, amps0, amps0
        # Any command still settling at `t` may be the one the car followed, unless the meter showed
        # the car following a newer one.
        horizon = t - cfg.settle_s
        landed = [i for i, (ct, _a) in enumerate(known) if self._landed.get(ct, math.inf) <= t]
        if landed:
            known = known[landed[-1]:]
            horizon = min(horizon, known[0][0])
        settled = [a for ct, a in known if ct <= horizon][-1:]
        unsettled = [a for ct, a in known if ct > horizon]
        candidates = [float(self._drawn(a)) for a in settled + unsettled] or [0.0]
        return max(candidates), min(candidates), candidates[0]

    def _watch_landing(self, now: float, obs: Observations, used: tuple[int, ...]) -> None:
        """See on the meter when the car follows the oldest command still in flight: at least two of
        its phases step by the command's change at once (a one-phase car's step is no proof)."""
        cfg = self._cfg()
        commands = obs.recent_commands
        kept = {ct for ct, _a in commands}
        self._landed = {ct: at for ct, at in self._landed.items() if ct in kept}
        previous, self._previous_readings = self._previous_readings, (obs.meter, obs.meter_at)
        if previous is None or len(used) < 2:
            return
        before, before_at = previous
        if any(obs.meter_at[n] is None or before_at[n] is None or obs.meter_at[n] <= before_at[n]  # type: ignore[operator]
               for n in used):
            return
        for i in range(1, len(commands)):
            ct, amps = commands[i]
            if ct in self._landed or ct + cfg.settle_s <= now:
                continue
            change = self._drawn(amps) - self._drawn(commands[i - 1][1])
            if abs(change) >= LANDING_MIN_CHANGE_A:
                steps = [obs.meter[n] - before[n] for n in used]  # type: ignore[operator]
                if sum(1 for step in steps if abs(step - change) <= LANDING_TOLERANCE_A) >= 2:
                    self._landed[ct] = min(obs.meter_at[n] for n in used)  # type: ignore[type-var]
            return  # the car follows commands in order: only the oldest in flight can land now

    # ---- state changes ------------------------------------------------------
    def _set_target(self, now: float, amps: int) -> None:
        if amps != self.target and self.target is not None:
            self._spend(now, 1.0)
        if amps == 0 and self.target != 0:
            self.paused_at = now
        elif amps > 0:
            self.paused_at = None
        self.target = amps

    # ---- the write budget ---------------------------------------------------
    def tokens(self, now: float) -> float:
        """Writes the budget can pay for now."""
        return self._budget.available(now, self._cfg())

    def _spend(self, now: float, writes: float) -> None:
        self._budget.spend(now, self._cfg(), writes)

    # ---- the raise hold -----------------------------------------------------
    def raise_hold(self, now: float, level: int | None = None) -> float:
        """The hold before a raise to `level`: short when a quick raise is worth its cost, else the cycle hold."""
        cfg = self._cfg()
        cycling = self._cycle_level_at(now)
        if self._quick_raise_allowed(now, cycling, level):
            return raise_holds(cycling, cfg)[0]
        return raise_holds(cycling, cfg)[1]

    def _quick_raise_allowed(self, now: float, cycling: int, level: int | None) -> bool:
        """A quick raise may be answered by a cut (two writes, `lag` seconds over MaxA): is it worth it?"""
        cfg = self._cfg()
        if self.tokens(now) < WRITES_PER_RAISE:
            return False
        if cycling == 0:
            return True  # nothing has cycled lately: the load that caused the cut has most likely gone
        step = 0 if level is None or self.target is None else level - max(self.target, cfg.min_current - 1)
        return step >= cfg.follow_min_step_a

    def _cycle_level_at(self, now: float) -> int:
        return self._cycles.level_at(now, self._cfg())

    # ---- the headroom's history ---------------------------------------------
    def _record(self, now: float, used: tuple[int, ...], spare: float | None) -> None:
        """Keep the spare current of this reading; None while a change is in flight (the car's draw is unsure)."""
        if used != self._history_phases:
            self._forget_history()
            self._history_phases = used
        history = self._history
        if history and now < history[-1][0]:
            self._forget_history()  # time went backwards: start over rather than guess
        if self._history_since is None:
            self._history_since = now
        history.append((now, spare))
        horizon = now - self._cfg().raise_hold_max_s - 1.0
        while len(history) > 1 and history[0][0] < horizon:
            history.popleft()

    def _allows(self, spare: float | None, needed: int, latest: bool) -> bool:
        """Whether a reading leaves room for `needed` amps: the latest strictly, the earlier ones of the hold
        within the cut tolerance (a level at which none of them would have been cut)."""
        if spare is None:
            return False
        cfg = self._cfg()
        slack = 0.0 if latest else cfg.cut_tolerance_a
        return math.floor(spare + slack - cfg.raise_margin_a) >= needed

    def _held(self, now: float, needed: int) -> float:
        """How long every reading has left room for `needed` amps, strictly (an in-flight reading leaves none).

        The hold is strict; only the level reached after it may lean on the cut tolerance (`_level_over`)."""
        history = self._history
        if not history or not self._allows(history[-1][1], needed, latest=True):
            return 0.0
        began = history[-1][0]
        for t, spare in reversed(history):
            if not self._allows(spare, needed, latest=True):
                return now - began
            began = t
        # Nothing kept says otherwise: it has held at least since the oldest reading kept.
        return now - began

    def _level_over(self, now: float, window: float) -> int:
        """The level the readings of the last `window` seconds allowed (see `_allows`)."""
        cfg = self._cfg()
        history = self._history
        if not history or history[-1][1] is None:
            return 0
        level = math.floor(history[-1][1] - cfg.raise_margin_a)  # type: ignore[operator]
        for t, spare in reversed(history):
            if t < now - window:
                break
            if spare is not None:
                level = min(level, math.floor(spare + cfg.cut_tolerance_a - cfg.raise_margin_a))
        return level

    # ---- decision -----------------------------------------------------------
    def propose(self, now: float, obs: Observations) -> Proposal:
        cfg = self._cfg()
        cap = cfg.current_cap
        used = self.used_phases(now, obs)
        self._watch_landing(now, obs, used)
        draw, draw_low, draw_before, settle_left = self.car_draw_range(now, obs, used)
        meter = [0.0 if m is None else m for m in obs.meter]
        headroom = tuple(cfg.max_a - (meter[n] - draw[n]) for n in PHASES)
        # For raises the house is taken at its heaviest: the car at the least it may draw.
        house = tuple(meter[n] - draw_low[n] for n in PHASES)
        self._loads.feed(now, house if settle_left <= 0 else None, cfg)  # type: ignore[arg-type]
        self._cycles.explain_late(now, self._loads.last_up, cfg)
        # Cycling loads that are off now will be back: their steps are kept free.
        reserve, self._reserved_load = self._loads.reserve(now, cfg, house, used, cfg.current_cap)  # type: ignore[arg-type]
        spare = min(cfg.max_a - house[n] - reserve[n] for n in used)
        self._record(now, used, spare if settle_left <= 0 else None)
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
            self._set_target(now, whole_amps_for_charger(available, cfg))
            self._budget.start(now)
            return proposal(f"start: {where}, {self.target} A fits")

        if self.target > cap or (self.target > 0 and self.target > available + cfg.cut_tolerance_a):
            # Even with the car at the most it may draw, the house has grown: cut to what fits with
            # the car where it was before the changes in flight. A cut in flight has not reached it
            # yet (most likely: the cut is not taken twice); a raise in flight may not have either,
            # and counting it would leave the cut short by the raise.
            new = whole_amps_for_charger(min(cfg.max_a - (meter[n] - draw_before[n]) for n in used), cfg)
            self._cycles.note_cut(now, self._loads.last_up, cfg)
            self._set_target(now, new)
            if new == 0:
                return proposal(f"{where}, pause (only {max(available, 0):.1f} A left)")
            return proposal(f"{where}, cut to {new} A")

        above = any(meter[n] > cfg.max_a for n in used)
        if self._after_fail_safe and settle_left <= 0:
            # The meter is back: the fail-safe's cut was the silence's, not the house's, so the car
            # goes back at once to what the live readings allow (a pause the house made keeps its rules).
            self._after_fail_safe = False
            level = min(cap, whole_amps_for_charger(spare - cfg.raise_margin_a, cfg))
            # A pause made for the meter's silence has no minimum pause to wait out.
            resumable, self._fail_safe_paused = self.target > 0 or self._fail_safe_paused, False
            if resumable and self.target < level and not above:
                self._cycles.raised(now)
                verb = "resume at" if not self.target else "raise to"
                self._set_target(now, level)
                return proposal(f"meter back: {where}, {verb} {level} A")
        if settle_left > 0:
            return proposal(
                f"{where}; waiting for the charger to follow {obs.commanded} A "
                f"({cfg.settle_s - settle_left:.0f}/{cfg.settle_s:.0f} s)"
            )
        return self._consider_raise(now, where, above, proposal)

    def _consider_raise(
        self, now: float, where: str, above_max_a: bool, proposal: Callable[[str], Proposal]
    ) -> Proposal:
        cfg = self._cfg()
        assert self.target is not None
        paused = self.target == 0
        needed = cfg.min_current + 1 if paused else self.target + 1
        paused_for = 0.0 if self.paused_at is None else now - self.paused_at
        held = self._held(now, needed)
        if held <= 0 or needed > cfg.current_cap:
            if paused:
                return proposal(
                    f"paused {paused_for:.0f}/{cfg.min_pause_s:.0f} s; {where}, "
                    f"resume needs {needed} A"
                )
            if self.target >= cfg.current_cap:
                return proposal(f"full power {self.target} A")
            load = self._reserved_load or self._loads.cycling_on(cfg)
            if load is not None:
                return proposal(f"{self._loads.describe(load)}: holding {self.target} A")
            return proposal(f"{where}, holding {self.target} A")
        hold = self.raise_hold(now, min(cfg.current_cap, self._level_over(now, held)))
        level = min(cfg.current_cap, self._level_over(now, hold))
        if held >= hold and not above_max_a and (not paused or not min_pause_left(now, self.paused_at, cfg)):
            self._cycles.raised(now)
            self._set_target(now, level)
            verb = "resume at" if paused else "raise to"
            return proposal(f"headroom held {held:.0f} s: {verb} {level} A")
        shown = min(cfg.current_cap, self._level_over(now, held)) if held > 0 else needed
        if paused:
            return proposal(
                f"paused {paused_for:.0f}/{cfg.min_pause_s:.0f} s; "
                f"resume at {shown} A held {held:.0f}/{hold:.0f} s"
            )
        return proposal(f"raise to {shown} A held {held:.0f}/{hold:.0f} s")
