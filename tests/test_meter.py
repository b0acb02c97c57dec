from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.mqtt.meter import (
    DEFAULT_TOPICS,
    P1_PRESETS,
    MeterConfigError,
    MeterSource,
    extract_path,
    parse_path,
)
from bridge.mqtt.payloads import PayloadError

# --- JSON paths ----------------------------------------------------------------


def test_extract_dotted_and_indexed_paths() -> None:
    obj = {"SML": {"current_l1": 5.1}, "current_l1": [{"value": "2", "unit": "A"}], "em:0": {"a": [[1, 2]]}}
    assert extract_path(obj, "SML.current_l1") == 5.1
    assert extract_path(obj, "current_l1[0].value") == "2"
    assert extract_path(obj, "em:0.a[0][1]") == 2


@pytest.mark.parametrize("path", ["SML.current_l2", "current_l1[1].value", "SML[0]", "SML.current_l1.x"])
def test_extract_missing_path_is_a_payload_error(path: str) -> None:
    obj = {"SML": {"current_l1": 5.1}, "current_l1": [{"value": "2"}]}
    with pytest.raises(PayloadError) as info:
        extract_path(obj, path)
    assert path in str(info.value)


@pytest.mark.parametrize("path", ["", ".a", "a..b", "a[x]", "a[", "a]"])
def test_bad_path_syntax_is_refused(path: str) -> None:
    with pytest.raises(ValueError):
        parse_path(path)


# --- building a source ----------------------------------------------------------


def test_default_source_is_the_default_topics_in_amps() -> None:
    m = MeterSource.from_settings()
    assert m.topics == DEFAULT_TOPICS == ("p1/current_l1", "p1/current_l2", "p1/current_l3")
    assert (m.unit, m.voltage, m.heartbeat_topic) == ("A", 230.0, None)
    assert m.subscriptions() == list(DEFAULT_TOPICS)


def test_the_documented_presets_exist() -> None:
    for name in ("dsmr-reader", "homewizard", "tasmota-sml", "esphome-dsmr", "shelly-3em", "shelly-pro-3em", "dsmr-api"):
        assert name in P1_PRESETS
        MeterSource.from_settings(preset=name)  # every preset builds a valid source


def test_dsmr_reader_preset_has_the_heartbeat() -> None:
    m = MeterSource.from_settings(preset="dsmr-reader")
    assert m.topics[0] == "dsmr/reading/phase_power_current_l1"
    assert m.heartbeat_topic == "dsmr/reading/timestamp"
    assert m.subscriptions()[-1] == "dsmr/reading/timestamp"
    assert m.is_heartbeat("dsmr/reading/timestamp")
    assert m.parse("dsmr/reading/timestamp", b"2024-01-01T00:00:00Z") == []


def test_device_name_goes_into_the_topic_with_a_default() -> None:
    assert MeterSource.from_settings(preset="tasmota-sml").topics[0] == "tele/tasmota/SENSOR"
    m = MeterSource.from_settings(preset="tasmota-sml", device="p1meter")
    assert m.subscriptions() == ["tele/p1meter/SENSOR"]
    assert m.paths == ("SML.current_l1", "SML.current_l2", "SML.current_l3")
    m = MeterSource.from_settings(preset="shelly-3em", device="shellyem3-ABC")
    assert m.topics == tuple(f"shellies/shellyem3-ABC/emeter/{i}/current" for i in range(3))
    m = MeterSource.from_settings(preset="esphome-dsmr")
    assert m.topics[2] == "slimmelezer/sensor/current_phase_3/state"


def test_explicit_settings_win_over_the_preset() -> None:
    m = MeterSource.from_settings(
        topics=["my/l1", None, None], paths=[None, "SML.i2", None], unit="W", voltage=240, preset="tasmota-sml"
    )
    assert m.topics == ("my/l1", "tele/tasmota/SENSOR", "tele/tasmota/SENSOR")
    # the preset's path belongs to the preset's topic, not to an explicit one
    assert m.paths == (None, "SML.i2", "SML.current_l3")
    assert (m.unit, m.voltage) == ("W", 240.0)


def test_explicit_heartbeat_wins() -> None:
    m = MeterSource.from_settings(preset="dsmr-reader", heartbeat_topic="dsmr/reading/electricity_currently_delivered")
    assert m.heartbeat_topic == "dsmr/reading/electricity_currently_delivered"


def test_unit_is_normalised() -> None:
    assert MeterSource.from_settings(unit="kw").unit == "kW"
    assert MeterSource.from_settings(unit="w").unit == "W"


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"preset": "nope"}, "P1_PRESET"),
        ({"unit": "VA"}, "P1_UNIT"),
        ({"voltage": 0}, "P1_VOLTAGE"),
        ({"voltage": math.nan}, "P1_VOLTAGE"),
        ({"topics": ["p1/#", None, None]}, "P1_TOPIC_L1"),
        ({"topics": ["a", "b"]}, "P1_TOPIC"),
        ({"paths": ["a..b", None, None]}, "P1_JSON_PATH_L1"),
        ({"topics": ["same", "same", "x"], "paths": ["a", None, None]}, "P1_JSON_PATH_L2"),
        ({"preset": "tasmota-sml", "device": "a/+"}, "P1_DEVICE"),
    ],
)
def test_bad_settings_name_the_setting(kwargs: dict, names: str) -> None:
    with pytest.raises(MeterConfigError) as info:
        MeterSource.from_settings(**kwargs)
    assert names in str(info.value)


def test_source_is_frozen() -> None:
    m = MeterSource.from_settings()
    with pytest.raises(AttributeError):
        m.unit = "W"  # type: ignore[misc]


