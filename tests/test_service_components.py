"""The service's components on their own, without MQTT: the command table (every
command parsed, checked, applied, and its refusal's snap-back value) and the charger
link (connect, poll, write, pause by mode, backoff, installation current), against
the cloud simulator through the real EAPI client. One test runs the whole service
in process on the real broker for the answer and the snap-back on the wire."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path

import pytest

from bridge.balancer.sharing import ConnectorSpec, ConnectorView, SharedBalancer
from bridge.config import load_settings
from bridge.eapi import client_from_settings
from bridge.mqtt.topics import COMMAND_NAMES, Topics
from bridge.service import BridgeService, CloudBackoff, CommandBudget
from bridge.service.charger_link import SETTINGS_EVERY, ChargerLink
from bridge.service.commands import COMMANDS, CommandHandler
from bridge.service.health import Health
from bridge.service.runtime import RuntimeKeeper
from bridge.sim.cloud import CloudSimulator
from bridge.state import RuntimeStore
from tests.e2e import Probe, wait_until


class ManualClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def real_seconds(self, seconds: float) -> float:
        return seconds


def settings_for(sim: CloudSimulator, state: Path, **overrides):
    values = dict(
        chargeamps_email=sim.email, chargeamps_password=sim.password, chargeamps_api_key=sim.api_key,
        chargeamps_base_url=sim.url, chargeamps_state_dir=state, chargeamps_chargepoint_id=None,
        chargeamps_http_timeout=2, chargeamps_poll_interval=10,
        mqtt_host="127.0.0.1", mqtt_port=1, mqtt_base_topic="unit", mqtt_username=None, mqtt_password=None,
        mqtt_tls=False, ha_discovery=False, balancer_fuse_a=25, balancer_max_a=24, balancer_default_current=16,
        balancer_strategy="homey", balancer_raise_hold_s=0, balancer_min_command_interval_s=0,
    )
    values.update(overrides)
    return load_settings(**values)


@dataclasses.dataclass
class Parts:
    sim: CloudSimulator
    settings: object
    clock: ManualClock
    health: Health
    balancer: Balancer
    link: ChargerLink
    handler: CommandHandler
    keeper: RuntimeKeeper
    events: list

    @property
    def topics(self) -> Topics:
        return self.handler.topics

    def command(self, name: str, payload: str | bytes, cp: str | None = None, n: int | None = None):
        cp = cp if cp is not None else self.sim.chargepoint_id
        topic = (self.topics.command_topic(name, cp, n if n is not None else 1) if name.startswith("charger_")
                 else self.topics.command_topic(name, cp) if name == "reboot" else self.topics.command_topic(name))
        command = self.topics.classify(topic)
        assert command is not None and command.name == name
        return self.handler.handle(command, payload.encode() if isinstance(payload, str) else payload)


def build(sim: CloudSimulator, state: Path, budget: CommandBudget | None = None, **overrides) -> Parts:
    s = settings_for(sim, state, **overrides)
    clock = ManualClock()
    health = Health()
    keeper = RuntimeKeeper(RuntimeStore(s.runtime_file), s)
    runtime = keeper.restore()
    shared = SharedBalancer(s.balancer_config(max_a=runtime.max_a, default_current=runtime.default_current),
                            [ConnectorSpec("unnamed:1")], strategy=s.balancer_strategy)
    balancer = ConnectorView(shared, "unnamed:1")
    events: list = []
    link = ChargerLink(s, client_from_settings(s, long_running=True), balancer, health, clock,
                       CloudBackoff(initial_s=5, max_s=40),
                       on_change=lambda: events.append("change"),
                       on_health=lambda now: events.append("health"),
                       on_identified=lambda: events.append("identified"))
    handler = CommandHandler(s, Topics(s.mqtt_base_topic), runtime, keeper, shared, link, health, clock,
                             decide=lambda now: events.append("decide"),
                             on_health=lambda now: events.append("health"), budget=budget)
    return Parts(sim, s, clock, health, balancer, link, handler, keeper, events)


@pytest.fixture
def parts(sim, tmp_path) -> Parts:
    return build(sim, tmp_path / "state", budget=CommandBudget(burst=100, per_minute=100, tokens=100))


def connected(p: Parts) -> Parts:
    p.link.tick(p.clock())
    assert p.link.ready, p.health
    return p


def saved(p: Parts) -> dict:
    return json.loads(p.settings.runtime_file.read_text())


# ---- the table ------------------------------------------------------------------------

def test_the_table_has_one_entry_per_command_topic():
    assert tuple(COMMANDS) == COMMAND_NAMES
    t = Topics("x")
    assert {t.classify(top).name for top in t.command_topics("cp", 1)} == set(COMMANDS)


def test_max_a_parse_check_apply_and_snap_back(parts):
    p = parts
    refused = p.command("max_a", "30")
    assert refused.status == "error" and "between 6 and 25 A" in refused.error
    assert refused.restate == (p.topics.max_a, "24")
    garbage = p.command("max_a", "lots")
    assert garbage.status == "error" and garbage.restate == (p.topics.max_a, "24")
    assert p.health.commands_refused == 2 and "decide" not in p.events
    ok = p.command("max_a", "20.5")
    assert (ok.status, ok.value, ok.restate) == ("ok", 20.5, None)
    assert p.handler.runtime.max_a == 20.5 and p.balancer.config.max_a == 20.5
    assert saved(p)["max_a"] == 20.5 and p.events == ["decide"]


def test_default_current_whole_amps_within_the_installation_current(sim, tmp_path):
    sim.charge_points[sim.chargepoint_id].installation_current = 13
    p = connected(build(sim, tmp_path / "state"))
    assert p.link.view.installation_current == 13
    for payload, why in (("13.5", "whole amps"), ("14", "between 6 and 13 A (the installation current)"),
                         ("5", "between 6 and 13 A")):
        answer = p.command("default_current", payload)
        assert answer.status == "error" and why in answer.error, answer
        assert answer.restate == (p.topics.default_current, "16")
    ok = p.command("default_current", "12")
    assert (ok.status, ok.value) == ("ok", 12)
    assert p.balancer.config.default_current == 12 and saved(p)["default_current"] == 12


def test_enabled_parses_on_off_and_snaps_back_on_garbage(parts):
    p = parts
    refused = p.command("enabled", "maybe")
    assert refused.status == "error" and refused.restate == (p.topics.enabled, "ON")
    ok = p.command("enabled", "OFF")
    assert (ok.status, ok.value) == ("ok", "OFF") and p.handler.runtime.enabled is False
    assert saved(p)["enabled"] is False


def test_charger_current_only_with_the_balancer_off_and_within_the_default(parts):
    p = connected(parts)
    cp = p.sim.chargepoint_id
    shown = p.topics.charger_max_current(cp, 1)
    answer = p.command("charger_max_current", "8")
    assert answer.status == "error" and "balancer is enabled" in answer.error
    assert answer.restate == (shown, "16")
    p.command("enabled", "OFF")
    for payload in ("5", "17", "8.5", "nan"):
        answer = p.command("charger_max_current", payload)
        assert answer.status == "error" and answer.restate == (shown, "16"), (payload, answer)
    ok = p.command("charger_max_current", "8")
    assert (ok.status, ok.value) == ("ok", 8)
    assert p.sim.connector(1).max_current == 8 and p.link.view.max_current == 8
    assert p.command("charger_max_current", "0").value == 0 and p.sim.connector(1).max_current == 0


def test_charger_mode_and_reboot_reach_the_charger(parts):
    p = connected(parts)
    cp = p.sim.chargepoint_id
    p.sim.charge_points[cp].firmware = "capi"  # OCPP refuses mode Off during a session: test_ocpp_firmware.py
    answer = p.command("charger_mode", "Sideways")
    assert answer.status == "error" and answer.restate == (p.topics.charger_mode(cp, 1), "On")
    assert p.command("charger_mode", "off").value == "Off" and p.sim.connector(1).mode == "Off"
    reboots = p.sim.charge_points[cp].reboots
    assert p.command("reboot", "PRESS").status == "ok" and p.sim.charge_points[cp].reboots == reboots + 1


def test_charger_commands_for_another_charger_or_connector_are_refused(parts):
    p = connected(parts)
    for name, cp, n in (("reboot", "OTHER", None), ("charger_mode", "OTHER", 1), ("charger_mode", None, 2)):
        answer = p.command(name, "On", cp=cp, n=n)
        assert answer.status == "error" and "unknown charge point or connector" in answer.error, answer
    assert [r for r in p.sim.requests if r.method == "PUT"] == []


def test_refresh_needs_a_known_charger_and_then_polls_with_the_settings(parts):
    p = parts
    answer = p.command("refresh", "")
    assert answer.status == "error" and "not known yet" in answer.error and answer.restate is None
    connected(p)
    p.sim.connector(1).max_current = 11  # changed behind the bridge's back
    assert p.command("refresh", "now").status == "ok"
    assert p.link.view.max_current == 11


def test_the_command_budget_refuses_a_flood_and_says_when(sim, tmp_path):
    p = connected(build(sim, tmp_path / "state", budget=CommandBudget(burst=2, per_minute=6, tokens=2)))
    assert [p.command("refresh", "").status for _ in range(2)] == ["ok", "ok"]
    answer = p.command("refresh", "")
    assert answer.status == "error" and "too many commands for the cloud, try again in 10 s" in answer.error


def test_a_cloud_error_on_a_command_goes_back_to_the_user(parts):
    p = connected(parts)
    p.sim.fail_next(10, 503)
    answer = p.command("charger_mode", "Off")
    assert answer.status == "error" and answer.error.startswith("mode Off failed:")
    assert p.health.cloud == "error" and p.sim.connector(1).mode == "On"


def test_a_runtime_file_that_cannot_be_written_is_reported_and_the_change_holds(parts):
    p = parts
    p.settings.runtime_file.parent.mkdir(parents=True, exist_ok=True)
    p.settings.runtime_file.mkdir()  # a folder where the file should be
    assert p.command("max_a", "20").status == "ok"
    assert p.handler.runtime.max_a == 20
    assert "cannot write" in p.health.last_error and "health" in p.events


# ---- the charger link --------------------------------------------------------------------

def test_connect_identifies_the_charger_and_polls_it_with_its_settings(parts):
    p = connected(parts)
    v = p.link.view
    assert v.cp_id == p.sim.chargepoint_id and v.online is True and v.polls == 1
    assert v.max_current == 16 and v.mode == "On" and v.installation_current == 16
    # cloud ok (health), then the charger known (info, discovery), then its state: its settings
    # first (what a write needs), then its status
    assert p.events == ["health", "identified", "change", "change"]
    assert p.health.cloud == "ok" and p.link.next_poll == p.clock() + 10


def test_polls_follow_the_interval_and_read_the_setting_back_every_fourth_poll(parts):
    p = connected(parts)
    settings_reads = len(p.sim.requests_to("/settings", "GET"))
    p.link.tick(p.clock())  # not yet time
    assert p.link.view.polls == 1
    for _ in range(3):
        p.clock.now = p.link.next_poll
        p.link.tick(p.clock())
    assert p.link.view.polls == 4
    assert len(p.sim.requests_to("/settings", "GET")) == settings_reads  # read at the first poll only
    p.clock.now = p.link.next_poll
    p.link.tick(p.clock())
    assert len(p.sim.requests_to("/settings", "GET")) == settings_reads + 1  # and at the fifth


def test_apply_writes_the_command_only_when_enabled_and_tells_the_balancer(parts):
    p = connected(parts)
    decision = dataclasses.replace(p.balancer.decide(p.clock()), command=10, reason="test")
    p.link.apply(p.clock(), decision, enabled=False)
    assert p.sim.connector(1).max_current == 16
    p.link.apply(p.clock(), decision, enabled=True)
    assert p.sim.connector(1).max_current == 10 and p.link.view.max_current == 10
    assert all(r.valid for r in p.sim.requests), [r.error for r in p.sim.requests if not r.valid]


def test_a_write_counts_for_the_balancer_from_when_it_was_sent_and_the_worker_ticks_when_it_settles(parts):
    # The answer comes seconds after the request left; the car may follow from the request on, and
    # a decision waiting for the write to settle (a resume when the meter is back) waits no longer.
    p = connected(parts)
    set_current = p.link.cloud.set_current

    def slow(*args, **kwargs):
        p.clock.now += 3  # the call's time
        return set_current(*args, **kwargs)

    p.link.cloud.set_current = slow
    sent = p.clock()
    p.link.apply(sent, dataclasses.replace(p.balancer.decide(sent), command=10, reason="test"), enabled=True)
    assert p.sim.connector(1).max_current == 10 and p.clock() == sent + 3
    assert p.balancer.observations().commanded_at == sent
    assert p.link.settles_at == sent + p.balancer.config.settle_s


def test_pause_by_mode_turns_the_connector_off_and_on_again(sim, tmp_path):
    sim.charge_points[sim.chargepoint_id].firmware = "capi"  # OCPP: test_ocpp_firmware.py
    p = connected(build(sim, tmp_path / "state", chargeamps_pause_method="mode"))
    assert p.link.write_current(p.clock(), 0, "pause")
    c = p.sim.connector(1)
    assert c.mode == "Off" and c.max_current == 16  # the current is left as it was
    assert p.link.write_current(p.clock(), 8, "resume")
    assert c.mode == "On" and c.max_current == 8 and p.link.view.mode == "On"


def test_pause_by_current_writes_zero(parts):
    p = connected(parts)
    assert p.link.write_current(p.clock(), 0, "pause")
    assert p.sim.connector(1).max_current == 0 and p.sim.connector(1).mode == "On"


def test_backoff_after_errors_grows_and_ends_with_success(parts):
    p = connected(parts)
    account = p.link.calls.backoff  # a server error is the cloud's as a whole: the account's backoff
    p.sim.fail_next(1000, 503)
    p.clock.now = p.link.next_poll
    p.link.tick(p.clock())
    assert p.health.cloud == "error" and account.failures == 1 and p.link.failing
    assert account.retry_in(p.clock()) == 5
    p.clock.now = p.link.next_poll  # the next poll, after the 5 s
    p.link.tick(p.clock())
    assert account.failures == 2 and account.retry_in(p.clock()) == 10
    before = len(p.sim.requests)
    p.clock.now = account.retry_at - 0.5
    p.link.tick(p.clock())
    assert len(p.sim.requests) == before  # still backing off: no request
    assert p.link.due_at == account.retry_at  # and the worker is not woken before it ends
    with p.sim.lock:
        p.sim._faults.clear()  # the simulator has no public "clear faults"
    p.clock.now = account.retry_at
    p.link.tick(p.clock())
    assert p.health.cloud == "ok" and account.failures == 0 and len(p.sim.requests) > before


def test_retry_after_is_honoured(parts):
    p = connected(parts)
    p.sim.fail_next(1000, 429, retry_after=30)
    p.clock.now = p.link.next_poll
    p.link.tick(p.clock())
    assert p.link.calls.backoff.retry_in(p.clock()) == 30


def test_the_installation_current_caps_the_balancer(sim, tmp_path):
    sim.charge_points[sim.chargepoint_id].installation_current = 10
    p = connected(build(sim, tmp_path / "state"))
    assert p.link.view.installation_current == 10
    assert p.balancer.config.installation_current == 10


def test_an_account_without_the_configured_charger_backs_off(sim, tmp_path):
    p = build(sim, tmp_path / "state", chargeamps_chargepoint_id="NOT-MINE")
    p.link.tick(p.clock())
    assert not p.link.ready and p.health.cloud == "error"
    assert "NOT-MINE is not owned" in p.health.last_error and p.link.backoff.failures == 1


def test_missing_credentials_mean_balancing_without_the_charger(sim, tmp_path):
    p = build(sim, tmp_path / "state", chargeamps_api_key=None)
    p.link.tick(p.clock())
    assert not p.link.ready and p.health.cloud == "not_configured" and p.sim.requests == []


# ---- the whole service in process, on the real broker ---------------------------------

def test_in_process_refusal_answers_and_snaps_the_slider_back(broker, sim, tmp_path):
    tag = uuid.uuid4().hex[:6]
    s = settings_for(sim, tmp_path / "state", mqtt_host=broker.host, mqtt_port=broker.port,
                     mqtt_base_topic=f"unit-{tag}", mqtt_client_id=f"unit-{tag}",
                     p1_topic_l1=f"p1-{tag}/l1", p1_topic_l2=f"p1-{tag}/l2", p1_topic_l3=f"p1-{tag}/l3")
    svc = BridgeService(s, backoff=CloudBackoff(initial_s=1, max_s=2))
    # Only the base topic: a probe of `#` would read, in this process, every retained message
    # earlier tests left on the shared broker while the service waits for the same interpreter.
    probe = Probe(broker.host, broker.port, subscribe=f"{s.mqtt_base_topic}/#")
    svc.start()
    try:
        base = s.mqtt_base_topic
        try:
            probe.wait_value(f"{base}/balancer/max_a", "24", timeout=30)
        except AssertionError as e:
            raise AssertionError(f"{e}; mqtt connected: {svc.mqtt.connected}, health: {svc.health}, "
                                 f"queue: {svc.events.qsize()}, decision: {svc.decision}") from None
        t = time.monotonic()
        probe.publish(f"{base}/balancer/max_a/set", "99")
        answer = probe.wait_json(f"{base}/bridge/response", lambda a: a["topic"].endswith("max_a/set"), since=t)
        assert answer["status"] == "error" and "between 6 and 25 A" in answer["error"]
        probe.wait_value(f"{base}/balancer/max_a", "24", since=t)  # published again although unchanged
        wait_until(lambda: svc.health.commands_refused == 1, 5, "the refusal counted")
    finally:
        svc.stop()
        probe.close()


# ---- the desired-state loop ---------------------------------------------------------------

def test_the_setting_found_at_connect_counts_as_written(parts):
    p = connected(parts)
    assert p.link.expected == 16 and p.balancer.observations().commanded == 16
    assert p.health.charger_overrides == 0


def poll_until_settings_read(p: Parts) -> None:
    """Poll until a poll reads the settings back (every fourth poll does)."""
    reads = len(p.sim.requests_to("/settings", "GET"))
    for _ in range(SETTINGS_EVERY):
        p.clock.now = p.link.next_poll
        p.link.tick(p.clock())
        if len(p.sim.requests_to("/settings", "GET")) > reads:
            return
    raise AssertionError(f"no settings read in {SETTINGS_EVERY} polls")


def test_a_setting_changed_outside_the_bridge_goes_to_the_balancer_and_is_counted(parts):
    p = connected(parts)
    p.sim.connector(1).max_current = 10
    poll_until_settings_read(p)
    assert p.health.charger_overrides == 1 and p.link.expected == 10
    assert p.balancer.observations().commanded == 10
    decision = dataclasses.replace(p.balancer.decide(p.clock()), command=12, reason="test")
    p.link.apply(p.clock(), decision, enabled=True)
    assert p.sim.connector(1).max_current == 12
    assert p.health.last_override == "charger set to 10 A outside the bridge: restored 12 A"
    poll_until_settings_read(p)  # read back as written: no new override
    assert p.health.charger_overrides == 1


def test_with_the_balancer_off_a_changed_setting_is_taken_as_it_is(parts):
    p = connected(parts)
    p.link.enabled = lambda: False
    p.sim.connector(1).max_current = 10
    poll_until_settings_read(p)
    assert p.health.charger_overrides == 0 and p.link.expected == 10


def test_paused_by_mode_reads_back_as_zero(sim, tmp_path):
    sim.charge_points[sim.chargepoint_id].firmware = "capi"  # OCPP: test_ocpp_firmware.py
    p = connected(build(sim, tmp_path / "state", chargeamps_pause_method="mode"))
    assert p.link.write_current(p.clock(), 0, "pause") and p.link.expected == 0
    poll_until_settings_read(p)
    assert p.health.charger_overrides == 0
    p.sim.connector(1).mode = "On"  # turned on in the app: the car may charge at 16 A
    poll_until_settings_read(p)
    assert p.health.charger_overrides == 1 and p.balancer.observations().commanded == 16


def test_at_charge_point_level_the_charge_points_setting_is_read_back(sim, tmp_path):
    p = connected(build(sim, tmp_path / "state", chargeamps_current_level="chargepoint"))
    assert p.link.write_current(p.clock(), 10, "test")
    poll_until_settings_read(p)  # the connector's own setting is not what the bridge writes here
    assert p.health.charger_overrides == 0 and p.link.expected == 10
    assert all(r.valid for r in p.sim.requests), [r.error for r in p.sim.requests if not r.valid]


# ---- power limits: the capacity limit and the charge mode ------------------------------------

class Recorder:
    """Stands where the MQTT client stands for the publisher: keeps what was published."""

    def __init__(self) -> None:
        self.published: dict[str, str] = {}

    def publish(self, topic: str, payload: str, retain: bool = True, **_: object) -> None:
        self.published[topic] = payload


def with_power(p: Parts, wall=None):
    from bridge.service.power_limits import PowerLimits
    from bridge.service.publisher import StatePublisher

    recorder = Recorder()
    power = PowerLimits(p.settings, p.topics, StatePublisher(recorder, p.topics), p.balancer.shared, p.handler.runtime,
                        wall=wall)
    p.handler.power = power
    return power, recorder


def test_capacity_limit_set_validated_saved_and_shown(parts):
    p = parts
    power, recorder = with_power(p)
    assert power.guard is None and power.limit_kw is None  # CAPACITY_LIMIT_KW unset: off
    topic = p.topics.command_topic("capacity_limit")
    for payload, why in (("-1", "0 (off) or from 0.5 to 1000 kW"), ("5000", "0 (off) or from 0.5"),
                         ("0.0001", "0 (off) or from 0.5"), ("0.49", "got 0.49"), ("lots", "a number")):
        answer = p.handler.handle(p.topics.classify(topic), payload.encode())
        assert answer.status == "error" and why in answer.error, answer
        assert answer.restate == (p.topics.capacity_limit_kw, "0")
    ok = p.handler.handle(p.topics.classify(topic), b"5.5")
    assert (ok.status, ok.value) == ("ok", 5.5)
    assert power.guard is not None and power.limit_kw == 5.5 and saved(p)["capacity_limit_kw"] == 5.5
    assert recorder.published[p.topics.capacity_limit_kw] == "5.5"
    off = p.handler.handle(p.topics.classify(topic), b"0")
    assert off.status == "ok" and power.guard is None and saved(p)["capacity_limit_kw"] == 0


def test_charge_mode_set_for_this_connector_only_and_saved(parts):
    p = connected(parts)
    with_power(p)
    cp = p.sim.chargepoint_id
    shown = p.topics.charge_mode(cp, 1)
    bad = p.handler.handle(p.topics.classify(p.topics.charge_mode_set(cp, 1)), b"solar")
    assert bad.status == "error" and "fast, pv, minpv or off" in bad.error and bad.restate == (shown, "fast")
    other = p.handler.handle(p.topics.classify(p.topics.charge_mode_set(cp, 2)), b"pv")
    assert other.status == "error" and "unknown charge point or connector" in other.error
    for payload in (b"PV", b'"pv"', b'{"value": "pv"}'):
        ok = p.handler.handle(p.topics.classify(p.topics.charge_mode_set(cp, 1)), payload)
        assert (ok.status, ok.value) == ("ok", "pv"), payload
    # One connector is a connector: its mode is its own.
    assert saved(p)["charge_modes"] == {f"{cp}:1": "pv"} and p.handler.runtime.charge_mode_of(f"{cp}:1") == "pv"


def test_a_listed_connector_takes_the_bridge_s_own_settings_before_the_cloud_answers(parts):
    """A connector named in the configuration is addressed while the bridge is still reaching the
    cloud (at start the account's first reads are queued): its charge mode is taken and saved;
    a command that needs the cloud says it has not been reached yet, not that it is unknown."""
    p = parts
    cp = p.sim.chargepoint_id
    p.link.listed, p.link.wanted_cp, p.link.view.cp_id = True, cp, cp  # as CHARGEAMPS_CONNECTORS gives it
    assert not p.link.ready
    with_power(p)
    ok = p.handler.handle(p.topics.classify(p.topics.charge_mode_set(cp, 1)), b"pv")
    assert (ok.status, ok.value) == ("ok", "pv") and saved(p)["charge_modes"] == {f"{cp}:1": "pv"}
    mode = p.command("charger_mode", "Off")
    assert mode.status == "error" and "has not been reached in the cloud yet" in mode.error, mode
    other = p.handler.handle(p.topics.classify(p.topics.charge_mode_set(cp, 2)), b"pv")
    assert other.status == "error" and "unknown charge point or connector" in other.error
    assert [r for r in p.sim.requests if r.method == "PUT"] == []


def test_off_mode_pauses_and_the_capacity_guard_caps_the_balancer(parts):
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    p = parts
    start = datetime(2027, 1, 12, 16, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    seconds = iter(range(10**6))
    power, recorder = with_power(p, wall=lambda: start + timedelta(seconds=next(seconds)))
    power.set_limit(5.0)
    for phase in range(3):
        p.balancer.meter(0.0, phase, 6.0)  # 4.1 kW of house
    p.balancer.charger(0.0, (0.0, 0.0, 0.0), (True, True, True))
    power.update(1.0)
    decision = p.balancer.decide(1.0)
    assert decision.charge_at == 0 and "capacity 5 kW" in decision.reason  # 0.9 kW left: under 6 A on 3 phases
    assert json.loads(recorder.published[p.topics.capacity_state])["limit_kw"] == 5.0
    power.set_limit(0)
    p.handler.runtime.charge_mode = "off"
    power.update(2.0)
    assert p.balancer.decide(2.0).charge_at == 0 and "charge mode off" in p.balancer.decide(2.0).reason
    p.handler.runtime.charge_mode = "fast"
    power.update(3.0)
    assert p.balancer.decide(3.0).charge_at > 0


def test_a_corrupt_capacity_file_is_reported_and_the_peaks_start_again(sim, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "capacity.json").write_text('{"month": "2027-01", "peaks": [{"start": "noon", "kw": 9}]}')
    p = build(sim, state, capacity_limit_kw=5)
    power, _ = with_power(p)
    assert power.guard is not None and power.guard.billed_peaks() == ()
    assert "capacity state" in power.last_error and "start again" in power.last_error
    assert "not a capacity state" in power.last_error and "noon" not in power.last_error


def test_charge_mode_and_capacity_limit_survive_a_restart_and_bad_stored_values_do_not(sim, tmp_path):
    p = connected(build(sim, tmp_path / "state"))
    with_power(p)
    cp = p.sim.chargepoint_id
    assert p.handler.handle(p.topics.classify(p.topics.charge_mode_set(cp, 1)), b"minpv").status == "ok"
    assert p.handler.handle(p.topics.classify(p.topics.command_topic("capacity_limit")), b"3.5").status == "ok"
    again = build(sim, tmp_path / "state")
    runtime = again.handler.runtime
    assert (runtime.charge_mode_of(f"{cp}:1"), runtime.capacity_limit_kw) == ("minpv", 3.5)
    data = json.loads(p.settings.runtime_file.read_text())
    data.update(charge_mode="turbo", charge_modes={f"{cp}:1": "turbo"}, capacity_limit_kw=-2)
    p.settings.runtime_file.write_text(json.dumps(data))
    fixed = build(sim, tmp_path / "state")
    runtime = fixed.handler.runtime
    assert (runtime.charge_mode, runtime.charge_mode_of(f"{cp}:1"), runtime.capacity_limit_kw) == ("fast", "fast", None)


def test_house_power_takes_the_best_input_the_meter_has():
    from bridge.service.meter_input import house_power

    # the whole house's power: what the grid sees, export nets out to no import
    h = house_power((5.0, 5.0, 5.0), 230.0, (1000.0, 1000.0, 1000.0), total_w=-500.0)
    assert (h.net_w, h.import_w, h.source) == (-500.0, 0.0, "P1_POWER_TOPIC")
    # each phase's signed power: solar on L3 nets against L1 and L2
    h = house_power((5.0, 5.0, -5.0), 230.0, (1150.0, 1150.0, -1150.0))
    assert (h.net_w, h.import_w, h.source) == (1150.0, 1150.0, "phase powers")
    # currents only: a phase's export counts as no import
    h = house_power((5.0, 5.0, -5.0), 230.0)
    assert (h.net_w, h.import_w, h.source) == (1150.0, 2300.0, "currents x P1_VOLTAGE")


def test_meter_input_gives_the_phase_powers_and_the_house_power_only_while_it_is_live(sim, tmp_path):
    from bridge.mqtt.client import Message
    from bridge.mqtt.meter import MeterSource
    from bridge.service.meter_input import MeterInput
    from bridge.service.publisher import StatePublisher

    p = build(sim, tmp_path / "state")
    # Shelly 3EM (Gen1): `emeter/<n>/current` unsigned amps, `emeter/<n>/power` signed W (its MQTT docs)
    dev = "shellies/shellyem3-c45bbe6b2a1f/emeter"
    meter = MeterSource.from_settings(topics=[f"{dev}/{n}/current" for n in range(3)],
                                      power_topics=[f"{dev}/{n}/power" for n in range(3)],
                                      total_power_topic="house/power")
    m = MeterInput(meter, p.balancer.shared, p.health, fuse_a=25, stale_after_s=5,
                   publisher=StatePublisher(Recorder(), p.topics), topics=p.topics)
    for n, (amps, watts) in enumerate((("4.1", "940.0"), ("4.0", "920.0"), ("5.0", "-1150.0"))):
        m.receive(Message(f"{dev}/{n}/current", amps.encode(), False), 0.0)
        m.receive(Message(f"{dev}/{n}/power", watts.encode(), False), 0.0)
    amps = p.balancer.observations().meter
    h = m.house_power(1.0, amps, 230.0)
    assert h.source == "phase powers" and h.net_w == pytest.approx(710.0)
    m.receive(Message("house/power", b"650", False), 2.0)
    assert m.house_power(7.0, amps, 230.0).net_w == 650.0  # 5 s old: live
    assert m.house_power(7.5, amps, 230.0).source == "phase powers"  # stale: the phases again
