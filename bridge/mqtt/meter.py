"""Where the house's per-phase currents come from, and how to read them.

A `MeterSource` knows the three phase topics, an optional JSON path per phase,
the unit and the voltage used to turn power into current. Presets cover the
common P1 sources (see shared/meters/P1-SOURCES.md); explicit settings win
over a preset.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from bridge.mqtt.payloads import PayloadError, coerce_number, decode_text, load_json, parse_number

# Larger than any meter message seen (Tasmota SENSOR, dsmr/json are ~2 KB),
# small enough that a flood of junk costs little to refuse.
MAX_METER_PAYLOAD_BYTES = 64 * 1024
MAX_ABS_AMPS = 1000.0
DEFAULT_TOPICS = ("p1/current_l1", "p1/current_l2", "p1/current_l3")
DEFAULT_VOLTAGE = 230.0
UNITS = {"a": "A", "w": "W", "kw": "kW"}


class MeterConfigError(ValueError):
    """The meter settings do not describe a usable source; the message names the setting."""


@dataclass(frozen=True)
class MeterPreset:
    """One known source. `{device}` in a topic is replaced by P1_DEVICE or `default_device`."""

    name: str
    topics: tuple[str, str, str]
    paths: tuple[str | None, str | None, str | None] = (None, None, None)
    unit: str = "A"
    heartbeat_topic: str | None = None
    default_device: str | None = None
    note: str = ""


P1_PRESETS: dict[str, MeterPreset] = {
    p.name: p
    for p in (
        MeterPreset(
            "dsmr-reader",
            tuple(f"dsmr/reading/phase_power_current_l{i}" for i in (1, 2, 3)),  # type: ignore[arg-type]
            heartbeat_topic="dsmr/reading/timestamp",
            note="whole amps, unsigned; a steady load publishes nothing, the timestamp proves the meter alive",
        ),
        MeterPreset(
            "homewizard",
            ("homewizard/{device}",) * 3,  # type: ignore[arg-type]
            tuple(f"active_current_l{i}_a" for i in (1, 2, 3)),  # type: ignore[arg-type]
            default_device="p1",
            note="the local API v1 JSON re-published on MQTT; signed amps",
        ),
        MeterPreset(
            "homewizard-v2",
            ("homewizard/{device}",) * 3,  # type: ignore[arg-type]
            tuple(f"current_l{i}_a" for i in (1, 2, 3)),  # type: ignore[arg-type]
            default_device="p1",
            note="the local API v2 JSON re-published on MQTT; signed amps",
        ),
        MeterPreset(
            "tasmota-sml",
            ("tele/{device}/SENSOR",) * 3,  # type: ignore[arg-type]
            tuple(f"SML.current_l{i}" for i in (1, 2, 3)),  # type: ignore[arg-type]
            default_device="tasmota",
            note="group and key names are the Tasmota script's; SML.current_lN is the convention",
        ),
        MeterPreset(
            "esphome-dsmr",
            tuple(f"{{device}}/sensor/current_phase_{i}/state" for i in (1, 2, 3)),  # type: ignore[arg-type]
            default_device="slimmelezer",
            note="ESPHome dsmr component; the device is the node name",
        ),
        MeterPreset(
            "shelly-3em",
            tuple(f"shellies/{{device}}/emeter/{i}/current" for i in (0, 1, 2)),  # type: ignore[arg-type]
            default_device="shellyem3",
            note="Gen1; the device is shellyem3-<mac>",
        ),
        MeterPreset(
            "shelly-pro-3em",
            ("{device}/status/em:0",) * 3,  # type: ignore[arg-type]
            ("a_current", "b_current", "c_current"),
            default_device="shellypro3em",
            note="Gen2; the device is the Shelly's MQTT prefix (shellypro3em-<mac> by default)",
        ),
        MeterPreset(
            "dsmr-api",
            tuple(f"{{device}}/current_l{i}" for i in (1, 2, 3)),  # type: ignore[arg-type]
            tuple(f"current_l{i}[0].value" for i in (1, 2, 3)),  # type: ignore[arg-type]
            default_device="DSMR-API",
            note="DSMR-logger; the value is a string inside an array",
        ),
    )
}

_PATH_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str) -> tuple[str | int, ...]:
    """`SML.current_l1` -> ("SML", "current_l1"); `current_l1[0].value` -> ("current_l1", 0, "value")."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("a JSON path must not be empty")
    path = path.strip()
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _PATH_TOKEN.match(path, pos)
        if not m or (pos == 0 and path.startswith(".")):
            raise ValueError(f"JSON path {path!r} is not valid at position {pos}: use keys and [index], like a.b[0].c")
        tokens.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return tuple(tokens)


