"""The real collaborators of the service, built from Settings."""

from __future__ import annotations

from typing import Callable

from bridge.config import Settings
from bridge.eapi import EapiClient, client_from_settings
from bridge.mqtt.client import Message, MqttClient
from bridge.mqtt.topics import Topics
from bridge.state import RuntimeStore

# Builds the MQTT client once the service has its callbacks: (on_message, on_connection) -> client.
MqttFactory = Callable[[Callable[[Message], None], Callable[[bool, str], None]], MqttClient]


def cloud_client(settings: Settings) -> EapiClient:
    return client_from_settings(settings, long_running=True)


def mqtt_factory(settings: Settings) -> MqttFactory:
    def build(on_message: Callable[[Message], None], on_connection: Callable[[bool, str], None]) -> MqttClient:
        return MqttClient(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_client_id,
            will_topic=Topics(settings.mqtt_base_topic).bridge_state,
            username=settings.mqtt_username,
            password=settings.mqtt_password,
            tls=settings.mqtt_tls,
            ca_file=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
            on_message=on_message,
            on_connection=on_connection,
        )

    return build


def runtime_store(settings: Settings) -> RuntimeStore:
    return RuntimeStore(settings.runtime_file)
