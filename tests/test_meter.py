from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.mqtt.meter import (
    CURRENT,
    DEFAULT_TOPICS,
    DELIVERED,
    P1_PRESETS,
    POWER,
    RETURNED,
    TOTAL_POWER,
    VOLTAGE,
    FieldMissing,
    MeterConfigError,
    MeterSource,
    MeterState,
    PhaseValue,
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


@pytest.mark.parametrize("path", ["SML.current_l2", "current_l1[1].value", "other"])
def test_extract_absent_field_is_field_missing(path: str) -> None:
    obj = {"SML": {"current_l1": 5.1}, "current_l1": [{"value": "2"}]}
    with pytest.raises(FieldMissing) as info:
        extract_path(obj, path)
    assert path in str(info.value)


@pytest.mark.parametrize("path", ["SML[0]", "SML.current_l1.x", "current_l1.value"])
def test_extract_through_the_wrong_shape_is_a_payload_error_not_a_missing_field(path: str) -> None:
    obj = {"SML": {"current_l1": 5.1}, "current_l1": [{"value": "2"}]}
    with pytest.raises(PayloadError) as info:
        extract_path(obj, path)
    assert not isinstance(info.value, FieldMissing) and path in str(info.value)


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
    for name in ("dsmr-reader", "homewizard", "homewizard-v2", "tasmota-sml", "esphome-dsmr", "shelly-3em",
                 "shelly-pro-3em", "dsmr-api"):
        assert name in P1_PRESETS
        MeterSource.from_settings(preset=name)  # every preset builds a valid source


def test_dsmr_reader_preset_has_the_heartbeat() -> None:
    m = MeterSource.from_settings(preset="dsmr-reader")
    assert m.topics[0] == "dsmr/reading/phase_power_current_l1"
    assert m.heartbeat_topic == "dsmr/reading/timestamp"
    assert m.subscriptions()[-1] == "dsmr/reading/timestamp"
    assert m.is_heartbeat("dsmr/reading/timestamp")
    assert m.parse("dsmr/reading/timestamp", b"2024-01-01T00:00:00Z") == []
    # dsmr-reader's split topics: per phase delivered and returned kW and the voltage
    assert m.power_unit == "kW"
    assert {(i.kind, i.topic) for i in m.inputs if i.phase == 1} == {
        (DELIVERED, "dsmr/reading/phase_currently_delivered_l2"),
        (RETURNED, "dsmr/reading/phase_currently_returned_l2"),
        (VOLTAGE, "dsmr/reading/phase_voltage_l2"),
    }


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


def test_power_settings_combine_with_the_preset_per_phase() -> None:
    m = MeterSource.from_settings(
        preset="tasmota-sml", power_paths=["SML.power_l1", None, None], power_topics=["tele/tasmota/SENSOR", None, None],
        voltage_topics=["tele/tasmota/SENSOR", None, None], voltage_paths=["SML.voltage_l1", None, None],
    )
    assert {(i.kind, i.path) for i in m.inputs} == {(POWER, "SML.power_l1"), (VOLTAGE, "SML.voltage_l1")}
    assert m.subscriptions() == ["tele/tasmota/SENSOR"]
    # an explicit power input replaces the preset's power inputs of that phase only
    m = MeterSource.from_settings(preset="dsmr-reader", power_topics=["house/l1_net", None, None])
    kinds_l1 = {i.kind for i in m.inputs if i.phase == 0}
    kinds_l2 = {i.kind for i in m.inputs if i.phase == 1}
    assert kinds_l1 == {POWER, VOLTAGE} and kinds_l2 == {DELIVERED, RETURNED, VOLTAGE}


def test_a_phase_without_any_input_is_refused() -> None:
    with pytest.raises(MeterConfigError) as info:
        MeterSource(topics=("a", None, "c"))
    assert str(info.value) == ("L2 has no input: set P1_TOPIC_L2 (current), P1_POWER_TOPIC_L2 (net power) "
                               "or P1_POWER_DELIVERED_TOPIC_L2")


def test_a_returned_topic_alone_names_itself_not_another_phase() -> None:
    with pytest.raises(MeterConfigError) as info:
        MeterSource.from_settings(returned_topics=[None, "x", None])
    assert str(info.value).startswith("P1_POWER_RETURNED_TOPIC_L2 needs P1_POWER_DELIVERED_TOPIC_L2")


def test_power_alone_needs_no_current_topic() -> None:
    m = MeterSource.from_settings(power_topics=["h/p1", "h/p2", "h/p3"], power_unit="kw")
    assert m.topics == (None, None, None) and m.power_unit == "kW"
    assert m.subscriptions() == ["h/p1", "h/p2", "h/p3"]


def test_house_power_topic() -> None:
    m = MeterSource.from_settings(total_power_topic="house/power")
    assert [(i.kind, i.phase, i.topic) for i in m.inputs] == [(TOTAL_POWER, None, "house/power")]
    assert MeterSource.from_settings(preset="homewizard").inputs[-1].path == "active_power_w"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"delivered_topics": ["d1", "d2", "d3"], "returned_topics": [None, "r2", None]}, None),
        ({"returned_topics": ["r1", None, None]}, "P1_POWER_RETURNED_TOPIC_L1 needs P1_POWER_DELIVERED_TOPIC_L1"),
        ({"power_topics": ["p1", None, None], "delivered_topics": ["d1", None, None]},
         "L1 has a net power (P1_POWER_TOPIC_L1"),
        ({"unit": "W", "topics": ["c1", "c2", "c3"], "delivered_topics": ["d1", None, None]},
         "L1 has a net power (P1_POWER_TOPIC_L1, or P1_TOPIC_L1"),
        ({"voltage_topics": [None, "v2", None]}, "P1_VOLTAGE_TOPIC_L2 is set but L2 has no power input"),
        ({"power_paths": [None, None, "x"]}, "P1_POWER_JSON_PATH_L3 is set but P1_POWER_TOPIC_L3 is not"),
        ({"total_power_path": "x"}, "P1_POWER_JSON_PATH is set but P1_POWER_TOPIC is not"),
        ({"power_topics": ["p1", "p2", None]}, None),  # L3 keeps the default current topic
        ({"power_unit": "A"}, "P1_POWER_UNIT must be W or kW"),
        ({"power_topics": ["same", "same", "p3"], "power_paths": ["a", "a", None]}, "read the same field 'a'"),
        ({"heartbeat_topic": "p1/current_l1"}, "P1_HEARTBEAT_TOPIC"),
    ],
)
def test_bad_combinations_are_one_clear_line(kwargs: dict, message: str | None) -> None:
    if message is None:  # the control: a valid combination builds
        MeterSource.from_settings(**kwargs)
        return
    with pytest.raises(MeterConfigError) as info:
        MeterSource.from_settings(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


# --- parsing messages ----------------------------------------------------------


def values(readings) -> list[tuple[str, int | None, float]]:
    return [(r.kind, r.phase, r.value) for r in readings]


def test_plain_topics_give_one_phase_each() -> None:
    m = MeterSource.from_settings()
    assert values(m.parse("p1/current_l1", b"12.5")) == [(CURRENT, 0, 12.5)]
    assert values(m.parse("p1/current_l3", b" 3 \n")) == [(CURRENT, 2, 3.0)]
    assert values(m.parse("p1/current_l2", b'"4"')) == [(CURRENT, 1, 4.0)]
    assert values(m.parse("p1/current_l2", b"-2.5")) == [(CURRENT, 1, -2.5)]
    assert m.parse("other/topic", b"12") == []


def test_shelly_pro_status_carries_all_three_phases_with_power_and_voltage() -> None:
    # EM.GetStatus field names, Shelly Gen2 API documentation (EM component status)
    m = MeterSource.from_settings(preset="shelly-pro-3em", device="shellypro3em-x")
    assert m.subscriptions() == ["shellypro3em-x/status/em:0", "shellypro3em-x/events/rpc"]
    payload = json.dumps({"id": 0, "a_current": 0.38, "a_voltage": 231.2, "a_act_power": 50.1, "b_current": 10.2,
                          "b_voltage": 230.0, "b_act_power": -2300.0, "c_current": 7, "c_voltage": 229.1,
                          "c_act_power": 1500, "total_act_power": -749.9}).encode()
    got = values(m.parse("shellypro3em-x/status/em:0", payload))
    assert (CURRENT, 0, 0.38) in got and (POWER, 1, -2300.0) in got and (VOLTAGE, 2, 229.1) in got
    assert (TOTAL_POWER, None, -749.9) in got and len(got) == 10


def test_tasmota_telemetry_message() -> None:
    # tele/<device>/SENSOR as Tasmota's SML driver sends it every TelePeriod (Smart Meter Interface docs)
    m = MeterSource.from_settings(preset="tasmota-sml")
    payload = b'{"Time": "2024-01-01T00:00:00", "SML": {"current_l1": 5.1, "current_l2": 0, "current_l3": 1.2, "power_l1": 900}}'
    assert values(m.parse("tele/tasmota/SENSOR", payload)) == [(CURRENT, 0, 5.1), (CURRENT, 1, 0.0), (CURRENT, 2, 1.2)]


def test_tasmota_immediate_value_carries_one_key() -> None:
    # Tasmota SML_Immediate_MQTT (xsns_53_sml.ino): a descriptor whose precision has +16 publishes
    # {"Time": ..., "<meter prefix>": {"<name>": value}} on tele/<device>/SENSOR at once
    m = MeterSource.from_settings(preset="tasmota-sml")
    assert values(m.parse("tele/tasmota/SENSOR", b'{"Time":"2024-01-01T00:00:01","SML":{"current_l2":7.25}}')) == [
        (CURRENT, 1, 7.25)]
    # an immediate value the bridge does not read: the source's shape, nothing for the meter
    assert m.parse("tele/tasmota/SENSOR", b'{"Time":"2024-01-01T00:00:01","SML":{"Total_in":1234.5}}') == []


def test_shelly_notify_status_carries_what_changed() -> None:
    # NotifyStatus on <id>/events/rpc: "some or all unchanged attributes ... may not be visible"
    # (Shelly Gen2 API documentation, Notifications)
    m = MeterSource.from_settings(preset="shelly-pro-3em", device="shellypro3em-x")
    note = {"src": "shellypro3em-x", "dst": "shellypro3em-x/events", "method": "NotifyStatus",
            "params": {"ts": 1700000000.5, "em:0": {"id": 0, "b_current": 12.4, "b_act_power": 2790.5}}}
    got = values(m.parse("shellypro3em-x/events/rpc", json.dumps(note).encode()))
    assert got == [(CURRENT, 1, 12.4), (POWER, 1, 2790.5)]
    other = {"src": "shellypro3em-x", "dst": "shellypro3em-x/events", "method": "NotifyStatus",
             "params": {"ts": 1700000001.0, "sys": {"uptime": 1234}}}
    assert m.parse("shellypro3em-x/events/rpc", json.dumps(other).encode()) == []


def test_homewizard_single_phase_meter_leaves_fields_out() -> None:
    # HomeWizard P1 local API v1 /api/v1/data on a single-phase meter: no _l2/_l3 fields
    m = MeterSource.from_settings(preset="homewizard")
    payload = b'{"active_power_w": -920, "active_power_l1_w": -920, "active_voltage_l1_v": 230, "active_current_l1_a": -4.0}'
    got = values(m.parse("homewizard/p1", payload))
    assert got == [(CURRENT, 0, -4.0), (POWER, 0, -920.0), (VOLTAGE, 0, 230.0), (TOTAL_POWER, None, -920.0)]


def test_homewizard_v2_names() -> None:
    # HomeWizard P1 local API v2 /api/measurement field names
    m = MeterSource.from_settings(preset="homewizard-v2")
    payload = b'{"power_w": 1200, "power_l1_w": 600, "power_l2_w": 400, "power_l3_w": 200, "voltage_l1_v": 231, "current_l3_a": 0.9}'
    got = values(m.parse("homewizard/p1", payload))
    assert (POWER, 2, 200.0) in got and (VOLTAGE, 0, 231.0) in got and (CURRENT, 2, 0.9) in got
    assert (TOTAL_POWER, None, 1200.0) in got


def test_dsmr_api_string_inside_an_array() -> None:
    m = MeterSource.from_settings(preset="dsmr-api")
    assert values(m.parse("DSMR-API/current_l2", b'{"current_l2": [{"value": "2", "unit": "A"}]}')) == [(CURRENT, 1, 2.0)]


@pytest.mark.parametrize("unit, payload, watts", [("W", b"2300", 2300.0), ("kW", b"1.15", 1150.0), ("W", b"-460", -460.0)])
def test_a_current_topic_in_w_or_kw_carries_power(unit: str, payload: bytes, watts: float) -> None:
    m = MeterSource.from_settings(unit=unit)
    assert values(m.parse("p1/current_l1", payload)) == [(POWER, 0, pytest.approx(watts))]


def test_a_kw_value_too_large_for_watts_is_a_payload_error_not_infinity() -> None:
    with pytest.raises(PayloadError):
        MeterSource.from_settings(unit="kW").parse("p1/current_l1", b"1.797693134862316e+305")


def test_dsmr_reader_kw_topics_are_read_in_watts() -> None:
    # dsmr-reader split topics: kW with three decimals (github.com/dsmrreader/dsmr-reader/issues/1558 shows
    # `dsmr/reading/phase_currently_delivered_l1 0.046`, `phase_voltage_l3 236.0`)
    m = MeterSource.from_settings(preset="dsmr-reader")
    assert values(m.parse("dsmr/reading/phase_currently_delivered_l1", b"0.046")) == [(DELIVERED, 0, pytest.approx(46.0))]
    assert values(m.parse("dsmr/reading/phase_voltage_l3", b"236.0")) == [(VOLTAGE, 2, 236.0)]


@pytest.mark.parametrize(
    "payload",
    [b"", b"  ", b"text", b"NaN", b"nan", b"inf", b"-inf", b"null", b"true", b"[1]", b"\xff", b"1" * 70000],
)
def test_garbage_on_a_plain_topic_is_a_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        MeterSource.from_settings().parse("p1/current_l1", payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"12",
        b"[]",
        b"{}",  # no phase at all, not even the source's group
        b'{"foo": 1}',
        b'{"SML": 5}',
        b'{"SML": {"current_l1": 5, "current_l2": "x", "current_l3": 1}}',
        b'{"SML": {"current_l1": 5, "current_l2": null, "current_l3": 1}}',
        b'{"SML": {"current_l1": NaN, "current_l2": 1, "current_l3": 1}}',
        b'{"SML": {"current_l1": true, "current_l2": 1, "current_l3": 1}}',
        b'{"SML": {"current_l1": 5, "current_l2": 1, "current_l3": 1}',
        b"[" * 50_000,
    ],
)
def test_garbage_json_is_a_payload_error(payload: bytes) -> None:
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
        readings = None  # refused with a message: fine
    assert readings is None or (len(readings) == 1 and math.isfinite(readings[0].value))


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["SML", "current_l1", "current_l2", "current_l3", "x"]), children, max_size=4),
    max_leaves=12,
)


