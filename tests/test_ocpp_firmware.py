"""Chargers on OCPP 1.6J firmware behind the Charge Amps cloud, and on Charge Amps' own protocol
(CAPI): the simulator's firmware choice, the statuses of both sets read by one table, and the
bridge's pause when the cloud refuses mode Off during a session.

Where the shapes come from (hass-chargeamps, the Home Assistant integration for Charge Amps):
- https://github.com/kirei/hass-chargeamps/issues/59 (a maintainer, after the move to OCPP): "you can not disable a port while there is an
  ongoing charging session. You must first stop the session";
- https://github.com/kirei/hass-chargeamps/issues/75 (owners after the firmware update of 2025-03): `400, message='Bad Request'` on
  `PUT /api/v5/chargepoints/<id>/connectors/1/settings` with mode Off;
- https://github.com/kirei/hass-chargeamps/issues/44: on OCPP, remote stop works only with the RFID lock on (remote start/stop "when RFID
  lock is enabled");
- its client.py: `ChargePoint.ocpp_version`, connector statuses as free strings, measurements
  nullable; const.py: STATUS_OCPP_MAP (Available, Preparing, Charging, SuspendedEVSE, SuspendedEV,
  Finishing, Reserved, Unavailable, Faulted, Unknown) and STATUS_CAPI_MAP (Available, Charging,
  Connected, Error, Unknown).
The v5 document (bridge/eapi/swagger_v5.json) puts `ocppVersion` on ChargePoint and keeps
ConnectorStatus.status a free string; the error body is HttpErrorResponse {error, messageCode}.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests
from jsonschema import Draft7Validator

from bridge.eapi.models import CONNECTOR_STATUSES, ConnectorStatus, status_meaning, statuses_of
from bridge.eapi.schema import component_schema
from bridge.sim.cloud import FIRMWARES, MODE_OFF_IN_SESSION, CloudSimulator
from tests.e2e import (
    FAULT_FAST, InProcessBridge, Probe, bridge_env, feed_meter, topic, wait_online, wait_until,
)
from tests.test_service_components import build, connected

API = "/api/v5"


def session(sim: CloudSimulator) -> requests.Session:
    r = requests.post(f"{sim.url}{API}/auth/login", headers={"apiKey": sim.api_key},
                      json={"email": sim.email, "password": sim.password}, timeout=5)
    assert r.status_code == 200, r.text
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {r.json()['token']}"
    return s


def status_of(sim: CloudSimulator, http: requests.Session, cid: int = 1) -> dict:
    r = http.get(f"{sim.url}{API}/chargepoints/{sim.chargepoint_id}/status", timeout=5)
    assert r.status_code == 200
    return next(c for c in r.json()["connectorStatuses"] if c["connectorId"] == cid)


def put_settings(sim: CloudSimulator, http: requests.Session, **changes) -> requests.Response:
    base = f"{sim.url}{API}/chargepoints/{sim.chargepoint_id}/connectors/1/settings"
    body = http.get(base, timeout=5).json()
    body.pop("installationCurrent")  # view-only
    return http.put(base, json={**body, **changes}, timeout=5)


@pytest.fixture(params=FIRMWARES)
def firmware(request) -> str:
    return request.param


@pytest.fixture
def ocpp():
    with CloudSimulator(firmware="ocpp") as sim:
        car = sim.connector(1)
        car.car_plugged, car.car_max_a = True, 16
        yield sim


# ---- the simulator ------------------------------------------------------------------------

def test_ocpp_is_the_default_and_the_charge_point_carries_its_ocpp_version(firmware):
    with CloudSimulator() as default:
        assert default.charge_points[default.chargepoint_id].firmware == "ocpp"
    with CloudSimulator(firmware=firmware) as sim:
        owned = session(sim).get(f"{sim.url}{API}/chargepoints/owned", timeout=5).json()
        errors = list(Draft7Validator(component_schema("ChargePoint")).iter_errors(owned[0]))
        assert not errors, [e.message for e in errors]
        assert owned[0]["ocppVersion"] == ("1.6" if firmware == "ocpp" else None)


def test_every_status_comes_from_the_firmwares_own_set(firmware):
    """A walk through a session on each firmware: every status reported is of that firmware's set,
    and each of them is read the same way (plugged in, current flowing) by the one table."""
    with CloudSimulator(firmware=firmware) as sim:
        http, car = session(sim), sim.connector(1)
        seen = []

        def look(plugged, delivering_flag):
            name = status_of(sim, http)["status"]
            seen.append(name)
            meaning = status_meaning(name)
            assert name in statuses_of(firmware), (firmware, name)
            assert (meaning.car_plugged, meaning.delivering) == (plugged, delivering_flag), name
            return name

        look(False, False)                        # no car
        car.car_plugged = True
        look(True, None)                          # charging
        car.draw_override = lambda offered, now: (0, 0, 0)
        look(True, False)                         # the car takes nothing
        car.draw_override = None
        assert put_settings(sim, http, maxCurrent=0).status_code == 200
        look(True, False)                         # paused by 0 A
        assert put_settings(sim, http, maxCurrent=16).status_code == 200
        car.faulted = True
        look(None, False)                         # the charger's fault
        car.faulted = False
        car.rfid_lock = True
        assert http.put(f"{sim.url}{API}/chargepoints/{sim.chargepoint_id}/connectors/1/remotestop",
                        json={}, timeout=5).status_code == 200
        look(True, False)                         # stopped, the car still plugged in
        car.car_plugged = False
        car.car_plugged = True
        look(True, None if firmware == "capi" else False)  # OCPP: waits for an RFID start
        expected = {"ocpp": ["Available", "Charging", "SuspendedEV", "SuspendedEVSE", "Faulted", "Finishing",
                             "Preparing"],
                    "capi": ["Available", "Charging", "Connected", "Connected", "Error", "Connected", "Charging"]}
        assert seen == expected[firmware]


def test_ocpp_refuses_mode_off_during_a_session_with_400(ocpp):
    http = session(ocpp)
    r = put_settings(ocpp, http, mode="Off")
    assert r.status_code == 400 and r.json()["error"] == MODE_OFF_IN_SESSION
    errors = list(Draft7Validator(component_schema("HttpErrorResponse")).iter_errors(r.json()))
    assert not errors
    assert ocpp.connector(1).mode == "On" and status_of(ocpp, http)["status"] == "Charging"
    # maxCurrent 0 pauses without ending the session; a raise goes on in the same session.
    started = status_of(ocpp, http)["sessionId"]
    assert put_settings(ocpp, http, maxCurrent=0).status_code == 200
    paused = status_of(ocpp, http)
    assert paused["status"] == "SuspendedEVSE" and paused["sessionId"] == started and paused["measurements"] is None
    assert put_settings(ocpp, http, mode="Off").status_code == 400  # a paused session is a session
    assert put_settings(ocpp, http, maxCurrent=10).status_code == 200
    assert status_of(ocpp, http)["sessionId"] == started
    # Without a car there is no session: mode Off is taken.
    ocpp.connector(1).car_plugged = False
    assert put_settings(ocpp, http, mode="Off").status_code == 200 and ocpp.connector(1).mode == "Off"


def test_capi_takes_mode_off_during_a_session():
    with CloudSimulator(firmware="capi") as sim:
        sim.connector(1).car_plugged = True
        http = session(sim)
        assert put_settings(sim, http, mode="Off").status_code == 200
        assert status_of(sim, http)["status"] == "Connected"


def test_ocpp_remote_stop_needs_the_rfid_lock(ocpp):
    http = session(ocpp)
    url = f"{ocpp.url}{API}/chargepoints/{ocpp.chargepoint_id}/connectors/1"
    assert http.put(f"{url}/remotestop", json={}, timeout=5).status_code == 400
    assert status_of(ocpp, http)["status"] == "Charging"
    assert put_settings(ocpp, http, rfidLock=True).status_code == 200
    assert http.put(f"{url}/remotestop", json={}, timeout=5).status_code == 200
    assert status_of(ocpp, http)["status"] == "Finishing"
    assert http.put(f"{url}/remotestart", json={}, timeout=5).status_code == 200
    assert status_of(ocpp, http)["status"] == "Charging"


# ---- one table for both status sets ----------------------------------------------------------

def test_both_sets_are_in_the_one_table():
    assert statuses_of("ocpp") == {"Available", "Preparing", "Charging", "SuspendedEVSE", "SuspendedEV",
                                   "Finishing", "Reserved", "Unavailable", "Faulted", "Unknown"}
    assert statuses_of("capi") == {"Available", "Connected", "Charging", "Error", "Unknown"}
    assert set(CONNECTOR_STATUSES) == statuses_of("ocpp") | statuses_of("capi")


@pytest.mark.parametrize("status, plugged, currents", [
    ("SuspendedEV", True, (0.0, 0.0, 0.0)),   # plugged in, taking nothing
    ("Preparing", True, (0.0, 0.0, 0.0)),     # plugged in, not charging yet
    ("Connected", True, (0.0, 0.0, 0.0)),
    ("Finishing", True, (0.0, 0.0, 0.0)),
    ("Available", False, (0.0, 0.0, 0.0)),
    ("Faulted", None, (0.0, 0.0, 0.0)),
    ("Error", None, (0.0, 0.0, 0.0)),
    ("Charging", True, None),                 # how much is for the measurements to say
])
def test_plug_state_and_no_draw_from_either_set(status, plugged, currents):
    # A status as the cloud sends it: measurements null when nothing is measured (client.py).
    conn = ConnectorStatus.model_validate({"chargePointId": "cp", "connectorId": 1, "status": status,
                                           "measurements": None, "totalConsumptionKwh": 0.0})
    assert conn.car_plugged() is plugged and conn.phase_currents() == currents


@pytest.mark.parametrize("situation", ["no car", "takes nothing", "waits"])
def test_the_link_reads_online_and_no_draw_from_either_set(firmware, situation, tmp_path):
    """What the bridge publishes (charger/<cp>/online, the status) and tells the balancer (the car
    draws nothing) from a poll, on either firmware."""
    with CloudSimulator(firmware=firmware) as sim:
        car = sim.connector(1)
        if situation == "waits":
            car.rfid_lock = True  # OCPP: Preparing until a remote start; CAPI: it just charges
        if situation != "no car":
            car.car_plugged = True
        if situation == "takes nothing":
            car.draw_override = lambda offered, now: (0, 0, 0)
        p = connected(build(sim, tmp_path / "state"))
        view = p.link.view
        assert view.online is True and view.ocpp_version == ("1.6" if firmware == "ocpp" else None)
        assert view.status in statuses_of(firmware)
        meaning = status_meaning(view.status)
        assert meaning.car_plugged is (situation != "no car")
        charging = firmware == "capi" and situation == "waits"
        currents = p.balancer.observations().charger_currents
        assert currents == ((16.0, 16.0, 16.0) if charging else (0.0, 0.0, 0.0)), view.status


# ---- the bridge's pause on a charger that refuses mode Off ---------------------------------

def mode_off_puts(sim: CloudSimulator) -> int:
    return sum(1 for r in sim.requests_to("/connectors/1/settings", "PUT") if (r.body or {}).get("mode") == "Off")


def test_a_refused_mode_off_pauses_by_zero_amps_once_said_and_kept(ocpp, tmp_path, caplog):
    p = connected(build(ocpp, tmp_path / "state", chargeamps_pause_method="mode"))
    car = ocpp.connector(1)
    with caplog.at_level(logging.WARNING, logger="bridge.service.charger_link"):
        assert p.link.write_current(p.clock(), 0, "pause")
        assert car.mode == "On" and car.max_current == 0
        assert CloudSimulator._offered(ocpp.charge_points[ocpp.chargepoint_id], car) == 0  # the car takes nothing
        assert p.link.expected == 0 and p.link.view.mode == "On" and p.link.pause_error is None
        said = p.health.pause_fallback[p.link.key]
        assert "refuses mode Off" in said and "OCPP 1.6" in said and "0 A" in said and MODE_OFF_IN_SESSION in said
        # Resumed and paused again: straight by 0 A, nothing said again.
        assert p.link.write_current(p.clock(), 10, "resume") and car.max_current == 10 and car.mode == "On"
        assert p.link.write_current(p.clock(), 0, "pause") and car.max_current == 0
    assert mode_off_puts(ocpp) == 1
    assert sum("refuses mode Off" in r.getMessage() for r in caplog.records) == 1
    # The read-back of 0 A is the bridge's own pause, not a change made outside it.
    p.clock.now = p.link.next_poll
    p.link.tick(p.clock())
    assert p.health.charger_overrides == 0 and p.health.cloud == "ok"


def test_a_pause_that_cannot_be_made_is_an_error_paced_by_the_backoff(ocpp, tmp_path):
    p = connected(build(ocpp, tmp_path / "state", chargeamps_pause_method="mode"))
    # Every settings write refused: mode Off (a session) and 0 A as well.
    ocpp.fail_next(1000, 400, path_contains="/connectors/1/settings", method="PUT", message="refused")
    assert not p.link.write_current(p.clock(), 0, "pause")
    assert p.link.pause_error is not None and "pause not made" in p.link.pause_error
    assert "HTTP 400" in p.health.last_error and p.health.cloud == "error"
    puts = len(ocpp.requests_to("/connectors/1/settings", "PUT"))
    assert puts == 2  # mode Off, then 0 A: one attempt each
    # No retry before the backoff says so.
    decision = p.balancer.decide(p.clock())
    for _ in range(5):
        p.link.apply(p.clock(), type(decision)(**{**decision.__dict__, "command": 0}), enabled=True)
    assert len(ocpp.requests_to("/connectors/1/settings", "PUT")) == puts
    ocpp.clear_faults()
    p.clock.now = p.link.backoff.retry_at
    assert p.link.write_current(p.clock(), 0, "pause") and ocpp.connector(1).max_current == 0
    assert p.link.pause_error is None


class House:
    """A live P1 meter at `amps` on every phase, every 0.5 s (the meter goes stale after 3 s)."""

    def __init__(self, probe: Probe, env: dict, amps: float) -> None:
        self.probe, self.env, self.amps = probe, env, amps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def set(self, amps: float) -> float:
        self.amps = amps
        feed_meter(self.probe, self.env, amps, amps, amps)
        return time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            feed_meter(self.probe, self.env, self.amps, self.amps, self.amps)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.slow
def test_the_running_bridge_pauses_an_ocpp_charger_by_zero_amps_and_says_why(broker, tmp_path):
    with CloudSimulator(firmware="ocpp") as sim:
        car = sim.connector(1)
        car.car_plugged, car.car_max_a = True, 16
        env = bridge_env(broker, sim, tmp_path / "state", **FAULT_FAST, BALANCER_STRATEGY="homey",
                         BALANCER_DEFAULT_CURRENT="12", BALANCER_MIN_PAUSE_S="0", BALANCER_RESTORE_INTERVAL_S="1",
                         CHARGEAMPS_PAUSE_METHOD="mode")
        probe = Probe(broker.host, broker.port, subscribe=f"{env['MQTT_BASE_TOPIC']}/#")
        bridge = InProcessBridge(env, tmp_path).start()
        house = House(probe, env, 5)
        try:
            wait_online(probe, env, bridge)
            wait_until(lambda: car.max_current == 12, 15, "charging at 12 A")
            t = house.set(40)  # over MaxA by more than the car's 12 A: a pause
            wait_until(lambda: car.max_current == 0, 15, "paused by 0 A")
            assert car.mode == "On"
            health = probe.wait_json(topic(env, "bridge/health"),
                                     lambda h: f"{sim.chargepoint_id}:1" in h["pause_fallback"], since=t)
            assert "0 A" in health["pause_fallback"][f"{sim.chargepoint_id}:1"]
            # Every settings write refused from now on: the next pause cannot be made.
            house.set(5)
            wait_until(lambda: car.max_current == 12, 15, "charging again")
            sim.fail_next(1000, 400, path_contains="/connectors/1/settings", method="PUT", message="refused")
            t = house.set(40)
            state = probe.wait_json(topic(env, "balancer/state"), lambda s: "pause not made" in s["reason"], since=t)
            assert "HTTP 400" in state["reason"] and state["charge_at"] == 0
            probe.wait_json(topic(env, "bridge/health"), lambda h: "HTTP 400" in (h["last_error"] or ""), since=t)
            assert bridge.output().count("refuses mode Off") == 1
        finally:
            house.stop()
            bridge.close()
            probe.close()
