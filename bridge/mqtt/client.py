"""The one wrapped paho client: MQTT v5, automatic reconnect, last will.

paho's network thread runs the callbacks; they only hand events to the
service's queue, so nothing slow or failing ever runs on it.
"""

from __future__ import annotations

import logging
import ssl
import sys
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
    # A command must never be applied from a retained message: ask the broker
    # not to send retained messages at subscribe (MQTT v5 retain handling 2).
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
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self._client.will_set(will_topic, will_payload, qos=1, retain=True)
        if username:
            self._client.username_pw_set(username, password.get_secret_value() if password else None)
        if tls:
            self._client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._client.reconnect_delay_set(min_delay=1, max_delay=60)
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
            self._on_connection_cb(False, str(reason_code))
            return
        self.connected = True
        if self._subscriptions:
            client.subscribe(
                [
                    (s.topic, SubscribeOptions(qos=1, retainHandling=2 if s.skip_retained else 0))
                    for s in self._subscriptions
                ]
            )
        self._on_connection_cb(True, "connected")

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its `except OSError:`: the error says why
        # (refused, unreachable, certificate verify failed).
        error = sys.exc_info()[1]
        self.connected = False
        self._on_connection_cb(False, f"cannot connect to {self.host}:{self.port}: {error or 'unknown error'}")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected = False
        self._on_connection_cb(False, str(reason_code))

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
