"""The service: wires the meter input, the balancer, the charger link, the
commands, the state publisher and discovery, and runs them on one worker.

paho's network thread only enqueues events. One worker thread owns all state:
it parses, runs the balancer and publishes. The cloud's calls run beside it
(`cloud_calls`), and their answers come back to it as events.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import dataclasses
from dataclasses import asdict
from typing import Any

from bridge import __version__
from bridge.balancer.sharing import (DEFAULT_PRIORITY, ConnectorSpec, ConnectorView, SharedBalancer, SharedDecision,
                                     amps_of)
from bridge.config import ConfigError, Settings
from bridge.eapi import EapiClient
from bridge.instance import instance_id
from bridge.mqtt.client import Message, Subscription
from bridge.mqtt.meter import MeterConfigError
from bridge.mqtt.topics import Topics
from bridge.service import factory
from bridge.service.backoff import CloudBackoff
from bridge.service.charger_link import ChargerLink, installation_limit
from bridge.service.clock import Clock, MonotonicClock, local_seconds
from bridge.service.cloud_calls import CloudCalls
from bridge.service.commands import CommandBudget, CommandHandler, describe_sender
from bridge.service.discovery import Discovery
from bridge.service.health import Health
from bridge.service.meter_input import CircuitMeterInput, MeterInput
from bridge.service.power_limits import PowerLimits
from bridge.service.publisher import StatePublisher
from bridge.service.runtime import RuntimeKeeper
from bridge.state import ControlMethodStore, RuntimeStore

log = logging.getLogger(__name__)

TICK_S = 1.0
# The charge point of a connector CHARGEAMPS_CONNECTORS does not list, until the cloud names it.
UNKNOWN_CHARGEPOINT = "unnamed"
# `bridge/health` goes out at least every 10 s: due this long after the last one (any cause), with
# half a second to spare for a worker that is handling an event when it falls due.
HEALTH_EVERY_S = 9.5


class BridgeService:
    """Lifecycle, the event queue, the worker and the signals. Every collaborator
    can be passed in; what is not is built from `settings` (see `factory`)."""

    def __init__(self, settings: Settings, *, cloud: EapiClient | None = None,
                 mqtt: factory.MqttFactory | None = None, clock: Clock | None = None,
                 backoff: CloudBackoff | None = None, store: RuntimeStore | None = None,
                 command_budget: CommandBudget | None = None, wall_clock: Any = None) -> None:
        self.settings = settings
        self.clock = clock or MonotonicClock()
        self.topics = Topics(settings.mqtt_base_topic)
        try:
            meter = settings.meter_source()
        except MeterConfigError as e:
            raise ConfigError(str(e)) from None
        self.health = Health()
        self.keeper = RuntimeKeeper(store or factory.runtime_store(settings), settings)
        self.runtime = self.keeper.restore()
        self.health.last_error = self.keeper.last_error  # a corrupt or unreadable state file
        cfg = settings.balancer_config(max_a=self.runtime.max_a, default_current=self.runtime.default_current)
        specs = [dataclasses.replace(s, priority=self.runtime.priorities.get(s.key, DEFAULT_PRIORITY))
                 for s in settings.connector_specs() or [self._unlisted_connector(settings)]]
        # One balancer, for one connector or several; those on circuits keep to the tree.
        self.balancer = SharedBalancer(cfg, specs, settings.balancer_strategy, circuits=settings.circuit_list())
        self._own_default_currents(self.balancer)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stop_event = threading.Event()
        self.decision: SharedDecision | None = None
        self._next_health = 0.0
        # A configuration error the cloud's first answer showed (a listed connector that is not there):
        # the service stops, and `run` exits 2 naming it.
        self.config_error: str | None = None
        self._cloud_unchecked_said = False
        self.mqtt = (mqtt or factory.mqtt_factory(settings))(
            self._enqueue_message, lambda ok, why: self._enqueue("connection", (ok, why)))
        # A connector's `until` on the site's wall clock (the power limits' own, so a test can move it).
        self.publisher = StatePublisher(self.mqtt, self.topics, wall=lambda: self.power.wall(),
                                        real_seconds=self.clock.real_seconds)
        self.meter_input = MeterInput(meter, self.balancer, self.health, fuse_a=settings.balancer_fuse_a,
                                      stale_after_s=settings.balancer_stale_after_s, publisher=self.publisher,
                                      topics=self.topics, registers=settings.energy_registers(),
                                      demand=settings.meter_demand())
        # Each circuit's own meter, by the topics it reads (only where the balancer knows the tree).
        self.circuit_inputs: dict[str, CircuitMeterInput] = {}
        for name, source in settings.circuit_meter_sources().items():
            circuit_input = CircuitMeterInput(
                name, source, self.balancer, self.health, fuse_a=settings.balancer_fuse_a,
                stale_after_s=settings.balancer_stale_after_s, publisher=self.publisher, topics=self.topics)
            for topic in source.subscriptions():
                self.circuit_inputs[topic] = circuit_input
        self.power = PowerLimits(settings, self.topics, self.publisher, self.balancer, self.runtime,
                                 meter=self.meter_input, wall=wall_clock)
        if self.power.last_error:
            self.health.last_error = self.power.last_error
        self._align_turns()
        self._cloud = cloud or factory.cloud_client(settings)
        self._backoff = backoff
        # One queue, budget and backoff for the whole account's cloud calls.
        # The organisation's statuses are the cloud's: over OCPP the chargers tell their own.
        org = settings.chargeamps_organisation_id if settings.charger_transport != "ocpp" else None
        self.calls = CloudCalls(self.clock, self._enqueue, per_minute=settings.chargeamps_requests_per_min,
                                poll_interval=settings.chargeamps_poll_interval,
                                backoff=dataclasses.replace(backoff) if backoff else None,
                                organisation_id=str(org) if org else None)
        # CHARGER_TRANSPORT=ocpp: the chargers connect to the bridge; its thread only enqueues.
        self.central = None
        self.control_methods: ControlMethodStore | None = None
        if settings.charger_transport == "ocpp":
            from bridge.ocpp.link import central_system

            self.control_methods = ControlMethodStore(settings.ocpp_file)
            self.central = central_system(settings, lambda event: self._enqueue("ocpp", event),
                                          methods=self.control_methods.load())
            self.health.last_error = self.control_methods.last_error or self.health.last_error

        where: dict[str, Any] = {}
        if not settings.connector_specs() and "chargeamps_connector_id" not in settings.model_fields_set \
                and settings.balancer_strategy == "adaptive":
            # Neither setting names the connector: every car connector of the charge point.
            where["on_car_connectors"] = self._share_charge_point
        self.links = self._links(specs, backoff, listed=bool(settings.connector_specs()), **where)
        self.link = self.links[0]
        self.discovery = Discovery(settings, self.topics, self.publisher, self.link, self.links,
                                   meter_power=(*(meter.gives_power(p) for p in range(3)), meter.gives_power(None)))
        self.commands = CommandHandler(
            settings, self.topics, self.runtime, self.keeper, self.balancer, self.link, self.health, self.clock,
            decide=self._decide_and_apply, on_health=self._publish_health, budget=command_budget,
            links=self.links, power=self.power,
        )
        self.mqtt.subscribe_on_connect(self._subscriptions())

    def _link(self, inputs: Any, link_backoff: CloudBackoff, **where: Any) -> ChargerLink:
        link_type, remote = ChargerLink, self._cloud
        if self.central is not None:
            from bridge.ocpp.link import OcppLink

            link_type, remote = OcppLink, self.central
        return link_type(
            self.settings, remote, inputs, self.health, self.clock, link_backoff,
            on_change=self._publish_charger, on_health=self._publish_health, on_identified=self._identified,
            on_installation_current=self._installation_current_known, enabled=lambda: self.runtime.enabled,
            **({"calls": self.calls} if self.central is None else {}), **where,
        )

    def _links(self, specs: list[ConnectorSpec], backoff: CloudBackoff | None, *, listed: bool = True,
               **where: Any) -> list[ChargerLink]:
        """Each connector its own link, backoff and write pacing: one failing does not stop the others.
        A connector not listed is found on the charge point (the first link's backoff is the one given)."""
        links = []
        for i, s in enumerate(specs):
            link_backoff = (backoff if i == 0 else dataclasses.replace(backoff)) if backoff else CloudBackoff()
            named = dict(chargepoint=s.chargepoint, connector=s.connector, listed=True) if listed else {}
            links.append(self._link(ConnectorView(self.balancer, s.key), link_backoff, **named, **where))
        self.calls.links = len(links)
        return links

    @staticmethod
    def _unlisted_connector(settings: Settings) -> ConnectorSpec:
        """The connector when CHARGEAMPS_CONNECTORS lists none: named after the charge point once the
        cloud has said which it is (`_identified`)."""
        chargepoint = settings.chargeamps_chargepoint_id or UNKNOWN_CHARGEPOINT
        return ConnectorSpec(f"{chargepoint}:{settings.chargeamps_connector_id}")

    def _share_charge_point(self, now: float, cp: str, cars: list[int]) -> bool:
        """No connector configured and the charge point has several car outlets (an Aura): they share
        one fuse, so all of them are balanced together from now on. The new links connect on the next tick."""
        specs = [ConnectorSpec(f"{cp}:{n}", priority=self.runtime.priorities.get(f"{cp}:{n}", DEFAULT_PRIORITY))
                 for n in cars]
        cfg = dataclasses.replace(self.balancer.config, installation_current=None)  # per connector, read at connect
        self.balancer = SharedBalancer(cfg, specs, self.settings.balancer_strategy)
        self._own_default_currents(self.balancer)
        self._align_turns()
        self.decision = None
        self.links = self._links(specs, self._backoff)
        self.link = self.links[0]
        self.meter_input.balancer = self.balancer
        self.power.balancer = self.balancer
        self.commands.balancer = self.balancer
        self.commands.links, self.commands.link, self.commands.target = self.links, self.link, self.link
        self.discovery.links, self.discovery.link = self.links, self.link
        log.info("charge point %s has car connectors %s on one fuse: balancing them together "
                 "(CHARGEAMPS_CONNECTORS names them otherwise)", cp, ", ".join(map(str, cars)))
        return True

    def _align_turns(self) -> None:
        """Turns change at the quarter hours (multiples of BALANCER_ROTATE_S) of the site's local
        clock: the balancer keeps no clock, so it is told what the wall clock reads now."""
        self.balancer.align_turns(self.clock(), local_seconds(self.power.wall()))

    def _own_default_currents(self, shared: SharedBalancer) -> None:
        """Each connector's stored default current, where a user set one (a value its settings do not
        allow is refused as the command would refuse it, and the shared one applies)."""
        for key, amps in list(self.runtime.default_currents.items()):
            if key not in shared.keys:
                continue  # a connector no longer listed: kept for when it is again
            try:
                shared.set_default_current(self.clock(), key, amps)
            except ValueError as e:
                log.error("default current of %s: value refused (%s); using the shared default current", key, e)
                del self.runtime.default_currents[key]

    @property
    def meter(self):
        """The meter source (its topics, its parser)."""
        return self.meter_input.meter

    def _subscriptions(self) -> list[Subscription]:
        commands = [Subscription(topic, skip_retained=True) for topic in self.topics.command_subscriptions()]
        circuits = [s for i in dict.fromkeys(self.circuit_inputs.values()) for s in i.subscriptions()]
        return self.meter_input.subscriptions() + circuits + commands + self.discovery.subscriptions()

    # ---- threads --------------------------------------------------------------

    def _enqueue(self, kind: str, item: Any) -> None:
        self.events.put_nowait((kind, item))

    def _enqueue_message(self, msg: Message) -> None:
        """On paho's thread: queue the message, or during a meter flood keep only the newest reading."""
        command = self.topics.classify(msg.topic) is not None or self.topics.unknown_command(msg.topic)
        if not command and self.meter_input.hold(msg, self.events.qsize()):
            return
        self._enqueue("message", msg)

    def start(self) -> None:
        log.info(
            "chargeamps-bridge %s starting: strategy %s, MaxA %.1f A, fuse %.0f A, broker %s:%d, base topic %s",
            __version__, self.settings.balancer_strategy, self.runtime.max_a,
            self.settings.balancer_fuse_a, self.settings.mqtt_host, self.settings.mqtt_port,
            self.topics.base,
        )
        log.info("meter: %s", self.meter.describe())
        if self.meter_input.registers.fields:
            log.info("meter registers: %s", self.meter_input.registers.describe())
        if self.meter_input.demand.fields:
            log.info("meter demand: %s", self.meter_input.demand.describe())
        if self.central is not None:
            try:
                self.central.start()
            except OSError as e:
                raise ConfigError(f"OCPP_HOST/OCPP_PORT: cannot listen on {self.settings.ocpp_host}:"
                                  f"{self.settings.ocpp_port} ({e.strerror or e})") from None
            log.info("OCPP central system listening on %s:%d", self.settings.ocpp_host, self.central.port)
        self.mqtt.start()
        self.calls.start()
        self._worker = threading.Thread(target=self._work, name="bridge-worker", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._enqueue("stop", None)
        if getattr(self, "_worker", None):
            self._worker.join(timeout=15)
        self.calls.stop()  # a call in flight is not waited for beyond a short bound
        if self.central is not None:
            self.central.stop()
        self.power.save()
        self.mqtt.stop(final_topic=self.topics.bridge_state, final_payload="offline")
        log.info("stopped")

    def run_forever(self) -> int:
        """Run until SIGTERM or SIGINT; publish `offline` and return 0. Raises ConfigError when the
        cloud's first answer showed a configuration error (`run` exits 2 naming it)."""
        def _signal(signum, frame):
            log.info("signal %s received, stopping", signal.Signals(signum).name)
            self.stop_event.set()
            self._enqueue("stop", None)

        signal.signal(signal.SIGTERM, _signal)
        signal.signal(signal.SIGINT, _signal)
        self.start()
        while not self.stop_event.wait(0.5):
            pass
        self.stop()
        if self.config_error is not None:
            raise ConfigError(self.config_error)
        return 0

    def _work(self) -> None:
        next_tick = self.clock()
        while not self.stop_event.is_set():
            now = self.clock()
            # A tick when a write settles: a decision waiting for it is not left to the next reading.
            next_tick = min([next_tick] + [link.settles_at for link in self.links if link.settles_at > now])
            wake = min([next_tick, self._next_health, self.calls.due_at(now), self.calls.site_due(self.links)]
                       + [link.due_at for link in self.links if link.ready])
            try:
                kind, item = self.events.get(timeout=self.clock.real_seconds(max(0.0, wake - now)))
            except queue.Empty:
                kind, item = "tick", None
            self._handle(kind, item)
            # A link woken for (its poll due) has it queued now, not at the next tick: until then its
            # due time, past, would wake the worker again at once, and spin.
            now = self.clock()
            for link in self.links:
                if link.ready and link.due_at <= now:
                    link.tick(now)
            if self.calls.site_due(self.links) <= now:
                self.calls.poll_site(now, self._cloud, self.links)  # the organisation's statuses, the same way
            self.calls.pump(self.clock())
            if self.events.empty():
                for msg in self.meter_input.take_held():
                    self._handle("message", msg)
            if self.clock() >= next_tick:
                # A slow cloud call leaves a backlog of meter readings in the queue: read
                # what is there before deciding, or a phase whose fresh reading is still
                # queued would look stale and trip the fail-safe.
                for _ in range(self.events.qsize()):
                    try:
                        kind, item = self.events.get_nowait()
                    except queue.Empty:
                        break
                    self._handle(kind, item)
                now = self.clock()
                next_tick = now + TICK_S
                self._handle("tick", now)
                self.calls.pump(self.clock())
            if self.clock() >= self._next_health:
                self._handle("health", None)

    def _handle(self, kind: str, item: Any) -> None:
        try:
            if kind == "message":
                self._on_message(item)
            elif kind == "connection":
                self._on_connection(*item)
            elif kind == "tick" and item is not None:
                self._tick(item)
            elif kind == "health":
                self._publish_health(self.clock())
            elif kind == "cloud":
                self.calls.finish(*item)
            elif kind == "ocpp":
                now = self.clock()
                for link in self.links:
                    link.on_event(now, item)  # type: ignore[attr-defined]
                self._remember_control(item)
        except Exception as e:  # the loop must outlive any bug in a handler
            log.exception("worker: %s failed", kind)
            self.health.last_error = f"internal error: {type(e).__name__}: {e}"

    # ---- events ---------------------------------------------------------------

    def _on_connection(self, ok: bool, why: str) -> None:
        if not ok:
            log.warning("MQTT disconnected: %s", why)
            return
        log.info("MQTT connected to %s:%d", self.settings.mqtt_host, self.settings.mqtt_port)
        self.publisher.forget()
        self.publisher.publish(self.topics.bridge_state, "online")
        self._publish_info()
        self.discovery.announce()
        self._publish_all(self.clock())

    def _on_message(self, msg: Message) -> None:
        command = self.topics.classify(msg.topic)
        if command is not None:
            sender = describe_sender(msg.user_properties, msg.response_topic)
            if msg.retain:
                # The broker keeps a retained command and hands it to every later subscriber:
                # it is a setting left lying around, never a request to act on now. An empty
                # retained message only clears one.
                if not msg.payload:
                    return
                outcome = self.commands.refuse(
                    command, "refused: the message is retained, and a retained command is never applied; "
                    "publish it without the retain flag (and clear the retained one with an empty retained message)",
                    sender)
            else:
                outcome = self.commands.handle(command, msg.payload, sender)
            self.publisher.answer(msg, outcome.status, outcome.value, outcome.error)
            if outcome.restate is not None:
                self.publisher.publish(*outcome.restate, force=True)
            return
        if self.topics.unknown_command(msg.topic):
            if msg.payload or not msg.retain:  # an empty retained message only clears one
                sender = describe_sender(msg.user_properties, msg.response_topic)
                outcome = self.commands.unknown(msg.topic, sender)
                self.publisher.answer(msg, outcome.status, outcome.value, outcome.error)
            return
        if self.discovery.is_status(msg):
            if self.discovery.home_assistant_online(msg):
                self.publisher.forget()
                self.discovery.announce()
                self._publish_all(self.clock())
            return
        now = self.clock()
        meter_input = self.circuit_inputs.get(msg.topic, self.meter_input)
        if meter_input.receive(msg, now) and self.events.empty():  # else the next queued reading decides
            self._decide_and_apply(now)

    def _tick(self, now: float) -> None:
        for link in self.links:
            link.tick(now)
        if self.central is None:
            self.calls.poll_site(now, self._cloud, self.links)
        if self._refuse_configuration():
            return
        self._decide_and_apply(now)

    def _refuse_configuration(self) -> bool:
        """A configuration error the cloud showed in its first answer stops the bridge, as any other
        configuration error does. A cloud that does not answer at start is no reason to refuse: the
        bridge runs on, says so once, and reports an error found later in health."""
        fatal = next((link.fatal for link in self.links if link.fatal), None)
        if fatal is not None:
            if self.config_error is None:
                self.config_error = fatal
                log.error("configuration error: %s; stopping", fatal)
                self.stop_event.set()
                self._enqueue("stop", None)
            return True
        listed = [link for link in self.links if link.listed]
        if listed and not self._cloud_unchecked_said and any(
                not link.answered and (link.backoff.failures or self.calls.backoff.failures) for link in listed):
            self._cloud_unchecked_said = True
            log.warning("the cloud did not answer at start: CHARGEAMPS_CONNECTORS is checked when it does; "
                        "running on meanwhile (a connector found missing then is reported in bridge/health)")
        return False

    def _decide_and_apply(self, now: float) -> None:
        """Every link writes its own connector's command; a link that cannot be written is told to the
        balancer, which assumes its last setting."""
        by_key = {link.balancer.key: link for link in self.links}
        for key, link in by_key.items():
            self.balancer.charger_failed(now, key, link.failing, house_load=link.draw_is_house_load)
        self.power.update(now)
        d = self.balancer.decide(now)
        previous = self.decision
        self.decision = d
        self._log_decision(previous, d)
        # Cuts before raises: amps never go to one car before another gave them up.
        orders = sorted((c for c in d.connectors if c.command is not None),
                        key=lambda c: c.command - (by_key[c.key].expected or 0))
        if not self._first_reads_pending():
            for c in orders:
                by_key[c.key].apply(now, c, self.runtime.enabled)
        failed = {key: link.pause_error for key, link in by_key.items() if link.pause_error}
        if failed:
            self.decision = d = dataclasses.replace(d, reason="; ".join([d.reason, *failed.values()]), connectors=tuple(
                dataclasses.replace(c, reason=f"{c.reason}; {failed[c.key]}") if c.key in failed else c
                for c in d.connectors))
        self._publish_decision(d)
        self._publish_charge_mode()

    @staticmethod
    def _log_decision(previous: SharedDecision | None, d: SharedDecision) -> None:
        """One line when a connector's ChargeAt changed (the reason alone: at DEBUG): the connectors
        whose value changed and the site's reason, not every connector of a site."""
        before = {c.key: c.charge_at for c in previous.connectors} if previous is not None else {}
        changed = [c.key for c in d.connectors if before.get(c.key) != c.charge_at]
        if not changed and previous is not None and previous.reason == d.reason:
            return
        given = {c.key: c.charge_at for c in d.connectors}
        text = amps_of(given, changed) if changed else "unchanged"
        if len(d.connectors) > 1:
            text += f"; {d.charge_at} A in all"
        log.log(logging.INFO if changed else logging.DEBUG, "decision: ChargeAt %s (%s)", text, d.reason)

    def _first_reads_pending(self) -> bool:
        """A connector's first read is on its way (seconds at start, a few at a time): a decision
        before it is in would count that charger at its cap and cut the others for it."""
        return any(link.ready and not link.known and link.first_read_pending for link in self.links)

    def _publish_decision(self, d: SharedDecision) -> None:
        self.publisher.balancer(d, self.runtime, {link.balancer.key: (link.view.cp_id, link.connector)
                                                  for link in self.links if link.view.cp_id})

    # ---- publishing -------------------------------------------------------------

    def _identified(self) -> None:
        for link in self.links:
            if link.view.cp_id and link.balancer.key != link.key:
                link.balancer.rename(link.key)
        self._publish_info()
        self.discovery.announce()

    def _remember_control(self, event: Any) -> None:
        """How each OCPP charger takes its limit, kept in the state folder: a restart does not probe it again."""
        from bridge.ocpp import events as ev

        if self.control_methods is None or not isinstance(event, (ev.ControlLearned, ev.NotControllable)):
            return
        if not self.control_methods.learned(event.cp, getattr(event, "method", None)):
            self.health.last_error = self.control_methods.last_error

    def _installation_current_known(self, now: float) -> None:
        """A stored default current above the installation current is refused, as the command would be."""
        if self.keeper.fit(self.runtime, *installation_limit(self.links)):
            self.balancer.reconfigure(now, default_current=self.runtime.default_current)
        for link in self.links:
            if self.keeper.fit_connector(self.runtime, link.key, link.view.installation_current, link.name):
                self.balancer.set_default_current(now, link.balancer.key, None)
        self.discovery.announce()  # the default current's range changed

    def _publish_all(self, now: float) -> None:
        if self.decision is not None:
            self._publish_decision(self.decision)
        self.power.publish(now)
        self._publish_charger()
        self._publish_health(now)

    def _publish_charger(self) -> None:
        for link in self.links:
            self.publisher.charger(link.view, link.connector)
        self._publish_charge_mode()

    def _publish_charge_mode(self) -> None:
        for link in self.links:
            if link.view.cp_id:
                self.publisher.charge_mode(link.view.cp_id, link.connector, self.power.mode_of(link.key))

    def _publish_info(self) -> None:
        self.publisher.info({
            "version": __version__,
            "strategy": self.settings.balancer_strategy,
            "chargepoint_id": self.link.view.cp_id,
            "connector_id": self.link.connector,
            "base_topic": self.topics.base,
            "current_level": self.settings.chargeamps_current_level,
            "instance_id": instance_id(self.settings.chargeamps_state_dir),
            "connectors": [link.key for link in self.links],
            **({"chargers": {link.view.cp_id: link.boot for link in self.links if getattr(link, "boot", None)}}
               if self.central is not None else {}),
        })

    def _publish_health(self, now: float) -> None:
        # The next one is due from this one, whatever sent it (`now` is old after a slow cloud call).
        self._next_health = self.clock() + HEALTH_EVERY_S
        h = asdict(self.health)
        h["mqtt"] = "connected" if self.mqtt.connected else "disconnected"
        h["meter_age_s"] = self.meter_input.age_s(now)
        h["cloud_retry_in_s"] = max([self.calls.backoff.retry_in(now)] + [link.backoff.retry_in(now) for link in self.links])
        h["queue"] = self.events.qsize()
        if self.central is not None:
            h["ocpp_refused"] = self.central.refused
        self.publisher.health(h)
