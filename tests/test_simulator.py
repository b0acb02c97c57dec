"""CloudSimulator on its own: raw HTTP, as any v5 client would see it."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from jsonschema import Draft7Validator

from bridge.eapi.models import status_meaning
from bridge.eapi.schema import component_schema
from bridge.sim.cloud import CloudSimulator, main

API = "/api/v5"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sim():
    with CloudSimulator() as s:
        yield s


def login(sim: CloudSimulator) -> dict:
    r = requests.post(f"{sim.url}{API}/auth/login", headers={"apiKey": sim.api_key},
                      json={"email": sim.email, "password": sim.password}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def get(sim: CloudSimulator, path: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{sim.url}{API}{path}", headers=headers, timeout=5)


def put(sim: CloudSimulator, path: str, token: str, body) -> requests.Response:
    return requests.put(f"{sim.url}{API}{path}", headers={"Authorization": f"Bearer {token}"},
                        json=body, timeout=5)


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def assert_conforms(schema_name: str, data) -> None:
    errors = list(Draft7Validator(component_schema(schema_name)).iter_errors(data))
    assert not errors, [e.message for e in errors]


# -- auth ----------------------------------------------------------------------

@pytest.mark.parametrize("api_key,password", [("wrong", None), (None, "wrong"), ("", None)])
def test_login_needs_api_key_and_credentials(sim, api_key, password):
    r = requests.post(f"{sim.url}{API}/auth/login",
                      headers={"apiKey": sim.api_key if api_key is None else api_key},
                      json={"email": sim.email, "password": sim.password if password is None else password},
                      timeout=5)
    assert r.status_code == 401
    assert sim.logins == 0


def test_login_answer_follows_the_document_and_jwt_has_exp():
    clock = FakeClock()
    with CloudSimulator(token_ttl_s=300, clock=clock) as sim:
        data = login(sim)
        assert_conforms("LoginResponse", data)
        assert claims(data["token"])["exp"] == pytest.approx(clock.now + 300)
        assert sim.logins == 1


def test_bearer_required_and_checked(sim):
    token = login(sim)["token"]
    assert get(sim, "/chargepoints/owned", None).status_code == 401
    assert get(sim, "/chargepoints/owned", "garbage").status_code == 401
    header, payload, _sig = token.split(".")
    assert get(sim, "/chargepoints/owned", f"{header}.{payload}.forged").status_code == 401
    assert get(sim, "/chargepoints/owned", token).status_code == 200


def test_token_expires_after_ttl():
    clock = FakeClock()
    with CloudSimulator(token_ttl_s=60, clock=clock) as sim:
        token = login(sim)["token"]
        clock.now += 59
        assert get(sim, "/chargepoints/owned", token).status_code == 200
        clock.now += 2
        assert get(sim, "/chargepoints/owned", token).status_code == 401


def test_refresh_tokens_are_single_use(sim):
    data = login(sim)
    body = {"token": data["token"], "refreshToken": data["refreshToken"]}
    first = requests.post(f"{sim.url}{API}/auth/refreshtoken", json=body, timeout=5)
    assert first.status_code == 200
    assert_conforms("TokenRefresh", first.json())
    again = requests.post(f"{sim.url}{API}/auth/refreshtoken", json=body, timeout=5)
    assert again.status_code == 400
    assert set(again.json()) == {"error", "messageCode"}
    assert get(sim, "/chargepoints/owned", data["token"]).status_code == 401  # replaced
    assert get(sim, "/chargepoints/owned", first.json()["token"]).status_code == 200
    assert sim.refreshes == 1


def test_refresh_needs_the_matching_token(sim):
    a, b = login(sim), login(sim)
    r = requests.post(f"{sim.url}{API}/auth/refreshtoken",
                      json={"token": b["token"], "refreshToken": a["refreshToken"]}, timeout=5)
    assert r.status_code == 400


def test_expire_revoke_invalidate(sim):
    data = login(sim)
    sim.expire_tokens()
    assert get(sim, "/chargepoints/owned", data["token"]).status_code == 401
    sim.revoke_credentials()
    r = requests.post(f"{sim.url}{API}/auth/refreshtoken",
                      json={"token": data["token"], "refreshToken": data["refreshToken"]}, timeout=5)
    assert r.status_code == 400
    r = requests.post(f"{sim.url}{API}/auth/login", headers={"apiKey": sim.api_key},
                      json={"email": sim.email, "password": sim.password}, timeout=5)
    assert r.status_code == 401


def test_invalidated_refresh_token_refused(sim):
    data = login(sim)
    sim.invalidate_refresh_tokens()
    r = requests.post(f"{sim.url}{API}/auth/refreshtoken",
                      json={"token": data["token"], "refreshToken": data["refreshToken"]}, timeout=5)
    assert r.status_code == 400


def test_at_most_ten_sessions(sim):
    first = login(sim)
    for _ in range(10):
        login(sim)
    r = requests.post(f"{sim.url}{API}/auth/refreshtoken",
                      json={"token": first["token"], "refreshToken": first["refreshToken"]}, timeout=5)
    assert r.status_code == 400


# -- resources -------------------------------------------------------------------

def test_owned_chargepoint_and_settings_follow_the_document(sim):
    token = login(sim)["token"]
    owned = get(sim, "/chargepoints/owned", token).json()
    assert [cp["id"] for cp in owned] == ["2003141234567"]
    for cp in owned:
        assert_conforms("ChargePoint", cp)
    cp_id = owned[0]["id"]
    expanded = get(sim, f"/chargepoints/{cp_id}?expand=settings", token).json()
    assert_conforms("ChargePoint", expanded)
    assert expanded["settings"]["maxCurrent"] == 16
    cps = get(sim, f"/chargepoints/{cp_id}/settings", token).json()
    assert_conforms("ViewChargePointSettings", cps)
    assert cps["installationCurrent"] == 16
    cs = get(sim, f"/chargepoints/{cp_id}/connectors/1/settings", token).json()
    assert_conforms("ViewConnectorSettings", cs)
    status = get(sim, f"/chargepoints/{cp_id}/status", token).json()
    assert_conforms("ChargePointStatus", status)


def test_unknown_ids_are_404(sim):
    token = login(sim)["token"]
    assert get(sim, "/chargepoints/nope/status", token).status_code == 404
    assert get(sim, f"/chargepoints/{sim.chargepoint_id}/connectors/9/settings", token).status_code == 404
    assert get(sim, "/chargepoints/nope/settings", token).status_code == 404


def test_settings_put_validation(sim):
    token = login(sim)["token"]
    path = f"/chargepoints/{sim.chargepoint_id}/connectors/1/settings"
    good = {"chargePointId": sim.chargepoint_id, "connectorId": 1, "maxCurrent": 10,
            "rfidLock": False, "mode": "On", "cableLock": False}
    assert put(sim, path, token, {**good, "installationCurrent": 16}).status_code == 400
    assert put(sim, path, token, {**good, "colour": "red"}).status_code == 400
    assert put(sim, path, token, {**good, "maxCurrent": 17}).status_code == 400
    assert put(sim, path, token, {**good, "mode": "Turbo"}).status_code == 400
    assert put(sim, path, token, {**good, "connectorId": 2}).status_code == 400
    r = requests.put(f"{sim.url}{API}{path}", headers={"Authorization": f"Bearer {token}",
                                                       "Content-Type": "application/json"},
                     data=b"{not json", timeout=5)
    assert r.status_code == 400
    assert sim.connector(1).max_current == 16  # nothing applied
    invalid = [r for r in sim.requests if r.method == "PUT" and not r.valid]
    assert len(invalid) == 4 and all(r.error for r in invalid)
    assert put(sim, path, token, good).status_code == 200
    assert sim.connector(1).max_current == 10
    cp_path = f"/chargepoints/{sim.chargepoint_id}/settings"
    assert put(sim, cp_path, token, {"id": sim.chargepoint_id, "maxCurrent": 20}).status_code == 400
    assert put(sim, cp_path, token, {"id": sim.chargepoint_id, "maxCurrent": 12}).status_code == 200
    assert sim.charge_points[sim.chargepoint_id].max_current == 12


def test_installation_current_is_configurable():
    with CloudSimulator(installation_current=32) as sim:
        token = login(sim)["token"]
        r = put(sim, f"/chargepoints/{sim.chargepoint_id}/settings", token, {"maxCurrent": 25})
        assert r.status_code == 200


def test_writes_recorded_with_monotonic_time(sim):
    token = login(sim)["token"]
    before = time.monotonic()
    put(sim, f"/chargepoints/{sim.chargepoint_id}/connectors/1/settings", token,
        {"connectorId": 1, "maxCurrent": 8})
    t, cp_id, cid, name, value = sim.writes[-1]
    assert before <= t <= time.monotonic()
    assert (cp_id, cid, name, value) == (sim.chargepoint_id, 1, "maxCurrent", 8.0)


# -- charger model -------------------------------------------------------------------

def connector_status(sim: CloudSimulator, token: str, cid: int = 1) -> dict:
    status = get(sim, f"/chargepoints/{sim.chargepoint_id}/status", token).json()
    return next(c for c in status["connectorStatuses"] if c["connectorId"] == cid)


def currents(cs: dict) -> tuple | None:
    if cs["measurements"] is None:
        return None
    return tuple(m["current"] for m in cs["measurements"])


def test_car_draws_the_minimum_of_its_limit_and_the_settings(sim):
    token = login(sim)["token"]
    conn = sim.connector(1)
    assert connector_status(sim, token)["status"] == "Available"
    assert currents(connector_status(sim, token)) is None
    conn.car_plugged = True
    conn.car_max_a = 16
    conn.max_current = 10
    cs = connector_status(sim, token)
    assert cs["status"] == "Charging" and currents(cs) == (10, 10, 10)
    assert cs["sessionType"] == "ThreePhase"
    assert cs["chargingPowerKw"] == pytest.approx(3 * 10 * 230 / 1000)
    sim.charge_points[sim.chargepoint_id].max_current = 8
    assert currents(connector_status(sim, token)) == (8, 8, 8)
    conn.max_current = 5  # below 6 A: no charging
    cs = connector_status(sim, token)
    meaning = status_meaning(cs["status"])  # CAPI Connected, OCPP SuspendedEVSE
    assert meaning.car_plugged and meaning.delivering is False and currents(cs) is None
    conn.max_current = 16
    conn.mode = "Off"
    assert currents(connector_status(sim, token)) is None


def test_one_phase_car(sim):
    token = login(sim)["token"]
    conn = sim.connector(1)
    conn.car_plugged, conn.car_phases, conn.car_max_a = True, "L3", 12
    cs = connector_status(sim, token)
    assert currents(cs) == (0, 0, 12) and cs["sessionType"] == "OnePhase"


def test_energy_integrates_over_time_and_resets_per_session(sim):
    token = login(sim)["token"]
    conn = sim.connector(1)
    conn.car_plugged = True
    first = connector_status(sim, token)["totalConsumptionKwh"]
    time.sleep(0.3)
    second = connector_status(sim, token)["totalConsumptionKwh"]
    expected = 3 * 16 * 230 / 1000 * 0.3 / 3600
    assert second - first == pytest.approx(expected, rel=0.5)
    conn.car_plugged = False
    conn.car_plugged = True
    assert connector_status(sim, token)["totalConsumptionKwh"] < second


def test_remote_stop_and_start(sim):
    sim.charge_points[sim.chargepoint_id].firmware = "capi"  # OCPP firmware: tests/test_ocpp_firmware.py
    token = login(sim)["token"]
    sim.connector(1).car_plugged = True
    base = f"/chargepoints/{sim.chargepoint_id}/connectors/1"
    assert put(sim, f"{base}/remotestop", token, {}).status_code == 200
    assert currents(connector_status(sim, token)) is None
    assert put(sim, f"{base}/remotestart", token, {}).status_code == 200
    assert currents(connector_status(sim, token)) == (16, 16, 16)
    assert put(sim, f"/chargepoints/{sim.chargepoint_id}/reboot", token, {}).status_code == 200


def test_draw_override_drives_measurements(sim):
    token = login(sim)["token"]
    conn = sim.connector(1)
    conn.car_plugged = True
    conn.max_current = 10
    seen = []

    def lagging(offered_a: float, now: float):
        seen.append(offered_a)
        return (offered_a / 2, 1.0, 0.0)

    conn.draw_override = lagging
    assert currents(connector_status(sim, token)) == (5, 1, 0)
    assert seen[-1] == 10


def test_ocpp_chargepoint_reports_ocpp_status():
    with CloudSimulator() as sim:
        cp = sim.add_chargepoint("OCPP-1", 16, firmware="ocpp")
        cp.connectors[1].car_plugged = True
        cp.connectors[1].mode = "Off"
        token = login(sim)["token"]
        status = get(sim, "/chargepoints/OCPP-1/status", token).json()
        assert status["connectorStatuses"][0]["status"] == "SuspendedEVSE"


# -- faults and recording ----------------------------------------------------------

def test_fail_next_with_path_filter_and_retry_after(sim):
    token = login(sim)["token"]
    sim.fail_next(2, status=429, retry_after=7, path_contains="/status")
    assert get(sim, "/chargepoints/owned", token).status_code == 200
    r = get(sim, f"/chargepoints/{sim.chargepoint_id}/status", token)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert get(sim, f"/chargepoints/{sim.chargepoint_id}/status", token).status_code == 429
    assert get(sim, f"/chargepoints/{sim.chargepoint_id}/status", token).status_code == 200


def test_down_closes_without_answer(sim):
    sim.down = True
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.url}{API}/chargepoints/owned", timeout=5)
    assert sim.requests[-1].status is None


def test_latency(sim):
    sim.latency_s = 0.2
    started = time.monotonic()
    requests.get(f"{sim.url}{API}/chargepoints/owned", timeout=5)
    assert time.monotonic() - started >= 0.2


def test_requests_recorded_without_secrets(sim):
    data = login(sim)
    requests.post(f"{sim.url}{API}/auth/refreshtoken",
                  json={"token": data["token"], "refreshToken": data["refreshToken"]}, timeout=5)
    shown = repr(sim.requests)
    for secret in (sim.password, sim.api_key, data["token"], data["refreshToken"]):
        assert secret not in shown
    assert [r.path for r in sim.requests] == [f"{API}/auth/login", f"{API}/auth/refreshtoken"]
    assert all(r.valid for r in sim.requests)


def test_start_stop_frees_the_port():
    sim = CloudSimulator().start()
    url = sim.url
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}{API}/chargepoints/owned", timeout=2)


@pytest.mark.parametrize("argv", [["--port", "-1"], ["--token-ttl", "0"], ["--installation-current", "40"]])
def test_main_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2


def test_serve_prints_the_demo_account_and_stops(capsys):
    import threading

    from bridge.sim.cloud import serve

    stop = threading.Event()
    thread = threading.Thread(target=serve, kwargs={"sim": CloudSimulator(port=0), "stop": stop}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    out = ""
    while "CHARGEAMPS_API_KEY" not in out and time.monotonic() < deadline:
        time.sleep(0.05)
        out += capsys.readouterr().out
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    url = next(line.split("=", 1)[1] for line in out.splitlines() if "CHARGEAMPS_BASE_URL=" in line)
    assert url.startswith("http://127.0.0.1:")
    assert "CHARGEAMPS_EMAIL=" in out and "CHARGEAMPS_PASSWORD=" in out
