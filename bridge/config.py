"""Settings: read once from the environment (and a `.env` file), validated.

The names of the variables are the public interface; `Settings` has one field
per variable, spelled the same in lower case.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path
from uuid import UUID
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.balancer.capacity import CAPACITY_LIMIT_RULE, CapacityConfigError, check_capacity_limit
from bridge.balancer.circuits import CIRCUIT_VARIABLE
from bridge.balancer.model import DEFAULT_STRATEGY, STRATEGIES
from bridge.limits import MAX_CURRENT_A, MIN_CURRENT_A

DEFAULT_BASE_URL = "https://eapi.charge.space"


# What every run needs (the Charge Amps account); every other setting has a default.
REQUIRED_VARIABLES = ("CHARGEAMPS_EMAIL", "CHARGEAMPS_PASSWORD", "CHARGEAMPS_API_KEY")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "chargeamps-bridge"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        # `.env.example` ships `NAME=` lines: an empty value means "use the default",
        # not "parse the empty string" (which would fail for numbers and choices).
        env_ignore_empty=True,
        # `nan` would pass no range check ("should be less than 250 (got 'nan')"): it is refused
        # as no number at all (describe_validation_error says so), as is an infinity.
        allow_inf_nan=False,
    )

    # Charge Amps cloud
    chargeamps_email: str | None = None
    chargeamps_password: SecretStr | None = None
    chargeamps_api_key: SecretStr | None = None
    chargeamps_base_url: str = DEFAULT_BASE_URL
    chargeamps_chargepoint_id: str | None = None
    chargeamps_connector_id: int = Field(1, ge=1, le=8)
    # Several connectors on one fuse: `CP:N[/PHASES][@CIRCUIT]` entries, comma separated.
    chargeamps_connectors: str | None = None
    # Circuits under the main fuse: `NAME:MAX_A[:PARENT]`, comma separated (their meters:
    # CIRCUIT_<NAME>_TOPIC_L1..3 and the rest, see circuit_meter_sources).
    circuits: str | None = None
    chargeamps_state_dir: Path = Field(default_factory=default_state_dir)
    chargeamps_current_level: Literal["connector", "chargepoint"] = "connector"
    chargeamps_pause_method: Literal["current", "mode"] = "current"
    chargeamps_poll_interval: float = Field(30, ge=10, le=3600)
    chargeamps_http_timeout: float = Field(10, gt=0, le=120)
    # The account's requests a minute, every charge point's together (writes first, polls second).
    chargeamps_requests_per_min: int = Field(60, ge=10, le=600)
    # An organisation (a GUID) whose charge points' statuses come in one call, where the account may read them.
    chargeamps_organisation_id: UUID | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # MQTT
    mqtt_host: str = "localhost"
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    # None: default_client_id(host, base topic), filled in by _limits.
    mqtt_client_id: str | None = None
    mqtt_base_topic: str = "chargeamps"

    # P1 meter; None = from the preset, else the built-in default
    p1_preset: str | None = None
    p1_device: str | None = None
    p1_topic_l1: str | None = None
    p1_topic_l2: str | None = None
    p1_topic_l3: str | None = None
    p1_json_path_l1: str | None = None
    p1_json_path_l2: str | None = None
    p1_json_path_l3: str | None = None
    p1_unit: str | None = None
    p1_voltage: float = 230  # checked with the meter source (VOLTAGE_RANGE)
    p1_heartbeat_topic: str | None = None
    p1_phases: int = 3  # 1: a single-phase connection on L1 (checked with the meter source)
    # Per-phase power and voltage inputs, and the house's net power; the same None rule.
    p1_power_topic_l1: str | None = None
    p1_power_topic_l2: str | None = None
    p1_power_topic_l3: str | None = None
    p1_power_json_path_l1: str | None = None
    p1_power_json_path_l2: str | None = None
    p1_power_json_path_l3: str | None = None
    p1_power_delivered_topic_l1: str | None = None
    p1_power_delivered_topic_l2: str | None = None
    p1_power_delivered_topic_l3: str | None = None
    p1_power_delivered_json_path_l1: str | None = None
    p1_power_delivered_json_path_l2: str | None = None
    p1_power_delivered_json_path_l3: str | None = None
    p1_power_returned_topic_l1: str | None = None
    p1_power_returned_topic_l2: str | None = None
    p1_power_returned_topic_l3: str | None = None
    p1_power_returned_json_path_l1: str | None = None
    p1_power_returned_json_path_l2: str | None = None
    p1_power_returned_json_path_l3: str | None = None
    p1_voltage_topic_l1: str | None = None
    p1_voltage_topic_l2: str | None = None
    p1_voltage_topic_l3: str | None = None
    p1_voltage_json_path_l1: str | None = None
    p1_voltage_json_path_l2: str | None = None
    p1_voltage_json_path_l3: str | None = None
    p1_power_unit: str | None = None
    p1_power_topic: str | None = None
    p1_power_json_path: str | None = None
    # The meter's energy registers (the sum of its tariffs), for the capacity guard's periods.
    p1_energy_import_topic: str | None = None
    p1_energy_import_json_path: str | None = None
    p1_energy_export_topic: str | None = None
    p1_energy_export_json_path: str | None = None
    p1_energy_unit: str | None = None
    # A Belgian meter's own demand figures (OBIS 1-0:1.4.0 and 1-0:1.6.0), for the capacity guard.
    p1_demand_topic: str | None = None
    p1_demand_json_path: str | None = None
    p1_month_peak_topic: str | None = None
    p1_month_peak_json_path: str | None = None
    p1_month_peak_time_json_path: str | None = None
    p1_demand_unit: str | None = None

    # Balancer
    balancer_strategy: Literal[STRATEGIES] = DEFAULT_STRATEGY  # type: ignore[valid-type]
    balancer_max_a: float = Field(24, gt=0, le=250)
    balancer_fuse_a: float = Field(25, gt=0, le=250)
    balancer_default_current: int = Field(16, ge=MIN_CURRENT_A, le=MAX_CURRENT_A)
    balancer_min_current: int = Field(MIN_CURRENT_A, ge=MIN_CURRENT_A, le=MAX_CURRENT_A)
    balancer_stale_after_s: float = Field(30, ge=1, le=3600)
    balancer_failsafe_current: int = Field(MIN_CURRENT_A, ge=0, le=MAX_CURRENT_A)
    balancer_failsafe_pause_after_s: float = Field(120, ge=1, le=86400)
    balancer_restore_interval_s: float = Field(600, ge=1)
    balancer_raise_hold_s: float | None = Field(None, ge=0)
    balancer_min_pause_s: float = Field(300, ge=0)
    balancer_min_command_interval_s: float = Field(15, ge=0)

    # Capacity tariff (the guard is off while CAPACITY_LIMIT_KW is unset)
    capacity_limit_kw: float | None = None  # check_capacity_limit: 0 (off), or from its minimum up
    capacity_period_min: int = 60
    capacity_hours: str | None = None
    capacity_months: str | None = None
    capacity_peaks: int = Field(1, ge=1, le=31)
    capacity_peaks_distinct_days: bool = False
    capacity_follow_month_peak: bool = True
    # The local clock the tariff's periods follow (an IANA zone such as Europe/Stockholm)
    tz: str | None = None

    # Charging from solar surplus
    pv_window_s: float = Field(60, ge=1, le=3600)
    pv_import_allowance_w: float = Field(0, ge=0, le=100000)
    pv_enable_delay_s: float = Field(60, ge=0, le=3600)
    pv_disable_delay_s: float = Field(30, ge=0, le=3600)

    # The way to the chargers: the Charge Amps cloud, or the bridge as their local OCPP 1.6J central system
    charger_transport: Literal["cloud", "ocpp"] = "cloud"
    ocpp_host: str = "0.0.0.0"
    ocpp_port: int = Field(8887, ge=1, le=65535)
    ocpp_charge_points: str | None = None  # the identities accepted, comma separated
    ocpp_password: SecretStr | None = None  # HTTP Basic auth (security profile 1), user = the identity
    ocpp_tls_cert: Path | None = None  # wss (security profile 2), with OCPP_TLS_KEY
    ocpp_tls_key: Path | None = None
    ocpp_meter_interval_s: float = Field(10, ge=1, le=3600)
    ocpp_profile_ttl_s: float = Field(120, ge=10, le=86400)
    ocpp_upstream_url: str | None = None
    ocpp_upstream_password: SecretStr | None = None

    # Home Assistant
    ha_discovery: bool = True
    ha_discovery_prefix: str = "homeassistant"

    # A variable that looks meant for the bridge but is none of its names (see unknown_variables)
    # is an error instead of a warning.
    strict_config: bool = False

    # The warnings load_settings found (unknown variables), for the CLI to log once logging is set up.
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @field_validator("mqtt_base_topic", "ha_discovery_prefix")
    @classmethod
    def _topic_prefix(cls, v: str) -> str:
        v = v.strip().strip("/")
        if not v or any(c in v for c in "+#\0"):
            raise ValueError("must be a topic prefix without wildcards")
        return v

    @field_validator("capacity_limit_kw", mode="after")
    @classmethod
    def _capacity_limit(cls, v: float | None) -> float | None:
        try:
            return None if v is None else check_capacity_limit(v)
        except CapacityConfigError:
            raise ValueError(CAPACITY_LIMIT_RULE) from None  # the value is quoted with the variable

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("chargeamps_current_level", "chargeamps_pause_method", "balancer_strategy", mode="before")
    @classmethod
    def _lower_case_choice(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("chargeamps_state_dir", "mqtt_ca_file", mode="after")
    @classmethod
    def _expand_home(cls, v: Path | None) -> Path | None:
        # `.env` files are not expanded by a shell, and `.env.example` shows `~/...`.
        return v.expanduser() if v is not None else None

    @field_validator("mqtt_ca_file", mode="after")
    @classmethod
    def _ca_file_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError("no such file")
        return v

    @field_validator("p1_unit", "p1_power_unit", mode="after")
    @classmethod
    def _unit(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        from bridge.mqtt.meter import POWER_UNITS, UNITS

        units = UNITS if info.field_name == "p1_unit" else POWER_UNITS
        unit = units.get(v.strip().lower())
        if unit is None:
            choices = list(units.values())
            raise ValueError(f"must be {', '.join(choices[:-1])} or {choices[-1]}")
        return unit

    @field_validator("capacity_period_min", mode="after")
    @classmethod
    def _capacity_period(cls, v: int) -> int:
        from bridge.balancer.capacity import PERIOD_MINUTES

        if v not in PERIOD_MINUTES:
            raise ValueError("the tariff's period is 60 or 15 minutes")
        return v

    @field_validator("capacity_hours", mode="after")
    @classmethod
    def _capacity_hours(cls, v: str | None) -> str | None:
        from bridge.balancer.capacity import parse_hours

        parse_hours(v)  # CapacityConfigError is a ValueError: its one line becomes the message
        return v

    @field_validator("capacity_months", mode="after")
    @classmethod
    def _capacity_months(cls, v: str | None) -> str | None:
        from bridge.balancer.capacity import parse_months

        parse_months(v)
        return v

    @field_validator("tz", mode="after")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        # Checked only where the capacity tariff needs it (see _limits): a TZ the bridge cannot
        # read, such as a POSIX rule string, must not stop a bridge that does not use it.
        return None if v is None or not v.strip() else v.strip()

    @field_validator("chargeamps_base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("p1_preset")
    @classmethod
    def _preset(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        from bridge.mqtt.meter import P1_PRESETS

        if v not in P1_PRESETS:
            raise ValueError(f"unknown preset {v!r}; choose one of {', '.join(sorted(P1_PRESETS))}")
        return v

    @field_validator("chargeamps_connectors", "ocpp_charge_points", "circuits")
    @classmethod
    def _listed(cls, v: str | None, info: ValidationInfo) -> str | None:
        """A comma-separated list (connectors, OCPP identities, circuits): unset when empty, else
        read by its parser, whose ValueError names the bad entry."""
        if v is None or not v.strip():
            return None
        _list_parser(info.field_name)(v)
        return v.strip()

    @field_validator("charger_transport", mode="before")
    @classmethod
    def _lower_case_transport(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("ocpp_tls_cert", "ocpp_tls_key", mode="after")
    @classmethod
    def _tls_file(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        v = v.expanduser()
        if not v.is_file():
            raise ValueError("no such file")
        return v

    @field_validator("ocpp_upstream_url")
    @classmethod
    def _upstream_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if not v.strip().startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return v.strip()

    @model_validator(mode="after")
    def _ocpp(self) -> "Settings":
        if (self.ocpp_tls_cert is None) != (self.ocpp_tls_key is None):
            raise ValueError("OCPP_TLS_CERT and OCPP_TLS_KEY go together: set both for wss, or neither")
        if self.ocpp_password is not None and not self.ocpp_password.get_secret_value():
            raise ValueError("OCPP_PASSWORD is empty: set a password or leave it unset")
        if self.charger_transport == "ocpp" and not self.ocpp_identities():
            raise ValueError(
                "CHARGER_TRANSPORT=ocpp accepts only listed chargers: name their identities in "
                "OCPP_CHARGE_POINTS (or the charge points in CHARGEAMPS_CONNECTORS)"
            )
        return self

    def ocpp_identities(self) -> tuple[str, ...]:
        """The charge point identities the central system accepts: OCPP_CHARGE_POINTS, else the
        charge points CHARGEAMPS_CONNECTORS or CHARGEAMPS_CHARGEPOINT_ID name."""
        from bridge.ocpp.identity import parse_identities

        if self.ocpp_charge_points:
            return parse_identities(self.ocpp_charge_points)
        named = [spec.chargepoint for spec in self.connector_specs()] or [self.chargeamps_chargepoint_id]
        return tuple(dict.fromkeys(cp for cp in named if cp))

    @model_validator(mode="after")
    def _limits(self) -> "Settings":
        if not self.mqtt_client_id:
            self.mqtt_client_id = default_client_id(socket.gethostname(), self.mqtt_base_topic)
        if len(self.connector_specs()) > 1 and self.balancer_strategy != "adaptive":
            raise ValueError(
                f"CHARGEAMPS_CONNECTORS lists {len(self.connector_specs())} connectors, but BALANCER_STRATEGY "
                f"{self.balancer_strategy} balances one connector only (it is the original one-car flow); "
                "use BALANCER_STRATEGY=adaptive to share the fuse between several cars"
            )
        if self.balancer_max_a > self.balancer_fuse_a:
            raise ValueError(
                f"BALANCER_MAX_A ({self.balancer_max_a:g}) is above BALANCER_FUSE_A "
                f"({self.balancer_fuse_a:g}): MaxA must stay under the main fuse"
            )
        if self.balancer_max_a < self.balancer_min_current:
            raise ValueError(
                f"BALANCER_MAX_A ({self.balancer_max_a:g}) is below BALANCER_MIN_CURRENT "
                f"({self.balancer_min_current}): the car could never charge"
            )
        if self.balancer_min_current > self.balancer_default_current:
            raise ValueError("BALANCER_MIN_CURRENT is above BALANCER_DEFAULT_CURRENT")
        if 0 < self.balancer_failsafe_current < self.balancer_min_current:
            raise ValueError(
                "BALANCER_FAILSAFE_CURRENT must be 0 (pause) or at least BALANCER_MIN_CURRENT"
            )
        if self.balancer_failsafe_current > self.balancer_default_current:
            raise ValueError("BALANCER_FAILSAFE_CURRENT is above BALANCER_DEFAULT_CURRENT")
        from bridge.balancer import BalancerConfig

        longest_hold_s = BalancerConfig.raise_hold_max_s
        if self.balancer_raise_hold_s is not None and self.balancer_raise_hold_s > longest_hold_s:
            raise ValueError(
                f"BALANCER_RAISE_HOLD_S ({self.balancer_raise_hold_s:g}) is above the longest hold "
                f"the balancer uses ({longest_hold_s:g} s)"
            )
        # The balancer and the meter check more than the per-field limits above;
        # building them here makes a bad combination a configuration error at
        # start-up instead of a crash of `run`.
        try:
            self.balancer_config()
        except ValueError as e:
            raise ValueError(_balancer_names(str(e))) from None
        if self.capacity_limit_kw is not None:
            try:
                zone_of(self.tz)  # the periods follow this clock: an unknown zone is an error now
            except ValueError as e:
                raise ValueError(f"TZ: {e}") from None
        from bridge.mqtt.meter import MeterConfigError

        try:
            self.meter_source()
            self.energy_registers()
            self.meter_demand()
        except MeterConfigError as e:
            raise ValueError(str(e)) from None
        self.circuit_tree()  # ValueError names a cycle, an unknown parent or circuit, a child above its parent
        self.circuit_meter_sources()
        return self

    def circuit_list(self) -> list:
        """The circuits of CIRCUITS (empty when unset)."""
        from bridge.balancer.circuits import parse_circuits

        return parse_circuits(self.circuits)

    def circuit_tree(self):
        """The circuits and the connectors on each (CHARGEAMPS_CONNECTORS' `@NAME`), checked."""
        from bridge.balancer.circuits import CircuitTree

        specs = self.connector_specs()
        try:
            return CircuitTree(self.circuit_list(), self.balancer_max_a, {s.key: s.circuit for s in specs})
        except ValueError as e:
            raise ValueError(f"CIRCUITS: {e}") from None

    def circuit_meter_sources(self) -> dict:
        """Each circuit's own meter, by name, from CIRCUIT_<NAME>_TOPIC_L1..3 and the JSON paths,
        unit and voltage in the shapes of the P1_* settings; a circuit without topics has none (its
        load is its cars' draws). ValueError names the variable at fault."""
        from bridge.balancer.circuits import circuit_variable
        from bridge.mqtt.meter import UNITS, MeterConfigError, MeterSource

        env = _environ_with_dotenv()
        sources = {}
        for circuit in self.circuit_list():
            def value(setting: str) -> str | None:
                v = env.get(circuit_variable(circuit.name, setting))
                return v.strip() if v is not None and v.strip() else None

            topics = [value(f"TOPIC_L{n}") for n in (1, 2, 3)]
            if not any(topics):
                continue
            missing = [circuit_variable(circuit.name, f"TOPIC_L{n}") for n, t in zip((1, 2, 3), topics) if not t]
            if missing:
                raise ValueError(f"{', '.join(missing)} not set: circuit {circuit.name}'s meter needs a topic per phase")
            unit = value("UNIT")
            if unit is not None and unit.lower() not in UNITS:
                raise ValueError(f"{circuit_variable(circuit.name, 'UNIT')}: must be one of {', '.join(UNITS.values())}")
            voltage = value("VOLTAGE")
            try:
                sources[circuit.name] = MeterSource.from_settings(
                    topics=topics, paths=[value(f"JSON_PATH_L{n}") for n in (1, 2, 3)],
                    unit=None if unit is None else UNITS[unit.lower()],
                    voltage=self.p1_voltage if voltage is None else float(voltage))
            except (MeterConfigError, ValueError) as e:
                raise ValueError(f"circuit {circuit.name}'s meter (CIRCUIT_{circuit.name.upper()}_*): {e}") from None
        return sources

    def connector_specs(self) -> list:
        """The connectors on the fuse, from CHARGEAMPS_CONNECTORS; empty when it is not set
        (then the one connector CHARGEAMPS_CONNECTOR_ID of the chosen charge point)."""
        if not self.chargeamps_connectors:
            return []
        from bridge.balancer.sharing import parse_connectors

        return parse_connectors(self.chargeamps_connectors)

    def require_cloud(self) -> None:
        """The account settings every cloud call needs."""
        missing = [
            name
            for name in REQUIRED_VARIABLES
            if not (value := getattr(self, name.lower()))
            or (isinstance(value, SecretStr) and not value.get_secret_value())
        ]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set: the Charge Amps account and API key are needed "
                "to talk to the cloud (set them in the environment or in .env)"
            )

    @property
    def warnings(self) -> list[str]:
        """What load_settings found worth a warning (a misspelled variable, ...)."""
        return list(self._warnings)

    @property
    def token_file(self) -> Path:
        return self.chargeamps_state_dir / "tokens.json"

    @property
    def runtime_file(self) -> Path:
        return self.chargeamps_state_dir / "runtime.json"

    @property
    def ocpp_file(self) -> Path:
        return self.chargeamps_state_dir / "ocpp.json"

    def meter_source(self):
        """The meter source from the P1_* settings (a preset filled in, explicit settings winning)."""
        from bridge.mqtt.meter import MeterSource

        def phases(name: str) -> tuple[str | None, str | None, str | None]:
            return tuple(getattr(self, f"p1_{name}_l{n}") for n in (1, 2, 3))  # type: ignore[return-value]

        return MeterSource.from_settings(
            topics=phases("topic"),
            paths=phases("json_path"),
            unit=self.p1_unit,
            voltage=self.p1_voltage,
            preset=self.p1_preset,
            device=self.p1_device,
            heartbeat_topic=self.p1_heartbeat_topic,
            power_topics=phases("power_topic"),
            power_paths=phases("power_json_path"),
            delivered_topics=phases("power_delivered_topic"),
            delivered_paths=phases("power_delivered_json_path"),
            returned_topics=phases("power_returned_topic"),
            returned_paths=phases("power_returned_json_path"),
            voltage_topics=phases("voltage_topic"),
            voltage_paths=phases("voltage_json_path"),
            power_unit=self.p1_power_unit,
            total_power_topic=self.p1_power_topic,
            total_power_path=self.p1_power_json_path,
            phases=self.p1_phases,
        )

    def energy_registers(self):
        """The meter's energy registers from P1_ENERGY_* (else the preset's)."""
        from bridge.mqtt.meter import EnergyRegisters

        return EnergyRegisters.from_settings(
            self.p1_preset, self.p1_device,
            import_topic=self.p1_energy_import_topic, import_path=self.p1_energy_import_json_path,
            export_topic=self.p1_energy_export_topic, export_path=self.p1_energy_export_json_path,
            unit=self.p1_energy_unit,
        )

    def meter_demand(self):
        """The meter's own demand figures from P1_DEMAND_* and P1_MONTH_PEAK_* (else the preset's)."""
        from bridge.mqtt.meter import MeterDemand

        return MeterDemand.from_settings(
            self.p1_preset, self.p1_device,
            demand_topic=self.p1_demand_topic, demand_path=self.p1_demand_json_path,
            peak_topic=self.p1_month_peak_topic, peak_path=self.p1_month_peak_json_path,
            peak_time_path=self.p1_month_peak_time_json_path, unit=self.p1_demand_unit,
        )

    def capacity_config(self, limit_kw: float | None = None):
        """The capacity guard's settings (with `limit_kw` instead of CAPACITY_LIMIT_KW when given; 0 =
        off), or None when there is no limit (the guard is off)."""
        from bridge.balancer.capacity import CapacityConfig, parse_hours, parse_months

        limit = self.capacity_limit_kw if limit_kw is None else limit_kw
        if not limit:
            return None
        return CapacityConfig(
            limit_kw=limit,
            period_min=self.capacity_period_min,
            hours=parse_hours(self.capacity_hours),
            months=parse_months(self.capacity_months),
            peaks=self.capacity_peaks,
            peaks_distinct_days=self.capacity_peaks_distinct_days,
            follow_month_peak=self.capacity_follow_month_peak,
        )

    def local_zone(self):
        """The zone of the local clock: TZ, else the system's (also when TZ cannot be read)."""
        try:
            return zone_of(self.tz)
        except ValueError:
            return zone_of(None)

    def balancer_config(self, **overrides):
        """The balancer's configuration: the BALANCER_* settings declared above, and
        its finer tuning (every other BalancerConfig field) read the same way from
        the environment and `.env`."""
        from bridge.balancer import BalancerConfig
        from bridge.balancer.from_env import config_values_from_env
        from bridge.balancer.model import TRANSPORT_DEFAULTS, transport_config_values

        by_transport = TRANSPORT_DEFAULTS[self.charger_transport]
        declared = {
            key: getattr(self, field)
            for field in type(self).model_fields
            if field.startswith("balancer_") and (key := field.removeprefix("balancer_")) != "strategy"
        }
        values = config_values_from_env(BalancerConfig, _environ_with_dotenv(), skip=declared)
        values.update({k: v for k, v in declared.items() if v is not None and k in BalancerConfig.__dataclass_fields__
                       # a declared default the transport changes counts only when the user set it
                       and (k not in by_transport or f"balancer_{k}" in self.model_fields_set)})
        values.update(overrides)
        return BalancerConfig(**transport_config_values(self.charger_transport, values))


