"""The shipped mosquitto/ config, run by the real mosquitto binary."""

from __future__ import annotations

import getpass
import queue
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt.topics import Topics
from bridge.sim.demo import DEMO_BASE_TOPIC
from tests.broker import MosquittoBroker

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "mosquitto" / "mosquitto.conf"
ACL = ROOT / "mosquitto" / "acl"
USERS = {"chargeamps-bridge": "bridge-pw", "p1-meter": "meter-pw", "homeassistant": "ha-pw"}
CP = "2012345678M"

pytestmark = pytest.mark.skipif(
    not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()) or not shutil.which("mosquitto_passwd"),
    reason="needs the mosquitto and mosquitto_passwd binaries",
)


def local_conf() -> str:
    """The shipped config with the container's port and paths swapped for the test's."""
    text = CONF.read_text()
    replacements = {
        r"^listener 1883$": "listener {port} 127.0.0.1",
        r"^persistence_location .*$": "persistence_location {dir}/",
        r"^password_file .*$": "password_file {dir}/passwd",
        r"^acl_file .*$": "acl_file {dir}/acl",
    }
    for pattern, repl in replacements.items():
        text, count = re.subn(pattern, repl, text, flags=re.M)
        assert count == 1, f"mosquitto.conf has no single line matching {pattern}"
    # Started as root, mosquitto drops to the `mosquitto` user, which cannot
    # read the test's private temp folder; stay the user the tests run as.
    return text + f"\nuser {getpass.getuser()}\n"


@pytest.fixture(scope="module")
def secured_broker() -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(local_conf())
    shutil.copy(ACL, broker.dir / "acl")
    passwd = broker.dir / "passwd"
    passwd.touch()
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, timeout=10)
    broker.start()
    yield broker
    broker.close()


class Client:
    """A real paho v5 client that records what it receives."""

    def __init__(self, broker: MosquittoBroker, user: str | None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, USERS.get(user, "wrong"))
        self.connected = threading.Event()
        self.reason: mqtt.ReasonCode | None = None
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.connected.wait(5)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.reason = reason_code
        self.connected.set()

    @property
    def accepted(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)

    def publish(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)

    def received(self, timeout: float, count: int | None = None) -> list[tuple[str, bytes]]:
        """What arrives within `timeout`; returns early once `count` messages are in."""
        deadline = time.monotonic() + timeout
        out: list[tuple[str, bytes]] = []
        while count is None or len(out) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                out.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(secured_broker: MosquittoBroker) -> Iterator:
    made: list[Client] = []

    def make(user: str | None) -> Client:
        c = Client(secured_broker, user)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_config_names_the_security_settings() -> None:
    text = CONF.read_text()
    assert re.search(r"^allow_anonymous false$", text, re.M)
    assert re.search(r"^password_file ", text, re.M) and re.search(r"^acl_file ", text, re.M)
    assert re.search(r"^persistence true$", text, re.M)


def test_anonymous_client_is_refused(clients) -> None:
    anonymous = clients(None)
    assert anonymous.reason is not None and anonymous.reason.is_failure
    assert anonymous.reason.value in (134, 135)  # bad user name or password / not authorized


def test_wrong_password_is_refused(clients) -> None:
    wrong = clients("nobody")
    assert wrong.reason is not None and wrong.reason.is_failure


def test_every_user_can_log_in(clients) -> None:
    for user in USERS:
        assert clients(user).accepted, user


def test_bridge_cannot_write_meter_topics_but_the_meter_can(clients) -> None:
    watcher = clients("chargeamps-bridge")  # the bridge reads p1/#
    watcher.subscribe("p1/#")
    bridge = clients("chargeamps-bridge")
    bridge.publish("p1/current_l1", "99")
    assert watcher.received(0.5) == []
    meter = clients("p1-meter")
    meter.publish("p1/current_l1", "12")
    assert watcher.received(2, count=1) == [("p1/current_l1", b"12")]


