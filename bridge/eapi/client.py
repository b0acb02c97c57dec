"""Client of the Charge Amps External REST API, version 5.

Token policy (the account keeps at most 10 sessions, and each login logs the
user out of one, the phone app included): reuse the persisted token while it
lives, refresh shortly before it expires or after a 401, and log in only when
the refresh is refused.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Literal

import requests
from pydantic import SecretStr, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ReadTimeoutError, ResponseError
from urllib3.util.retry import Retry

from bridge.eapi import schema
from bridge.eapi.errors import ApiError, AuthError, CloudUnavailable, EapiError, RateLimited
from bridge.eapi.models import (
    CONNECTOR_MODES,
    ChargePoint,
    ChargePointSettings,
    ChargePointStatus,
    ConnectorSettings,
)
from bridge.eapi.tokens import TokenSet, TokenStore, jwt_expiry, jwt_issued_at
from bridge.limits import MAX_CURRENT_A, MIN_CURRENT_A

log = logging.getLogger(__name__)

API_PREFIX = "/api/v5"
MIN_CHARGING_A = MIN_CURRENT_A
MAX_SETTABLE_A = MAX_CURRENT_A
REFRESH_MARGIN_S = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

CurrentLevel = Literal["connector", "chargepoint"]


class _CappedRetry(Retry):
    """urllib3 Retry that waits out a short Retry-After but gives up on a long one.

    A long pause inside a request would block the caller's loop; instead the
    429/503 response is handed back and the client raises RateLimited with the
    server's value so that the caller can schedule around it.
    """

    def __init__(self, *args: Any, max_retry_after_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after_s = max_retry_after_s

    def new(self, **kw: Any) -> _CappedRetry:
        kw.setdefault("max_retry_after_s", self.max_retry_after_s)
        return super().new(**kw)

    def increment(self, method: str | None = None, url: str | None = None,
                  response: Any = None, error: Exception | None = None,
                  _pool: Any = None, _stacktrace: Any = None) -> _CappedRetry:
        if response is not None:
            retry_after = self.get_retry_after(response)
            if retry_after is not None and retry_after > self.max_retry_after_s:
                # With raise_on_status=False urllib3 returns this response to requests.
                raise MaxRetryError(_pool, url, ResponseError("Retry-After longer than the client waits"))
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _secret(value: SecretStr | str | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


class EapiClient:
    """Charge Amps EAPI v5 over one `requests.Session`. Thread safe (one lock)."""

    def __init__(
        self,
        base_url: str,
        email: str,
        password: SecretStr | str | None,
        api_key: SecretStr | str | None,
        token_store: TokenStore | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        max_retry_after_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        backoff_factor: float = 0.5,
        login_cooldown_s: float = 60.0,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https:// (CHARGEAMPS_BASE_URL)")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.base_url = base_url.rstrip("/")
        self.email = email
        self._password = _secret(password)
        self._api_key = _secret(api_key)
        self.token_store = token_store
        self.timeout = float(timeout)
        self.max_retry_after_s = float(max_retry_after_s)
        self._clock = clock
        self._login_cooldown_s = float(login_cooldown_s)
        self._login_refused_at: float | None = None
        self._lock = threading.RLock()
        self.login_count = 0     # login requests sent
        self.refresh_count = 0   # refresh requests sent
        self._tokens: TokenSet | None = None
        if token_store is not None:
            self._tokens = token_store.load(self.base_url, self.email)
            if self._tokens is not None:
                log.debug("reusing stored Charge Amps token")

        retry = _CappedRetry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,
            redirect=0,
            allowed_methods=frozenset({"GET", "PUT"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=max(backoff_factor * 4, 1.0),
            raise_on_status=False,
            raise_on_redirect=False,
            respect_retry_after_header=True,
            max_retry_after_s=self.max_retry_after_s,
        )
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"Accept": "application/json", "User-Agent": "chargeamps-bridge"})

    def __repr__(self) -> str:
        return f"EapiClient(base_url={self.base_url!r}, email={self.email!r})"

    __str__ = __repr__

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> EapiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------

    def _send(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
              params: dict[str, str] | None = None) -> requests.Response:
        url = f"{self.base_url}{API_PREFIX}{path}"
        try:
            return self._session.request(
                method, url, json=body, headers=headers, params=params, timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            kind = "timed out" if _is_timeout(exc) else "could not connect"
            raise CloudUnavailable(
                f"Charge Amps cloud unreachable ({kind}: {method} {API_PREFIX}{path}) at {self.base_url}; "
                "check the network or CHARGEAMPS_BASE_URL"
            ) from None
        except requests.RequestException as exc:
            raise CloudUnavailable(
                f"request to the Charge Amps cloud failed ({type(exc).__name__}: {method} {API_PREFIX}{path})"
            ) from None

    @staticmethod
    def _error_for(response: requests.Response, what: str) -> EapiError:
        status = response.status_code
        if status == 429:
            return RateLimited(_retry_after(response))
        detail = _server_message(response)
        hint = {
            400: "the request was rejected as invalid",
            403: "this account may not do that on this charge point",
            404: "unknown charge point or connector; check CHARGEAMPS_CHARGEPOINT_ID / CHARGEAMPS_CONNECTOR_ID",
        }.get(status, "the cloud has a problem (a server error)" if status >= 500 else "")
        message = f"{what}: {hint}" if hint else what
        if detail:
            message = f"{message} ({detail})"
        return ApiError(status, message)

    # -- tokens -------------------------------------------------------------

    def _store(self, token: str, refresh_token: str) -> None:
        self._tokens = TokenSet(token=token, refresh_token=refresh_token,
                                base_url=self.base_url, email=self.email)
        if self.token_store is not None:
            try:
                self.token_store.save(self._tokens)
            except OSError as exc:
                log.warning("could not save Charge Amps tokens to %s (%s); the next start logs in again",
                            self.token_store.path, exc.strerror)

    def _login(self) -> None:
        now = self._clock()
        if self._login_refused_at is not None and now - self._login_refused_at < self._login_cooldown_s:
            # Hammering a login that was just refused helps nothing and may get the key blocked.
            raise AuthError(
                "Charge Amps login was refused moments ago; not retrying yet. "
                "Check CHARGEAMPS_EMAIL, CHARGEAMPS_PASSWORD and CHARGEAMPS_API_KEY"
            )
        missing = [name for name, value in (("CHARGEAMPS_EMAIL", self.email),
                                            ("CHARGEAMPS_PASSWORD", self._password),
                                            ("CHARGEAMPS_API_KEY", self._api_key))
                   if value is None or (isinstance(value, str) and not value)
                   or (isinstance(value, SecretStr) and not value.get_secret_value())]
        if missing:
            # Checked here, not in __init__, so that a service without cloud credentials can start.
            raise AuthError(f"cannot log in to Charge Amps: {', '.join(missing)} not set")
        assert self._password is not None and self._api_key is not None
        self.login_count += 1
        response = self._send(
            "POST", "/auth/login",
            body={"email": self.email, "password": self._password.get_secret_value()},
            headers={"apiKey": self._api_key.get_secret_value()},
        )
        if response.status_code in (400, 401, 403):
            self._login_refused_at = now
            self._tokens = None
            if self.token_store is not None:
                self.token_store.clear()
            raise AuthError(
                f"Charge Amps login refused (HTTP {response.status_code}); "
                "check CHARGEAMPS_EMAIL, CHARGEAMPS_PASSWORD and CHARGEAMPS_API_KEY"
            )
        if response.status_code != 200:
            raise self._error_for(response, "Charge Amps login failed")
        data = _json(response)
        token, refresh = data.get("token"), data.get("refreshToken")
        if not isinstance(token, str) or not isinstance(refresh, str) or not token or not refresh:
            raise ApiError(response.status_code, "login answer carries no token; is CHARGEAMPS_BASE_URL an EAPI v5 server?")
        self._login_refused_at = None
        self._store(token, refresh)
        log.info("logged in to Charge Amps as %s", self.email)

    def _refresh(self) -> None:
        """Refresh the token pair; log in when the refresh is refused.

        Cloud outages (5xx, no connection) are raised as they are: logging in
        would not help and would burn one of the account's sessions.
        """
        if self._tokens is None:
            self._login()
            return
        self.refresh_count += 1
        response = self._send(
            "POST", "/auth/refreshtoken",
            body={"token": self._tokens.token, "refreshToken": self._tokens.refresh_token},
        )
        if response.status_code in (400, 401):
            log.info("Charge Amps refresh token refused (HTTP %s); logging in again", response.status_code)
            self._tokens = None
            self._login()
            return
        if response.status_code != 200:
            raise self._error_for(response, "Charge Amps token refresh failed")
        data = _json(response)
        token, refresh = data.get("token"), data.get("refreshToken")
        if not isinstance(token, str) or not token:
            log.info("Charge Amps refresh answer carries no token; logging in again")
            self._tokens = None
            self._login()
            return
        self._store(token, refresh if isinstance(refresh, str) and refresh else self._tokens.refresh_token)
        log.debug("Charge Amps token refreshed")

    def _needs_refresh(self, tokens: TokenSet) -> bool:
        exp = jwt_expiry(tokens.token)
        if exp is None:
            return False  # unknown lifetime: rely on the 401 path
        margin = REFRESH_MARGIN_S
        iat = jwt_issued_at(tokens.token)
        if iat is not None and exp > iat:
            # Short-lived tokens (simulator, tests) would otherwise be refreshed on every call.
            margin = min(margin, (exp - iat) / 10)
        return self._clock() >= exp - margin

    def _valid_token(self) -> str:
        if self._tokens is None:
            self._login()
        elif self._needs_refresh(self._tokens):
            self._refresh()
        assert self._tokens is not None
        return self._tokens.token

    # -- authorised calls ---------------------------------------------------

    def _call(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
              what: str) -> requests.Response:
        """An authorised call: on a 401 refresh once and retry once."""
        if body is not None:
            # A body the document forbids is a bug here; fail before the cloud sees it.
            schema.validate_request(method, f"{API_PREFIX}{path}", body)
        with self._lock:
            token = self._valid_token()
        response = self._send(method, path, body=body, params=params,
                              headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 401:
            with self._lock:
                if self._tokens is not None and self._tokens.token == token:
                    self._refresh()
                elif self._tokens is None:
                    self._login()
                token = self._tokens.token if self._tokens else self._valid_token()
            response = self._send(method, path, body=body, params=params,
                                  headers={"Authorization": f"Bearer {token}"})
            if response.status_code == 401:
                raise AuthError(
                    f"{what}: the Charge Amps cloud refused a fresh token (HTTP 401); "
                    "check that the account may use the API (CHARGEAMPS_API_KEY)"
                )
        if response.status_code >= 400:
            raise self._error_for(response, what)
        return response

    def _get(self, path: str, what: str, params: dict[str, str] | None = None) -> Any:
        return _json(self._call("GET", path, params=params, what=what))

    def _put(self, path: str, body: Any, what: str) -> None:
        self._call("PUT", path, body=body, what=what)

    # -- public API ---------------------------------------------------------

    def login(self) -> list[ChargePoint]:
        """Log in (always, even with a valid stored token) and list the owned charge points."""
        with self._lock:
            self._login_refused_at = None  # an explicit login is the user asking to try again
            self._login()
        return self.owned_chargepoints()

    def owned_chargepoints(self) -> list[ChargePoint]:
        data = self._get("/chargepoints/owned", "reading the owned charge points")
        if not isinstance(data, list):
            raise ApiError(200, "owned charge points: expected a JSON list")
        return [_parse(ChargePoint, item, "charge point") for item in data]

    def chargepoint(self, cp_id: str) -> ChargePoint:
        data = self._get(f"/chargepoints/{_seg(cp_id)}", f"reading charge point {cp_id}",
                         params={"expand": "settings"})
        return _parse(ChargePoint, data, "charge point")

    def status(self, cp_id: str) -> ChargePointStatus:
        data = self._get(f"/chargepoints/{_seg(cp_id)}/status", f"reading the status of {cp_id}")
        return _parse(ChargePointStatus, data, "charge point status")

    def organisation_statuses(self, organisation_id: str) -> list[ChargePointStatus]:
        """Every status of an organisation's charge points in one call (the Enterprise scope)."""
        data = self._get(f"/organisations/{_seg(str(organisation_id))}/chargepoints/statuses",
                         f"reading the statuses of organisation {organisation_id}")
        if not isinstance(data, list):
            raise ApiError(200, "organisation statuses: expected a JSON list")
        return [_parse(ChargePointStatus, item, "charge point status") for item in data]

    def chargepoint_settings(self, cp_id: str) -> ChargePointSettings:
        data = self._get(f"/chargepoints/{_seg(cp_id)}/settings", f"reading the settings of {cp_id}")
        return _parse(ChargePointSettings, data, "charge point settings")

    def put_chargepoint_settings(self, settings: ChargePointSettings) -> None:
        if not settings.id:
            raise ValueError("ChargePointSettings.id is required to write settings")
        self._put(f"/chargepoints/{_seg(settings.id)}/settings", settings.to_request(),
                  f"writing the settings of {settings.id}")

    def connector_settings(self, cp_id: str, cid: int) -> ConnectorSettings:
        data = self._get(f"/chargepoints/{_seg(cp_id)}/connectors/{int(cid)}/settings",
                         f"reading the settings of connector {cid} of {cp_id}")
        return _parse(ConnectorSettings, data, "connector settings")

    def put_connector_settings(self, settings: ConnectorSettings) -> None:
        if not settings.charge_point_id:
            raise ValueError("ConnectorSettings.charge_point_id is required to write settings")
        self._put(
            f"/chargepoints/{_seg(settings.charge_point_id)}/connectors/{settings.connector_id}/settings",
            settings.to_request(),
            f"writing the settings of connector {settings.connector_id} of {settings.charge_point_id}",
        )

    def set_current(self, cp_id: str, cid: int, amps: int, level: CurrentLevel = "connector", *,
                    current: ConnectorSettings | None = None, read_back: bool = True) -> float:
        """Set the charging limit by read-modify-write; returns the value read back afterwards.

        `current`: the connector's settings as just read (no read before the write); `read_back`
        False: no read after it either (the caller reads the settings back later), and the value
        written is returned."""
        amps = validate_amps(amps)
        if level == "connector":
            if current is None:
                current = self.connector_settings(cp_id, cid)
            _check_installation(amps, current.installation_current)
            current = current.model_copy(update={"charge_point_id": current.charge_point_id or cp_id})
            self.put_connector_settings(current.model_copy(update={"max_current": float(amps)}))
            applied = self.connector_settings(cp_id, cid).max_current if read_back else float(amps)
        elif level == "chargepoint":
            cp_settings = self.chargepoint_settings(cp_id)
            _check_installation(amps, cp_settings.installation_current)
            cp_settings.id = cp_settings.id or cp_id
            self.put_chargepoint_settings(cp_settings.model_copy(update={"max_current": float(amps)}))
            applied = self.chargepoint_settings(cp_id).max_current if read_back else float(amps)
        else:
            raise ValueError(f"level must be 'connector' or 'chargepoint', not {level!r}")
        if applied is None:
            raise ApiError(200, f"charge point {cp_id} reports no maxCurrent after the write; check it in the Charge Amps app")
        log.info("charging limit of %s/%s set to %s A (%s level), read back %s A", cp_id, cid, amps, level, applied)
        return float(applied)

    def set_mode(self, cp_id: str, cid: int, mode: str) -> None:
        if mode not in CONNECTOR_MODES:
            raise ValueError(f"mode must be one of {', '.join(CONNECTOR_MODES)}, not {mode!r}")
        current = self.connector_settings(cp_id, cid)
        current.charge_point_id = current.charge_point_id or cp_id
        self.put_connector_settings(current.model_copy(update={"mode": mode}))

    def remote_start(self, cp_id: str, cid: int, rfid: str | None = None) -> None:
        body: dict[str, Any] = {}
        if rfid is not None:
            if not rfid or not all(c in "0123456789abcdefABCDEF" for c in rfid) or len(rfid) not in (8, 14, 20):
                raise ValueError("rfid must be hexadecimal, 4, 7 or 10 bytes (8, 14 or 20 hex digits)")
            body = {"rfid": rfid, "rfidFormat": "Hex", "rfidLength": len(rfid) // 2}
        self._put(f"/chargepoints/{_seg(cp_id)}/connectors/{int(cid)}/remotestart", body,
                  f"remote start of connector {cid} of {cp_id}")

    def remote_stop(self, cp_id: str, cid: int) -> None:
        self._put(f"/chargepoints/{_seg(cp_id)}/connectors/{int(cid)}/remotestop", {},
                  f"remote stop of connector {cid} of {cp_id}")

    def reboot(self, cp_id: str) -> None:
        self._put(f"/chargepoints/{_seg(cp_id)}/reboot", {}, f"reboot of {cp_id}")


def validate_amps(amps: Any) -> int:
    """0 (pause) or whole amps from the IEC minimum to the most a connector takes;
    ValueError with a clear message otherwise."""
    if isinstance(amps, bool) or not isinstance(amps, int):
        if isinstance(amps, float) and amps.is_integer():
            amps = int(amps)
        else:
            raise ValueError(f"current must be a whole number of amps, not {amps!r}")
    if amps != 0 and not MIN_CHARGING_A <= amps <= MAX_SETTABLE_A:
        raise ValueError(
            f"current {amps} A is out of range: use 0 (pause) or {MIN_CHARGING_A} to {MAX_SETTABLE_A} A"
        )
    return amps


def _check_installation(amps: int, installation_current: int | None) -> None:
    if installation_current is not None and amps > installation_current:
        raise ValueError(
            f"current {amps} A is above the installation current of {installation_current} A "
            "set for this charge point; use at most that"
        )


def _seg(cp_id: str) -> str:
    if not cp_id or "/" in cp_id or "?" in cp_id or "#" in cp_id:
        raise ValueError(f"invalid charge point id {cp_id!r}")
    return cp_id


def _is_timeout(exc: BaseException) -> bool:
    # After urllib3 gives up, requests wraps a read timeout in a ConnectionError.
    if isinstance(exc, requests.Timeout):
        return True
    reason = exc.args[0] if exc.args else None
    return isinstance(getattr(reason, "reason", None), (ReadTimeoutError, TimeoutError))


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(Retry().parse_retry_after(value)))
    except Exception:  # urllib3 raises InvalidHeader; any unreadable value means "unknown"
        return None


def _server_message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        for key in ("error", "message", "title"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value[:200]
    return ""


def _json(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise ApiError(response.status_code, "the answer is not JSON; is CHARGEAMPS_BASE_URL an EAPI v5 server?") from None


def _parse(model: Any, data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(200, f"unexpected {what} from the cloud ({exc.error_count()} field errors)") from None


__all__ = ["EapiClient", "validate_amps"]


def client_from_settings(settings: Any, *, long_running: bool = False) -> EapiClient:
    """The EAPI client for the configured account, built the same way for the CLI and the service.

    `long_running` (the service): a worker must not sleep through a long Retry-After
    inside a request, so anything above 2 s goes to the service's own backoff, which
    honours it; and one quick retry for a blip, past which that backoff takes over, so a
    dead cloud holds the worker for at most two timeouts per attempt.
    """
    tuning: dict[str, Any] = {"max_retry_after_s": 2.0, "retries": 1} if long_running else {}
    return EapiClient(
        settings.chargeamps_base_url,
        settings.chargeamps_email or "",
        settings.chargeamps_password,
        settings.chargeamps_api_key,
        token_store=TokenStore(settings.token_file),
        timeout=settings.chargeamps_http_timeout,
        **tuning,
    )
