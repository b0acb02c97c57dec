"""The meter's energy registers (bridge/mqtt/meter.py EnergyRegisters), in the shapes the sources send."""

from __future__ import annotations

import json

import pytest

from bridge.config import Settings
from bridge.mqtt.meter import EXPORT, IMPORT, EnergyRegisters, MeterConfigError
from bridge.mqtt.payloads import PayloadError


def test_dsmr_reader_sums_its_two_tariffs_once_both_are_read():
    # dsmr-reader's split topics, one kWh number each (Home Assistant's dsmr_reader definitions:
    # `dsmr/reading/electricity_delivered_1` ... `_returned_2`, unit kWh).
    r = EnergyRegisters.from_settings("dsmr-reader")
    assert r.on_message("dsmr/reading/electricity_delivered_1", b"1234.567")
    assert r.total_kwh(IMPORT) is None  # tariff 2 not read yet
    r.on_message("dsmr/reading/electricity_delivered_2", b"2000.001")
    assert r.total_kwh(IMPORT) == pytest.approx(3234.568)
    r.on_message("dsmr/reading/electricity_returned_1", b"10.5")
    r.on_message("dsmr/reading/electricity_returned_2", b"0.25")
    assert r.total_kwh(EXPORT) == pytest.approx(10.75)
    assert not r.on_message("dsmr/reading/electricity_delivered_1", b"1234.567")  # unchanged


def test_homewizard_v1_json_and_its_other_fields():
    # HomeWizard local API v1 `/api/v1/data`, re-published on MQTT: the totals beside the powers.
    r = EnergyRegisters.from_settings("homewizard", "p1")
    payload = json.dumps({"wifi_strength": 78, "total_power_import_kwh": 13779.338,
                          "total_power_import_t1_kwh": 10830.511, "total_power_import_t2_kwh": 2948.827,
                          "total_power_export_kwh": 1234.5, "active_power_w": -543})
    assert r.on_message("homewizard/p1", payload)
    assert (r.total_kwh(IMPORT), r.total_kwh(EXPORT)) == (pytest.approx(13779.338), pytest.approx(1234.5))
    assert not r.on_message("homewizard/p1", json.dumps({"active_power_w": 12}))  # no totals: not an error


def test_shelly_pro_3em_emdata_in_wh_and_tasmota_sml_in_kwh():
    # Shelly Pro 3EM (triphase) EMData status: `total_act` / `total_act_ret` in Wh.
    shelly = EnergyRegisters.from_settings("shelly-pro-3em", "shellypro3em-abc")
    shelly.on_message("shellypro3em-abc/status/emdata:0",
                      json.dumps({"id": 0, "a_total_act_energy": 1000.0, "total_act": 2996.6, "total_act_ret": 1.29}))
    assert shelly.total_kwh(IMPORT) == pytest.approx(2.9966)
    # A Tasmota SML script's SENSOR message with the `Total_in` / `Total_out` names.
    tasmota = EnergyRegisters.from_settings("tasmota-sml")
    tasmota.on_message("tele/tasmota/SENSOR", json.dumps(
        {"Time": "2027-01-12T16:00:00", "SML": {"Total_in": 3521.1234, "Total_out": 12.0, "Power_curr": 640}}))
    assert tasmota.total_kwh(EXPORT) == pytest.approx(12.0)


def test_explicit_topics_win_and_bad_values_are_refused():
    r = EnergyRegisters.from_settings("dsmr-reader", import_topic="meter/import", import_path="e.in", unit="Wh")
    assert [f.topic for f in r.fields if f.direction == IMPORT] == ["meter/import"]
    assert [f.topic for f in r.fields if f.direction == EXPORT] == [
        "dsmr/reading/electricity_returned_1", "dsmr/reading/electricity_returned_2"]
    r.on_message("meter/import", json.dumps({"e": {"in": 1500}}))
    assert r.total_kwh(IMPORT) == 1.5
    for bad in (b"-3", b"nan", b"lots", json.dumps({"e": {"in": "x"}}).encode()):
        with pytest.raises(PayloadError):
            r.on_message("meter/import", bad)
    assert r.total_kwh(IMPORT) == 1.5  # nothing changed


def test_register_settings_are_checked_at_start():
    with pytest.raises(ValueError, match="P1_ENERGY_UNIT must be kWh or Wh"):
        Settings(_env_file=None, p1_energy_import_topic="a/b", p1_energy_unit="MWh")
    with pytest.raises(ValueError, match="P1_ENERGY_EXPORT_JSON_PATH is set but P1_ENERGY_EXPORT_TOPIC is not"):
        Settings(_env_file=None, p1_energy_export_json_path="x")
    with pytest.raises(ValueError, match="P1_ENERGY_IMPORT_TOPIC must be one topic without wildcards"):
        Settings(_env_file=None, p1_energy_import_topic="p1/#")


