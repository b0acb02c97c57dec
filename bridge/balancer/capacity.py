"""The capacity-tariff guard: keeps each billing period's average import at or below a limit.

Grid operators that bill a capacity tariff take the highest average import power over a
period (a whole hour or a quarter of an hour of the local clock), often only on some hours
and months, sometimes the mean of the month's few highest periods. The guard integrates the
house's import energy from its net power (import positive; export counts as no import),
projects the period's average if the present import went on, and says how much power the
cars may draw so that the period ends at or below the limit, allowing for the charger's lag.

Pure: no I/O and no clock. Every call passes the local wall-clock time as a datetime with a
time zone; periods follow that clock, across daylight-saving changes. The state (the period
so far and the month's peaks) is a plain dict for persistence.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bridge.units import format_kw, round_kw

PERIOD_MINUTES = (60, 15)
MAX_CAPACITY_LIMIT_KW = 1000.0  # far above any house connection: a typo, not a tariff
# Below this a limit leaves no car its minimum (6 A on one phase is 1.4 kW) nor most houses their
# standby: a typo (0.0001 for off), not a tariff. 0 is "off".
MIN_CAPACITY_LIMIT_KW = 0.5
CAPACITY_LIMIT_RULE = (f"the capacity limit must be 0 (off) or from {MIN_CAPACITY_LIMIT_KW:g} "
                       f"to {MAX_CAPACITY_LIMIT_KW:g} kW")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A meter silent longer than this: the time in between counts at the next reading's import, not the last's.
MAX_INTEGRATION_GAP_S = 120.0
# The elapsed time of a period and the sum of the intervals seen in it differ by float rounding
# (1e-17 s to 1e-12 s): that is no time unseen, and counting it as such would mark a period seen
# whole as partly guessed (no register anchored in it, its peak not raising the allowance).
UNSEEN_TOLERANCE_S = 1e-3
SPREAD_S = 120.0
# A Belgian meter's own demand figures (OBIS 1-0:1.4.0, 1-0:1.6.0) are quarter-hour averages: they
# are the period's figure only with 15-minute periods.
METER_DEMAND_PERIOD_MIN = 15
HOUSE_WINDOW_S = 180.0


class CapacityConfigError(ValueError):
    """A capacity setting that cannot be used; the message says what is wrong, in one line."""


def check_capacity_limit(value: object) -> float:
    """A capacity limit set in the configuration, by command or read back from the runtime file:
    0 (the guard off), or MIN_CAPACITY_LIMIT_KW up to MAX_CAPACITY_LIMIT_KW."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not (math.isfinite(value) and (value == 0 or MIN_CAPACITY_LIMIT_KW <= value <= MAX_CAPACITY_LIMIT_KW))):
        raise CapacityConfigError(f"{CAPACITY_LIMIT_RULE}; got {value!r}")
    return float(value)


def _range(low: int, high: int, lowest: int, highest: int) -> frozenset[int]:
    """`low..high` inclusive, wrapping past `highest` back to `lowest` (11-3 = Nov to Mar)."""
    if low <= high:
        return frozenset(range(low, high + 1))
    return frozenset(range(low, highest + 1)) | frozenset(range(lowest, high + 1))


def parse_months(text: str | None) -> frozenset[int] | None:
    """`11-3` (wrapping), `12`, `1,2,12`; None or empty = every month."""
    if text is None or not text.strip():
        return None
    months: set[int] = set()
    for item in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d{1,2})(?:-(\d{1,2}))?", item)
        if not m:
            raise CapacityConfigError("months must look like 11-3 or 1,2,12")
        low = int(m.group(1))
        high = int(m.group(2) or low)
        if not (1 <= low <= 12 and 1 <= high <= 12):
            raise CapacityConfigError("months are 1 to 12")
        months |= _range(low, high, 1, 12)
    return frozenset(months)


