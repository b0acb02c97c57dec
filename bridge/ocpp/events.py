"""What the central system tells the service's worker (it only enqueues these)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refused:
    """A handshake refused: an identity not listed, or wrong credentials (never the password)."""
    identity: str
    reason: str


@dataclass(frozen=True)
class Connected:
    cp: str


@dataclass(frozen=True)
class Disconnected:
    cp: str


@dataclass(frozen=True)
class Booted:
    cp: str
    vendor: str
    model: str
    firmware: str | None


@dataclass(frozen=True)
class StatusChanged:
    cp: str
    connector: int
    status: str  # the OCPP ChargePointStatus: Available, Preparing, Charging, SuspendedEV, ...
    error_code: str


@dataclass(frozen=True)
class MeterReading:
    cp: str
    connector: int
    currents: tuple[float, float, float] | None  # A on the charger's L1, L2, L3
    power_w: float | None
    energy_wh: float | None


@dataclass(frozen=True)
class InstallationCurrent:
    """What the charger says it is installed for (0: the whole charge point), in A."""
    cp: str
    connector: int
    amps: float


@dataclass(frozen=True)
class TransactionChanged:
    cp: str
    connector: int
    transaction_id: int | None  # None: the transaction ended


@dataclass(frozen=True)
class ControlLearned:
    cp: str
    method: str  # one of bridge.ocpp.profiles.CONTROL_METHODS


@dataclass(frozen=True)
class NotControllable:
    """The charger accepted none of the ways to set a limit: its connectors are not balanced."""
    cp: str
    message: str


@dataclass(frozen=True)
class CallFailed:
    """A call to a charger timed out or was answered with an error."""
    cp: str
    action: str
    message: str


@dataclass(frozen=True)
class LimitApplied:
    """The outcome of a limit the worker asked for."""
    cp: str
    connector: int
    amps: float
    accepted: bool


@dataclass(frozen=True)
class UpstreamCap:
    """The upstream central system's SetChargingProfile: a cap on the connector (0: every connector)."""
    cp: str
    connector: int
    amps: float | None  # None: the profile named no limit
