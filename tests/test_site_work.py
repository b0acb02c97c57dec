"""The work a site's worker does for each meter reading: 20 Halos on one account (the cloud
simulator), the real service in process on a real broker, its time a manual clock.

A site decides on every meter reading (three a second, one per phase) and every tick, and at rest
nearly every one of those decisions is the one before it. Every reading is still decided (a
reading over the fuse cuts at once), but what follows a decision that changed nothing is cheap:
no topic is formatted, encoded or read for its meaning, and no car's draw is read for power limits
that are not set."""

from __future__ import annotations

import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from bridge.mqtt.client import Message
from bridge.service import BridgeService
from bridge.service import publisher as publisher_module
from bridge.sim.cloud import halo_site
from tests.test_service_components import ManualClock, settings_for

HALOS = 20
BASE_A = 40.0  # the building's own load a phase; every car takes 16 A: 9 of the 20 fit under MaxA 96 A
REST_S = 90  # seconds of the manual clock until the site holds (writes settled, the paused ones counting down)


class Site:
    def __init__(self, svc: BridgeService, sim, clock: ManualClock) -> None:
        self.svc, self.sim, self.clock = svc, sim, clock
        self.phase_topics = [svc.settings.p1_topic_l1, svc.settings.p1_topic_l2, svc.settings.p1_topic_l3]

    def handle_queued(self) -> None:
        """What paho's thread queued (the broker connection): a reading decides only on an empty queue."""
        while not self.svc.events.empty():
            self.svc._handle(*self.svc.events.get_nowait())

    def read(self, phase: int, extra_a: float = 0.0) -> None:
        """One phase's meter reading: the building, the cars' draw and `extra_a`."""
        self.handle_queued()
        amps = BASE_A + self.sim.draws()[phase] + extra_a
        self.svc._handle("message", Message(self.phase_topics[phase], f"{amps:.1f}".encode(), False))

    def second(self) -> None:
        """A second of the site: the worker's tick, then the meter's three phases."""
        self.clock.now += 1
        self.handle_queued()
        self.svc._handle("tick", self.clock())
        for phase in range(3):
            self.read(phase)


@contextmanager
def rested_site(broker, state_dir: Path):
    """The site, its service not started (its cloud calls made at once on this thread), after
    REST_S seconds of its clock: the cars that fit charge, the others wait paused."""
    with halo_site(HALOS) as sim:
        tag = uuid.uuid4().hex[:6]
        settings = settings_for(
            sim, state_dir, chargeamps_connectors=",".join(f"{cp}:1" for cp in sim.charge_points),
            balancer_strategy="adaptive", balancer_fuse_a=100, balancer_max_a=96, balancer_default_current=16,
            mqtt_host=broker.host, mqtt_port=broker.port, mqtt_base_topic=f"work-{tag}",
            p1_topic_l1=f"p1-{tag}/l1", p1_topic_l2=f"p1-{tag}/l2", p1_topic_l3=f"p1-{tag}/l3")
        clock = ManualClock()
        svc = BridgeService(settings, clock=clock)
        svc.mqtt.start()
        try:
            s = Site(svc, sim, clock)
            for _ in range(REST_S):
                s.second()
            assert svc.decision is not None and not svc.decision.commands, svc.decision
            yield s
        finally:
            svc.mqtt.stop()


@pytest.fixture
def site(broker, tmp_path: Path):
    with rested_site(broker, tmp_path / "state") as s:
        yield s


class Work:
    """Counts of the calls made while it is on: the balancer's decisions, the cars' draws read, and
    the publisher's work on the text of its topics."""

    def __init__(self, site: Site, monkeypatch) -> None:
        self.calls: Counter[str] = Counter()
        svc = site.svc
        self._count(monkeypatch, svc.balancer, "decide")
        self._count(monkeypatch, svc.balancer._reader, "car_draw_range")
        for name in ("meaning", "countdown_s"):
            self._count(monkeypatch, publisher_module, name)
        self._count(monkeypatch, publisher_module.json, "dumps", "json")

    def _count(self, monkeypatch, owner, name: str, label: str | None = None) -> None:
        real = getattr(owner, name)
        label = label or name

        def counted(*args, **kwargs):
            self.calls[label] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    def take(self) -> Counter[str]:
        seen, self.calls = self.calls, Counter()
        return seen


def changed(before, after) -> int:
    """How many connectors' decisions differ between two decisions."""
    was = {c.key: c for c in before.connectors}
    return sum(1 for c in after.connectors if was.get(c.key) != c)


def test_a_reading_that_changes_nothing_is_decided_and_costs_no_publishing(site, monkeypatch):
    work = Work(site, monkeypatch)
    site.read(0)  # the same reading again: the decision is the one before
    first = work.take()
    assert first["decide"] == 1, "every reading is decided"
    # Publishing what did not change: nothing formatted, encoded or read for its meaning.
    assert (first["meaning"], first["countdown_s"], first["json"]) == (0, 0, 0), first
    # The cars' draws are read once for the decision, not again for power limits that are not set.
    assert first["car_draw_range"] == HALOS, first

    # A second later the paused cars' countdowns moved: only those connectors are looked at again,
    # each reason's and state's meaning read once (the meaning of what was sent is kept).
    before = site.svc.decision
    site.clock.now += 1
    site.read(1)
    later = work.take()
    moved = changed(before, site.svc.decision)
    assert later["decide"] == 1
    assert 0 < moved < HALOS, f"{moved} connectors changed"  # the paused ones' countdowns, not the others
    assert later["countdown_s"] <= moved, (later, moved)
    assert 0 < later["meaning"] <= 2 * moved, (later, moved)


def test_a_reading_over_the_fuse_at_rest_cuts_within_that_reading(site, monkeypatch):
    work = Work(site, monkeypatch)
    settings_before = {cp: site.sim.connector(1, cp).max_current for cp in site.sim.charge_points}
    site.read(0)  # unchanged: nothing to publish
    site.read(0, extra_a=30.0)  # the same instant, 30 A more on L1: over the fuse
    assert work.take()["decide"] == 2
    d = site.svc.decision
    assert d.commands and all(amps < settings_before[key.split(":")[0]] for key, amps in d.commands.items()), d
    assert "L1 at" in d.reason, d.reason
    # The cuts were written with that reading (the calls run at once before the service starts).
    assert any(site.sim.connector(1, cp).max_current < amps for cp, amps in settings_before.items())