@pytest.mark.slow
@given(json_values)
@settings(max_examples=300, deadline=None)
def test_json_parse_never_crashes(value: object) -> None:
    payload = json.dumps(value).encode()
    try:
        readings = MeterSource.from_settings(preset="tasmota-sml").parse("tele/tasmota/SENSOR", payload)
    except PayloadError:
        readings = []  # refused with a message: fine
    assert all(r.phase in (0, 1, 2) and r.kind == CURRENT and math.isfinite(r.value) for r in readings)


# --- the meter's memory: combination, retained values, plausibility, gaps ---------------


def state(fuse_a: float = 25, stale_after_s: float = 30, **settings) -> MeterState:
    return MeterState(MeterSource.from_settings(**settings), fuse_a=fuse_a, stale_after_s=stale_after_s)


def feed(m: MeterState, messages, now: float = 0.0, retain: bool = False):
    return [m.on_message(t, p, retain, now) for t, p in messages]


ESPHOME = {"preset": "esphome-dsmr", "device": "sl"}


def test_telegram_power_and_voltage_refine_whole_amps() -> None:
    # One DSMR 5 telegram as ESPHome's dsmr component publishes it (SlimmeLezer sensor names):
    # 1-0:31.7.0(002*A), 1-0:21.7.0(00.500*kW), 1-0:22.7.0(00.000*kW), 1-0:32.7.0(230.4*V)
    m = state(**ESPHOME)
    updates = feed(m, [("sl/sensor/current_phase_1/state", b"2"), ("sl/sensor/voltage_phase_1/state", b"230.4"),
                       ("sl/sensor/power_produced_phase_1/state", b"0.000"),
                       ("sl/sensor/power_consumed_phase_1/state", b"0.500")])
    assert updates[0].phases == (PhaseValue(0, 2.0),)  # the whole amps until the power is known
    [last] = updates[-1].phases
    assert last.amps == pytest.approx(2.17, abs=0.005) and last.power_w == pytest.approx(500.0)


