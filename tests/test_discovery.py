from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt.discovery import (
    ALL_METER_POWER,
    ENTITY_KEYS,
    REQUIRED_KEYS,
    Outlet,
    circuit_messages,
    connector_labels,
    discovery_messages,
    outlet_messages,
    ha_status_topic,
    removal_messages,
    retired_messages,
)
from bridge.mqtt.payloads import parse_bool, parse_charge_mode, parse_mode, parse_number
from bridge.mqtt.topics import Topics
from tests import ha_mqtt_schema as ha_schema

CP = "2012345678M"
LIMITS = {"max_a_min": 6, "max_a_max": 25, "default_current_min": 6, "default_current_max": 20, "step": 1}


def messages(base: str = "chargeamps", prefix: str = "homeassistant", node: str = "chargeamps_2012345678M") -> list[tuple[str, dict]]:
    return discovery_messages(Topics(base), prefix, node, CP, 1, "Halo", "0.1.0", LIMITS)


def by_key() -> dict[str, tuple[str, str, dict]]:
    out = {}
    for topic, config in messages():
        prefix, component, node, object_id, tail = topic.split("/")
        out[object_id] = (component, topic, config)
    return out


def test_config_topics_have_the_discovery_layout() -> None:
    for topic, _ in messages():
        parts = topic.split("/")
        assert len(parts) == 5 and parts[0] == "homeassistant" and parts[2] == "chargeamps_2012345678M" and parts[4] == "config"
        assert parts[1] in REQUIRED_KEYS


def test_every_entity_is_there_with_its_component() -> None:
    entities = {key: component for key, (component, _, _) in by_key().items()}
    expected = {
        "charge_at": "sensor",
        "loadbal_l1": "sensor",
        "loadbal_l2": "sensor",
        "loadbal_l3": "sensor",
        "meter_current_l1": "sensor",
        "meter_current_l2": "sensor",
        "meter_current_l3": "sensor",
        "meter_power_l1": "sensor",
        "meter_power_l2": "sensor",
        "meter_power_l3": "sensor",
        "meter_power": "sensor",
        "charger_current_l1": "sensor",
        "charger_current_l2": "sensor",
        "charger_current_l3": "sensor",
        "power": "sensor",
        "session_energy": "sensor",
        "connector_status": "sensor",
        "max_a": "number",
        "default_current": "number",
        "balancer": "switch",
        "connector_mode": "select",
        "meter_stale": "binary_sensor",
        "paused": "binary_sensor",
        "charger_online": "binary_sensor",
        "refresh": "button",
        "reboot": "button",
    }
    assert expected.items() <= entities.items()
    assert set(entities) == set(ENTITY_KEYS)


def test_every_config_has_the_required_and_common_keys() -> None:
    unique_ids = set()
    for topic, config in messages():
        component = topic.split("/")[1]
        for key in REQUIRED_KEYS[component]:
            assert config.get(key), f"{topic} lacks {key}"
        assert config["name"]
        unique_ids.add(config["unique_id"])
        assert config["device"]["identifiers"] == [f"chargeamps_{CP}"]
        assert config["device"]["manufacturer"] == "Charge Amps"
        assert config["device"]["model"] == "Halo" and config["device"]["sw_version"] == "0.1.0"
        assert config["origin"]["name"] == "chargeamps-bridge"
        assert config["availability"] == [
            {"topic": "chargeamps/bridge/state", "payload_available": "online", "payload_not_available": "offline"}
        ]
        json.dumps(config)  # serialisable as is
    assert len(unique_ids) == len(messages())


def test_unknown_model_is_left_out() -> None:
    _, config = discovery_messages(Topics(), "homeassistant", "n", CP, 1, None, "0.1.0", {})[0]
    assert "model" not in config["device"]


