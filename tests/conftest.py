from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

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
    from tests.e2e import plugged_in_sim

    yield from plugged_in_sim()


@pytest.fixture
def probe(broker):
    from tests.e2e import probing

    yield from probing(broker)


def starting_bridges(broker, sim, module, workdir: Callable[[], Path]) -> Iterator[Callable]:
    """Yields `start(env=None, state_dir=None, **extra) -> (bridge, env)`, which starts
    `chargeamps-bridge run` as a subprocess against `broker` and `sim` in the folder `workdir()`
    gives; every bridge it started is closed when it resumes. The test module's BRIDGE_DEFAULTS
    are the environment unless a call says otherwise; a module with BRIDGE_IN_PROCESS (a
    function returning the collaborators to pass) runs the service in the test process instead."""
    from tests.e2e import BridgeProcess, InProcessBridge, bridge_env

    defaults = getattr(module, "BRIDGE_DEFAULTS", {})
    in_process = getattr(module, "BRIDGE_IN_PROCESS", None)
    started: list = []

    def start(env=None, state_dir=None, **extra):
        folder = workdir()
        env = env or bridge_env(broker, sim, state_dir or folder / "state", **{**defaults, **extra})
        if in_process is not None:
            bridge = InProcessBridge(env, folder, **in_process()).start()
        else:
            bridge = BridgeProcess(env, folder).start()
        started.append(bridge)
        return bridge, env

    yield start
    for b in started:
        b.close()


@pytest.fixture
def start_bridge(broker, sim, tmp_path, request):
    """Start bridges for one test, in its folder (see `starting_bridges`)."""
    yield from starting_bridges(broker, sim, request.module, lambda: tmp_path)


@pytest.fixture(scope="module")
def start_module_bridge(broker, sim, tmp_path_factory, request):
    """Start bridges that a module's tests share, each in a folder of its own, closed when the
    module ends (see `starting_bridges`). The module gives `sim` module scope as well."""
    yield from starting_bridges(broker, sim, request.module, lambda: tmp_path_factory.mktemp("bridge"))


# The modules whose shared fixture takes minutes to reach its state (a 20-charger site settling
# under the request budget) go first: run last, one of them alone makes the run's tail.
FIRST = ("test_site_mqtt.py", "test_site_calls.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in FIRST)  # stable: the rest keep their order
