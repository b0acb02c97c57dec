"""The P1 meter's readings, from MQTT to the balancer.

`MeterState` (pure) reads each message: which phases changed and to what
current, a live heartbeat, a retained value held for it, an invalid reading.
Here that goes to the balancer and out as retained topics; a bad payload is
counted and logged at most once a minute per topic. During a flood only the
newest reading per topic waits in the queue. `house_power` gives the power
limits the house's net power from the best input the meter has.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.balancer.sharing import SharedBalancer
from bridge.mqtt.client import Message, Subscription
from bridge.mqtt.meter import IMPORT, DemandReading, EnergyRegisters, MeterDemand, MeterSource, MeterState, PhaseValue
from bridge.mqtt.payloads import PayloadError, format_number
from bridge.mqtt.topics import Topics
from bridge.service.health import Health
from bridge.service.publisher import StatePublisher

log = logging.getLogger(__name__)

# Past this backlog a meter reading no longer queues: only the newest one per topic
# is kept (a reading is state, not an event), so a flood neither grows memory nor
# pushes commands out.
METER_BACKLOG_LIMIT = 5_000
BAD_PAYLOAD_LOG_EVERY_S = 60.0


# Where the house's net power came from, best first (shown in `capacity/state`).
FROM_TOTAL = "P1_POWER_TOPIC"
FROM_PHASE_POWERS = "phase powers"
FROM_CURRENTS = "currents x P1_VOLTAGE"


@dataclass(frozen=True)
class HousePower:
    """The house's net power in W (import positive) and the import the capacity guard counts."""

    net_w: float
    import_w: float
    source: str


def house_power(amps: Sequence[float], voltage: float, phase_powers: Sequence[float | None] = (None, None, None),
                total_w: float | None = None) -> HousePower:
    """The whole house's net power when the meter gives it, else each phase's net power, or
    its current times `voltage` where the meter gives no power. A phase known only by its
    current counts its export as no import: a P1 current often has no sign, and an import
    taken for export would let the car past the capacity limit."""
    if total_w is not None:
        return HousePower(total_w, max(0.0, total_w), FROM_TOTAL)
    net_w = import_w = 0.0
    for a, p in zip(amps, phase_powers):
        if p is None:
            net_w += a * voltage
            import_w += max(0.0, a * voltage)
        else:
            net_w += p
            import_w += p
    source = FROM_CURRENTS if all(p is None for p in phase_powers) else FROM_PHASE_POWERS
    return HousePower(net_w, max(0.0, import_w), source)


