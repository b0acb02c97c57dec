"""OcppLink, the worker's side of one connector over OCPP: the central system's events in, the
balancer's inputs and the published view out. A real central system and simulated charger, and
the real one-car Balancer."""

from __future__ import annotations

import os
import queue

import pytest

from bridge.balancer import Balancer, Decision
from bridge.config import load_settings
from bridge.ocpp import events as ev
from bridge.ocpp.link import OcppLink
from bridge.service.backoff import CloudBackoff
from bridge.service.clock import MonotonicClock
from bridge.service.health import Health
from bridge.sim.ocpp_charger import Behaviour
from tests.ocpp_helpers import sim_for, start_central, wait_until


@pytest.fixture
def settings(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.upper().startswith(("CHARGEAMPS_", "OCPP_", "CHARGER_TRANSPORT", "BALANCER_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARGER_TRANSPORT", "ocpp")
    monkeypatch.setenv("OCPP_CHARGE_POINTS", "CP1")
    return load_settings()


class Worker:
    """The service's worker in miniature: the central system's events on a queue, handed to the link."""

    def __init__(self, settings, **sim_kw) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.central, _ = start_central(("CP1",))
        self.central.emit = self.queue.put
        self.health = Health()
        self.balancer = Balancer(settings.balancer_config(), strategy=settings.balancer_strategy)
        self.changes = 0
        self.link = OcppLink(settings, self.central, self.balancer, self.health, MonotonicClock(), CloudBackoff(),
                             on_change=self._changed)
        self.sim = sim_for(self.central, **sim_kw).start_in_thread()

    def _changed(self) -> None:
        self.changes += 1

    def until(self, condition, timeout: float = 10, what: str = "condition"):
        def step():
            while not self.queue.empty():
                self.link.on_event(MonotonicClock()(), self.queue.get_nowait())
            return condition()
        return wait_until(step, timeout, what)

    def close(self) -> None:
        self.sim.stop()
        self.central.stop()


@pytest.fixture
def worker(settings):
    made = []

    def make(**sim_kw):
        w = Worker(settings, **sim_kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def decision(amps: int) -> Decision:
    return Decision(charge_at=amps, command=amps, loadbal=(0.0, 0.0, 0.0), phase_currents=(None, None, None),
                    headroom=(None, None, None), meter_stale=False, paused=amps == 0, reason="test",
                    strategy="adaptive")


def test_the_link_is_ready_once_connected_and_counts_a_limit_only_when_accepted(worker):
    w = worker()
    link = w.link
    assert link.failing
    w.until(lambda: link.ready and link.view.status == "Charging", what="connected and charging")
    assert link.view.online is True and link.view.model == "Sim"
    link.apply(0.0, decision(10), enabled=True)
    assert link.expected is None  # asked for, not yet accepted
    w.until(lambda: link.expected == 10, what="the accepted limit")
    assert link.view.max_current == 10
    w.until(lambda: link.view.currents == (10.0, 10.0, 10.0), what="the car's draw from MeterValues")
    assert link.view.polls > 0 and link.view.power_kw == pytest.approx(6.9)


def test_nothing_is_sent_while_the_balancer_is_off(worker):
    w = worker()
    w.until(lambda: w.link.ready, what="connected")
    w.link.apply(0.0, decision(10), enabled=False)
    w.until(lambda: w.link.view.status == "Charging", what="charging")
    assert not [p for _, _, p in w.sim.received]


def test_a_charger_that_takes_no_profile_fails_and_says_so(worker):
    w = worker(behaviour=Behaviour({}))
    w.until(lambda: w.link.view.status == "Charging", what="charging")
    w.link.apply(0.0, decision(10), enabled=True)
    w.until(lambda: w.link.failing and w.link.ready, what="not controllable")
    assert "CP1" in w.health.last_error and w.link.expected is None


def test_a_charger_gone_is_failing_and_offline(worker):
    w = worker()
    w.until(lambda: w.link.ready, what="connected")
    w.sim.go_offline(30)
    w.until(lambda: w.link.failing, what="failing once the charger is gone")
    assert w.link.view.online is False


def test_the_upstreams_profile_caps_the_balancers_limit(worker):
    w = worker()
    link = w.link
    w.until(lambda: link.ready and link.view.status == "Charging", what="connected and charging")
    link.apply(0.0, decision(16), enabled=True)
    w.until(lambda: w.sim.draw(1) == 16, what="the car at the balancer's 16 A")
    # The vendor's backend sends a 10 A profile (what the central system emits for it): lowered at once.
    link.on_event(0.0, ev.UpstreamCap("CP1", 1, 10.0))
    w.until(lambda: w.sim.draw(1) == 10 and link.expected == 10, what="the car under upstream's cap")
    link.apply(0.0, decision(14), enabled=True)
    assert link._sent is None  # held at the cap: nothing sent again
    link.on_event(0.0, ev.UpstreamCap("CP1", 0, 4.0))  # below a car's least current, for every connector
    w.until(lambda: w.sim.draw(1) == 0, what="paused under a cap too low to charge")
    link.on_event(0.0, ev.UpstreamCap("CP1", 1, None))
    link.apply(0.0, decision(14), enabled=True)
    w.until(lambda: w.sim.draw(1) == 14, what="the balancer's limit once the cap is lifted")


def test_the_installation_current_the_charger_reports_caps_the_connector_as_the_clouds_does(worker):
    w = worker(profile="charge-amps", installation_current=10)  # MaxCurrent "0.10,1.10", as a Halo says it
    link = w.link
    w.until(lambda: link.view.installation_current == 10, what="the installation current read at boot")
    assert w.balancer.config.installation_current == 10
    now = MonotonicClock()()
    link.on_event(now, ev.InstallationCurrent("CP1", 2, 6))  # another connector's: not this one's
    link.on_event(now, ev.InstallationCurrent("CP2", 1, 6))  # another charger's
    assert link.view.installation_current == 10
    link.on_event(now, ev.InstallationCurrent("CP1", 0, 8))  # the whole charge point's, lower
    assert link.view.installation_current == 8 and w.balancer.config.installation_current == 8
