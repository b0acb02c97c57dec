from __future__ import annotations

import pytest

from tests.broker import MosquittoBroker, start_broker


@pytest.fixture(scope="session")
def broker():
    """A broker shared by the tests that do not stop it."""
    b = start_broker()
    yield b
    b.close()


@pytest.fixture
def own_broker():
    """A broker of the test's own, always the binary: tests stop and restart it."""
    b = MosquittoBroker().start()
    yield b
    b.close()


@pytest.fixture
def sim():
    """The cloud simulator with a car plugged in that takes up to 16 A."""
    from bridge.sim.cloud import CloudSimulator

    with CloudSimulator() as s:
        c = s.connector(1)
        c.car_plugged = True
        c.car_max_a = 16
        yield s


@pytest.fixture
def probe(broker):
    from tests.e2e import Probe

    p = Probe(broker.host, broker.port)
    yield p
    p.close()


@pytest.fixture
def start_bridge(broker, sim, tmp_path, request):
    """Start `chargeamps-bridge run` subprocesses against `broker` and `sim`; the test
    module's BRIDGE_DEFAULTS are its environment unless a call says otherwise. A module
    with BRIDGE_IN_PROCESS (a function returning the collaborators to pass) runs the
    service in the test process instead."""
    from tests.e2e import BridgeProcess, InProcessBridge, bridge_env

    defaults = getattr(request.module, "BRIDGE_DEFAULTS", {})
    in_process = getattr(request.module, "BRIDGE_IN_PROCESS", None)
    started: list = []

    def start(env=None, state_dir=None, **extra):
        env = env or bridge_env(broker, sim, state_dir or tmp_path / "state", **{**defaults, **extra})
        if in_process is not None:
            bridge = InProcessBridge(env, tmp_path, **in_process()).start()
        else:
            bridge = BridgeProcess(env, tmp_path).start()
        started.append(bridge)
        return bridge, env

    yield start
    for b in started:
        b.close()
