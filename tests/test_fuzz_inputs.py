"""Bad input, fuzzed: hypothesis over every input topic and every command topic.

Pure properties of the parsers first; then one real service (in-process, real
mosquitto, real cloud simulator) for the whole module, fed generated payloads:
it never dies, answers every command exactly once, never writes a current
outside its limits, and never lets MaxA above the fuse.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config import load_settings
from bridge.mqtt.meter import MeterSource
from bridge.mqtt.payloads import PayloadError, parse_bool, parse_mode, parse_number
from bridge.service import BridgeService, CommandBudget
from bridge.sim.cloud import CloudSimulator
from tests.e2e import Probe

# The whole module: its live bridge checks at the end what all its tests sent (garbage meter
# payloads counted, every command answered once), so its tests run together or not at all.
pytestmark = pytest.mark.slow

FUSE_A = 25
DEFAULT_CURRENT = 10
INSTALLATION_CURRENT = 16

# ---- payload strategies ---------------------------------------------------------------

_FLOAT_TEXT = st.floats(allow_nan=True, allow_infinity=True).flatmap(
    lambda x: st.sampled_from([repr(x), str(x), f"{x:e}" if math.isfinite(x) else str(x), json.dumps(x)]))
_ODD_WORDS = st.sampled_from([
    "", " ", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity", "1e309", "-1e309", "-0", "+0", "-0.0",
    "0x10", "1_6", "16A", "16 A", "１６", "١٦", "\u200b16", "\ufeff16", "16\x00", "\x00", "1e-400", ".5", "5.",
    "ON", "off", "TRUE", "0", "1", "2", "On", "Off", "Schedule", "schedule ", "null", "true", "[]", "{}", '""',
    '"16"', '"ON"', '"On"', "[16]", '{"value": null}', '{"value": true}', '{"value": "16"}', '{"value": "nan"}',
    '{"value": NaN}', '{"value": Infinity}', '{"value": 1e400}', '{"value": -0.0}', '{"value": [16]}',
    '{"value": {"value": 16}}', '{"Value": 16}', '{"value": 16, "value": "x"}', '{"value": "On"}',
    '{"value": 1}', '{"value": 0.5}', "9" * 5000, "1" + "0" * 400, "-" + "9" * 400,
])
_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.integers(0, 40).map(str),
)
_JSON_VALUES = st.recursive(_JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
_WRAPPED = _JSON_VALUES.map(lambda v: json.dumps({"value": v}))          # json.dumps writes NaN/Infinity
_DEEP = st.integers(1, 10_000).flatmap(lambda n: st.sampled_from([
    "[" * n + "16" + "]" * n,
    "[" * n,
    '{"value": ' * n + "16" + "}" * n,
    '{"value": ' * n,
    '{"SML": ' * n + "1" + "}" * n,
]))
_HUGE = st.tuples(st.binary(min_size=1, max_size=16), st.integers(1, 256 * 1024)).map(
    lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]])
_HUGE_TEXT = st.sampled_from(["16", " ", "{", "[", "9", '{"value": 16}']).flatmap(
    lambda s: st.integers(4000, 256 * 1024).map(lambda n: (s * (n // len(s) + 1))[:n].encode()))
_NUMBERS = st.one_of(st.integers(-(10**6), 10**6).map(str),
                     st.floats(-1e6, 1e6).map(lambda x: f"{x:.6g}"),
                     st.integers(0, 40).map(str), st.integers(0, 40).map(lambda n: json.dumps({"value": n})))

PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
    _FLOAT_TEXT.map(str.encode),
    _ODD_WORDS.map(str.encode),
    _WRAPPED.map(str.encode),
    _JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    _DEEP.map(str.encode),
    _HUGE,
    _HUGE_TEXT,
    _NUMBERS.map(str.encode),
)
TEXT_PAYLOADS = st.one_of(PAYLOADS.map(lambda b: b.decode("utf-8", "replace")), st.text(max_size=200))

PURE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])


# ---- pure parsers ---------------------------------------------------------------------


def _only_payload_error(fn, payload):
    try:
        return fn(payload)
    except PayloadError as e:
        assert str(e), "a PayloadError must say what was expected"
        assert len(str(e)) < 400, f"error message too long ({len(str(e))} chars)"
        return None


@PURE
@given(st.one_of(PAYLOADS, TEXT_PAYLOADS))
def test_parse_number_raises_only_payload_error_and_returns_finite(payload):
    value = _only_payload_error(parse_number, payload)
    if value is not None:
        assert isinstance(value, float) and math.isfinite(value)


@PURE
@given(st.one_of(PAYLOADS, TEXT_PAYLOADS))
def test_parse_bool_raises_only_payload_error(payload):
    value = _only_payload_error(parse_bool, payload)
    assert value is None or value is True or value is False


@PURE
@given(st.one_of(PAYLOADS, TEXT_PAYLOADS))
def test_parse_mode_raises_only_payload_error(payload):
    value = _only_payload_error(parse_mode, payload)
    assert value in (None, "On", "Off", "Schedule")


@PURE
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_parse_number_reads_every_finite_float_back(x):
    assert parse_number(repr(x)) == x
    assert parse_number(json.dumps({"value": x})) == x


_SOURCES = [
    MeterSource(),
    MeterSource(topics=("m/sensor",) * 3, paths=("SML.current_l1", "SML.current_l2", "SML.current_l3")),
    MeterSource(topics=("m/a", "m/b", "m/c"), paths=("current_l1[0].value", None, "x"), unit="W"),
    MeterSource(topics=("m/a", "m/b", "m/c"), unit="kW"),
]


@PURE
@given(st.sampled_from(_SOURCES), st.one_of(PAYLOADS, TEXT_PAYLOADS,
                                            _JSON_VALUES.map(lambda v: json.dumps({"SML": {"current_l1": v,
                                                                                           "current_l2": 1,
                                                                                           "current_l3": v}}))))
def test_meter_parse_raises_only_payload_error_and_readings_are_finite(source, payload):
    for topic in dict.fromkeys(source.topics):
        readings = _only_payload_error(lambda p: source.parse(topic, p), payload)
        for reading in readings or []:
            assert reading.phase in (0, 1, 2) and topic == reading.input.topic == source.topics[reading.phase]
            assert isinstance(reading.value, float) and math.isfinite(reading.value)


# ---- one live service for the module ----------------------------------------------------


class ErrorRecorder(logging.Handler):
    """Every record logged with a traceback: a handler that blew up inside the worker."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


