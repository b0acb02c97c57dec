"""The P1 meter's readings, from MQTT to the balancer.

`MeterState` (pure) reads each message: which phases changed and to what
current, a live heartbeat, a retained value held for it, an invalid reading.
Here that goes to the balancer and out as retained topics; a bad payload is
counted and logged at most once a minute per topic. During a flood only the
newest reading per topic waits in the queue.
"""

from __future__ import annotations

import logging
import threading

from bridge.balancer import Balancer
from bridge.mqtt.client import Message, Subscription
from bridge.mqtt.meter import MeterSource, MeterState
from bridge.mqtt.payloads import format_number
from bridge.mqtt.topics import Topics
from bridge.service.health import Health
from bridge.service.publisher import StatePublisher

log = logging.getLogger(__name__)

# Past this backlog a meter reading no longer queues: only the newest one per topic
# is kept (a reading is state, not an event), so a flood neither grows memory nor
# pushes commands out.
METER_BACKLOG_LIMIT = 5_000
BAD_PAYLOAD_LOG_EVERY_S = 60.0


class MeterInput:
    def __init__(self, meter: MeterSource, balancer: Balancer, health: Health, *, fuse_a: float,
                 stale_after_s: float, publisher: StatePublisher, topics: Topics) -> None:
        self.meter = meter
        self.state = MeterState(meter, fuse_a=fuse_a, stale_after_s=stale_after_s)
        self.balancer = balancer
        self.health = health
        self.publisher = publisher
        self.topics = topics
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
        """Hand a meter message to the balancer; True when it brought live phase readings."""
        update = self.state.on_message(msg.topic, msg.payload, msg.retain, now)
        if update.invalid is not None:
            self.health.invalid_meter_payloads += 1
            last = self._bad_payload_logged.get(msg.topic)
            if last is None or now - last >= BAD_PAYLOAD_LOG_EVERY_S:
                self._bad_payload_logged[msg.topic] = now
                log.warning("ignored meter payload on %s: %s", msg.topic, update.invalid)
            return False
        if update.note:
            log.info("%s", update.note)
        if update.gap:
            log.warning("%s", update.gap)
        for value in update.phases:
            self.balancer.meter(now, value.phase, value.amps)
            if value.power_w is not None:
                self.publisher.publish(self.topics.meter_power(value.phase), format_number(round(value.power_w, 1)))
        if update.heartbeat:
            # After the phases: a heartbeat vouches only for phases that have a value.
            self.balancer.meter_alive(now)
        if update.total_power_w is not None:
            self.publisher.publish(self.topics.meter_power_total, format_number(round(update.total_power_w, 1)))
        if update.phases or update.heartbeat:
            self.last_at = now
        return bool(update.phases)

    def age_s(self, now: float) -> float | None:
        return None if self.last_at is None else round(now - self.last_at, 1)
