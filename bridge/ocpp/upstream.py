"""The vendor's backend kept beside the bridge (OCPP_UPSTREAM_URL): a second connection per charger,
to the upstream central system, as that charger's identity.

- The charger's Authorize, StartTransaction, StopTransaction and DataTransfer go upstream and
  upstream's answer is the one the charger gets (`relay`); when upstream is gone, slow or answers
  with a CallError, the bridge answers itself (Accepted), so the charger keeps charging.
- The charger's other messages are copied upstream (`copy`); upstream's answers to them are dropped
  (the bridge answered the charger already).
- Upstream's calls go to the charger session's `from_upstream`, which passes some on to the charger,
  and takes a SetChargingProfile as a cap (the bridge owns the limit).
- Reconnected with backoff (5 s doubling to 5 minutes); each connection starts with the charger's
  last BootNotification, replayed, as many backends want a boot before transactions.

Runs on the central system's loop, one per connected charger, ended with the charger's connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

import websockets
from ocpp.exceptions import OCPPError
from ocpp.messages import validate_payload
from ocpp.v16 import ChargePoint
from websockets.exceptions import ConnectionClosed

from bridge.ocpp.identity import basic_header
from bridge.ocpp.wire import SUBPROTOCOL, frame_logger, raw_call

log = logging.getLogger(__name__)

# The charger's calls whose answer is upstream's (billing: upstream issues the transaction ids).
RELAYED = frozenset({"Authorize", "StartTransaction", "StopTransaction", "DataTransfer"})
# Upstream's calls that reach the charger, its answer going back.
TO_CHARGER = frozenset({"RemoteStartTransaction", "RemoteStopTransaction", "Reset", "ChangeConfiguration",
                        "GetConfiguration", "TriggerMessage", "UpdateFirmware"})
RELAY_TIMEOUT_S = 10.0  # then the bridge answers the charger itself; its own wait is longer
BACKOFF_S = (5.0, 300.0)

_wire_log = frame_logger("bridge.ocpp.upstream.wire")

CallFromUpstream = Callable[[str, dict], Awaitable[dict]]


class _Link(ChargePoint):
    """The connection to upstream, in the charge point role."""

    def __init__(self, upstream: "Upstream", connection: Any) -> None:
        super().__init__(upstream.identity, connection, response_timeout=upstream.relay_timeout_s, logger=_wire_log)
        self.upstream = upstream

    async def route_message(self, raw_msg: Any) -> None:
        try:
            await super().route_message(raw_msg)
        except Exception as e:  # noqa: BLE001 - one bad frame from upstream must not end the connection
            log.warning("%s: dropped a frame from upstream that is no OCPP message (%s)", self.id, type(e).__name__)

    async def _handle_call(self, msg: Any) -> None:
        # Upstream's call, passed on as it came (camelCase): no handler per action, the charger
        # session decides. An OCPPError raised here is answered as a CallError by the library.
        await validate_payload(msg, "1.6")
        answer = await self.upstream.on_call(msg.action, msg.payload)
        await self._send(msg.create_call_result(answer).to_json())


class Upstream:
    def __init__(self, identity: str, url: str, password: str | None, on_call: CallFromUpstream, *,
                 last_boot: Callable[[], dict | None], relay_timeout_s: float = RELAY_TIMEOUT_S,
                 backoff_s: tuple[float, float] = BACKOFF_S) -> None:
        self.identity = identity
        self.url = url.rstrip("/") + "/" + quote(identity, safe="")
        parts = urlsplit(self.url)  # as logged: without any user:password@ the URL might carry
        self.shown_url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        self._password = password
        self.on_call = on_call
        self._last_boot = last_boot
        self.relay_timeout_s = relay_timeout_s
        self.backoff_s = backoff_s
        self.link: _Link | None = None
        self.meter_every_s = 0.0  # upstream's own MeterValueSampleInterval: copies are thinned to it
        self._last_meter_copy = -float("inf")
        self._copies: set[asyncio.Task] = set()

    def __repr__(self) -> str:  # never the password
        return f"Upstream({self.identity!r}, {self.shown_url!r}, connected={self.link is not None})"

    async def run(self) -> None:
        """Connect, and again with backoff whenever the connection is lost; ends when cancelled."""
        delay = self.backoff_s[0]
        headers = {"Authorization": basic_header(self.identity, self._password)} if self._password else None
        while True:
            try:
                async with websockets.connect(self.url, subprotocols=[SUBPROTOCOL], additional_headers=headers,
                                              open_timeout=10, ping_interval=20, ping_timeout=20) as connection:
                    delay = self.backoff_s[0]
                    link = _Link(self, connection)
                    log.info("%s: connected to the upstream central system", self.identity)
                    reader = asyncio.ensure_future(link.start())
                    self.link = link
                    try:
                        await self._replay_boot(link)
                        await reader
                    finally:
                        self.link = None
                        reader.cancel()
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionClosed, websockets.InvalidHandshake, asyncio.TimeoutError) as e:
                # The URL but never the password (it is in a header, not in the URL or the error).
                log.warning("%s: upstream %s: %s; again in %g s", self.identity, self.shown_url,
                            type(e).__name__ if not str(e) else e, delay)
            else:
                log.warning("%s: upstream closed the connection; again in %g s", self.identity, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_s[1])

    async def _replay_boot(self, link: _Link) -> None:
        boot = self._last_boot()
        if boot is None:
            return
        try:
            await raw_call(link, "BootNotification", boot, self.relay_timeout_s)
        except (OCPPError, asyncio.TimeoutError) as e:
            log.warning("%s: upstream did not take the replayed BootNotification (%s)", self.identity,
                        type(e).__name__)

    async def relay(self, action: str, payload: dict) -> dict | None:
        """Upstream's answer to the charger's call, or None: the bridge answers it itself."""
        link = self.link
        if link is None:
            log.info("%s: upstream not connected: %s answered by the bridge", self.identity, action)
            return None
        try:
            return await asyncio.wait_for(raw_call(link, action, payload, self.relay_timeout_s),
                                          self.relay_timeout_s)
        except OCPPError as e:
            why = f"answered with {type(e).__name__}"
        except asyncio.TimeoutError:
            why = f"no answer within {self.relay_timeout_s:g} s"
        except ConnectionClosed:
            why = "the connection was lost"
        log.warning("%s: upstream %s to %s: answered by the bridge", self.identity, why, action)
        return None

    def copy(self, action: str, payload: dict) -> None:
        """Send the charger's message upstream too; its answer is not waited for by the charger."""
        link = self.link
        if link is None:
            return
        if action == "MeterValues" and self.meter_every_s:
            now = time.monotonic()
            if now - self._last_meter_copy < self.meter_every_s:
                return
            self._last_meter_copy = now
        task = asyncio.ensure_future(self._copy(link, action, payload))
        self._copies.add(task)
        task.add_done_callback(self._copies.discard)

    async def _copy(self, link: _Link, action: str, payload: dict) -> None:
        try:
            await raw_call(link, action, payload, self.relay_timeout_s)
        except (OCPPError, asyncio.TimeoutError, ConnectionClosed) as e:
            log.debug("%s: upstream's answer to the copied %s: %s", self.identity, action, type(e).__name__)


def cap_of(profile: dict) -> float | None:
    """The current a SetChargingProfile's `csChargingProfiles` limits to now, in A (its first period;
    W over 230 V per phase on its numberPhases, 3 when unsaid), or None when it names no limit."""
    schedule = profile.get("chargingSchedule") or {}
    periods = sorted(schedule.get("chargingSchedulePeriod") or [], key=lambda p: p.get("startPeriod", 0))
    if not periods:
        return None
    first = periods[0]
    limit = float(first["limit"])
    if str(schedule.get("chargingRateUnit", "A")).upper() == "W":
        limit /= 230.0 * int(first.get("numberPhases") or 3)
    return max(0.0, limit)
