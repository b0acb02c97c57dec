"""Where the house's meter values come from, how to read them, and what they add up to.

`MeterSource` knows every input of the meter: per phase a current, a signed
power (or delivered and returned power) and a voltage, each on its own topic
with an optional JSON path, plus the whole house's net power and a heartbeat
topic. Presets cover the common P1 sources; explicit settings win over a
preset. `MeterState` is the meter's memory: fed one message at a time, it
says which phases changed and to what current, and refuses readings no
installation could carry. It is pure apart from its inputs (no clock, no I/O).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Sequence

from bridge.balancer.capacity import MAX_CAPACITY_LIMIT_KW
from bridge.limits import IMPLAUSIBLE_FUSE_MULTIPLE, meter_amps_bound, meter_amps_plausible
from bridge.mqtt.payloads import PayloadError, _json_kind, coerce_number, decode_text, load_json, parse_number

# Larger than any meter message seen (Tasmota SENSOR, dsmr/json are ~2 KB),
# small enough that a flood of junk costs little to refuse.
MAX_METER_PAYLOAD_BYTES = 64 * 1024
DEFAULT_TOPICS = ("p1/current_l1", "p1/current_l2", "p1/current_l3")
DEFAULT_VOLTAGE = 230.0
# What a phase voltage can be: the bounds of P1_VOLTAGE and of a measured voltage.
VOLTAGE_RANGE = (100.0, 300.0)
# P1_PHASES: a three-phase connection, or a single-phase one on L1.
PHASE_COUNTS = (1, 3)
UNITS = {"a": "A", "w": "W", "kw": "kW"}
POWER_UNITS = {"w": "W", "kw": "kW"}
_WATTS_PER = {"A": None, "W": 1.0, "kW": 1000.0}

# The kinds of meter input.
CURRENT = "current"        # A, as the meter reports it (often unsigned, often whole amps)
POWER = "power"            # net W of a phase, import positive
DELIVERED = "delivered"    # W taken from the grid on a phase
RETURNED = "returned"      # W fed back on a phase
VOLTAGE = "voltage"        # V of a phase
TOTAL_POWER = "total_power"  # net W of the whole house, import positive
POWER_KINDS = (POWER, DELIVERED, RETURNED)

# The setting that names each kind's topic; its JSON path setting is the same
# name with JSON_PATH for TOPIC.
_TOPIC_SETTING = {
    CURRENT: "P1_TOPIC_L{n}",
    POWER: "P1_POWER_TOPIC_L{n}",
    DELIVERED: "P1_POWER_DELIVERED_TOPIC_L{n}",
    RETURNED: "P1_POWER_RETURNED_TOPIC_L{n}",
    VOLTAGE: "P1_VOLTAGE_TOPIC_L{n}",
    TOTAL_POWER: "P1_POWER_TOPIC",
}


def topic_setting(kind: str, phase: int | None) -> str:
    """The name of the setting for one input's topic, e.g. P1_POWER_DELIVERED_TOPIC_L2."""
    return _TOPIC_SETTING[kind].format(n="" if phase is None else phase + 1)


def path_setting(kind: str, phase: int | None) -> str:
    return topic_setting(kind, phase).replace("TOPIC", "JSON_PATH")


class MeterConfigError(ValueError):
    """The meter settings do not describe a usable source; the message names the setting."""


class FieldMissing(PayloadError):
    """The message does not carry this field: a partial message, not a bad one."""


@dataclass(frozen=True)
class MeterField:
    """One value the meter sends: its kind, phase (0..2; None for the whole house),
    topic and JSON path (None: the payload is the number)."""

    kind: str
    phase: int | None
    topic: str
    path: str | None = None

    @property
    def label(self) -> str:
        what = {TOTAL_POWER: "house power"}.get(self.kind, self.kind)
        return what if self.phase is None else f"L{self.phase + 1} {what}"


def _per_phase(kind: str, topic: str, path: str | None = None) -> tuple[MeterField, ...]:
    """Three inputs from templates: {n} is 1..3, {i} is 0..2, {abc} is a..c."""
    return tuple(
        MeterField(kind, i, topic.format(n=i + 1, i=i, abc="abc"[i], device="{device}"),
                   None if path is None else path.format(n=i + 1, i=i, abc="abc"[i]))
        for i in range(3)
    )


@dataclass(frozen=True)
class MeterPreset:
    """One known source. `{device}` in a topic is replaced by P1_DEVICE or `default_device`.
    `topics`/`paths` are the per-phase currents; `inputs` everything else it offers."""

    name: str
    topics: tuple[str, str, str]
    paths: tuple[str | None, str | None, str | None] = (None, None, None)
    unit: str = "A"
    inputs: tuple[MeterField, ...] = ()
    power_unit: str = "W"
    heartbeat_topic: str | None = None
    default_device: str | None = None
    note: str = ""


def _preset_currents(topic: str, path: str | None = None) -> dict[str, Any]:
    inputs = _per_phase(CURRENT, topic, path)
    return {"topics": tuple(i.topic for i in inputs), "paths": tuple(i.path for i in inputs)}


_SHELLY_PRO = "{device}/status/em:0"
_SHELLY_PRO_EVENTS = "{device}/events/rpc"