def test_sensor_classes_and_units() -> None:
    e = by_key()
    for key in ("charge_at", "loadbal_l1", "meter_current_l2", "charger_current_l3", "connector_max_current"):
        config = e[key][2]
        assert (config["device_class"], config["unit_of_measurement"], config["state_class"]) == ("current", "A", "measurement")
    assert (e["power"][2]["device_class"], e["power"][2]["unit_of_measurement"], e["power"][2]["state_class"]) == (
        "power",
        "kW",
        "measurement",
    )
    for key, state in (("meter_power_l1", "meter/power_l1"), ("meter_power_l2", "meter/power_l2"),
                       ("meter_power_l3", "meter/power_l3"), ("meter_power", "meter/power")):
        config = e[key][2]
        assert (config["device_class"], config["unit_of_measurement"], config["state_class"]) == ("power", "W", "measurement")
        assert config["state_topic"] == f"chargeamps/{state}"
    energy = e["session_energy"][2]
    assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == ("energy", "kWh", "total_increasing")
    assert "device_class" not in e["connector_status"][2]
    assert e["meter_stale"][2]["device_class"] == "problem"
    assert e["charger_online"][2]["device_class"] == "connectivity"
    assert e["reboot"][2]["device_class"] == "restart"


def test_numbers_take_their_range_from_the_limits() -> None:
    e = by_key()
    assert (e["max_a"][2]["min"], e["max_a"][2]["max"], e["max_a"][2]["step"]) == (6, 25, 1)
    assert (e["default_current"][2]["min"], e["default_current"][2]["max"]) == (6, 20)


@pytest.mark.parametrize("limits", [{"max_a_min": 30}, {"step": 0}, {"nonsense": 1}])
def test_bad_limits_are_refused(limits: dict) -> None:
    with pytest.raises(ValueError):
        discovery_messages(Topics(), "homeassistant", "n", CP, 1, None, "0.1.0", limits)


def test_state_topics_are_exactly_topics_the_service_publishes() -> None:
    t = Topics("chargeamps")
    published = set(t.state_topics(CP, 1))
    for topic, config in messages():
        for key in ("state_topic", "json_attributes_topic"):
            if key in config:
                assert config[key] in published, f"{topic}: {key} {config[key]} is not published by the service"
        assert config["availability"][0]["topic"] in published


def test_command_topics_are_command_topics_and_accept_what_home_assistant_sends() -> None:
    t = Topics("chargeamps")
    sends = {
        "number": [b"16", b"16.5", b"6"],
        "switch": [b"ON", b"OFF"],
        "select": [b"On", b"Off", b"Schedule"],
        "button": [b"PRESS"],
    }
    parsers = {
        "max_a": parse_number,
        "default_current": parse_number,
        "charger_max_current": parse_number,
        "enabled": parse_bool,
        "charger_mode": parse_mode,
        "capacity_limit": parse_number,
        "charge_mode": parse_charge_mode,
    }
    seen = set()
    for topic, config in messages():
        component = topic.split("/")[1]
        if "command_topic" not in config:
            continue
        command = t.classify(config["command_topic"])
        assert command is not None, f"{topic}: {config['command_topic']} is no command topic"
        assert config["command_topic"] in t.command_topics(CP, 1)
        if command.cp is not None:
            assert command.cp == CP
        seen.add(command.name)
        payloads = [config["payload_on"], config["payload_off"]] if component == "switch" else sends[component]
        if component == "select":
            # Home Assistant sends the option as it is listed.
            expected = ["fast", "pv", "minpv", "off"] if command.name == "charge_mode" else ["On", "Off", "Schedule"]
            assert config["options"] == expected
            payloads = [o.encode() for o in config["options"]]
        for payload in payloads:
            parser = parsers.get(command.name)
            if parser is not None:
                parser(payload if isinstance(payload, bytes) else payload.encode())
    assert seen == {"max_a", "default_current", "enabled", "charger_mode", "refresh", "reboot", "capacity_limit",
                    "charge_mode"}


def test_switch_and_binary_sensors_match_the_published_booleans() -> None:
    for component, _, config in by_key().values():
        if component in ("switch", "binary_sensor"):
            assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")
        if component == "switch":
            assert (config["state_on"], config["state_off"]) == ("ON", "OFF")


