"""Value types shared by the balancer's façade and its strategies."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from collections.abc import Mapping
from typing import Any

from bridge.limits import MAX_CURRENT_A, MIN_CURRENT_A

Triple = tuple[float, float, float]
OptTriple = tuple[float | None, float | None, float | None]

PHASES = (0, 1, 2)
IEC_MIN_CURRENT = MIN_CURRENT_A

# The balancer strategies, by the name BALANCER_STRATEGY takes.
STRATEGIES: tuple[str, ...] = ("adaptive", "homey")
DEFAULT_STRATEGY = "adaptive"


def phase_name(phase: int) -> str:
    return f"L{phase + 1}"


def paused_by_power_limit(why: str) -> str:
    """The reason of a car that a power limit (its charge mode `off`, a `pv` car without surplus)
    holds below the minimum: that limit is why, whatever room the fuse leaves."""
    return f"paused: {why or 'power limit'}"


# The defaults that depend on the way to the chargers (CHARGER_TRANSPORT); a value the user set wins.
# The cloud: about 10 s from a write to the car and a budget of writes an hour (BalancerConfig's own
# defaults). A local OCPP charger takes a limit in a second or two: a change at most every 2 s, a
# command settled after one meter reading past the car's ramp, no hourly budget beyond the
# interval's (set from it in `transport_config_values`), and as writes cost nothing, a shorter quick
# raise and a cycling load followed sooner (measured with `bench --transport ocpp`). A raise a cycling
# load answers with a cut costs two writes and a 2 s lag over MaxA, not 10 s: the long hold is short
# (10 s, doubling to 60 s) and a step of 2 A is worth following while loads cycle (with two cars it
# took the energy from 0.95 to 0.97+ of the pause oracle). The minimum pause is the car's, kept.
TRANSPORT_DEFAULTS: dict[str, dict[str, float]] = {
    "cloud": {},
    "ocpp": {"min_command_interval_s": 2.0, "settle_s": 5.0, "quick_raise_hold_s": 4.0, "cycle_follow_gain_as": 60.0,
             "raise_hold_s": 10.0, "raise_hold_max_s": 60.0, "follow_min_step_a": 2.0},
}
LOCAL_WRITE_BURST = 60.0  # a local charger: writes saved up, enough for any run of cuts and raises


def transport_config_values(transport: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """BalancerConfig's keyword values for `transport`: its defaults under the values `given` (the user's)."""
    values: dict[str, Any] = dict(TRANSPORT_DEFAULTS[transport])
    if transport != "cloud":
        interval = float(given.get("min_command_interval_s", values.get("min_command_interval_s", 1.0)))
        values["write_budget_per_h"] = 3600.0 / max(interval, 1.0)
        values["write_budget_burst"] = LOCAL_WRITE_BURST
    if "raise_hold_s" in given and "raise_hold_max_s" not in given and "raise_hold_max_s" in values:
        # A longer hold set by the user is not refused for the transport's shorter ceiling.
        values["raise_hold_max_s"] = max(float(values["raise_hold_max_s"]), float(given["raise_hold_s"]))
    values.update(given)
    return values


@dataclass(frozen=True)
class BalancerConfig:
    """Every number the balancer uses; each becomes `BALANCER_<FIELD_UPPER>`."""

    max_a: float = 24.0
    fuse_a: float = 25.0
    default_current: int = 16
    min_current: int = 6
    stale_after_s: float = 30.0
    meter_gap_intervals: float = 8.0
    meter_gap_min_s: float = 8.0
    failsafe_current: int = 6
    # the meter silent on every phase this long: the cars pause (fail-safe current or not)
    failsafe_pause_after_s: float = 120.0
    restore_interval_s: float = 600.0
    raise_hold_s: float = 30.0
    min_pause_s: float = 300.0
    min_command_interval_s: float = 15.0
    charger_stale_after_s: float = 90.0
    installation_current: int | None = None
    # several connectors on one fuse: equals that cannot all charge take turns this long
    rotate_s: float = 900.0
    # adaptive only
    settle_s: float = 15.0
    raise_margin_a: float = 0.0
    raise_hold_max_s: float = 240.0
    cycle_window_s: float = 120.0
    cycle_forget_s: float = 1800.0
    overshoot_tolerance_a: float = 0.5
    write_budget_per_h: float = 18.0
    write_budget_burst: float = 20.0
    quick_raise_hold_s: float = 10.0
    follow_min_step_a: float = 5.0
    # load signatures (bridge/balancer/loads.py)
    load_step_min_a: float = 2.0
    load_match_tolerance: float = 0.08
    load_match_min_a: float = 0.6
    cycle_follow_off_s: float = 180.0
    cycle_follow_gain_as: float = 300.0
    load_forget_factor: float = 1.25
    load_on_forget_s: float = 1800.0
    cut_explained_s: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "installation_current":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value!r}")
            if value < 0:
                raise ValueError(f"{f.name} must not be negative, got {value!r}")
        for name in ("default_current", "min_current", "failsafe_current", "installation_current"):
            value = getattr(self, name)
            if value is not None and value != int(value):
                raise ValueError(f"{name} must be whole amps, got {value!r}")
        if self.max_a <= 0:
            raise ValueError(f"max_a must be above 0 A, got {self.max_a}")
        if self.max_a > self.fuse_a:
            raise ValueError(
                f"max_a ({self.max_a} A) must not be above fuse_a ({self.fuse_a} A): "
                "MaxA is the limit kept under the main fuse"
            )
        if self.min_current < IEC_MIN_CURRENT:
            raise ValueError(
                f"min_current must be at least {IEC_MIN_CURRENT} A (IEC 61851), got {self.min_current}"
            )
        if self.default_current < self.min_current:
            raise ValueError(
                f"default_current ({self.default_current} A) must be at least "
                f"min_current ({self.min_current} A)"
            )
        if self.failsafe_current != 0 and not (
            self.min_current <= self.failsafe_current <= self.default_current
        ):
            raise ValueError(
                f"failsafe_current must be 0 (pause) or between min_current ({self.min_current} A) "
                f"and default_current ({self.default_current} A), got {self.failsafe_current}"
            )
        if self.installation_current is not None and self.installation_current <= 0:
            raise ValueError(
                f"installation_current must be above 0 A when known, got {self.installation_current}"
            )
        for name in ("stale_after_s", "restore_interval_s", "charger_stale_after_s", "failsafe_pause_after_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be above 0 s, got {getattr(self, name)}")
        if self.raise_hold_max_s < self.raise_hold_s:
            raise ValueError(
                f"raise_hold_max_s ({self.raise_hold_max_s} s) must be at least "
                f"raise_hold_s ({self.raise_hold_s} s)"
            )

    @property
    def cut_tolerance_a(self) -> float:
        """How far above MaxA a phase may read before it is cut: never up to the fuse."""
        return max(0.0, min(self.overshoot_tolerance_a, self.fuse_a - self.max_a))

    @property
    def current_cap(self) -> int:
        """The highest current the charger may be given."""
        if self.installation_current is None:
            return int(self.default_current)
        return int(min(self.default_current, self.installation_current))


@dataclass(frozen=True)
class Observations:
    """What the façade knows at the moment of a decision, as read-only values."""

    meter: OptTriple
    meter_at: OptTriple
    charger_currents: Triple | None
    charger_phases: tuple[bool, bool, bool] | None
    charger_at: float | None
    # The least current the car may have been offered when the charger reported (None: nothing
    # written yet): a report of no draw at an offer of at least min_current is the car's own choice.
    charger_offered: int | None
    commanded: int | None
    commanded_at: float | None
    # Commands written to the cloud, oldest first: every one from the last
    # `settle_s` and the one before them (the one the car surely follows).
    recent_commands: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class Proposal:
    """A strategy's answer before the shared output stage clamps and paces it."""

    target: float
    loadbal: Triple
    headroom: OptTriple
    reason: str


