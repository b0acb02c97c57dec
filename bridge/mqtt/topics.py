"""Every MQTT topic the bridge publishes or listens to: the public MQTT API.

Phases are 0, 1, 2 in code and `_l1`..`_l3` in topics.
"""

from __future__ import annotations

from dataclasses import dataclass

PHASES = (0, 1, 2)

# Every command topic under the base topic, by the command name `classify` returns.
# In a pattern the first `+` is the charge point id, a second one the connector number.
COMMAND_PATTERNS: dict[str, str] = {
    "max_a": "balancer/max_a/set",
    "default_current": "balancer/default_current/set",
    "enabled": "balancer/enabled/set",
    "charger_max_current": "charger/+/+/max_current/set",
    "charger_mode": "charger/+/+/mode/set",
    "reboot": "charger/+/reboot/set",
    "refresh": "bridge/request/refresh",
    # Several connectors on one fuse.
    "charger_priority": "charger/+/+/priority/set",
    "capacity_limit": "capacity/limit_kw/set",
    "charge_mode": "charger/+/+/charge_mode/set",
    "charger_default_current": "charger/+/+/default_current/set",
}
COMMAND_NAMES = tuple(COMMAND_PATTERNS)
# What a topic under the base that is meant as a command looks like: its last level `set`, or a
# request under bridge/request/. One that no pattern above names gets an answer, never silence.
COMMAND_LAST_LEVEL = "set"
REQUEST_LEVELS = "bridge/request"
# Below the base, a topic ending in `/set` is taken for a command up to one level deeper than the deepest.
COMMAND_LEVELS_MOST = max(len(p.split("/")) for p in COMMAND_PATTERNS.values()) + 1


@dataclass(frozen=True)
class Command:
    """An incoming command topic, understood: which command and for which charger."""

    name: str
    topic: str
    cp: str | None = None
    connector: int | None = None


def _check_level(value: str, what: str) -> str:
    # A charge point id or client name becomes one topic level: a slash or a
    # wildcard in it would silently address other topics.
    if not isinstance(value, str) or not value or any(c in value for c in "/+#\0"):
        raise ValueError(f"{what} must be a non-empty name without '/', '+', '#': got {value!r}"[:120])
    return value


def _phase_suffix(phase: int) -> str:
    if phase not in PHASES:
        raise ValueError(f"phase must be 0, 1 or 2 (L1..L3), got {phase!r}")
    return f"l{phase + 1}"


def _check_connector(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"connector must be a whole number from 1, got {n!r}")
    return n


