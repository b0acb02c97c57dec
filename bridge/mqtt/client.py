"""The one wrapped paho client: MQTT v5, automatic reconnect, last will.

paho's network thread runs the callbacks; they only hand events to the
service's queue, so nothing slow or failing ever runs on it.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import SecretStr

log = logging.getLogger(__name__)

# The broker keeps the session (and queues QoS 1 commands) this long across a
# disconnect, so a command acknowledged to its sender is not lost to a blip.
SESSION_EXPIRY_S = 300

# MQTT v5 reason code the broker sends to the older of two connections with one client id.
SESSION_TAKEN_OVER = 142
# A connection the broker drops this soon after accepting it, three times in a row with
# every reconnect accepted at once, is taken as a client id in use elsewhere: mosquitto
# 2.0.11 closes the older connection without sending the reason, and two clients with one
# id then take it from each other every second or two. A broker that restarts refuses a
# reconnect attempt in between (it is away for a while), which clears the suspicion.
TAKEOVER_SUSPECT_S = 5.0
TAKEOVER_QUICK_DROPS = 3
# After a takeover the bridge waits this long before it takes the id back, doubling to the cap,
# so a duplicate client id costs a reconnect every few minutes, not one a second.
TAKEOVER_BACKOFF_S = (10, 300)
RECONNECT_DELAY_S = (1, 60)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None
    # MQTT v5 user properties (name, value): a sender may name itself there.
    user_properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Subscription:
    topic: str
    # A command must never be applied from a retained message: ask the broker not to
    # send retained messages at subscribe (MQTT v5 retain handling 2), and to keep the
    # retain flag of a live message as its publisher set it ("retain as published"), so
    # that a retained command published while the bridge runs can be told apart too.
    skip_retained: bool = False


class MqttClient:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        will_topic: str,
        will_payload: str = "offline",
        username: str | None = None,
        password: SecretStr | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        on_message: Callable[[Message], None],
        on_connection: Callable[[bool, str], None],
    ) -> None:
        self.host = host
        self.port = port
        self._on_message_cb = on_message
        self._on_connection_cb = on_connection
        self._subscriptions: list[Subscription] = []
        self.connected = False
        self.client_id = client_id
        self._connected_at: float | None = None
        self._quick_drops = 0
        self._takeovers = 0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self._client.will_set(will_topic, will_payload, qos=1, retain=True)
        _login(self._client, username, password, tls, ca_file)
        self._client.reconnect_delay_set(*RECONNECT_DELAY_S)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def __repr__(self) -> str:
        return f"MqttClient({self.host}:{self.port}, connected={self.connected})"

    def subscribe_on_connect(self, subscriptions: list[Subscription]) -> None:
        self._subscriptions = list(subscriptions)

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self.host,
            self.port,
            keepalive=30,
            # Never a clean start: resume the session the broker kept (subscriptions and
            # queued QoS 1 commands), also from a previous run. mosquitto 2.0 does not
            # persist across its own restart a session that began with clean start.
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def stop(self, final_topic: str | None = None, final_payload: str = "offline") -> None:
        """Publish the final state (the will is not sent on a clean disconnect) and disconnect."""
        try:
            if final_topic and self.connected:
                info = self._client.publish(final_topic, final_payload, qos=1, retain=True)
                info.wait_for_publish(timeout=3)
        except Exception as e:  # shutting down: report, never raise
            log.warning("could not publish %s on shutdown: %s", final_topic, e)
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = True, qos: int = 1,
                correlation_data: bytes | None = None) -> None:
        props = None
        if correlation_data is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation_data
        # While disconnected paho queues QoS 1 messages and sends them on reconnect.
        self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    # paho callbacks: run on paho's thread; they only hand over.
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.connected = False
            self._quick_drops = self._takeovers = 0
            self._on_connection_cb(False, str(reason_code))
            return
        self.connected = True
        self._connected_at = time.monotonic()
        # A takeover lengthened the wait; a broker restart later reconnects quickly again.
        client.reconnect_delay_set(*RECONNECT_DELAY_S)
        if self._subscriptions:
            client.subscribe(
                [
                    (s.topic, SubscribeOptions(qos=1, retainAsPublished=s.skip_retained,
                                               retainHandling=2 if s.skip_retained else 0))
                    for s in self._subscriptions
                ]
            )
        self._on_connection_cb(True, "connected")

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its `except OSError:`: the error says why
        # (refused, unreachable, certificate verify failed).
        error = sys.exc_info()[1]
        self.connected = False
        self._quick_drops = self._takeovers = 0  # the broker was away: not another client
        self._on_connection_cb(False, f"cannot connect to {self.host}:{self.port}: {error or 'unknown error'}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected = False
        lasted = None if self._connected_at is None else time.monotonic() - self._connected_at
        self._connected_at = None
        why = str(reason_code)
        if reason_code.value == SESSION_TAKEN_OVER:
            self._quick_drops = 0
            why = self._taken_over(client, "the broker says: Session taken over")
        elif (lasted is not None and lasted < TAKEOVER_SUSPECT_S and reason_code.is_failure
              and not flags.is_disconnect_packet_from_server):
            self._quick_drops += 1
            # Once taken over, the next quick drop is the other client taking the id back.
            if self._quick_drops >= TAKEOVER_QUICK_DROPS or self._takeovers:
                self._quick_drops = 0
                why = self._taken_over(
                    client, f"the broker closed the connection {lasted:.1f} s after accepting it, "
                    "as it does when another client connects with the same id")
        elif lasted is not None:
            self._quick_drops = 0
            self._takeovers = 0
        self._on_connection_cb(False, why)

    def _taken_over(self, client, evidence: str) -> str:
        """Wait longer before taking the client id back from the other client; the reason says so."""
        self._takeovers += 1
        first, cap = TAKEOVER_BACKOFF_S
        delay = min(cap, first * 2 ** (self._takeovers - 1))
        client.reconnect_delay_set(min_delay=delay, max_delay=delay)
        return (f"session taken over: another client uses MQTT client id {self.client_id!r} ({evidence}); "
                f"set MQTT_CLIENT_ID to a unique value; reconnecting in {delay} s "
                f"(takeover {self._takeovers} in a row)")

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        user = tuple((str(k), str(v)) for k, v in (getattr(props, "UserProperty", None) or ())) if props else ()
        try:
            self._on_message_cb(
                Message(msg.topic, bytes(msg.payload), bool(msg.retain), response_topic, correlation, user)
            )
        except Exception:  # a failing handler must never stop paho's loop
            log.exception("message handler failed for %s", msg.topic)


def _login(client: mqtt.Client, username: str | None, password: SecretStr | None, tls: bool,
           ca_file: str | None) -> None:
    if username:
        client.username_pw_set(username, password.get_secret_value() if password else None)
    if tls:
        client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)


def read_retained(host: str, port: int, topics: list[str], *, username: str | None = None,
                  password: SecretStr | None = None, tls: bool = False, ca_file: str | None = None,
                  timeout_s: float = 5.0) -> dict[str, bytes] | None:
    """The retained messages on `topics` (topic -> payload), read by a short-lived client of
    its own (its own client id, clean start, no will); None when the broker does not answer
    or refuses the connection within `timeout_s`.

    The broker sends a subscription's retained messages right after its acknowledgement and
    before it handles the next packet, at QoS 0 nothing holds them back: once a second
    subscription is acknowledged, all of the first one's retained messages are in."""
    found: dict[str, bytes] = {}
    done = threading.Event()
    answered: list[bool] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"chargeamps-check-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    _login(client, username, password, tls, ca_file)
    first_mid: list[int] = []

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            done.set()
            return
        first_mid.append(c.subscribe([(t, SubscribeOptions(qos=0)) for t in topics])[1])

    def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:
        if first_mid and mid == first_mid[0]:
            c.subscribe(topics[0], options=SubscribeOptions(qos=0, retainHandling=2))
        else:
            answered.append(True)
            done.set()

    def on_message(c, userdata, msg) -> None:
        if msg.retain:
            found[msg.topic] = bytes(msg.payload)

    client.on_connect = on_connect
    client.on_connect_fail = lambda c, userdata: done.set()
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect_async(host, port, keepalive=30, clean_start=True)
        client.loop_start()
        done.wait(timeout_s)
        return dict(found) if answered else None
    finally:
        client.disconnect()
        client.loop_stop()