def _list_parser(field: str):
    """The parser of a list setting, imported when used as in the other validators."""
    if field == "chargeamps_connectors":
        from bridge.balancer.sharing import parse_connectors

        return parse_connectors
    if field == "ocpp_charge_points":
        from bridge.ocpp.identity import parse_identities

        return parse_identities
    from bridge.balancer.circuits import parse_circuits

    return parse_circuits


def zone_of(name: str | None):
    """The time zone named `name` (IANA, e.g. Europe/Stockholm, or TZ's `:Europe/Stockholm`), or the
    system's (/etc/localtime) when None; ValueError with one line when there is no such zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name is None or not name.strip():
        try:
            with open("/etc/localtime", "rb") as f:
                return ZoneInfo.from_file(f, key="localtime")
        except (OSError, ValueError):
            return ZoneInfo("UTC")
    key = name.strip().removeprefix(":")
    try:
        if key.startswith("/"):  # TZ=:/etc/localtime, as some systems set it
            with open(key, "rb") as f:
                return ZoneInfo.from_file(f, key=key)
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}; use a name such as Europe/Stockholm") from None


def default_client_id(host: str, base_topic: str) -> str:
    """MQTT_CLIENT_ID when unset: one per host and base topic, the same at every start. Two bridges on one
    host with different base topics must not share an id: the broker would hand one's session to the other."""
    return f"chargeamps-bridge-{host}-{base_topic.replace('/', '-')}"