def test_base_topic_and_prefix_are_followed() -> None:
    for topic, config in messages(base="home/ev", prefix="ha"):
        assert topic.startswith("ha/")
        for key in ("state_topic", "command_topic"):
            if key in config:
                assert config[key].startswith("home/ev/")


def test_node_id_is_made_safe_for_a_topic() -> None:
    topic, _ = discovery_messages(Topics(), "homeassistant", "my bridge/#1", CP, 1, None, "0.1.0", {})[0]
    assert topic.split("/")[2] == "my_bridge_1" and topic.count("/") == 4


def test_removal_is_an_empty_config_on_the_same_topics() -> None:
    removal = removal_messages("homeassistant", "chargeamps_2012345678M")
    assert [topic for topic, _ in removal] == [topic for topic, _ in messages()]
    assert all(payload == "" for _, payload in removal)
    assert removal_messages("homeassistant", "n", ["reboot"]) == [("homeassistant/button/n/reboot/config", "")]
    with pytest.raises(ValueError):
        removal_messages("homeassistant", "n", ["nope"])


def test_one_connector_announces_byte_for_byte_what_it_always_did() -> None:
    # Home Assistant keys its entities by unique_id and config topic: any change here renames or
    # re-creates a user's entities. The file holds the announcement as it was before several
    # connectors changed what the charge point's set holds; the service publishes json.dumps of each.
    pinned = json.loads((Path(__file__).parent / "data" / "discovery_one_connector.json").read_text())
    assert [(topic, json.dumps(config)) for topic, config in messages()] == \
        [(topic, json.dumps(config)) for topic, config in pinned]
    assert discovery_messages(Topics(), "homeassistant", "n", CP, 1, "Halo", "0.1.0", LIMITS,
                              several_connectors=False) == discovery_messages(Topics(), "homeassistant", "n", CP, 1,
                                                                              "Halo", "0.1.0", LIMITS)


AURA = "2098765432A"
HALO = "2012345678H"


def several(outlets: list[Outlet], meter_power=ALL_METER_POWER) -> tuple[list[tuple[str, dict]], list[tuple[str, str]]]:
    """What the service announces for `outlets` sharing the fuse (the charge point's set on the first
    outlet, then every outlet's and charge point's own), and what it retires, as `Discovery.announce`."""
    t = Topics("chargeamps")
    first = outlets[0]
    announced = discovery_messages(t, "homeassistant", "chargeamps", first.cp_id, first.connector, first.model,
                                   "0.1.0", LIMITS, several_connectors=True, meter_power=meter_power)
    announced += outlet_messages(t, "homeassistant", "chargeamps", outlets, "0.1.0")
    return announced, retired_messages(t, "homeassistant", "chargeamps", first.cp_id, first.connector, True,
                                       meter_power)


AURA_TWO = [Outlet(AURA, 1, "Aura", "Aura", 16), Outlet(AURA, 2, "Aura", "Aura", 16)]
AURA_AND_HALO = [*AURA_TWO, Outlet(HALO, 1, "Halo", "Halo", 20)]

# Every way the bridge announces, each checked against Home Assistant's own schemas: one connector
# (with and without the meter's powers), an Aura's two connectors, an Aura and a Halo.
CONFIGURATIONS = {
    "one connector": lambda: (messages(), []),
    "one connector, a meter without power": lambda: (
        discovery_messages(Topics(), "homeassistant", "n", CP, 1, "Halo", "0.1.0", LIMITS,
                           meter_power=(False, False, False, False)), []),
    "an Aura's two connectors": lambda: several(AURA_TWO),
    "an Aura and a Halo": lambda: several(AURA_AND_HALO, meter_power=(True, True, True, False)),
    "an Aura, installation current unknown": lambda: several([Outlet(AURA, 1, "Aura"), Outlet(AURA, 2, "Aura")]),
    "an Aura on a garage feeder, and a box under it": lambda: (
        [*several(AURA_TWO)[0], *circuit_messages(Topics(), "homeassistant", "n", ["garage", "box_1"], AURA,
                                                  "Aura", "0.1.0")], []),
}