def test_a_current_above_power_over_voltage_wins() -> None:
    # power factor 0.65: 6 A at 230 V is 1380 VA but only 0.897 kW of active power
    m = state(**ESPHOME)
    updates = feed(m, [("sl/sensor/voltage_phase_2/state", b"230.0"), ("sl/sensor/power_consumed_phase_2/state", b"0.897"),
                       ("sl/sensor/current_phase_2/state", b"6")])
    assert updates[-1].phases == (PhaseValue(1, 6.0, pytest.approx(897.0)),)


def test_export_gives_a_negative_current() -> None:
    # solar export on L3: the telegram's current is unsigned (005*A), 22.7.0 says 1.150 kW returned
    m = state(**ESPHOME)
    updates = feed(m, [("sl/sensor/current_phase_3/state", b"5"), ("sl/sensor/voltage_phase_3/state", b"230.0"),
                       ("sl/sensor/power_consumed_phase_3/state", b"0.000"),
                       ("sl/sensor/power_produced_phase_3/state", b"1.150")])
    [value] = updates[-1].phases
    assert value.amps == pytest.approx(-5.0) and value.power_w == pytest.approx(-1150.0)


def test_power_alone_is_power_over_voltage_with_the_nominal_voltage_until_one_is_measured() -> None:
    m = state(power_topics=["h/p1", "h/p2", "h/p3"], voltage_topics=[None, "h/v2", None], voltage=240)
    assert feed(m, [("h/p1", b"2400")])[0].phases == (PhaseValue(0, 10.0, 2400.0),)
    feed(m, [("h/v2", b"200")])
    assert feed(m, [("h/p2", b"-1000")])[0].phases == (PhaseValue(1, -5.0, -1000.0),)


