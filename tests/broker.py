"""A real mosquitto broker for the tests: a container where a Docker engine
answers, else the `mosquitto` binary on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# A shared broker holds every earlier test's retained messages, and a probe subscribed to "#" gets
# them all at once: with the default cap of 1000 queued QoS 1 messages per client, a probe behind
# on a loaded machine loses messages a test waits for. No cap: tests, not a house's broker.
NO_QUEUE_CAP = "max_queued_messages 0\n"
DEFAULT_CONF = "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n" + NO_QUEUE_CAP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def docker_available() -> bool:
    if os.environ.get("BRIDGE_TEST_NO_DOCKER"):
        return False
    try:
        import docker  # testcontainers depends on it

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


class MosquittoBroker:
    """One broker process. `conf` may use `{port}` and `{dir}` placeholders."""

    def __init__(self, conf: str = DEFAULT_CONF, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mosq-"))
        self.conf_path = self.dir / "mosquitto.conf"
        self.conf_path.write_text(conf.format(port=self.port, dir=self.dir))
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "mosquitto.log"

    def start(self) -> "MosquittoBroker":
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf_path)], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.host, self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ContainerBroker:
    """eclipse-mosquitto:2 through testcontainers (used where Docker answers)."""

    def __init__(self) -> None:
        from testcontainers.core.container import DockerContainer

        self.dir = Path(tempfile.mkdtemp(prefix="mosq-"))
        (self.dir / "mosquitto.conf").write_text("listener 1883\nallow_anonymous true\npersistence false\n" + NO_QUEUE_CAP)
        self.container = (
            DockerContainer("eclipse-mosquitto:2")
            .with_exposed_ports(1883)
            .with_volume_mapping(str(self.dir / "mosquitto.conf"), "/mosquitto/config/mosquitto.conf", "ro")
        )

    def start(self) -> "ContainerBroker":
        self.container.start()
        self.host = self.container.get_container_host_ip()
        self.port = int(self.container.get_exposed_port(1883))
        wait_for_port(self.host, self.port, timeout=30)
        return self

    def stop(self) -> None:
        self.container.get_wrapped_container().stop(timeout=2)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.container.get_wrapped_container().start()
        wait_for_port(self.host, self.port, timeout=30)

    def close(self) -> None:
        self.container.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_broker(conf: str | None = None):
    """A running broker. A custom `conf` always uses the binary (tests that
    need one read its log or mount files); the plain one prefers Docker."""
    if conf is None and docker_available():
        return ContainerBroker().start()
    return MosquittoBroker(conf or DEFAULT_CONF).start()
