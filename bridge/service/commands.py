"""The MQTT commands: one table from command name to how it is parsed, checked,
applied, and which value a refusal publishes again (so a slider snaps back).

The handler answers without MQTT: `handle` returns an `Outcome`, the service
publishes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from bridge.balancer.sharing import DEFAULT_PRIORITY, SharedBalancer, check_priority
from bridge.config import Settings
from bridge.eapi import EapiError
from bridge.limits import (
    LimitError,
    check_charger_current,
    check_default_current,
    check_max_a,
    current_ceiling,
)
from bridge.balancer.capacity import check_capacity_limit
from bridge.mqtt.payloads import (
    PayloadError,
    check_size,
    format_bool,
    format_number,
    parse_bool,
    parse_charge_mode,
    parse_mode,
    parse_number,
    parse_press,
)
from bridge.mqtt.topics import COMMAND_NAMES, Command, Topics
from bridge.service.charger_link import ChargerLink, installation_limit
from bridge.service.clock import Clock
from bridge.service.health import Health
from bridge.service.runtime import RuntimeKeeper
from bridge.state import RuntimeSettings
from bridge.units import format_kw

log = logging.getLogger(__name__)


class CommandRefused(ValueError):
    """A command that is understood but not allowed; the message says why."""


@dataclass
class CommandBudget:
    """Cloud calls that MQTT commands may cause: a burst, then a steady rate. No
    flood of commands can make the bridge spam the cloud (Charge Amps blocks API
    keys that call it heavily)."""

    burst: float = 5.0
    per_minute: float = 6.0
    tokens: float = 5.0
    at: float | None = None

    def take(self, now: float) -> float:
        """0 when a call may go now (and counts it), else the seconds until one may."""
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.per_minute / 60.0)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) * 60.0 / self.per_minute


@dataclass(frozen=True)
class Outcome:
    """The answer to one command; after a refusal, `restate` is the (topic, value) to publish again."""

    status: str
    value: Any = None
    error: str | None = None
    restate: tuple[str, str] | None = None


@dataclass(frozen=True)
class CommandSpec:
    parse: Callable[[bytes], Any]
    # The value to apply, from the parsed one; raises CommandRefused.
    validate: Callable[["CommandHandler", Any], Any]
    # Applies it, returns the answer's value; raises CommandRefused.
    apply: Callable[["CommandHandler", float, Any], Any]
    # What the state topic says now, to publish again after a refusal.
    shown: Callable[["CommandHandler"], tuple[str, str] | None] = lambda h: None
    # Addressed to one charger: refused unless it is the one this bridge drives.
    to_charger: bool = False


def describe_sender(user_properties: tuple[tuple[str, str], ...] = (), response_topic: str | None = None) -> str:
    """Who sent a command, as far as MQTT tells: the sender's MQTT v5 user properties
    (e.g. `client_id=homeassistant`), else its response topic. The broker does not pass
    on the client id itself."""
    if user_properties:
        return ", ".join(f"{k[:40]}={v[:60]}" for k, v in user_properties[:4])
    if response_topic:
        return f"response topic {response_topic[:100]}"
    return "an unnamed sender"


def _no_payload(payload: bytes) -> None:
    return None


def _accept(handler: "CommandHandler", value: Any) -> Any:
    return value


def _limit(check: Callable[..., Any], *args: Any) -> Any:
    try:
        return check(*args)
    except LimitError as e:
        raise CommandRefused(str(e)) from None


class CommandHandler:
    def __init__(self, settings: Settings, topics: Topics, runtime: RuntimeSettings, keeper: RuntimeKeeper,
                 balancer: SharedBalancer, link: ChargerLink, health: Health, clock: Clock, *,
                 decide: Callable[[float], None], on_health: Callable[[float], None],
                 budget: CommandBudget | None = None, links: list[ChargerLink] | None = None,
                 power: Any = None) -> None:
        self.settings = settings
        self.topics = topics
        self.runtime = runtime
        self.keeper = keeper
        self.balancer = balancer
        self.link = link
        # Every connector this bridge drives; a charger's command goes to the one its topic names.
        self.links = links or [link]
        self.target = link
        self.health = health
        self.clock = clock
        self.decide = decide
        self.on_health = on_health
        self.budget = budget or CommandBudget()
        self.power = power  # bridge.service.power_limits.PowerLimits

    def handle(self, command: Command, payload: bytes, sender: str = "an unnamed sender") -> Outcome:
        spec = COMMANDS[command.name]
        try:
            value = self._run(spec, command, payload)
        except (PayloadError, CommandRefused) as e:
            return self.refuse(command, str(e), sender)
        except EapiError as e:
            log.warning("%s from %s: the cloud did not accept it: %s", command.topic, sender, e)
            return Outcome("error", None, f"the cloud did not accept it: {e}", spec.shown(self))
        if spec.to_charger:
            log.info("%s from %s: done%s", command.topic, sender, "" if value is None else f" ({value})")
        return Outcome("ok", value)

    def refuse(self, command: Command, why: str, sender: str = "an unnamed sender") -> Outcome:
        """A command that is not applied: counted, logged, answered, and its value shown again."""
        return self._refused(command.topic, why, sender, COMMANDS[command.name].shown(self))

    def unknown(self, topic: str, sender: str = "an unnamed sender") -> Outcome:
        """A topic under the base meant as a command that is none: counted, logged and answered."""
        topic = topic[:120]
        return self._refused(topic, f"unknown command topic {topic!r}; the commands are {self.topics.command_list()}",
                             sender)

    def _refused(self, topic: str, why: str, sender: str, restate: tuple[str, str] | None = None) -> Outcome:
        self.health.commands_refused += 1
        log.warning("refused %s from %s: %s", topic, sender, why)
        return Outcome("error", None, why, restate)

    def _run(self, spec: CommandSpec, command: Command, payload: bytes) -> Any:
        now = self.clock()
        if spec.to_charger:
            target = next((link for link in self.links if link.addresses(command.cp, command.connector)), None)
            if target is None:
                driven = ", ".join(link.name for link in self.links)
                raise CommandRefused(f"unknown charge point or connector in {command.topic!r}; "
                                     f"this bridge drives {driven}")
            self.target = target
        check_size(payload)  # every command topic, also those that read no value
        value = spec.validate(self, spec.parse(payload))
        return spec.apply(self, now, value)

    # ---- shared steps -------------------------------------------------------------

    def save(self, now: float) -> None:
        """Persist the runtime settings; a failure is reported in health, the change holds until restart."""
        if not self.keeper.save(self.runtime):
            self.health.last_error = self.keeper.last_error
            self.on_health(now)

    def spend(self, now: float, what: str) -> None:
        """A user's command is tried now, even during the backoff, as long as the command
        budget allows it; if not, the refusal says when."""
        wait = self.budget.take(now)
        if wait > 0:
            raise CommandRefused(
                f"{what} not sent: too many commands for the cloud, try again in {wait:.0f} s "
                f"(at most {self.budget.burst:.0f} at once, {self.budget.per_minute:.0f} a minute)"
            )

    def on_charger(self, now: float, what: str, call: Callable[[], bool]) -> None:
        """A user's cloud call: sent now if the command budget allows; its error goes back to the user."""
        if not self.target.ready:
            raise CommandRefused(f"{what} not sent: {self.target.name} has not been reached in the cloud yet "
                                 f"(the bridge is starting or the cloud does not answer); try again in a moment")
        self.spend(now, what)
        if not call():
            raise CommandRefused(f"{what} failed: {self.health.last_error}")

    # ---- validate -----------------------------------------------------------------

    def valid_max_a(self, value: float) -> float:
        return _limit(check_max_a, value, self.settings.balancer_min_current, self.settings.balancer_fuse_a)

    def valid_default_current(self, value: float) -> int:
        # One default current for every connector: above the lowest installation current it is
        # refused, naming that connector, as one connector's command is (and as a stored value is).
        return _limit(check_default_current, value, self.settings.balancer_min_current,
                      *installation_limit(self.links))

    def valid_charger_current(self, value: float) -> int:
        if self.runtime.enabled:
            raise CommandRefused(
                "the balancer is enabled and owns the charger's current: set "
                f"{self.topics.default_current_set} instead, or turn the balancer off first"
            )
        highest = min(self.runtime.default_current_of(self.target.key),
                      current_ceiling(self.target.view.installation_current))
        return _limit(check_charger_current, value, highest)

    def valid_capacity_limit(self, value: float) -> float:
        try:
            return check_capacity_limit(value)
        except ValueError as e:
            raise CommandRefused(str(e)) from None

    def valid_refresh(self, value: None) -> None:
        if not any(link.ready for link in self.links):
            raise CommandRefused("the charger is not known yet: the cloud has not answered")

    # ---- apply --------------------------------------------------------------------

    def change(self, now: float, field: str, value: Any, said: str, *, balancer: bool = True) -> Any:
        """A runtime setting: changed, given to the balancer, saved, and decided on at once."""
        setattr(self.runtime, field, value)
        if balancer:
            self.balancer.reconfigure(now, **{field: value})
        self.save(now)
        log.info("%s by command", said)
        self.decide(now)
        return value

    def apply_max_a(self, now: float, value: float) -> float:
        return self.change(now, "max_a", value, f"MaxA set to {value:g} A")

    def apply_default_current(self, now: float, value: int) -> int:
        return self.change(now, "default_current", value, f"default current set to {value} A")

    def apply_enabled(self, now: float, value: bool) -> str:
        said = "balancer enabled" if value else "balancer disabled (the charger keeps its last value)"
        return format_bool(self.change(now, "enabled", value, said, balancer=False))

    def apply_capacity_limit(self, now: float, value: float) -> float:
        self.power.set_limit(value)
        said = f"capacity limit set to {format_kw(value)} kW" if value else "capacity limit off"
        self.change(now, "capacity_limit_kw", value, said, balancer=False)
        self.power.publish(now)
        return value

    def apply_charge_mode(self, now: float, mode: str) -> str:
        return self.change_connector(now, self.runtime.charge_modes, mode, "charge mode")

    def change_connector(self, now: float, store: dict[str, Any], value: Any, what: str) -> Any:
        """A setting of the addressed connector: stored under its key, saved, and decided on at once."""
        key = self.target.key
        store[key] = value
        self.save(now)
        log.info("%s of %s set to %s by command", what, key, value)
        self.decide(now)
        return value

    def shown_charge_mode(self) -> tuple[str, str] | None:
        return self.shown_charger(self.topics.charge_mode, self.power.mode_of(self.target.key))

    def apply_refresh(self, now: float, value: None) -> None:
        self.spend(now, "refresh")
        results = [link.refresh(now) for link in self.links if link.ready]
        if not all(results):
            raise CommandRefused(f"refresh failed: {self.health.last_error}")

    def apply_charger_current(self, now: float, amps: int) -> int:
        self.on_charger(now, f"set current {amps} A", lambda: self.target.set_current_directly(now, amps))
        return amps

    def apply_charger_mode(self, now: float, mode: str) -> str:
        self.on_charger(now, f"mode {mode}", lambda: self.target.set_mode(now, mode))
        return mode

    def apply_reboot(self, now: float, value: None) -> None:
        self.on_charger(now, "reboot", lambda: self.target.reboot(now))

    # ---- shown --------------------------------------------------------------------

    # ---- priority: who goes first when the fuse has room for fewer cars -------------------

    def valid_priority(self, value: float) -> int:
        if value != int(value):
            raise CommandRefused(f"priority must be a whole number from 0 to 9, got {format_number(value)}")
        try:
            return check_priority(int(value))
        except ValueError as e:
            raise CommandRefused(str(e)) from None

    def apply_priority(self, now: float, value: int) -> int:
        self.balancer.set_priority(now, self.target.balancer.key, value)
        return self.change_connector(now, self.runtime.priorities, value, "priority")

    def shown_priority(self) -> tuple[str, str] | None:
        v = self.target.view
        if not v.cp_id:
            return None
        return (self.topics.charger_priority(v.cp_id, self.target.connector),
                str(self.runtime.priorities.get(self.target.key, DEFAULT_PRIORITY)))

    # ---- a default current per connector ----------------------------------------------

    def valid_connector_default_current(self, value: float) -> int:
        return _limit(check_default_current, value, self.settings.balancer_min_current,
                      self.target.view.installation_current, self.target.name)

    def apply_connector_default_current(self, now: float, value: int) -> int:
        try:
            self.balancer.set_default_current(now, self.target.balancer.key, value)
        except ValueError as e:
            raise CommandRefused(str(e)) from None
        return self.change_connector(now, self.runtime.default_currents, value, "default current (A)")

    def shown_connector_default_current(self) -> tuple[str, str] | None:
        return self.shown_charger(self.topics.charger_default_current,
                                  format_number(self.runtime.default_current_of(self.target.key)))

    # ---- shown --------------------------------------------------------------------

    def shown_charger(self, topic: Callable[[str, int], str], value: Any) -> tuple[str, str] | None:
        v = self.target.view
        if not v.cp_id or value is None:
            return None
        return topic(v.cp_id, self.target.connector), value


