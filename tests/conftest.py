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
