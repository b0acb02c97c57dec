"""Home Assistant MQTT discovery: one retained config message per entity.

Config topic: `<prefix>/<component>/<node_id>/<object_id>/config`. Every
entity points at the topics of `Topics`, so what Home Assistant shows and
sends is exactly the bridge's public MQTT API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.balancer.capacity import MAX_CAPACITY_LIMIT_KW
from bridge.balancer.power import CHARGE_MODES
from bridge.limits import MAX_CURRENT_A, MIN_CURRENT_A, current_ceiling, default_current_range
from bridge.mqtt.topics import PHASES, Topics

MANUFACTURER = "Charge Amps"
ORIGIN_NAME = "chargeamps-bridge"

# What `limits` holds when the caller leaves a key out: the limits with the
# default settings (BALANCER_MIN_CURRENT 6 A, BALANCER_FUSE_A 25 A, no installation current).
DEFAULT_LIMITS: dict[str, float] = {
    "max_a_min": MIN_CURRENT_A,
    "max_a_max": 25,
    "default_current_min": MIN_CURRENT_A,
    "default_current_max": MAX_CURRENT_A,
    "step": 1,
}

# Keys Home Assistant rejects a config without, per component.
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "sensor": ("state_topic",),
    "binary_sensor": ("state_topic",),
    "number": ("command_topic",),
    "switch": ("command_topic",),
    "select": ("command_topic", "options"),
    "button": ("command_topic",),
}

_SLUG = re.compile(r"[^a-zA-Z0-9_-]+")


def slug(value: str) -> str:
    """A topic level Home Assistant accepts as node_id / object_id."""
    return _SLUG.sub("_", str(value)).strip("_") or "x"


def ha_status_topic(prefix: str) -> str:
    """Home Assistant's birth/last-will topic: `online` there means re-publish discovery and state."""
    return f"{prefix.strip('/')}/status"


@dataclass(frozen=True)
class Entity:
    key: str  # object_id and the tail of unique_id
    component: str
    config: dict[str, Any] = field(default_factory=dict)


