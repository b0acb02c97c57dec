"""Pydantic models of the EAPI v5 document.

Tolerant on read: enum-like values are kept as plain strings (OCPP chargers
report statuses the document does not list, and new modes may appear), nulls
are accepted wherever the document says nullable, and unknown fields are
ignored. Strict on write: `to_request()` gives exactly the document's fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

ConnectorMode = Literal["On", "Off", "Schedule"]
CONNECTOR_MODES: tuple[str, ...] = ("On", "Off", "Schedule")
DIMMER_VALUES: tuple[str, ...] = ("Off", "Low", "Medium", "High")
PHASE_NAMES: tuple[str, str, str] = ("L1", "L2", "L3")
# Connector statuses in which no current flows to a car: Charge Amps' own protocol
# (Available, Connected, Error) and OCPP 1.6's ChargePointStatus values other than
# Charging (the car or the charger suspends, a session is being prepared or
# finished, the connector is reserved, unavailable or faulted).
NOT_DELIVERING_STATUSES: frozenset[str] = frozenset({
    "Available", "Connected", "Error",
    "Preparing", "SuspendedEVSE", "SuspendedEV", "Finishing", "Reserved", "Unavailable", "Faulted",
})
# Connector statuses that say whether a car is plugged in: Charge Amps' own protocol (Available:
# no car; Connected, Charging: a car) and OCPP 1.6 (a session is being prepared, runs, is suspended
# by the car or the charger, or is being finished: a car; reserved: none yet). Unavailable, Faulted,
# Error and statuses not known here do not say.
NO_CAR_STATUSES: frozenset[str] = frozenset({"Available", "Reserved"})
CAR_STATUSES: frozenset[str] = frozenset({
    "Connected", "Charging", "Preparing", "SuspendedEVSE", "SuspendedEV", "Finishing",
})


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
    )


def _none_to_empty_list(value: Any) -> Any:
    return [] if value is None else value


class Measurement(_Model):
    phase: str
    current: float = 0.0
    voltage: float | None = None


class ConnectorStatus(_Model):
    charge_point_id: str | None = None
    connector_id: int
    total_consumption_kwh: float | None = None
    charging_power_kw: float | None = None
    session_type: str | None = None
    status: str | None = None
    measurements: list[Measurement] = Field(default_factory=list)
    start_time: str | None = None
    end_time: str | None = None
    session_id: int | None = None

    _empty_list = field_validator("measurements", mode="before")(_none_to_empty_list)

    def phase_currents(self) -> tuple[float, float, float] | None:
        """Per-phase amps (L1, L2, L3) the connector delivers.

        The cloud sends measurements only while a car charges: without them, a
        status that says the connector delivers nothing gives (0, 0, 0), and any
        other status (`Charging`, `Unknown`, one not known here) gives None: not known."""
        if not self.measurements:
            return (0.0, 0.0, 0.0) if self.status in NOT_DELIVERING_STATUSES else None
        currents = [0.0, 0.0, 0.0]
        for m in self.measurements:
            if m.phase in PHASE_NAMES:
                currents[PHASE_NAMES.index(m.phase)] = float(m.current)
        return (currents[0], currents[1], currents[2])

    def car_plugged(self) -> bool | None:
        """Whether a car is plugged in, from the status; None when the status does not say."""
        if self.status in CAR_STATUSES:
            return True
        if self.status in NO_CAR_STATUSES:
            return False
        return None

    def active_phases(self, threshold_a: float = 1.0) -> tuple[bool, bool, bool] | None:
        """Which phases carry at least `threshold_a`, or None when the currents are not known."""
        currents = self.phase_currents()
        if currents is None:
            return None
        return (currents[0] >= threshold_a, currents[1] >= threshold_a, currents[2] >= threshold_a)


class ChargePointStatus(_Model):
    id: str | None = None
    status: str | None = None
    connector_statuses: list[ConnectorStatus] = Field(default_factory=list)

    _empty_list = field_validator("connector_statuses", mode="before")(_none_to_empty_list)

    def connector(self, connector_id: int) -> ConnectorStatus | None:
        for c in self.connector_statuses:
            if c.connector_id == connector_id:
                return c
        return None


# Fields of the document's write schemas; anything else (installationCurrent)
# is view-only and must never be echoed back: the schemas forbid extra fields.
_CHARGEPOINT_SETTINGS_FIELDS = ("id", "dimmer", "down_light", "max_current")
_CONNECTOR_SETTINGS_FIELDS = (
    "charge_point_id", "connector_id", "max_current", "rfid_lock", "mode", "cable_lock",
)


class ChargePointSettings(_Model):
    id: str | None = None
    dimmer: str | None = None
    down_light: bool | None = None
    max_current: float | None = None
    installation_current: int | None = None  # view-only (GET); never sent

    def to_request(self) -> dict[str, Any]:
        """The PUT body: the document's fields only; None left out (not every field is nullable)."""
        return self.model_dump(
            by_alias=True, include=set(_CHARGEPOINT_SETTINGS_FIELDS), exclude_none=True
        )


class ConnectorSettings(_Model):
    charge_point_id: str | None = None
    connector_id: int
    max_current: float | None = None
    rfid_lock: bool | None = None
    mode: str | None = None
    cable_lock: bool | None = None
    installation_current: int | None = None  # view-only (GET); never sent

    def to_request(self) -> dict[str, Any]:
        return self.model_dump(
            by_alias=True, include=set(_CONNECTOR_SETTINGS_FIELDS), exclude_none=True
        )


class Connector(_Model):
    charge_point_id: str | None = None
    connector_id: int
    type: str | None = None
    settings: ConnectorSettings | None = None
    connector_user_id: str | None = None


class ChargePoint(_Model):
    # The document's ChargePoint also has the charger's OCPP `password`; it is
    # deliberately not modelled so that it is dropped on read and never logged.
    id: str
    name: str | None = None
    type: str | None = None
    is_loadbalanced: bool | None = None
    firmware_version: str | None = None
    hardware_version: str | None = None
    owner_read_only: bool | None = None
    ocpp_version: str | None = None
    settings: ChargePointSettings | None = None
    connectors: list[Connector] = Field(default_factory=list)

    _empty_list = field_validator("connectors", mode="before")(_none_to_empty_list)


__all__ = [
    "CONNECTOR_MODES",
    "ChargePoint",
    "ChargePointSettings",
    "ChargePointStatus",
    "Connector",
    "ConnectorMode",
    "ConnectorSettings",
    "ConnectorStatus",
    "DIMMER_VALUES",
    "Measurement",
    "PHASE_NAMES",
]