def test_bridge_writes_its_topics_and_discovery_and_home_assistant_reads_them(clients) -> None:
    t = Topics("chargeamps")
    ha = clients("homeassistant")
    ha.subscribe("chargeamps/#")
    ha.subscribe("homeassistant/#")
    bridge = clients("chargeamps-bridge")
    bridge.publish(t.charge_at, "10")
    bridge.publish("homeassistant/sensor/chargeamps/charge_at/config", "{}")
    bridge.publish(t.client_response("node-red"), "{}")
    got = sorted(ha.received(3, count=3) + ha.received(0.2))
    assert got == sorted(
        [(t.charge_at, b"10"), ("homeassistant/sensor/chargeamps/charge_at/config", b"{}"), (t.client_response("node-red"), b"{}")]
    )


def test_the_demo_with_the_bridge_credentials_has_its_own_base_topic_and_meter(clients) -> None:
    # `chargeamps-bridge demo` on this broker: its state and commands under DEMO_BASE_TOPIC, its
    # simulated meter under it too, and its retained messages read back and cleared at the end.
    demo = Topics(DEMO_BASE_TOPIC)
    meter = f"{DEMO_BASE_TOPIC}/meter-sim/current_l1"
    watcher = clients("chargeamps-bridge")
    watcher.subscribe(f"{DEMO_BASE_TOPIC}/#")
    bridge = clients("chargeamps-bridge")
    for topic_, payload in ((demo.charge_at, "10"), (meter, "7.5"), (demo.max_a_set, "20")):
        bridge.publish(topic_, payload)
    got = watcher.received(3, count=3) + watcher.received(0.2)
    assert sorted(got) == sorted([(demo.charge_at, b"10"), (meter, b"7.5"), (demo.max_a_set, b"20")])


def test_home_assistant_reads_the_demos_state_but_sends_it_no_commands(clients) -> None:
    # `chargeamps-bridge demo --ha-discovery` announces entities whose state is under
    # DEMO_BASE_TOPIC: Home Assistant must read it there, and may do nothing more.
    demo = Topics(DEMO_BASE_TOPIC)
    ha = clients("homeassistant")
    ha.subscribe(f"{DEMO_BASE_TOPIC}/#")
    bridge = clients("chargeamps-bridge")
    bridge.subscribe(f"{DEMO_BASE_TOPIC}/#")
    bridge.publish(demo.charge_at, "10")
    assert ha.received(3, count=1) + ha.received(0.2) == [(demo.charge_at, b"10")]
    assert bridge.received(3, count=1) == [(demo.charge_at, b"10")]
    ha.publish(demo.max_a_set, "20")
    ha.publish(demo.charge_at, "32")
    assert bridge.received(0.5) == []


def test_bridge_cannot_write_outside_its_base_topic(clients) -> None:
    ha = clients("homeassistant")
    ha.subscribe("#")
    bridge = clients("chargeamps-bridge")
    bridge.publish("elsewhere/response", "x")
    bridge.publish("dsmr/reading/phase_power_current_l1", "1")
    assert ha.received(0.5) == []


def test_home_assistant_sends_commands_but_cannot_forge_state(clients) -> None:
    t = Topics("chargeamps")
    bridge = clients("chargeamps-bridge")
    bridge.subscribe("chargeamps/#")
    ha = clients("homeassistant")
    ha.publish(t.charge_at, "32")  # a state topic: refused
    ha.publish(t.bridge_state, "offline")
    assert bridge.received(0.5) == []
    for topic in t.command_topics(CP, 1):
        ha.publish(topic, "16")
    expected = t.command_topics(CP, 1)
    got = bridge.received(3, count=len(expected)) + bridge.received(0.2)
    assert sorted(topic for topic, _ in got) == sorted(expected)


def test_meter_user_cannot_send_commands(clients) -> None:
    t = Topics("chargeamps")
    bridge = clients("chargeamps-bridge")
    bridge.subscribe("chargeamps/#")
    meter = clients("p1-meter")
    meter.publish(t.max_a_set, "32")
    assert bridge.received(0.5) == []