def _entities(t: Topics, cp: str, n: int, limits: dict[str, float]) -> list[Entity]:
    current = {"device_class": "current", "unit_of_measurement": "A", "state_class": "measurement"}
    kilowatts = {"device_class": "power", "unit_of_measurement": "kW", "state_class": "measurement"}
    watts = {**kilowatts, "unit_of_measurement": "W"}
    es: list[Entity] = [
        Entity(
            "charge_at",
            "sensor",
            {
                "name": "ChargeAt",
                "state_topic": t.charge_at,
                # the balancer's reason and headroom as attributes of ChargeAt
                "json_attributes_topic": t.balancer_state,
                "icon": "mdi:ev-station",
                **current,
            },
        ),
    ]
    for p in PHASES:
        es.append(Entity(f"loadbal_l{p + 1}", "sensor", {"name": f"LoadBal L{p + 1}", "state_topic": t.loadbal(p), **current}))
    for p in PHASES:
        es.append(
            Entity(f"meter_current_l{p + 1}", "sensor", {"name": f"Meter current L{p + 1}", "state_topic": t.meter_current(p), **current})
        )
    # Published only where the meter gives power (its net W, import positive); unknown otherwise.
    for p in PHASES:
        es.append(Entity(f"meter_power_l{p + 1}", "sensor", {"name": f"Meter power L{p + 1}", "state_topic": t.meter_power(p), **watts}))
    es.append(Entity("meter_power", "sensor", {"name": "Meter power", "state_topic": t.meter_power_total, **watts}))
    for p in PHASES:
        es.append(
            Entity(
                f"charger_current_l{p + 1}",
                "sensor",
                {"name": f"Charging current L{p + 1}", "state_topic": t.charger_current(cp, n, p), **current},
            )
        )
    es += [
        Entity(
            "power",
            "sensor",
            {
                "name": "Charging power",
                "state_topic": t.charger_power_kw(cp, n),
                "device_class": "power",
                "unit_of_measurement": "kW",
                "state_class": "measurement",
            },
        ),
        Entity(
            "session_energy",
            "sensor",
            {
                "name": "Session energy",
                "state_topic": t.charger_session_energy_kwh(cp, n),
                "device_class": "energy",
                "unit_of_measurement": "kWh",
                # restarts at 0 each session: total_increasing reads a drop as a reset
                "state_class": "total_increasing",
            },
        ),
        Entity(
            "connector_status",
            "sensor",
            # no enum device class: the cloud may report OCPP statuses we do not know
            {"name": "Connector status", "state_topic": t.charger_status(cp, n), "icon": "mdi:ev-plug-type2"},
        ),
        Entity(
            "connector_max_current",
            "sensor",
            {"name": "Connector max current", "state_topic": t.charger_max_current(cp, n), **current},
        ),
        Entity(
            "max_a",
            "number",
            {
                "name": "MaxA",
                "state_topic": t.max_a,
                "command_topic": t.max_a_set,
                "min": limits["max_a_min"],
                "max": limits["max_a_max"],
                "step": limits["step"],
                "mode": "box",
                "device_class": "current",
                "unit_of_measurement": "A",
                "entity_category": "config",
            },
        ),
        Entity(
            "default_current",
            "number",
            {
                "name": "Default current",
                "state_topic": t.default_current,
                "command_topic": t.default_current_set,
                "min": limits["default_current_min"],
                "max": limits["default_current_max"],
                "step": limits["step"],
                "mode": "box",
                "device_class": "current",
                "unit_of_measurement": "A",
                "entity_category": "config",
            },
        ),
        Entity(
            "balancer",
            "switch",
            {
                "name": "Load balancer",
                "state_topic": t.enabled,
                "command_topic": t.enabled_set,
                "payload_on": "ON",
                "payload_off": "OFF",
                "state_on": "ON",
                "state_off": "OFF",
                "icon": "mdi:scale-balance",
            },
        ),
        Entity(
            "connector_mode",
            "select",
            {
                "name": "Connector mode",
                "state_topic": t.charger_mode(cp, n),
                "command_topic": t.charger_mode_set(cp, n),
                "options": ["On", "Off", "Schedule"],
            },
        ),
        Entity(
            "charge_mode",
            "select",
            {
                "name": "Charge mode",
                "state_topic": t.charge_mode(cp, n),
                "command_topic": t.charge_mode_set(cp, n),
                "options": list(CHARGE_MODES),
                "icon": "mdi:solar-power-variant",
            },
        ),
        Entity(
            "capacity_limit",
            "number",
            {
                "name": "Capacity limit",
                "state_topic": t.capacity_limit_kw,
                "command_topic": t.capacity_limit_kw_set,
                "min": 0,
                "max": MAX_CAPACITY_LIMIT_KW,
                "step": 0.1,
                "mode": "box",
                "device_class": "power",
                "unit_of_measurement": "kW",
                "entity_category": "config",
            },
        ),
        Entity(
            "capacity_period",
            "sensor",
            {
                "name": "Capacity period average",
                "state_topic": t.capacity_period_kw,
                "json_attributes_topic": t.capacity_state,
                **kilowatts,
            },
        ),
        Entity(
            "capacity_projected",
            "sensor",
            {"name": "Capacity period projected", "state_topic": t.capacity_projected_kw, **kilowatts},
        ),
        Entity(
            "capacity_month_peak",
            "sensor",
            {
                "name": "Capacity month peak",
                "state_topic": t.capacity_month_peaks,
                # The highest of the month's billed peaks; the list of {start, kw} as an attribute.
                "value_template": "{{ (value_json | map(attribute='kw') | max) if value_json else 0 }}",
                "json_attributes_topic": t.capacity_month_peaks,
                "json_attributes_template": "{{ {'peaks': value_json} | tojson }}",
                **kilowatts,
            },
        ),
        Entity(
            "meter_stale",
            "binary_sensor",
            {
                "name": "Meter stale",
                "state_topic": t.meter_stale,
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "problem",
                "entity_category": "diagnostic",
            },
        ),
        Entity(
            "paused",
            "binary_sensor",
            {"name": "Charging paused", "state_topic": t.balancer_paused, "payload_on": "ON", "payload_off": "OFF", "icon": "mdi:pause-circle"},
        ),
        Entity(
            "charger_online",
            "binary_sensor",
            {
                "name": "Charger online",
                "state_topic": t.charger_online(cp),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
            },
        ),
        Entity(
            "refresh",
            "button",
            {"name": "Refresh", "command_topic": t.request_refresh, "payload_press": "PRESS", "icon": "mdi:refresh"},
        ),
        Entity(
            "reboot",
            "button",
            {
                "name": "Reboot charger",
                "command_topic": t.charger_reboot_set(cp),
                "payload_press": "PRESS",
                "device_class": "restart",
                "entity_category": "config",
            },
        ),
    ]
    return es


