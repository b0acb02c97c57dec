"""The charging profiles the central system sends, and how a charger stacks them (pure).

The bridge's limit is a profile that lasts OCPP_PROFILE_TTL_S (the schedule's
`duration`) and is renewed before it ends; under it, one stack level lower, a
profile without end holds BALANCER_FAILSAFE_CURRENT. A charger whose bridge is
gone therefore falls to the fail-safe current by itself when the limit runs out.

How a limit reaches a charger differs between chargers; the bridge tries, in this
order, and remembers per charge point what was accepted (`CONTROL_METHODS`):
TxDefaultProfile on the connector, TxDefaultProfile on connector 0 (the whole
charge point), TxProfile for the running transaction.

`composite_limit` is the charger's side (OCPP 1.6 section 3.13: the highest valid
stack level of each purpose wins, a TxProfile overrides the TxDefaultProfile, a
connector's TxDefaultProfile overrides connector 0's, ChargePointMaxProfile caps
it all); the simulated charger uses it, and tests check the bridge's profiles with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

TX_DEFAULT_ON_CONNECTOR = "TxDefaultProfile on the connector"
TX_DEFAULT_ON_CHARGE_POINT = "TxDefaultProfile on connector 0"
TX_PROFILE = "TxProfile for the transaction"
CONTROL_METHODS = (TX_DEFAULT_ON_CONNECTOR, TX_DEFAULT_ON_CHARGE_POINT, TX_PROFILE)

PURPOSE = {
    TX_DEFAULT_ON_CONNECTOR: "TxDefaultProfile",
    TX_DEFAULT_ON_CHARGE_POINT: "TxDefaultProfile",
    TX_PROFILE: "TxProfile",
}

FAILSAFE_STACK_LEVEL = 0
LIMIT_STACK_LEVEL = 1
# Profile ids: one fixed id per (role, connector), so that a renewal replaces the profile it renews.
_FAILSAFE_ID_BASE = 1000
_LIMIT_ID_BASE = 2000
# The schedule starts this much before the bridge's `now`: a charger's clock a little behind the
# bridge's must not see the profile as not yet started (chargers set their clock from Heartbeat).
START_MARGIN_S = 30
NOMINAL_VOLTAGE_V = 230.0  # only to read a profile given in W


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def target_connector(method: str, connector: int) -> int:
    """The connectorId a profile of `method` for `connector` is sent to."""
    return 0 if method == TX_DEFAULT_ON_CHARGE_POINT else connector


def _profile(method: str, connector: int, profile_id: int, stack_level: int, amps: float, now: datetime,
             duration_s: float | None, transaction_id: int | None) -> dict[str, Any]:
    start = now - timedelta(seconds=START_MARGIN_S)
    schedule: dict[str, Any] = {
        "startSchedule": iso(start),
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": float(amps)}],
    }
    if duration_s is not None:
        schedule["duration"] = int(round(duration_s)) + START_MARGIN_S
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": PURPOSE[method],
        "chargingProfileKind": "Absolute",
        "chargingSchedule": schedule,
    }
    if method == TX_PROFILE:
        if transaction_id is None:
            raise ValueError("a TxProfile needs the running transaction")
        profile["transactionId"] = transaction_id
    return profile


def limit_profile(method: str, connector: int, amps: float, now: datetime, ttl_s: float,
                  transaction_id: int | None = None) -> dict[str, Any]:
    """The bridge's limit: `amps` (0 pauses) until `now + ttl_s`."""
    target = target_connector(method, connector)
    return _profile(method, target, _LIMIT_ID_BASE + target, LIMIT_STACK_LEVEL, amps, now, ttl_s, transaction_id)


def failsafe_profile(method: str, connector: int, amps: float, now: datetime,
                     transaction_id: int | None = None) -> dict[str, Any]:
    """The profile without end under the limit: what the charger does once the bridge is gone."""
    target = target_connector(method, connector)
    return _profile(method, target, _FAILSAFE_ID_BASE + target, FAILSAFE_STACK_LEVEL, amps, now, None, transaction_id)


# ---- the charger's side -------------------------------------------------------------


