"""The charging profiles the bridge sends (pure), checked against OCPP 1.6's own schema and
against how a charger stacks them."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from ocpp.messages import Call, validate_payload

from bridge.ocpp.central import meter_reading
from bridge.ocpp.profiles import (
    CONTROL_METHODS,
    TX_DEFAULT_ON_CHARGE_POINT,
    TX_DEFAULT_ON_CONNECTOR,
    TX_PROFILE,
    InstalledProfile,
    composite_limit,
    failsafe_profile,
    limit_profile,
    target_connector,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def installed(method, connector, profile, tx=None):
    return InstalledProfile.from_wire(target_connector(method, connector), profile)


@pytest.mark.parametrize("method", CONTROL_METHODS)
def test_every_profile_is_a_valid_set_charging_profile(method):
    tx = 7 if method == TX_PROFILE else None
    for profile in (limit_profile(method, 1, 10, NOW, 120, tx), failsafe_profile(method, 1, 6, NOW, tx)):
        payload = {"connectorId": target_connector(method, 1), "csChargingProfiles": profile}
        # The `ocpp` library's OCPP 1.6 JSON schema for SetChargingProfile.req.
        asyncio.run(validate_payload(Call("1", "SetChargingProfile", json.loads(json.dumps(payload))), "1.6"))


@given(amps=st.integers(0, 32), ttl=st.integers(10, 3600), failsafe=st.sampled_from([0, 6, 8]),
       at=st.floats(0, 7200), method=st.sampled_from(CONTROL_METHODS))
def test_the_limit_holds_for_the_ttl_then_the_failsafe(amps, ttl, failsafe, at, method):
    tx = 3 if method == TX_PROFILE else None
    profiles = [installed(method, 1, failsafe_profile(method, 1, failsafe, NOW, tx)),
                installed(method, 1, limit_profile(method, 1, amps, NOW, ttl, tx))]
    now = NOW + timedelta(seconds=at)
    limit = composite_limit(profiles, 1, now, tx)
    assert limit == (amps if at < ttl else failsafe)


def test_a_connector_default_overrides_connector_0_and_a_tx_profile_overrides_both():
    on_zero = InstalledProfile.from_wire(0, failsafe_profile(TX_DEFAULT_ON_CHARGE_POINT, 1, 6, NOW))
    on_one = InstalledProfile.from_wire(1, limit_profile(TX_DEFAULT_ON_CONNECTOR, 1, 10, NOW, 60))
    tx = InstalledProfile.from_wire(1, limit_profile(TX_PROFILE, 1, 13, NOW, 60, transaction_id=5))
    assert composite_limit([on_zero], 1, NOW) == 6
    assert composite_limit([on_zero, on_one], 1, NOW) == 10
    assert composite_limit([on_zero, on_one, tx], 1, NOW, transaction_id=5) == 13
    assert composite_limit([on_zero, on_one, tx], 1, NOW, transaction_id=6) == 10  # another transaction's
    assert composite_limit([on_zero, on_one], 2, NOW) == 6


def test_charge_point_max_caps_everything():
    cap = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile",
           "chargingProfileKind": "Absolute",
           "chargingSchedule": {"startSchedule": "2026-05-01T00:00:00Z", "chargingRateUnit": "W",
                                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5520}]}}
    high = InstalledProfile.from_wire(1, limit_profile(TX_DEFAULT_ON_CONNECTOR, 1, 16, NOW, 60))
    assert composite_limit([InstalledProfile.from_wire(0, cap), high], 1, NOW) == pytest.approx(8)


@given(skew=st.floats(-25, 25))
def test_a_charger_clock_a_little_off_still_sees_the_limit_at_once(skew):
    assume(skew != 0)
    p = InstalledProfile.from_wire(1, limit_profile(TX_DEFAULT_ON_CONNECTOR, 1, 9, NOW, 60))
    assert p.limit_at(NOW + timedelta(seconds=skew), None) == 9


def test_a_tx_profile_needs_the_transaction():
    with pytest.raises(ValueError):
        limit_profile(TX_PROFILE, 1, 10, NOW, 60, None)


def test_meter_values_as_chargers_send_them():
    # Shapes from OCPP 1.6 section 7.43 (SampledValue), as the `ocpp` library hands them (snake_case):
    # phases as "L1" or "L1-N", power in kW, energy without measurand (the default register).
    values = [{"timestamp": "2026-05-01T12:00:00Z", "sampled_value": [
        {"value": "15.9", "measurand": "Current.Import", "phase": "L1-N", "unit": "A"},
        {"value": "16.1", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
        {"value": "0.2", "measurand": "Current.Import", "phase": "L3", "unit": "A"},
        {"value": "3.71", "measurand": "Power.Active.Import", "unit": "kW"},
        {"value": "12.5", "unit": "kWh"},
        {"value": "junk", "measurand": "Voltage", "phase": "L1"},
    ]}]
    r = meter_reading("CP1", 1, values)
    assert r.currents == (15.9, 16.1, 0.2)
    assert r.power_w == pytest.approx(3710) and r.energy_wh == pytest.approx(12500)
    assert meter_reading("CP1", 1, [{"timestamp": "x", "sampled_value": [{"value": "x"}]}]) is None