ENTITY_KEYS: tuple[str, ...] = tuple(e.key for e in _entities(Topics("x"), "cp", 1, DEFAULT_LIMITS))


def _limits(limits: dict[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_LIMITS)
    for key, value in (limits or {}).items():
        if key not in DEFAULT_LIMITS:
            raise ValueError(f"unknown discovery limit {key!r}; known: {', '.join(DEFAULT_LIMITS)}")
        if value is not None:
            merged[key] = value
    for name in ("max_a", "default_current"):
        lo, hi = merged[f"{name}_min"], merged[f"{name}_max"]
        if not 0 <= lo <= hi:
            raise ValueError(f"discovery limits for {name}: need 0 <= min <= max, got {lo}..{hi}")
    if merged["step"] <= 0:
        raise ValueError("discovery step must be positive")
    return merged


def config_topic(prefix: str, component: str, node_id: str, key: str) -> str:
    return f"{prefix.strip('/')}/{component}/{slug(node_id)}/{slug(key)}/config"


def _device(cp_id: str, device_model: str | None, sw_version: str) -> dict[str, Any]:
    """One Home Assistant device per charge point."""
    device: dict[str, Any] = {
        "identifiers": [f"chargeamps_{slug(cp_id)}"],
        "name": f"Charge Amps {cp_id}",
        "manufacturer": MANUFACTURER,
        "sw_version": sw_version,
        "serial_number": cp_id,
    }
    if device_model:
        device["model"] = device_model
    return device


# Which of the meter's power sensors (L1, L2, L3, the whole house) a configuration can fill:
# `MeterSource.gives_power`. The default announces all four.
ALL_METER_POWER: tuple[bool, bool, bool, bool] = (True, True, True, True)
_METER_POWER_KEYS = ("meter_power_l1", "meter_power_l2", "meter_power_l3", "meter_power")


def discovery_messages(
    topics: Topics,
    prefix: str,
    node_id: str,
    cp_id: str,
    connector: int,
    device_model: str | None,
    sw_version: str,
    limits: dict[str, float] | None = None,
    several_connectors: bool = False,
    meter_power: tuple[bool, bool, bool, bool] = ALL_METER_POWER,
) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, config payload) for every entity; publish retained, QoS 1, as JSON.

    With `several_connectors` the connectors' own entities (`connector_messages`) and the charge
    points' (`outlet_messages`) show each connector and charge point, so this set leaves out
    what they show. A meter power sensor the configuration cannot fill (`meter_power`) is left out.
    Publish `retired_messages` too, first."""
    bounds = _limits(limits)
    device = _device(cp_id, device_model, sw_version)
    return [
        _announcement(topics, prefix, node_id, entity, entity.key, f"{slug(cp_id)}_{connector}_{entity.key}",
                      device, sw_version)
        for entity in _charge_point_entities(topics, cp_id, connector, bounds, several_connectors, meter_power)
    ]


# With several connectors the charge point's ChargeAt is the connectors' sum and each connector
# has a ChargeAt of its own under the key `charge_at`: the sum takes another key, so that its
# unique_id is not the first connector's.
_SEVERAL_CONNECTORS_KEYS = {"charge_at": "charge_at_total"}
# With several connectors `balancer/paused` is ON only when every one is paused; each has its own.
_SEVERAL_CONNECTORS_NAMES = {"paused": "All connectors paused"}


def _charge_point_entities(t: Topics, cp: str, n: int, limits: dict[str, float], several: bool,
                           meter_power: tuple[bool, bool, bool, bool] = ALL_METER_POWER) -> list[Entity]:
    """The charge point's set; with several connectors without what a connector's or a charge
    point's own entity shows (one topic, one entity: the connector's, named after its connector)."""
    unfilled = {key for key, given in zip(_METER_POWER_KEYS, meter_power) if not given}
    entities = [e for e in _entities(t, cp, n, limits) if e.key not in unfilled]
    if not several:
        return entities
    own = _connector_entities(t, cp, n, f"Outlet {n}", CONNECTOR_LIMITS) + _station_entities(t, cp, None)
    shown = {e.config[k] for e in own for k in ("state_topic", "command_topic") if k in e.config}
    return [replace(e, key=_SEVERAL_CONNECTORS_KEYS.get(e.key, e.key),
                    config={**e.config, "name": _SEVERAL_CONNECTORS_NAMES.get(e.key, e.config["name"])})
            for e in entities
            if not {e.config.get("state_topic"), e.config.get("command_topic")} & shown]


def retired_messages(topics: Topics, prefix: str, node_id: str, cp_id: str, connector: int,
                     several_connectors: bool = True,
                     meter_power: tuple[bool, bool, bool, bool] = ALL_METER_POWER) -> list[tuple[str, str]]:
    """(config topic, "") to publish retained for every entity of the one-connector set that this
    configuration does not announce (with several connectors what a connector or charge point shows
    itself; a meter power sensor nothing fills), so that Home Assistant drops the ones an earlier
    announcement left (a bridge run with one connector, or an earlier version)."""
    kept = {e.key for e in _charge_point_entities(topics, cp_id, connector, DEFAULT_LIMITS, several_connectors,
                                                  meter_power)}
    return removal_messages(prefix, node_id, [key for key in ENTITY_KEYS if key not in kept])


def _announcement(topics: Topics, prefix: str, node_id: str, entity: Entity, object_id: str, unique_key: str,
                  device: dict[str, Any], sw_version: str) -> tuple[str, dict[str, Any]]:
    """One entity's config topic and payload, on its device, available while the bridge is online."""
    config = dict(entity.config)
    config.update(
        {
            "unique_id": f"chargeamps_{unique_key}",
            "device": device,
            "origin": {"name": ORIGIN_NAME, "sw_version": sw_version},
            "availability": [{"topic": topics.bridge_state, "payload_available": "online",
                              "payload_not_available": "offline"}],
            "qos": 1,
        }
    )
    return config_topic(prefix, entity.component, node_id, object_id), config