def test_each_circuit_has_its_sensors_on_topics_the_service_publishes() -> None:
    t = Topics("base")
    announced = circuit_messages(t, "homeassistant", "base", ["garage", "box_1"], CP, "Halo", "0.1.0")
    states = {config["state_topic"] for _topic, config in announced}
    assert states == {*t.circuit_topics("garage"), *t.circuit_topics("box_1")}
    assert "base/circuit/garage/headroom_l2" in states
    names = {config["name"] for _topic, config in announced}
    assert {"Circuit garage current L1", "Circuit garage headroom L3", "Circuit box_1 max"} <= names
    ids = [config["unique_id"] for _topic, config in announced]
    assert len(set(ids)) == len(ids) == 14
    assert not {c["unique_id"] for _t, c in several(AURA_TWO)[0]} & set(ids)


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
def test_home_assistant_accepts_every_config(configuration) -> None:
    announced, retired = CONFIGURATIONS[configuration]()
    assert announced
    for topic, config in announced:
        # Home Assistant reads the JSON the service publishes, not the dict.
        ha_schema.validate(topic, json.loads(json.dumps(config)))
    for topic, payload in retired:
        assert ha_schema.TOPIC.match(topic) and payload == ""


@pytest.mark.parametrize("broken, why", [
    (lambda c: c.update(entity_category="config"), "entity category is set to config"),
    (lambda c: c.update(state_class="measurement", device_class="energy", unit_of_measurement="kWh"),
     "state class"),
    (lambda c: c.pop("state_topic"), "required key"),
    (lambda c: c.update(enabled_by_default="no"), "enabled_by_default"),
    (lambda c: c.update(unique_id=None), "unique_id"),
    (lambda c: c.update(stat_t="a/+/b/#/c"), "state_topic"),
    (lambda c: c.update(expire="30"), "no option"),
    (lambda c: c["device"].update(identifiers=[]), "identifying value"),
])
def test_the_schema_refuses_what_home_assistant_refuses(broken, why) -> None:
    # The schema must be able to fail: each of Home Assistant's rules breaks one sensor config.
    topic, config = next((t, json.loads(json.dumps(c))) for t, c in messages() if "/sensor/" in t)
    ha_schema.validate(topic, config)
    broken(config)
    with pytest.raises(ha_schema.Invalid, match=why):
        ha_schema.validate(topic, config)


def test_the_schema_refuses_a_number_whose_range_is_empty_and_a_select_with_one_option() -> None:
    number = next(c for t, c in messages() if "/number/" in t)
    with pytest.raises(ha_schema.Invalid, match="'max' must be > 'min'"):
        ha_schema.validate("homeassistant/number/n/x/config", {**number, "min": 25, "max": 25})
    select = next(c for t, c in messages() if "/select/" in t)
    with pytest.raises(ha_schema.Invalid, match="at least 2 options"):
        ha_schema.validate("homeassistant/select/n/x/config", {**select, "options": ["On"]})


@pytest.mark.parametrize("outlets", [AURA_TWO, AURA_AND_HALO], ids=["aura", "aura+halo"])
def test_with_several_connectors_every_unique_id_and_config_topic_is_distinct(outlets) -> None:
    announced, _ = several(outlets)
    unique_ids = Counter(config["unique_id"] for _, config in announced)
    assert [u for u, count in unique_ids.items() if count > 1] == []
    assert len({topic for topic, _ in announced}) == len(announced)
    names = Counter(config["name"] for _, config in announced)
    assert [n for n, count in names.items() if count > 1] == []  # no entity_id gets a `_2`


@pytest.mark.parametrize("outlets", [AURA_TWO, AURA_AND_HALO], ids=["aura", "aura+halo"])
def test_with_several_connectors_no_topic_shows_twice_on_the_device(outlets) -> None:
    announced, _ = several(outlets)
    for key in ("state_topic", "command_topic"):
        shown = Counter((config["device"]["identifiers"][0], config[key]) for _, config in announced if key in config)
        assert [k for k, count in shown.items() if count > 1] == []


