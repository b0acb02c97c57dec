"""A central system and simulated chargers on loopback, and a way to wait on what happened."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Iterator

from bridge.ocpp.central import CentralSystem
from bridge.sim.ocpp_charger import SimCharger


class Events:
    """What the central system emitted, in order; `wait` blocks until one matches."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, event: Any) -> None:
        with self._cond:
            self.seen.append(event)
            self._cond.notify_all()

    def of(self, kind: type) -> list[Any]:
        with self._cond:
            return [e for e in self.seen if isinstance(e, kind)]

    def wait(self, kind: type, timeout: float = 10, **fields: Any) -> Any:
        def match() -> Any:
            for e in self.seen:
                if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items()):
                    return e
            return None

        with self._cond:
            if not self._cond.wait_for(lambda: match() is not None, timeout):
                raise AssertionError(f"no {kind.__name__} {fields} within {timeout} s; seen {self.seen[-10:]}")
            return match()


def wait_until(condition: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout} s")


def start_central(identities: tuple[str, ...] = ("CP1",), **kw: Any) -> tuple[CentralSystem, Events]:
    events = Events()
    kw = {"host": "127.0.0.1", "port": 0, "meter_interval_s": 1, "profile_ttl_s": 60, "failsafe_a": 6, **kw}
    central = CentralSystem(identities, events, **kw)
    central.start()
    return central, events


def url_of(central: CentralSystem, scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{central.port}/ocpp"


def sim_for(central: CentralSystem, identity: str = "CP1", **kw: Any) -> SimCharger:
    kw = {"cars": {1: 16}, "lag_s": 0.2, "backoff_s": (0.1, 0.5), **kw}
    return SimCharger(url_of(central), identity, **kw)


class Fleet:
    """Many simulated chargers on one asyncio loop in one thread (cheaper than a thread each)."""

    def __init__(self, sims: list[SimCharger]) -> None:
        self.sims = sims
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._ready = threading.Event()

    def _main(self) -> None:
        async def go() -> None:
            self._loop = asyncio.get_running_loop()
            for s in self.sims:
                s._loop, s._stop = self._loop, asyncio.Event()
            self._ready.set()
            await asyncio.gather(*(s.run() for s in self.sims))
        asyncio.run(go())

    def start(self) -> "Fleet":
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        for s in self.sims:
            assert self._loop is not None and s._stop is not None
            self._loop.call_soon_threadsafe(s._stop.set)
        self._thread.join(10)


def running(*sims: SimCharger) -> Iterator[None]:
    for s in sims:
        s.start_in_thread()
    try:
        yield
    finally:
        for s in sims:
            s.stop()
