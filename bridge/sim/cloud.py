"""CloudSimulator: the Charge Amps EAPI v5 on loopback, for tests, the demo and benchmarks.

It behaves like the cloud as the v5 document describes it: API key and
credentials for login, expiring JWTs, single-use refresh tokens, 401/400/404
where the document puts them, settings with validation, and a small charger
model for the status measurements. Every request body is validated against
the document and recorded, so tests can prove that the client sends only what
the document allows. Fault injection covers 5xx/429 answers, latency and a
cloud that closes connections without answering.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, urlsplit

from bridge.eapi.errors import SchemaError
from bridge.eapi.schema import validate_request
from bridge.limits import MAX_CURRENT_A, MIN_CURRENT_A

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo@example.invalid"
DEMO_PASSWORD = "demo-password"  # fake account of the simulator, not a secret
DEMO_API_KEY = "demo-api-key-0000"
DEFAULT_CHARGEPOINT_ID = "2003141234567"
MAX_SESSIONS = 10  # the real cloud keeps at most 10 token sessions per account
MIN_CHARGING_A = 6.0
NOMINAL_VOLTAGE = 230.0
# The charger's firmware behind the cloud: OCPP 1.6J (Charge Amps moved its chargers there in
# 2024-2025) or Charge Amps' own protocol (CAPI). It decides the connector statuses and what the
# cloud refuses during a session (`_put_connector_settings`, `_route`).
FIRMWARES: tuple[str, ...] = ("ocpp", "capi")
DEFAULT_FIRMWARE = "ocpp"
OCPP_VERSION = "1.6"
# What the cloud answers an OCPP charger's `mode` Off during a session (https://github.com/kirei/hass-chargeamps/issues/59,
# a maintainer after the firmware change; the 400 on PUT .../connectors/1/settings: https://github.com/kirei/hass-chargeamps/issues/75).
MODE_OFF_IN_SESSION = "you can not disable a port while there is an ongoing charging session"
# Remote stop on OCPP firmware works only with the RFID lock on (https://github.com/kirei/hass-chargeamps/issues/44); what
# the cloud answers otherwise is not reported there: the simulator says 400 with this message.
REMOTE_STOP_NEEDS_RFID_LOCK = "remote stop needs the RFID lock on for a charger on OCPP firmware"
_REDACTED_FIELDS = frozenset({"password", "token", "refreshToken"})
_PHASES = ("L1", "L2", "L3")

# draw_override(offered_a, now) -> per-phase amps (L1, L2, L3). offered_a is
# what the charger offers the car right now (0 when mode is not On or the
# session was stopped remotely); now is time.monotonic(). It is called with the
# simulator's lock held, so it must not call back into the simulator.
DrawOverride = Callable[[float, float], Sequence[float]]


@dataclass
class RecordedRequest:
    method: str
    path: str            # with the query string
    body: Any            # parsed JSON, secrets replaced by "<redacted>"; None without body
    valid: bool          # body validated against the v5 document
    error: str | None    # why not valid
    t: float             # time.monotonic() on arrival
    status: int | None = None  # the answer's status; None when the connection was dropped


@dataclass
class _FaultRule:
    remaining: int
    status: int
    retry_after: float | str | None
    path_contains: str | None
    method: str | None = None
    message: str = "injected fault"


class SimConnector:
    """One connector, its settings and the car plugged into it."""

    def __init__(self, connector_id: int, kind: str, max_current: float) -> None:
        self.connector_id = connector_id
        self.type = kind  # "Charger" | "Schuko"
        self.max_current = float(max_current)
        self.mode = "On"
        self.rfid_lock = False
        self.cable_lock = False
        # car model, set by tests and the demo
        self.car_max_a = 16.0
        self.car_phases = "three"  # "three" | "L1" | "L2" | "L3"
        self.plug_in_s: float | None = None  # when the car plugs in (the demo's clock), see `plug_due`
        self.draw_override: DrawOverride | None = None
        self.voltage = NOMINAL_VOLTAGE
        self.remote_stopped = False
        self.authorised = False  # the session may start (see `car_plugged`)
        self.faulted = False  # set by tests: OCPP `Faulted`, CAPI `Error`
        self.energy_kwh = 0.0
        self.session_id: int | None = None
        self.session_start: str | None = None
        self._car_plugged = False
        self._draw: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._last_t: float | None = None

    @property
    def car_plugged(self) -> bool:
        return self._car_plugged

    @car_plugged.setter
    def car_plugged(self, value: bool) -> None:
        if value and not self._car_plugged:
            # A new session: the session energy starts again from zero.
            self.energy_kwh = 0.0
            self.session_id = secrets.randbelow(2**31 - 1)
            self.session_start = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.remote_stopped = False
            # OCPP: without the RFID lock a session starts on plug-in; with it, on a remote start.
            self.authorised = not self.rfid_lock
        self._car_plugged = bool(value)

    def __repr__(self) -> str:
        return (f"SimConnector({self.connector_id}, {self.type}, max_current={self.max_current}, "
                f"mode={self.mode}, car_plugged={self._car_plugged})")


@dataclass(frozen=True)
class SimCar:
    """A car at a simulated outlet: the phases it charges on ("three", "L1", "L2", "L3"),
    the most it takes, and when it plugs in (seconds on the demo's clock; None or 0 = now)."""

    phases: str = "three"
    max_a: float = 16.0
    plug_in_s: float | None = None


MAX_SITE_HALOS = 200
# The organisation of a simulated account: its charge points' statuses in one call
# (GET /organisations/{organisationId}/chargepoints/statuses; organisationId is a GUID).
DEMO_ORGANISATION_ID = "5b1c8f0e-2d4a-4c6b-9e3f-7a1d2c3b4e5f"

# The account with several cars: an Aura (two car outlets on one charge point) and a second Halo.
AURA_CHARGEPOINT_ID = "2103150000001"
SECOND_HALO_ID = "2003149876543"


@dataclass(frozen=True)
class ChargePointSpec:
    """One charge point of a simulated account: its id and model ("HALO" or "AURA")."""

    cp_id: str
    kind: str = "HALO"

    @property
    def name(self) -> str:
        return "Aura" if self.kind == "AURA" else "Halo"


# The accounts `simulate-cloud --account` offers, first charge point first.
ACCOUNTS: dict[str, tuple[ChargePointSpec, ...]] = {
    "halo": (ChargePointSpec(DEFAULT_CHARGEPOINT_ID),),
    "aura": (ChargePointSpec(AURA_CHARGEPOINT_ID, "AURA"),),
    "aura+halo": (ChargePointSpec(AURA_CHARGEPOINT_ID, "AURA"), ChargePointSpec(SECOND_HALO_ID)),
}


def build_account(charge_points: Sequence[ChargePointSpec],
                  cars: dict[tuple[str, int], SimCar] | None = None, **kwargs: Any) -> CloudSimulator:
    """A simulator (not started) whose account owns `charge_points` (in that order), with `cars`
    by (charge point, connector); `kwargs` go to CloudSimulator (firmware, installation_current...)."""
    if not charge_points:
        raise ValueError("an account needs at least one charge point")
    installation_current = kwargs.pop("installation_current", 16)
    first, *others = charge_points
    sim = CloudSimulator(chargepoint_id=first.cp_id, kind=first.kind,
                         installation_current=installation_current, **kwargs)
    for spec in others:
        sim.add_chargepoint(spec.cp_id, installation_current, kind=spec.kind, name=spec.name)
    for (cp_id, cid), car in (cars or {}).items():
        sim.plug(cp_id, cid, car)
    return sim


def halo_site(n: int, car: SimCar | None = None, **kwargs: Any) -> CloudSimulator:
    """A simulator (not started) whose account owns `n` Halos, each with a three-phase car (or `car`)
    plugged in: a housing co-op's garage on one account. `kwargs` go to CloudSimulator."""
    if not 1 <= n <= MAX_SITE_HALOS:
        raise ValueError(f"--halos must be 1 to {MAX_SITE_HALOS}, not {n}")
    specs = [ChargePointSpec(site_halo_id(i)) for i in range(n)]
    return build_account(specs, {(spec.cp_id, 1): car or SimCar() for spec in specs}, **kwargs)


def site_halo_id(i: int) -> str:
    """The id of the i-th Halo of a simulated site (13 digits, as a Halo's serial)."""
    return f"20031500{i + 1:05d}"


def several_cars_account(cars: dict[tuple[str, int], SimCar] | None = None, **kwargs: Any) -> CloudSimulator:
    """A simulator (not started) whose account owns an Aura (first) and a Halo; `cars` by
    (charge point, connector), by default a three-phase car at each Aura outlet."""
    if cars is None:
        cars = {(AURA_CHARGEPOINT_ID, 1): SimCar(), (AURA_CHARGEPOINT_ID, 2): SimCar()}
    return build_account(ACCOUNTS["aura+halo"], cars, **kwargs)


def parse_car(text: str, charge_points: Sequence[ChargePointSpec]) -> tuple[tuple[str, int], SimCar]:
    """`--car`: CONNECTOR[:MAX_A], the connector on the first charge point, or CP:CONNECTOR[:MAX_A];
    a three-phase car plugged in from the start. ValueError says what is wrong."""
    parts = text.strip().split(":")
    ids = [spec.cp_id for spec in charge_points]
    cp_id = ids[0]
    if len(parts) >= 2 and parts[0] in ids:
        cp_id, parts = parts[0], parts[1:]
    if not 1 <= len(parts) <= 2 or not parts[0].isdigit():
        raise ValueError(f"--car {text!r}: use CONNECTOR[:MAX_A] (e.g. 1 or 1:16) or CHARGEPOINT:CONNECTOR[:MAX_A]")
    max_a = SimCar().max_a
    if len(parts) == 2:
        try:
            max_a = float(parts[1])
        except ValueError:
            max_a = math.nan
        if not MIN_CURRENT_A <= max_a <= MAX_CURRENT_A:
            raise ValueError(f"--car {text!r}: the car's MAX_A must be {MIN_CURRENT_A} to {MAX_CURRENT_A} A")
    return (cp_id, int(parts[0])), SimCar(max_a=max_a)


class SimChargePoint:
    def __init__(self, cp_id: str, installation_current: int = 16, name: str = "Halo",
                 kind: str = "HALO", firmware: str = DEFAULT_FIRMWARE) -> None:
        if firmware not in FIRMWARES:
            raise ValueError(f"firmware must be one of {', '.join(FIRMWARES)}, not {firmware!r}")
        self.id = cp_id
        self.name = name
        self.type = kind
        self.firmware = firmware
        self.installation_current = int(installation_current)
        self.max_current: float = float(installation_current)
        self.dimmer = "Off"
        self.down_light = False
        self.online = True
        self.reboots = 0
        self.firmware_version = "1.2.3"
        self.hardware_version = "1.0"
        if kind == "AURA":
            # An Aura: two car outlets on one charge point, no Schuko socket.
            self.connectors: dict[int, SimConnector] = {
                1: SimConnector(1, "Charger", installation_current),
                2: SimConnector(2, "Charger", installation_current),
            }
        else:
            # A Halo: connector 1 the car connector, 2 the Schuko socket.
            self.connectors = {
                1: SimConnector(1, "Charger", installation_current),
                2: SimConnector(2, "Schuko", min(10, installation_current)),
            }

    @property
    def ocpp_version(self) -> str | None:
        """The charge point's `ocppVersion`: null on Charge Amps' own protocol."""
        return OCPP_VERSION if self.firmware == "ocpp" else None

    def __repr__(self) -> str:
        return f"SimChargePoint({self.id!r}, installation_current={self.installation_current}, firmware={self.firmware})"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: CloudSimulator) -> None:
        self.sim = sim
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "CloudSimulator/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self.server.sim._handle(self)

    do_PUT = do_POST = do_DELETE = do_PATCH = do_GET


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _redact(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: ("<redacted>" if k in _REDACTED_FIELDS and v is not None else v) for k, v in body.items()}
    return body