class Live:
    def __init__(self, svc: BridgeService, sim: CloudSimulator, probe: Probe) -> None:
        self.svc, self.sim, self.probe = svc, sim, probe
        self.base = svc.topics.base
        self.reply_to = f"{self.base}/bridge/response/fuzz-{uuid.uuid4().hex[:6]}"
        self.sent: dict[bytes, str] = {}          # correlation -> command topic
        self.sent_per_topic: dict[str, int] = {}
        self.default_currents = {DEFAULT_CURRENT}  # every default current that was in effect
        self.answers: list[tuple[str, str]] = []

    def meter_topics(self) -> list[str]:
        s = self.svc.settings
        return [s.p1_topic_l1, s.p1_topic_l2, s.p1_topic_l3]

    def command_topics(self) -> list[str]:
        cp, b = self.sim.chargepoint_id, self.base
        return [f"{b}/balancer/max_a/set", f"{b}/balancer/default_current/set", f"{b}/balancer/enabled/set",
                f"{b}/charger/{cp}/1/max_current/set", f"{b}/charger/{cp}/1/mode/set",
                f"{b}/charger/{cp}/reboot/set", f"{b}/bridge/request/refresh",
                # addressed to a charger or connector this bridge does not drive
                f"{b}/charger/other-cp/1/max_current/set", f"{b}/charger/{cp}/2/mode/set"]

    def command(self, topic: str, payload: bytes, timeout: float = 15) -> dict:
        corr = uuid.uuid4().bytes
        self.sent[corr] = topic
        self.sent_per_topic[topic] = self.sent_per_topic.get(topic, 0) + 1
        self.probe.publish(topic, payload, response_topic=self.reply_to, correlation=corr)
        raw = self.probe_wait_correlated(corr, timeout)
        answer = json.loads(raw)
        assert answer["topic"] == topic, answer
        assert answer["status"] in ("ok", "error"), answer
        assert (answer["error"] is None) == (answer["status"] == "ok"), answer
        self.answers.append((topic, answer["status"]))
        if answer["status"] == "ok" and topic.endswith("/default_current/set"):
            self.default_currents.add(answer["value"])
        return answer

    def probe_wait_correlated(self, corr: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        with self.probe.cond:
            while True:
                for t, c, payload in self.probe.correlated:
                    if c == corr and t == self.reply_to:
                        return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no answer with this correlation data within {timeout}s "
                                         f"(worker alive: {self.svc._worker.is_alive()})")
                self.probe.cond.wait(remaining)

    def check_invariants(self) -> None:
        svc, sim = self.svc, self.sim
        assert svc._worker.is_alive(), "the worker thread died"
        assert svc.runtime.max_a <= FUSE_A
        limit = min(max(self.default_currents), INSTALLATION_CURRENT)
        with sim.lock:
            writes = [v for _, _, _, f, v in sim.writes if f == "maxCurrent"]
            attempted = [r.body.get("maxCurrent") for r in sim.requests
                         if r.method == "PUT" and isinstance(r.body, dict) and r.body.get("maxCurrent") is not None]
        bad = [v for v in writes + attempted if not (v == 0 or 6 <= v <= limit)]
        assert not bad, f"currents outside 0 or 6..{limit} A sent to the cloud: {bad}"
        max_a = [float(p) for _, t, p, _ in list(self.probe.messages) if t == f"{self.base}/balancer/max_a"]
        assert all(6 <= v <= FUSE_A for v in max_a), max_a
        internal = [r for r in self.errors.records]
        assert not internal, "the worker caught exceptions: " + "; ".join(
            f"{r.getMessage()}: {r.exc_info[1]!r}" for r in internal[:3])


