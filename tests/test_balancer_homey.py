"""Strategy `homey`: the seed's Homey flows, checked on worked examples (SEED-BEHAVIOUR.md).

MaxA 24, full power (ChargeAt's default) 16 throughout.
"""

from __future__ import annotations

import pytest

from bridge.balancer import Balancer, BalancerConfig


def feed(b: Balancer, now: float, l1: float, l2: float, l3: float) -> None:
    for phase, amps in enumerate((l1, l2, l3)):
        b.meter(now, phase, amps)


def homey(**changes: object) -> Balancer:
    b = Balancer(BalancerConfig(**changes), "homey")  # type: ignore[arg-type]
    feed(b, 0, 20, 20, 20)
    d = b.decide(0)
    b.commanded(0, d.command if d.command is not None else 16)
    return b


def test_upward_crossing_grows_loadbal_by_overshoot_and_chargeat_follows_after_1_s() -> None:
    b = homey()
    # ElAmp1: LoadBalL1 = max(0, 0 + 26.5 - 24) = 2.5
    feed(b, 100, 26.5, 20, 20)
    d = b.decide(100)
    assert d.loadbal == (2.5, 0.0, 0.0)
    assert d.charge_at == 16  # the flow waits 1 s before ChargeAt = 16 - max(LoadBal)
    feed(b, 101, 26.5, 20, 20)
    d = b.decide(101)
    # ChargeAt = 16 - 2.5 = 13.5; the output stage sends whole amps, rounded down
    assert d.charge_at == 13 and d.command == 13
    assert "ChargeAt 13.5" in d.reason


def test_a_phase_that_stays_above_maxa_never_fires_again() -> None:
    b = homey()
    feed(b, 100, 26.5, 20, 20)
    b.decide(100)
    for t in range(101, 120):
        feed(b, t, 28.0, 20, 20)  # still above, even higher: no new crossing
        d = b.decide(t)
    assert d.loadbal == (2.5, 0.0, 0.0)


def test_second_crossing_adds_its_overshoot() -> None:
    b = homey()
    feed(b, 100, 26.5, 20, 20)
    b.decide(100)
    feed(b, 110, 23.0, 20, 20)
    b.decide(110)
    # LoadBalL1 = 2.5 + 25 - 24 = 3.5; ChargeAt = 12.5
    feed(b, 120, 25.0, 20, 20)
    b.decide(120)
    feed(b, 121, 25.0, 20, 20)
    d = b.decide(121)
    assert d.loadbal == (3.5, 0.0, 0.0) and d.charge_at == 12


def test_smaller_overshoot_on_another_phase_is_ignored_by_max() -> None:
    b = homey()
    feed(b, 100, 27.0, 20, 20)
    b.decide(100)
    feed(b, 101, 27.0, 25.0, 20)  # LoadBalL2 = 1.0, but max(3.0, 1.0) = 3.0
    b.decide(101)
    feed(b, 102, 27.0, 25.0, 20)
    d = b.decide(102)
    assert d.loadbal == (3.0, 1.0, 0.0) and d.charge_at == 13


def test_restore_every_interval_raises_by_smallest_spare_capacity() -> None:
    b = homey()
    feed(b, 100, 27.5, 20, 20)  # LoadBalL1 = 3.5 -> ChargeAt 12.5
    b.decide(100)
    feed(b, 101, 27.5, 20, 20)
    b.commanded(101, b.decide(101).command or 12)
    for t in range(102, 600):
        feed(b, t, 20, 22, 18)
        d = b.decide(t)
    assert d.charge_at == 12
    # ElRestore at 600 s (timer started at 0): spare = (4, 2, 6);
    # LoadBal_n = max(0, (16 - 12.5) - spare_n) = (0, 1.5, 0); ChargeAt = 16 - 1.5 = 14.5
    feed(b, 600, 20, 22, 18)
    d = b.decide(600)
    assert d.loadbal == (0.0, 1.5, 0.0) and d.charge_at == 12
    feed(b, 601, 20, 22, 18)
    d = b.decide(601)
    assert d.charge_at == 14 and d.command == 14


def test_restore_does_nothing_at_full_power() -> None:
    b = homey()
    for t in range(1, 1300):
        feed(b, t, 23, 23, 23)
        d = b.decide(t)
        assert d.loadbal == (0.0, 0.0, 0.0) and d.charge_at == 16 and d.command is None


def test_restore_interval_is_a_setting() -> None:
    b = homey(restore_interval_s=900)
    feed(b, 100, 26.0, 20, 20)
    b.decide(100)
    for t in range(101, 900):
        feed(b, t, 10, 10, 10)
        d = b.decide(t)
    assert d.loadbal[0] == 2.0  # not restored at 600 s
    feed(b, 900, 10, 10, 10)
    b.decide(900)
    feed(b, 901, 10, 10, 10)
    assert b.decide(901).charge_at == 16


def test_raw_chargeat_below_zero_is_shown_but_the_charger_gets_a_pause() -> None:
    b = homey()
    feed(b, 100, 44.0, 20, 20)  # LoadBalL1 = 20 -> ChargeAt = -4
    b.decide(100)
    feed(b, 101, 44.0, 20, 20)
    d = b.decide(101)
    assert d.loadbal == (20.0, 0.0, 0.0)
    assert "ChargeAt -4" in d.reason
    assert d.charge_at == 0 and d.paused and d.command == 0


@pytest.mark.parametrize("overshoot, expected", [(10.5, 0), (11.0, 0), (9.9, 6), (12.0, 0)])
def test_raw_chargeat_between_0_and_6_pauses(overshoot: float, expected: int) -> None:
    b = homey()
    feed(b, 100, 24 + overshoot, 20, 20)
    b.decide(100)
    feed(b, 101, 24 + overshoot, 20, 20)
    assert b.decide(101).charge_at == expected


def test_first_reading_above_maxa_counts_as_a_crossing() -> None:
    b = Balancer(BalancerConfig(), "homey")
    feed(b, 0, 25.0, 20, 20)
    b.decide(0)
    feed(b, 1, 25.0, 20, 20)
    assert b.decide(1).loadbal == (1.0, 0.0, 0.0)
