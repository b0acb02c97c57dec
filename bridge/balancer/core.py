"""The balancer façade: inputs, the meter fail-safe and the output stage shared by strategies.

Pure: no I/O, no clock (every call passes `now`), no threads, deterministic.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import deque
from typing import NamedTuple, Protocol

from bridge.balancer.model import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    PHASES,
    BalancerConfig,
    Decision,
    Observations,
    OptTriple,
    Proposal,
    Triple,
    connector_limit,
    paused_by_power_limit,
    phase_name,
    waiting_for_meter,
    whole_amps_for_charger,
)


class Strategy(Protocol):
    name: str

    def on_meter(self, now: float, phase: int, amps: float, previous: float | None) -> None: ...

    def on_reconfigure(self, now: float, old: BalancerConfig) -> None: ...

    def on_fail_safe(self, now: float, current: int) -> None: ...

    def propose(self, now: float, obs: Observations) -> Proposal: ...


def _strategies() -> dict[str, type]:
    # Imported here because the strategies import this package's model types.
    from bridge.balancer.adaptive import AdaptiveStrategy
    from bridge.balancer.homey import HomeyStrategy

    classes = {cls.name: cls for cls in (AdaptiveStrategy, HomeyStrategy)}
    assert tuple(classes) == STRATEGIES, "STRATEGIES names every strategy class"
    return classes


# A phase's usual interval: the 90th percentile of its last 20 intervals between readings, once
# there are 20; readings closer than 0.5 s are one telegram (a meter that sends power, current and
# voltage one after the other), not a shorter interval.
USUAL_INTERVAL_READINGS = 20
USUAL_INTERVAL_MIN_S = 0.5


def meter_staleness(now: float, meter_at: OptTriple, cfg: BalancerConfig,
                    limits_s: tuple[float, float, float] | None = None) -> str | None:
    """Why the meter counts as stale (a user-readable phrase), or None when it is live.

    A phase is stale when silent for `limits_s` (per phase; `stale_after_s` when not given)."""
    never = [phase_name(n) for n in PHASES if meter_at[n] is None]
    if never:
        return f"no reading yet on {', '.join(never)}"
    limits = limits_s or (cfg.stale_after_s,) * 3
    silent = [
        (phase_name(n), now - t) for n in PHASES if (t := meter_at[n]) is not None and now - t >= limits[n]
    ]
    if silent:
        return ", ".join(f"{name} silent {age:.0f} s" for name, age in silent)
    return None


def silence_pause(now: float, meter_at: OptTriple, started_at: float, cfg: BalancerConfig) -> str | None:
    """Why the cars pause for the meter's silence (a user-readable phrase), or None: every phase
    silent (or never heard since the start) for `failsafe_pause_after_s`. Blind that long, not even
    the fail-safe current is safe: the house may have grown by anything meanwhile."""
    silent = min(now - (started_at if t is None else t) for t in meter_at)
    if silent < cfg.failsafe_pause_after_s:
        return None
    return (f"meter silent {silent:.0f} s on every phase (BALANCER_FAILSAFE_PAUSE_AFTER_S "
            f"{cfg.failsafe_pause_after_s:.0f} s)")


class FailSafe(NamedTuple):
    """What the cars together may take on each phase while the meter cannot be trusted, and why."""

    current: int  # per phase, for every car together (0: paused)
    reason: str
    silence: bool  # paused for the meter's silence on every phase (not the fail-safe current's pause)


def fail_safe_current(cfg: BalancerConfig) -> int:
    """What the cars together may take on each phase blind (BALANCER_FAILSAFE_CURRENT; 0 = pause):
    under a stale main meter, and under a circuit's stale meter for its cars."""
    return whole_amps_for_charger(cfg.failsafe_current, cfg)


