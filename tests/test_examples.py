"""The shipped examples refer only to topics the bridge really has."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from paho.mqtt.client import topic_matches_sub

from bridge.mqtt.meter import MeterSource
from bridge.mqtt.payloads import parse_bool, parse_mode, parse_number
from bridge.mqtt.topics import Topics

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEMO_CP = "2003141234567"  # the simulator's charge point, used by the examples
T = Topics("chargeamps")
STATE = set(T.state_topics(DEMO_CP, 1)) | {T.response}
COMMANDS = set(T.command_topics(DEMO_CP, 1))
METER = set(MeterSource.from_settings().subscriptions())


def is_client_response(topic: str) -> bool:
    try:
        return topic == T.client_response(topic.rsplit("/", 1)[-1])
    except ValueError:
        return False


def valid_filter(topic_filter: str) -> bool:
    levels = topic_filter.split("/")
    return all(level in ("+", "#") or not ({"+", "#"} & set(level)) for level in levels) and "#" not in levels[:-1]


def readable(topic_filter: str) -> bool:
    """A valid subscription that matches at least one topic the bridge publishes."""
    if not valid_filter(topic_filter):
        return False
    if topic_filter in STATE or is_client_response(topic_filter):
        return True
    return any(topic_matches_sub(topic_filter, t) for t in STATE | COMMANDS) or topic_filter.startswith("homeassistant/")


def test_sanity_of_the_topic_check() -> None:
    assert readable("chargeamps/balancer/charge_at") and readable("chargeamps/balancer/+")
    assert not readable("chargeamps/balancer/chargeat") and not readable("chargeamps/nothing/#")
    assert not readable("chargeamps/balancer/loadbal_+") and not readable("chargeamps/#/state")
    assert not is_client_response("chargeamps/bridge/response/a/b")


# --- Node-RED -------------------------------------------------------------------


@pytest.fixture(scope="module")
def flow() -> list[dict]:
    return json.loads((EXAMPLES / "node-red-flow.json").read_text())


def test_node_red_flow_is_a_valid_importable_flow(flow: list[dict]) -> None:
    ids = [n["id"] for n in flow]
    assert len(ids) == len(set(ids))
    for node in flow:
        for outputs in node.get("wires", []):
            assert all(target in ids for target in outputs), f"{node['id']} wires to a missing node"
        if "z" in node:
            assert node["z"] in ids
        if node["type"] in ("mqtt in", "mqtt out"):
            assert node["broker"] in ids


def test_node_red_broker_speaks_mqtt_v5(flow: list[dict]) -> None:
    [broker] = [n for n in flow if n["type"] == "mqtt-broker"]
    assert broker["protocolVersion"] == "5"
    assert (broker["broker"], broker["port"]) == ("localhost", "1883")


def test_node_red_subscriptions_exist(flow: list[dict]) -> None:
    subscribed = [n["topic"] for n in flow if n["type"] == "mqtt in"]
    assert {T.charge_at, T.balancer_state, T.max_a, T.default_current, T.loadbal(0)} <= set(subscribed)
    for topic in subscribed:
        assert readable(topic), f"Node-RED subscribes to {topic}, which the bridge does not publish"


def test_node_red_commands_exist_use_a_response_topic_and_parse(flow: list[dict]) -> None:
    by_id = {n["id"]: n for n in flow}
    outs = [n for n in flow if n["type"] == "mqtt out"]
    assert {n["topic"] for n in outs} == {T.max_a_set, T.default_current_set}
    subscribed = {n["topic"] for n in flow if n["type"] == "mqtt in"}
    for out in outs:
        assert out["topic"] in COMMANDS
        assert is_client_response(out["respTopic"]) and out["respTopic"] in subscribed
        assert out["correl"]
    for inject in (n for n in flow if n["type"] == "inject"):
        [[target]] = inject["wires"]
        assert by_id[target]["type"] == "mqtt out"
        parse_number(str(inject["payload"]).encode())


# --- openHAB --------------------------------------------------------------------


def things_channels() -> dict[str, dict[str, str]]:
    text = (EXAMPLES / "chargeamps.things").read_text()
    channels = {}
    for m in re.finditer(r"^\s*Type\s+(\w+)\s*:\s*(\w+)\s+\"[^\"]*\"\s*\[(.*)\]\s*$", text, re.M):
        kind, name, params = m.groups()
        values = dict(re.findall(r'(\w+)="([^"]*)"', params))
        values["type"] = kind
        channels[name] = values
    return channels


def test_openhab_things_use_existing_topics() -> None:
    channels = things_channels()
    assert len(channels) >= 20
    for name, c in channels.items():
        assert "stateTopic" in c or "commandTopic" in c, name
        if "stateTopic" in c:
            assert c["stateTopic"] in STATE, f"channel {name}: {c['stateTopic']} is not published"
        if "commandTopic" in c:
            assert c["commandTopic"] in COMMANDS, f"channel {name}: {c['commandTopic']} is no command topic"
        if c["type"] in ("switch", "contact"):
            assert (c["on"], c["off"]) == ("ON", "OFF")
            if "commandTopic" in c:
                assert parse_bool(c["on"].encode()) is True and parse_bool(c["off"].encode()) is False
        if "allowedStates" in c:
            assert [parse_mode(s.encode()) for s in c["allowedStates"].split(",")] == ["On", "Off", "Schedule"]


def test_openhab_items_reference_defined_channels() -> None:
    text = (EXAMPLES / "chargeamps.items").read_text()
    things = (EXAMPLES / "chargeamps.things").read_text()
    bridge_id = re.search(r"Bridge mqtt:broker:(\w+)", things).group(1)
    thing_id = re.search(r"Thing topic (\w+)", things).group(1)
    referenced = re.findall(r'channel="([^"]+)"', text)
    assert len(referenced) == len(things_channels())
    for uid in referenced:
        prefix, channel = uid.rsplit(":", 1)
        assert prefix == f"mqtt:topic:{bridge_id}:{thing_id}"
        assert channel in things_channels(), f"item uses undefined channel {channel}"


# --- cookbook -------------------------------------------------------------------


def cookbook_commands() -> list[list[str]]:
    text = (EXAMPLES / "COOKBOOK.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        commands += [shlex.split(line) for line in block.splitlines() if line.strip()]
    return commands


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_cookbook_commands_use_localhost_and_existing_topics() -> None:
    commands = cookbook_commands()
    assert len(commands) >= 15
    for argv in commands:
        assert argv[0] in ("mosquitto_pub", "mosquitto_sub", "mosquitto_rr"), argv
        assert _option(argv, "-h") == ["localhost"]
        topics = _option(argv, "-t")
        assert topics
        if argv[0] == "mosquitto_sub":
            for topic in topics:
                assert readable(topic), f"{topic} matches nothing the bridge publishes"
            assert _option(argv, "-W"), "a sub without -W may never end"
        else:
            [topic] = topics
            assert topic in COMMANDS or topic in METER, f"{topic} is no command or meter topic"
        for response in _option(argv, "-e"):
            assert is_client_response(response)


def test_cookbook_command_payloads_parse() -> None:
    parsers = {"max_a": parse_number, "default_current": parse_number, "enabled": parse_bool, "charger_mode": parse_mode}
    for argv in cookbook_commands():
        topic = _option(argv, "-t")[0]
        command = T.classify(topic)
        for payload in _option(argv, "-m"):
            if command and command.name in parsers:
                parsers[command.name](payload.encode())
            elif topic in METER:
                MeterSource.from_settings().parse(topic, payload.encode())