class CorrelatingProbe(Probe):
    """Probe that also keeps (correlation data, payload) of every message that carries one."""

    def __init__(self, host: str, port: int, subscribe: str = "#") -> None:
        self.correlated: list[tuple[str, bytes, bytes]] = []
        super().__init__(host, port, subscribe)
        self.cond = self._cond

    def _on_message(self, client, userdata, msg) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props else None
        with self._cond:
            if corr is not None:
                self.correlated.append((msg.topic, bytes(corr), bytes(msg.payload)))
        super()._on_message(client, userdata, msg)


@pytest.fixture(scope="module")
def live(broker, tmp_path_factory):
    with CloudSimulator(installation_current=INSTALLATION_CURRENT) as sim:
        sim.connector(1).car_plugged = True
        tag = uuid.uuid4().hex[:6]
        s = load_settings(
            chargeamps_email=sim.email, chargeamps_password=sim.password, chargeamps_api_key=sim.api_key,
            chargeamps_base_url=sim.url, chargeamps_state_dir=tmp_path_factory.mktemp("fuzz-state"),
            chargeamps_poll_interval=10, mqtt_host=broker.host, mqtt_port=broker.port,
            mqtt_username=None, mqtt_password=None, mqtt_tls=False,
            mqtt_client_id=f"fuzz-{tag}", mqtt_base_topic=f"fuzz-{tag}",
            # L1 and L2 plain numbers, L3 from a JSON document by path
            p1_topic_l1=f"p1-{tag}/current_l1", p1_topic_l2=f"p1-{tag}/current_l2",
            p1_topic_l3=f"p1-{tag}/sensor", p1_json_path_l3="SML.current_l3[0].value",
            balancer_fuse_a=FUSE_A, balancer_max_a=24, balancer_default_current=DEFAULT_CURRENT,
            balancer_raise_hold_s=0, balancer_min_command_interval_s=0, balancer_stale_after_s=2,
            balancer_strategy="homey", ha_discovery=True,
        )
        errors = ErrorRecorder()
        logging.getLogger().addHandler(errors)
        # The fuzz drives the direct charger commands far faster than the command budget
        # allows a user (tests/test_service_e2e.py pins that budget); here it would only
        # turn the paths under test into refusals.
        svc = BridgeService(s, command_budget=CommandBudget(burst=1e9, per_minute=1e9, tokens=1e9))
        # The service's base topic only: a probe of `#` would share this process's time with the
        # service while it reads every retained message earlier tests left on the shared broker.
        probe = CorrelatingProbe(broker.host, broker.port, subscribe=f"{s.mqtt_base_topic}/#")
        svc.start()
        live = Live(svc, sim, probe)
        live.errors = errors
        try:
            probe.wait_value(f"{s.mqtt_base_topic}/charger/{sim.chargepoint_id}/online", "ON", timeout=15)
            yield live
            # The end of the module: still alive, still answering, every command answered once.
            answer = live.command(f"{live.base}/bridge/request/refresh", b"")
            assert answer["status"] == "ok", answer
            # Answers go out in order: every earlier command's answer is in before this one.
            general = {}
            for _, t, p, _ in list(probe.messages):
                if t == f"{live.base}/bridge/response":
                    topic = json.loads(p)["topic"]
                    general[topic] = general.get(topic, 0) + 1
            assert general == live.sent_per_topic, (general, live.sent_per_topic)
            counts: dict[bytes, int] = {}
            for t, c, _ in probe.correlated:
                if t == live.reply_to:
                    counts[c] = counts.get(c, 0) + 1
            assert counts == {c: 1 for c in live.sent}, "a command was answered more than once or never"
            live.check_invariants()
            # The fuzzing reached the paths that matter (else the limit checks above prove nothing).
            ok = {t.rsplit("/", 2)[-2] for t, status in live.answers if status == "ok"}
            assert {"max_a", "default_current", "enabled", "max_current", "mode"} <= ok, ok
            assert len([w for w in sim.writes if w[3] == "maxCurrent"]) >= 3, sim.writes
            assert svc.health.invalid_meter_payloads > 0 and svc.health.commands_refused > 0
        finally:
            svc.stop()
            probe.close()
            logging.getLogger().removeHandler(errors)