def fail_safe(now: float, why: str, meter_at: OptTriple, started_at: float, cfg: BalancerConfig) -> FailSafe:
    """The meter fail-safe, for one car or several: the fail-safe current (0 = pause) on each
    phase, for the cars together, since what one car may take blind is what all may (the house's
    load is unknown); every phase silent for `failsafe_pause_after_s`: paused (`silence_pause`).
    Never a raise: each car takes at most what it has (`fail_safe_cap`)."""
    silence = silence_pause(now, meter_at, started_at, cfg)
    if silence is not None:
        return FailSafe(0, f"{silence}: paused until the meter speaks again", True)
    current = fail_safe_current(cfg)
    return FailSafe(current, f"meter stale ({why}): fail-safe {current} A", False)


def fail_safe_cap(cap: int, held: int | None) -> int:
    """The fail-safe never raises: a car paused (or cut below `cap`) when the meter went stale
    stays there, for the house that left it no room may still be on. `held`: what it has (None:
    nothing given yet)."""
    return cap if held is None else min(cap, held)


class Balancer:
    """Decides the charge current from meter and charger readings; see docs/DESIGN.md."""

    def __init__(self, cfg: BalancerConfig | None = None, strategy: str = DEFAULT_STRATEGY) -> None:
        classes = _strategies()
        if strategy not in classes:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        self._cfg = cfg if cfg is not None else BalancerConfig()
        self._strategy_name = strategy
        self._meter: list[float | None] = [None, None, None]
        self._meter_at: list[float | None] = [None, None, None]
        self._intervals = [deque(maxlen=USUAL_INTERVAL_READINGS) for _ in PHASES]
        self._charger_currents: Triple | None = None
        self._charger_phases: tuple[bool, bool, bool] | None = None
        self._charger_at: float | None = None
        self._charger_offered: int | None = None
        self._commanded: int | None = None
        self._commanded_at: float | None = None
        self._recent_commands: list[tuple[float, int]] = []
        self._started_at: float | None = None
        self._power_cap: int | None = None
        self._power_cap_reason = ""
        self._strategy: Strategy = classes[strategy](self._cfg_view)
        self._reader: Strategy | None = None

    # The strategies read the live config through this, so reconfigure() reaches them.
    def _cfg_view(self) -> BalancerConfig:
        return self._cfg

    @property
    def config(self) -> BalancerConfig:
        return self._cfg

    @property
    def strategy(self) -> str:
        return self._strategy_name

    # ---- inputs -------------------------------------------------------------
    def _seen(self, now: float) -> None:
        # The balancer has no clock: its start is the first `now` it is given.
        if self._started_at is None:
            self._started_at = now

    def meter(self, now: float, phase: int, amps: float) -> None:
        self._seen(now)
        if phase not in PHASES:
            raise ValueError(f"phase must be 0, 1 or 2 (L1..L3), got {phase!r}")
        if not math.isfinite(amps):
            raise ValueError(f"meter current must be finite, got {amps!r}")
        previous = self._meter[phase]
        self._meter[phase] = float(amps)
        self._heard(now, phase)
        self._strategy.on_meter(now, phase, float(amps), previous)

    def meter_alive(self, now: float) -> None:
        self._seen(now)
        # A heartbeat vouches only for phases that have a value to vouch for.
        for n in PHASES:
            if self._meter_at[n] is not None:
                self._heard(now, n)

    def _heard(self, now: float, phase: int) -> None:
        last = self._meter_at[phase]
        if last is not None and now - last >= USUAL_INTERVAL_MIN_S:
            self._intervals[phase].append(now - last)
        self._meter_at[phase] = now

    def silence_limits(self) -> tuple[float, float, float]:
        """How long each phase may be silent before the meter counts as stale: `stale_after_s`, or
        for a phase that usually speaks often, `meter_gap_intervals` times its usual interval, at
        least `meter_gap_min_s`."""
        cfg = self._cfg
        limits = []
        for n in PHASES:
            intervals = self._intervals[n]
            limit = cfg.stale_after_s
            if len(intervals) == USUAL_INTERVAL_READINGS:
                usual = statistics.quantiles(intervals, n=10, method="inclusive")[8]
                limit = min(limit, max(cfg.meter_gap_min_s, cfg.meter_gap_intervals * usual))
            limits.append(limit)
        return (limits[0], limits[1], limits[2])

    def charger(
        self,
        now: float,
        currents: tuple[float, float, float] | None,
        phases: tuple[bool, bool, bool] | None,
    ) -> None:
        """What the charger reports it delivers per phase: (0, 0, 0) when it reports that no car
        draws; None when it does not say (the report is forgotten, the commands count again)."""
        self._seen(now)
        if currents is None:
            self._charger_currents = self._charger_phases = self._charger_at = None
            self._charger_offered = None
            return
        self._charger_currents = tuple(max(0.0, float(c)) for c in currents)  # type: ignore[assignment]
        self._charger_phases = None if phases is None else tuple(bool(p) for p in phases)  # type: ignore[assignment]
        self._charger_at = now
        self._charger_offered = self._least_offered(now)

    def _least_offered(self, now: float) -> int | None:
        """The least current the car may have been offered at `now` (a command still on its way
        or the one before it), or None when nothing has been written."""
        horizon = now - self._cfg.settle_s
        settled = [a for t, a in self._recent_commands if t <= horizon][-1:]
        unsettled = [a for t, a in self._recent_commands if t > horizon]
        offered = settled + unsettled
        return min(offered) if offered else None

    def commanded(self, now: float, amps: int) -> None:
        self._seen(now)
        amps = int(amps)
        if amps != self._commanded or self._commanded_at is None:
            self._commanded_at = now
            self._recent_commands.append((now, amps))
        self._commanded = amps
        self._forget_settled_commands(now)

    def _forget_settled_commands(self, now: float) -> None:
        # Keep the newest command older than settle_s before the oldest meter reading still in
        # use: the car surely followed it then. A reading older than the fail-safe's limit is
        # not used, so the history never grows beyond that.
        readings = [t for t in self._meter_at if t is not None and now - t < self._cfg.stale_after_s]
        horizon = min([now, *readings]) - self._cfg.settle_s
        recent = self._recent_commands
        while len(recent) > 1 and recent[1][0] <= horizon:
            del recent[0]

    def power_limit(self, now: float, amps_cap: float | None, reason: str = "") -> None:
        """A limit on the car's current from a power budget (the capacity tariff, solar surplus), or
        None for none. It caps every decision's target before the output stage, so a lower cap cuts at
        once and a higher one is paced like any raise; the fuse limits apply as well."""
        self._seen(now)
        if amps_cap is not None and not (math.isfinite(amps_cap) and amps_cap >= 0):
            raise ValueError(f"a power limit must be a finite current of at least 0 A, got {amps_cap!r}")
        self._power_cap = None if amps_cap is None else math.floor(amps_cap)
        self._power_cap_reason = reason

    def car_draw(self, now: float) -> tuple[Triple, bool]:
        """What the car draws per phase in the meter's latest reading, as the adaptive strategy reads
        it (its charger's report when taken after the last write settled, else the setting the meter
        showed it follow or the one it surely follows), and whether that is in doubt (a write on its
        way, not seen landing yet): for the power limits, which take the car out of the meter."""
        reader = self._strategy if hasattr(self._strategy, "car_draw_range") else self._draw_reader
        return reader.car_draw(now, self.observations())  # type: ignore[attr-defined]

    @property
    def _draw_reader(self) -> Strategy:
        """The homey strategy reads no draw: an adaptive reader of the same inputs (commands and
        reports, not the meter's landings)."""
        if self._reader is None:
            self._reader = _strategies()["adaptive"](self._cfg_view)
        return self._reader

    def reconfigure(self, now: float, **changes: object) -> BalancerConfig:
        self._seen(now)
        known = {f.name for f in dataclasses.fields(BalancerConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown balancer setting(s): {', '.join(unknown)}")
        old = self._cfg
        self._cfg = dataclasses.replace(old, **changes)  # type: ignore[arg-type]
        self._strategy.on_reconfigure(now, old)
        return self._cfg

    # ---- decision -----------------------------------------------------------
    def observations(self) -> Observations:
        return Observations(
            meter=tuple(self._meter),  # type: ignore[arg-type]
            meter_at=tuple(self._meter_at),  # type: ignore[arg-type]
            charger_currents=self._charger_currents,
            charger_phases=self._charger_phases,
            charger_at=self._charger_at,
            charger_offered=self._charger_offered,
            commanded=self._commanded,
            commanded_at=self._commanded_at,
            recent_commands=tuple(self._recent_commands),
        )

    def decide(self, now: float) -> Decision:
        self._seen(now)
        self._forget_settled_commands(now)
        obs = self.observations()
        stale = meter_staleness(now, obs.meter_at, self._cfg, self.silence_limits())
        if stale is not None:
            assert self._started_at is not None
            if waiting_for_meter(now, self._started_at, obs.meter_at, self._cfg):
                return self._waiting_for_meter(now - self._started_at, stale)
            return self._fail_safe(now, obs, stale)
        proposal = self._strategy.propose(now, obs)
        return self._output(now, proposal.target, proposal, proposal.reason, meter_stale=False)

    def _waiting_for_meter(self, waited: float, why: str) -> Decision:
        """Just started: the meter has `stale_after_s` to speak before the fail-safe applies; until
        then nothing is written (the charger keeps what it has, assumed at most the current cap)."""
        charge_at = self._commanded if self._commanded is not None else self._cfg.current_cap
        return Decision(
            charge_at=charge_at,
            command=None,
            loadbal=(0.0, 0.0, 0.0),
            phase_currents=tuple(self._meter),  # type: ignore[arg-type]
            headroom=(None, None, None),
            meter_stale=False,
            paused=charge_at == 0,
            reason=f"waiting for the meter ({waited:.0f}/{self._cfg.stale_after_s:.0f} s; {why})",
            strategy=self._strategy_name,
            waiting_for_meter=True,
        )

    def _fail_safe(self, now: float, obs: Observations, why: str) -> Decision:
        """The meter cannot be trusted: `fail_safe` for this one car."""
        assert self._started_at is not None
        current, reason, _silence = fail_safe(now, why, obs.meter_at, self._started_at, self._cfg)
        if fail_safe_cap(current, self._commanded) < current:
            current = fail_safe_cap(current, self._commanded)
            reason = f"meter stale ({why}): {'paused' if current == 0 else f'{current} A'}, below the fail-safe"
        self._strategy.on_fail_safe(now, current)
        proposal = Proposal(
            target=current,
            loadbal=(0.0, 0.0, 0.0),
            headroom=(None, None, None),
            reason=reason,
        )
        return self._output(now, current, proposal, proposal.reason, meter_stale=True)

    def _output(
        self, now: float, target: float, proposal: Proposal, reason: str, *, meter_stale: bool
    ) -> Decision:
        """The output stage: every limit (`connector_limit`), raises paced, cuts at once."""
        if self._power_cap is not None and self._power_cap < target:
            if connector_limit(target, self._cfg, self._power_cap) == 0 and not meter_stale:
                reason = paused_by_power_limit(self._power_cap_reason)
            else:
                reason = f"{reason}; {self._power_cap_reason or 'power limit'}: at most {self._power_cap} A"
        charge_at = connector_limit(target, self._cfg, self._power_cap)
        last, last_at = self._commanded, self._commanded_at
        if last is not None and last_at is not None and charge_at > last:
            wait = self._cfg.min_command_interval_s - (now - last_at)
            if wait > 0:
                reason = f"{reason}; raise to {charge_at} A in {math.ceil(wait)} s (command pacing)"
                charge_at = last
        return Decision(
            charge_at=charge_at,
            command=None if charge_at == last else charge_at,
            loadbal=proposal.loadbal,
            phase_currents=tuple(self._meter),  # type: ignore[arg-type]
            headroom=proposal.headroom,
            meter_stale=meter_stale,
            paused=charge_at == 0,
            reason=reason,
            strategy=self._strategy_name,
        )
