"""Every body the client sends validates against swagger_v5.json; the validator itself is right."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from pydantic import SecretStr

from bridge.eapi import ConnectorSettings, EapiClient, SchemaError, match_path, validate_request
from bridge.eapi.models import ChargePointSettings
from bridge.eapi.schema import component_schema, load_document, request_schema
from bridge.sim.cloud import CloudSimulator

CONNECTOR_SETTINGS = "/api/v5/chargepoints/{chargePointId}/connectors/{connectorId}/settings"
CHARGEPOINT_SETTINGS = "/api/v5/chargepoints/{chargePointId}/settings"


def test_every_body_the_client_sends_validates():
    with CloudSimulator() as sim:
        client = EapiClient(sim.url, sim.email, SecretStr(sim.password), SecretStr(sim.api_key), None,
                            backoff_factor=0.01)
        cp = sim.chargepoint_id
        client.login()
        client.owned_chargepoints()
        client.chargepoint(cp)
        client.status(cp)
        client.set_current(cp, 1, 10)
        client.set_current(cp, 1, 0)
        client.set_current(cp, 1, 12, level="chargepoint")
        for mode in ("Off", "Schedule", "On"):
            client.set_mode(cp, 1, mode)
        client.put_chargepoint_settings(client.chargepoint_settings(cp).model_copy(update={"dimmer": "High"}))
        client.put_connector_settings(client.connector_settings(cp, 2).model_copy(update={"cable_lock": True}))
        client.remote_start(cp, 1)
        client.remote_start(cp, 1, rfid="0A0B0C0D0E0F10")
        sim.connector(1).rfid_lock = True  # remote stop on OCPP firmware needs it
        client.remote_stop(cp, 1)
        client.reboot(cp)
        sim.expire_tokens()
        client.status(cp)  # 401 -> refresh body

        assert sim.requests and all(r.valid for r in sim.requests), [r.error for r in sim.requests if not r.valid]
        sent = {(r.method, match_path(r.path)) for r in sim.requests if r.body is not None}
        assert sent == {
            ("POST", "/api/v5/auth/login"),
            ("POST", "/api/v5/auth/refreshtoken"),
            ("PUT", CONNECTOR_SETTINGS),
            ("PUT", CHARGEPOINT_SETTINGS),
            ("PUT", "/api/v5/chargepoints/{chargePointId}/connectors/{connectorId}/remotestart"),
            ("PUT", "/api/v5/chargepoints/{chargePointId}/connectors/{connectorId}/remotestop"),
            ("PUT", "/api/v5/chargepoints/{chargePointId}/reboot"),
        }
        for r in sim.requests:
            if r.body is not None:
                assert "installationCurrent" not in r.body
                validate_request(r.method, r.path, r.body)  # independently of the simulator's flag


def good_connector_body() -> dict:
    return {"chargePointId": "2003141234567", "connectorId": 1, "maxCurrent": 10.0,
            "rfidLock": False, "mode": "On", "cableLock": False}


@pytest.mark.parametrize("change", [
    {"installationCurrent": 16},
    {"colour": "red"},
    {"mode": "Turbo"},
    {"connectorId": "one"},
    {"rfidLock": None},
])
def test_invalid_connector_bodies_rejected(change):
    body = {**good_connector_body(), **change}
    with pytest.raises(SchemaError) as excinfo:
        validate_request("PUT", "/api/v5/chargepoints/2003141234567/connectors/1/settings", body)
    assert next(iter(change)) in str(excinfo.value) or "unexpected" in str(excinfo.value)


def test_nullable_fields_accept_null():
    body = {**good_connector_body(), "maxCurrent": None, "chargePointId": None}
    validate_request("PUT", "/api/v5/chargepoints/x/connectors/1/settings", body)
    validate_request("PUT", "/api/v5/chargepoints/x/settings", {"id": "x", "downLight": None, "maxCurrent": None})


def test_chargepoint_settings_reject_installation_current():
    with pytest.raises(SchemaError):
        validate_request("PUT", "/api/v5/chargepoints/x/settings", {"id": "x", "maxCurrent": 10, "installationCurrent": 16})


def test_required_body_missing_and_body_where_none_is_allowed():
    with pytest.raises(SchemaError):
        validate_request("PUT", "/api/v5/chargepoints/x/settings", None)
    validate_request("PUT", "/api/v5/chargepoints/x/reboot", {})
    validate_request("PUT", "/api/v5/chargepoints/x/reboot", None)
    with pytest.raises(SchemaError):
        validate_request("PUT", "/api/v5/chargepoints/x/reboot", {"now": True})


def test_unknown_path_or_method_rejected():
    with pytest.raises(SchemaError):
        validate_request("GET", "/api/v5/nothing/here", None)
    with pytest.raises(SchemaError):
        validate_request("DELETE", "/api/v5/chargepoints/x/settings", None)


@pytest.mark.parametrize("path,template", [
    ("/api/v5/chargepoints/owned", "/api/v5/chargepoints/owned"),
    ("/api/v5/chargepoints/2003141234567", "/api/v5/chargepoints/{chargePointId}"),
    ("/api/v5/chargepoints/2003141234567?expand=settings", "/api/v5/chargepoints/{chargePointId}"),
    ("/api/v5/chargepoints/callbacks/enable", "/api/v5/chargepoints/callbacks/enable"),
    ("/api/v5/chargepoints/abc/connectors/2/settings", CONNECTOR_SETTINGS),
    ("/api/v5/chargepoints/abc/", "/api/v5/chargepoints/{chargePointId}"),
    ("/api/v5/chargepoints", None),
    ("/api/v4/chargepoints/owned", None),
])
def test_match_path(path, template):
    assert match_path(path) == template


def test_allof_merge_unites_properties_and_closes_the_union():
    base = component_schema("ConnectorSettings")
    create = request_schema("PUT", CONNECTOR_SETTINGS)
    assert create["properties"] == base["properties"]
    assert create["additionalProperties"] is False
    view = component_schema("ViewConnectorSettings")
    assert set(view["properties"]) == set(base["properties"]) | {"installationCurrent"}
    assert view["additionalProperties"] is False
    Draft7Validator(view).validate({**good_connector_body(), "installationCurrent": 16})


def test_unmerged_allof_would_reject_every_body():
    """Why the merge exists: strict allOf applies each member alone."""
    doc = load_document()
    raw = copy.deepcopy(doc["components"]["schemas"]["CreateConnectorSettings"])
    raw["allOf"][0] = component_schema("ConnectorSettings")
    assert list(Draft7Validator(raw).iter_errors(good_connector_body()))
    validate_request("PUT", "/api/v5/chargepoints/x/connectors/1/settings", good_connector_body())


@settings(max_examples=60, deadline=None)
@given(
    max_current=st.one_of(st.none(), st.floats(min_value=0, max_value=32)),
    rfid_lock=st.one_of(st.none(), st.booleans()),
    cable_lock=st.one_of(st.none(), st.booleans()),
    mode=st.one_of(st.none(), st.sampled_from(["On", "Off", "Schedule"])),
    installation=st.one_of(st.none(), st.integers(min_value=6, max_value=32)),
)
def test_model_write_bodies_always_validate(max_current, rfid_lock, cable_lock, mode, installation):
    settings_ = ConnectorSettings(charge_point_id="cp", connector_id=1, max_current=max_current,
                                  rfid_lock=rfid_lock, cable_lock=cable_lock, mode=mode,
                                  installation_current=installation)
    validate_request("PUT", "/api/v5/chargepoints/cp/connectors/1/settings", settings_.to_request())
    cp_settings = ChargePointSettings(id="cp", max_current=max_current, down_light=rfid_lock,
                                      installation_current=installation)
    validate_request("PUT", "/api/v5/chargepoints/cp/settings", cp_settings.to_request())