def test_returned_power_not_heard_yet_counts_as_zero_and_delivered_not_heard_leaves_the_current() -> None:
    m = state(**ESPHOME)
    assert feed(m, [("sl/sensor/power_produced_phase_1/state", b"0.5")])[0].phases == ()
    assert feed(m, [("sl/sensor/current_phase_1/state", b"3")])[0].phases == (PhaseValue(0, 3.0),)
    [v] = feed(m, [("sl/sensor/power_consumed_phase_2/state", b"0.46")])[0].phases
    assert v.amps == pytest.approx(2.0)


@pytest.mark.slow
@given(current=st.floats(0, 90), watts=st.floats(-20_000, 20_000), volts=st.floats(200, 260))
@settings(max_examples=300, deadline=None)
def test_combined_current_is_the_larger_of_both_signed_as_the_power(current, watts, volts) -> None:
    assume(abs(watts) / volts < 100)
    m = state(power_topics=["p", "x2", "x3"], topics=["c", "y2", "y3"], voltage_topics=["v", None, None])
    feed(m, [("v", repr(volts).encode()), ("c", repr(current).encode())])
    [value] = feed(m, [("p", repr(watts).encode())])[0].phases
    assert abs(value.amps) == pytest.approx(max(current, abs(watts) / volts))
    assert (value.amps < 0) == (watts < 0) or value.amps == 0


