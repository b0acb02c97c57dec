"""Home Assistant's own rules for an MQTT discovery config, for the platforms the bridge announces.

Transcribed from Home Assistant core's voluptuous schemas (home-assistant/core, 2024-2026), not
from what the bridge means to send:
- homeassistant/components/mqtt/discovery.py: the config topic
  `<prefix>/<component>/[<node_id>/]<object_id>/config`, ids of `[a-zA-Z0-9_-]+`; abbreviated keys
  (abbreviations.py) are expanded before the schema is applied.
- homeassistant/components/mqtt/config.py: MQTT_BASE_SCHEMA (qos, encoding), MQTT_RO_SCHEMA
  (state_topic required), MQTT_RW_SCHEMA (command_topic required, optimistic, retain, state_topic).
- homeassistant/components/mqtt/schemas.py: MQTT_ENTITY_COMMON_SCHEMA (availability list,
  availability_mode, device with at least one identifier or connection, origin with a name,
  enabled_by_default, entity_category, icon, json_attributes_*, object_id, unique_id).
- homeassistant/components/mqtt/{sensor,binary_sensor,number,select,switch,button}.py: each
  platform's PLATFORM_SCHEMA_MODERN / DISCOVERY_SCHEMA and its validate_* functions.
- homeassistant/components/{sensor,binary_sensor}/__init__.py: an entity category of `config`
  is refused for these read-only platforms ("cannot be added as the entity category is set to
  config"); homeassistant/components/sensor/const.py DEVICE_CLASS_STATE_CLASSES and
  DEVICE_CLASS_UNITS for the device classes listed below.
DISCOVERY_SCHEMA drops a key it does not know (`extra=vol.REMOVE_EXTRA`) without a word: here an
unknown key is an error, since a key Home Assistant drops is one the bridge sends for nothing.

Where Home Assistant versions differ, the stricter rule is taken (number: max > min, as before
2024; select: at least two options, as before 2023), so that a config valid here is valid in both.
"""

from __future__ import annotations

import re
from typing import Any, Callable

# discovery.py TOPIC_MATCHER
TOPIC = re.compile(r"^(?P<prefix>\w[\w/]*?)/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
                   r"(?P<object_id>[a-zA-Z0-9_-]+)/config$")

# A few of abbreviations.py's ABBREVIATIONS (the bridge sends full keys; an abbreviation is expanded
# first, so a config that used one is checked as Home Assistant reads it).
ABBREVIATIONS = {"stat_t": "state_topic", "cmd_t": "command_topic", "uniq_id": "unique_id", "dev": "device",
                 "avty": "availability", "dev_cla": "device_class", "unit_of_meas": "unit_of_measurement",
                 "stat_cla": "state_class", "ent_cat": "entity_category", "en": "enabled_by_default",
                 "json_attr_t": "json_attributes_topic", "o": "origin", "pl_on": "payload_on",
                 "pl_off": "payload_off", "pl_prs": "payload_press", "ops": "options", "val_tpl": "value_template"}

ENTITY_CATEGORIES = {"config", "diagnostic"}
AVAILABILITY_MODES = {"all", "any", "latest"}
SENSOR_STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
# sensor/const.py, for the device classes a charger and a meter have (DEVICE_CLASS_UNITS,
# DEVICE_CLASS_STATE_CLASSES).
SENSOR_DEVICE_CLASSES: dict[str, tuple[set[str], set[str]]] = {
    "current": ({"A", "mA", "μA"}, {"measurement"}),
    "voltage": ({"V", "mV", "μV", "kV", "MV"}, {"measurement"}),
    "power": ({"mW", "W", "kW", "MW", "GW", "TW", "BTU/h"}, {"measurement"}),
    "apparent_power": ({"mVA", "VA", "kVA"}, {"measurement"}),
    "energy": ({"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal"},
               {"total", "total_increasing"}),
    "frequency": ({"Hz", "kHz", "MHz", "GHz"}, {"measurement"}),
    "enum": (set(), set()),
    "timestamp": (set(), set()),
    "duration": ({"d", "h", "min", "s", "ms", "μs"}, SENSOR_STATE_CLASSES),
    "monetary": (set(), {"total"}),
}
NUMBER_DEVICE_CLASSES = {k: v[0] for k, v in SENSOR_DEVICE_CLASSES.items()
                         if k not in ("enum", "timestamp", "monetary", "duration")}
BINARY_SENSOR_DEVICE_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas",
    "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power",
    "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}
