"""Home Assistant discovery: announces the bridge's entities, and again whenever
Home Assistant comes back online (it forgets what it was told when it restarts)."""

from __future__ import annotations

import json
import logging

from bridge import __version__
from bridge.config import Settings
from bridge.limits import default_current_range, max_a_range
from bridge.mqtt.client import Message, Subscription
from bridge.mqtt.discovery import (
    ALL_METER_POWER,
    Outlet,
    circuit_messages,
    discovery_messages,
    ha_status_topic,
    outlet_messages,
    retired_messages,
)
from bridge.mqtt.topics import Topics
from bridge.service.charger_link import ChargerLink, installation_limit
from bridge.service.publisher import StatePublisher

log = logging.getLogger(__name__)


class Discovery:
    def __init__(self, settings: Settings, topics: Topics, publisher: StatePublisher, link: ChargerLink,
                 links: list[ChargerLink] | None = None,
                 meter_power: tuple[bool, bool, bool, bool] = ALL_METER_POWER) -> None:
        self.settings = settings
        self.topics = topics
        self.publisher = publisher
        self.link = link
        self.links = links or [link]
        # Which meter power sensors the meter's configuration can fill (`MeterSource.gives_power`).
        self.meter_power = meter_power
        self.enabled = settings.ha_discovery
        self.status_topic = ha_status_topic(settings.ha_discovery_prefix)

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(self.status_topic)] if self.enabled else []

    def is_status(self, msg: Message) -> bool:
        return self.enabled and msg.topic == self.status_topic

    def home_assistant_online(self, msg: Message) -> bool:
        """Whether this status message says Home Assistant came (back) online."""
        if msg.payload.strip() != b"online":
            return False
        log.info("Home Assistant is online: re-publishing discovery and state")
        return True

    def announce(self) -> None:
        view = self.link.view
        if not self.enabled or not view.cp_id:
            return
        s = self.settings
        prefix, node = s.ha_discovery_prefix, self.topics.base
        max_a_min, max_a_max = max_a_range(s.balancer_min_current, s.balancer_fuse_a)
        # One default current for every connector: its range ends at the lowest installation current.
        default_min, default_max = default_current_range(s.balancer_min_current, installation_limit(self.links)[0])
        limits = {
            "max_a_min": max_a_min,
            "max_a_max": max_a_max,
            "default_current_min": default_min,
            "default_current_max": default_max,
        }
        # The entities' layout only (docs/integrations.md): with several connectors each has its own
        # entities and the site's set leaves out what they show. No rule depends on the count.
        several = len(self.links) > 1
        # First, so that Home Assistant has let go of a retired entity's unique_id before a
        # connector's entity that shares it is announced.
        for topic, empty in retired_messages(self.topics, prefix, node, view.cp_id, self.link.connector,
                                             several, self.meter_power):
            self.publisher.publish(topic, empty)
        for topic, payload in discovery_messages(
            self.topics, prefix, node, view.cp_id, self.link.connector,
            view.model, __version__, limits, several_connectors=several, meter_power=self.meter_power,
        ):
            self.publisher.publish(topic, json.dumps(payload))
        if several:
            self._announce_connectors(prefix, node)
        for topic, payload in circuit_messages(self.topics, prefix, node, [c.name for c in s.circuit_list()],
                                               view.cp_id, view.model, __version__):
            self.publisher.publish(topic, json.dumps(payload))

    def _announce_connectors(self, prefix: str, node: str) -> None:
        """Several connectors: each one's own entities, and each charge point's, on its device."""
        outlets = [Outlet(link.view.cp_id, link.connector, link.view.model, link.view.name,
                          link.view.installation_current)
                   for link in self.links if link.view.cp_id and link.ready]
        for topic, payload in outlet_messages(self.topics, prefix, node, outlets, __version__,
                                              self.settings.balancer_min_current):
            self.publisher.publish(topic, json.dumps(payload))