class MeterInput:
    def __init__(self, meter: MeterSource, balancer: SharedBalancer, health: Health, *, fuse_a: float,
                 stale_after_s: float, publisher: StatePublisher, topics: Topics,
                 registers: EnergyRegisters | None = None, demand: MeterDemand | None = None) -> None:
        self.meter = meter
        self.state = MeterState(meter, fuse_a=fuse_a, stale_after_s=stale_after_s)
        self.registers = registers if registers is not None else EnergyRegisters(())
        self.registers_at: float | None = None  # when a register last changed
        self.demand = demand if demand is not None else MeterDemand(())
        self.demand_at: float | None = None  # when a demand figure was last read
        self.balancer = balancer
        self.health = health
        self.publisher = publisher
        self.topics = topics
        self.last_at: float | None = None
        self._total: tuple[float, float] | None = None  # (W, when heard)
        self._bad_payload_logged: dict[str, float] = {}
        self._overflow: dict[str, Message] = {}
        self._overflow_lock = threading.Lock()

    def subscriptions(self) -> list[Subscription]:
        topics = dict.fromkeys([*self.meter.subscriptions(), *self.registers.topics(), *self.demand.topics()])
        return [Subscription(t) for t in topics]

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
        extra = False
        for figures, when in ((self.registers, "registers_at"), (self.demand, "demand_at")):
            if msg.topic in figures.topics():
                extra = True
                try:
                    if figures.on_message(msg.topic, msg.payload):
                        setattr(self, when, now)
                except PayloadError as e:
                    self._bad_payload(msg.topic, str(e), now)
        if extra and not self.meter.inputs_on(msg.topic):
            return False  # a register's or a demand figure's own topic
        update = self.state.on_message(msg.topic, msg.payload, msg.retain, now)
        if update.invalid is not None:
            self._bad_payload(msg.topic, update.invalid, now)
            return False
        if update.note:
            log.info("%s", update.note)
        if update.gap:
            log.warning("%s", update.gap)
        for value in update.phases:
            self._reading(now, value)
        if update.heartbeat:
            # After the phases: a heartbeat vouches only for phases that have a value.
            self._alive(now)
        if update.total_power_w is not None:
            self._total = (update.total_power_w, now)
            self.publisher.publish(self.topics.meter_power_total, format_number(round(update.total_power_w, 1)))
        if update.phases or update.heartbeat:
            self.last_at = now
        return bool(update.phases)

    def _reading(self, now: float, value: PhaseValue) -> None:
        self.balancer.meter(now, value.phase, value.amps)
        if value.power_w is not None:
            self.publisher.publish(self.topics.meter_power(value.phase), format_number(round(value.power_w, 1)))

    def _alive(self, now: float) -> None:
        self.balancer.meter_alive(now)

    def _bad_payload(self, topic: str, why: str, now: float) -> None:
        self.health.invalid_meter_payloads += 1
        last = self._bad_payload_logged.get(topic)
        if last is None or now - last >= BAD_PAYLOAD_LOG_EVERY_S:
            self._bad_payload_logged[topic] = now
            log.warning("ignored meter payload on %s: %s", topic, why)

    def import_register(self) -> tuple[float, float] | None:
        """The meter's import register (kWh, its tariffs summed) and when a register last changed."""
        kwh = self.registers.total_kwh(IMPORT)
        return None if kwh is None or self.registers_at is None else (kwh, self.registers_at)

    def demand_figure(self, kind: str) -> tuple[DemandReading, float] | None:
        """The meter's own demand figure of `kind` (DEMAND, MONTH_PEAK) and when a figure was last read."""
        reading = self.demand.value(kind)
        return None if reading is None or self.demand_at is None else (reading, self.demand_at)

    def house_power(self, now: float, amps: Sequence[float], voltage: float) -> HousePower:
        """The house's net power now, given the balancer's phase currents: the whole house's
        power while it is no older than the stale limit, else the phases'."""
        total_w = None
        if self._total is not None and now - self._total[1] <= self.state.stale_after_s:
            total_w = self._total[0]
        values = [self.state.phase_value(p) for p in range(3)]
        return house_power(amps, voltage, [None if v is None else v.power_w for v in values], total_w)

    def age_s(self, now: float) -> float | None:
        return None if self.last_at is None else round(now - self.last_at, 1)


class CircuitMeterInput(MeterInput):
    """A circuit's own meter (CIRCUIT_<NAME>_TOPIC_L1..3): read as the P1 meter is, its readings go to
    the balancer as that circuit's (its topics `circuit/<name>/...` come with the decision)."""

    def __init__(self, name: str, meter: MeterSource, balancer: SharedBalancer, health: Health, *,
                 fuse_a: float, stale_after_s: float, publisher: StatePublisher, topics: Topics) -> None:
        super().__init__(meter, balancer, health, fuse_a=fuse_a, stale_after_s=stale_after_s,  # type: ignore[arg-type]
                         publisher=publisher, topics=topics)
        self.name = name
        balancer.circuit_metered(name)

    def _reading(self, now: float, value: PhaseValue) -> None:
        self.balancer.circuit_meter(now, self.name, value.phase, value.amps)  # type: ignore[attr-defined]

    def _alive(self, now: float) -> None:
        self.balancer.circuit_meter_alive(now, self.name)  # type: ignore[attr-defined]