# --- parsing messages ----------------------------------------------------------


def test_plain_topics_give_one_phase_each() -> None:
    m = MeterSource.from_settings()
    assert m.parse("p1/current_l1", b"12.5") == [(0, 12.5)]
    assert m.parse("p1/current_l3", b" 3 \n") == [(2, 3.0)]
    assert m.parse("p1/current_l2", b'"4"') == [(1, 4.0)]
    assert m.parse("p1/current_l2", b"-2.5") == [(1, -2.5)]
    assert m.parse("other/topic", b"12") == []


def test_one_json_message_carries_all_three_phases() -> None:
    m = MeterSource.from_settings(preset="shelly-pro-3em", device="shellypro3em-x")
    assert m.subscriptions() == ["shellypro3em-x/status/em:0"]
    payload = json.dumps({"id": 0, "a_current": 0.38, "b_current": 10.2, "c_current": 7, "a_act_power": 50}).encode()
    assert m.parse("shellypro3em-x/status/em:0", payload) == [(0, 0.38), (1, 10.2), (2, 7.0)]


def test_tasmota_message() -> None:
    m = MeterSource.from_settings(preset="tasmota-sml")
    payload = b'{"Time": "2024-01-01T00:00:00", "SML": {"current_l1": 5.1, "current_l2": 0, "current_l3": 1.2, "power_l1": 900}}'
    assert m.parse("tele/tasmota/SENSOR", payload) == [(0, 5.1), (1, 0.0), (2, 1.2)]


def test_homewizard_signed_amps() -> None:
    m = MeterSource.from_settings(preset="homewizard")
    payload = b'{"active_current_l1_a": -4.0, "active_current_l2_a": 1, "active_current_l3_a": 2.5, "active_power_l1_w": -920}'
    assert m.parse("homewizard/p1", payload) == [(0, -4.0), (1, 1.0), (2, 2.5)]


def test_dsmr_api_string_inside_an_array() -> None:
    m = MeterSource.from_settings(preset="dsmr-api")
    assert m.parse("DSMR-API/current_l2", b'{"current_l2": [{"value": "2", "unit": "A"}]}') == [(1, 2.0)]


@pytest.mark.parametrize("unit, payload, amps", [("W", b"2300", 10.0), ("kW", b"1.15", 5.0), ("W", b"-460", -2.0)])
def test_power_is_converted_with_the_voltage(unit: str, payload: bytes, amps: float) -> None:
    m = MeterSource.from_settings(unit=unit)
    [(phase, value)] = m.parse("p1/current_l1", payload)
    assert phase == 0 and value == pytest.approx(amps)


def test_voltage_setting_is_used() -> None:
    m = MeterSource.from_settings(unit="W", voltage=240)
    assert m.parse("p1/current_l1", b"2400") == [(0, pytest.approx(10.0))]


@pytest.mark.parametrize(
    "payload",
    [b"", b"  ", b"text", b"NaN", b"nan", b"inf", b"-inf", b"1001", b"-1000.5", b"1e6", b"null", b"true", b"[1]", b"\xff", b"1" * 70000],
)
def test_garbage_on_a_plain_topic_is_a_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        MeterSource.from_settings().parse("p1/current_l1", payload)


def test_converted_value_is_checked_against_the_limit() -> None:
    # 300 kW on one phase is 1304 A: no house meter reads that
    with pytest.raises(PayloadError):
        MeterSource.from_settings(unit="kW").parse("p1/current_l1", b"300")


@pytest.mark.parametrize(
    "payload",
    [
        b"12",
        b"[]",
        b'{"SML": 5}',
        b'{"SML": {"current_l1": 5}}',  # L2 and L3 missing
        b'{"SML": {"current_l1": 5, "current_l2": "x", "current_l3": 1}}',
        b'{"SML": {"current_l1": 5, "current_l2": null, "current_l3": 1}}',
        b'{"SML": {"current_l1": NaN, "current_l2": 1, "current_l3": 1}}',
        b'{"SML": {"current_l1": 5000, "current_l2": 1, "current_l3": 1}}',
        b'{"SML": {"current_l1": true, "current_l2": 1, "current_l3": 1}}',
        b'{"SML": {"current_l1": 5, "current_l2": 1, "current_l3": 1}',
        b"[" * 50_000,
    ],
)
def test_garbage_json_is_a_payload_error_naming_the_phase(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        MeterSource.from_settings(preset="tasmota-sml").parse("tele/tasmota/SENSOR", payload)


def test_error_names_the_phase_and_topic() -> None:
    with pytest.raises(PayloadError) as info:
        MeterSource.from_settings(preset="tasmota-sml").parse(
            "tele/tasmota/SENSOR", b'{"SML": {"current_l1": 5, "current_l2": "x", "current_l3": 1}}'
        )
    assert "L2" in str(info.value) and "tele/tasmota/SENSOR" in str(info.value)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_plain_parse_never_crashes(payload: bytes) -> None:
    try:
        readings = MeterSource.from_settings().parse("p1/current_l1", payload)
    except PayloadError:
        return
    assert len(readings) == 1 and math.isfinite(readings[0][1]) and abs(readings[0][1]) <= 1000


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["SML", "current_l1", "current_l2", "current_l3", "x"]), children, max_size=4),
    max_leaves=12,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_json_parse_never_crashes(value: object) -> None:
    payload = json.dumps(value).encode()
    try:
        readings = MeterSource.from_settings(preset="tasmota-sml").parse("tele/tasmota/SENSOR", payload)
    except PayloadError:
        return
    assert [p for p, _ in readings] == [0, 1, 2]
    assert all(math.isfinite(a) and abs(a) <= 1000 for _, a in readings)
