"""Circuits end to end: the real service, a real broker and the cloud simulator's Aura, whose two
outlets hang on a garage feeder of 16 A under a 24 A main fuse (`CIRCUITS=garage:16`,
`CHARGEAMPS_CONNECTORS=<aura>:1@garage,<aura>:2@garage`), the feeder with a sub-meter of its own.

The main meter and the sub-meter publish plain numbers on one topic per phase, the
`P1_TOPIC_L1..L3` layout the P1 readers in the README publish; the sub-meter carries the feeder's
own load plus the cars' draws, as a meter on the feeder would."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from bridge.sim.cloud import AURA_CHARGEPOINT_ID as AURA
from bridge.sim.cloud import several_cars_account
from tests.e2e import Probe, bridge_env, topic, wait_online, wait_until
from tests.test_several_cars import FAST, House, close_all, details, draw, given, offered, start

pytestmark = pytest.mark.slow  # a broker, the simulator and the service: about 30 s


class Feeder:
    """The garage's sub-meter every 0.3 s: its own load plus the two Aura cars' draws."""

    def __init__(self, probe: Probe, topics: list[str], sim) -> None:
        self.probe, self.topics, self.sim = probe, topics, sim
        self.base = [0.0, 0.0, 0.0]
        self.silent = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.silent.is_set():
                cars = [draw(self.sim, AURA, n) for n in (1, 2)]
                for p, t in enumerate(self.topics):
                    self.probe.publish(t, f"{self.base[p] + sum(c[p] for c in cars):.1f}")
            self._stop.wait(0.3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def garage(broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("circuits")
    sim = several_cars_account(None).start()
    tag = uuid.uuid4().hex[:6]
    feeder_topics = [f"feeder-{tag}/garage/l{n}" for n in (1, 2, 3)]
    env = bridge_env(broker, sim, tmp / "state", **{
        **FAST, "BALANCER_MAX_A": "24", "CIRCUITS": "garage:16",
        "CHARGEAMPS_CONNECTORS": f"{AURA}:1@garage,{AURA}:2@garage",
        **{f"CIRCUIT_GARAGE_TOPIC_L{n}": t for n, t in zip((1, 2, 3), feeder_topics)}})
    probe = Probe(broker.host, broker.port, subscribe="#")
    bridge = start(env, tmp)
    wait_online(probe, env, bridge)
    house = House(probe, env, sim, [(AURA, 1), (AURA, 2)])
    house.base = [2.0, 2.0, 2.0]  # 22 A for the cars on the main fuse: the garage's 16 A binds
    feeder = Feeder(probe, feeder_topics, sim)
    yield env, probe, sim, feeder, bridge
    feeder.stop()
    house.stop()
    bridge.close()
    probe.close()
    sim.stop()


def circuit(probe: Probe, env: dict, rest: str) -> float | None:
    raw = probe.latest.get(topic(env, f"circuit/garage/{rest}"))
    return None if raw is None else float(raw)


def test_the_garage_is_held_and_its_topics_and_sensors_are_published(garage):
    env, probe, sim, feeder, _bridge = garage
    wait_until(lambda: given(probe, env) == {1: 8, 2: 8}, 40, "the garage's 16 A shared: 8 A each")
    wait_until(lambda: offered(sim, AURA, 1) == 8 and offered(sim, AURA, 2) == 8, 10, "both chargers at 8 A")
    wait_until(lambda: circuit(probe, env, "current_l1") == 16.0, 10, "the garage carries 16 A on L1")
    assert circuit(probe, env, "max_a") == 16
    wait_until(lambda: circuit(probe, env, "headroom_l2") == 0.0, 10, "no headroom left on the garage's L2")
    # Once the cut has settled, the reason names the circuit phase that binds.
    wait_until(lambda: "garage L1 at 16.0 A" in probe.latest[topic(env, f"charger/{AURA}/1/reason")].decode(),
               10, "the reason names the garage")
    state = json.loads(probe.latest[topic(env, "balancer/state")])
    assert state["circuits"] == [{"name": "garage", "max_a": 16.0, "current": [16.0, 16.0, 16.0],
                                  "meter_stale": False}]
    # Home Assistant's sensors for the circuit, on the Aura's device.
    config = json.loads(probe.latest[f"homeassistant/sensor/{env['MQTT_BASE_TOPIC']}/circuit_garage_headroom_l2/config"])
    assert config["state_topic"] == topic(env, "circuit/garage/headroom_l2")


def test_the_sub_meter_counts_the_feeders_own_load(garage):
    env, probe, sim, feeder, _bridge = garage
    feeder.base = [0.0, 4.0, 0.0]  # a heater in the garage on L2: 12 A left for the cars
    wait_until(lambda: given(probe, env) == {1: 6, 2: 6}, 30, "cut to 6 A each for the garage's L2")
    wait_until(lambda: circuit(probe, env, "current_l2") == 16.0, 10, "the garage carries 16 A on L2")
    wait_until(lambda: "garage L2 at" in probe.latest[topic(env, f"charger/{AURA}/2/reason")].decode(), 10,
               "the reason names the garage's L2")
    feeder.base = [0.0, 0.0, 0.0]
    wait_until(lambda: given(probe, env) == {1: 8, 2: 8}, 40, "back to 8 A each")


def test_a_silent_sub_meter_puts_the_garages_cars_to_the_failsafe_together(garage):
    env, probe, sim, feeder, _bridge = garage
    feeder.silent.set()
    try:
        wait_until(lambda: sorted(given(probe, env).values()) == [0, 6], 20,
                   "the fail-safe 6 A for the garage's cars together")
        state = json.loads(probe.latest[topic(env, "balancer/state")])
        assert state["circuits"][0]["meter_stale"] is True and state["meter_stale"] is False
        assert all("circuit garage meter stale" in c["reason"] for c in details(probe, env))
    finally:
        feeder.silent.clear()
    wait_until(lambda: given(probe, env) == {1: 8, 2: 8}, 60, "8 A each once the sub-meter speaks again")


def test_one_connector_on_a_circuit_keeps_to_it(broker, tmp_path):
    # One listed connector on a circuit goes to the balancer that knows the tree (the one-car
    # balancer has no circuits): the Aura's outlet 1 on a 10 A feeder under the 24 A main fuse.
    sim = several_cars_account(None).start()
    env = bridge_env(broker, sim, tmp_path / "state", **{
        **FAST, "BALANCER_MAX_A": "24", "CIRCUITS": "garage:10", "CHARGEAMPS_CONNECTORS": f"{AURA}:1@garage"})
    probe = Probe(broker.host, broker.port, subscribe=f"{env['MQTT_BASE_TOPIC']}/#")
    bridge = start(env, tmp_path)
    house = None
    try:
        wait_online(probe, env, bridge)
        house = House(probe, env, sim, [(AURA, 1)])
        house.base = [2.0, 2.0, 2.0]
        wait_until(lambda: offered(sim, AURA, 1) == 10, 30, "outlet 1 held at the garage's 10 A")
        wait_until(lambda: circuit(probe, env, "current_l1") == 10.0, 10, "the garage carries 10 A")
        assert json.loads(probe.latest[topic(env, "balancer/state")])["charge_at"] == 10
    finally:
        close_all(house, bridge, probe, sim)