class CloudSimulator:
    """The EAPI v5 on 127.0.0.1 in a daemon thread. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        port: int = 0,
        token_ttl_s: float = 7200,
        refresh_ttl_s: float = 604800,
        host: str = "127.0.0.1",
        installation_current: int = 16,
        chargepoint_id: str = DEFAULT_CHARGEPOINT_ID,
        email: str = DEMO_EMAIL,
        password: str = DEMO_PASSWORD,
        api_key: str = DEMO_API_KEY,
        clock: Callable[[], float] = time.time,
        kind: str = "HALO",
        firmware: str = DEFAULT_FIRMWARE,
    ) -> None:
        self.host = host
        self.firmware = firmware  # of the charge points added without one
        self.port = port
        self.token_ttl_s = float(token_ttl_s)
        self.refresh_ttl_s = float(refresh_ttl_s)
        self.email = email
        self.password = password
        self.api_key = api_key
        self.clock = clock  # wall clock of the JWTs (exp); tests may inject a fake one
        self.charge_points: dict[str, SimChargePoint] = {
            chargepoint_id: SimChargePoint(chargepoint_id, installation_current, kind=kind,
                                           name="Aura" if kind == "AURA" else "Halo", firmware=firmware)
        }
        self.requests: list[RecordedRequest] = []
        self.writes: list[tuple[float, str, int | None, str, Any]] = []
        self.logins = 0
        self.refreshes = 0
        self.latency_s = 0.0  # every request takes this long before it is answered
        self.down = False
        # The organisation the account may read every status of; False: the account lacks the
        # Enterprise scope, and the call answers 403 (the document's answer for it).
        self.organisation_id = DEMO_ORGANISATION_ID
        self.organisation_scope = True
        self.lock = threading.RLock()
        self._key = secrets.token_bytes(32)
        self._access: dict[str, float] = {}              # jti -> exp of live access tokens
        self._refresh: dict[str, tuple[str, float]] = {}  # refresh token -> (jti of its token, exp)
        self._sessions: deque[str] = deque()              # refresh tokens, oldest first
        self._credentials_revoked = False
        self._faults: list[_FaultRule] = []
        self._user_id = str(uuid.uuid4())
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"CloudSimulator(url={self.url if self._server else None!r})"

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> CloudSimulator:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"cloud-sim:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CloudSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- helpers for tests and the demo ---------------------------------------

    @property
    def chargepoint_id(self) -> str:
        return next(iter(self.charge_points))

    def connector(self, cid: int = 1, cp_id: str | None = None) -> SimConnector:
        return self.charge_points[cp_id or self.chargepoint_id].connectors[cid]

    def add_chargepoint(self, cp_id: str, installation_current: int = 16, **kwargs: Any) -> SimChargePoint:
        kwargs.setdefault("firmware", self.firmware)
        with self.lock:
            cp = SimChargePoint(cp_id, installation_current, **kwargs)
            self.charge_points[cp_id] = cp
            return cp

    def plug(self, cp_id: str, cid: int, car: SimCar) -> SimConnector:
        """Put `car` at a connector: plugged in now, or at `car.plug_in_s` (see `plug_due`)."""
        with self.lock:
            cp = self.charge_points.get(cp_id)
            if cp is None or cid not in cp.connectors:
                raise ValueError(f"charge point {cp_id} has no connector {cid}" if cp else
                                 f"the account has no charge point {cp_id}")
            conn = cp.connectors[cid]
            if conn.type != "Charger":
                raise ValueError(f"connector {cid} of {cp_id} is a {conn.type} socket, not a car connector")
            conn.car_phases = car.phases
            conn.car_max_a = float(car.max_a)
            conn.plug_in_s = car.plug_in_s
            conn.car_plugged = car.plug_in_s is None or car.plug_in_s <= 0
            return conn

    def plug_due(self, now_s: float) -> list[SimConnector]:
        """Plug in the cars whose plug-in time has come; the ones plugged in now."""
        plugged = []
        with self.lock:
            for cp in self.charge_points.values():
                for conn in cp.connectors.values():
                    if conn.plug_in_s is not None and not conn.car_plugged and now_s >= conn.plug_in_s:
                        conn.car_plugged = True
                        conn.plug_in_s = None
                        plugged.append(conn)
        return plugged

    def fail_next(self, n: int, status: int = 503, retry_after: float | str | None = None,
                  path_contains: str | None = None, method: str | None = None,
                  message: str = "injected fault") -> None:
        """Answer the next n requests (whose path contains path_contains, of `method` if given)
        with `status` and `{"error": message}`."""
        if n < 0 or not 100 <= status <= 599:
            raise ValueError("fail_next needs n >= 0 and an HTTP status 100..599")
        with self.lock:
            self._faults.append(_FaultRule(n, status, retry_after, path_contains,
                                           method.upper() if method else None, message))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def revoke_credentials(self) -> None:
        """Login answers 401 from now on, and refresh 400 (the API key or password was changed)."""
        with self.lock:
            self._credentials_revoked = True

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired now; refresh tokens still work."""
        with self.lock:
            self._access.clear()

    def invalidate_refresh_tokens(self) -> None:
        with self.lock:
            self._refresh.clear()
            self._sessions.clear()

    def requests_since(self, since: float = 0.0, until: float = math.inf) -> list[RecordedRequest]:
        """The requests that arrived in [since, until) (time.monotonic())."""
        with self.lock:
            return [r for r in self.requests if since <= r.t < until]

    def busiest_minute(self, since: float = 0.0, until: float = math.inf, window_s: float = 60.0) -> int:
        """The most requests that arrived within any `window_s` seconds between `since` and `until`:
        what an account's rate limit sees."""
        times = [r.t for r in self.requests_since(since, until)]
        most, first = 0, 0
        for last, t in enumerate(times):
            while t - times[first] >= window_s:
                first += 1
            most = max(most, last - first + 1)
        return most

    def requests_per_minute(self, since: float, until: float | None = None) -> float:
        """The mean request rate between `since` and `until` (now), a minute."""
        end = time.monotonic() if until is None else until
        return len(self.requests_since(since, end)) * 60.0 / max(end - since, 1e-9)

    def requests_to(self, path_contains: str, method: str | None = None) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests
                    if path_contains in r.path and (method is None or r.method == method.upper())]

    # -- tokens ---------------------------------------------------------------

    def _issue_pair(self) -> tuple[str, str]:
        now = self.clock()
        jti = secrets.token_hex(8)
        exp = round(now + self.token_ttl_s, 3)
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps({"sub": self.email, "jti": jti, "iat": round(now, 3), "exp": exp}).encode())
        signature = _b64url(hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        token = f"{header}.{payload}.{signature}"
        refresh = secrets.token_urlsafe(32)
        self._access[jti] = exp
        self._refresh[refresh] = (jti, now + self.refresh_ttl_s)
        self._sessions.append(refresh)
        while len(self._sessions) > MAX_SESSIONS:
            # The oldest session is logged out, as the real cloud does.
            old = self._sessions.popleft()
            old_pair = self._refresh.pop(old, None)
            if old_pair is not None:
                self._access.pop(old_pair[0], None)
        return token, refresh

    def _token_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token signed by this simulator, or None (expiry not checked)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = _b64url(hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            claims = json.loads(_b64url_decode(parts[1]))
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None

    def _authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        claims = self._token_claims(header[len("Bearer "):].strip())
        if claims is None:
            return False
        jti = claims.get("jti")
        exp = self._access.get(jti) if isinstance(jti, str) else None
        return exp is not None and self.clock() < exp

    # -- charger model --------------------------------------------------------

    @staticmethod
    def _waits_for_authorisation(cp: SimChargePoint, conn: SimConnector) -> bool:
        """OCPP with the RFID lock on: a car plugged in waits (`Preparing`) for a remote start."""
        return cp.firmware == "ocpp" and conn.rfid_lock and not conn.authorised

    @staticmethod
    def _in_session(cp: SimChargePoint, conn: SimConnector) -> bool:
        """A charging session is going on: a car plugged in, authorised and not stopped remotely
        (a session paused by 0 A or by the car still goes on)."""
        return conn.car_plugged and not conn.remote_stopped and not CloudSimulator._waits_for_authorisation(cp, conn)

    @staticmethod
    def _offered(cp: SimChargePoint, conn: SimConnector) -> float:
        if conn.mode != "On" or conn.faulted or not CloudSimulator._in_session(cp, conn):
            return 0.0
        return max(0.0, min(conn.max_current, cp.max_current if cp.max_current is not None else math.inf))

    def _status_name(self, cp: SimChargePoint, conn: SimConnector) -> str:
        """The connector's status in its firmware's set: OCPP 1.6's ChargePointStatus, or Charge
        Amps' own protocol's (hass-chargeamps const.py: STATUS_OCPP_MAP, STATUS_CAPI_MAP)."""
        charging = any(a > 0 for a in conn._draw)
        if cp.firmware == "capi":
            if not conn.car_plugged:
                return "Available"
            return "Error" if conn.faulted else "Charging" if charging else "Connected"
        if conn.faulted:
            return "Faulted"
        if not conn.car_plugged:
            return "Available"
        if self._waits_for_authorisation(cp, conn):
            return "Preparing"
        if conn.remote_stopped:
            return "Finishing"  # the session ended, the car is still plugged in
        if charging:
            return "Charging"
        return "SuspendedEVSE" if self._offered(cp, conn) < MIN_CHARGING_A else "SuspendedEV"

    def draws(self) -> tuple[float, float, float]:
        """What every car of the account draws now, per phase (L1, L2, L3): for a simulated meter."""
        now = time.monotonic()
        total = [0.0, 0.0, 0.0]
        with self.lock:
            for cp in self.charge_points.values():
                for conn in cp.connectors.values():
                    self._advance(cp, conn, now)
                    for i in range(3):
                        total[i] += conn._draw[i]
        return (total[0], total[1], total[2])

    def _advance(self, cp: SimChargePoint, conn: SimConnector, now: float) -> None:
        """Integrate the energy of the draw so far, then compute the draw from now on."""
        if conn._last_t is not None and now > conn._last_t:
            power_kw = sum(conn._draw) * conn.voltage / 1000.0
            conn.energy_kwh += power_kw * (now - conn._last_t) / 3600.0
        conn._last_t = now
        offered = self._offered(cp, conn)
        if not conn.car_plugged:
            draw: tuple[float, float, float] = (0.0, 0.0, 0.0)
        elif conn.draw_override is not None:
            values = [max(0.0, float(v)) for v in conn.draw_override(offered, now)][:3]
            values += [0.0] * (3 - len(values))
            draw = (values[0], values[1], values[2])
        else:
            amps = min(conn.car_max_a, offered)
            if amps < MIN_CHARGING_A:
                draw = (0.0, 0.0, 0.0)
            elif conn.car_phases == "three":
                draw = (amps, amps, amps)
            else:
                index = _PHASES.index(conn.car_phases) if conn.car_phases in _PHASES else 0
                draw = tuple(amps if i == index else 0.0 for i in range(3))  # type: ignore[assignment]
        conn._draw = draw

    def _connector_status(self, cp: SimChargePoint, conn: SimConnector, now: float) -> dict[str, Any]:
        self._advance(cp, conn, now)
        charging = any(a > 0 for a in conn._draw)
        status = self._status_name(cp, conn)
        if conn.type == "Schuko":
            session_type = "Schuko"
        else:
            session_type = "ThreePhase" if sum(1 for a in conn._draw if a > 0) > 1 or (
                not charging and conn.car_phases == "three") else "OnePhase"
        result: dict[str, Any] = {
            "chargePointId": cp.id,
            "connectorId": conn.connector_id,
            "totalConsumptionKwh": round(conn.energy_kwh, 4) if conn.car_plugged else 0.0,
            "chargingPowerKw": round(sum(conn._draw) * conn.voltage / 1000.0, 3),
            "sessionType": session_type if conn.car_plugged else None,
            "status": status,
            "measurements": [
                {"phase": name, "current": round(amps, 2), "voltage": conn.voltage}
                for name, amps in zip(_PHASES, conn._draw)
            ] if charging else None,
            "startTime": conn.session_start if conn.car_plugged else None,
            "endTime": None,
            "sessionId": conn.session_id if conn.car_plugged else None,
        }
        return result

    def _record_write(self, cp_id: str, cid: int | None, name: str, value: Any) -> None:
        self.writes.append((time.monotonic(), cp_id, cid, name, value))

    # -- request handling -----------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        arrived = time.monotonic()
        method = h.command.upper()
        raw_path = h.path
        path = urlsplit(raw_path).path.rstrip("/")
        length = int(h.headers.get("Content-Length") or 0)
        raw_body = h.rfile.read(length) if length > 0 else b""
        body: Any = None
        parse_error: str | None = None
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                parse_error = "body is not JSON"
        try:
            if parse_error is not None:
                raise SchemaError(parse_error)
            validate_request(method, path, body)
            valid, error = True, None
        except SchemaError as exc:
            valid, error = False, str(exc)
        record = RecordedRequest(method, raw_path, _redact(body), valid, error, arrived)
        with self.lock:
            self.requests.append(record)
            down, latency = self.down, self.latency_s
        if down:
            # Like a dead load balancer: the connection closes without an answer.
            h.close_connection = True
            return
        if latency > 0:
            time.sleep(latency)
        status, payload, headers = self._answer(method, path, raw_path, h, body, valid, error,
                                                parse_error)
        record.status = status
        self._send(h, status, payload, headers)

    def _answer(self, method: str, path: str, raw_path: str, h: _Handler, body: Any, valid: bool,
                error: str | None, parse_error: str | None) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            for rule in self._faults:
                if rule.remaining > 0 and (rule.path_contains is None or rule.path_contains in raw_path) \
                        and rule.method in (None, method):
                    rule.remaining -= 1
                    headers = {} if rule.retry_after is None else {"Retry-After": str(rule.retry_after)}
                    return rule.status, {"error": rule.message, "messageCode": "simulated"}, headers
            self._faults = [r for r in self._faults if r.remaining > 0]

            if method == "POST" and path == "/api/v5/auth/login":
                return self._login(h, body, valid, error)
            if method == "POST" and path == "/api/v5/auth/refreshtoken":
                return self._do_refresh(body, valid, error)
            if not self._authorised(h.headers.get("Authorization")):
                return 401, None, {}
            if parse_error is not None or not valid:
                return 400, {"error": error or "invalid body", "messageCode": "InvalidRequest"}, {}
            return self._route(method, path, raw_path, body)

    def _login(self, h: _Handler, body: Any, valid: bool, error: str | None) -> tuple[int, Any, dict[str, str]]:
        if not valid or not isinstance(body, dict):
            return 400, {"error": error or "invalid body", "messageCode": "InvalidRequest"}, {}
        key_ok = hmac.compare_digest((h.headers.get("apiKey") or "").encode(), self.api_key.encode())
        user_ok = (body.get("email") or "").lower() == self.email.lower()
        password_ok = hmac.compare_digest((body.get("password") or "").encode(), self.password.encode())
        if self._credentials_revoked or not (key_ok and user_ok and password_ok):
            return 401, None, {}
        self.logins += 1
        token, refresh = self._issue_pair()
        user = {"id": self._user_id, "firstName": "Demo", "lastName": "User", "email": self.email,
                "mobile": None, "rfidTags": [], "userStatus": "Valid"}
        return 200, {"message": "Login successful", "token": token, "user": user, "refreshToken": refresh}, {}

    def _do_refresh(self, body: Any, valid: bool, error: str | None) -> tuple[int, Any, dict[str, str]]:
        def refused(reason: str) -> tuple[int, Any, dict[str, str]]:
            return 400, {"error": reason, "messageCode": "InvalidRefreshToken"}, {}

        if not valid or not isinstance(body, dict):
            return refused(error or "invalid body")
        refresh, token = body.get("refreshToken"), body.get("token")
        if self._credentials_revoked:
            return refused("credentials revoked")
        pair = self._refresh.get(refresh) if isinstance(refresh, str) else None
        if pair is None:
            return refused("unknown or used refresh token")
        jti, expires = pair
        claims = self._token_claims(token) if isinstance(token, str) else None
        if claims is None or claims.get("jti") != jti:
            return refused("token does not belong to this refresh token")
        # Single use: the old pair is gone whether or not it had expired.
        del self._refresh[refresh]
        self._access.pop(jti, None)
        try:
            self._sessions.remove(refresh)
        except ValueError:
            pass
        if self.clock() >= expires:
            return refused("refresh token expired")
        self.refreshes += 1
        new_token, new_refresh = self._issue_pair()
        return 200, {"token": new_token, "refreshToken": new_refresh}, {}

    def _route(self, method: str, path: str, raw_path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        now = time.monotonic()
        if method == "GET" and path == "/api/v5/chargepoints/owned":
            return 200, [self._chargepoint_json(cp, expand=False) for cp in self.charge_points.values()], {}
        org = re.fullmatch(r"/api/v5/organisations/([^/]+)/chargepoints/statuses", path)
        if org is not None and method == "GET":
            if org.group(1).lower() != self.organisation_id.lower():
                return 404, None, {}
            if not self.organisation_scope:
                return 403, None, {}
            return 200, [self._status_json(cp, now) for cp in self.charge_points.values()], {}
        m = re.fullmatch(r"/api/v5/chargepoints/([^/]+)(/.*)?", path)
        if m is None:
            return 404, None, {}
        cp = self.charge_points.get(m.group(1))
        if cp is None:
            return 404, None, {}
        rest = m.group(2) or ""
        if rest == "" and method == "GET":
            expand = "settings" in parse_qs(urlsplit(raw_path).query).get("expand", [""])[0]
            return 200, self._chargepoint_json(cp, expand=expand), {}
        if rest == "/status" and method == "GET":
            return 200, self._status_json(cp, now), {}
        if rest == "/settings" and method == "GET":
            return 200, {**self._cp_settings_json(cp), "installationCurrent": cp.installation_current}, {}
        if rest == "/settings" and method == "PUT":
            return self._put_cp_settings(cp, body, now)
        if rest == "/reboot" and method == "PUT":
            cp.reboots += 1
            for c in cp.connectors.values():
                self._advance(cp, c, now)
                c.remote_stopped = False
            self._record_write(cp.id, None, "reboot", True)
            return 200, None, {}
        c = re.fullmatch(r"/connectors/(\d+)/(settings|remotestart|remotestop)", rest)
        if c is None:
            return 404, None, {}
        conn = cp.connectors.get(int(c.group(1)))
        if conn is None:
            return 404, None, {}
        action = c.group(2)
        if action == "settings" and method == "GET":
            return 200, {**self._connector_settings_json(cp, conn), "installationCurrent": cp.installation_current}, {}
        if action == "settings" and method == "PUT":
            return self._put_connector_settings(cp, conn, body, now)
        if action in ("remotestart", "remotestop") and method == "PUT":
            if action == "remotestop" and cp.firmware == "ocpp" and not conn.rfid_lock:
                return self._bad(REMOTE_STOP_NEEDS_RFID_LOCK)
            self._advance(cp, conn, now)
            conn.remote_stopped = action == "remotestop"
            if action == "remotestart":
                conn.authorised = True
            self._record_write(cp.id, conn.connector_id, action, True)
            return 200, None, {}
        return 404, None, {}

    def _status_json(self, cp: SimChargePoint, now: float) -> dict[str, Any]:
        """A ChargePointStatus (the document's schema), as both status calls answer it."""
        return {
            "id": cp.id,
            "status": "Online" if cp.online else "Offline",
            "connectorStatuses": [self._connector_status(cp, c, now) for c in cp.connectors.values()],
        }

    def _chargepoint_json(self, cp: SimChargePoint, expand: bool) -> dict[str, Any]:
        return {
            "id": cp.id,
            "name": cp.name,
            "password": None,
            "type": cp.type,
            "isLoadbalanced": False,
            "firmwareVersion": cp.firmware_version,
            "hardwareVersion": cp.hardware_version,
            "ownerReadOnly": False,
            "ocppVersion": cp.ocpp_version,
            "settings": self._cp_settings_json(cp) if expand else None,
            "connectors": [
                {
                    "chargePointId": cp.id,
                    "connectorId": c.connector_id,
                    "type": c.type,
                    "settings": self._connector_settings_json(cp, c) if expand else None,
                    "connectorUserId": None,
                }
                for c in cp.connectors.values()
            ],
        }

    @staticmethod
    def _cp_settings_json(cp: SimChargePoint) -> dict[str, Any]:
        return {"id": cp.id, "dimmer": cp.dimmer, "downLight": cp.down_light, "maxCurrent": cp.max_current}

    @staticmethod
    def _connector_settings_json(cp: SimChargePoint, c: SimConnector) -> dict[str, Any]:
        return {"chargePointId": cp.id, "connectorId": c.connector_id, "maxCurrent": c.max_current,
                "rfidLock": c.rfid_lock, "mode": c.mode, "cableLock": c.cable_lock}

    @staticmethod
    def _bad(message: str) -> tuple[int, Any, dict[str, str]]:
        return 400, {"error": message, "messageCode": "InvalidRequest"}, {}

    def _check_current(self, cp: SimChargePoint, value: Any) -> str | None:
        if value is None:
            return None
        if not 0 <= float(value) <= cp.installation_current:
            return f"maxCurrent {value} outside 0..{cp.installation_current} (installationCurrent)"
        return None

    def _put_cp_settings(self, cp: SimChargePoint, body: dict[str, Any], now: float) -> tuple[int, Any, dict[str, str]]:
        if body.get("id") not in (None, cp.id):
            return self._bad("id does not match the path")
        problem = self._check_current(cp, body.get("maxCurrent"))
        if problem:
            return self._bad(problem)
        for c in cp.connectors.values():
            self._advance(cp, c, now)
        for name, attr in (("dimmer", "dimmer"), ("downLight", "down_light"), ("maxCurrent", "max_current")):
            if body.get(name) is not None:
                value = float(body[name]) if name == "maxCurrent" else body[name]
                setattr(cp, attr, value)
                self._record_write(cp.id, None, name, value)
        return 200, None, {}

    def _put_connector_settings(self, cp: SimChargePoint, conn: SimConnector, body: dict[str, Any],
                                now: float) -> tuple[int, Any, dict[str, str]]:
        if body.get("chargePointId") not in (None, cp.id) or body.get("connectorId") not in (None, conn.connector_id):
            return self._bad("chargePointId/connectorId do not match the path")
        problem = self._check_current(cp, body.get("maxCurrent"))
        if problem:
            return self._bad(problem)
        if (cp.firmware == "ocpp" and body.get("mode") == "Off" and conn.mode != "Off"
                and self._in_session(cp, conn)):
            # The whole PUT is refused, whatever else it carries.
            return self._bad(MODE_OFF_IN_SESSION)
        self._advance(cp, conn, now)
        for name, attr in (("maxCurrent", "max_current"), ("rfidLock", "rfid_lock"), ("mode", "mode"),
                           ("cableLock", "cable_lock")):
            if body.get(name) is not None:
                value = float(body[name]) if name == "maxCurrent" else body[name]
                setattr(conn, attr, value)
                self._record_write(cp.id, conn.connector_id, name, value)
        return 200, None, {}

    @staticmethod
    def _send(h: _Handler, status: int, payload: Any, headers: dict[str, str]) -> None:
        if payload is None:
            data = b""
            content_type = "application/octet-stream"
        else:
            data = json.dumps(payload).encode("utf-8")
            content_type = "application/json; charset=utf-8"
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            if data:
                h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client went away before the answer")


def describe(sim: CloudSimulator) -> list[str]:
    """What `simulate-cloud` prints: the settings that point `run` at it, and what it simulates."""
    # The demo account is fake and exists only in this process: printing it is the point.
    lines = [f"Charge Amps EAPI v5 simulator at {sim.url}",
             f"  CHARGEAMPS_BASE_URL={sim.url}",
             f"  CHARGEAMPS_EMAIL={sim.email}",
             f"  CHARGEAMPS_PASSWORD={sim.password}",
             f"  CHARGEAMPS_API_KEY={sim.api_key}",
             f"  CHARGEAMPS_ORGANISATION_ID={sim.organisation_id}"]
    cars = [f"{cp.id}:{c.connector_id}" for cp in sim.charge_points.values() for c in cp.connectors.values()
            if c.type == "Charger"]
    if len(cars) > 2:
        lines.append(f"  CHARGEAMPS_CONNECTORS={','.join(cars)}")
    if sim.latency_s:
        lines.append(f"  every request takes {sim.latency_s:g} s")
    if len(sim.charge_points) > 4:
        # A site: one line, not one per charge point.
        first = next(iter(sim.charge_points.values()))
        lines.append(f"  {len(sim.charge_points)} charge points ({first.name}, connector 1 with a car up to "
                     f"{first.connectors[1].car_max_a:g} A plugged in), {first.id} first")
        return lines
    for cp in sim.charge_points.values():
        firmware = f"OCPP {cp.ocpp_version}" if cp.ocpp_version else "CAPI"
        outlets = []
        for c in cp.connectors.values():
            car = f", a car up to {c.car_max_a:g} A plugged in" if c.car_plugged else ""
            outlets.append(f"{c.connector_id} {c.type}{car}")
        lines.append(f"  charge point {cp.id} ({cp.name}, {firmware} firmware): connector {'; '.join(outlets)}")
    return lines


def serve(sim: CloudSimulator, meter: Any = None, stop: threading.Event | None = None) -> None:
    """Run `sim` (and its meter) until Ctrl-C, or until `stop` is set (the CLI's `simulate-cloud`)."""
    sim.start()
    try:
        if meter is not None:
            meter.start()
        for line in describe(sim):
            print(line)
        if meter is not None:
            print(f"  P1 meter: P1_PRESET={meter.preset} P1_DEVICE={meter.device}, house load "
                  f"{'/'.join(f'{a:g}' for a in meter.house_a)} A plus the cars, once a second; "
                  f"change the house load on {meter.set_topic}")
        print("  Ctrl-C stops", flush=True)
        stop = stop or threading.Event()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        if meter is not None:
            meter.stop()
        sim.stop()


def simulator_from_args(args: argparse.Namespace) -> CloudSimulator:
    """The simulator `simulate-cloud`'s options describe (not started); ValueError names a bad option."""
    common = dict(port=args.port, host=args.host, token_ttl_s=args.token_ttl,
                  installation_current=args.installation_current, firmware=args.firmware)
    if args.halos is not None:
        if args.car:
            raise ValueError("--halos puts a car at every Halo: leave out --car")
        sim = halo_site(args.halos, **common)
    else:
        specs = ACCOUNTS[args.account]
        cars = dict(parse_car(text, specs) for text in args.car or ())
        sim = build_account(specs, cars, **common)
    sim.latency_s = args.latency_s
    return sim


def main(argv: Sequence[str] | None = None) -> int:
    from bridge.sim.house_meter import DEFAULT_METER_PRESET, HouseMeter, parse_house_a, plain_presets

    parser = argparse.ArgumentParser(prog="chargeamps-bridge simulate-cloud",
                                     description="Run the Charge Amps EAPI v5 simulator.")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default %(default)s; 0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s, loopback)")
    parser.add_argument("--token-ttl", type=float, default=7200,
                        help="access token lifetime in seconds (default %(default)g)")
    parser.add_argument("--installation-current", type=int, default=16,
                        help="installation current in A (default %(default)s)")
    parser.add_argument("--account", choices=tuple(ACCOUNTS), default="halo",
                        help="the charge points the account owns (default %(default)s; aura: two car outlets)")
    parser.add_argument("--halos", type=int, metavar="N",
                        help=f"instead of --account: N Halos (1 to {MAX_SITE_HALOS}) on one account, a three-phase "
                             "car up to 16 A plugged in at each (a housing co-op's garage)")
    parser.add_argument("--latency-s", type=float, default=0.0, metavar="S",
                        help="every request takes S seconds before it is answered (default %(default)g; "
                             "a real cloud takes about 0.3)")
    parser.add_argument("--car", action="append", metavar="CONNECTOR[:MAX_A]",
                        help="a three-phase car plugged in from the start at this connector of the first charge "
                             "point (CHARGEPOINT:CONNECTOR[:MAX_A] for another), taking up to MAX_A (default 16); "
                             "repeat for more cars")
    parser.add_argument("--firmware", choices=FIRMWARES, default=DEFAULT_FIRMWARE,
                        help="the chargers' firmware (default %(default)s): its connector statuses, and on ocpp "
                             "mode Off refused during a session and remote stop only with the RFID lock")
    parser.add_argument("--meter-topic", metavar="DEVICE",
                        help="publish a P1 meter (house load + the cars' draws, once a second) under this "
                             "device name, for `run` with P1_PRESET (see --meter-preset) and P1_DEVICE=DEVICE")
    parser.add_argument("--meter-preset", choices=plain_presets(), default=DEFAULT_METER_PRESET,
                        help="the P1 preset whose shape the meter publishes (default %(default)s)")
    parser.add_argument("--house-a", default="3", metavar="A|L1,L2,L3",
                        help="the house's own load in A per phase for --meter-topic (default %(default)s)")
    parser.add_argument("--mqtt-host", default="127.0.0.1", help="broker of --meter-topic (default %(default)s)")
    parser.add_argument("--mqtt-port", type=int, default=1883, help="its port (default %(default)s)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0..65535")
    if args.token_ttl <= 0:
        parser.error("--token-ttl must be positive")
    if not 6 <= args.installation_current <= 32:
        parser.error("--installation-current must be 6..32")
    if not 1 <= args.mqtt_port <= 65535:
        parser.error("--mqtt-port must be 1..65535")
    if not 0 <= args.latency_s <= 60:
        parser.error("--latency-s must be 0..60")
    try:
        house_a = parse_house_a(args.house_a)
        sim = simulator_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    meter = None
    if args.meter_topic:
        try:
            meter = HouseMeter(sim.draws, args.meter_topic, house_a, args.mqtt_host, args.mqtt_port,
                               preset=args.meter_preset, username=os.environ.get("MQTT_USERNAME") or None,
                               password=os.environ.get("MQTT_PASSWORD") or None)
        except ValueError as exc:  # a device name the preset cannot take
            parser.error(f"--meter-topic: {exc}")
    try:
        sim.start()
    except OSError as exc:
        print(f"chargeamps-bridge simulate-cloud: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1
    try:
        serve(sim, meter)
    except OSError as exc:  # only the meter's broker is left to fail
        print(f"chargeamps-bridge simulate-cloud: cannot reach the broker at {args.mqtt_host}:{args.mqtt_port} "
              f"for --meter-topic: {exc.strerror or exc}")
        return 1
    return 0


__all__ = ["ACCOUNTS", "DEMO_ORGANISATION_ID", "ChargePointSpec", "CloudSimulator", "halo_site", "site_halo_id", "RecordedRequest", "SimCar", "SimChargePoint",
           "SimConnector", "build_account", "main", "parse_car", "serve", "simulator_from_args"]


if __name__ == "__main__":
    raise SystemExit(main())