# ---- variables that look like the bridge's but are none of its names --------------------------------

# Read from the same environment, but not by Settings: docker-compose.yml's own (`.env` reaches the
# bridge whole through `env_file`).
COMPOSE_ONLY_VARIABLES = frozenset({"MQTT_PUBLISHED_PORT", "DEMO_CLOUD_PORT"})
# Names built from a pattern, read elsewhere than Settings: a circuit's meter (CIRCUIT_<NAME>_TOPIC_L1, ...),
# and the prefix that says such a name is meant for the bridge.
DYNAMIC_VARIABLES = (CIRCUIT_VARIABLE,)
DYNAMIC_PREFIXES = ("CIRCUIT_",)
# How alike a name must be to a real one to count as its misspelling (difflib's ratio):
# BALANSER_MAX_A is 0.93 from BALANCER_MAX_A; unrelated variables stay far below.
NEAR_MISS_RATIO = 0.85


def known_variables() -> frozenset[str]:
    """Every variable name the bridge reads: the settings, the balancer's finer tuning
    (BALANCER_<FIELD>, see balancer_config) and the compose file's own."""
    import dataclasses

    from bridge.balancer import BalancerConfig
    from bridge.balancer.from_env import env_name

    settings = {name.upper() for name in Settings.model_fields}
    tuning = {env_name(f.name) for f in dataclasses.fields(BalancerConfig)}
    return frozenset(settings | tuning | COMPOSE_ONLY_VARIABLES)