P1_PRESETS: dict[str, MeterPreset] = {
    p.name: p
    for p in (
        MeterPreset(
            "dsmr-reader",
            **_preset_currents("dsmr/reading/phase_power_current_l{n}"),
            inputs=(
                *_per_phase(DELIVERED, "dsmr/reading/phase_currently_delivered_l{n}"),
                *_per_phase(RETURNED, "dsmr/reading/phase_currently_returned_l{n}"),
                *_per_phase(VOLTAGE, "dsmr/reading/phase_voltage_l{n}"),
            ),
            power_unit="kW",
            heartbeat_topic="dsmr/reading/timestamp",
            note="split topics, retained, a value re-sent only when it changes; the timestamp proves the meter alive",
        ),
        MeterPreset(
            "homewizard",
            **_preset_currents("homewizard/{device}", "active_current_l{n}_a"),
            inputs=(
                *_per_phase(POWER, "homewizard/{device}", "active_power_l{n}_w"),
                *_per_phase(VOLTAGE, "homewizard/{device}", "active_voltage_l{n}_v"),
                MeterField(TOTAL_POWER, None, "homewizard/{device}", "active_power_w"),
            ),
            default_device="p1",
            note="the local API v1 JSON re-published on MQTT",
        ),
        MeterPreset(
            "homewizard-v2",
            **_preset_currents("homewizard/{device}", "current_l{n}_a"),
            inputs=(
                *_per_phase(POWER, "homewizard/{device}", "power_l{n}_w"),
                *_per_phase(VOLTAGE, "homewizard/{device}", "voltage_l{n}_v"),
                MeterField(TOTAL_POWER, None, "homewizard/{device}", "power_w"),
            ),
            default_device="p1",
            note="the local API v2 JSON re-published on MQTT",
        ),
        MeterPreset(
            "tasmota-sml",
            **_preset_currents("tele/{device}/SENSOR", "SML.current_l{n}"),
            default_device="tasmota",
            note="group and key names are the Tasmota script's; SML.current_lN is the convention",
        ),
        MeterPreset(
            "esphome-dsmr",
            **_preset_currents("{device}/sensor/current_phase_{n}/state"),
            inputs=(
                *_per_phase(DELIVERED, "{device}/sensor/power_consumed_phase_{n}/state"),
                *_per_phase(RETURNED, "{device}/sensor/power_produced_phase_{n}/state"),
                *_per_phase(VOLTAGE, "{device}/sensor/voltage_phase_{n}/state"),
            ),
            power_unit="kW",
            default_device="slimmelezer",
            note="ESPHome dsmr component with the SlimmeLezer's sensor names; the device is the node name",
        ),
        MeterPreset(
            "shelly-3em",
            **_preset_currents("shellies/{device}/emeter/{i}/current"),
            inputs=(
                *_per_phase(POWER, "shellies/{device}/emeter/{i}/power"),
                *_per_phase(VOLTAGE, "shellies/{device}/emeter/{i}/voltage"),
            ),
            default_device="shellyem3",
            note="Gen1; the device is shellyem3-<mac>",
        ),
        MeterPreset(
            "shelly-pro-3em",
            **_preset_currents(_SHELLY_PRO, "{abc}_current"),
            inputs=(
                *_per_phase(POWER, _SHELLY_PRO, "{abc}_act_power"),
                *_per_phase(VOLTAGE, _SHELLY_PRO, "{abc}_voltage"),
                MeterField(TOTAL_POWER, None, _SHELLY_PRO, "total_act_power"),
                # The RPC notifications (on by default) carry only what changed.
                *_per_phase(CURRENT, _SHELLY_PRO_EVENTS, "params.em:0.{abc}_current"),
                *_per_phase(POWER, _SHELLY_PRO_EVENTS, "params.em:0.{abc}_act_power"),
                *_per_phase(VOLTAGE, _SHELLY_PRO_EVENTS, "params.em:0.{abc}_voltage"),
                MeterField(TOTAL_POWER, None, _SHELLY_PRO_EVENTS, "params.em:0.total_act_power"),
            ),
            default_device="shellypro3em",
            note="Gen2; the device is the Shelly's MQTT prefix (shellypro3em-<mac> by default)",
        ),
        MeterPreset(
            "dsmr-api",
            **_preset_currents("{device}/current_l{n}", "current_l{n}[0].value"),
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
            if not isinstance(current, list):
                raise PayloadError(f"the message has no {shown_path!r} (a JSON {_json_kind(current)} where a list should be)")
            if token >= len(current):
                raise FieldMissing(f"the message has no {shown_path!r} (no list item {token})")
            current = current[token]
        else:
            if not isinstance(current, dict):
                raise PayloadError(f"the message has no {shown_path!r} (a JSON {_json_kind(current)} where an object should be)")
            if token not in current:
                raise FieldMissing(f"the message has no {shown_path!r} (no key {token!r})")
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


def _clean(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def message_values(topic: str, payload: bytes | str, fields: Sequence[tuple[str | None, str]]
                   ) -> tuple[list[float | None], Any]:
    """Each field's number in one message (a JSON path, or None: the payload is the number), None
    where the message does not carry it, and the parsed JSON (None for a plain payload). A value
    that is there and cannot be read raises PayloadError naming the field's label."""
    text = decode_text(payload, MAX_METER_PAYLOAD_BYTES)
    obj = load_json(text, payload) if any(path is not None for path, _label in fields) else None
    values: list[float | None] = []
    for path, label in fields:
        try:
            values.append(parse_number(text) if path is None else coerce_number(extract_path(obj, path)))
        except FieldMissing:
            values.append(None)
        except PayloadError as e:
            raise PayloadError(f"{label} on {topic}: {e}") from None
    return values, obj


class FieldReading(NamedTuple):
    """One value read from a message, in A (current), W (powers) or V (voltage)."""

    input: MeterField
    value: float

    @property
    def kind(self) -> str:
        return self.input.kind

    @property
    def phase(self) -> int | None:
        return self.input.phase


@dataclass(frozen=True)
class MeterSource:
    """Every input of the meter. `topics`/`paths`/`unit` are the per-phase current
    topics (a phase may have none when a power input serves it); `inputs` holds the
    powers, voltages and the house's power; `power_unit` is the unit of every power input.
    `phases` is 3, or 1 for a single-phase connection: only L1 has inputs, L2 and L3
    carry no current."""

    topics: tuple[str | None, str | None, str | None] = DEFAULT_TOPICS
    paths: tuple[str | None, str | None, str | None] = (None, None, None)
    unit: str = "A"
    voltage: float = DEFAULT_VOLTAGE
    heartbeat_topic: str | None = None
    inputs: tuple[MeterField, ...] = ()
    power_unit: str = "W"
    phases: int = 3
    all_inputs: tuple[MeterField, ...] = field(init=False, repr=False, compare=False)
    _by_topic: dict[str, tuple[MeterField, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.topics) != 3 or len(self.paths) != 3:
            raise MeterConfigError("a meter source needs a topic and a path setting for each of L1, L2, L3")
        unit = UNITS.get(str(self.unit).strip().lower())
        if unit is None:
            raise MeterConfigError(f"P1_UNIT must be A, W or kW: got {self.unit!r}")
        power_unit = POWER_UNITS.get(str(self.power_unit).strip().lower())
        if power_unit is None:
            raise MeterConfigError(f"P1_POWER_UNIT must be W or kW: got {self.power_unit!r}")
        if self.phases not in PHASE_COUNTS:
            raise MeterConfigError(f"P1_PHASES must be 3 or 1 (a single-phase connection on L1): got {self.phases!r}")
        voltage = self.voltage
        lo, hi = VOLTAGE_RANGE
        if isinstance(voltage, bool) or not isinstance(voltage, (int, float)) or not lo <= voltage <= hi:
            raise MeterConfigError(f"P1_VOLTAGE must be a phase voltage between {lo:g} and {hi:g}: got {voltage!r}")
        topics = tuple(None if _clean(t) is None else _check_topic(t, f"P1_TOPIC_L{i + 1}") for i, t in enumerate(self.topics))
        paths = tuple(_clean(p) for p in self.paths)
        currents = tuple(MeterField(CURRENT, i, t, paths[i]) for i, t in enumerate(topics) if t is not None)
        for i, p in enumerate(paths):
            if p is not None and topics[i] is None:
                raise MeterConfigError(f"P1_JSON_PATH_L{i + 1} is set but P1_TOPIC_L{i + 1} is not")
        others = []
        for inp in self.inputs:
            if inp.kind not in _TOPIC_SETTING or (inp.phase is None) != (inp.kind == TOTAL_POWER):
                raise MeterConfigError(f"not a meter input: {inp!r}")
            topic = _check_topic(inp.topic, topic_setting(inp.kind, inp.phase))
            others.append(MeterField(inp.kind, inp.phase, topic, _clean(inp.path)))
        all_inputs = currents + tuple(others)
        extra = next((i for i in all_inputs if i.phase is not None and i.phase >= self.phases), None)
        if extra is not None:
            raise _absent_phase_error(topic_setting(extra.kind, extra.phase), self.phases)
        for inp in all_inputs:
            if inp.path is not None:
                try:
                    parse_path(inp.path)
                except ValueError as e:
                    raise MeterConfigError(f"{path_setting(inp.kind, inp.phase)}: {e}") from None
        _check_phases(all_inputs, unit, self.phases)
        _check_shared_topics(all_inputs)
        heartbeat = None if not self.heartbeat_topic else _check_topic(self.heartbeat_topic, "P1_HEARTBEAT_TOPIC")
        if heartbeat is not None and any(i.topic == heartbeat for i in all_inputs):
            raise MeterConfigError(f"P1_HEARTBEAT_TOPIC {heartbeat!r} is also a value topic: choose a topic that carries no value")
        # frozen: normalised values go in through object.__setattr__
        object.__setattr__(self, "topics", topics)
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "power_unit", power_unit)
        object.__setattr__(self, "voltage", float(voltage))
        object.__setattr__(self, "heartbeat_topic", heartbeat)
        object.__setattr__(self, "inputs", tuple(others))
        object.__setattr__(self, "all_inputs", all_inputs)
        by_topic: dict[str, list[MeterField]] = {}
        for inp in all_inputs:
            by_topic.setdefault(inp.topic, []).append(inp)
        object.__setattr__(self, "_by_topic", {t: tuple(i) for t, i in by_topic.items()})

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
        *,
        power_topics: Sequence[str | None] | None = None,
        power_paths: Sequence[str | None] | None = None,
        delivered_topics: Sequence[str | None] | None = None,
        delivered_paths: Sequence[str | None] | None = None,
        returned_topics: Sequence[str | None] | None = None,
        returned_paths: Sequence[str | None] | None = None,
        voltage_topics: Sequence[str | None] | None = None,
        voltage_paths: Sequence[str | None] | None = None,
        power_unit: str | None = None,
        total_power_topic: str | None = None,
        total_power_path: str | None = None,
        phases: int = 3,
    ) -> MeterSource:
        """A source from the P1_* settings. None (or empty) means unset: the preset's value,
        else the built-in default. Explicit settings always win: a phase's current, its power
        inputs (power, or delivered and returned), its voltage and the house's power are each
        taken from the settings when any of them is set there, else from the preset. With
        `phases` 1 the preset's and the defaults' L2 and L3 inputs are left out; one set
        in the settings is an error."""
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

        def per_phase(given: Sequence[str | None] | None, kind: str, setting: str) -> list[str | None]:
            values = list(given) if given is not None else [None, None, None]
            if len(values) != 3:
                name = setting.format(n="1..3")
                raise MeterConfigError(f"{name} needs one value per phase (L1, L2, L3)")
            return [_clean(v) for v in values]

        def on_device(topic: str) -> str:
            return topic.replace("{device}", device or "")

        explicit: dict[str, tuple[list[str | None], list[str | None]]] = {
            kind: (per_phase(t, kind, _TOPIC_SETTING[kind]), per_phase(p, kind, _TOPIC_SETTING[kind]))
            for kind, t, p in (
                (CURRENT, topics, paths),
                (POWER, power_topics, power_paths),
                (DELIVERED, delivered_topics, delivered_paths),
                (RETURNED, returned_topics, returned_paths),
                (VOLTAGE, voltage_topics, voltage_paths),
            )
        }
        unit = unit if unit else (base.unit if base else "A")
        preset_inputs = [MeterField(i.kind, i.phase, on_device(i.topic), i.path) for i in (base.inputs if base else ())]
        if UNITS.get(unit.strip().lower(), unit) != "A":
            # The current topics carry power (P1_UNIT W or kW): that replaces the preset's power inputs.
            preset_inputs = [i for i in preset_inputs if i.kind not in POWER_KINDS]
        final_topics: list[str | None] = []
        final_paths: list[str | None] = []
        inputs: list[MeterField] = []
        for i in range(3):
            if i >= phases:
                for kind, (given_topics, given_paths) in explicit.items():
                    if given_topics[i] is not None or given_paths[i] is not None:
                        name = topic_setting(kind, i) if given_topics[i] is not None else path_setting(kind, i)
                        raise _absent_phase_error(name, phases)
                final_topics.append(None)
                final_paths.append(None)
                continue
            topic, path = explicit[CURRENT][0][i], explicit[CURRENT][1][i]
            preset_currents = [p for p in preset_inputs if p.kind == CURRENT and p.phase == i]
            if topic is None:
                if base is not None:
                    topic = on_device(base.topics[i])
                    # A preset's path only fits the preset's own topic.
                    path = path or base.paths[i]
                    inputs += preset_currents
                elif not any(explicit[k][0][i] for k in POWER_KINDS):
                    topic = DEFAULT_TOPICS[i]  # a phase with a power topic needs no current
            final_topics.append(topic)
            final_paths.append(path)
            inputs += _explicit_or_preset(explicit, preset_inputs, POWER_KINDS, i)
            inputs += _explicit_or_preset(explicit, preset_inputs, (VOLTAGE,), i)
        total_topic, total_path = _clean(total_power_topic), _clean(total_power_path)
        if total_topic is not None:
            inputs.append(MeterField(TOTAL_POWER, None, total_topic, total_path))
        elif total_path is not None:
            raise MeterConfigError("P1_POWER_JSON_PATH is set but P1_POWER_TOPIC is not")
        else:
            inputs += [p for p in preset_inputs if p.kind == TOTAL_POWER]
        return cls(
            topics=tuple(final_topics),  # type: ignore[arg-type]
            paths=tuple(final_paths),  # type: ignore[arg-type]
            unit=unit,
            voltage=DEFAULT_VOLTAGE if voltage is None else voltage,
            heartbeat_topic=heartbeat_topic or (base.heartbeat_topic if base else None),
            inputs=tuple(inputs),
            power_unit=power_unit if power_unit else (base.power_unit if base else "W"),
            phases=phases,
        )

    def gives_power(self, phase: int | None) -> bool:
        """Whether a reading can carry a power for `phase` (None: the whole house's), the way
        `MeterState` derives one: a phase's power or delivered input (a phase the connection does
        not have follows L1), the house's power input. Currents and voltages alone give none."""
        if phase is None:
            return any(i.kind == TOTAL_POWER for i in self.all_inputs)
        if phase >= self.phases:
            return self.gives_power(0)
        return any(i.kind in (POWER, DELIVERED) and i.phase == phase for i in self.all_inputs)

    def subscriptions(self) -> list[str]:
        """Topics to subscribe to, each once (inputs may share one JSON topic)."""
        seen = dict.fromkeys(self._by_topic)
        if self.heartbeat_topic:
            seen.setdefault(self.heartbeat_topic)
        return list(seen)

    def is_heartbeat(self, topic: str) -> bool:
        """A message here proves the meter alive even when no value changed."""
        return self.heartbeat_topic is not None and topic == self.heartbeat_topic

    def inputs_on(self, topic: str) -> tuple[MeterField, ...]:
        return self._by_topic.get(topic, ())

    def has_power(self, phase: int) -> bool:
        """Whether a power input (or the current topic in W/kW) serves this phase."""
        return any(i.phase == phase and self._kind(i) in POWER_KINDS for i in self.all_inputs)

    def _kind(self, inp: MeterField) -> str:
        # A current topic in W or kW carries a phase's net power.
        return POWER if inp.kind == CURRENT and self.unit != "A" else inp.kind

    def _watts_per_unit(self, inp: MeterField) -> float:
        if inp.kind == CURRENT:
            return _WATTS_PER[self.unit] or 1.0
        if inp.kind == VOLTAGE:
            return 1.0
        return _WATTS_PER[self.power_unit] or 1.0

    def parse(self, topic: str, payload: bytes | str) -> list[FieldReading]:
        """The values one message carries, in A, W or V; [] when the topic is not the meter's
        or the message carries none of its fields but is shaped like its source's messages
        (another component's status on a shared topic). A value that is there but cannot be
        read, or a message that is not shaped like the source's at all, raises PayloadError."""
        inputs = self.inputs_on(topic)
        if not inputs:
            return []
        values, obj = message_values(topic, payload, [(i.path, i.label) for i in inputs])
        readings: list[FieldReading] = []
        for inp, value in zip(inputs, values):
            if value is None:
                continue
            kind = self._kind(inp)
            shown_input = inp if kind == inp.kind else MeterField(kind, inp.phase, inp.topic, inp.path)
            value *= self._watts_per_unit(inp)
            if not math.isfinite(value):  # a huge kW value overflows when made W
                raise PayloadError(f"{inp.label} on {topic}: a value out of range")
            readings.append(FieldReading(shown_input, value))
        if not readings and not any(_has_root(obj, i.path) for i in inputs if i.path is not None):
            fields = ", ".join(dict.fromkeys(i.path for i in inputs if i.path is not None))
            raise PayloadError(f"the message on {topic} carries none of the meter's fields ({fields})")
        return readings

    def describe(self) -> str:
        """One line for the log at start: where each value comes from."""
        parts = []
        for inp in self.all_inputs:
            path = f" [{inp.path}]" if inp.path else ""
            parts.append(f"{MeterField(self._kind(inp), inp.phase, inp.topic).label} {inp.topic}{path}")
        hb = f", heartbeat {self.heartbeat_topic}" if self.heartbeat_topic else ""
        if self.phases == 1:
            hb += ", single-phase: L2 and L3 count as 0 A"
        units = f"currents in {self.unit}" + (f", powers in {self.power_unit}" if self.inputs else "")
        return f"{'; '.join(parts)} ({units}, {self.voltage:g} V unless measured{hb})"


def _explicit_or_preset(explicit, preset_inputs: list[MeterField], kinds: tuple[str, ...], phase: int) -> list[MeterField]:
    """A phase's inputs of these kinds: from the settings when any is set there, else the preset's."""
    chosen = []
    for kind in kinds:
        topic, path = explicit[kind][0][phase], explicit[kind][1][phase]
        if topic is not None:
            chosen.append(MeterField(kind, phase, topic, path))
        elif path is not None:
            raise MeterConfigError(f"{path_setting(kind, phase)} is set but {topic_setting(kind, phase)} is not")
    if chosen:
        return chosen
    return [p for p in preset_inputs if p.kind in kinds and p.phase == phase]


def _absent_phase_error(setting: str, phases: int) -> MeterConfigError:
    return MeterConfigError(
        f"{setting} is set but P1_PHASES is {phases}: a single-phase connection reads only L1 "
        "(unset it, or set P1_PHASES=3)"
    )


def _check_phases(inputs: Sequence[MeterField], unit: str, phase_count: int) -> None:
    for phase in range(phase_count):
        kinds = {POWER if i.kind == CURRENT and unit != "A" else i.kind for i in inputs if i.phase == phase}
        n = phase + 1
        if RETURNED in kinds and DELIVERED not in kinds:
            raise MeterConfigError(
                f"P1_POWER_RETURNED_TOPIC_L{n} needs P1_POWER_DELIVERED_TOPIC_L{n}: the returned power "
                "is subtracted from the delivered power"
            )
        if POWER in kinds and DELIVERED in kinds:
            raise MeterConfigError(
                f"L{n} has a net power (P1_POWER_TOPIC_L{n}, or P1_TOPIC_L{n} with P1_UNIT {unit}) and a delivered "
                f"power (P1_POWER_DELIVERED_TOPIC_L{n}): set one of them"
            )
        if not kinds & {CURRENT, POWER, DELIVERED}:
            raise MeterConfigError(
                f"L{n} has no input: set P1_TOPIC_L{n} (current), P1_POWER_TOPIC_L{n} (net power) "
                f"or P1_POWER_DELIVERED_TOPIC_L{n}"
            )
        if VOLTAGE in kinds and not kinds & {POWER, DELIVERED}:
            raise MeterConfigError(
                f"P1_VOLTAGE_TOPIC_L{n} is set but L{n} has no power input: the voltage only turns power into current"
            )


def _check_shared_topics(inputs: Sequence[MeterField]) -> None:
    by_topic: dict[str, list[MeterField]] = {}
    for inp in inputs:
        by_topic.setdefault(inp.topic, []).append(inp)
    for topic, sharing in by_topic.items():
        if len(sharing) < 2:
            continue
        plain = [i for i in sharing if i.path is None]
        if plain:
            names = ", ".join(path_setting(i.kind, i.phase) for i in sharing)
            raise MeterConfigError(f"{len(sharing)} inputs share the topic {topic!r}, so each needs a JSON path ({names})")
        seen: dict[str, MeterField] = {}
        for i in sharing:
            if i.path in seen:
                raise MeterConfigError(
                    f"{seen[i.path].label} and {i.label} read the same field {i.path!r} of {topic!r}"
                )
            seen[i.path] = i  # type: ignore[index]


def _has_root(obj: Any, path: str) -> bool:
    """Whether the message has the first key (or item) of a path: shaped like its source's messages."""
    first = parse_path(path)[0]
    if isinstance(first, int):
        return isinstance(obj, list) and first < len(obj)
    return isinstance(obj, dict) and first in obj


# ---- the meter's memory ----------------------------------------------------------------


@dataclass(frozen=True)
class PhaseValue:
    """A phase's current as the balancer should use it, and its net power when known (W)."""

    phase: int
    amps: float
    power_w: float | None = None


@dataclass(frozen=True)
class MeterUpdate:
    """What one message changed.

    `phases`: phases with a new value (feed each to the balancer); `heartbeat`: the
    meter is proven alive (after the phases, vouch for the rest); `total_power_w`: the
    house's net power; `invalid`: why the message was refused (count it, change nothing);
    `note`: worth an INFO line; `gap`: said once per run, a WARNING."""

    phases: tuple[PhaseValue, ...] = ()
    heartbeat: bool = False
    total_power_w: float | None = None
    invalid: str | None = None
    note: str | None = None
    gap: str | None = None


class MeterState:
    """The latest value of every meter input, and the phase currents they add up to.

    Each message updates the values it carries; a phase's current is recomputed from
    its latest current, power and voltage. On a single-phase connection L2 and L3
    read 0 A whenever L1 has a reading, so they are exactly as fresh as L1 and the
    balancer needs no notion of absent phases. A retained value has unknown age: with a
    heartbeat topic it is held until a live heartbeat proves the meter alive (then it
    is the phase's value, as old as that heartbeat); without one it is not used."""

    def __init__(self, source: MeterSource, *, fuse_a: float, stale_after_s: float) -> None:
        self.source = source
        self.limit_a = meter_amps_bound(fuse_a)
        self.stale_after_s = stale_after_s
        # (kind, phase) -> value: the live ones, and retained ones waiting for a live heartbeat
        self._values: dict[tuple[str, int | None], float] = {}
        self._pending: dict[tuple[str, int | None], float] = {}
        self._last_live: dict[str, float] = {}
        self._gap_said = False

    def on_message(self, topic: str, payload: bytes | str, retain: bool, now: float) -> MeterUpdate:
        src = self.source
        if src.is_heartbeat(topic):
            if retain:
                return MeterUpdate()  # its age is unknown: it proves nothing
            gap = self._gap(topic, now)
            held = {phase for _, phase in self._pending}
            self._values.update(self._pending)
            self._pending.clear()
            phases = self._phases(p for p in range(3) if p in held)
            note = None
            if phases:
                names = ", ".join(f"L{v.phase + 1}" for v in phases)
                note = f"retained values of {names} taken as current: the heartbeat on {topic} is live"
            total = self._live(TOTAL_POWER, None) if None in held else None
            return MeterUpdate(phases=phases, heartbeat=True, total_power_w=total, note=note, gap=gap)
        if retain and src.heartbeat_topic is None:
            return MeterUpdate(note=f"retained meter value on {topic} not used (unknown age); waiting for a live one")
        try:
            readings = src.parse(topic, payload)
            for r in readings:
                self._check_plausible(r)
        except PayloadError as e:
            return MeterUpdate(invalid=str(e))
        if not readings:
            return MeterUpdate()
        if retain:
            for r in readings:
                if self._values.get((r.kind, r.phase)) != r.value:  # else a copy re-sent at a re-subscribe
                    self._pending[(r.kind, r.phase)] = r.value
            return MeterUpdate()
        touched = set()
        for r in readings:
            self._values[(r.kind, r.phase)] = r.value
            self._pending.pop((r.kind, r.phase), None)  # the live value is the newer one
            touched.add(r.phase)
        gap = None if src.heartbeat_topic else self._gap(topic, now)
        total = self._live(TOTAL_POWER, None) if None in touched else None
        return MeterUpdate(phases=self._phases(p for p in range(3) if p in touched), total_power_w=total, gap=gap)

    def phase_value(self, phase: int) -> PhaseValue | None:
        """The phase's current from its latest live values; None while nothing usable is known.

        A fuse heats on the RMS current and active power understates it when the power
        factor is below 1 (|P| / V <= I), so with both the larger one counts, signed as
        the power (export negative). A returned power not heard yet counts as 0; a
        delivered power not heard yet leaves the phase to its current. A phase the
        connection does not have carries nothing (0 A, 0 W) as long as L1 has a reading."""
        if phase >= self.source.phases:
            first = self.phase_value(0)
            return None if first is None else PhaseValue(phase, 0.0, None if first.power_w is None else 0.0)
        current = self._live(CURRENT, phase)
        power = self._live(POWER, phase)
        if power is None:
            delivered = self._live(DELIVERED, phase)
            if delivered is not None:
                power = delivered - (self._live(RETURNED, phase) or 0.0)
        if power is None:
            return None if current is None else PhaseValue(phase, current)
        from_power = power / self._volts(phase)
        if current is None:
            return PhaseValue(phase, from_power, power)
        return PhaseValue(phase, math.copysign(max(abs(current), abs(from_power)), -1.0 if power < 0 else 1.0), power)

    def _phases(self, phases) -> tuple[PhaseValue, ...]:
        phases = set(phases)
        if 0 in phases:  # the phases the connection does not have follow L1
            phases.update(range(self.source.phases, 3))
        values = (self.phase_value(p) for p in sorted(phases))
        return tuple(v for v in values if v is not None)

    def _live(self, kind: str, phase: int | None) -> float | None:
        return self._values.get((kind, phase))

    def _volts(self, phase: int | None) -> float:
        measured = None if phase is None else self._live(VOLTAGE, phase)
        return measured if measured is not None else self.source.voltage

    def _check_plausible(self, r: FieldReading) -> None:
        where = f"{r.input.label} on {r.input.topic}"
        if r.kind == VOLTAGE:
            lo, hi = VOLTAGE_RANGE
            if not lo <= r.value <= hi:
                raise PayloadError(f"{where}: {r.value:g} V is not a phase voltage ({lo:g} to {hi:g} V)")
            return
        limit = self.limit_a if r.phase is not None else 3 * self.limit_a
        amps = r.value if r.kind == CURRENT else r.value / self._volts(r.phase)
        if not meter_amps_plausible(amps, limit):
            value = f"{r.value:g} A" if r.kind == CURRENT else f"{r.value:g} W ({amps:.0f} A)"
            raise PayloadError(
                f"{where}: {value} is at or beyond ±{limit:g} A ({IMPLAUSIBLE_FUSE_MULTIPLE} x BALANCER_FUSE_A"
                f"{'' if r.phase is not None else ' on three phases'}): not a real reading (a power sent as amps?)"
            )

    def _gap(self, topic: str, now: float) -> str | None:
        last = self._last_live.get(topic)
        self._last_live[topic] = now
        if self._gap_said or last is None or now - last <= self.stale_after_s:
            return None
        self._gap_said = True
        return (
            f"meter messages on {topic} came {now - last:.0f} s apart, more than BALANCER_STALE_AFTER_S "
            f"({self.stale_after_s:g} s): between them the meter counts as stale and the charger drops to the "
            "fail-safe. Make the source publish more often (Tasmota: TelePeriod 10, or immediate values) "
            "or raise BALANCER_STALE_AFTER_S. (Said once.)"
        )


# ---- the meter's energy registers ------------------------------------------------------------
#
# A P1 meter counts the energy taken from and fed to the grid (OBIS 1-0:1.8.x and 1-0:2.8.x, one
# register per tariff). The capacity guard takes a period's energy from them: exact, and known
# across a restart within the period. A direction may have several registers (the tariffs): they
# are summed once each has been read.

IMPORT, EXPORT = "import", "export"
ENERGY_UNITS = {"kwh": ("kWh", 1.0), "wh": ("Wh", 0.001)}


def _preset_and_unit(preset: str | None, device: str | None, unit: str | None,
                     units: dict[str, tuple[str, float]], setting: str) -> tuple[str, str, float]:
    """For the meter's extra figures: the preset's name, the device its topics name (P1_DEVICE, else
    the preset's default) and the factor of `unit` (the first of `units` when unset)."""
    name = (preset or "").strip()
    base = P1_PRESETS.get(name)
    dev = _clean(device) or (base.default_device if base else None) or ""
    key = (unit or next(iter(units.values()))[0]).strip().lower()
    if key not in units:
        raise MeterConfigError(f"{setting} must be {' or '.join(u for u, _ in units.values())}: got {unit!r}")
    return name, dev, units[key][1]


@dataclass(frozen=True)
class RegisterField:
    """One register: the grid direction it counts, its topic, JSON path (None: the payload is the
    number) and the kWh per unit of its values."""

    direction: str
    topic: str
    path: str | None = None
    kwh_per_unit: float = 1.0


# The presets' registers. Shapes: dsmr-reader's split topics `dsmr/reading/electricity_delivered_1`
# etc. in kWh (Home Assistant's dsmr_reader definitions); HomeWizard local API v1
# `total_power_import_kwh` / `total_power_export_kwh` and v2 `energy_import_kwh` /
# `energy_export_kwh`; Shelly Pro 3EM (triphase profile) EMData `total_act` / `total_act_ret` in
# Wh on `<prefix>/status/emdata:0`; Tasmota SML scripts' `SML.Total_in` / `SML.Total_out` in kWh
# (the names evcc's Tasmota SML guide asks a script for).
ENERGY_PRESETS: dict[str, tuple[RegisterField, ...]] = {
    "dsmr-reader": tuple(RegisterField(d, f"dsmr/reading/electricity_{w}_{n}")
                         for d, w in ((IMPORT, "delivered"), (EXPORT, "returned")) for n in (1, 2)),
    "homewizard": (RegisterField(IMPORT, "homewizard/{device}", "total_power_import_kwh"),
                   RegisterField(EXPORT, "homewizard/{device}", "total_power_export_kwh")),
    "homewizard-v2": (RegisterField(IMPORT, "homewizard/{device}", "energy_import_kwh"),
                      RegisterField(EXPORT, "homewizard/{device}", "energy_export_kwh")),
    "shelly-pro-3em": (RegisterField(IMPORT, "{device}/status/emdata:0", "total_act", 0.001),
                       RegisterField(EXPORT, "{device}/status/emdata:0", "total_act_ret", 0.001)),
    "tasmota-sml": (RegisterField(IMPORT, "tele/{device}/SENSOR", "SML.Total_in"),
                    RegisterField(EXPORT, "tele/{device}/SENSOR", "SML.Total_out")),
}


class EnergyRegisters:
    """The meter's import and export registers (P1_ENERGY_*_TOPIC, else the preset's) and their
    latest values. Pure: fed one message at a time."""

    def __init__(self, fields: Sequence[RegisterField]) -> None:
        self.fields = tuple(fields)
        self._values: dict[RegisterField, float] = {}

    @classmethod
    def from_settings(cls, preset: str | None = None, device: str | None = None, *,
                      import_topic: str | None = None, import_path: str | None = None,
                      export_topic: str | None = None, export_path: str | None = None,
                      unit: str | None = None) -> EnergyRegisters:
        """Explicit settings win over the preset's, per direction; `unit` (kWh or Wh) applies to
        the explicit ones."""
        name, dev, per_unit = _preset_and_unit(preset, device, unit, ENERGY_UNITS, "P1_ENERGY_UNIT")
        fields: list[RegisterField] = []
        for direction, topic, path in ((IMPORT, import_topic, import_path), (EXPORT, export_topic, export_path)):
            setting = f"P1_ENERGY_{direction.upper()}_TOPIC"
            topic, path = _clean(topic), _clean(path)
            if topic is not None:
                topic = _check_topic(topic, setting)
                if path is not None:
                    try:
                        parse_path(path)
                    except ValueError as e:
                        raise MeterConfigError(f"{setting.replace('TOPIC', 'JSON_PATH')}: {e}") from None
                fields.append(RegisterField(direction, topic, path, per_unit))
            elif path is not None:
                raise MeterConfigError(f"{setting.replace('TOPIC', 'JSON_PATH')} is set but {setting} is not")
            else:
                fields += [RegisterField(f.direction, f.topic.replace("{device}", dev), f.path, f.kwh_per_unit)
                           for f in ENERGY_PRESETS.get(name, ()) if f.direction == direction]
        return cls(fields)

    def topics(self) -> list[str]:
        return list(dict.fromkeys(f.topic for f in self.fields))

    def on_message(self, topic: str, payload: bytes | str) -> bool:
        """Take the registers a message carries; True when one changed. PayloadError for a
        register that is there and not a count of energy (a message without it is not an error:
        a shared JSON topic carries other things too)."""
        fields = [f for f in self.fields if f.topic == topic]
        if not fields:
            return False
        values, _obj = message_values(topic, payload, [(f.path, f"{f.direction} register") for f in fields])
        changed = False
        for f, value in zip(fields, values):
            if value is None:
                continue
            kwh = value * f.kwh_per_unit
            if not (math.isfinite(kwh) and kwh >= 0):
                raise PayloadError(f"{f.direction} register on {topic}: {value!r} is not a count of energy")
            changed = changed or self._values.get(f) != kwh
            self._values[f] = kwh
        return changed

    def total_kwh(self, direction: str) -> float | None:
        """The direction's registers summed; None until each has been read (or without any)."""
        fields = [f for f in self.fields if f.direction == direction]
        if not fields or any(f not in self._values for f in fields):
            return None
        return sum(self._values[f] for f in fields)

    def describe(self) -> str:
        return "; ".join(f"{f.direction} register {f.topic}" + (f" [{f.path}]" if f.path else "") for f in self.fields)


DEMAND, MONTH_PEAK = "demand", "month peak"
DEMAND_UNITS = {"kw": ("kW", 1.0), "w": ("W", 0.001)}
_DSMR_TIME = re.compile(r"(\d{12})[SW]?")


@dataclass(frozen=True)
class DemandField:
    """The meter's own demand figure (DEMAND: the running quarter-hour's average, OBIS 1-0:1.4.0;
    MONTH_PEAK: the month's highest quarter-hour, 1-0:1.6.0): its topic, JSON path (None: the
    payload is the number), kW per unit, and for the month peak the path of its timestamp."""

    kind: str
    topic: str
    path: str | None = None
    kw_per_unit: float = 1.0
    time_path: str | None = None


# The presets' demand figures. Shapes: HomeWizard local API v1 `/api/v1/data`
# `active_power_average_w`, `montly_power_peak_w` (HomeWizard's spelling) and
# `montly_power_peak_timestamp` (YYMMDDhhmmss), v2 `/api/measurement` `average_power_15m_w`,
# `monthly_power_peak_w` and `monthly_power_peak_timestamp` (ISO 8601, no zone), both in W
# (https://api-documentation.homewizard.com/docs/v1/measurement, .../docs/v2/measurement); ESPHome's
# dsmr sensors `active_energy_import_current_average_demand` and
# `active_energy_import_maximum_demand_running_month` in kW under the SlimmeLezer's Belgian names
# (zuidwijk/dsmr slimmelezer-be.yaml), without the peak's time. dsmr-reader does not publish the
# meter's 1-0:1.4.0 / 1-0:1.6.0, and a Tasmota SML script names its own keys: no preset for them.
DEMAND_PRESETS: dict[str, tuple[DemandField, ...]] = {
    "homewizard": (DemandField(DEMAND, "homewizard/{device}", "active_power_average_w", 0.001),
                   DemandField(MONTH_PEAK, "homewizard/{device}", "montly_power_peak_w", 0.001,
                               "montly_power_peak_timestamp")),
    "homewizard-v2": (DemandField(DEMAND, "homewizard/{device}", "average_power_15m_w", 0.001),
                      DemandField(MONTH_PEAK, "homewizard/{device}", "monthly_power_peak_w", 0.001,
                                  "monthly_power_peak_timestamp")),
    "esphome-dsmr": (DemandField(DEMAND, "{device}/sensor/peak_current_average_quarterly_demand/state"),
                     DemandField(MONTH_PEAK, "{device}/sensor/peak_month_maximum_quarterly_demand/state")),
}


class DemandReading(NamedTuple):
    kw: float
    peak_at: datetime | None  # for the month peak: when the meter registered it (local, no zone)


def parse_meter_time(value: Any) -> datetime:
    """A meter's timestamp: DSMR's YYMMDDhhmmss (a number or a string, with the telegram's S/W
    suffix or without) or ISO 8601; local time without a zone. PayloadError when it is neither."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    m = _DSMR_TIME.fullmatch(text)
    try:
        if m:
            return datetime.strptime(m.group(1), "%y%m%d%H%M%S")
        if text:
            return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        pass
    raise PayloadError(f"expected a time like 230101080010 or 2024-06-28T14:12:34, got {value!r}")


class MeterDemand:
    """The meter's own demand figures (P1_DEMAND_TOPIC, P1_MONTH_PEAK_TOPIC, else the preset's) and
    their latest values. Pure: fed one message at a time."""

    def __init__(self, fields: Sequence[DemandField]) -> None:
        self.fields = tuple(fields)
        self._values: dict[str, DemandReading] = {}

    @classmethod
    def from_settings(cls, preset: str | None = None, device: str | None = None, *,
                      demand_topic: str | None = None, demand_path: str | None = None,
                      peak_topic: str | None = None, peak_path: str | None = None,
                      peak_time_path: str | None = None, unit: str | None = None) -> MeterDemand:
        """Explicit settings win over the preset's, per figure; `unit` (kW or W) applies to the
        explicit ones."""
        name, dev, per_unit = _preset_and_unit(preset, device, unit, DEMAND_UNITS, "P1_DEMAND_UNIT")
        fields: list[DemandField] = []
        for kind, setting, topic, path, time_path in (
                (DEMAND, "P1_DEMAND_TOPIC", demand_topic, demand_path, None),
                (MONTH_PEAK, "P1_MONTH_PEAK_TOPIC", peak_topic, peak_path, peak_time_path)):
            topic, path, time_path = _clean(topic), _clean(path), _clean(time_path)
            paths = ((setting.replace("TOPIC", "JSON_PATH"), path), (setting.replace("TOPIC", "TIME_JSON_PATH"), time_path))
            if topic is None:
                for name_, value in paths:
                    if value is not None:
                        raise MeterConfigError(f"{name_} is set but {setting} is not")
                fields += [DemandField(f.kind, f.topic.replace("{device}", dev), f.path, f.kw_per_unit, f.time_path)
                           for f in DEMAND_PRESETS.get(name, ()) if f.kind == kind]
                continue
            topic = _check_topic(topic, setting)
            for name_, value in paths:
                if value is not None:
                    try:
                        parse_path(value)
                    except ValueError as e:
                        raise MeterConfigError(f"{name_}: {e}") from None
            if time_path is not None and path is None:
                raise MeterConfigError("P1_MONTH_PEAK_TIME_JSON_PATH needs P1_MONTH_PEAK_JSON_PATH (a JSON message)")
            fields.append(DemandField(kind, topic, path, per_unit, time_path))
        return cls(fields)

    def topics(self) -> list[str]:
        return list(dict.fromkeys(f.topic for f in self.fields))

    def on_message(self, topic: str, payload: bytes | str) -> bool:
        """Take the figures a message carries; True when it carried one, changed or not (the same
        average read later is a new reading: the period has grown). PayloadError for a figure that
        is there and not a power (a message without it is not an error: a shared JSON topic)."""
        fields = [f for f in self.fields if f.topic == topic]
        if not fields:
            return False
        values, obj = message_values(topic, payload, [(f.path, f.kind) for f in fields])
        readings: list[tuple[DemandField, DemandReading]] = []
        for f, value in zip(fields, values):
            if value is None:
                continue
            kw = value * f.kw_per_unit
            if not (math.isfinite(kw) and 0 <= kw <= MAX_CAPACITY_LIMIT_KW):
                raise PayloadError(f"{f.kind} on {topic}: {value!r} is not a power a connection draws")
            peak_at = None
            if f.time_path is not None:
                try:
                    peak_at = parse_meter_time(extract_path(obj, f.time_path))
                except FieldMissing:
                    pass
                except PayloadError as e:
                    raise PayloadError(f"{f.kind} time on {topic}: {e}") from None
            readings.append((f, DemandReading(kw, peak_at)))
        for f, reading in readings:  # all or nothing: a bad figure changes none
            self._values[f.kind] = reading
        return bool(readings)

    def value(self, kind: str) -> DemandReading | None:
        return self._values.get(kind)

    def describe(self) -> str:
        return "; ".join(f"{f.kind} {f.topic}" + (f" [{f.path}]" if f.path else "") for f in self.fields)


__all__ = [
    "DEMAND",
    "DEMAND_PRESETS",
    "DemandField",
    "DemandReading",
    "MONTH_PEAK",
    "MeterDemand",
    "parse_meter_time",
    "ENERGY_PRESETS",
    "EXPORT",
    "IMPORT",
    "EnergyRegisters",
    "RegisterField",
    "CURRENT",
    "DEFAULT_TOPICS",
    "DELIVERED",
    "FieldReading",
    "MeterConfigError",
    "MeterField",
    "MeterPreset",
    "MeterSource",
    "MeterState",
    "MeterUpdate",
    "P1_PRESETS",
    "PHASE_COUNTS",
    "POWER",
    "PhaseValue",
    "RETURNED",
    "TOTAL_POWER",
    "VOLTAGE",
    "VOLTAGE_RANGE",
    "extract_path",
    "parse_path",
]