# Per connector: (key, component, name after the label, state topic, command topic, enabled by default).
def per_connector(t: Topics, cp: str, n: int) -> list[tuple[str, str, str, str, str | None, bool]]:
    return [
        ("charge_at", "sensor", "ChargeAt", t.charger_charge_at(cp, n), None, True),
        ("reason", "sensor", "reason", t.charger_reason(cp, n), None, False),
        ("connector_paused", "binary_sensor", "paused", t.charger_paused(cp, n), None, False),
        ("status", "sensor", "status", t.charger_status(cp, n), None, True),
        ("power", "sensor", "power", t.charger_power_kw(cp, n), None, True),
        ("session_energy", "sensor", "session energy", t.charger_session_energy_kwh(cp, n), None, True),
        ("charge_mode", "select", "charge mode", t.charge_mode(cp, n), t.charge_mode_set(cp, n), True),
        ("priority", "number", "priority", t.charger_priority(cp, n), t.charger_priority_set(cp, n), False),
        ("mode", "select", "mode", t.charger_mode(cp, n), t.charger_mode_set(cp, n), False),
        ("max_current", "number", "max current", t.charger_max_current(cp, n), t.charger_max_current_set(cp, n),
         False),
        ("connector_default_current", "number", "default current", t.charger_default_current(cp, n),
         t.charger_default_current_set(cp, n), False),
        *((f"current_l{p}", "sensor", f"current L{p}", t.charger_current(cp, n, p - 1), None, False)
          for p in (1, 2, 3)),
    ]


@pytest.mark.parametrize("outlets, labels", [
    (AURA_TWO, {(AURA, 1): "Outlet 1", (AURA, 2): "Outlet 2"}),
    (AURA_AND_HALO, {(AURA, 1): "Aura outlet 1", (AURA, 2): "Aura outlet 2", (HALO, 1): "Halo outlet 1"}),
], ids=["aura", "aura+halo"])
def test_every_connector_has_each_entity_named_by_its_connector_with_its_own_topics(outlets, labels) -> None:
    announced, _ = several(outlets)
    t = Topics("chargeamps")
    by_topic = dict(announced)
    for o in outlets:
        cp, n = o.cp_id, o.connector
        for key, component, what, state, command, enabled in per_connector(t, cp, n):
            topic = f"homeassistant/{component}/chargeamps/{cp}_{n}_{key}/config"
            config = by_topic[topic]
            assert config["name"] == f"{labels[(cp, n)]} {what}"
            assert config["state_topic"] == state and config.get("command_topic") == command
            assert config.get("enabled_by_default", True) is enabled
            assert config["device"]["identifiers"] == [f"chargeamps_{cp}"]
            if command is not None:
                classified = t.classify(command)
                assert (classified.cp, classified.connector) == (cp, n)
    # Each charge point once: online and reboot, named after it when there are several.
    several_cps = len({o.cp_id for o in outlets}) > 1
    for cp in {o.cp_id for o in outlets}:
        name = next(o.cp_name for o in outlets if o.cp_id == cp)
        online = by_topic[f"homeassistant/binary_sensor/chargeamps/{cp}_charger_online/config"]
        reboot = by_topic[f"homeassistant/button/chargeamps/{cp}_reboot/config"]
        assert online["state_topic"] == t.charger_online(cp) and reboot["command_topic"] == t.charger_reboot_set(cp)
        assert (online["name"], reboot["name"]) == ((f"{name} online", f"Reboot {name}") if several_cps
                                                    else ("Charger online", "Reboot charger"))
        assert "enabled_by_default" not in online and reboot["enabled_by_default"] is False


def test_with_several_connectors_what_home_assistant_sends_parses_as_its_command() -> None:
    from bridge.service.commands import COMMANDS

    # What Home Assistant publishes (homeassistant/components/mqtt): a number its value, a whole one
    # as an int ("16", number.py async_set_value); a select the option as listed; a button payload_press.
    announced, _ = several(AURA_AND_HALO)
    t = Topics("chargeamps")
    seen = set()
    for topic, config in announced:
        if "command_topic" not in config:
            continue
        command = t.classify(config["command_topic"])
        assert command is not None, topic
        seen.add(command.name)
        component = topic.split("/")[1]
        sends = {"number": [str(int(config.get("min", 1))), str(int(config.get("max", 100))), "16"],
                 "select": config.get("options", []), "button": [config.get("payload_press")],
                 "switch": [config.get("payload_on"), config.get("payload_off")]}[component]
        for payload in sends:
            COMMANDS[command.name].parse(payload.encode())
    assert seen == {"max_a", "default_current", "enabled", "capacity_limit", "refresh", "charger_max_current",
                    "charger_mode", "charge_mode", "charger_priority", "charger_default_current", "reboot"}


