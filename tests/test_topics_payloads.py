from __future__ import annotations

import json
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mqtt.payloads import (
    PayloadError,
    format_bool,
    format_number,
    parse_bool,
    parse_mode,
    parse_number,
)
from bridge.mqtt.topics import COMMAND_NAMES, Command, Topics

CP = "2012345678M"


# --- topics -----------------------------------------------------------------


def test_state_topic_names_are_the_public_ones() -> None:
    t = Topics("chargeamps")
    assert t.bridge_state == "chargeamps/bridge/state"
    assert t.bridge_info == "chargeamps/bridge/info"
    assert t.bridge_health == "chargeamps/bridge/health"
    assert t.response == "chargeamps/bridge/response"
    assert t.charge_at == "chargeamps/balancer/charge_at"
    assert [t.loadbal(p) for p in (0, 1, 2)] == [f"chargeamps/balancer/loadbal_l{i}" for i in (1, 2, 3)]
    assert t.max_a == "chargeamps/balancer/max_a"
    assert t.default_current == "chargeamps/balancer/default_current"
    assert t.enabled == "chargeamps/balancer/enabled"
    assert t.balancer_state == "chargeamps/balancer/state"
    assert t.balancer_paused == "chargeamps/balancer/paused"
    assert [t.meter_current(p) for p in (0, 1, 2)] == [f"chargeamps/meter/current_l{i}" for i in (1, 2, 3)]
    assert t.meter_stale == "chargeamps/meter/stale"
    assert t.charger_online(CP) == f"chargeamps/charger/{CP}/online"
    assert t.charger_status(CP, 1) == f"chargeamps/charger/{CP}/1/status"
    assert t.charger_max_current(CP, 1) == f"chargeamps/charger/{CP}/1/max_current"
    assert t.charger_mode(CP, 2) == f"chargeamps/charger/{CP}/2/mode"
    assert t.charger_current(CP, 1, 2) == f"chargeamps/charger/{CP}/1/current_l3"
    assert t.charger_power_kw(CP, 1) == f"chargeamps/charger/{CP}/1/power_kw"
    assert t.charger_session_energy_kwh(CP, 1) == f"chargeamps/charger/{CP}/1/session_energy_kwh"
    # several connectors on one fuse
    assert t.charger_charge_at(CP, 2) == f"chargeamps/charger/{CP}/2/charge_at"
    assert t.charger_priority(CP, 2) == f"chargeamps/charger/{CP}/2/priority"
    assert t.charger_reason(CP, 2) == f"chargeamps/charger/{CP}/2/reason"
    assert t.charge_mode(CP, 1) == f"chargeamps/charger/{CP}/1/charge_mode"
    assert t.capacity_limit_kw == "chargeamps/capacity/limit_kw"
    assert t.capacity_period_kw == "chargeamps/capacity/period_kw"
    assert t.capacity_projected_kw == "chargeamps/capacity/projected_kw"
    assert t.capacity_month_peaks == "chargeamps/capacity/month_peaks"
    assert t.capacity_state == "chargeamps/capacity/state"


def test_command_topic_names_are_the_public_ones() -> None:
    t = Topics("chargeamps")
    assert t.command_topics(CP, 1) == [
        "chargeamps/balancer/max_a/set",
        "chargeamps/balancer/default_current/set",
        "chargeamps/balancer/enabled/set",
        f"chargeamps/charger/{CP}/1/max_current/set",
        f"chargeamps/charger/{CP}/1/mode/set",
        f"chargeamps/charger/{CP}/reboot/set",
        "chargeamps/bridge/request/refresh",
        f"chargeamps/charger/{CP}/1/priority/set",  # several connectors on one fuse
        "chargeamps/capacity/limit_kw/set",
        f"chargeamps/charger/{CP}/1/charge_mode/set",
        f"chargeamps/charger/{CP}/1/default_current/set",  # several connectors: each its own
    ]