@dataclass(frozen=True)
class Hours:
    """When peaks count: days of the week (0 = Monday) and hours [start, end) of the local clock."""

    days: frozenset[int]
    start_hour: int
    end_hour: int

    def contains(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        if self.start_hour < self.end_hour:
            return self.start_hour <= local.hour < self.end_hour
        # 22-06: wraps past midnight.
        return local.hour >= self.start_hour or local.hour < self.end_hour


def _day(name: str, text: str) -> int:
    key = name.lower()[:3]
    if key not in DAY_NAMES:
        raise CapacityConfigError(f"unknown day {name!r}; use Mon..Sun")
    return DAY_NAMES.index(key)


def parse_hours(text: str | None) -> Hours | None:
    """`Mon-Fri 07-19`, `07-19` (every day), `Sat-Sun`; None or empty = always."""
    if text is None or not text.strip():
        return None
    m = re.fullmatch(r"\s*(?:([A-Za-z]+)(?:-([A-Za-z]+))?)?\s*(?:(\d{1,2})-(\d{1,2}))?\s*", text)
    if not m or not (m.group(1) or m.group(3)):
        raise CapacityConfigError("hours must look like 'Mon-Fri 07-19' or '07-19'")
    days = frozenset(range(7))
    if m.group(1):
        first = _day(m.group(1), text)
        days = _range(first, _day(m.group(2) or m.group(1), text), 0, 6)
    start, end = 0, 24
    if m.group(3):
        start, end = int(m.group(3)), int(m.group(4))
        if not (0 <= start <= 23 and 1 <= end <= 24) or start == end:
            raise CapacityConfigError("hours run from 0-23 to 1-24 and differ")
    return Hours(days=days, start_hour=start, end_hour=end)


@dataclass(frozen=True)
class CapacityConfig:
    limit_kw: float
    period_min: int = 60
    hours: Hours | None = None
    months: frozenset[int] | None = None
    peaks: int = 1
    peaks_distinct_days: bool = False
    follow_month_peak: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.limit_kw) and MIN_CAPACITY_LIMIT_KW <= self.limit_kw <= MAX_CAPACITY_LIMIT_KW):
            raise CapacityConfigError(
                f"the capacity limit must be from {MIN_CAPACITY_LIMIT_KW:g} to {MAX_CAPACITY_LIMIT_KW:g} kW; "
                f"got {self.limit_kw!r}")
        if self.period_min not in PERIOD_MINUTES:
            raise CapacityConfigError(f"the capacity period is 60 or 15 minutes; got {self.period_min!r}")
        if not 1 <= self.peaks <= 31:
            raise CapacityConfigError(f"the number of peaks billed is 1 to 31; got {self.peaks!r}")

    @property
    def period_s(self) -> float:
        return self.period_min * 60.0

    def counts(self, local: datetime) -> bool:
        """Whether a period starting at `local` counts for the tariff."""
        if self.months is not None and local.month not in self.months:
            return False
        return self.hours is None or self.hours.contains(local)


@dataclass(frozen=True)
class Peak:
    start: datetime  # the period's start, local time
    kw: float
    # Part of the period was not seen (the bridge started or the guard was enabled within it, or
    # the meter was silent) and was counted at the house's own load: a guess, which never raises
    # what the month already bills (allowed_kw).
    estimated: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start.isoformat(), "kw": round_kw(self.kw)}
        if self.estimated:
            out["estimated"] = True
        return out


@dataclass(frozen=True)
class CapacityStatus:
    """The guard's view after an update: what it publishes and what limits the cars."""

    active: bool  # this period counts for the tariff
    limit_kw: float
    allowed_kw: float  # the limit, or the month's lowest billed peak when that is higher and already paid for
    period_start: datetime
    period_end: datetime
    period_kw: float  # average import over the elapsed part of this period
    projected_kw: float  # the period's average if the present import went on
    car_allowance_w: float | None  # what all cars together may draw; None = no capacity limit now
    month_peaks: tuple[Peak, ...]
    billed_kw: float  # the mean of the month's billed peaks so far (0 without any)
    reason: str
    period_estimated_s: float = 0.0  # of the period so far, the seconds not seen (counted at the house's load)
    meter_month_peak_kw: float | None = None  # the meter's own month peak, when known to be this month's

    def to_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "limit_kw": round_kw(self.limit_kw),
            "allowed_kw": round_kw(self.allowed_kw),
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "period_kw": round_kw(self.period_kw),
            "projected_kw": round_kw(self.projected_kw),
            "car_allowance_w": None if self.car_allowance_w is None else round(self.car_allowance_w),
            "month_peaks": [p.to_dict() for p in self.month_peaks],
            "billed_kw": round_kw(self.billed_kw),
            "period_estimated_s": round(self.period_estimated_s),
            **({} if self.meter_month_peak_kw is None else {"meter_month_peak_kw": round_kw(self.meter_month_peak_kw)}),
            "reason": self.reason,
        }