def setting_prefixes() -> tuple[str, ...]:
    """The first word of the settings' names that two settings or more share (CHARGEAMPS_, MQTT_,
    P1_, BALANCER_, ...): a variable starting with one is meant for the bridge."""
    words = [name.split("_", 1)[0] for name in Settings.model_fields if "_" in name]
    return tuple(sorted({f"{w.upper()}_" for w in words if words.count(w) > 1} | set(DYNAMIC_PREFIXES)))


def unknown_variables(names: Iterable[str]) -> list[tuple[str, str | None]]:
    """The names among `names` that look meant for the bridge (one of its prefixes, or a near miss of
    one of its names) but are none of them, each with the closest real name (None when none is close)."""
    known = known_variables()
    candidates = sorted(known)
    prefixes = setting_prefixes()
    found = []
    for name in sorted({n.upper() for n in names}):
        if name in known or any(p.fullmatch(name) for p in DYNAMIC_VARIABLES):
            continue
        near = difflib.get_close_matches(name, candidates, n=1, cutoff=NEAR_MISS_RATIO)
        if near or name.startswith(prefixes):
            closest = near or difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
            found.append((name, closest[0] if closest else None))
    return found


def describe_unknown_variables(unknown: list[tuple[str, str | None]]) -> str:
    return "; ".join(f"{name} is no setting of the bridge" + (f" (did you mean {closest}?)" if closest else "")
                     for name, closest in unknown)


