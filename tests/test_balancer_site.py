"""A housing co-op's site at start, the pure balancer: 20 three-phase cars under a 3 x 100 A fuse
(`BALANCER_FUSE_A=100`, `BALANCER_MAX_A=96`), every car at 16 A when the bridge starts, the house
at 40 A: the meter reads 360 A on its first reading, 56 A is free, 9 cars fit at the 6 A minimum.

`SharedBalancer` is driven with readings and time as the service drives it: each charger's report
and its setting read back at start (the setting found on the charger, before anything is written),
the meter once a second, every write reaching the cloud at its own time and the car following it a
few seconds later (`ChargerModel`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.balancer.model import BalancerConfig
from bridge.balancer.sharing import ConnectorSpec, SharedDecision, SharedBalancer
from bridge.sim.charger import ChargerModel

MIN = 6
SITE = BalancerConfig(max_a=96.0, fuse_a=100.0)
LAG_S = 5.0  # the car follows a setting this long after the cloud took it
POLL_S = 30  # the chargers' reports


@dataclass
class Site:
    """`draws`: what each car takes at a 16 A setting (0: plugged in, full or not charging now)."""

    draws: list[float]
    base: float
    unread: set[int] = field(default_factory=set)  # connectors the service cannot write yet
    read_at: float = 20.0  # when those are read and can be written
    cfg: BalancerConfig = SITE
    setting: int = 16  # on every charger when the bridge starts

    def __post_init__(self) -> None:
        self.keys = [f"{3001 + i}:1" for i in range(len(self.draws))]
        self.b = SharedBalancer(self.cfg, [ConnectorSpec(k) for k in self.keys])
        self.b.align_turns(0.0, 300.0)
        self.cars = [ChargerModel(lag_s=LAG_S, car_max_a=d, initial_a=self.setting) for d in self.draws]
        self.decisions: list[tuple[float, SharedDecision]] = []
        self.site: list[tuple[float, float]] = []  # (when, the meter's reading)
        self.queued: list[tuple[int, int]] = []  # writes decided, not yet taken by the cloud

    def read(self, now: float, i: int, found: bool) -> None:
        """A poll of connector `i`: its report and status, then its setting read back (found on the
        charger at start: the service tells the balancer before anything is written)."""
        d = self.cars[i].draw(now)
        self.b.charger(now, self.keys[i], (d, d, d), (d > 0,) * 3)
        self.b.car_plugged(now, self.keys[i], True)
        if found:
            self.b.commanded(now, self.keys[i], self.setting)

    def run(self, until: float, writes_per_s: int = 20, meter_late_s: int = 0) -> None:
        """Every second: polls, the meter, a decision; at most `writes_per_s` writes taken by the
        cloud a second, in the order decided (a slow cloud: one after another); the decision on the
        reading taken `meter_late_s` before it (queued behind the writes), stamped with its own time."""
        for t in range(int(until)):
            now = float(t)
            for i in range(len(self.keys)):
                failing = i in self.unread and now < self.read_at
                self.b.charger_failed(now, self.keys[i], failing)
                if (t == 0 and i not in self.unread) or (i in self.unread and t == int(self.read_at)):
                    self.read(now, i, found=True)
                elif t > 0 and t % POLL_S == 0:
                    self.read(now, i, found=False)
            reading = self.base + sum(car.draw(now) for car in self.cars)
            self.site.append((now, reading))
            if t >= meter_late_s:
                taken, amps = self.site[t - meter_late_s]
                for p in range(3):
                    self.b.meter(taken, p, amps)
            d = self.b.decide(now)
            self.decisions.append((now, d))
            for i, part in enumerate(d.connectors):
                if part.command is not None:  # a write still queued takes the newer value in its place
                    at = next((n for n, (j, _a) in enumerate(self.queued) if j == i), len(self.queued))
                    self.queued[at:at + 1] = [(i, part.command)]
            for i, amps in self.queued[:writes_per_s]:
                self.cars[i].write(now, amps)
                self.b.commanded(now, self.keys[i], amps)
            self.queued = self.queued[writes_per_s:]

    def given_at(self, when: float) -> dict[str, int]:
        d = next(d for t, d in self.decisions if t == when)
        return {c.key: c.charge_at for c in d.connectors}

    def worst_after(self, since: float) -> float:
        return max(amps for t, amps in self.site if t >= since)

    def paused_after_start(self) -> list[tuple[float, str]]:
        """Connectors given amps by the first decision and paused by a later one (before turns change)."""
        at, first = next((t, d) for t, d in self.decisions if not d.waiting_for_meter)
        charging = {c.key for c in first.connectors if c.charge_at > 0}
        return [(t, c.key) for t, d in self.decisions if t > at for c in d.connectors
                if c.key in charging and c.charge_at == 0]


def test_twenty_cars_at_16_a_the_first_decision_fits_the_site_and_nine_charge():
    site = Site([16.0] * 20, base=40.0)
    site.run(120)
    first = site.given_at(0.0)
    assert 40.0 + sum(first.values()) <= SITE.max_a, first
    # 9 of 20 fit at 6 A in the 56 A free: 9 charge, the rest wait their turn.
    assert sum(1 for a in first.values() if a >= MIN) == 9, first
    assert site.worst_after(LAG_S + 1) <= SITE.max_a, site.site[:10]
    # No car given amps was paused for lack of room afterwards: the room was there.
    assert site.paused_after_start() == []
    assert sum(1 for a in site.given_at(119.0).values() if a >= MIN) == 9


def test_a_slow_cloud_takes_the_start_s_writes_one_a_second_and_no_car_is_paused_for_room_that_is_there():
    # The 20 writes of the first decision reach the cloud one a second (each at its own time), the
    # cars follow each 5 s later; decisions go on every second on the freshest reading (or one 3 s
    # old, queued), a reading that shows cars not yet cut matched with the cars' draw of its own
    # moment: the room their cuts make is not taken for the house's load.
    for late in (0, 3):
        site = Site([16.0] * 20, base=40.0)
        site.run(120, writes_per_s=1, meter_late_s=late)
        assert site.paused_after_start() == [], late
        assert sum(1 for a in site.given_at(119.0).values() if a >= MIN) == 9, late
        assert site.worst_after(late + 20 + LAG_S + 1) <= SITE.max_a, late  # the last write 20 s after the first


def test_a_connector_not_read_yet_keeps_its_assumed_16_a_in_the_first_allocation():
    # 3 of 20 chargers are not read yet when the meter first speaks (the cloud is slow): they cannot
    # be written and charge at their 16 A meanwhile. The others share what those leave, at once.
    site = Site([16.0] * 20, base=40.0, unread={17, 18, 19}, read_at=20.0)
    site.run(60)
    first = site.given_at(0.0)
    assert all(first[site.keys[i]] == 16 for i in (17, 18, 19)), first
    assert 40.0 + sum(first.values()) <= SITE.max_a, first
    assert site.worst_after(LAG_S + 1) <= SITE.max_a


def test_a_setting_found_at_start_is_no_write_in_flight_its_car_s_report_is_its_draw():
    # Every charger set to 16 A, each car taking 10 A (its own limit): the reports read with the
    # settings are the cars' draw. Read as a write on its way, the cars would be counted at 16 A and
    # the house 120 A lighter than it is.
    site = Site([10.0] * 20, base=40.0)
    site.run(60)
    first = site.given_at(0.0)
    assert 40.0 + sum(min(a, 10) for a in first.values()) <= SITE.max_a + SITE.cut_tolerance_a, first
    assert site.worst_after(LAG_S + 1) <= SITE.max_a + SITE.cut_tolerance_a


def test_a_car_not_drawing_at_start_is_held_at_the_minimum_and_lends_it():
    # Car 1 is plugged in but takes nothing at 16 A (full): held at the minimum, lent to the others.
    site = Site([0.0] + [16.0] * 19, base=40.0)
    site.run(60)
    first = site.given_at(0.0)
    assert first[site.keys[0]] == MIN, first
    assert 40.0 + sum(first.values()) - MIN <= SITE.max_a, first
    assert sum(1 for k, a in first.items() if a >= MIN and k != site.keys[0]) == 9, first
    assert site.worst_after(LAG_S + 1) <= SITE.max_a


@settings(max_examples=150, deadline=None)
@given(draws=st.lists(st.one_of(st.just(0.0), st.integers(MIN, 16).map(float), st.just(16.0)), min_size=1, max_size=20),
       unread=st.sets(st.integers(0, 19), max_size=2), data=st.data())
def test_any_cars_at_any_draw_at_start_the_site_stays_under_max_a_once_they_follow(draws, unread, data):
    unread = {i for i in unread if i < len(draws)}
    # What cannot be written (not read yet) is taken at the setting a charger left alone charges at,
    # whatever its car draws, and must leave room for the rest: the balancer cannot cut it.
    held = SITE.current_cap * len(unread)
    drawing = sum(draws)
    # Not vacuous: the site starts above MaxA (a cut is needed), with room for a car at the minimum.
    low, high = max(0.0, SITE.max_a - drawing), SITE.max_a - held - MIN
    assume(low < high)
    base = data.draw(st.floats(low, high, exclude_min=True), label="base")
    site = Site(draws, base=base, unread=unread, read_at=10.0)
    site.run(45)
    limit = SITE.max_a + SITE.cut_tolerance_a  # a cut is not made for less than the tolerance
    # Once the cars followed the first decision, and after the unread ones were read and followed.
    assert site.worst_after(LAG_S + 1 if not unread else 10.0 + LAG_S + 1) <= limit, site.site[:12]
    first = site.given_at(0.0)
    # The first decision alone, taking each car at what it draws: within the limit.
    assert base + sum(min(a, draws[i]) for i, a in enumerate(first.values())) <= limit, first
    # No room left idle: as many cars charge (at least the minimum) as fit beside the house.
    room = SITE.max_a - base - held
    fits = int(room // MIN)
    takers = sum(1 for i, d in enumerate(draws) if d > 0 and i not in unread)
    charging = sum(1 for i, a in enumerate(first.values()) if a >= MIN and draws[i] > 0 and i not in unread)
    assert charging >= min(takers, fits), first