def test_every_command_topic_classifies_to_its_name_and_charger() -> None:
    t = Topics("home/ev")
    found = [t.classify(topic) for topic in t.command_topics(CP, 2)]
    assert [c.name for c in found if c] == list(COMMAND_NAMES)
    assert found[3] == Command("charger_max_current", t.charger_max_current_set(CP, 2), cp=CP, connector=2)
    assert found[4] == Command("charger_mode", t.charger_mode_set(CP, 2), cp=CP, connector=2)
    assert found[5] == Command("reboot", t.charger_reboot_set(CP), cp=CP)
    assert found[7] == Command("charger_priority", t.charger_priority_set(CP, 2), cp=CP, connector=2)
    assert found[9] == Command("charge_mode", t.charge_mode_set(CP, 2), cp=CP, connector=2)
    assert found[10] == Command("charger_default_current", t.charger_default_current_set(CP, 2), cp=CP, connector=2)


def test_every_command_topic_matches_one_command_subscription_and_unknown_ones_are_told_apart() -> None:
    from paho.mqtt.client import topic_matches_sub

    t = Topics("home/ev")
    subscriptions = t.command_subscriptions()
    for topic in t.command_topics(CP, 2):
        # One match only: a broker may deliver a message once per matching subscription.
        assert sum(topic_matches_sub(s, topic) for s in subscriptions) == 1, topic
        assert not t.unknown_command(topic)
    for unknown in ("home/ev/balancer/foo/set", "home/ev/charger/x/1/speed/set", "home/ev/bridge/request/all",
                    "home/ev/set/set"):
        assert sum(topic_matches_sub(s, unknown) for s in subscriptions) == 1, unknown
        assert t.unknown_command(unknown) and t.classify(unknown) is None
    # State topics are neither brought by the subscriptions nor taken for commands.
    for state in (t.max_a, t.charger_max_current(CP, 2), t.response, "home/evil/balancer/foo/set", "home/ev/set"):
        assert not any(topic_matches_sub(s, state) for s in subscriptions) and not t.unknown_command(state)
    assert "charger/<chargepoint>/<connector>/max_current/set" in t.command_list()


@pytest.mark.parametrize(
    "topic",
    [
        "chargeamps/balancer/max_a",  # a state topic
        "chargeamps/balancer/max_a/set/x",
        "other/balancer/max_a/set",
        "chargeampsX/balancer/max_a/set",
        "chargeamps/charger/CP/0/mode/set",  # connectors count from 1
        "chargeamps/charger/CP/one/mode/set",
        "chargeamps/charger/+/1/mode/set",
        "chargeamps/charger//1/mode/set",
        "",
    ],
)
def test_other_topics_are_no_commands(topic: str) -> None:
    assert Topics("chargeamps").classify(topic) is None


def test_state_topics_are_never_commands_and_all_distinct() -> None:
    t = Topics()
    states = t.state_topics(CP, 1)
    assert len(set(states)) == len(states)
    assert all(t.classify(s) is None for s in states)
    assert not set(states) & set(t.command_topics(CP, 1))


@pytest.mark.parametrize("base", ["", "/", "a/#", "a/+/b", "a//b"])
def test_bad_base_topic_is_refused(base: str) -> None:
    with pytest.raises(ValueError):
        Topics(base)


def test_base_topic_slashes_are_trimmed() -> None:
    assert Topics("/chargeamps/").charge_at == "chargeamps/balancer/charge_at"


@pytest.mark.parametrize("cp", ["", "a/b", "a+", "#"])
def test_bad_charge_point_ids_are_refused(cp: str) -> None:
    with pytest.raises(ValueError):
        Topics().charger_status(cp, 1)


def test_bad_phase_and_connector_are_refused() -> None:
    t = Topics()
    with pytest.raises(ValueError):
        t.loadbal(3)
    with pytest.raises(ValueError):
        t.meter_current(-1)
    with pytest.raises(ValueError):
        t.charger_status(CP, 0)


def test_client_response_topic_is_under_the_base() -> None:
    assert Topics().client_response("node-red") == "chargeamps/bridge/response/node-red"