@pytest.mark.parametrize("payload", [b"920", b"-100.5", b"1e4"])
def test_a_value_beyond_four_fuses_is_invalid_and_changes_nothing(payload: bytes) -> None:
    # 920: a power in W published on a current topic
    m = state(fuse_a=25)
    feed(m, [("p1/current_l1", b"12")])
    update = m.on_message("p1/current_l1", payload, False, 1.0)
    assert update.invalid is not None and "100 A" in update.invalid and "BALANCER_FUSE_A" in update.invalid
    assert update.phases == () and m.phase_value(0) == PhaseValue(0, 12.0)


def test_the_bound_is_four_fuses_on_both_sides_and_holds_at_the_bound() -> None:
    m = state(fuse_a=25)
    assert feed(m, [("p1/current_l1", b"99.99")])[0].phases == (PhaseValue(0, 99.99),)
    assert feed(m, [("p1/current_l1", b"-99.99")])[0].phases == (PhaseValue(0, -99.99),)
    # Exactly 4 x the fuse is as impossible as beyond it: refused, the last value kept.
    for payload in (b"100", b"1e2", b"-100", b"100.01"):
        update = m.on_message("p1/current_l1", payload, False, 0)
        assert update.invalid and "100 A" in update.invalid and update.phases == ()
    assert m.phase_value(0) == PhaseValue(0, -99.99)
    assert state(fuse_a=35).on_message("p1/current_l1", b"139", False, 0).invalid is None


def test_a_power_beyond_four_fuses_and_an_impossible_voltage_are_invalid() -> None:
    m = state(**ESPHOME)
    assert "W (130 A)" in m.on_message("sl/sensor/power_consumed_phase_1/state", b"30", False, 0).invalid
    assert "not a phase voltage" in m.on_message("sl/sensor/voltage_phase_1/state", b"0", False, 0).invalid
    assert m.on_message("sl/sensor/voltage_phase_1/state", b"235.5", False, 0).invalid is None


def test_one_bad_value_refuses_the_whole_message() -> None:
    m = state(preset="homewizard")
    update = m.on_message("homewizard/p1", b'{"active_current_l1_a": 3, "active_current_l2_a": 920}', False, 0)
    assert update.invalid and "L2" in update.invalid and m.phase_value(0) is None


def test_tasmota_one_key_messages_update_one_phase_each() -> None:
    # Tasmota immediate values (precision + 16): one key per message on tele/<device>/SENSOR
    m = state(preset="tasmota-sml", device="p1")
    ups = feed(m, [("tele/p1/SENSOR", b'{"Time":"2024-01-01T10:00:00","SML":{"current_l1":4.5}}'),
                   ("tele/p1/SENSOR", b'{"Time":"2024-01-01T10:00:00","SML":{"current_l3":1.25}}')])
    assert [u.phases for u in ups] == [(PhaseValue(0, 4.5),), (PhaseValue(2, 1.25),)]
    assert m.phase_value(1) is None


def test_a_message_for_another_component_is_neither_a_reading_nor_invalid() -> None:
    m = state(preset="shelly-pro-3em")
    # NotifyEvent on events/rpc (Shelly Gen2 API documentation, Notifications)
    update = m.on_message("shellypro3em/events/rpc", json.dumps(
        {"src": "shellypro3em", "method": "NotifyEvent", "params": {"ts": 1.0, "events": []}}).encode(), False, 0)
    assert update == type(update)()


def test_without_a_heartbeat_retained_values_are_not_used() -> None:
    m = state()
    update = m.on_message("p1/current_l1", b"5", True, 0)
    assert update.phases == () and "not used" in update.note
    assert m.phase_value(0) is None