@dataclass(frozen=True)
class Decision:
    charge_at: int
    command: int | None
    loadbal: Triple
    phase_currents: OptTriple
    headroom: OptTriple
    meter_stale: bool
    paused: bool
    reason: str
    strategy: str
    # Just started, the meter not heard on every phase yet: nothing is written until it has been
    # silent for stale_after_s (then the fail-safe applies).
    waiting_for_meter: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("loadbal", "phase_currents", "headroom"):
            data[key] = [None if v is None else round(float(v), 3) for v in data[key]]
        return data


def whole_amps_for_charger(raw: float, cfg: BalancerConfig) -> int:
    """What may reach the charger for a raw target: whole amps, capped, never 1..min-1 or negative."""
    if not math.isfinite(raw):
        return 0
    # Rounding down: a fraction of an amp over the limit is still over it.
    amps = min(math.floor(raw), cfg.current_cap)
    return amps if amps >= cfg.min_current else 0


def connector_limit(want: float, cfg: BalancerConfig, power_cap: float | None = None) -> int:
    """What a connector may be written for a wanted current: every limit applied, in one place, just
    before a write (both the one-car and the several-car output stage call it).

    - the fuse: never more than the main fuse's rating (`fuse_a`): a car alone must not be able to
      open it when the house's own solar, which the meter nets against the car, stops at once;
    - 32 A, the installation current and the user's default current (`cfg.current_cap`);
    - the power limits: the capacity tariff's and the charge mode's cap (`power_cap`, None for none);
    - whole amps, rounded down (a fraction over a limit is over it), and never 1 A .. min - 1 A:
      below `min_current` (6 A) the connector pauses (0).
    """
    amps = want if math.isfinite(want) else 0.0
    amps = min(amps, cfg.fuse_a, MAX_CURRENT_A)
    if power_cap is not None:
        amps = min(amps, power_cap)
    return whole_amps_for_charger(amps, cfg)