# --- payloads ----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, value",
    [
        (b"16", 16.0),
        (b"16.5", 16.5),
        (b" 10.5\n", 10.5),
        (b"-3", -3.0),
        (b"1e1", 10.0),
        (b'"16"', 16.0),
        (b'{"value": 16}', 16.0),
        (b'{"value": "7.5"}', 7.5),
        ("12", 12.0),
    ],
)
def test_parse_number_accepts(payload: bytes, value: float) -> None:
    assert parse_number(payload) == value


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"   ",
        b"abc",
        b"NaN",
        b"nan",
        b"inf",
        b"-Infinity",
        b"true",
        b"false",
        b"null",
        b"1e999",
        b"[16]",
        b'{"value": true}',
        b'{"value": NaN}',
        b'{"value": null}',
        b'{"amps": 16}',
        b"16 kA",
        b"1_000",
        b"\xff\xfe",
        b"{" * 10,
    ],
)
def test_parse_number_refuses(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_number(payload)


def test_parse_number_refuses_huge_and_deep_payloads_quickly() -> None:
    payloads = [b"[" * 100_000, b"[" * 3000 + b"]" * 3000, b"9" * 3000, b'{"value": ' + b"9" * 4000 + b"}", b"1" * 10**6]
    start = time.monotonic()
    for payload in payloads:
        with pytest.raises(PayloadError):
            parse_number(payload)
    assert time.monotonic() - start < 0.5


def test_payload_error_does_not_echo_a_long_payload() -> None:
    secretish = "x" * 1000
    with pytest.raises(PayloadError) as info:
        parse_number(secretish.encode())
    assert len(str(info.value)) < 120
    assert "x" * 41 not in str(info.value)


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(PayloadError, ValueError)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_parse_number_never_crashes(payload: bytes) -> None:
    try:
        value = parse_number(payload)
    except PayloadError:
        return
    assert math.isfinite(value)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_format_then_parse_round_trips_to_three_decimals(x: float) -> None:
    text = format_number(x)
    assert "e" not in text
    assert abs(parse_number(text.encode()) - x) <= 0.0005 + 1e-9 * abs(x)


@pytest.mark.parametrize("x, text", [(16, "16"), (16.0, "16"), (10.5, "10.5"), (0.1 + 0.2, "0.3"), (-0.0, "0"), (1 / 3, "0.333")])
def test_format_number(x: float, text: str) -> None:
    assert format_number(x) == text


@pytest.mark.parametrize("x", [math.nan, math.inf, True, "16"])
def test_format_number_refuses_non_numbers(x: object) -> None:
    with pytest.raises(ValueError):
        format_number(x)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload, value",
    [
        (b"ON", True),
        (b"on", True),
        (b"true", True),
        (b"True", True),
        (b"1", True),
        (b"OFF", False),
        (b"off", False),
        (b"FALSE", False),
        (b"0", False),
        (b" ON \n", True),
        (b'{"value": true}', True),
        (b'{"value": "OFF"}', False),
        (b'{"value": 0}', False),
        (b'"ON"', True),
    ],
)
def test_parse_bool_accepts(payload: bytes, value: bool) -> None:
    assert parse_bool(payload) is value


@pytest.mark.parametrize("payload", [b"", b"yes please", b"2", b"onn", b'{"value": 2}', b'{"x": true}', b"[true]", b"{"])
def test_parse_bool_refuses(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_bool(payload)


def test_format_bool() -> None:
    assert (format_bool(True), format_bool(False)) == ("ON", "OFF")
    assert parse_bool(format_bool(True).encode()) is True


@pytest.mark.parametrize(
    "payload, mode",
    [(b"On", "On"), (b"on", "On"), (b"OFF", "Off"), (b"schedule", "Schedule"), (b' "Schedule" ', "Schedule"), (b'{"value": "off"}', "Off")],
)
def test_parse_mode_accepts_and_normalises(payload: bytes, mode: str) -> None:
    assert parse_mode(payload) == mode


@pytest.mark.parametrize("payload", [b"", b"Auto", b"1", b'{"value": 1}', b"On Off"])
def test_parse_mode_refuses(payload: bytes) -> None:
    with pytest.raises(PayloadError) as info:
        parse_mode(payload)
    assert "On, Off or Schedule" in str(info.value) or "empty" in str(info.value)


def test_json_answer_shape_round_trips() -> None:
    # the service answers {"value": ...}; a client may feed it back as a command
    assert parse_number(json.dumps({"value": 16}).encode()) == 16


@pytest.mark.parametrize("payload, expected", [(b"16 A", 16.0), (b"10.5A", 10.5), (b" 6 A ", 6.0)])
def test_parse_number_accepts_amps_as_openhab_sends_them(payload, expected):
    assert parse_number(payload) == expected


@pytest.mark.parametrize("payload", [b"16 V", b"A", b"16 AA", b"\xef\xbc\x91\xef\xbc\x96"])
def test_parse_number_refuses_other_units_and_non_ascii_digits(payload):
    with pytest.raises(PayloadError):
        parse_number(payload)