def test_the_numbers_of_a_connector_take_its_installation_current() -> None:
    announced, _ = several(AURA_AND_HALO)
    by_topic = dict(announced)
    aura = by_topic[f"homeassistant/number/chargeamps/{AURA}_2_connector_default_current/config"]
    halo = by_topic[f"homeassistant/number/chargeamps/{HALO}_1_connector_default_current/config"]
    assert (aura["min"], aura["max"], halo["max"]) == (6, 16, 20)
    assert by_topic[f"homeassistant/number/chargeamps/{HALO}_1_max_current/config"]["max"] == 20
    assert by_topic[f"homeassistant/number/chargeamps/{HALO}_1_max_current/config"]["min"] == 0  # 0 pauses


def test_connector_labels_name_by_charge_point_name_only_when_the_names_tell_them_apart() -> None:
    assert connector_labels([("A", 1, "Aura"), ("A", 2, "Aura")]) == ({("A", 1): "Outlet 1", ("A", 2): "Outlet 2"},
                                                                      {"A": None})
    assert connector_labels([("A", 1, "Garage"), ("B", 1, "Drive")])[0] == {("A", 1): "Garage outlet 1",
                                                                           ("B", 1): "Drive outlet 1"}
    # Twenty Halos all called "Halo" (or without a name): told apart by their ids.
    assert connector_labels([("A", 1, "Halo"), ("B", 1, "Halo")])[0] == {("A", 1): "A outlet 1", ("B", 1): "B outlet 1"}
    assert connector_labels([("A", 1, None), ("B", 1, "Drive")])[1] == {"A": "A", "B": "B"}


def test_what_a_user_of_a_site_needs_is_enabled_and_the_rest_is_off_by_default() -> None:
    announced, _ = several(AURA_AND_HALO)
    on = {topic.split("/")[3].split("_", 2)[-1] for topic, c in announced
          if c.get("enabled_by_default", True) and topic.split("/")[3].startswith((AURA, HALO))}
    assert on == {"charge_at", "status", "power", "session_energy", "charge_mode", "online"}
    # Per connector 5 of 14 enabled, per charge point 1 of 2: at 20 Halos 120 instead of 320.
    assert sum(1 for _, c in outlet_messages(Topics(), "h", "n", [Outlet(f"H{i}", 1) for i in range(20)], "1")
               if c.get("enabled_by_default", True)) == 120
    # Why a connector has its current (its reason, `until`) is its ChargeAt's attributes, from the
    # connector's own state topic (sent when its meaning changes), not a sensor of its own.
    by_topic = dict(announced)
    for o in AURA_AND_HALO:
        charge_at = by_topic[f"homeassistant/sensor/chargeamps/{o.cp_id}_{o.connector}_charge_at/config"]
        assert charge_at["json_attributes_topic"] == Topics("chargeamps").charger_state(o.cp_id, o.connector)


def test_with_several_connectors_the_state_topics_are_topics_the_service_publishes() -> None:
    announced, _ = several(AURA_AND_HALO)
    t = Topics("chargeamps")
    published = {*t.state_topics(AURA, 1)}
    for o in AURA_AND_HALO:
        published |= {*t.state_topics(o.cp_id, o.connector), *t.connector_state_topics(o.cp_id, o.connector)}
    commands = set()
    for o in AURA_AND_HALO:
        commands |= set(t.command_topics(o.cp_id, o.connector))
    for topic, config in announced:
        for key in ("state_topic", "json_attributes_topic"):
            if key in config:
                assert config[key] in published, f"{topic}: {config[key]} is not published by the service"
        if "command_topic" in config:
            assert config["command_topic"] in commands