LIVE = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@LIVE
@given(data=st.data())
def test_meter_topics_survive_any_payload(live, data):
    for _ in range(3):
        topic = data.draw(st.sampled_from(live.meter_topics()), label="topic")
        payload = data.draw(st.one_of(PAYLOADS, _JSON_VALUES.map(
            lambda v: json.dumps({"SML": {"current_l3": [{"value": v}]}}).encode())), label="payload")
        live.probe.publish(topic, payload)
    # A command after the readings: the worker handled them (it answers in order).
    live.command(f"{live.base}/balancer/enabled/set", b"ON")
    live.check_invariants()


@LIVE
@given(data=st.data())
def test_command_topics_answer_every_payload_once(live, data):
    topic = data.draw(st.sampled_from(live.command_topics()), label="topic")
    payload = data.draw(st.one_of(PAYLOADS, _NUMBERS.map(str.encode)), label="payload")
    answer = live.command(topic, payload)
    if topic.endswith("/balancer/max_a/set") and answer["status"] == "ok":
        assert 6 <= answer["value"] <= FUSE_A
    if "other-cp" in topic or "/2/mode/set" in topic:
        assert answer["status"] == "error", answer
    live.check_invariants()


# mosquitto disconnects a client that names a topic with control characters or non-characters.
_TOPIC_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="+#\x00"),
                      min_size=1, max_size=60)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(suffix=_TOPIC_TEXT, corr=st.one_of(st.binary(max_size=64), st.binary(min_size=1000, max_size=4000)),
       payload=st.sampled_from([b"20", b"99", b"x", b"ON"]))
