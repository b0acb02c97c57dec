"""The P1 meter's readings, from MQTT to the balancer.

A heartbeat proves the meter alive; a retained value (unknown age) proves
nothing; a bad payload is counted and logged at most once a minute per topic.
During a flood only the newest reading per topic waits in the queue.
"""

from __future__ import annotations

import logging
import threading

from bridge.balancer import Balancer
from bridge.mqtt.client import Message, Subscription
from bridge.mqtt.meter import MeterSource
from bridge.mqtt.payloads import PayloadError
from bridge.service.health import Health

log = logging.getLogger(__name__)

# Past this backlog a meter reading no longer queues: only the newest one per topic
# is kept (a reading is state, not an event), so a flood neither grows memory nor
# pushes commands out.
METER_BACKLOG_LIMIT = 5_000
BAD_PAYLOAD_LOG_EVERY_S = 60.0


class MeterInput:
    def __init__(self, meter: MeterSource, balancer: Balancer, health: Health) -> None:
        self.meter = meter
        self.balancer = balancer
        self.health = health
        self.last_at: float | None = None
        self._bad_payload_logged: dict[str, float] = {}
        self._overflow: dict[str, Message] = {}
        self._overflow_lock = threading.Lock()

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(t) for t in self.meter.subscriptions()]

    # ---- on paho's thread -------------------------------------------------------

    def hold(self, msg: Message, backlog: int) -> bool:
        """During a flood (`backlog` queued events): keep only the newest reading per
        topic, here instead of in the queue. False when the message should queue."""
        if backlog < METER_BACKLOG_LIMIT:
            return False
        with self._overflow_lock:
            if msg.topic in self._overflow:
                self.health.meter_readings_superseded += 1  # superseded by this newer reading
            self._overflow[msg.topic] = msg
        return True

    # ---- on the worker ---------------------------------------------------------------

    def take_held(self) -> list[Message]:
        with self._overflow_lock:
            held, self._overflow = list(self._overflow.values()), {}
        return held

    def receive(self, msg: Message, now: float) -> bool:
        """Hand a meter message to the balancer; True when it brought live readings."""
        if self.meter.is_heartbeat(msg.topic):
            if not msg.retain:
                self.balancer.meter_alive(now)
                self.last_at = now
            return False
        try:
            readings = self.meter.parse(msg.topic, msg.payload)
        except PayloadError as e:
            self.health.invalid_meter_payloads += 1
            last = self._bad_payload_logged.get(msg.topic)
            if last is None or now - last >= BAD_PAYLOAD_LOG_EVERY_S:
                self._bad_payload_logged[msg.topic] = now
                log.warning("ignored meter payload on %s: %s", msg.topic, e)
            return False
        if msg.retain:
            # A retained value has unknown age: it proves nothing about the meter now.
            log.info("retained meter value on %s not used (unknown age); waiting for a live one", msg.topic)
            return False
        for phase, amps in readings:
            self.balancer.meter(now, phase, amps)
        self.last_at = now
        return True

    def age_s(self, now: float) -> float | None:
        return None if self.last_at is None else round(now - self.last_at, 1)