# ---- a Belgian meter's own demand figures (MeterDemand) ---------------------------------------


def test_homewizard_v1_and_v2_demand_and_month_peak_with_its_time():
    from datetime import datetime

    from bridge.mqtt.meter import DEMAND, MONTH_PEAK, MeterDemand

    # https://api-documentation.homewizard.com/docs/v1/measurement: `active_power_average_w`,
    # `montly_power_peak_w` (sic) and `montly_power_peak_timestamp` (YYMMDDhhmmss), in W.
    v1 = MeterDemand.from_settings("homewizard", "p1")
    assert v1.on_message("homewizard/p1", json.dumps({"active_power_w": -543, "active_power_average_w": 123.000,
                                                      "montly_power_peak_w": 1111.000,
                                                      "montly_power_peak_timestamp": 230101080010}))
    assert v1.value(DEMAND).kw == pytest.approx(0.123)
    assert v1.value(MONTH_PEAK) == (pytest.approx(1.111), datetime(2023, 1, 1, 8, 0, 10))
    assert not v1.on_message("homewizard/p1", json.dumps({"active_power_w": 12}))  # none of them: not an error
    # .../docs/v2/measurement: `average_power_15m_w`, `monthly_power_peak_w`, ISO `monthly_power_peak_timestamp`.
    v2 = MeterDemand.from_settings("homewizard-v2", "p1")
    v2.on_message("homewizard/p1", json.dumps({"average_power_15m_w": 1180.0, "monthly_power_peak_w": 4400.0,
                                               "monthly_power_peak_timestamp": "2024-06-28T14:12:34"}))
    assert v2.value(MONTH_PEAK) == (pytest.approx(4.4), datetime(2024, 6, 28, 14, 12, 34))


def test_esphome_dsmr_demand_in_kw_and_explicit_settings():
    from datetime import datetime

    from bridge.mqtt.meter import DEMAND, MONTH_PEAK, MeterDemand

    # ESPHome dsmr `active_energy_import_current_average_demand` / `..._maximum_demand_running_month`
    # in kW, under the SlimmeLezer's Belgian names (zuidwijk/dsmr slimmelezer-be.yaml).
    esphome = MeterDemand.from_settings("esphome-dsmr", "slimmelezer")
    esphome.on_message("slimmelezer/sensor/peak_current_average_quarterly_demand/state", b"1.263")
    esphome.on_message("slimmelezer/sensor/peak_month_maximum_quarterly_demand/state", b"4.404")
    assert esphome.value(DEMAND).kw == 1.263 and esphome.value(MONTH_PEAK) == (4.404, None)
    # A Tasmota SML script's own keys, in W, with the peak's time as DSMR writes it (`S`: summer time).
    tasmota = MeterDemand.from_settings("tasmota-sml", demand_topic="tele/t/SENSOR", demand_path="SML.Demand",
                                        peak_topic="tele/t/SENSOR", peak_path="SML.Peak",
                                        peak_time_path="SML.Peak_at", unit="W")
    tasmota.on_message("tele/t/SENSOR", json.dumps({"SML": {"Demand": 1263, "Peak": 4404, "Peak_at": "240404111500S"}}))
    assert tasmota.value(MONTH_PEAK) == (pytest.approx(4.404), datetime(2024, 4, 4, 11, 15))
    # Bad values are refused and change nothing, the good figure beside them included.
    for bad in ({"SML": {"Demand": -5, "Peak": 1}}, {"SML": {"Demand": 1, "Peak": 2, "Peak_at": "yesterday"}},
                {"SML": {"Demand": "lots"}}):
        with pytest.raises(PayloadError):
            tasmota.on_message("tele/t/SENSOR", json.dumps(bad))
    assert tasmota.value(DEMAND).kw == pytest.approx(1.263) and tasmota.value(MONTH_PEAK).kw == pytest.approx(4.404)


def test_demand_settings_are_checked_at_start():
    with pytest.raises(ValueError, match="P1_DEMAND_UNIT must be kW or W"):
        Settings(_env_file=None, p1_demand_topic="a/b", p1_demand_unit="MW")
    with pytest.raises(ValueError, match="P1_MONTH_PEAK_JSON_PATH is set but P1_MONTH_PEAK_TOPIC is not"):
        Settings(_env_file=None, p1_month_peak_json_path="x")
    with pytest.raises(ValueError, match="P1_DEMAND_TOPIC must be one topic without wildcards"):
        Settings(_env_file=None, p1_demand_topic="p1/+")
    with pytest.raises(ValueError, match="P1_MONTH_PEAK_TIME_JSON_PATH needs P1_MONTH_PEAK_JSON_PATH"):
        Settings(_env_file=None, p1_month_peak_topic="p1/peak", p1_month_peak_time_json_path="at")