# Several connectors: the range of a connector's numbers where the caller leaves a key out
# (no installation current known: a connector is set to at most 32 A).
CONNECTOR_LIMITS: dict[str, float] = {
    "default_current_min": MIN_CURRENT_A,
    "default_current_max": MAX_CURRENT_A,
    "max_current_max": MAX_CURRENT_A,
}

# A connector's keys that the charge point's set also has (`paused`, `default_current`) are prefixed,
# so that their unique_ids stay the site-wide entities'.
# What a user of a site with many connectors needs is enabled (what each connector is given, with
# why as its attributes, its status, power, session energy and charge mode; whether each charger
# is online); the rest is announced disabled (`enabled_by_default: false`: the entity exists, off
# until a user turns it on), so that 20 chargers do not fill Home Assistant and its recorder with
# entities nobody looks at.
DISABLED_BY_DEFAULT = frozenset({"reason", "connector_paused", "priority", "mode", "max_current",
                                 "connector_default_current", "current_l1", "current_l2", "current_l3", "reboot"})


def _off_by_default(entities: list[Entity]) -> list[Entity]:
    return [replace(e, config={**e.config, "enabled_by_default": False}) if e.key in DISABLED_BY_DEFAULT else e
            for e in entities]


def _connector_entities(t: Topics, cp_id: str, n: int, label: str, limits: dict[str, float]) -> list[Entity]:
    """One connector's own entities, each named `<label> <what>` ("Outlet 2 max current")."""
    current = {"device_class": "current", "unit_of_measurement": "A", "state_class": "measurement"}
    amps = {"device_class": "current", "unit_of_measurement": "A", "step": 1, "mode": "box"}
    return _off_by_default([
        # Its reason, priority, phases and `until` as attributes: sent when their meaning changes.
        Entity("charge_at", "sensor", {"name": f"{label} ChargeAt", "state_topic": t.charger_charge_at(cp_id, n),
                                       "json_attributes_topic": t.charger_state(cp_id, n),
                                       "icon": "mdi:ev-station", **current}),
        Entity("reason", "sensor", {"name": f"{label} reason", "state_topic": t.charger_reason(cp_id, n),
                                    "entity_category": "diagnostic"}),
        Entity("connector_paused", "binary_sensor", {"name": f"{label} paused",
                                                     "state_topic": t.charger_paused(cp_id, n),
                                                     "payload_on": "ON", "payload_off": "OFF",
                                                     "icon": "mdi:pause-circle"}),
        Entity("priority", "number", {"name": f"{label} priority", "state_topic": t.charger_priority(cp_id, n),
                                      "command_topic": t.charger_priority_set(cp_id, n), "min": 0, "max": 9,
                                      "step": 1, "mode": "slider", "entity_category": "config"}),
        Entity("charge_mode", "select", {"name": f"{label} charge mode", "state_topic": t.charge_mode(cp_id, n),
                                         "command_topic": t.charge_mode_set(cp_id, n), "options": list(CHARGE_MODES),
                                         "icon": "mdi:solar-power-variant"}),
        Entity("mode", "select", {"name": f"{label} mode", "state_topic": t.charger_mode(cp_id, n),
                                  "command_topic": t.charger_mode_set(cp_id, n), "options": ["On", "Off", "Schedule"],
                                  "icon": "mdi:power-settings"}),
        # The charger's own setting; set by hand only while the balancer is off (else refused, answered).
        Entity("max_current", "number", {"name": f"{label} max current", "state_topic": t.charger_max_current(cp_id, n),
                                         "command_topic": t.charger_max_current_set(cp_id, n), "min": 0,
                                         "max": limits["max_current_max"], **amps}),
        Entity("connector_default_current", "number", {"name": f"{label} default current",
                                             "state_topic": t.charger_default_current(cp_id, n),
                                             "command_topic": t.charger_default_current_set(cp_id, n),
                                             "min": limits["default_current_min"],
                                             "max": limits["default_current_max"], **amps,
                                             "entity_category": "config"}),
        Entity("status", "sensor", {"name": f"{label} status", "state_topic": t.charger_status(cp_id, n),
                                    "icon": "mdi:ev-plug-type2"}),
        *(Entity(f"current_l{p + 1}", "sensor", {"name": f"{label} current L{p + 1}",
                                                 "state_topic": t.charger_current(cp_id, n, p), **current})
          for p in PHASES),
        Entity("power", "sensor", {"name": f"{label} power", "state_topic": t.charger_power_kw(cp_id, n),
                                   "device_class": "power", "unit_of_measurement": "kW",
                                   "state_class": "measurement"}),
        Entity("session_energy", "sensor", {"name": f"{label} session energy",
                                            "state_topic": t.charger_session_energy_kwh(cp_id, n),
                                            "device_class": "energy", "unit_of_measurement": "kWh",
                                            "state_class": "total_increasing"}),
    ])