def test_odd_response_topics_and_correlation_data(live, suffix, corr, payload):
    """Any (valid) response topic and correlation data: the answer goes there, paired, and on the
    general response topic; nothing breaks the worker."""
    topic = f"{live.base}/balancer/max_a/set" if payload in (b"20", b"99") else f"{live.base}/balancer/enabled/set"
    reply_to = f"{live.base}/bridge/response/{suffix}"
    live.sent_per_topic[topic] = live.sent_per_topic.get(topic, 0) + 1
    since = time.monotonic()
    with live.probe.cond:
        # Only answers to this command: an earlier example may have used the same topic and data.
        first = len(live.probe.correlated)
    live.probe.publish(topic, payload, response_topic=reply_to, correlation=corr)
    general = live.probe.wait_json(f"{live.base}/bridge/response", lambda r: r["topic"] == topic, since=since)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with live.probe.cond:
            paired = [p for t, c, p in live.probe.correlated[first:] if t == reply_to and c == corr]
        if paired:
            break
        time.sleep(0.01)
    assert paired and json.loads(paired[-1]) == general
    live.check_invariants()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_meter_and_commands_interleaved_keep_the_limits(live, data):
    """Realistic readings (that drive writes) mixed with limit commands and garbage."""
    b, cp = live.base, live.sim.chargepoint_id
    for _ in range(data.draw(st.integers(1, 6), label="steps")):
        kind = data.draw(st.sampled_from(["meter", "meter", "command", "garbage"]), label="kind")
        if kind == "meter":
            amps = [data.draw(st.floats(-5, 40, allow_nan=False), label="amps") for _ in range(3)]
            s = live.svc.settings
            live.probe.publish(s.p1_topic_l1, f"{amps[0]:.2f}")
            live.probe.publish(s.p1_topic_l2, f"{amps[1]:.2f}")
            live.probe.publish(s.p1_topic_l3, json.dumps({"SML": {"current_l3": [{"value": f"{amps[2]:.2f}"}]}}))
        elif kind == "command":
            topic = data.draw(st.sampled_from([f"{b}/balancer/max_a/set", f"{b}/balancer/default_current/set",
                                               f"{b}/balancer/enabled/set", f"{b}/charger/{cp}/1/max_current/set"]))
            value = data.draw(st.one_of(st.integers(-5, 40).map(str), st.sampled_from(["ON", "OFF", "25.5", "nan"])))
            live.command(topic, value.encode())
        else:
            topic = data.draw(st.sampled_from(live.meter_topics() + live.command_topics()))
            payload = data.draw(PAYLOADS)
            if topic in live.meter_topics():
                live.probe.publish(topic, payload)
            else:
                live.command(topic, payload)
    live.command(f"{b}/balancer/enabled/set", b"ON")
    live.check_invariants()


def test_directed_charger_commands_within_limits(live):
    """The direct charger paths, driven on purpose (random payloads seldom are valid ones)."""
    b, cp = live.base, live.sim.chargepoint_id
    rest = f"{b}/charger/{cp}/1"
    # A valid MaxA and default current on purpose too: random payloads reach them only by chance.
    assert live.command(f"{b}/balancer/max_a/set", b"24")["status"] == "ok"
    assert live.command(f"{b}/balancer/default_current/set", str(DEFAULT_CURRENT).encode())["status"] == "ok"
    assert live.command(f"{b}/balancer/enabled/set", b"OFF")["status"] == "ok"
    default = live.svc.runtime.default_current
    for payload in (str(default + 1), "5", "32", "nan", "-0", "1e309", json.dumps({"value": default + 0.5})):
        answer = live.command(f"{rest}/max_current/set", payload.encode())
        assert answer["status"] == "error" or (payload == "-0" and answer["value"] == 0), (payload, answer)
    assert live.command(f"{rest}/max_current/set", str(default).encode())["value"] == default
    assert live.sim.connector(1).max_current == default
    assert live.command(f"{rest}/max_current/set", b'{"value": 6}')["value"] == 6
    # Off during the car's session reaches a CAPI charger; OCPP refuses it (test_ocpp_firmware.py).
    cp = live.sim.charge_points[live.sim.chargepoint_id]
    cp.firmware = "capi"
    try:
        for mode in (b"schedule", b'{"value": "Off"}', b' "On" '):
            assert live.command(f"{rest}/mode/set", mode)["status"] == "ok"
    finally:
        cp.firmware = "ocpp"
    assert live.sim.connector(1).mode == "On"
    assert live.command(f"{b}/balancer/enabled/set", b"ON")["status"] == "ok"
    live.check_invariants()
