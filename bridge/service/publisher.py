"""Publishes the bridge's state as retained MQTT topics, each only when its value changed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from bridge.balancer.sharing import ConnectorDecision, SharedDecision, split_key
from bridge.mqtt.client import Message, MqttClient
from bridge.mqtt.payloads import format_bool, format_number
from bridge.mqtt.topics import Topics
from bridge.service.charger_link import ChargerView
from bridge.state import RuntimeSettings
from bridge.units import format_kw

# Countdowns ("12 s left", "3/10 s", "silent 5 s", "2 min") and measured values (any decimal
# number) change every second while a reason's meaning stays: a stale meter's reason would go out
# again each second to every retained subscriber.
_COUNTERS = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)? (?:s|min)\b|-?\d+\.\d+")


# A countdown in a reason: "(240 s left)", "in 5 s", "held 42/60 s". Where a text has one, the
# connector's state says when it ends (`until`), so that the text need not go out each second.
_COUNTDOWN = re.compile(r"(\d+) s left\b|\bin (\d+) s\b|\b(\d+)/(\d+) s\b")
# A countdown read again a second later ends at the same moment, give or take its rounding: `until`
# moves only when the end moved by more than this.
UNTIL_SLACK_S = 2.0


def countdown_s(text: str) -> float | None:
    """The seconds left of the first countdown in `text`, or None."""
    m = _COUNTDOWN.search(text)
    if m is None:
        return None
    left, within, done, whole = m.groups()
    if done is not None:
        return max(0.0, float(whole) - float(done))
    return float(left if left is not None else within)


def meaning(text: str) -> str:
    """`text` without its countdowns and measured values: two texts that differ only in those say
    the same thing (a whole number of amps, a setting, stays)."""
    return _COUNTERS.sub("#", text)


@dataclass(frozen=True)
class _ConnectorTopics:
    """A connector's topics that each decision publishes, named once."""

    charge_at: str
    priority: str
    reason: str
    paused: str
    default_current: str
    state: str

    @classmethod
    def of(cls, t: Topics, cp: str, n: int) -> "_ConnectorTopics":
        return cls(t.charger_charge_at(cp, n), t.charger_priority(cp, n), t.charger_reason(cp, n),
                   t.charger_paused(cp, n), t.charger_default_current(cp, n), t.charger_state(cp, n))