COMMANDS: dict[str, CommandSpec] = {
    "max_a": CommandSpec(
        parse_number, CommandHandler.valid_max_a, CommandHandler.apply_max_a,
        lambda h: (h.topics.max_a, format_number(h.runtime.max_a)),
    ),
    "default_current": CommandSpec(
        parse_number, CommandHandler.valid_default_current, CommandHandler.apply_default_current,
        lambda h: (h.topics.default_current, format_number(h.runtime.default_current)),
    ),
    "enabled": CommandSpec(
        parse_bool, _accept, CommandHandler.apply_enabled,
        lambda h: (h.topics.enabled, format_bool(h.runtime.enabled)),
    ),
    "charger_max_current": CommandSpec(
        parse_number, CommandHandler.valid_charger_current, CommandHandler.apply_charger_current,
        lambda h: h.shown_charger(h.topics.charger_max_current,
                                  None if h.target.view.max_current is None else format_number(h.target.view.max_current)),
        to_charger=True,
    ),
    "charger_mode": CommandSpec(
        parse_mode, _accept, CommandHandler.apply_charger_mode,
        lambda h: h.shown_charger(h.topics.charger_mode, h.target.view.mode),
        to_charger=True,
    ),
    "reboot": CommandSpec(parse_press, _accept, CommandHandler.apply_reboot, to_charger=True),
    "refresh": CommandSpec(_no_payload, CommandHandler.valid_refresh, CommandHandler.apply_refresh),
    # Several connectors on one fuse.
    "charger_priority": CommandSpec(
        parse_number, CommandHandler.valid_priority, CommandHandler.apply_priority,
        CommandHandler.shown_priority, to_charger=True,
    ),
    "capacity_limit": CommandSpec(
        parse_number, CommandHandler.valid_capacity_limit, CommandHandler.apply_capacity_limit,
        lambda h: (h.topics.capacity_limit_kw, format_number(h.power.limit_kw or 0)),
    ),
    "charge_mode": CommandSpec(
        parse_charge_mode, _accept, CommandHandler.apply_charge_mode, CommandHandler.shown_charge_mode,
        to_charger=True,
    ),
    "charger_default_current": CommandSpec(
        parse_number, CommandHandler.valid_connector_default_current, CommandHandler.apply_connector_default_current,
        CommandHandler.shown_connector_default_current, to_charger=True,
    ),
}
assert tuple(COMMANDS) == COMMAND_NAMES, "one table entry per command topic"
