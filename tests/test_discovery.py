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
    ENTITY_KEYS,
    REQUIRED_KEYS,
    connector_messages,
    discovery_messages,
    ha_status_topic,
    removal_messages,
    retired_messages,
)
from bridge.mqtt.payloads import parse_bool, parse_charge_mode, parse_mode, parse_number
from bridge.mqtt.topics import Topics

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


def aura_with_two_connectors() -> tuple[list[tuple[str, dict]], list[tuple[str, str]]]:
    """Everything the service announces for an Aura whose two connectors share the fuse, and what it retires."""
    t = Topics("chargeamps")
    announced = discovery_messages(t, "homeassistant", "chargeamps", AURA, 1, "Aura", "0.1.0", LIMITS,
                                   several_connectors=True)
    for n in (1, 2):
        announced += connector_messages(t, "homeassistant", "chargeamps", AURA, n, "Aura", "0.1.0")
    return announced, retired_messages(t, "homeassistant", "chargeamps", AURA, 1)


def test_with_two_connectors_every_unique_id_and_config_topic_is_distinct() -> None:
    announced, _ = aura_with_two_connectors()
    unique_ids = Counter(config["unique_id"] for _, config in announced)
    assert [u for u, count in unique_ids.items() if count > 1] == []
    assert len({topic for topic, _ in announced}) == len(announced)


def test_with_two_connectors_no_state_topic_shows_twice_on_the_device() -> None:
    announced, _ = aura_with_two_connectors()
    shown = Counter((config["device"]["identifiers"][0], config["state_topic"])
                    for _, config in announced if "state_topic" in config)
    assert [key for key, count in shown.items() if count > 1] == []
    # What a connector shows is the connector's entity, named after it.
    t = Topics("chargeamps")
    names = {config["state_topic"]: config["name"] for _, config in announced if "state_topic" in config}
    assert names[t.charger_power_kw(AURA, 1)] == "Connector 1 power"
    assert names[t.charge_mode(AURA, 1)] == "Connector 1 charge mode"
    assert names[t.charger_status(AURA, 1)] == "Connector 1 status"
    assert names[t.charger_current(AURA, 1, 0)] == "Connector 1 current L1"
    assert names[t.charge_at] == "ChargeAt"  # the connectors' sum stays on the charge point


def test_with_two_connectors_what_one_connector_announced_and_two_do_not_is_removed() -> None:
    # A bridge that ran with one connector (or an earlier version that announced both sets) left
    # these configs retained: an empty retained config is how Home Assistant is told to drop them.
    announced, retired = aura_with_two_connectors()
    t = Topics("chargeamps")
    one = discovery_messages(t, "homeassistant", "chargeamps", AURA, 1, "Aura", "0.1.0", LIMITS)
    announced_topics = {topic for topic, _ in announced}
    assert {topic for topic, _ in retired} == {topic for topic, _ in one} - announced_topics
    assert all(payload == "" for _, payload in retired)
    assert {topic.split("/")[3] for topic, _ in retired} == {
        "charge_at", "charger_current_l1", "charger_current_l2", "charger_current_l3", "power", "session_energy",
        "connector_status", "charge_mode"}
    # The unique_ids the charge point's set shared with connector 1's entities are connector 1's alone now.
    by_topic = dict(one)
    retired_ids = {by_topic[topic]["unique_id"] for topic, _ in retired}
    kept_ids = {config["unique_id"] for _, config in announced}
    assert retired_ids & kept_ids == {f"chargeamps_{AURA}_1_{key}" for key in
                                      ("charge_at", "power", "session_energy", "charge_mode")}


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