DSMR_READER_RETAINED = [
    # dsmr-reader's split topics, all published retained (github.com/dsmrreader/dsmr-reader/issues/723: retain plus a
    # cache that re-sends an unchanged value only after its timeout)
    ("dsmr/reading/phase_power_current_l1", b"2"),
    ("dsmr/reading/phase_currently_delivered_l1", b"0.500"),
    ("dsmr/reading/phase_currently_returned_l1", b"0.000"),
    ("dsmr/reading/phase_voltage_l1", b"230.4"),
    ("dsmr/reading/phase_power_current_l2", b"5"),
    ("dsmr/reading/phase_currently_delivered_l2", b"0.000"),
    ("dsmr/reading/phase_currently_returned_l2", b"1.150"),
    ("dsmr/reading/phase_voltage_l2", b"230.0"),
    ("dsmr/reading/phase_power_current_l3", b"0"),
    ("dsmr/reading/phase_currently_delivered_l3", b"0.046"),
    ("dsmr/reading/phase_currently_returned_l3", b"0.000"),
    ("dsmr/reading/phase_voltage_l3", b"236.0"),
]


def test_retained_values_wait_for_a_live_heartbeat_and_then_are_current() -> None:
    m = state(preset="dsmr-reader")
    held = feed(m, DSMR_READER_RETAINED, retain=True)
    assert all(u.phases == () and u.invalid is None for u in held)
    # the heartbeat's own retained value proves nothing
    assert m.on_message("dsmr/reading/timestamp", b"2024-01-01T10:00:00Z", True, 1.0).heartbeat is False
    live = m.on_message("dsmr/reading/timestamp", b"2024-01-01T10:00:05Z", False, 5.0)
    assert live.heartbeat and "retained values of L1, L2, L3 taken as current" in live.note
    amps = {v.phase: v.amps for v in live.phases}
    assert amps[0] == pytest.approx(2.17, abs=0.005) and amps[1] == pytest.approx(-5.0)
    assert amps[2] == pytest.approx(46 / 236)
    # the next heartbeat has nothing held: the balancer's meter_alive vouches for the phases
    again = m.on_message("dsmr/reading/timestamp", b"2024-01-01T10:00:06Z", False, 6.0)
    assert again.heartbeat and again.phases == () and again.note is None


def test_a_live_value_is_used_at_once_while_retained_ones_of_the_phase_wait() -> None:
    m = state(preset="dsmr-reader")
    feed(m, DSMR_READER_RETAINED[:4], retain=True)
    [v] = m.on_message("dsmr/reading/phase_power_current_l1", b"3", False, 1.0).phases
    assert v == PhaseValue(0, 3.0)  # the retained powers are not vouched for yet
    [v] = m.on_message("dsmr/reading/timestamp", b"t", False, 2.0).phases
    assert v.amps == pytest.approx(3.0) and v.power_w == pytest.approx(500.0)


def test_a_retained_copy_of_a_live_value_at_a_re_subscribe_keeps_it_live() -> None:
    m = state(preset="dsmr-reader")
    feed(m, DSMR_READER_RETAINED)  # live
    feed(m, DSMR_READER_RETAINED[:3], retain=True)  # the broker re-sends them after a reconnect
    [v] = m.on_message("dsmr/reading/phase_voltage_l1", b"230.4", False, 1.0).phases
    assert v.amps == pytest.approx(2.17, abs=0.005)
    m.on_message("dsmr/reading/phase_currently_delivered_l1", b"0.600", True, 2.0)  # a newer, unproven value
    [v] = m.on_message("dsmr/reading/phase_voltage_l1", b"230.4", False, 3.0).phases
    assert v.power_w == pytest.approx(500.0)  # the live one holds until a heartbeat vouches for the new one
    [v] = m.on_message("dsmr/reading/timestamp", b"t", False, 4.0).phases
    assert v.power_w == pytest.approx(600.0)


def test_house_power_is_reported_live_and_held_like_the_phases() -> None:
    m = state(total_power_topic="house/p", heartbeat_topic="hb")
    assert m.on_message("house/p", b"-1234.5", False, 0).total_power_w == -1234.5
    assert m.on_message("house/p", b"800", True, 1).total_power_w is None
    assert m.on_message("hb", b"x", False, 2).total_power_w == 800.0
    assert m.on_message("house/p", b"300000", False, 3).invalid  # 1304 A over three phases


def test_a_gap_longer_than_the_stale_limit_is_said_once() -> None:
    # Tasmota's default TelePeriod is 300 s
    m = state(preset="tasmota-sml", stale_after_s=30)
    msg = b'{"Time":"2024-01-01T10:00:00","SML":{"current_l1":1,"current_l2":1,"current_l3":1}}'
    assert m.on_message("tele/tasmota/SENSOR", msg, False, 0).gap is None
    assert m.on_message("tele/tasmota/SENSOR", msg, False, 30).gap is None
    gap = m.on_message("tele/tasmota/SENSOR", msg, False, 330).gap
    assert gap and "300 s apart" in gap and "BALANCER_STALE_AFTER_S (30 s)" in gap and "TelePeriod" in gap
    assert m.on_message("tele/tasmota/SENSOR", msg, False, 700).gap is None


