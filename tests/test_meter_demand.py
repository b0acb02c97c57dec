"""A Belgian meter's own demand figures through the real broker into the running service: the
running quarter-hour's average (OBIS 1-0:1.4.0) becomes the capacity guard's period, the month's
peak (1-0:1.6.0) the allowance under CAPACITY_FOLLOW_MONTH_PEAK. The service runs in this process
so that its wall clock can be set to the month the payloads' timestamps are in.

Each test says where its payload shape comes from."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.e2e import MovableWall, Probe, topic, wait_online, wait_until

pytestmark = pytest.mark.slow

BRUSSELS = ZoneInfo("Europe/Brussels")
WALL = MovableWall(datetime(2023, 1, 12, 17, 5, tzinfo=BRUSSELS))
BRIDGE_IN_PROCESS = lambda: {"wall_clock": WALL}  # noqa: E731 - the fixture calls it for each bridge
# Each test names its meter preset, not P1_TOPIC_L1..L3. A Flemish capacity tariff: quarter-hours.
BRIDGE_DEFAULTS = {
    "P1_TOPIC_L1": "", "P1_TOPIC_L2": "", "P1_TOPIC_L3": "",
    "TZ": "Europe/Brussels",
    "CAPACITY_PERIOD_MIN": "15",
    "BALANCER_STALE_AFTER_S": "5",
    "HA_DISCOVERY": "false",
}


@pytest.fixture
def base() -> str:
    return f"ca-demand-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def probe(broker, base):
    p = Probe(broker.host, broker.port, subscribe=f"{base}/#")
    yield p
    p.close()


def capacity_state(probe: Probe, env: dict, feed, predicate, what: str) -> dict:
    """The first `capacity/state` (published every 10 s) that `predicate` accepts, the meter fed meanwhile."""
    found: dict = {}

    def ok() -> bool:
        feed()
        raw = probe.latest.get(topic(env, "capacity/state"))
        state = json.loads(raw) if raw else {}
        found.update(state)
        return bool(state) and predicate(state)

    wait_until(ok, 40, what, step=0.5)
    return found


# HomeWizard P1 local API v1 `/api/v1/data`, the 3-phase example of
# https://api-documentation.homewizard.com/docs/v1/measurement verbatim (its wifi and gas fields
# left out), re-published on MQTT as the homewizard preset reads it: `active_power_average_w`,
# `montly_power_peak_w` (HomeWizard's spelling) and `montly_power_peak_timestamp` (YYMMDDhhmmss).
HOMEWIZARD_V1 = {
    "smr_version": 50, "meter_model": "ISKRA  2M550T-101", "unique_id": "00112233445566778899AABBCCDDEEFF",
    "active_tariff": 2, "total_power_import_kwh": 13779.338, "total_power_import_t1_kwh": 10830.511,
    "total_power_import_t2_kwh": 2948.827, "total_power_export_kwh": 0, "active_power_w": -543,
    "active_power_l1_w": -676, "active_power_l2_w": 133, "active_power_l3_w": 0, "active_current_l1_a": -4,
    "active_current_l2_a": 2, "active_current_l3_a": 0, "any_power_fail_count": 4, "long_power_fail_count": 5,
    "active_power_average_w": 123.000, "montly_power_peak_w": 1111.000, "montly_power_peak_timestamp": 230101080010,
}


def test_homewizard_v1_the_meter_s_quarter_hour_and_month_peak(start_bridge, probe, base, tmp_path):
    """Started 5 minutes into a quarter, the house exporting: the period is the meter's own 0.123 kW
    (not guessed for the minutes not seen), and the month's 1.111 kW peak (registered on 1 January
    2023, this month) is the allowance, above the 1 kW limit."""
    device = f"hw-{uuid.uuid4().hex[:6]}"
    WALL.move_to(datetime(2023, 1, 12, 17, 5, tzinfo=BRUSSELS))
    bridge, env = start_bridge(state_dir=tmp_path / "state", MQTT_BASE_TOPIC=base, P1_PRESET="homewizard",
                               P1_DEVICE=device, CAPACITY_LIMIT_KW="1")
    wait_online(probe, env, bridge)
    payload = dict(HOMEWIZARD_V1)
    feed = lambda: probe.publish(f"homewizard/{device}", json.dumps(payload))  # noqa: E731 - every second or so
    state = capacity_state(probe, env, feed, lambda s: s.get("period_kw") == 0.123, "the meter's 0.123 kW")
    assert state["period_estimated_s"] == 0 and state["period_start"].startswith("2023-01-12T17:00")
    assert state["meter_month_peak_kw"] == 1.111 and state["allowed_kw"] == 1.111, state
    # The period follows the meter's figure as it changes.
    payload["active_power_average_w"] = 456.0
    capacity_state(probe, env, feed, lambda s: s.get("period_kw") == 0.456, "the meter's 0.456 kW")


def test_homewizard_v2_a_peak_of_the_month_before_is_not_this_month_s(start_bridge, probe, base, tmp_path):
    """HomeWizard local API v2 `/api/measurement` (https://api-documentation.homewizard.com/docs/v2/measurement):
    `average_power_15m_w`, `monthly_power_peak_w` and its ISO `monthly_power_peak_timestamp`. On
    1 February the meter still shows January's peak: not February's, the limit holds."""
    device = f"hw2-{uuid.uuid4().hex[:6]}"
    WALL.move_to(datetime(2023, 2, 1, 0, 5, tzinfo=BRUSSELS))
    bridge, env = start_bridge(state_dir=tmp_path / "state", MQTT_BASE_TOPIC=base, P1_PRESET="homewizard-v2",
                               P1_DEVICE=device, CAPACITY_LIMIT_KW="2.5")
    wait_online(probe, env, bridge)
    payload = {"protocol_version": 50, "energy_import_kwh": 13779.338, "power_w": 1200, "power_l1_w": 400,
               "power_l2_w": 400, "power_l3_w": 400, "current_l1_a": 1.7, "current_l2_a": 1.7, "current_l3_a": 1.7,
               "average_power_15m_w": 1180.0, "monthly_power_peak_w": 4400.0,
               "monthly_power_peak_timestamp": "2023-01-19T18:15:00"}
    feed = lambda: probe.publish(f"homewizard/{device}", json.dumps(payload))  # noqa: E731
    state = capacity_state(probe, env, feed, lambda s: s.get("period_kw") == 1.18, "the meter's 1.18 kW")
    assert state["allowed_kw"] == 2.5 and "meter_month_peak_kw" not in state, state
    payload["monthly_power_peak_w"], payload["monthly_power_peak_timestamp"] = 3200.0, "2023-02-01T00:00:00"
    capacity_state(probe, env, feed, lambda s: s.get("allowed_kw") == 3.2, "February's own 3.2 kW peak")


def test_esphome_dsmr_demand_in_kw_and_a_peak_without_its_time(start_bridge, probe, base, tmp_path):
    """ESPHome's dsmr sensors `active_energy_import_current_average_demand` and
    `active_energy_import_maximum_demand_running_month` (kW) under the SlimmeLezer's Belgian names
    (zuidwijk/dsmr slimmelezer-be.yaml: "Peak Current Average Quarterly Demand", "Peak Month Maximum
    Quarterly Demand"), the values of a Fluvius telegram (`1-0:1.4.0(01.263*kW)`,
    `1-0:1.6.0(240404111500S)(04.404*kW)`). The peak comes without its time: it counts once the
    meter changed it."""
    node = f"sl-{uuid.uuid4().hex[:6]}"
    WALL.move_to(datetime(2024, 4, 12, 17, 5, tzinfo=BRUSSELS))
    bridge, env = start_bridge(state_dir=tmp_path / "state", MQTT_BASE_TOPIC=base, P1_PRESET="esphome-dsmr",
                               P1_DEVICE=node, CAPACITY_LIMIT_KW="2.5")
    wait_online(probe, env, bridge)
    peak = {"kw": "4.404"}

    def feed() -> None:
        for n in (1, 2, 3):
            probe.publish(f"{node}/sensor/current_phase_{n}/state", "2")
        probe.publish(f"{node}/sensor/peak_current_average_quarterly_demand/state", "1.263")
        probe.publish(f"{node}/sensor/peak_month_maximum_quarterly_demand/state", peak["kw"])

    state = capacity_state(probe, env, feed, lambda s: s.get("period_kw") == 1.263, "the meter's 1.263 kW")
    assert state["period_estimated_s"] == 0 and state["allowed_kw"] == 2.5, state
    peak["kw"] = "4.512"
    capacity_state(probe, env, feed, lambda s: s.get("allowed_kw") == 4.512, "the meter's new month peak")