class Topics:
    """Topic names under one base topic (`MQTT_BASE_TOPIC`, default `chargeamps`)."""

    def __init__(self, base: str = "chargeamps") -> None:
        if not isinstance(base, str):
            raise ValueError("the base topic must be text")
        base = base.strip().strip("/")
        if not base or any(c in base for c in "+#\0") or "//" in base:
            raise ValueError(f"the base topic must be a topic prefix without wildcards: got {base!r}"[:120])
        self.base = base

        # bridge
        self.bridge_state = f"{base}/bridge/state"
        self.bridge_info = f"{base}/bridge/info"
        self.bridge_health = f"{base}/bridge/health"
        self.response = f"{base}/bridge/response"
        self.request_refresh = self.command_topic("refresh")

        # balancer
        self.charge_at = f"{base}/balancer/charge_at"
        self.max_a = f"{base}/balancer/max_a"
        self.default_current = f"{base}/balancer/default_current"
        self.enabled = f"{base}/balancer/enabled"
        self.balancer_state = f"{base}/balancer/state"
        self.balancer_paused = f"{base}/balancer/paused"
        self.max_a_set = self.command_topic("max_a")
        self.default_current_set = self.command_topic("default_current")
        self.enabled_set = self.command_topic("enabled")

        # meter
        self.meter_stale = f"{base}/meter/stale"
        self.meter_power_total = f"{base}/meter/power"

        # capacity tariff
        self.capacity_limit_kw = f"{base}/capacity/limit_kw"
        self.capacity_limit_kw_set = self.command_topic("capacity_limit")
        self.capacity_period_kw = f"{base}/capacity/period_kw"
        self.capacity_projected_kw = f"{base}/capacity/projected_kw"
        self.capacity_month_peaks = f"{base}/capacity/month_peaks"
        self.capacity_state = f"{base}/capacity/state"

    def __repr__(self) -> str:
        return f"Topics({self.base!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Topics) and other.base == self.base

    def __hash__(self) -> int:
        return hash(self.base)

    # --- per phase -------------------------------------------------------
    def loadbal(self, phase: int) -> str:
        return f"{self.base}/balancer/loadbal_{_phase_suffix(phase)}"

    def meter_current(self, phase: int) -> str:
        return f"{self.base}/meter/current_{_phase_suffix(phase)}"

    def meter_power(self, phase: int) -> str:
        return f"{self.base}/meter/power_{_phase_suffix(phase)}"

    # --- per circuit (CIRCUITS) ---------------------------------------------
    def _circuit(self, name: str) -> str:
        return f"{self.base}/circuit/{_check_level(name, 'circuit name')}"

    def circuit_current(self, name: str, phase: int) -> str:
        return f"{self._circuit(name)}/current_{_phase_suffix(phase)}"

    def circuit_max_a(self, name: str) -> str:
        return f"{self._circuit(name)}/max_a"

    def circuit_headroom(self, name: str, phase: int) -> str:
        return f"{self._circuit(name)}/headroom_{_phase_suffix(phase)}"

    def circuit_topics(self, name: str) -> list[str]:
        """What the service publishes for one circuit."""
        return [*(self.circuit_current(name, p) for p in PHASES), self.circuit_max_a(name),
                *(self.circuit_headroom(name, p) for p in PHASES)]

    # --- per charge point / connector -------------------------------------
    def _cp(self, cp: str) -> str:
        return f"{self.base}/charger/{_check_level(cp, 'charge point id')}"

    def _connector(self, cp: str, n: int) -> str:
        return f"{self._cp(cp)}/{_check_connector(n)}"

    def charger_online(self, cp: str) -> str:
        return f"{self._cp(cp)}/online"

    def charger_status(self, cp: str, n: int) -> str:
        return f"{self._connector(cp, n)}/status"

    def charger_max_current(self, cp: str, n: int) -> str:
        return f"{self._connector(cp, n)}/max_current"

    def charger_mode(self, cp: str, n: int) -> str:
        return f"{self._connector(cp, n)}/mode"

    def charger_current(self, cp: str, n: int, phase: int) -> str:
        return f"{self._connector(cp, n)}/current_{_phase_suffix(phase)}"

    def charger_power_kw(self, cp: str, n: int) -> str:
        return f"{self._connector(cp, n)}/power_kw"

    def charger_session_energy_kwh(self, cp: str, n: int) -> str:
        return f"{self._connector(cp, n)}/session_energy_kwh"

    # Several connectors on one fuse: what the balancer gives each, its priority and why.
    def charger_charge_at(self, cp: str, n: int) -> str:
        return f"{self._connector(cp, n)}/charge_at"

    def charger_priority(self, cp: str, n: int) -> str:
        return f"{self._connector(cp, n)}/priority"

    def charger_reason(self, cp: str, n: int) -> str:
        return f"{self._connector(cp, n)}/reason"

    def charger_paused(self, cp: str, n: int) -> str:
        """ON while the balancer gives this connector 0 A (`balancer/paused` is ON only when all are)."""
        return f"{self._connector(cp, n)}/paused"

    def charger_state(self, cp: str, n: int) -> str:
        """The connector's detail as JSON (what `balancer/state` held per connector), sent when its
        meaning changes."""
        return f"{self._connector(cp, n)}/state"

    def charger_default_current(self, cp: str, n: int) -> str:
        """The connector's full-power current: its own when set, else `balancer/default_current`."""
        return f"{self._connector(cp, n)}/default_current"

    def charger_default_current_set(self, cp: str, n: int) -> str:
        return self.command_topic("charger_default_current", cp, n)

    def charger_priority_set(self, cp: str, n: int) -> str:
        return self.command_topic("charger_priority", cp, n)

    def charge_mode(self, cp: str, n: int) -> str:
        """The connector's charge mode: fast, pv, minpv or off (the bridge's, not the charger's)."""
        return f"{self._connector(cp, n)}/charge_mode"

    def charge_mode_set(self, cp: str, n: int) -> str:
        return self.command_topic("charge_mode", cp, n)

    def charger_max_current_set(self, cp: str, n: int) -> str:
        return self.command_topic("charger_max_current", cp, n)

    def charger_mode_set(self, cp: str, n: int) -> str:
        return self.command_topic("charger_mode", cp, n)

    def charger_reboot_set(self, cp: str) -> str:
        return self.command_topic("reboot", cp)

    # --- commands ---------------------------------------------------------
    def command_pattern(self, name: str) -> str:
        """The subscription for one command: its topic, with `+` for charge point and connector."""
        return f"{self.base}/{COMMAND_PATTERNS[name]}"

    def command_subscriptions(self) -> list[str]:
        """What the service subscribes to for commands: every topic under the base ending in `/set`
        (one level deeper than the deepest command), every request, and any command that is
        neither on its own. Each command topic matches one subscription only (a broker may deliver
        a message once per matching subscription)."""
        wide = [f"{self.base}/{'+/' * depth}{COMMAND_LAST_LEVEL}" for depth in range(1, COMMAND_LEVELS_MOST)]
        wide.append(f"{self.base}/{REQUEST_LEVELS}/+")
        return wide + [self.command_pattern(name) for name, pattern in COMMAND_PATTERNS.items()
                       if not _command_like(pattern)]

    def unknown_command(self, topic: str) -> bool:
        """A topic under the base meant as a command (see COMMAND_LAST_LEVEL) that no command names."""
        if not isinstance(topic, str) or not topic.startswith(self.base + "/"):
            return False
        return _command_like(topic[len(self.base) + 1 :]) and self.classify(topic) is None

    @staticmethod
    def command_list() -> str:
        """The command topics under the base, for a user told that a topic is none of them."""
        def shown(pattern: str) -> str:
            fill = iter(["<chargepoint>", "<connector>"])
            return "/".join(next(fill) if level == "+" else level for level in pattern.split("/"))

        return ", ".join(shown(p) for p in COMMAND_PATTERNS.values())

    def command_topic(self, name: str, cp: str | None = None, n: int | None = None) -> str:
        """One command's topic, for a charge point (and connector) where the command has them."""
        levels = COMMAND_PATTERNS[name].split("/")
        fill = iter([_check_level(cp, "charge point id"), str(_check_connector(n))]
                    if n is not None else [_check_level(cp, "charge point id")] if cp is not None else [])
        topic = "/".join(next(fill) if level == "+" else level for level in levels)
        if next(fill, None) is not None:
            raise ValueError(f"command {name} takes no {'connector' if n is not None else 'charge point'}")
        return f"{self.base}/{topic}"

    # --- MQTT v5 request/response ----------------------------------------
    def client_response(self, client: str) -> str:
        """A response topic a client may name in its commands.

        Under the base topic because the broker's ACL lets the bridge write
        only there; answers to a response topic elsewhere would be dropped.
        """
        return f"{self.base}/bridge/response/{_check_level(client, 'client name')}"

    # --- collections ------------------------------------------------------
    def command_topics(self, cp: str, n: int) -> list[str]:
        """The topics the service subscribes to for commands (retain handling: do not send)."""
        return [
            self.max_a_set,
            self.default_current_set,
            self.enabled_set,
            self.charger_max_current_set(cp, n),
            self.charger_mode_set(cp, n),
            self.charger_reboot_set(cp),
            self.request_refresh,
            self.charger_priority_set(cp, n),
            self.capacity_limit_kw_set,
            self.charge_mode_set(cp, n),
            self.charger_default_current_set(cp, n),
        ]

    def state_topics(self, cp: str, n: int) -> list[str]:
        """Every topic the service publishes for one connector."""
        return [
            self.bridge_state,
            self.bridge_info,
            self.bridge_health,
            self.charge_at,
            *(self.loadbal(p) for p in PHASES),
            self.max_a,
            self.default_current,
            self.enabled,
            self.balancer_state,
            self.balancer_paused,
            *(self.meter_current(p) for p in PHASES),
            *(self.meter_power(p) for p in PHASES),  # where the meter gives power
            self.meter_power_total,
            self.meter_stale,
            self.charger_online(cp),
            self.charger_status(cp, n),
            self.charger_max_current(cp, n),
            self.charger_mode(cp, n),
            *(self.charger_current(cp, n, p) for p in PHASES),
            self.charger_power_kw(cp, n),
            self.charger_session_energy_kwh(cp, n),
            self.charge_mode(cp, n),
            self.capacity_limit_kw,
            self.capacity_period_kw,
            self.capacity_projected_kw,
            self.capacity_month_peaks,
            self.capacity_state,
        ]

    def connector_state_topics(self, cp: str, n: int) -> list[str]:
        """Several connectors on one fuse: what the service publishes for each connector besides
        `state_topics(cp, n)`."""
        return [
            self.charger_charge_at(cp, n),
            self.charger_priority(cp, n),
            self.charger_reason(cp, n),
            self.charger_paused(cp, n),
            self.charger_default_current(cp, n),
            self.charger_state(cp, n),
        ]

    def classify(self, topic: str) -> Command | None:
        """The command an incoming topic names, or None when it is no command topic."""
        if not isinstance(topic, str) or not topic.startswith(self.base + "/"):
            return None
        levels = topic[len(self.base) + 1 :].split("/")
        for name, pattern in COMMAND_PATTERNS.items():
            wanted = pattern.split("/")
            if len(wanted) != len(levels):
                continue
            wild = [level for level, want in zip(levels, wanted) if want == "+"]
            if any(want not in ("+", level) for level, want in zip(levels, wanted)):
                continue
            if wild and not _valid_level(wild[0]) or len(wild) > 1 and not _connector_id(wild[1]):
                continue
            return Command(name, topic, cp=wild[0] if wild else None,
                           connector=int(wild[1]) if len(wild) > 1 else None)
        return None


def _command_like(levels: str) -> bool:
    """`levels` (below the base) look like a command: a request, or ending in `/set` (COMMAND_LEVELS_MOST)."""
    parts = levels.split("/")
    if levels.startswith(REQUEST_LEVELS + "/") and len(parts) == len(REQUEST_LEVELS.split("/")) + 1:
        return True
    return 2 <= len(parts) <= COMMAND_LEVELS_MOST and parts[-1] == COMMAND_LAST_LEVEL


def _valid_level(level: str) -> bool:
    return bool(level) and not any(c in level for c in "+#\0")


def _connector_id(level: str) -> bool:
    return level.isascii() and level.isdigit() and int(level) >= 1
