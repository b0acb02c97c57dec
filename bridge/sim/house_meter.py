"""`simulate-cloud --meter-topic`: a P1 meter the simulator publishes itself, so that `run`
against the simulator sees its cars charge and can be shown a cut.

Once a second it publishes, per phase, a house load plus what the simulator's cars draw, in the
shape of one of the bridge's P1 presets (`esphome-dsmr` by default: plain numbers, currents in A,
powers in kW, voltages), with `--meter-topic` as the preset's device (P1_DEVICE). The house load is
changed at run time on `<meter-topic>/house_a/set`: one number (every phase) or three (L1,L2,L3).
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt.meter import CURRENT, DELIVERED, P1_PRESETS, POWER, RETURNED, TOTAL_POWER, VOLTAGE, MeterSource
from bridge.mqtt.payloads import PayloadError, parse_number

log = logging.getLogger(__name__)

DEFAULT_METER_PRESET = "esphome-dsmr"
# The most a simulated house may draw on a phase: a value a 63 A main fuse would still carry.
HOUSE_A_MAX = 63.0
_WATTS = {"W": 1.0, "kW": 1000.0}


def plain_presets() -> tuple[str, ...]:
    """The presets whose every input is a plain number on a topic under the device: the ones this
    meter can publish."""
    return tuple(name for name, p in P1_PRESETS.items()
                 if all(path is None for path in p.paths) and all(i.path is None for i in p.inputs)
                 and all("{device}" in t for t in (*p.topics, *(i.topic for i in p.inputs))))


def parse_house_a(text: str) -> tuple[float, float, float]:
    """`--house-a` and `<meter-topic>/house_a/set`: one number for every phase, or L1,L2,L3.
    ValueError says what is wrong."""
    parts = [p for p in text.replace(";", ",").split(",")]
    if len(parts) not in (1, 3):
        raise ValueError(f"house load {text!r}: give one number of amps, or three (L1,L2,L3)")
    values = []
    for part in parts:
        try:
            value = parse_number(part.encode())
        except PayloadError:
            value = math.nan
        if not 0 <= value <= HOUSE_A_MAX:
            raise ValueError(f"house load {text!r}: each phase must be 0 to {HOUSE_A_MAX:g} A")
        values.append(float(value))
    return (values[0], values[0], values[0]) if len(values) == 1 else (values[0], values[1], values[2])


class HouseMeter:
    """Publishes house load + the cars' draws once a second on MQTT, in a P1 preset's shape."""

    def __init__(self, draws: Callable[[], tuple[float, float, float]], device: str,
                 house_a: tuple[float, float, float], host: str = "127.0.0.1", port: int = 1883,
                 preset: str = DEFAULT_METER_PRESET, voltage: float = 230.0, interval_s: float = 1.0,
                 username: str | None = None, password: str | None = None) -> None:
        if preset not in plain_presets():
            raise ValueError(f"meter preset {preset!r}: choose one of {', '.join(plain_presets())}")
        self.source = MeterSource.from_settings(preset=preset, device=device)
        self.preset, self.device = preset, device
        self.draws = draws
        self.house_a = house_a
        self.voltage = voltage
        self.interval_s = interval_s
        self.set_topic = f"{device}/house_a/set"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="house-meter", daemon=True)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-meter-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.set_topic, qos=1)
        self.client.on_message = self._on_set
        self._host, self._port = host, port

    def start(self) -> HouseMeter:
        self.client.connect(self._host, self._port)  # OSError when no broker listens there
        self.client.loop_start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()

    def _on_set(self, client, userdata, msg) -> None:
        try:
            self.house_a = parse_house_a(msg.payload.decode("utf-8", errors="replace").strip())
        except ValueError as exc:
            log.warning("%s: %s (the house load stays %s A)", self.set_topic, exc, _amps(self.house_a))
            return
        log.info("house load now %s A", _amps(self.house_a))
        self.publish()

    def readings(self) -> dict[str, float]:
        """Topic -> value: the house load plus the cars' draws, in the preset's units."""
        cars = self.draws()
        amps = tuple(self.house_a[i] + cars[i] for i in range(3))
        per_unit = _WATTS[self.source.power_unit]
        out: dict[str, float] = {}
        for inp in self.source.all_inputs:
            if inp.kind == CURRENT:
                out[inp.topic] = round(amps[inp.phase], 2)
            elif inp.kind in (POWER, DELIVERED):
                out[inp.topic] = round(amps[inp.phase] * self.voltage / per_unit, 3)
            elif inp.kind == RETURNED:
                out[inp.topic] = 0.0
            elif inp.kind == VOLTAGE:
                out[inp.topic] = self.voltage
            elif inp.kind == TOTAL_POWER:
                out[inp.topic] = round(sum(amps) * self.voltage / per_unit, 3)
        return out

    def publish(self) -> None:
        for topic, value in self.readings().items():
            self.client.publish(topic, f"{value:g}", qos=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.publish()
            self._stop.wait(self.interval_s)


def _amps(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:g}" for v in values)


__all__ = ["DEFAULT_METER_PRESET", "HouseMeter", "parse_house_a", "plain_presets"]
