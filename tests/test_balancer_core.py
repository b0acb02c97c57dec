"""The façade shared by both strategies: config validation, fail-safe, output stage."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.balancer import STRATEGIES, Balancer, BalancerConfig, ConnectorSpec, SharedBalancer, whole_amps_for_charger
from bridge.balancer.model import WriteBudget, connector_limit, cycle_level_at, raise_holds, waiting_for_meter
from bridge.limits import MAX_CURRENT_A


def feed(b: Balancer, now: float, l1: float, l2: float, l3: float) -> None:
    for phase, amps in enumerate((l1, l2, l3)):
        b.meter(now, phase, amps)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"max_a": 26, "fuse_a": 25}, "max_a"),
        ({"min_current": 5}, "min_current"),
        ({"default_current": 5, "min_current": 6}, "default_current"),
        ({"failsafe_current": 3}, "failsafe_current"),
        ({"failsafe_current": 20}, "failsafe_current"),
        ({"stale_after_s": 0}, "stale_after_s"),
        ({"raise_hold_s": -1}, "raise_hold_s"),
        ({"raise_hold_s": 300, "raise_hold_max_s": 100}, "raise_hold_max_s"),
        ({"default_current": 16.5}, "whole amps"),
        ({"max_a": float("nan")}, "finite"),
        ({"max_a": True}, "number"),
        ({"installation_current": 0}, "installation_current"),
    ],
)
def test_config_rejects_unsafe_values_with_the_field_named(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BalancerConfig(**changes)


def test_config_defaults_are_the_documented_ones() -> None:
    cfg = BalancerConfig()
    assert (cfg.max_a, cfg.fuse_a, cfg.default_current, cfg.min_current) == (24, 25, 16, 6)
    assert (cfg.stale_after_s, cfg.failsafe_current, cfg.restore_interval_s) == (30, 6, 600)
    assert (cfg.min_pause_s, cfg.min_command_interval_s, cfg.charger_stale_after_s) == (300, 15, 90)
    assert cfg.installation_current is None
    assert BalancerConfig(failsafe_current=0).failsafe_current == 0


def test_cut_tolerance_never_reaches_the_fuse() -> None:
    assert BalancerConfig(max_a=25, fuse_a=25).cut_tolerance_a == 0
    assert BalancerConfig(max_a=24, fuse_a=25, overshoot_tolerance_a=3).cut_tolerance_a == 1


def test_strategies_are_named_and_unknown_one_is_refused() -> None:
    assert set(STRATEGIES) == {"adaptive", "homey"}
    with pytest.raises(ValueError, match="unknown strategy"):
        Balancer(BalancerConfig(), strategy="greedy")


@pytest.mark.parametrize(
    "raw, expected",
    [(16, 16), (13.9, 13), (6, 6), (5.99, 0), (3, 0), (0, 0), (-4, 0), (40, 16), (float("nan"), 0)],
)
def test_output_stage_gives_whole_amps_never_1_to_5_never_above_default(raw: float, expected: int) -> None:
    assert whole_amps_for_charger(raw, BalancerConfig()) == expected


def test_installation_current_caps_the_output() -> None:
    assert whole_amps_for_charger(16, BalancerConfig(installation_current=10)) == 10


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_just_started_it_waits_for_the_meter_then_a_phase_never_read_gives_failsafe(strategy: str) -> None:
    b = Balancer(BalancerConfig(), strategy)
    b.meter(100, 0, 10)  # the balancer's start: the first `now` it is given
    for t in range(100, 130):
        d = b.decide(t)
        assert d.command is None and d.waiting_for_meter and not d.meter_stale
        assert d.charge_at == 16 and not d.paused  # a charger not written to is taken to charge at the cap
    assert d.reason == "waiting for the meter (29/30 s; no reading yet on L2, L3)"
    d = b.decide(130)
    assert d.meter_stale and d.charge_at == 6 and d.command == 6 and not d.waiting_for_meter
    assert "meter stale" in d.reason and "L2" in d.reason


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_meter_heard_within_stale_after_s_of_the_start_means_no_failsafe_write(strategy: str) -> None:
    b = Balancer(BalancerConfig(), strategy)
    assert b.decide(0).command is None
    commands = []
    for t in range(1, 60):
        if t >= 12:
            feed(b, t, 5, 5, 5)
        d = b.decide(t)
        if d.command is not None:
            commands.append((t, d.command))
            b.commanded(t, d.command)
    assert commands == [(12, 16)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_silent_phase_makes_the_meter_stale_at_the_deadline(strategy: str) -> None:
    b = Balancer(BalancerConfig(), strategy)
    feed(b, 0, 5, 5, 5)
    b.commanded(0, b.decide(0).command or 16)
    for t in range(1, 30):
        b.meter(t, 0, 5)
        b.meter(t, 1, 5)
        assert not b.decide(t).meter_stale
    b.meter(30, 0, 5)
    b.meter(30, 1, 5)
    d = b.decide(30)
    assert d.meter_stale and d.charge_at == 6 and "L3 silent 30 s" in d.reason


def test_heartbeat_keeps_the_meter_live_without_new_values() -> None:
    b = Balancer(BalancerConfig())
    feed(b, 0, 5, 5, 5)
    b.meter_alive(25)
    assert not b.decide(50).meter_stale
    assert b.decide(55).meter_stale


def test_failsafe_zero_pauses() -> None:
    b = Balancer(BalancerConfig(failsafe_current=0))
    assert b.decide(0).command is None
    d = b.decide(30)
    assert d.charge_at == 0 and d.paused and d.command == 0


def test_command_repeats_until_commanded_then_stops() -> None:
    b = Balancer(BalancerConfig())
    feed(b, 0, 5, 5, 5)
    first = b.decide(0)
    assert first.command == 16
    feed(b, 1, 5, 5, 5)
    assert b.decide(1).command == 16  # the write failed: the service retries with the latest value
    b.commanded(1, 16)
    feed(b, 2, 5, 5, 5)
    assert b.decide(2).command is None


def test_raises_are_paced_but_cuts_are_not() -> None:
    # homey returns to its ChargeAt as soon as the meter is back: a raise with no hold of its own.
    b = Balancer(BalancerConfig(), "homey")
    feed(b, 0, 5, 5, 5)
    b.commanded(0, 16)
    b.decide(0)
    # The meter goes stale: the fail-safe cut goes out at once.
    d = b.decide(40)
    assert d.command == 6
    b.commanded(40, 6)
    # A raise back within min_command_interval_s of the last write waits.
    feed(b, 45, 5 + 6, 5 + 6, 5 + 6)
    d = b.decide(45)
    assert d.command is None and d.charge_at == 6 and "command pacing" in d.reason
    feed(b, 55, 11, 11, 11)
    assert b.decide(55).command == 16


def test_decision_to_dict_is_json() -> None:
    b = Balancer(BalancerConfig())
    feed(b, 0, 5.12345, 5, 5)
    data = b.decide(0).to_dict()
    text = json.dumps(data)
    assert json.loads(text)["strategy"] == "adaptive"
    assert set(data) == {
        "charge_at", "command", "loadbal", "phase_currents", "headroom",
        "meter_stale", "paused", "reason", "strategy", "waiting_for_meter",
    }
    assert data["phase_currents"][0] == 5.123


def test_reconfigure_validates_and_applies() -> None:
    b = Balancer(BalancerConfig())
    with pytest.raises(ValueError, match="max_a"):
        b.reconfigure(0, max_a=30)
    with pytest.raises(ValueError, match="unknown balancer setting"):
        b.reconfigure(0, maxa=20)
    assert b.reconfigure(0, max_a=20).max_a == 20
    assert b.config.max_a == 20


def test_meter_rejects_bad_phase_and_non_finite_amps() -> None:
    b = Balancer(BalancerConfig())
    with pytest.raises(ValueError):
        b.meter(0, 3, 10)
    with pytest.raises(ValueError):
        b.meter(0, 0, float("inf"))


def test_a_meter_heard_every_second_is_stale_after_8_intervals_a_slower_one_after_stale_after_s() -> None:
    fast = Balancer(BalancerConfig())
    for t in range(0, 30):
        feed(fast, t, 5, 5, 5)
    assert not fast.decide(29 + 7).meter_stale
    d = fast.decide(29 + 8)
    assert d.meter_stale and "L1 silent 8 s" in d.reason
    # A DSMR 4 meter sends a telegram every 10 s, each value of it a message of its own (current,
    # power delivered, power returned, voltage, a few ms apart): one telegram is one reading's worth.
    slow = Balancer(BalancerConfig())
    for telegram in range(0, 300, 10):
        for offset in (0.0, 0.004, 0.008, 0.012):
            feed(slow, telegram + offset, 5, 5, 5)
    last = 290.012
    assert not slow.decide(last + 29).meter_stale
    assert slow.decide(last + 30).meter_stale


# ---- every limit on a connector's current, in one function ----------------------------------------

limit_configs = st.builds(
    lambda fuse, margin, default, installation, minimum: BalancerConfig(
        fuse_a=fuse, max_a=fuse - margin, default_current=default, installation_current=installation,
        min_current=minimum, failsafe_current=minimum),
    st.integers(min_value=10, max_value=63).map(float),
    st.floats(min_value=0, max_value=4),
    st.integers(min_value=8, max_value=32),
    st.none() | st.integers(min_value=1, max_value=32),
    st.integers(min_value=6, max_value=8),
)


@given(want=st.floats(allow_nan=True, allow_infinity=True, min_value=None, max_value=None),
       cfg=limit_configs, power_cap=st.none() | st.floats(min_value=0, max_value=64))
@settings(max_examples=400, deadline=None)
def test_connector_limit_applies_every_limit_and_takes_nothing_more(want, cfg, power_cap) -> None:
    amps = connector_limit(want, cfg, power_cap)
    ceilings = [MAX_CURRENT_A, cfg.default_current, cfg.fuse_a,
                *([cfg.installation_current] * (cfg.installation_current is not None)),
                *([power_cap] * (power_cap is not None))]
    assert isinstance(amps, int)
    assert amps == 0 or (cfg.min_current <= amps <= min(ceilings) and amps <= want)
    # Nothing more than the limits is taken: where the limits leave the minimum, the whole amps are given.
    assume(math.isfinite(want))
    allowed = math.floor(min([want, *ceilings]))
    assume(allowed >= cfg.min_current)
    assert amps == allowed


def test_connector_limit_is_what_both_balancers_write() -> None:
    # A power cap of 7.9 A: whole amps, 7 A, from the one-car and the several-car balancer alike.
    one = SharedBalancer(BalancerConfig(), [ConnectorSpec("1:1")])
    two = SharedBalancer(BalancerConfig(), [ConnectorSpec("1:1"), ConnectorSpec("1:2")])
    for b in (one, two):
        for key in b.keys:
            b.power_limit(0.0, key, 7.9, "test cap")
        for t in range(0, 40):
            for phase in range(3):
                b.meter(float(t), phase, 1.0)
            d = b.decide(float(t))
            for c in d.connectors:
                if c.command is not None:
                    b.commanded(float(t), c.key, c.command)
        assert [c.charge_at for c in d.connectors] == [7] * len(b.keys), d.reason


# ---- the write budget, one class for one car and several ------------------------------------------

def test_the_write_budget_earns_per_hour_saves_at_most_the_burst_and_pays_one_write_a_change() -> None:
    cfg = BalancerConfig(write_budget_per_h=12.0, write_budget_burst=4)
    budget = WriteBudget.full(cfg)
    assert budget.available(1000.0, cfg) == 4.0  # nothing earned before the first change
    for t in (0.0, 1.0, 2.0):
        budget.spend(t, cfg)
    assert budget.available(2.0, cfg) == pytest.approx(1.0 + 2 * 12 / 3600)
    assert budget.available(2.0 + 300.0, cfg) == pytest.approx(2.0 + 2 * 12 / 3600)  # 12 an hour: 1 in 5 minutes
    assert budget.available(2.0 + 3600.0, cfg) == 4.0  # never more than the burst
    budget.fit(BalancerConfig(write_budget_per_h=12.0, write_budget_burst=2))
    assert budget.tokens <= 2.0


def test_one_car_and_several_spend_the_same_write_budget() -> None:
    # The same changes of setting leave the one-car strategy's budget and a shared connector's alike.
    from bridge.balancer.adaptive import AdaptiveStrategy

    cfg = BalancerConfig()
    one = AdaptiveStrategy(lambda: cfg)
    several = SharedBalancer(cfg, [ConnectorSpec("1:1"), ConnectorSpec("1:2")])
    c = several._conns["1:1"]
    for t, amps in ((0.0, 16), (10.0, 8), (20.0, 12), (700.0, 6), (710.0, 0)):
        one._set_target(t, amps)
        several._set_target(t, c, amps)
    assert one.tokens(710.0) < cfg.write_budget_burst  # four changes spent four writes
    for now in (710.0, 1000.0, 5000.0):
        assert one.tokens(now) == several._tokens(now, c)


# ---- the start-up wait and the raise hold, one rule each for one car and several ------------------

def test_the_start_up_wait_is_stale_after_s_from_the_first_call_while_a_phase_was_never_read() -> None:
    cfg = BalancerConfig(stale_after_s=30)
    assert waiting_for_meter(129.0, 100.0, (100.0, None, None), cfg)
    assert not waiting_for_meter(130.0, 100.0, (100.0, None, None), cfg)  # over: the fail-safe
    assert not waiting_for_meter(101.0, 100.0, (100.0, 100.0, 100.0), cfg)  # every phase read


@pytest.mark.parametrize("keys", [["1:1"], ["1:1", "1:2"]])
def test_one_car_and_several_wait_for_the_meter_alike_then_the_fail_safe(keys) -> None:
    b = SharedBalancer(BalancerConfig(stale_after_s=30), [ConnectorSpec(k) for k in keys])
    for t in range(100, 130):
        b.meter(float(t), 0, 5.0)  # L2 and L3 never speak
        d = b.decide(float(t))
        assert d.waiting_for_meter and not d.commands, (t, d.reason)
    d = b.decide(130.0)
    assert not d.waiting_for_meter and d.meter_stale, d.reason


def test_the_raise_hold_doubles_per_cycle_level_up_to_its_most_and_forgets_a_level_per_period() -> None:
    cfg = BalancerConfig(raise_hold_s=60, raise_hold_max_s=600, quick_raise_hold_s=15, cycle_forget_s=900)
    assert raise_holds(0, cfg) == (15, 60)
    assert raise_holds(2, cfg) == (15, 240)
    assert raise_holds(5, cfg) == (15, 600)
    assert cycle_level_at(3, 1000.0, 1000.0 + 899, cfg) == 3
    assert cycle_level_at(3, 1000.0, 1000.0 + 1800, cfg) == 1
    assert cycle_level_at(3, 1000.0, 1000.0 + 9000, cfg) == 0
    assert cycle_level_at(3, None, 5000.0, cfg) == 3
