"""EapiClient against the in-process CloudSimulator."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import time

import pytest
from pydantic import SecretStr

from bridge.eapi import (
    ApiError,
    AuthError,
    CloudUnavailable,
    EapiClient,
    RateLimited,
    TokenSet,
    TokenStore,
)
from bridge.sim.cloud import CloudSimulator


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def sim():
    with CloudSimulator() as s:
        yield s


def make_client(sim: CloudSimulator, store: TokenStore | None = None, **kwargs) -> EapiClient:
    kwargs.setdefault("timeout", 3.0)
    kwargs.setdefault("backoff_factor", 0.01)
    return EapiClient(sim.url, sim.email, SecretStr(sim.password), SecretStr(sim.api_key), store, **kwargs)


def count(sim: CloudSimulator, path_contains: str, method: str | None = None) -> int:
    return len(sim.requests_to(path_contains, method))


# -- login and tokens ----------------------------------------------------------

def test_login_returns_owned_chargepoints(sim):
    client = make_client(sim)
    cps = client.login()
    assert [cp.id for cp in cps] == [sim.chargepoint_id]
    assert [(c.connector_id, c.type) for c in cps[0].connectors] == [(1, "Charger"), (2, "Schuko")]
    assert sim.logins == 1 and client.login_count == 1


def test_login_always_logs_in_even_with_a_valid_token(sim):
    client = make_client(sim)
    client.login()
    client.login()
    assert sim.logins == 2


def test_tokens_persisted_0600_and_reused_after_restart(sim, tmp_path):
    store = TokenStore(tmp_path / "state" / "tokens.json")
    first = make_client(sim, store)
    first.status(sim.chargepoint_id)
    assert sim.logins == 1
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600
    assert not [p for p in store.path.parent.iterdir() if p.name != "tokens.json"], "temp file left behind"

    second = make_client(sim, TokenStore(store.path))
    second.status(sim.chargepoint_id)
    assert second.login_count == 0
    assert sim.logins == 1


def test_token_store_ignores_another_account_or_server(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    store.save(TokenSet(token="a.b.c", refresh_token="r", base_url="http://h:1/", email="me@x.org"))
    assert store.load("http://h:1", "ME@x.org") is not None
    assert store.load("http://h:1", "other@x.org") is None
    assert store.load("http://other:1", "me@x.org") is None


def test_corrupt_token_file_is_logged_and_login_used(sim, tmp_path, caplog):
    path = tmp_path / "tokens.json"
    path.write_text("{ not json")
    client = make_client(sim, TokenStore(path))
    with caplog.at_level(logging.WARNING):
        client.status(sim.chargepoint_id)
    assert "corrupt token file" in caplog.text
    assert sim.logins == 1
    assert json.loads(path.read_text())["email"] == sim.email  # replaced by a good one


def test_refresh_shortly_before_expiry_without_401():
    clock = FakeClock()
    with CloudSimulator(token_ttl_s=7200, clock=clock) as sim:
        client = make_client(sim, clock=clock)
        client.status(sim.chargepoint_id)
        clock.advance(7200 - 30)  # inside the 60 s margin
        client.status(sim.chargepoint_id)
        assert sim.refreshes == 1 and sim.logins == 1
        assert all(r.status != 401 for r in sim.requests)
        clock.advance(100)  # the refreshed token lives on
        client.status(sim.chargepoint_id)
        assert sim.refreshes == 1


def test_expired_token_refreshed_before_the_call_even_after_restart(tmp_path):
    clock = FakeClock()
    with CloudSimulator(token_ttl_s=7200, clock=clock) as sim:
        store = TokenStore(tmp_path / "t.json")
        make_client(sim, store, clock=clock).status(sim.chargepoint_id)
        clock.advance(8000)
        restarted = make_client(sim, TokenStore(store.path), clock=clock)
        restarted.status(sim.chargepoint_id)
        assert sim.logins == 1 and sim.refreshes == 1
        assert restarted.refresh_count == 1 and restarted.login_count == 0


def test_401_refreshes_once_and_retries(sim):
    client = make_client(sim)
    client.status(sim.chargepoint_id)
    sim.expire_tokens()
    status = client.status(sim.chargepoint_id)
    assert status.id == sim.chargepoint_id
    assert sim.refreshes == 1 and sim.logins == 1
    statuses = [r.status for r in sim.requests_to("/status")]
    assert statuses == [200, 401, 200]


def test_refresh_refused_leads_to_exactly_one_login(sim):
    client = make_client(sim)
    client.status(sim.chargepoint_id)
    sim.expire_tokens()
    sim.invalidate_refresh_tokens()
    client.status(sim.chargepoint_id)
    assert client.refresh_count == 1
    assert sim.refreshes == 0
    assert sim.logins == 2


def test_login_refused_raises_auth_error_without_storm(sim):
    client = make_client(sim)
    client.status(sim.chargepoint_id)
    sim.expire_tokens()
    sim.revoke_credentials()
    with pytest.raises(AuthError) as excinfo:
        client.status(sim.chargepoint_id)
    assert "CHARGEAMPS_PASSWORD" in str(excinfo.value)
    assert count(sim, "/auth/login") == 2  # the first good one and one refused
    with pytest.raises(AuthError):
        client.status(sim.chargepoint_id)
    assert count(sim, "/auth/login") == 2  # cool-down: no new attempt right away


def test_wrong_api_key_is_auth_error(sim):
    client = EapiClient(sim.url, sim.email, SecretStr(sim.password), SecretStr("wrong"), None)
    with pytest.raises(AuthError):
        client.owned_chargepoints()
    assert count(sim, "/auth/login") == 1


# -- retries and errors ----------------------------------------------------------

def test_5xx_retried_then_ok(sim):
    client = make_client(sim)
    client.status(sim.chargepoint_id)
    sim.fail_next(2, status=503, path_contains="/status")
    assert client.status(sim.chargepoint_id).id == sim.chargepoint_id
    assert [r.status for r in sim.requests_to("/status")] == [200, 503, 503, 200]


@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_forever_is_api_error_after_retries(sim, status):
    client = make_client(sim, retries=2)
    client.status(sim.chargepoint_id)
    sim.fail_next(100, status=status, path_contains="/status")
    with pytest.raises(ApiError) as excinfo:
        client.status(sim.chargepoint_id)
    assert excinfo.value.status == status
    assert count(sim, "/status") == 1 + 3


def test_put_is_retried_on_5xx(sim):
    client = make_client(sim)
    sim.fail_next(1, status=502, path_contains="/reboot")
    client.reboot(sim.chargepoint_id)
    assert [r.status for r in sim.requests_to("/reboot")] == [502, 200]


def test_login_post_is_not_retried_on_5xx(sim):
    client = make_client(sim)
    sim.fail_next(5, status=503, path_contains="/auth/login")
    with pytest.raises(ApiError) as excinfo:
        client.owned_chargepoints()
    assert excinfo.value.status == 503
    assert count(sim, "/auth/login") == 1


def test_refresh_outage_does_not_log_in(sim):
    client = make_client(sim)
    client.status(sim.chargepoint_id)
    sim.expire_tokens()
    sim.fail_next(1, status=503, path_contains="/auth/refreshtoken")
    with pytest.raises(ApiError):
        client.status(sim.chargepoint_id)
    assert sim.logins == 1  # a cloud outage is no reason to burn a session


def test_connection_refused_is_cloud_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = EapiClient(f"http://127.0.0.1:{port}", "a@b.c", SecretStr("pw-secret-1"),
                        SecretStr("key-secret-1"), None, timeout=1.0, backoff_factor=0.01)
    with pytest.raises(CloudUnavailable) as excinfo:
        client.owned_chargepoints()
    assert "pw-secret-1" not in str(excinfo.value) and "key-secret-1" not in str(excinfo.value)


def test_dropped_connection_is_retried_then_cloud_unavailable(sim):
    client = make_client(sim, retries=2)
    client.status(sim.chargepoint_id)
    sim.down = True
    with pytest.raises(CloudUnavailable):
        client.status(sim.chargepoint_id)
    assert count(sim, "/status") == 1 + 3
    sim.down = False
    assert client.status(sim.chargepoint_id).id == sim.chargepoint_id


def test_timeout_is_cloud_unavailable(sim):
    client = make_client(sim, timeout=0.2, retries=0)
    client.login()
    sim.latency_s = 0.6
    started = time.monotonic()
    with pytest.raises(CloudUnavailable) as excinfo:
        client.status(sim.chargepoint_id)
    assert time.monotonic() - started < 0.6
    assert "timed out" in str(excinfo.value)


def test_429_with_short_retry_after_is_waited(sim):
    client = make_client(sim, max_retry_after_s=5)
    client.login()
    sim.fail_next(1, status=429, retry_after=1, path_contains="/status")
    started = time.monotonic()
    client.status(sim.chargepoint_id)
    assert time.monotonic() - started >= 0.9
    assert [r.status for r in sim.requests_to("/status")] == [429, 200]


def test_429_with_long_retry_after_raises_rate_limited(sim):
    client = make_client(sim, max_retry_after_s=5)
    client.login()
    sim.fail_next(3, status=429, retry_after=120, path_contains="/status")
    started = time.monotonic()
    with pytest.raises(RateLimited) as excinfo:
        client.status(sim.chargepoint_id)
    assert excinfo.value.retry_after_s == 120
    assert time.monotonic() - started < 2
    assert count(sim, "/status") == 1


@pytest.mark.parametrize("status", [400, 403, 404, 409])
def test_other_4xx_not_retried(sim, status):
    client = make_client(sim)
    client.login()
    sim.fail_next(5, status=status, path_contains="/status")
    with pytest.raises(ApiError) as excinfo:
        client.status(sim.chargepoint_id)
    assert excinfo.value.status == status
    assert count(sim, "/status") == 1


def test_unknown_chargepoint_is_404_with_hint(sim):
    client = make_client(sim)
    with pytest.raises(ApiError) as excinfo:
        client.status("0000000000000")
    assert excinfo.value.status == 404
    assert "CHARGEAMPS_CHARGEPOINT_ID" in str(excinfo.value)


# -- settings ---------------------------------------------------------------------

def test_set_current_is_read_modify_write_of_connector_settings(sim):
    conn = sim.connector(1)
    conn.rfid_lock = True
    conn.mode = "Schedule"
    client = make_client(sim)
    applied = client.set_current(sim.chargepoint_id, 1, 10)
    assert applied == 10.0
    assert conn.max_current == 10.0
    puts = sim.requests_to("/connectors/1/settings", "PUT")
    assert len(puts) == 1
    body = puts[0].body
    assert "installationCurrent" not in body
    assert body == {"chargePointId": sim.chargepoint_id, "connectorId": 1, "maxCurrent": 10.0,
                    "rfidLock": True, "mode": "Schedule", "cableLock": False}
    assert conn.mode == "Schedule" and conn.rfid_lock is True
    # read, write, read back
    assert [r.method for r in sim.requests_to("/connectors/1/settings")] == ["GET", "PUT", "GET"]
    assert [w[3:] for w in sim.writes if w[3] == "maxCurrent"] == [("maxCurrent", 10.0)]


def test_set_current_zero_pauses(sim):
    client = make_client(sim)
    assert client.set_current(sim.chargepoint_id, 1, 0) == 0.0


def test_set_current_at_chargepoint_level(sim):
    client = make_client(sim)
    before = sim.connector(1).max_current
    applied = client.set_current(sim.chargepoint_id, 1, 8, level="chargepoint")
    assert applied == 8.0
    cp = sim.charge_points[sim.chargepoint_id]
    assert cp.max_current == 8.0 and sim.connector(1).max_current == before
    puts = sim.requests_to(f"/chargepoints/{sim.chargepoint_id}/settings", "PUT")
    assert len(puts) == 1 and "installationCurrent" not in puts[0].body
    assert puts[0].body["maxCurrent"] == 8.0 and puts[0].body["id"] == sim.chargepoint_id


@pytest.mark.parametrize("amps", [5, 1, -1, 33, 7.5, True, "10", None])
def test_set_current_rejects_bad_values_before_any_request(sim, amps):
    client = make_client(sim)
    with pytest.raises(ValueError) as excinfo:
        client.set_current(sim.chargepoint_id, 1, amps)
    assert "A" in str(excinfo.value) or "amps" in str(excinfo.value)
    assert sim.requests == []


@pytest.mark.parametrize("level", ["connector", "chargepoint"])
def test_set_current_above_installation_current_rejected_before_write(sim, level):
    client = make_client(sim)
    with pytest.raises(ValueError) as excinfo:
        client.set_current(sim.chargepoint_id, 1, 20, level=level)
    assert "16 A" in str(excinfo.value)
    assert not [r for r in sim.requests if r.method == "PUT"]


def test_set_current_up_to_configured_installation_current():
    with CloudSimulator(installation_current=32) as sim:
        assert make_client(sim).set_current(sim.chargepoint_id, 1, 32) == 32.0


def test_set_current_rejects_unknown_level(sim):
    with pytest.raises(ValueError):
        make_client(sim).set_current(sim.chargepoint_id, 1, 10, level="house")  # type: ignore[arg-type]


def test_set_mode_and_invalid_mode(sim):
    client = make_client(sim)
    client.set_mode(sim.chargepoint_id, 1, "Off")
    assert sim.connector(1).mode == "Off"
    with pytest.raises(ValueError):
        client.set_mode(sim.chargepoint_id, 1, "Turbo")
    assert len(sim.requests_to("/settings", "PUT")) == 1


def test_remote_stop_start_and_reboot(sim):
    sim.charge_points[sim.chargepoint_id].firmware = "capi"  # OCPP firmware: tests/test_ocpp_firmware.py
    client = make_client(sim)
    conn = sim.connector(1)
    conn.car_plugged = True
    client.remote_stop(sim.chargepoint_id, 1)
    assert client.status(sim.chargepoint_id).connector(1).status == "Connected"
    client.remote_start(sim.chargepoint_id, 1)
    assert client.status(sim.chargepoint_id).connector(1).status == "Charging"
    client.remote_start(sim.chargepoint_id, 1, rfid="0A0B0C0D")
    with pytest.raises(ValueError):
        client.remote_start(sim.chargepoint_id, 1, rfid="xyz")
    client.reboot(sim.chargepoint_id)
    assert sim.charge_points[sim.chargepoint_id].reboots == 1
    assert {r.body == {} for r in sim.requests if r.path.endswith(("/remotestop", "/reboot"))} == {True}


def test_status_measurements_and_settings_models(sim):
    conn = sim.connector(1)
    conn.car_plugged = True
    conn.car_phases = "L2"
    conn.car_max_a = 13
    client = make_client(sim)
    status = client.status(sim.chargepoint_id).connector(1)
    assert status.status == "Charging"
    assert status.phase_currents() == (0.0, 13.0, 0.0)
    assert status.active_phases() == (False, True, False)
    cps = client.chargepoint_settings(sim.chargepoint_id)
    assert cps.installation_current == 16
    cs = client.connector_settings(sim.chargepoint_id, 1)
    assert cs.installation_current == 16 and cs.mode == "On"
    cp = client.chargepoint(sim.chargepoint_id)
    assert cp.settings is not None and cp.connectors[0].settings is not None


# -- secrets -----------------------------------------------------------------------

def test_no_secret_in_logs_repr_or_errors(sim, tmp_path, caplog):
    store = TokenStore(tmp_path / "tokens.json")
    caplog.set_level(logging.DEBUG)
    client = make_client(sim, store)
    client.login()
    sim.expire_tokens()
    client.status(sim.chargepoint_id)  # 401 -> refresh
    saved = json.loads(store.path.read_text())
    secrets = [sim.password, sim.api_key, saved["token"], saved["refresh_token"]]
    tokens = TokenStore(store.path).load(sim.url, sim.email)
    assert tokens is not None
    sim.expire_tokens()
    sim.revoke_credentials()
    errors = []
    for call in (lambda: client.status(sim.chargepoint_id), lambda: client.status(sim.chargepoint_id)):
        try:
            call()
        except AuthError as exc:
            errors.append(exc)
    assert len(errors) == 2
    shown = "\n".join([caplog.text, repr(client), str(client), repr(store), repr(tokens), str(tokens),
                       *(str(e) for e in errors), *(repr(e) for e in errors), repr(sim.requests)])
    for secret in secrets:
        assert secret and secret not in shown


def test_constructor_validates_arguments():
    with pytest.raises(ValueError):
        EapiClient("eapi.charge.space", "a@b.c", "p", "k", None)
    with pytest.raises(ValueError):
        EapiClient("https://eapi.charge.space", "a@b.c", "p", "k", None, timeout=0)


def test_missing_credentials_are_auth_error_without_request(sim):
    client = EapiClient(sim.url, "", None, SecretStr(""), None)
    with pytest.raises(AuthError) as excinfo:
        client.owned_chargepoints()
    message = str(excinfo.value)
    assert "CHARGEAMPS_EMAIL" in message and "CHARGEAMPS_PASSWORD" in message and "CHARGEAMPS_API_KEY" in message
    assert sim.requests == []


def test_token_file_that_is_not_utf8_is_ignored_without_quoting_it(tmp_path, caplog):
    path = tmp_path / "tokens.json"
    path.write_bytes(b'{"token": "\xffsecret\xfe"}')
    with caplog.at_level(logging.WARNING):
        assert TokenStore(path).load("http://h:1", "me@x.org") is None
    assert "corrupt token file" in caplog.text and "not UTF-8" in caplog.text
    assert "secret" not in caplog.text and "0xff" not in caplog.text


# ConnectorStatus as the v5 document defines it (bridge/eapi/swagger_v5.json):
# `measurements` is nullable and the cloud sends it only while a car charges;
# `status` is a free string (own protocol or OCPP 1.6 ChargePointStatus values).
@pytest.mark.parametrize(
    "status, measurements, currents",
    [
        ("Available", None, (0.0, 0.0, 0.0)),
        ("Connected", None, (0.0, 0.0, 0.0)),
        ("SuspendedEV", [], (0.0, 0.0, 0.0)),
        ("SuspendedEVSE", None, (0.0, 0.0, 0.0)),
        ("Faulted", None, (0.0, 0.0, 0.0)),
        ("Charging", None, None),  # charging, but how much is not said
        ("Unknown", None, None),
        (None, None, None),
        ("SomethingNew", None, None),
        ("Charging", [{"phase": "L1", "current": 10.5, "voltage": 230}], (10.5, 0.0, 0.0)),
    ],
)
def test_connector_currents_are_zero_when_the_status_says_nothing_is_delivered(status, measurements, currents):
    from bridge.eapi.models import ConnectorStatus

    conn = ConnectorStatus.model_validate({"connectorId": 1, "status": status, "measurements": measurements})
    assert conn.phase_currents() == currents
    assert conn.active_phases() == (None if currents is None else tuple(c >= 1.0 for c in currents))


# Whether a car is plugged in, from the same free-string `status` (own protocol: Available,
# Connected, Charging; OCPP 1.6 ChargePointStatus values).
@pytest.mark.parametrize(
    "status, plugged",
    [
        ("Available", False), ("Reserved", False),
        ("Connected", True), ("Charging", True), ("Preparing", True), ("SuspendedEV", True),
        ("SuspendedEVSE", True), ("Finishing", True),
        ("Faulted", None), ("Unavailable", None), ("Error", None), ("Unknown", None), (None, None),
        ("SomethingNew", None),
    ],
)
def test_the_status_says_whether_a_car_is_plugged_in(status, plugged):
    from bridge.eapi.models import ConnectorStatus

    assert ConnectorStatus.model_validate({"connectorId": 1, "status": status}).car_plugged() is plugged


def test_an_unplugged_connector_in_the_simulator_reports_zero_currents(sim):
    sim.connector(1).car_plugged = False
    status = make_client(sim).status(sim.chargepoint_id).connector(1)
    assert status.status == "Available" and status.phase_currents() == (0.0, 0.0, 0.0)