@dataclass
class WriteBudget:
    """A connector's budget of cloud writes (a token bucket): `write_budget_per_h` earned, at most
    `write_budget_burst` saved up, one spent by every change of its setting. Nothing is earned
    before the first change or `start` (the balancer has no clock of its own)."""

    tokens: float
    at: float | None = None

    @classmethod
    def full(cls, cfg: BalancerConfig) -> WriteBudget:
        return cls(float(cfg.write_budget_burst))

    def available(self, now: float, cfg: BalancerConfig) -> float:
        """Writes the budget can pay for at `now`."""
        if self.at is None:
            return self.tokens
        earned = max(0.0, now - self.at) * cfg.write_budget_per_h / 3600.0
        return min(float(cfg.write_budget_burst), self.tokens + earned)

    def spend(self, now: float, cfg: BalancerConfig, writes: float = 1.0) -> None:
        self.tokens = self.available(now, cfg) - writes
        self.at = now

    def start(self, now: float) -> None:
        """Earning starts at `now`."""
        self.at = now

    def fit(self, cfg: BalancerConfig) -> None:
        """A smaller burst (reconfigured) holds no more than it allows."""
        self.tokens = min(self.tokens, float(cfg.write_budget_burst))


def waiting_for_meter(now: float, started_at: float | None, meter_at: OptTriple, cfg: BalancerConfig) -> bool:
    """The start-up wait: just started (`started_at`, the first `now` the balancer was given) and a
    phase never read: the meter has `stale_after_s` to speak before the fail-safe applies, and
    nothing is written meanwhile."""
    return (started_at is not None and any(t is None for t in meter_at)
            and now < started_at + cfg.stale_after_s)