BUTTON_DEVICE_CLASSES = {"identify", "restart", "update"}
SWITCH_DEVICE_CLASSES = {"outlet", "switch"}
NUMBER_MODES = {"auto", "box", "slider"}


class Invalid(ValueError):
    pass


def _string(v: Any) -> bool:
    return isinstance(v, str)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _template(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _subscribe_topic(v: Any) -> bool:
    # util.py valid_subscribe_topic: text, not empty, no NUL, at most 65535 bytes, wildcards only whole levels
    if not isinstance(v, str) or not v or "\0" in v or len(v.encode()) > 65535:
        return False
    levels = v.split("/")
    return all(("+" not in lv or lv == "+") and ("#" not in lv or (lv == "#" and i == len(levels) - 1))
               for i, lv in enumerate(levels))


def _publish_topic(v: Any) -> bool:
    # util.py valid_publish_topic: a subscribe topic without wildcards
    return _subscribe_topic(v) and "+" not in v and "#" not in v


def _icon(v: Any) -> bool:
    # config_validation.icon: "prefix:name"
    return isinstance(v, str) and ":" in v


def _qos(v: Any) -> bool:
    return v in (0, 1, 2)


def _device(v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    known = {"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
             "serial_number", "sw_version", "via_device", "suggested_area", "configuration_url"}
    if set(v) - known:
        raise Invalid(f"device: unknown keys {sorted(set(v) - known)}")
    ids = v.get("identifiers", [])
    ids = [ids] if isinstance(ids, str) else ids
    if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise Invalid("device: identifiers must be a list of strings")
    if not ids and not v.get("connections"):
        raise Invalid("Device must have at least one identifying value in 'identifiers' and/or 'connections'")
    return all(_string(v[k]) for k in known - {"identifiers", "connections"} if k in v)


def _origin(v: Any) -> bool:
    return (isinstance(v, dict) and _string(v.get("name")) and not set(v) - {"name", "sw_version", "support_url"}
            and all(_string(x) for x in v.values()))


def _availability(v: Any) -> bool:
    items = v if isinstance(v, list) else [v]
    return all(isinstance(a, dict) and _subscribe_topic(a.get("topic"))
               and not set(a) - {"topic", "payload_available", "payload_not_available", "value_template"}
               and all(_string(a[k]) for k in ("payload_available", "payload_not_available", "value_template")
                       if k in a)
               for a in items)


Rule = Callable[[Any], bool]

BASE: dict[str, Rule] = {"qos": _qos, "encoding": _string}
COMMON: dict[str, Rule] = {
    "availability": _availability, "availability_mode": lambda v: v in AVAILABILITY_MODES,
    "availability_topic": _subscribe_topic, "availability_template": _template,
    "payload_available": _string, "payload_not_available": _string,
    "device": _device, "origin": _origin, "enabled_by_default": _bool,
    "entity_category": lambda v: v in ENTITY_CATEGORIES, "icon": _icon,
    "json_attributes_topic": _subscribe_topic, "json_attributes_template": _template,
    "object_id": _string, "unique_id": _string,
    # entity.py: `default_entity_id` replaced object_id in 2025; accepted by both.
    "default_entity_id": _string,
}
RO: dict[str, Rule] = {**BASE, "state_topic": _subscribe_topic, "value_template": _template}
RW: dict[str, Rule] = {**BASE, "command_topic": _publish_topic, "optimistic": _bool, "retain": _bool,
                       "state_topic": _subscribe_topic}
NAME: dict[str, Rule] = {"name": lambda v: v is None or _string(v)}

PLATFORMS: dict[str, tuple[dict[str, Rule], set[str]]] = {
    "sensor": ({**RO, **COMMON, **NAME, "device_class": lambda v: v is None or v in SENSOR_DEVICE_CLASSES,
                "expire_after": lambda v: isinstance(v, int) and v >= 0, "force_update": _bool,
                "last_reset_value_template": _template, "options": lambda v: isinstance(v, list),
                "suggested_display_precision": lambda v: isinstance(v, int) and v >= 0,
                "state_class": lambda v: v is None or v in SENSOR_STATE_CLASSES,
                "unit_of_measurement": lambda v: v is None or _string(v)}, {"state_topic"}),
    "binary_sensor": ({**RO, **COMMON, **NAME,
                       "device_class": lambda v: v is None or v in BINARY_SENSOR_DEVICE_CLASSES,
                       "expire_after": lambda v: isinstance(v, int) and v >= 0, "force_update": _bool,
                       "off_delay": lambda v: isinstance(v, int) and v >= 0,
                       "payload_on": _string, "payload_off": _string}, {"state_topic"}),
    "number": ({**RW, **COMMON, **NAME, "command_template": _template,
                "device_class": lambda v: v is None or v in NUMBER_DEVICE_CLASSES,
                "max": _number, "min": _number, "mode": lambda v: v in NUMBER_MODES, "payload_reset": _string,
                "step": lambda v: _number(v) and v >= 1e-3,
                "unit_of_measurement": lambda v: v is None or _string(v), "value_template": _template},
               {"command_topic"}),
    "select": ({**RW, **COMMON, **NAME, "command_template": _template,
                "options": lambda v: isinstance(v, list) and all(_string(o) for o in v),
                "value_template": _template}, {"command_topic", "options"}),
    "switch": ({**RW, **COMMON, **NAME, "device_class": lambda v: v is None or v in SWITCH_DEVICE_CLASSES,
                "payload_on": _string, "payload_off": _string, "state_on": _string, "state_off": _string,
                "value_template": _template}, {"command_topic"}),
    "button": ({**BASE, **COMMON, **NAME, "command_template": _template, "command_topic": _publish_topic,
                "device_class": lambda v: v is None or v in BUTTON_DEVICE_CLASSES, "payload_press": _string,
                "retain": _bool}, {"command_topic"}),
}


def validate(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The config as Home Assistant would take it; Invalid saying why it would refuse it."""
    m = TOPIC.match(topic)
    if m is None:
        raise Invalid(f"{topic}: not a discovery config topic")
    component = m["component"]
    if component not in PLATFORMS:
        raise Invalid(f"{topic}: component {component!r} is not one of {sorted(PLATFORMS)}")
    rules, required = PLATFORMS[component]
    config = {ABBREVIATIONS.get(k, k): v for k, v in payload.items()}
    if "~" in config:
        base = config.pop("~")
        config = {k: (v.replace("~", base) if k.endswith("topic") and isinstance(v, str) else v)
                  for k, v in config.items()}
    for key in sorted(required - set(config)):
        raise Invalid(f"{topic}: required key not provided @ data['{key}']")
    for key, value in config.items():
        if key not in rules:
            raise Invalid(f"{topic}: {key!r} is no option of an MQTT {component} (Home Assistant drops it)")
        if not rules[key](value):
            raise Invalid(f"{topic}: invalid value {value!r} for {key!r}")
    if "availability" in config and "availability_topic" in config:
        raise Invalid(f"{topic}: availability and availability_topic are exclusive")
    if "device" in config and "unique_id" not in config:
        raise Invalid(f"{topic}: an entity with a device needs a unique_id")
    _platform_checks(topic, component, config)
    return config


def _platform_checks(topic: str, component: str, config: dict[str, Any]) -> None:
    if component in ("sensor", "binary_sensor") and config.get("entity_category") == "config":
        raise Invalid(f"{topic}: cannot be added as the entity category is set to config")
    if component == "sensor":
        dc, unit, sc = config.get("device_class"), config.get("unit_of_measurement"), config.get("state_class")
        if "last_reset_value_template" in config and sc != "total":
            raise Invalid(f"{topic}: last_reset_value_template cannot be used with state class {sc}")
        if "options" in config and (dc != "enum" or sc or unit or not config["options"]):
            raise Invalid(f"{topic}: options need device class enum, without a state class or unit")
        if dc in SENSOR_DEVICE_CLASSES:
            units, classes = SENSOR_DEVICE_CLASSES[dc]
            if unit is not None and units and unit not in units:
                raise Invalid(f"{topic}: unit {unit!r} is not a unit of device class {dc}")
            if sc is not None and sc not in classes:
                raise Invalid(f"{topic}: state class {sc!r} is not one of device class {dc}'s {sorted(classes)}")
    if component == "number":
        low, high = config.get("min", 1.0), config.get("max", 100.0)
        if low >= high:
            raise Invalid(f"{topic}: 'max' must be > 'min' (min {low}, max {high})")
        dc, unit = config.get("device_class"), config.get("unit_of_measurement")
        if dc in NUMBER_DEVICE_CLASSES and unit is not None and unit not in NUMBER_DEVICE_CLASSES[dc]:
            raise Invalid(f"{topic}: unit {unit!r} is not a unit of device class {dc}")
    if component == "select" and len(config["options"]) < 2:
        raise Invalid(f"{topic}: 'options' must include at least 2 options")
