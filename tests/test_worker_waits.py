"""The worker waits for its next deadline or an event: a link whose poll is due but whose backoff
is not makes it wait until the backoff ends (or the next tick), never ask its queue again and again
without waiting."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

from bridge.service import BridgeService, CloudBackoff
from bridge.sim.cloud import CloudSimulator
from tests.e2e import wait_until
from tests.test_service_components import ManualClock, settings_for


class FrozenClock(ManualClock):
    """Time that moves only when the test says so; a second of it is 10 ms of real waiting."""

    def real_seconds(self, seconds: float) -> float:
        return seconds / 100


class CountingQueue(queue.Queue):
    """The worker's event queue, recording how long each of its waits may last."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def get(self, block: bool = True, timeout: float | None = None):
        if block:  # get_nowait() drains a backlog: not a wait
            self.waits.append(timeout)
        return super().get(block, timeout)


@pytest.fixture
def halo():
    with CloudSimulator() as sim:
        sim.connector(1).car_plugged = True
        yield sim



def first_waits(svc, n: int = 20) -> list:
    """The timeouts of the worker's first `n` waits for events, the worker then stopped."""
    worker = threading.Thread(target=svc._work, daemon=True)
    worker.start()
    try:
        wait_until(lambda: len(svc.events.waits) >= n, 10, f"{n} waits of the worker")
    finally:
        svc.stop_event.set()
        svc.events.put(("stop", None))
        worker.join(timeout=5)
    assert not worker.is_alive()
    return svc.events.waits[:n]


def waits_after(svc, fall_due, n: int = 20) -> list:
    """The timeouts of the worker's first `n` waits after `fall_due()` (called once the worker
    ticked) made something due and an event woke the worker; the worker then stopped."""
    worker = threading.Thread(target=svc._work, daemon=True)
    worker.start()
    try:
        wait_until(lambda: len(svc.events.waits) >= 3, 10, "the worker's first tick")
        fall_due()
        seen = len(svc.events.waits)
        svc.events.put(("tick", None))  # wakes the worker
        wait_until(lambda: len(svc.events.waits) >= seen + n, 10, f"{n} more waits of the worker")
    finally:
        svc.stop_event.set()
        svc.events.put(("stop", None))
        worker.join(timeout=5)
    assert not worker.is_alive()
    return svc.events.waits[seen:seen + n]


def frozen_service(halo, tmp_path: Path, backoff: CloudBackoff | None = None,
                   **settings) -> tuple[BridgeService, FrozenClock]:
    """The service on the simulated Halo, its time frozen and its event queue counting the waits."""
    clock = FrozenClock()
    kw = {} if backoff is None else {"backoff": backoff}
    svc = BridgeService(settings_for(halo, tmp_path / "state", **settings), clock=clock, **kw)
    svc.events = CountingQueue()
    return svc, clock


def test_a_backoff_longer_than_the_poll_interval_does_not_spin_the_worker(halo, tmp_path: Path):
    svc, clock = frozen_service(halo, tmp_path, CloudBackoff(initial_s=60, max_s=60), chargeamps_poll_interval=10)
    svc.link.tick(clock())
    assert svc.link.ready
    svc.link.backoff.failed(clock())  # as after a cloud error: the next try in 60 s
    clock.now = svc.link.next_poll + 1  # the poll is due, 49 s of backoff left
    assert svc.link.due_at == svc.link.backoff.retry_at
    waits = first_waits(svc)
    # Frozen time: after the first tick every wait lasts until the next tick.
    assert min(waits[1:]) > 0, f"the worker asked for events without waiting: {waits}"


def test_a_poll_that_falls_due_between_ticks_is_queued_then_not_at_the_next_tick(halo, tmp_path: Path):
    # A link's due time wakes the worker; were its poll left to the next tick, the due time, past,
    # would wake it again at once until then (up to a second of spinning, each poll interval).
    svc, clock = frozen_service(halo, tmp_path, chargeamps_poll_interval=10)
    svc.link.tick(clock())
    assert svc.link.ready
    polls = svc.link.view.polls

    def fall_due() -> None:
        svc.link.next_poll = clock()  # due now; frozen time: the next tick is a second away

    waits = waits_after(svc, fall_due)
    assert svc.link.view.polls == polls + 1, "the poll due was made at once"
    assert min(waits[1:]) > 0, f"the worker asked for events without waiting: {waits}"


def test_the_worker_ticks_when_a_write_settles(halo, tmp_path: Path):
    # A decision waiting for a write to settle (a resume when the meter is back) is made then, not
    # at the next tick or meter reading after it.
    svc, clock = frozen_service(halo, tmp_path, chargeamps_poll_interval=10)
    svc.link.tick(clock())

    def fall_due() -> None:
        svc.link.settles_at = clock() + 0.25  # the next tick is a second away

    waits = waits_after(svc, fall_due, 2)
    assert waits[1] == pytest.approx(clock.real_seconds(0.25)), waits


def test_a_first_read_held_by_the_budget_does_not_spin_the_worker(halo, tmp_path: Path):
    """At a site's start the settings are read first and the status behind them, and the account's
    minute holds most of those reads back: the link's poll time passed, but its read is queued. The
    queue says when it may start; the link, its read queued, must not wake the worker meanwhile."""
    svc, clock = frozen_service(halo, tmp_path)
    svc.calls.owned = svc.link.cloud.owned_chargepoints()  # the account's charge points, read before
    svc.calls.running = True  # queued calls wait for the queue (no call threads: none may start anyway)
    svc.calls.sent = [[clock(), float(svc.calls.budget)]]  # the account's minute is used up
    svc.link.tick(clock())
    assert svc.link.ready and svc.link.first_read_pending and svc.link.next_poll <= clock()
    assert svc.calls.due_at(clock()) == pytest.approx(clock() + 60)
    waits = first_waits(svc)
    # Frozen time: after the first tick every wait lasts until the next tick.
    assert min(waits[1:]) > 0, f"the worker asked for events without waiting: {waits}"


def test_the_organisations_poll_that_falls_due_between_ticks_does_not_spin_the_worker(halo, tmp_path: Path):
    # With CHARGEAMPS_ORGANISATION_ID every status comes from one call, due once a poll interval (and
    # again at once after a failed one). Its due time wakes the worker; were it queued only by the next
    # tick, the due time, past, would wake the worker again at once until then.
    svc, clock = frozen_service(halo, tmp_path, chargeamps_poll_interval=10,
                                chargeamps_organisation_id=halo.organisation_id)
    svc.link.tick(clock())
    assert svc.link.ready and svc.calls.site_statuses
    asked = []

    def fall_due() -> None:
        asked.append(len(halo.requests_to("/organisations/")))  # the first tick made one
        svc.calls.next_site_poll = clock()  # due now; frozen time: the next tick is a second away

    waits = waits_after(svc, fall_due)
    assert len(halo.requests_to("/organisations/")) == asked[0] + 1, "the organisation's poll due was made at once"
    assert min(waits[1:]) > 0, f"the worker asked for events without waiting: {waits}"
