"""Pydantic models of the EAPI v5 document.

Tolerant on read: enum-like values are kept as plain strings (OCPP chargers
report statuses the document does not list, and new modes may appear), nulls
are accepted wherever the document says nullable, and unknown fields are
ignored. Strict on write: `to_request()` gives exactly the document's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

ConnectorMode = Literal["On", "Off", "Schedule"]
CONNECTOR_MODES: tuple[str, ...] = ("On", "Off", "Schedule")
DIMMER_VALUES: tuple[str, ...] = ("Off", "Low", "Medium", "High")
PHASE_NAMES: tuple[str, str, str] = ("L1", "L2", "L3")


@dataclass(frozen=True)
class StatusMeaning:
    """What a connector status says: the firmware sets it belongs to ("capi": Charge Amps' own
    protocol, "ocpp": OCPP 1.6's ChargePointStatus), whether a car is plugged in (None: it does
    not say) and whether current can flow to a car (False: none flows; None: the measurements say)."""

    firmwares: frozenset[str]
    car_plugged: bool | None
    delivering: bool | None


_CAPI, _OCPP, _BOTH = frozenset({"capi"}), frozenset({"ocpp"}), frozenset({"capi", "ocpp"})
# The one table of connector statuses, both sets (the v5 document keeps `status` a free string;
# the names are those of hass-chargeamps' const.py STATUS_CAPI_MAP and STATUS_OCPP_MAP).
CONNECTOR_STATUSES: dict[str, StatusMeaning] = {
    "Available": StatusMeaning(_BOTH, False, False),
    "Charging": StatusMeaning(_BOTH, True, None),
    "Unknown": StatusMeaning(_BOTH, None, None),
    # CAPI: a car plugged in that draws nothing (the car does not want to, or is not offered
    # 6 A); Error: the charger's fault, whether a car is there is not said.
    "Connected": StatusMeaning(_CAPI, True, False),
    "Error": StatusMeaning(_CAPI, None, False),
    # OCPP: a session being prepared (plugged, not charging yet, e.g. waiting for an RFID
    # authorisation), suspended by the charger (offered under 6 A, mode Off) or by the car
    # (plugged, taking nothing), or being finished (stopped, car still plugged in).
    "Preparing": StatusMeaning(_OCPP, True, False),
    "SuspendedEVSE": StatusMeaning(_OCPP, True, False),
    "SuspendedEV": StatusMeaning(_OCPP, True, False),
    "Finishing": StatusMeaning(_OCPP, True, False),
    "Reserved": StatusMeaning(_OCPP, False, False),
    "Unavailable": StatusMeaning(_OCPP, None, False),
    "Faulted": StatusMeaning(_OCPP, None, False),
}
# A status not known here says nothing: not whether a car is there, nor whether it draws.
UNKNOWN_STATUS = CONNECTOR_STATUSES["Unknown"]


def status_meaning(status: str | None) -> StatusMeaning:
    return CONNECTOR_STATUSES.get(status or "", UNKNOWN_STATUS)


def statuses_of(firmware: str) -> frozenset[str]:
    """The statuses a charger on `firmware` ("capi" or "ocpp") reports."""
    return frozenset(name for name, m in CONNECTOR_STATUSES.items() if firmware in m.firmwares)


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
            return (0.0, 0.0, 0.0) if status_meaning(self.status).delivering is False else None
        currents = [0.0, 0.0, 0.0]
        for m in self.measurements:
            if m.phase in PHASE_NAMES:
                currents[PHASE_NAMES.index(m.phase)] = float(m.current)
        return (currents[0], currents[1], currents[2])

    def car_plugged(self) -> bool | None:
        """Whether a car is plugged in, from the status; None when the status does not say."""
        return status_meaning(self.status).car_plugged

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
    "CONNECTOR_STATUSES",
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
    "StatusMeaning",
    "status_meaning",
    "statuses_of",
]