def min_pause_left(now: float, paused_at: float | None, cfg: BalancerConfig) -> float:
    """The minimum pause: the seconds until a car the balancer paused at `paused_at` may resume (0: it
    may). Every pause is a stop and a start of the car's and the charger's contactor, so a car resumes
    no sooner than `min_pause_s` after its pause. `paused_at` None: a pause with nothing to wait out
    (one the bridge did not make, or one made for the meter's silence)."""
    if paused_at is None:
        return 0.0
    return max(0.0, cfg.min_pause_s - (now - paused_at))


def cycle_level_at(level: int, seen_at: float | None, now: float, cfg: BalancerConfig) -> int:
    """How many times the raise hold is doubled at `now`: `level` as of the last unexplained cut
    soon after a raise (`seen_at`), less one for each `cycle_forget_s` since."""
    if seen_at is None or level == 0:
        return level
    return max(0, level - int((now - seen_at) // cfg.cycle_forget_s))


def raise_holds(level: int, cfg: BalancerConfig) -> tuple[float, float]:
    """The raise hold: the quick one (while the write budget can pay for a raise and the cut it may
    invite) and the long one, `raise_hold_s` doubled `level` times, at most `raise_hold_max_s`."""
    return (min(cfg.quick_raise_hold_s, cfg.raise_hold_s),
            min(cfg.raise_hold_max_s, cfg.raise_hold_s * (2 ** level)))


# A cut noted soon after a raise, and not explained by a load seen switching on: when it was, and
# the cycle level and when it was seen before it (undone when a load that switched on while a change
# was in flight is seen late).
Unexplained = tuple[float, int, float | None]


@dataclass
class CutCycles:
    """The raise hold's memory of cuts soon after a raise: a load that comes back on every raise
    (oven and sauna thermostats, hob pulses) doubles the hold (`raise_holds`) for each such cut,
    and each `cycle_forget_s` without one halves it again (`cycle_level_at`). One car and several
    note their cuts here alike."""

    level: int = 0
    seen_at: float | None = None
    last_raise_at: float | None = None
    unexplained: Unexplained | None = None

    def level_at(self, now: float, cfg: BalancerConfig) -> int:
        return cycle_level_at(self.level, self.seen_at, now, cfg)

    def raised(self, now: float) -> None:
        self.last_raise_at = now

    def note_cut(self, now: float, last_up: tuple[Any, ...] | None, cfg: BalancerConfig) -> None:
        """A cut at `now`; `last_up`: the house's last load seen switching on (its time first), if any."""
        if last_up is not None and now - last_up[0] <= cfg.cut_explained_s:
            # A load seen switching on explains the cut: a different load (no cycling), or a known
            # one come back, which its reserve keeps room for from now on. Neither lengthens the hold.
            self.last_raise_at = None
            return
        if self.last_raise_at is not None and now - self.last_raise_at <= cfg.cycle_window_s:
            # Not (yet) explained: a load that switched on while a change was in flight is seen only
            # once the cars' draw is sure again; then this is undone (`explain_late`).
            self.unexplained = (now, self.level, self.seen_at)
            self.level = min(self.level_at(now, cfg) + 1, 16)
            self.seen_at = now
            self.last_raise_at = None

    def explain_late(self, now: float, last_up: tuple[Any, ...] | None, cfg: BalancerConfig) -> None:
        """A load seen switching on around the last unexplained cut (once the draws are sure again)
        explains it after all: the hold it doubled is undone. One car only: with two cars on
        `two-cars-winter` it raised the writes to 21.7 an hour on a connector (the target is 20)."""
        pending = self.unexplained
        if pending is None:
            return
        at, level, seen_at = pending
        if last_up is not None and last_up[0] >= at - cfg.cut_explained_s:
            self.level, self.seen_at = level, seen_at
            self.unexplained = None
        elif now - at > cfg.settle_s + cfg.cut_explained_s:
            self.unexplained = None