def test_with_a_heartbeat_only_the_heartbeat_gap_counts() -> None:
    # dsmr-reader sends a value only when it changes: quiet value topics are normal
    m = state(preset="dsmr-reader", stale_after_s=30)
    assert m.on_message("dsmr/reading/phase_power_current_l1", b"1", False, 0).gap is None
    assert m.on_message("dsmr/reading/phase_power_current_l1", b"2", False, 500).gap is None
    assert m.on_message("dsmr/reading/timestamp", b"t", False, 500).gap is None
    assert m.on_message("dsmr/reading/timestamp", b"t", False, 540).gap


_MESSAGES = st.sampled_from(
    [t for t, _ in DSMR_READER_RETAINED] + ["dsmr/reading/timestamp", "dsmr/reading/other"]
)


@pytest.mark.slow
@given(st.lists(st.tuples(_MESSAGES, st.one_of(st.floats(allow_nan=True), st.text(max_size=6)), st.booleans()),
                max_size=40))
@settings(max_examples=200, deadline=None)
def test_any_message_sequence_gives_only_finite_phases_within_the_bound(messages) -> None:
    m = state(preset="dsmr-reader", fuse_a=25)
    for n, (topic, value, retain) in enumerate(messages):
        update = m.on_message(topic, str(value).encode(), retain, float(n))
        for v in update.phases:
            assert math.isfinite(v.amps) and abs(v.amps) < 100
            assert v.power_w is None or math.isfinite(v.power_w)
        assert not (update.invalid and update.phases)


def test_every_p1_setting_is_documented_in_the_configuration_page_and_env_example() -> None:
    from pathlib import Path

    from bridge.config import Settings

    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "configuration.md").read_text()
    example = (root / ".env.example").read_text()
    names = [f.upper() for f in Settings.model_fields if f.startswith("p1_")]
    assert len(names) > 30
    # The page groups the per-phase ones as `P1_X_L1` ... `_L3`; .env.example lists each.
    missing_page = [n for n in names if f"`{n}`" not in page and f"`{n[:-1]}1`" not in page]
    missing_example = [n for n in names if f"# {n}=" not in example]
    assert not missing_page and not missing_example, (missing_page, missing_example)