@dataclass(frozen=True)
class _ConnectorFrom:
    """What a connector's topics were last published from: its decision, charge mode, default current
    and `until`; the seconds its reason's countdown had left; its topics."""

    made_from: tuple
    left_s: float | None
    topics: _ConnectorTopics


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class StatePublisher:
    def __init__(self, mqtt: MqttClient, topics: Topics, *, wall: Callable[[], datetime] = _utc_now,
                 real_seconds: Callable[[float], float] = lambda s: s) -> None:
        """`wall` tells the time of day (a connector's `until`); `real_seconds` how long seconds of the
        balancer's clock really take (the demo's runs faster)."""
        self.mqtt = mqtt
        self.topics = topics
        self.wall = wall
        self.real_seconds = real_seconds
        self._published: dict[str, str] = {}
        # The meaning of what was sent on a topic, with the payload it is the meaning of.
        self._meanings: dict[str, tuple[str, str]] = {}
        self._until: dict[str, datetime] = {}
        # What the site's and each connector's topics were last published from. A site decides on every
        # meter reading and every tick, and most change nothing: those publish nothing, and are not
        # formatted, encoded or read for their meaning either.
        self._site_from: tuple | None = None
        self._connectors_from: dict[tuple[str, int], _ConnectorFrom] = {}
        self._charge_mode_topics: dict[tuple[str, int], str] = {}

    def publish_meaning(self, topic: str, payload: str) -> None:
        """Retained, when `payload` means something else than what was sent (its countdowns and
        measured values aside)."""
        sent = self._published.get(topic)
        if sent == payload:
            return
        new = meaning(payload)
        if sent is not None:
            known = self._meanings.get(topic)
            if (known[1] if known is not None and known[0] == sent else meaning(sent)) == new:
                return
        self.publish(topic, payload)
        self._meanings[topic] = (payload, new)

    def publish(self, topic: str, payload: str, force: bool = False) -> None:
        """Retained; skipped when the broker already has this value from us, unless `force`."""
        if not force and self._published.get(topic) == payload:
            return
        if force:
            self._forget_sources()  # a value restated may be one of theirs: the next decision looks again
        self._published[topic] = payload
        self.mqtt.publish(topic, payload)

    def forget(self) -> None:
        """After a (re)connect, or when Home Assistant restarts: the next publish sends everything."""
        self._published.clear()
        self._forget_sources()

    def _forget_sources(self) -> None:
        self._site_from = None
        self._connectors_from.clear()

    def answer(self, msg: Message, status: str, value: Any, error: str | None) -> None:
        """The answer to a command: on `bridge/response`, and on the sender's MQTT v5 response topic."""
        answer = json.dumps({"topic": msg.topic, "status": status, "value": value, "error": error})
        self.mqtt.publish(self.topics.response, answer, retain=False)
        if msg.response_topic:
            self.mqtt.publish(msg.response_topic, answer, retain=False, correlation_data=msg.correlation_data)

    def health(self, health: dict[str, Any]) -> None:
        # Always sent: meter age and queue change with every report.
        self.mqtt.publish(self.topics.bridge_health, json.dumps(health))

    def info(self, info: dict[str, Any]) -> None:
        self.publish(self.topics.bridge_info, json.dumps(info))

    def balancer(self, d: SharedDecision, runtime: RuntimeSettings,
                 where: dict[str, tuple[str, int]] | None = None) -> None:
        """The decision; `charge_at` is the connectors' sum, and each connector has its own ChargeAt,
        priority, reason, paused and default current, under its charge point and number (`where`, by
        the balancer's key; None: the key's own)."""
        one = len(d.connectors) == 1
        site = (d, runtime.enabled, runtime.max_a, runtime.default_current,
                runtime.charge_mode_of(d.connectors[0].key) if one else None)
        if site != self._site_from:
            self._site(d, runtime)
            self._site_from = site
        for c in d.connectors:
            if where is not None and c.key not in where:
                continue  # its charge point is not known yet
            cp, n = split_key(c.key) if where is None else where[c.key]
            self.connector(cp, n, c, runtime.charge_mode_of(c.key), runtime.default_current_of(c.key))

    def _site(self, d: SharedDecision, runtime: RuntimeSettings) -> None:
        t = self.topics
        self.publish(t.charge_at, format_number(d.charge_at))
        for i in range(3):
            self.publish(t.loadbal(i), format_number(round(d.loadbal[i], 2)))
            current = d.phase_currents[i]
            if current is not None:
                self.publish(t.meter_current(i), format_number(round(current, 2)))
        self.runtime(runtime)
        if not d.waiting_for_meter:
            # Before the meter's first reading (or the end of the start-up wait) nothing is known:
            # no OFF, so that Home Assistant shows unknown rather than a healthy meter.
            self.publish(t.meter_stale, format_bool(d.meter_stale))
        self.publish(t.balancer_paused, format_bool(d.paused))
        state = d.to_dict()
        if len(d.connectors) == 1:
            for entry in state["connectors"]:
                entry["charge_mode"] = runtime.charge_mode_of(d.connectors[0].key)
        state["enabled"] = runtime.enabled
        state["max_a"] = runtime.max_a
        state["default_current"] = runtime.default_current
        self.publish(t.balancer_state, json.dumps(state))
        self.circuits(d)

    def connector(self, cp: str, n: int, c: ConnectorDecision, charge_mode: str, default_current: int) -> None:
        """A connector's ChargeAt, priority, reason, paused, default current and `charger/<cp>/<n>/state`
        (its detail, sent when its meaning changes; a countdown in its reason is told by `until`, the
        moment it ends, not by a message a second). Nothing is done when they would be made from what
        they were last made from (`until` included)."""
        last = self._connectors_from.get((cp, n))
        topics = last.topics if last is not None else _ConnectorTopics.of(self.topics, cp, n)
        # Its countdown is read from the reason's text once, not at every reading that kept the text.
        left = last.left_s if last is not None and last.made_from[0].reason == c.reason else countdown_s(c.reason)
        until = self._until_text(topics.state, left)
        made_from = (c, charge_mode, default_current, until)
        if last is not None and last.made_from == made_from:
            return
        self.publish(topics.charge_at, format_number(c.charge_at))
        self.publish(topics.priority, str(c.priority))
        self.publish_meaning(topics.reason, c.reason)
        self.publish(topics.paused, format_bool(c.paused))
        self.publish(topics.default_current, format_number(default_current))
        state = {**c.to_dict(), "chargepoint": cp, "connector": n, "paused": c.paused, "charge_mode": charge_mode,
                 "until": until}
        self.publish_meaning(topics.state, json.dumps(state))
        self._connectors_from[(cp, n)] = _ConnectorFrom(made_from, left, topics)

    def charge_mode(self, cp: str, n: int, mode: str) -> None:
        """`charger/<cp>/<n>/charge_mode` (its topic named once: it is published at every decision)."""
        topic = self._charge_mode_topics.get((cp, n))
        if topic is None:
            topic = self._charge_mode_topics[(cp, n)] = self.topics.charge_mode(cp, n)
        self.publish(topic, mode)

    def _until_text(self, topic: str, left_s: float | None) -> str | None:
        if left_s is None:
            self._until.pop(topic, None)
            return None
        until = self.wall().astimezone(timezone.utc) + timedelta(seconds=self.real_seconds(left_s))
        sent = self._until.get(topic)
        if sent is not None and abs((until - sent).total_seconds()) <= UNTIL_SLACK_S:
            until = sent
        self._until[topic] = until
        return until.isoformat(timespec="seconds")

    def circuits(self, d: SharedDecision) -> None:
        """Each circuit's load and headroom per phase (a phase of a stale meter is left as it was)
        and its limit."""
        t = self.topics
        for r in d.circuits:
            self.publish(t.circuit_max_a(r.name), format_number(r.max_a))
            for p, (current, free) in enumerate(zip(r.current, r.headroom())):
                if current is not None and free is not None:
                    self.publish(t.circuit_current(r.name, p), format_number(round(current, 2)))
                    self.publish(t.circuit_headroom(r.name, p), format_number(round(free, 2)))

    def runtime(self, runtime: RuntimeSettings) -> None:
        t = self.topics
        self.publish(t.max_a, format_number(runtime.max_a))
        self.publish(t.default_current, format_number(runtime.default_current))
        self.publish(t.enabled, format_bool(runtime.enabled))

    def charger(self, c: ChargerView, n: int) -> None:
        if not c.cp_id or c.polls == 0 and c.max_current is None:
            return
        t = self.topics
        if c.online is not None:
            self.publish(t.charger_online(c.cp_id), format_bool(c.online))
        if c.status is not None:
            self.publish(t.charger_status(c.cp_id, n), c.status)
        if c.max_current is not None:
            self.publish(t.charger_max_current(c.cp_id, n), format_number(c.max_current))
        if c.mode is not None:
            self.publish(t.charger_mode(c.cp_id, n), c.mode)
        for i in range(3):
            self.publish(t.charger_current(c.cp_id, n, i), format_number(round(c.currents[i], 2)))
        self.publish(t.charger_power_kw(c.cp_id, n), format_kw(c.power_kw))
        self.publish(t.charger_session_energy_kwh(c.cp_id, n), format_number(round(c.session_energy_kwh, 3)))