def connector_messages(
    topics: Topics,
    prefix: str,
    node_id: str,
    cp_id: str,
    connector: int,
    device_model: str | None,
    sw_version: str,
    label: str | None = None,
    limits: dict[str, float] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Several connectors: one connector's own entities (its ChargeAt, reason, paused, priority,
    charge mode, mode, max current, default current, status, currents, power, energy) on its charge
    point's device, named `label` (`connector_labels`; "Outlet N" when not given)."""
    n = connector
    entities = _connector_entities(topics, cp_id, n, label or f"Outlet {n}", {**CONNECTOR_LIMITS, **(limits or {})})
    return _on_device(topics, prefix, node_id, cp_id, device_model, sw_version, entities,
                      f"{slug(cp_id)}_{n}", f"{slug(cp_id)}_{n}")


def _on_device(topics: Topics, prefix: str, node_id: str, cp_id: str, device_model: str | None, sw_version: str,
               entities: list[Entity], object_prefix: str, unique_prefix: str) -> list[tuple[str, dict[str, Any]]]:
    device = _device(cp_id, device_model, sw_version)
    return [_announcement(topics, prefix, node_id, e, f"{object_prefix}_{e.key}", f"{unique_prefix}_{e.key}",
                          device, sw_version) for e in entities]


def _station_entities(t: Topics, cp_id: str, label: str | None) -> list[Entity]:
    """A charge point's own entities (online, reboot), named after `label` when there are several."""
    return _off_by_default([
        Entity("charger_online", "binary_sensor", {
            "name": f"{label} online" if label else "Charger online", "state_topic": t.charger_online(cp_id),
            "payload_on": "ON", "payload_off": "OFF", "device_class": "connectivity",
            "entity_category": "diagnostic"}),
        Entity("reboot", "button", {
            "name": f"Reboot {label}" if label else "Reboot charger", "command_topic": t.charger_reboot_set(cp_id),
            "payload_press": "PRESS", "device_class": "restart", "entity_category": "config"}),
    ])