def _environ_with_dotenv() -> dict[str, str]:
    """The environment over `.env`, as pydantic-settings reads them."""
    merged = {k.upper(): v for k, v in dotenv_values(".env").items() if v is not None} if Path(".env").is_file() else {}
    merged.update({k.upper(): v for k, v in os.environ.items()})
    return merged


def _balancer_names(message: str) -> str:
    """The balancer's messages use its field names; the user knows the variables."""
    for field in Settings.model_fields:
        if field.startswith("balancer_"):
            key = field.removeprefix("balancer_")
            message = re.sub(rf"\b{key}\b", field.upper(), message)
    return message


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each variable at fault (secrets never quoted)."""
    lines = []
    for e in error.errors():
        loc = [str(p) for p in e.get("loc", ()) if p != "__root__"]
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        if e.get("type") == "finite_number":  # allow_inf_nan=False refused it
            msg = "not a number" if str(e.get("input")).strip().lower() in ("nan", "-nan", "+nan") \
                else "must be a finite number"
        if loc:
            name = loc[0].upper()
            value = e.get("input")
            shown = "" if "password" in loc[0] or "key" in loc[0] or value is None else f" (got {str(value)[:40]!r})"
            lines.append(f"{name}: {msg}{shown}")
        else:
            lines.append(msg)
    return "; ".join(lines)


def load_settings(**overrides) -> Settings:
    """Settings from the environment and `.env`; ConfigError names what is wrong. A variable that
    looks meant for the bridge but is none of its names is a warning (`warnings`), or with
    STRICT_CONFIG an error."""
    try:
        settings = Settings(**overrides)
        unknown = unknown_variables(_environ_with_dotenv())
        if unknown and settings.strict_config:
            raise ConfigError(f"invalid configuration: {describe_unknown_variables(unknown)} "
                              "(STRICT_CONFIG=true makes this an error)")
        if unknown:
            settings._warnings.append(f"{describe_unknown_variables(unknown)}: ignored")
        return settings
    except ValidationError as e:
        message = describe_validation_error(e)
    except UnicodeDecodeError as e:
        # Its own text would quote the file's bytes, and .env holds the password.
        message = f".env is not UTF-8 text (byte {e.start + 1} is not)"
    # Raised outside the `except` block so that the ValidationError, whose text
    # shows the raw input (secrets included), is not kept as __context__.
    raise ConfigError(f"invalid configuration: {message}")