@dataclass(frozen=True)
class InstalledProfile:
    """A profile as a charger keeps it (from SetChargingProfile's csChargingProfiles)."""

    connector: int
    profile_id: int
    stack_level: int
    purpose: str
    kind: str
    start: datetime | None
    duration_s: float | None
    periods: tuple[tuple[float, float, int | None], ...]  # (startPeriod s, limit, numberPhases)
    unit: str
    transaction_id: int | None = None
    valid_to: datetime | None = None

    @classmethod
    def from_wire(cls, connector: int, p: dict[str, Any]) -> "InstalledProfile":
        """From the payload in either key style (the `ocpp` library hands handlers snake_case)."""
        def get(d: dict[str, Any], camel: str, snake: str) -> Any:
            return d.get(camel, d.get(snake))

        schedule = get(p, "chargingSchedule", "charging_schedule")
        periods = tuple(
            (float(get(q, "startPeriod", "start_period")), float(q["limit"]), get(q, "numberPhases", "number_phases"))
            for q in get(schedule, "chargingSchedulePeriod", "charging_schedule_period")
        )
        start = get(schedule, "startSchedule", "start_schedule")
        valid_to = get(p, "validTo", "valid_to")
        duration = schedule.get("duration")
        return cls(
            connector=connector,
            profile_id=int(get(p, "chargingProfileId", "charging_profile_id")),
            stack_level=int(get(p, "stackLevel", "stack_level")),
            purpose=get(p, "chargingProfilePurpose", "charging_profile_purpose"),
            kind=get(p, "chargingProfileKind", "charging_profile_kind"),
            start=parse_time(start) if start else None,
            duration_s=float(duration) if duration is not None else None,
            periods=tuple(sorted(periods)),
            unit=get(schedule, "chargingRateUnit", "charging_rate_unit"),
            transaction_id=get(p, "transactionId", "transaction_id"),
            valid_to=parse_time(valid_to) if valid_to else None,
        )

    def limit_at(self, now: datetime, charging_since: datetime | None) -> float | None:
        """Amps this profile allows at `now`, or None when it is not in force."""
        if self.valid_to is not None and now >= self.valid_to:
            return None
        start = self.start
        if self.kind == "Relative" or start is None:
            start = charging_since
        if start is None:
            return None
        elapsed = (now - start).total_seconds()
        if self.kind == "Recurring":
            elapsed %= 86400
        if elapsed < 0 or (self.duration_s is not None and elapsed >= self.duration_s):
            return None
        limit = None
        for start_period, value, phases in self.periods:
            if start_period <= elapsed:
                limit = value if self.unit == "A" else value / (NOMINAL_VOLTAGE_V * (phases or 3))
        return limit


def parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _top(profiles: Iterable[InstalledProfile], now: datetime, charging_since: datetime | None) -> float | None:
    """The limit of the highest stack level in force."""
    best: tuple[int, float] | None = None
    for p in profiles:
        limit = p.limit_at(now, charging_since)
        if limit is not None and (best is None or p.stack_level > best[0]):
            best = (p.stack_level, limit)
    return None if best is None else best[1]


def composite_limit(profiles: Iterable[InstalledProfile], connector: int, now: datetime,
                    transaction_id: int | None = None, charging_since: datetime | None = None) -> float | None:
    """The current `connector` may draw at `now` under the installed profiles; None = no limit."""
    profiles = list(profiles)

    def of(purpose: str, on: int) -> list[InstalledProfile]:
        return [p for p in profiles if p.purpose == purpose and p.connector == on]

    limits = []
    cp_max = _top(of("ChargePointMaxProfile", 0), now, charging_since)
    if cp_max is not None:
        limits.append(cp_max)
    tx = None
    if transaction_id is not None:
        tx = _top((p for p in of("TxProfile", connector) if p.transaction_id in (None, transaction_id)),
                  now, charging_since)
    if tx is None:
        tx = _top(of("TxDefaultProfile", connector), now, charging_since)
    if tx is None:
        tx = _top(of("TxDefaultProfile", 0), now, charging_since)
    if tx is not None:
        limits.append(tx)
    return min(limits) if limits else None
