"""The account's cloud calls, made beside the worker.

A site of many chargers on one account cannot have one thread make every call one after
another: a poll round at 0.3 s a request takes longer than a load step may wait. Calls for
different charge points run here on a few threads (`WORKERS` at a time, at most one per
charge point); each answer comes back to the worker as an event, and the worker, which owns
all state, applies it there. A call's thread only calls the cloud.

The account's request budget (CHARGEAMPS_REQUESTS_PER_MIN) holds for every 60 s window:
writes go first, polls are paced to at most `POLL_SHARE` of it and spread over the poll
interval. A cloud that fails as a whole (no connection, 5xx, 429) is one backoff for the
account, said once, not once per charge point.

Before the service starts its worker (`start`), calls run at once on the caller's thread, so a
service that is built but not started can be driven step by step.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from bridge.eapi import ApiError, AuthError, CloudUnavailable, EapiError, RateLimited
from bridge.service.backoff import CloudBackoff
from bridge.service.clock import Clock

log = logging.getLogger(__name__)

WORKERS = 4
WINDOW_S = 60.0
# Requests the client makes by itself, unseen ahead (a login, a token refresh): kept spare.
SPARE_REQUESTS = 2
# Polls may use this share of the budget; the rest is for writes (a site's cuts must not wait
# for a poll round).
POLL_SHARE = 0.45
# A call in flight at shutdown is not waited for longer than this (the cloud may take its
# timeout and retries; the broker must hear `offline` before Docker's stop grace period ends).
STOP_WAIT_S = 2.0
# What the organisation's statuses answer when the account lacks that scope: one call per
# charge point instead.
NO_ORGANISATION_SCOPE = (401, 403, 404)
_PRIORITY = {"write": 0, "read": 1, "poll": 2}


def account_wide(error: BaseException) -> bool:
    """An error of the cloud as a whole, whichever charge point a call was for: no answer, or the
    account's rate limit. (A server error is one charge point's until several have one.)"""
    return isinstance(error, (CloudUnavailable, RateLimited))


def server_error(error: BaseException) -> bool:
    return isinstance(error, ApiError) and error.status >= 500


@dataclass(eq=False)
class CloudJob:
    """One piece of cloud work: `fn` runs on a call thread, `done(at, value)` or
    `failed(at, error, account_wide)` on the worker, `at` the time the answer came."""

    cp: str                       # one call in flight per charge point ("" the account's own)
    what: str
    fn: Callable[[], Any]
    done: Callable[[float, Any], None]
    failed: Callable[[float, BaseException, bool], None]
    kind: str = "poll"            # "write", "read" (a first read) or "poll"
    cost: int = 1                 # requests it makes
    slot: str | None = None       # a newer job of the same slot replaces a queued one
    started: float = field(default=0.0)
    # Set on the call thread when the call returned: (value, error); the worker still handles it as an event.
    outcome: tuple[Any, BaseException | None] | None = None
    returned: threading.Event = field(default_factory=threading.Event)
    counted: list[float] | None = None  # its entry in the budget's window


class CloudCalls:
    """The queue of cloud jobs, the budget, the account's backoff and the call threads."""

    def __init__(self, clock: Clock, enqueue: Callable[[str, Any], None], *, per_minute: int = 60,
                 poll_interval: float = 30.0, backoff: CloudBackoff | None = None,
                 organisation_id: str | None = None, workers: int = WORKERS) -> None:
        self.clock = clock
        self.enqueue = enqueue
        self.per_minute = int(per_minute)
        self.poll_interval = float(poll_interval)
        self.backoff = backoff or CloudBackoff()
        self.organisation_id = organisation_id
        self.workers = workers
        self.links = 1  # connectors polled: a round is spread over the interval among them
        self.queued: list[CloudJob] = []
        self._flying_slots: set[str] = set()
        self._flying: dict[str, CloudJob] = {}  # the call in flight, by charge point
        self.in_flight = 0
        # [time, requests] of the jobs started in the last WINDOW_S: the time of its start, then of
        # its answer (its later requests reach the cloud after the start).
        self.sent: list[list[float]] = []
        self.next_poll_at = 0.0
        self.running = False
        self.owned: list[Any] | None = None  # the account's charge points, read once
        self._owned_waiting: list[tuple[Callable[[float, Any], None], Callable[[float, BaseException, bool], None]]] = []
        self._server_errors: dict[str, float] = {}  # charge point -> its last server error, until it answers
        self._cps: set[str] = set()  # the charge points calls were queued for
        self._rate_limited: RateLimited | None = None  # the account's backoff is the cloud's Retry-After
        self._failed_since = -math.inf  # start of the account's failure (calls started before it are not counted again)
        self._probing = False
        self._todo: queue.Queue[CloudJob | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._org_said = False
        self.next_site_poll = 0.0

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        for i in range(self.workers):
            t = threading.Thread(target=self._run, name=f"cloud-call-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Drop the queued jobs; wait a short while for those in flight, not for their timeouts."""
        self.running = False
        self.queued.clear()
        for _ in self._threads:
            self._todo.put(None)
        end = time.monotonic() + wait_s
        for t in self._threads:
            t.join(timeout=max(0.0, end - time.monotonic()))

    def _run(self) -> None:
        while True:
            job = self._todo.get()
            if job is None:
                return
            try:
                value, error = job.fn(), None
            except Exception as e:  # handed to the worker, which owns what follows
                value, error = None, e
            job.outcome = (value, error)
            job.returned.set()
            self.enqueue("cloud", (job, value, error, self.clock()))

    # ---- the worker's side ----------------------------------------------------------------

    def run_now(self, job: CloudJob, wait_s: float = 20.0) -> None:
        """Run `job` on this thread now, whatever the queue and the backoff (a user's command; or
        before `start`, every call). A call in flight for the same charge point is waited for
        first (one call at a time per charge point); when that one found the cloud failing as a
        whole, `job` fails with its error without calling again."""
        if self._rate_limited is not None and not self.backoff.ready(self.clock()):
            # The cloud said how long to wait (Retry-After): not even a user's command goes sooner.
            job.failed(self.clock(), self._rate_limited, True)
            return
        flying = self._flying.get(job.cp)
        if flying is not None:
            flying.returned.wait(wait_s)
            error = flying.outcome[1] if flying.outcome else None
            if error is not None and account_wide(error):
                job.failed(self.clock(), error, True)
                return
        job.started = self.clock()
        counted = self._count(job.started, job.cost)
        try:
            value, error = job.fn(), None
        except Exception as e:  # as from a call thread
            value, error = None, e
        counted[0] = self.clock()
        self._finish_job(job, value, error, counted[0])

    def submit(self, job: CloudJob) -> None:
        """Queue `job` (replacing a queued one of its slot); before `start`, run it now."""
        if job.cp:
            self._cps.add(job.cp)
        if not self.running:
            self.run_now(job)
            return
        if job.slot is not None:
            for i, old in enumerate(self.queued):
                if old.slot == job.slot:
                    self.queued[i] = job
                    return
        self.queued.append(job)

    def pending(self, slot: str) -> bool:
        """A job of `slot` is queued or in flight."""
        return slot in self._flying_slots or any(j.slot == slot for j in self.queued)

    def used(self, now: float) -> int:
        """Requests started in the last WINDOW_S."""
        self.sent = [e for e in self.sent if e[0] > now - WINDOW_S]
        return int(sum(n for _, n in self.sent))

    def _count(self, now: float, requests: int) -> list[float]:
        entry = [now, float(requests)]
        self.sent.append(entry)
        return entry

    @property
    def budget(self) -> int:
        """Requests the queue may start in any WINDOW_S."""
        return max(1, self.per_minute - SPARE_REQUESTS)

    def _poll_spacing(self, cost: int) -> float:
        by_budget = cost * WINDOW_S / (self.per_minute * POLL_SHARE)
        return max(by_budget, self.poll_interval / max(1, self.links))

    def pump(self, now: float) -> None:
        """Start what may start now: writes first, then first reads, then polls (paced)."""
        if not self.running or not self.backoff.ready(now):
            return
        if self.backoff.failures and (self._probing or self.in_flight):
            return  # after a failure one call finds out whether the cloud is back
        used = self.used(now)
        for job in sorted(self.queued, key=lambda j: _PRIORITY[j.kind]):
            if self.in_flight >= self.workers:
                break
            if job.cp in self._flying or used + job.cost > self.budget:
                continue
            if job.kind == "poll" and now < self.next_poll_at:
                continue
            self.queued.remove(job)
            job.started = now
            used += job.cost
            job.counted = self._count(now, job.cost)
            if job.kind == "poll":
                self.next_poll_at = now + self._poll_spacing(job.cost)
            self._flying[job.cp] = job
            if job.slot is not None:
                self._flying_slots.add(job.slot)
            self.in_flight += 1
            self._todo.put(job)
            if self.backoff.failures:
                self._probing = True
                break

    def due_at(self, now: float) -> float:
        """When a queued job may start without an event first (math.inf: only after one)."""
        if not self.running or not self.queued or self.in_flight >= self.workers:
            return math.inf
        if not self.backoff.ready(now):
            return self.backoff.retry_at
        if self.backoff.failures and (self._probing or self.in_flight):
            return math.inf
        free = [j for j in self.queued if j.cp not in self._flying]
        if not free:
            return math.inf
        when = math.inf
        used = self.used(now)
        frees: dict[int, float] = {}  # by cost: a site's queue holds many jobs of the same few costs
        for job in free:
            t = now if job.kind != "poll" else max(now, self.next_poll_at)
            if used + job.cost > self.budget:
                if job.cost not in frees:
                    frees[job.cost] = self._window_frees(now, job.cost)
                t = max(t, frees[job.cost])
            when = min(when, t)
        return when

    def _window_frees(self, now: float, cost: int) -> float:
        """When the window has room for `cost` more requests."""
        over = sum(n for _, n in self.sent) + cost - self.budget
        for t, n in sorted(self.sent):
            over -= n
            if over <= 0:
                return t + WINDOW_S
        return now

    def finish(self, job: CloudJob, value: Any, error: BaseException | None, at: float) -> None:
        """An answer from a call thread, on the worker."""
        self.in_flight -= 1
        if job.counted is not None:
            job.counted[0] = max(job.counted[0], at)
        self._flying.pop(job.cp, None)
        if job.slot is not None:
            self._flying_slots.discard(job.slot)
        self._probing = False
        self._finish_job(job, value, error, at)

    def _finish_job(self, job: CloudJob, value: Any, error: BaseException | None, at: float) -> None:
        if error is None:
            # Only a call made after the failure shows the cloud is back: one in flight when it came
            # (answered late) must not end a backoff, nor a Retry-After.
            if job.started > self._failed_since:
                if self.backoff.failures:
                    log.info("cloud answers again (%s)", job.what)
                self.backoff.succeeded()
                self._failed_since = -math.inf
                self._rate_limited = None
            self._server_errors.pop(job.cp, None)
            job.done(at, value)
            return
        if not isinstance(error, (EapiError, ValueError)):
            log.error("cloud %s: unexpected %s: %s", job.what, type(error).__name__, error)
        wide = self._account_wide(job, error, at)
        if wide and job.started > self._failed_since:
            # Calls started before this failure was known fail alike: one failure, one backoff step.
            first = self.backoff.failures == 0
            retry_after = error.retry_after_s if isinstance(error, RateLimited) else None
            delay = self.backoff.failed(at, at_least_s=retry_after or 0.0)
            self._rate_limited = error if isinstance(error, RateLimited) else None
            self._failed_since = at
            if first:
                log.error("cloud %s failed: %s (the account's calls wait; next try in %.0f s)",
                          job.what, error, delay)
            else:
                log.warning("cloud still failing (%s: %s); next try in %.0f s", job.what, error, delay)
        job.failed(at, error, wide)

    def _account_wide(self, job: CloudJob, error: BaseException, at: float) -> bool:
        """Whether `error` is the cloud's as a whole: no answer, the rate limit, or server errors
        for several charge points (or the only one) within WINDOW_S with no answer since."""
        if account_wide(error):
            return True
        if not server_error(error):
            return False
        if not job.cp:
            return True  # the account's own call
        self._server_errors[job.cp] = at
        recent = [cp for cp, t in self._server_errors.items() if t > at - WINDOW_S]
        return len(recent) >= min(2, max(1, len(self._cps)))

    # ---- the account's own reads --------------------------------------------------------------

    def read_owned(self, cloud: Any, done: Callable[[float, Any], None],
                   failed: Callable[[float, BaseException, bool], None]) -> None:
        """The account's charge points: read once, then from memory (`forget_owned` reads again)."""
        if self.owned is not None:
            done(self.clock(), self.owned)
            return
        self._owned_waiting.append((done, failed))
        if len(self._owned_waiting) > 1:
            return  # one read answers every link waiting for it

        def answered(at: float, cps: Any) -> None:
            self.owned = cps
            waiting, self._owned_waiting = self._owned_waiting, []
            for on_done, _ in waiting:
                on_done(at, cps)

        def not_answered(at: float, error: BaseException, wide: bool) -> None:
            waiting, self._owned_waiting = self._owned_waiting, []
            for _, on_failed in waiting:
                on_failed(at, error, wide)

        self.submit(CloudJob("", "owned chargepoints", cloud.owned_chargepoints, answered, not_answered,
                             kind="read", slot="owned"))

    def forget_owned(self) -> None:
        self.owned = None

    @property
    def site_statuses(self) -> bool:
        """Statuses come from the organisation's one call (until it answers that the account may not)."""
        return self.organisation_id is not None

    def poll_site(self, now: float, cloud: Any, links: Iterable[Any]) -> None:
        """With CHARGEAMPS_ORGANISATION_ID: every status in one call, once a poll interval."""
        if not self.site_statuses or now < self.next_site_poll or self.pending("site statuses"):
            return
        ready = [link for link in links if link.ready]
        if not ready:
            return
        self.next_site_poll = now + self.poll_interval
        org = str(self.organisation_id)

        def answered(at: float, statuses: Any) -> None:
            by_id = {s.id: s for s in statuses}
            for link in ready:
                status = by_id.get(link.view.cp_id)
                if status is not None:
                    link.took_site_status(at, status)
                else:
                    link.next_poll = min(link.next_poll, at)  # not the organisation's: its own poll
                    link.own_status = True

        def not_answered(at: float, error: BaseException, wide: bool) -> None:
            status = getattr(error, "status", 401 if isinstance(error, AuthError) else None)
            if status in NO_ORGANISATION_SCOPE:
                log.warning("CHARGEAMPS_ORGANISATION_ID: the cloud answered HTTP %s to the organisation's "
                            "statuses (%s); reading each charge point's status instead", status, error)
                self.organisation_id = None
                for link in ready:
                    link.next_poll = min(link.next_poll, at)
            else:
                self.next_site_poll = min(self.next_site_poll, at)  # again once the backoff allows

        self.submit(CloudJob("", "organisation statuses", lambda: cloud.organisation_statuses(org), answered,
                             not_answered, kind="poll", slot="site statuses"))

    def site_due(self, links: Iterable[Any]) -> float:
        """When the organisation's call is next due (math.inf: not before an event)."""
        if not self.site_statuses or self.pending("site statuses") or not any(link.ready for link in links):
            return math.inf
        return self.next_site_poll