def test_with_several_connectors_what_they_do_not_announce_is_removed() -> None:
    # A bridge that ran with one connector (or an earlier version) left these configs retained: an
    # empty retained config is how Home Assistant is told to drop them.
    announced, retired = several(AURA_TWO)
    t = Topics("chargeamps")
    one = discovery_messages(t, "homeassistant", "chargeamps", AURA, 1, "Aura", "0.1.0", LIMITS)
    assert {topic for topic, _ in retired} == {topic for topic, _ in one} - {topic for topic, _ in announced}
    assert all(payload == "" for _, payload in retired)
    assert {topic.split("/")[3] for topic, _ in retired} == {
        "charge_at", "charger_current_l1", "charger_current_l2", "charger_current_l3", "power", "session_energy",
        "connector_status", "charge_mode", "connector_mode", "connector_max_current", "charger_online", "reboot"}
    # The unique_ids the charge point's set shared with connector 1's and the charge point's own
    # entities are theirs alone now.
    by_topic = dict(one)
    retired_ids = {by_topic[topic]["unique_id"] for topic, _ in retired}
    kept_ids = {config["unique_id"] for _, config in announced}
    assert retired_ids & kept_ids == {f"chargeamps_{AURA}_1_{key}" for key in
                                      ("charge_at", "power", "session_energy", "charge_mode", "charger_online",
                                       "reboot")}


@pytest.mark.parametrize("meter_power, absent", [
    ((False, False, False, False), {"meter_power_l1", "meter_power_l2", "meter_power_l3", "meter_power"}),
    ((True, True, True, False), {"meter_power"}),
    ((True, False, True, True), {"meter_power_l2"}),
])
def test_a_meter_power_sensor_nothing_fills_is_not_announced_and_is_removed(meter_power, absent) -> None:
    t = Topics()
    announced = {topic.split("/")[3] for topic, _ in
                 discovery_messages(t, "homeassistant", "n", CP, 1, "Halo", "0.1.0", LIMITS, meter_power=meter_power)}
    assert announced == set(ENTITY_KEYS) - absent
    retired = retired_messages(t, "homeassistant", "n", CP, 1, several_connectors=False, meter_power=meter_power)
    assert {topic.split("/")[3] for topic, _ in retired} == absent
    assert retired_messages(t, "homeassistant", "n", CP, 1, several_connectors=False) == []


def test_ha_status_topic() -> None:
    assert ha_status_topic("homeassistant") == "homeassistant/status"


def _client(broker) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(broker.host, broker.port)
    c.loop_start()
    assert connected.wait(10)
    return c


def test_discovery_is_retained_on_a_real_broker_and_removal_clears_it(broker) -> None:
    prefix = f"ha-{uuid.uuid4().hex[:6]}"
    sent = discovery_messages(Topics(), prefix, "node", CP, 1, "Halo", "0.1.0", LIMITS)
    publisher = _client(broker)
    try:
        for topic, config in sent:
            publisher.publish(topic, json.dumps(config), qos=1, retain=True).wait_for_publish(5)
        got = _read_retained(broker, f"{prefix}/#", len(sent))
        assert {topic: json.loads(payload) for topic, payload in got.items()} == dict(sent)
        for topic, payload in removal_messages(prefix, "node"):
            publisher.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
        assert _read_retained(broker, f"{prefix}/#", 0, wait=0.3) == {}
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def _read_retained(broker, pattern: str, count: int, wait: float = 5.0) -> dict[str, bytes]:
    received: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, u, m: received.put((m.topic, m.payload, m.retain))
    c.on_connect = lambda cl, *a: cl.subscribe(pattern, qos=1)
    c.connect(broker.host, broker.port)
    c.loop_start()
    out: dict[str, bytes] = {}
    deadline = time.monotonic() + wait
    try:
        while len(out) < count or count == 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                topic, payload, retain = received.get(timeout=remaining)
            except queue.Empty:
                break
            assert retain
            out[topic] = payload
    finally:
        c.disconnect()
        c.loop_stop()
    return out