def period_start(cfg: CapacityConfig, local: datetime) -> datetime:
    """The start of the period holding `local`: the hour or quarter of the local clock."""
    if local.tzinfo is None:
        raise ValueError("the capacity guard needs a datetime with a time zone")
    minute = local.minute - local.minute % cfg.period_min
    # replace() keeps `fold`, so the repeated hour of an autumn DST change is its own period.
    return local.replace(minute=minute, second=0, microsecond=0)


def _period_end(cfg: CapacityConfig, start: datetime) -> datetime:
    # Absolute time: the period lasts its length even across a DST change.
    end_utc = start.astimezone(timezone.utc) + timedelta(seconds=cfg.period_s)
    return end_utc.astimezone(start.tzinfo)


def _elapsed(a: datetime, b: datetime) -> float:
    """Seconds from a to b in absolute time (aware datetimes in zoneinfo zones subtract by wall clock
    when they share a tzinfo, which is wrong across DST)."""
    return (b.astimezone(timezone.utc) - a.astimezone(timezone.utc)).total_seconds()


@dataclass
class CapacityGuard:
    cfg: CapacityConfig
    _period: datetime | None = None
    _energy_ws: float = 0.0  # import energy integrated so far in the period
    _observed_s: float = 0.0
    _estimated_s: float = 0.0  # of _observed_s, the seconds not seen but estimated
    # The meter's import register (kWh) at the period's start, when known: the period's energy is
    # then the register's count, exact across a restart (kept in the state).
    _register_start_kwh: float | None = None
    _last_register: tuple[datetime, float] | None = None  # the latest register reading (when, kWh)
    # The meter's own month peak ("YYYY-MM", kW) once known to be that month's (kept in the state),
    # and the last reading of a peak without a time (month read, kW).
    _meter_peak: tuple[str, float] | None = None
    _meter_peak_seen: tuple[str, float] | None = None
    _last_at: datetime | None = None
    _last_import_w: float = 0.0
    # The allowance plans with the house (without the cars) averaged over this long, so that a hob
    # pulsing or an oven on its thermostat does not swing it and the charger with it; a rise is then
    # seen late, which the rest of the period makes up for, save near its end (see _status).
    house_window_s: float = HOUSE_WINDOW_S
    _house: deque = field(default_factory=deque)
    _house_sum: float = 0.0
    _month: str | None = None  # "YYYY-MM" of the peaks below
    _peaks: list[Peak] = field(default_factory=list)  # every counted period of the month, by start

    # ---- state ------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "month": self._month,
            "peaks": [p.to_dict() for p in self._peaks],
            "period_start": None if self._period is None else self._period.isoformat(),
            "period_energy_wh": round(self._energy_ws / 3600.0, 4),
            "period_observed_s": round(self._observed_s, 3),
            "period_estimated_s": round(self._estimated_s, 3),
            "period_register_start_kwh": self._register_start_kwh,
            "meter_month_peak": None if self._meter_peak is None else {"month": self._meter_peak[0],
                                                                       "kw": round_kw(self._meter_peak[1])},
        }

    def restore(self, state: dict[str, Any], tz: Any) -> None:
        """Take back a state from `to_state`; ValueError (nothing changed) when it is not one."""
        try:
            month = state.get("month")
            if month is not None and not re.fullmatch(r"\d{4}-\d{2}", str(month)):
                raise ValueError(f"month {month!r} is not YYYY-MM")
            peaks = [
                Peak(datetime.fromisoformat(p["start"]).astimezone(tz), float(p["kw"]), p.get("estimated") is True)
                for p in state.get("peaks", [])
            ]
            if any(not (math.isfinite(p.kw) and p.kw >= 0) for p in peaks):
                raise ValueError("a peak's kW is not a finite non-negative number")
            start = state.get("period_start")
            period = None if start is None else datetime.fromisoformat(start).astimezone(tz)
            energy_ws = float(state.get("period_energy_wh", 0.0)) * 3600.0
            observed = float(state.get("period_observed_s", 0.0))
            estimated = min(observed, float(state.get("period_estimated_s", 0.0)))
            register = state.get("period_register_start_kwh")
            register = None if register is None or period is None else float(register)
            if register is not None and not (math.isfinite(register) and register >= 0):
                raise ValueError("the register at the period's start is not a finite non-negative number")
            if not (math.isfinite(energy_ws) and energy_ws >= 0 and math.isfinite(observed) and observed >= 0
                    and math.isfinite(estimated) and estimated >= 0):
                raise ValueError("the period's energy is not a finite non-negative number")
            meter_peak = state.get("meter_month_peak")
            if meter_peak is not None:
                meter_peak = (str(meter_peak["month"]), float(meter_peak["kw"]))
                if not (re.fullmatch(r"\d{4}-\d{2}", meter_peak[0]) and math.isfinite(meter_peak[1])
                        and meter_peak[1] >= 0):
                    raise ValueError("the meter's month peak is not a month and a finite non-negative kW")
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            # The fault's kind only: its text would quote the file.
            raise ValueError(f"not a capacity state ({type(e).__name__})") from None
        self._month = None if month is None else str(month)
        self._peaks = peaks
        self._period, self._energy_ws, self._observed_s = period, energy_ws, observed
        self._estimated_s = estimated
        self._register_start_kwh = register
        self._last_register = None
        self._meter_peak, self._meter_peak_seen = meter_peak, None
        self._last_at = None

    # ---- peaks ------------------------------------------------------------------
    def billed_peaks(self) -> tuple[Peak, ...]:
        """The month's highest periods the bill averages (one a day when distinct days count)."""
        return billed(self._peaks, self.cfg.peaks, self.cfg.peaks_distinct_days)

    def allowed_kw(self, local: datetime) -> float:
        """The period average that raises no bill: the limit, or, when following the month's peak,
        the level below which a period changes nothing already billed."""
        limit = self.cfg.limit_kw
        if not self.cfg.follow_month_peak:
            return limit
        meter_peak = self._meter_month_peak(local)
        if meter_peak is not None:
            # What the bill is computed from: the guard's own periods (a guessed one included) do not count.
            return max(limit, meter_peak)
        if self._month != _month_key(local):
            return limit
        # A period partly guessed does not raise what may be drawn: its guess may be far too high.
        billed = self._measured_billed_peaks()
        free = 0.0
        if len(billed) >= self.cfg.peaks:
            free = min(p.kw for p in billed)
        if self.cfg.peaks_distinct_days:
            today = [p.kw for p in billed if p.start.date() == local.date()]
            if today:
                free = max(free, today[0])
        return max(limit, free)

    def _meter_month_peak(self, local: datetime) -> float | None:
        """The meter's own month peak where it is what the month bills: this month's, with 15-minute
        periods, one peak billed and every hour counting (the meter's peak is of every quarter)."""
        cfg = self.cfg
        if (self._meter_peak is None or self._meter_peak[0] != _month_key(local)
                or cfg.period_min != METER_DEMAND_PERIOD_MIN or cfg.peaks != 1 or cfg.hours is not None):
            return None
        return self._meter_peak[1]

    def demand(self, local: datetime, kw: float) -> None:
        """The meter's own average demand of the running quarter-hour (OBIS 1-0:1.4.0, kW) as read at
        `local`, before the `update` of its decision (whose status then shows it). With 15-minute
        periods the period's energy is that average over the time elapsed: the figure the bill is
        computed from, also for the part of the period the guard did not see. A reading of a period
        the guard has not entered yet waits for the next one."""
        if not (math.isfinite(kw) and 0 <= kw <= MAX_CAPACITY_LIMIT_KW):
            raise ValueError(f"the meter's demand must be from 0 to {MAX_CAPACITY_LIMIT_KW:g} kW")
        if (self.cfg.period_min != METER_DEMAND_PERIOD_MIN or self._period is None
                or _elapsed(self._period, period_start(self.cfg, local)) != 0):
            return
        elapsed = max(0.0, _elapsed(self._period, local))
        if self._last_at is None or _elapsed(self._last_at, local) >= 0:
            # Newer than the last update: the period up to the reading is the meter's, and the next
            # update counts on from there (after a restart, nothing of it is guessed).
            self._energy_ws, self._observed_s, self._last_at = kw * 1000.0 * elapsed, elapsed, local
        else:
            self._energy_ws = kw * 1000.0 * elapsed + self._counted_since(local)
        self._estimated_s = 0.0

    def month_peak(self, local: datetime, kw: float, peak_at: datetime | None = None) -> None:
        """The meter's own highest quarter-hour of the month (OBIS 1-0:1.6.0, kW) as read at `local`,
        and when the meter registered it (local time), where the source says. It is this month's
        when its time is in this month; without a time, once the meter has changed it within this
        month (at a month's start the meter may still show the month before's for a while)."""
        if not (math.isfinite(kw) and 0 <= kw <= MAX_CAPACITY_LIMIT_KW):
            raise ValueError(f"the meter's month peak must be from 0 to {MAX_CAPACITY_LIMIT_KW:g} kW")
        month = _month_key(local)
        if peak_at is not None:
            self._meter_peak = (month, kw) if _month_key(peak_at) == month else None
            return
        seen, self._meter_peak_seen = self._meter_peak_seen, (month, kw)
        known = self._meter_peak is not None and self._meter_peak[0] == month
        if known or (seen is not None and seen[0] == month and seen[1] != kw):
            self._meter_peak = (month, kw)
        elif self._meter_peak is not None and self._meter_peak[0] != month:
            self._meter_peak = None

    def _close_period(self) -> None:
        if self._period is None or self._observed_s <= 0 or not self.cfg.counts(self._period):
            return
        month = _month_key(self._period)
        if self._month != month:
            self._month, self._peaks = month, []
        self._peaks.append(Peak(self._period, self._energy_ws / self.cfg.period_s / 1000.0, self._estimated_s > 0))
        self._peaks = list(self._all_needed_peaks())

    def _measured_billed_peaks(self) -> tuple[Peak, ...]:
        """The peaks the bill would average if the partly guessed periods did not count."""
        return billed([p for p in self._peaks if not p.estimated], self.cfg.peaks, self.cfg.peaks_distinct_days)

    def _all_needed_peaks(self) -> tuple[Peak, ...]:
        # Only the periods that can still be billed are kept: with distinct days, the best of each
        # day among the top; else the top N; and the same among the measured periods (allowed_kw).
        kept = {p.start.astimezone(timezone.utc): p for p in (*self.billed_peaks(), *self._measured_billed_peaks())}
        return tuple(kept[k] for k in sorted(kept))

    # ---- update -----------------------------------------------------------------
    def update(self, local: datetime, net_w: float, car_w: float = 0.0, lag_s: float = 10.0, *,
               car_in_doubt: bool = False) -> CapacityStatus:
        """Integrate the import up to `local` (at the power of the previous reading), take the new
        net power (W, import positive, the cars included) and the cars' present draw (W), and say
        what the cars may draw. `car_in_doubt`: a write to a car is on its way and nothing says yet
        whether the reading carries the old setting or the new; the meter's import still counts,
        but the house's own load (the meter less `car_w`) is not taken from it: counted at the wrong
        setting it swings the allowance by the whole cut (a pause, or more than the limit)."""
        if not (math.isfinite(net_w) and math.isfinite(car_w)):
            raise ValueError("the capacity guard needs finite powers")
        start = period_start(self.cfg, local)
        self._integrate(local)
        if self._period is None or _elapsed(self._period, start) != 0:
            if self._period is None or _elapsed(self._period, start) >= 0:
                self._close_period()
            # else the clock went back (a corrected clock, not DST: DST is absolute time here).
            self._period, self._energy_ws, self._observed_s, self._estimated_s = start, 0.0, 0.0, 0.0
            self._register_start_kwh = None
        if self._month is not None and self._month != _month_key(start):
            self._month, self._peaks = _month_key(start), []
        unseen = _elapsed(self._period, local) - self._observed_s
        if unseen > UNSEEN_TOLERANCE_S:
            # Started, restarted or enabled within the period: the time not seen counts at the
            # house's own load of this moment (the meter less what the cars draw). The present import
            # would count a car at full power for all of it, which it was not necessarily drawing
            # then, and 0 would let the cars take the whole limit. A meter silent while the guard ran
            # counts at the present import: the cars drew what they were told meanwhile.
            rate_w = net_w if self._last_at is not None or car_in_doubt else net_w - max(0.0, car_w)
            self._energy_ws += max(0.0, rate_w) * unseen
            self._observed_s += unseen
            self._estimated_s += unseen
        self._last_at = local
        self._last_import_w = max(0.0, net_w)
        if not car_in_doubt:
            self._remember_house(local, net_w - max(0.0, car_w))
        return self._status(local, net_w, max(0.0, car_w), lag_s, car_in_doubt)

    def register(self, local: datetime, import_kwh: float) -> None:
        """The meter's own import register (kWh, the sum of its tariffs) as read at `local` (no later
        than the `update` before this call). Once the register at the period's start is known, the
        period's energy is the register's count, also after a restart within the period (the part
        not seen is no longer guessed). The register at the start comes from the readings on either
        side of it (`_register_at_start`). A register that runs backwards or jumps beyond what any
        connection carries (a meter swapped, a wrong topic) is not used for the rest of the period."""
        if not (math.isfinite(import_kwh) and import_kwh >= 0):
            raise ValueError("the import register must be a finite number of kWh of at least 0")
        before = self._last_register
        if before is not None and _elapsed(before[0], local) < 0:
            return  # older than a reading already taken
        self._last_register = (local, import_kwh)
        if self._period is None or _elapsed(self._period, period_start(self.cfg, local)) != 0:
            return  # a reading before this period: kept only to place the period's start
        if self._register_start_kwh is None:
            self._register_start_kwh = self._register_at_start(before, local, import_kwh)
            if self._register_start_kwh is None:
                return
        energy_ws = (import_kwh - self._register_start_kwh) * 3.6e6
        if not 0 <= energy_ws <= MAX_CAPACITY_LIMIT_KW * 1000.0 * self.cfg.period_s:
            self._register_start_kwh = None
            return
        self._energy_ws = energy_ws + self._counted_since(local)
        self._estimated_s = 0.0

    def _counted_since(self, local: datetime) -> float:
        """The import (Ws) the guard counted after `local` up to its last update: a reading handed
        over after the update of its decision is a moment older."""
        if self._last_at is None:
            return 0.0
        return self._last_import_w * max(0.0, _elapsed(local, self._last_at))

    def _register_at_start(self, before: tuple[datetime, float] | None, local: datetime,
                           import_kwh: float) -> float | None:
        """The register at the period's start, from the first reading within the period: between
        the last reading before the start and this one, in proportion to the time (exact to the
        register's resolution whatever the power input, and whether or not the guard saw the start);
        without a reading before the start, this one less the energy counted since the start, when
        the guard saw the period whole; else unknown (the start was not seen)."""
        assert self._period is not None
        if before is not None:
            span_s = _elapsed(before[0], local)
            to_start_s = _elapsed(before[0], self._period)
            if 0 < to_start_s <= span_s <= MAX_INTEGRATION_GAP_S and before[1] <= import_kwh:
                return before[1] + (import_kwh - before[1]) * to_start_s / span_s
        if self._estimated_s > 0:
            return None
        return import_kwh - (self._energy_ws - self._counted_since(local)) / 3.6e6

    def _integrate(self, local: datetime) -> None:
        if self._last_at is None or self._period is None:
            return
        dt = _elapsed(self._last_at, local)
        if not (0 < dt <= MAX_INTEGRATION_GAP_S):
            return
        end = _period_end(self.cfg, self._period)
        in_period = min(dt, max(0.0, _elapsed(self._last_at, end)))
        self._energy_ws += self._last_import_w * in_period
        self._observed_s += in_period
        if in_period < dt:
            # The interval crosses the period's end: close it and carry the rest into the next.
            self._close_period()
            self._period = period_start(self.cfg, end)
            self._energy_ws = self._last_import_w * (dt - in_period)
            self._observed_s = dt - in_period
            self._estimated_s = 0.0
            self._register_start_kwh = None

    def _remember_house(self, local: datetime, house_w: float) -> None:
        at = local.astimezone(timezone.utc).timestamp()
        samples = self._house
        samples.append((at, house_w))
        self._house_sum += house_w
        while samples and (samples[0][0] <= at - self.house_window_s or at < samples[0][0]):
            self._house_sum -= samples.popleft()[1]
        if not samples:  # the clock went back: start again from this reading
            samples.append((at, house_w))
            self._house_sum = house_w

    def _status(self, local: datetime, net_w: float, car_w: float, lag_s: float,
                car_in_doubt: bool = False) -> CapacityStatus:
        assert self._period is not None
        cfg = self.cfg
        end = _period_end(cfg, self._period)
        elapsed = max(0.0, _elapsed(self._period, local))
        remaining = max(0.0, _elapsed(local, end))
        period_kw = self._energy_ws / elapsed / 1000.0 if elapsed > 0 else max(0.0, net_w) / 1000.0
        projected_kw = (self._energy_ws + max(0.0, net_w) * remaining) / cfg.period_s / 1000.0
        peaks = self.billed_peaks() if self._month == _month_key(local) else ()
        billed_kw = sum(p.kw for p in peaks) / len(peaks) if peaks else 0.0
        allowed = self.allowed_kw(local)
        active = cfg.counts(self._period)
        if not active:
            allowance = None
            reason = "capacity tariff not counting now (outside CAPACITY_HOURS/CAPACITY_MONTHS)"
        elif not self._house:
            # No reading yet with the cars' draw known: no allowance (the cars keep what the fuse
            # gives them) until one comes, a few seconds after the write on its way settles.
            allowance = None
            reason = f"capacity {format_kw(allowed)} kW: waiting for the cars' draw to be known"
        else:
            house_w = self._house_sum / len(self._house)
            if remaining - lag_s <= self.house_window_s and not car_in_doubt:
                # Too late in the period to make up for a rise seen late: the house's load of this
                # moment counts as soon as it is the higher.
                house_w = max(house_w, net_w - car_w)
            allowance = self._car_allowance_w(allowed * 1000.0, net_w, house_w, remaining, lag_s)
            guessed = ""
            if self._estimated_s > 0:
                guessed = (f" ({self._estimated_s / 60:.0f} min of it not seen, counted at the house's own "
                           f"load)")
            reason = (
                f"capacity {format_kw(allowed)} kW: period {format_kw(period_kw)} kW so far{guessed}, "
                f"projected {format_kw(projected_kw)} kW, cars may draw {format_kw(allowance / 1000.0)} kW"
            )
        return CapacityStatus(
            active=active,
            limit_kw=cfg.limit_kw,
            allowed_kw=allowed,
            period_start=self._period,
            period_end=end,
            period_kw=period_kw,
            projected_kw=projected_kw,
            car_allowance_w=allowance,
            month_peaks=peaks,
            billed_kw=billed_kw,
            reason=reason,
            period_estimated_s=self._estimated_s,
            meter_month_peak_kw=self._meter_month_peak(local),
        )

    def _car_allowance_w(self, allowed_w: float, net_w: float, house_w: float, remaining_s: float,
                         lag_s: float) -> float:
        """The cars' draw that ends the period at `allowed_w` on average if the house stays at
        `house_w`: for the charger's lag the cars keep their present draw, then they draw the answer."""
        budget_ws = allowed_w * self.cfg.period_s - self._energy_ws
        during_lag = min(lag_s, remaining_s)
        budget_ws -= max(0.0, net_w) * during_lag
        after = remaining_s - during_lag
        if after <= 0:
            # Nothing written now reaches the cars within this period: what holds the rate.
            return max(0.0, allowed_w - house_w)
        # Energy to spare is spread over at least SPREAD_S: near the period's end, dividing by the few
        # seconds left would swing the allowance (and the charger) with every watt. An excess is
        # made up in the time there is.
        spare_ws = budget_ws - allowed_w * after
        rate_w = allowed_w + spare_ws / (max(after, SPREAD_S) if spare_ws > 0 else after)
        return max(0.0, rate_w - house_w)


def billed(peaks: list[Peak], count: int, distinct_days: bool) -> tuple[Peak, ...]:
    """The `count` highest periods of a month's, in time order; with `distinct_days`, one a day."""
    candidates = list(peaks)
    if distinct_days:
        best: dict[Any, Peak] = {}
        for p in candidates:
            day = p.start.date()
            if day not in best or p.kw > best[day].kw:
                best[day] = p
        candidates = list(best.values())
    top = sorted(candidates, key=lambda p: p.kw, reverse=True)[:count]
    return tuple(sorted(top, key=lambda p: p.start.astimezone(timezone.utc)))


def _month_key(local: datetime) -> str:
    return f"{local.year:04d}-{local.month:02d}"