def test_configuration_page_preset_list_is_the_code_s() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `P1_PRESET`"))
    listed = set(re.findall(r"`([a-z0-9-]+)`", row))
    assert listed == set(P1_PRESETS)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"P1_POWER_RETURNED_TOPIC_L2": "house/l2_returned"},
         "P1_POWER_RETURNED_TOPIC_L2 needs P1_POWER_DELIVERED_TOPIC_L2"),
        ({"P1_PRESET": "homewizard", "P1_POWER_TOPIC_L1": "n", "P1_POWER_DELIVERED_TOPIC_L1": "d"},
         "L1 has a net power (P1_POWER_TOPIC_L1"),
        ({"P1_POWER_UNIT": "A"}, "P1_POWER_UNIT: must be W or kW"),
        ({"P1_VOLTAGE_JSON_PATH_L3": "v"}, "P1_VOLTAGE_JSON_PATH_L3 is set but P1_VOLTAGE_TOPIC_L3 is not"),
    ],
)
def test_a_bad_combination_in_the_environment_is_one_configuration_line(monkeypatch, tmp_path, settings, message):
    import os

    from bridge.config import ConfigError, load_settings

    for name in list(os.environ):
        if name.upper().startswith(("P1_", "BALANCER_", "MQTT_", "CHARGEAMPS_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert text.startswith("invalid configuration: ") and message in text and "\n" not in text


# --- a single-phase connection (P1_PHASES=1) --------------------------------------------------------

# HomeWizard's API documentation, "Recent Measurement (/api/v1/data)", example "HWE-P1 (1-phase, no
# gas)": only the _l1 fields, no _l2/_l3 at all (the example's trailing comma left out, and
# active_current_l1_a, documented in its parameter table, added; import here, not export).
HOMEWIZARD_ONE_PHASE = json.dumps({
    "smr_version": 50, "meter_model": "ISKRA  2M550T-101", "wifi_ssid": "My Wi-Fi", "wifi_strength": 100,
    "total_power_import_t1_kwh": 10830.511, "total_power_import_t2_kwh": 2948.827,
    "total_power_export_t1_kwh": 1285.951, "total_power_export_t2_kwh": 2876.51,
    "active_power_w": 2300, "active_power_l1_w": 2300, "active_current_l1_a": 10,
}).encode()


def test_single_phase_l2_and_l3_read_zero_whenever_l1_has_a_reading() -> None:
    m = state(preset="homewizard", phases=1)
    assert [i.phase for i in m.source.all_inputs] == [0, 0, 0, None]  # L1 current, power, voltage; the house
    assert [m.phase_value(p) for p in range(3)] == [None, None, None]  # nothing vouched for before L1
    [update] = feed(m, [("homewizard/p1", HOMEWIZARD_ONE_PHASE)], now=5.0)
    assert update.phases == (PhaseValue(0, 10.0, 2300.0), PhaseValue(1, 0.0, 0.0), PhaseValue(2, 0.0, 0.0))
    assert update.invalid is None and update.total_power_w == 2300.0


def test_on_three_phases_the_same_message_leaves_l2_and_l3_unknown() -> None:
    [update] = feed(state(preset="homewizard"), [("homewizard/p1", HOMEWIZARD_ONE_PHASE)])
    assert [v.phase for v in update.phases] == [0]


def test_single_phase_retained_l1_held_for_the_heartbeat_brings_l2_and_l3_along() -> None:
    m = state(preset="dsmr-reader", phases=1)
    assert feed(m, [("dsmr/reading/phase_power_current_l1", b"7")], retain=True)[0].phases == ()
    update = m.on_message("dsmr/reading/timestamp", b"2024-01-01T10:00:00Z", False, 1.0)
    assert update.phases == (PhaseValue(0, 7.0), PhaseValue(1, 0.0), PhaseValue(2, 0.0))


@pytest.mark.parametrize("kwargs, setting", [
    ({"topics": [None, "h/l2", None]}, "P1_TOPIC_L2"),
    ({"paths": [None, None, "x.y"]}, "P1_JSON_PATH_L3"),
    ({"preset": "homewizard", "power_topics": [None, "h/p2", None]}, "P1_POWER_TOPIC_L2"),
    ({"preset": "dsmr-reader", "voltage_paths": [None, None, "v"]}, "P1_VOLTAGE_JSON_PATH_L3"),
])
def test_a_second_or_third_phase_input_with_one_phase_is_one_clear_line(kwargs: dict, setting: str) -> None:
    with pytest.raises(MeterConfigError) as caught:
        MeterSource.from_settings(phases=1, **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{setting} is set but P1_PHASES is 1") and "\n" not in message


def test_phases_other_than_one_or_three_are_refused() -> None:
    with pytest.raises(MeterConfigError, match="P1_PHASES must be 3 or 1"):
        MeterSource(phases=2)


# Each phase's other input: none, its power, its delivered power (with a returned one), or its power
# with its voltage.
PHASE_INPUTS = ("none", "power", "delivered", "power+voltage")


def _mixed_source(inputs: tuple[str, str, str], total: bool) -> MeterSource:
    def on(kind: str) -> list[str | None]:
        return [f"m/{kind}_l{p + 1}" if kind in inputs[p].split("+") else None for p in range(3)]
    return MeterSource.from_settings(
        topics=[f"m/current_l{p + 1}" for p in range(3)], power_topics=on("power"), delivered_topics=on("delivered"),
        returned_topics=[f"m/returned_l{p + 1}" if inputs[p] == "delivered" else None for p in range(3)],
        voltage_topics=on("voltage"), total_power_topic="m/total" if total else None, power_unit="W")


def _valid_mixes() -> list[tuple[tuple[str, str, str], bool]]:
    out = []
    for a in PHASE_INPUTS:
        for b in PHASE_INPUTS:
            for c in PHASE_INPUTS:
                for total in (False, True):
                    try:
                        _mixed_source((a, b, c), total)
                    except MeterConfigError:
                        continue  # a configuration the settings refuse cannot be announced
                    out.append(((a, b, c), total))
    return out


VALID_MIXES = _valid_mixes()


def test_the_mixes_of_meter_inputs_cover_every_case() -> None:
    assert {i for (inputs, _) in VALID_MIXES for i in inputs} == set(PHASE_INPUTS)
    assert {total for _, total in VALID_MIXES} == {False, True}


@pytest.mark.parametrize("inputs, total", VALID_MIXES)
def test_gives_power_says_exactly_which_power_topics_a_configuration_fills(inputs, total) -> None:
    # Home Assistant is told of a meter power sensor only when the configuration can fill it: what
    # `gives_power` says must be what the meter's readings then carry, for every mix of inputs.
    source = _mixed_source(inputs, total)
    state = MeterState(source, fuse_a=25, stale_after_s=30)
    values = {"current": "5", "power": "1100", "delivered": "1200", "returned": "100", "voltage": "231",
              "total": "900"}
    total_seen = None
    for t in source.subscriptions():
        update = state.on_message(t, values[t.split("/")[1].split("_")[0]], False, 1.0)
        total_seen = update.total_power_w if update.total_power_w is not None else total_seen
    carried = [state.phase_value(p).power_w is not None for p in range(3)]
    assert carried == [source.gives_power(p) for p in range(3)]
    assert (total_seen is not None) == source.gives_power(None) == total