def extract_path(obj: Any, path: str | Sequence[str | int]) -> Any:
    """The value at a dotted path with list indexes; PayloadError when it is not there."""
    tokens = parse_path(path) if isinstance(path, str) else tuple(path)
    shown_path = path if isinstance(path, str) else _format_path(tokens)
    current = obj
    for token in tokens:
        if isinstance(token, int):
            if not isinstance(current, list) or token >= len(current):
                raise PayloadError(f"the message has no {shown_path!r} (no list item {token})")
            current = current[token]
        else:
            if not isinstance(current, dict) or token not in current:
                raise PayloadError(f"the message has no {shown_path!r} (no key {token!r})")
            current = current[token]
    return current


def _format_path(tokens: Sequence[str | int]) -> str:
    out = ""
    for t in tokens:
        out += f"[{t}]" if isinstance(t, int) else (f".{t}" if out else t)
    return out


def _check_topic(topic: str, what: str) -> str:
    if not isinstance(topic, str) or not topic.strip():
        raise MeterConfigError(f"{what} must not be empty")
    topic = topic.strip()
    if any(c in topic for c in "+#\0"):
        raise MeterConfigError(f"{what} must be one topic without wildcards: got {topic!r}")
    return topic


@dataclass(frozen=True)
class MeterSource:
    topics: tuple[str, str, str] = DEFAULT_TOPICS
    paths: tuple[str | None, str | None, str | None] = (None, None, None)
    unit: str = "A"
    voltage: float = DEFAULT_VOLTAGE
    heartbeat_topic: str | None = None

    def __post_init__(self) -> None:
        if len(self.topics) != 3 or len(self.paths) != 3:
            raise MeterConfigError("a meter source needs a topic and a path setting for each of L1, L2, L3")
        topics = tuple(_check_topic(t, f"P1_TOPIC_L{i + 1}") for i, t in enumerate(self.topics))
        paths = tuple(None if p is None or not str(p).strip() else str(p).strip() for p in self.paths)
        for i, p in enumerate(paths):
            if p is not None:
                try:
                    parse_path(p)
                except ValueError as e:
                    raise MeterConfigError(f"P1_JSON_PATH_L{i + 1}: {e}") from None
        for i in range(3):
            for j in range(i + 1, 3):
                if topics[i] == topics[j] and (paths[i] is None or paths[j] is None):
                    raise MeterConfigError(
                        f"L{i + 1} and L{j + 1} share the topic {topics[i]!r}, so each needs a JSON path "
                        f"(P1_JSON_PATH_L{i + 1}, P1_JSON_PATH_L{j + 1})"
                    )
        unit = UNITS.get(str(self.unit).strip().lower())
        if unit is None:
            raise MeterConfigError(f"P1_UNIT must be A, W or kW: got {self.unit!r}")
        voltage = self.voltage
        if isinstance(voltage, bool) or not isinstance(voltage, (int, float)) or not 100 <= voltage <= 300:
            raise MeterConfigError(f"P1_VOLTAGE must be a phase voltage between 100 and 300: got {voltage!r}")
        heartbeat = None if not self.heartbeat_topic else _check_topic(self.heartbeat_topic, "P1_HEARTBEAT_TOPIC")
        # frozen: normalised values go in through object.__setattr__
        object.__setattr__(self, "topics", topics)
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "voltage", float(voltage))
        object.__setattr__(self, "heartbeat_topic", heartbeat)

    @classmethod
    def from_settings(
        cls,
        topics: Sequence[str | None] | None = None,
        paths: Sequence[str | None] | None = None,
        unit: str | None = None,
        voltage: float | None = None,
        preset: str | None = None,
        device: str | None = None,
        heartbeat_topic: str | None = None,
    ) -> MeterSource:
        """A source from the P1_* settings. None (or empty) means unset: the preset's value,
        else the built-in default. Explicit settings always win."""
        base: MeterPreset | None = None
        if preset:
            base = P1_PRESETS.get(preset.strip())
            if base is None:
                raise MeterConfigError(f"P1_PRESET {preset!r} is unknown; choose one of {', '.join(P1_PRESETS)}")
        if device is not None and device.strip():
            device = device.strip()
            if any(c in device for c in "+#\0"):
                raise MeterConfigError(f"P1_DEVICE must not contain wildcards: got {device!r}")
        else:
            device = base.default_device if base else None

        def per_phase(given: Sequence[str | None] | None, name: str) -> list[str | None]:
            values = list(given) if given is not None else [None, None, None]
            if len(values) != 3:
                raise MeterConfigError(f"{name} needs one value per phase (L1, L2, L3)")
            return [v if v is not None and str(v).strip() else None for v in values]

        chosen_topics = per_phase(topics, "P1_TOPIC_L1..3")
        chosen_paths = per_phase(paths, "P1_JSON_PATH_L1..3")
        final_topics: list[str] = []
        final_paths: list[str | None] = []
        for i in range(3):
            topic = chosen_topics[i]
            if topic is None:
                topic = base.topics[i].replace("{device}", device or "") if base else DEFAULT_TOPICS[i]
            final_topics.append(topic)
            path = chosen_paths[i]
            # A preset's path only fits the preset's own topic.
            if path is None and base is not None and chosen_topics[i] is None:
                path = base.paths[i]
            final_paths.append(path)
        return cls(
            topics=tuple(final_topics),  # type: ignore[arg-type]
            paths=tuple(final_paths),  # type: ignore[arg-type]
            unit=unit if unit else (base.unit if base else "A"),
            voltage=DEFAULT_VOLTAGE if voltage is None else voltage,
            heartbeat_topic=heartbeat_topic or (base.heartbeat_topic if base else None),
        )

    def subscriptions(self) -> list[str]:
        """Topics to subscribe to, each once (phases may share one JSON topic)."""
        seen = dict.fromkeys(self.topics)
        if self.heartbeat_topic:
            seen.setdefault(self.heartbeat_topic)
        return list(seen)

    def is_heartbeat(self, topic: str) -> bool:
        """A message here proves the meter alive even when no value changed."""
        return self.heartbeat_topic is not None and topic == self.heartbeat_topic

    def phases_of(self, topic: str) -> list[int]:
        return [i for i, t in enumerate(self.topics) if t == topic]

    def parse(self, topic: str, payload: bytes | str) -> list[tuple[int, float]]:
        """(phase, amps) read from one message; [] when the topic carries no phase.

        A message is read whole or not at all: a value that cannot be read
        raises PayloadError naming the phase.
        """
        phases = self.phases_of(topic)
        if not phases:
            return []
        text = decode_text(payload, MAX_METER_PAYLOAD_BYTES)
        obj: Any = None
        if any(self.paths[i] is not None for i in phases):
            obj = load_json(text, payload)
        readings: list[tuple[int, float]] = []
        for phase in phases:
            path = self.paths[phase]
            try:
                if path is None:
                    value = parse_number(text)
                else:
                    value = coerce_number(extract_path(obj, path))
            except PayloadError as e:
                raise PayloadError(f"L{phase + 1} on {topic}: {e}") from None
            readings.append((phase, self._to_amps(value, phase, payload)))
        return readings

    def _to_amps(self, value: float, phase: int, payload: bytes | str) -> float:
        if self.unit == "W":
            amps = value / self.voltage
        elif self.unit == "kW":
            amps = value * 1000.0 / self.voltage
        else:
            amps = value
        if not math.isfinite(amps) or abs(amps) > MAX_ABS_AMPS:
            raise PayloadError(
                f"L{phase + 1}: {value:g} {self.unit} is {amps:g} A, beyond ±{MAX_ABS_AMPS:g} A: not a real reading"
            )
        return amps

    def describe(self) -> str:
        """One line for the log at start: where each phase comes from."""
        parts = []
        for i in range(3):
            path = f" [{self.paths[i]}]" if self.paths[i] else ""
            parts.append(f"L{i + 1} {self.topics[i]}{path}")
        hb = f", heartbeat {self.heartbeat_topic}" if self.heartbeat_topic else ""
        return f"{'; '.join(parts)} ({self.unit}, {self.voltage:g} V{hb})"


__all__ = [
    "DEFAULT_TOPICS",
    "MAX_ABS_AMPS",
    "MeterConfigError",
    "MeterPreset",
    "MeterSource",
    "P1_PRESETS",
    "extract_path",
    "parse_path",
]