def connector_labels(connectors: list[tuple[str, int, str | None]]) -> tuple[dict[tuple[str, int], str],
                                                                             dict[str, str | None]]:
    """Names for (charge point id, connector, charge point's name from the cloud): on one charge point
    "Outlet N"; on several "<charge point> outlet N", the charge point by its name when every one has
    a name of its own, else by its id. The second dict names each charge point (None: one charge point)."""
    cps: dict[str, str | None] = {}
    for cp, _, name in connectors:
        cps.setdefault(cp, (name or "").strip() or None)
    if len(cps) <= 1:
        return {(cp, n): f"Outlet {n}" for cp, n, _ in connectors}, {cp: None for cp in cps}
    names = list(cps.values())
    by_name = all(names) and len(set(names)) == len(names)
    station = {cp: (name if by_name else cp) for cp, name in cps.items()}
    return {(cp, n): f"{station[cp]} outlet {n}" for cp, n, _ in connectors}, station  # type: ignore[misc]


@dataclass(frozen=True)
class Outlet:
    """One balanced connector as discovery names it: its charge point (id, kind, name in the cloud)
    and the installation current that bounds its numbers (None while not known)."""

    cp_id: str
    connector: int
    model: str | None = None
    cp_name: str | None = None
    installation_current: int | None = None


def outlet_messages(topics: Topics, prefix: str, node_id: str, outlets: list[Outlet], sw_version: str,
                    min_current: int = MIN_CURRENT_A) -> list[tuple[str, dict[str, Any]]]:
    """Several connectors: every connector's own entities (`connector_messages`) and every charge
    point's (online, reboot, once per charge point), on its device, named by `connector_labels`."""
    labels, stations = connector_labels([(o.cp_id, o.connector, o.cp_name) for o in outlets])
    out: list[tuple[str, dict[str, Any]]] = []
    stations_done: set[str] = set()
    for o in outlets:
        low, high = default_current_range(min_current, o.installation_current)
        bounds = {"default_current_min": low, "default_current_max": high,
                  "max_current_max": current_ceiling(o.installation_current)}
        out += connector_messages(topics, prefix, node_id, o.cp_id, o.connector, o.model, sw_version,
                                  labels[(o.cp_id, o.connector)], bounds)
        if o.cp_id not in stations_done:
            # The charge point's own entities on its first outlet: their unique_ids are those the
            # one-connector set gave it.
            stations_done.add(o.cp_id)
            out += _on_device(topics, prefix, node_id, o.cp_id, o.model, sw_version,
                              _station_entities(topics, o.cp_id, stations[o.cp_id]), slug(o.cp_id),
                              f"{slug(o.cp_id)}_{o.connector}")
    return out


def _circuit_entities(t: Topics, name: str) -> list[Entity]:
    """A circuit's sensors: what it carries and what is free on each phase, and its limit."""
    current = {"device_class": "current", "unit_of_measurement": "A", "state_class": "measurement"}
    key = f"circuit_{slug(name)}"
    return [
        *(Entity(f"{key}_current_l{p + 1}", "sensor", {"name": f"Circuit {name} current L{p + 1}",
                                                        "state_topic": t.circuit_current(name, p), **current})
          for p in PHASES),
        *(Entity(f"{key}_headroom_l{p + 1}", "sensor", {"name": f"Circuit {name} headroom L{p + 1}",
                                                         "state_topic": t.circuit_headroom(name, p), **current})
          for p in PHASES),
        Entity(f"{key}_max_a", "sensor", {"name": f"Circuit {name} max", "state_topic": t.circuit_max_a(name),
                                          "device_class": "current", "unit_of_measurement": "A",
                                          "entity_category": "diagnostic"}),
    ]


def circuit_messages(topics: Topics, prefix: str, node_id: str, circuits: list[str], cp_id: str,
                     device_model: str | None, sw_version: str) -> list[tuple[str, dict[str, Any]]]:
    """Each circuit's sensors (CIRCUITS), on the device of the charge point the bridge announces first."""
    device = _device(cp_id, device_model, sw_version)
    # unique_id by the bridge's base topic: a circuit belongs to the site, not to a charge point.
    return [_announcement(topics, prefix, node_id, e, e.key, f"{slug(node_id)}_{e.key}", device, sw_version)
            for name in circuits for e in _circuit_entities(topics, name)]


def removal_messages(prefix: str, node_id: str, keys: list[str] | None = None) -> list[tuple[str, str]]:
    """(config topic, "") to publish retained: an empty config removes the entity."""
    wanted = ENTITY_KEYS if keys is None else keys
    components = {e.key: e.component for e in _entities(Topics("x"), "cp", 1, DEFAULT_LIMITS)}
    unknown = [k for k in wanted if k not in components]
    if unknown:
        raise ValueError(f"unknown entities {unknown}; known: {', '.join(ENTITY_KEYS)}")
    return [(config_topic(prefix, components[k], node_id, k), "") for k in wanted]
