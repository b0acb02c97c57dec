"""Load signatures: the same load coming back vs a different load."""

from __future__ import annotations

from bridge.balancer import BalancerConfig
from bridge.balancer.loads import LoadTracker

CFG = BalancerConfig()
BASE = (1.0, 1.0, 1.0)


def feed(tr: LoadTracker, t0: int, seconds: int, house: tuple[float, float, float]) -> int:
    for t in range(t0, t0 + seconds):
        tr.feed(float(t), house, CFG)
    return t0 + seconds


def test_the_same_load_coming_back_is_one_cycling_signature() -> None:
    tr = LoadTracker()
    t = feed(tr, 0, 10, BASE)
    for _ in range(3):
        t = feed(tr, t, 60, (7.1, 9.3, 8.0))  # an oven on all three phases
        t = feed(tr, t, 80, BASE)
    assert len(tr.loads) == 1
    oven = tr.loads[0]
    assert oven.phases == (0, 1, 2) and oven.comebacks == 2
    assert abs(oven.on_s - 60) < 1 and abs(oven.off_s - 80) < 1  # type: ignore[operator]
    assert tr.cycling(oven, CFG)
    reserve, kept = tr.reserve(float(t), CFG, BASE, (0, 1, 2), 16)
    assert kept is oven and [round(r, 1) for r in reserve] == [6.1, 8.3, 7.0]
    assert "L1+L2+L3" in tr.describe(oven)


def test_a_different_load_is_a_new_signature() -> None:
    tr = LoadTracker()
    t = feed(tr, 0, 10, BASE)
    t = feed(tr, t, 60, (1.0, 9.7, 1.0))  # a hob on L2
    t = feed(tr, t, 30, BASE)
    t = feed(tr, t, 60, (1.0, 12.0, 1.0))  # a kettle on L2: another size
    assert len(tr.loads) == 2 and all(ld.comebacks == 0 for ld in tr.loads)
    assert tr.last_up is not None and tr.last_up[2] is False
    t = feed(tr, t, 10, (1.0, 1.0, 1.0))
    reserve, kept = tr.reserve(float(t), CFG, BASE, (0, 1, 2), 16)
    assert reserve == (0.0, 0.0, 0.0) and kept is None


def test_a_cycling_load_not_seen_for_long_is_forgotten() -> None:
    tr = LoadTracker()
    t = feed(tr, 0, 10, BASE)
    for _ in range(3):
        t = feed(tr, t, 40, (1.0, 9.0, 1.0))
        t = feed(tr, t, 50, BASE)
    assert tr.reserve(float(t), CFG, BASE, (1,), 16)[0][1] > 7
    t = feed(tr, t, int(CFG.cycle_window_s) + 1, BASE)
    assert tr.reserve(float(t), CFG, BASE, (1,), 16)[0] == (0.0, 0.0, 0.0)
    assert tr.loads == []


def test_a_long_off_time_worth_a_raise_is_not_reserved() -> None:
    tr = LoadTracker()
    t = feed(tr, 0, 10, BASE)
    for _ in range(3):
        t = feed(tr, t, 60, (1.0, 14.0, 1.0))  # 13 A on L2, off for 100 s: 6 A for ~75 s
        t = feed(tr, t, 100, BASE)
    assert tr.loads[0].comebacks == 2
    reserve, kept = tr.reserve(float(t) - 50, CFG, BASE, (1,), 16)
    assert reserve == (0.0, 0.0, 0.0) and kept is None
