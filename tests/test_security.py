"""Security: TLS and a password to the broker, hard limits no MQTT command can
cross, and secrets that never leave the process (logs, topics, errors, repr).

Everything runs against a real mosquitto (with TLS or a password file where the
test needs one) and the cloud simulator; the bridge runs as a subprocess where
its log is what is checked, in-process where its state is.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.config import load_settings
from bridge.eapi import AuthError, EapiClient, TokenStore
from bridge.eapi.tokens import TokenSet
from bridge.service import BridgeService
from bridge.sim.cloud import CloudSimulator
from tests.broker import MosquittoBroker, free_port
from tests.certs import make_ca, make_server_certs, openssl_available
from tests.e2e import BridgeProcess, Probe, bridge_env, wait_until

FAST = {
    "BALANCER_RAISE_HOLD_S": "1",
    "BALANCER_MIN_COMMAND_INTERVAL_S": "0",
}

MQTT_USER = "bridge"
MQTT_PASSWORD = "mqtt-Pw-" + uuid.uuid4().hex[:12]
CLOUD_PASSWORD = "cloud-Pw-" + uuid.uuid4().hex[:12]
CLOUD_API_KEY = "api-Key-" + uuid.uuid4().hex[:16]


# ---- helpers ---------------------------------------------------------------------


class AuthProbe(Probe):
    """`tests.e2e.Probe` that logs in to the broker."""

    def __init__(self, host: str, port: int, username: str, password: str, subscribe: str = "#") -> None:
        self.messages = []
        self.latest = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: (
            (c.subscribe(subscribe, qos=1), connected.set()) if not rc.is_failure else None)
        self.client.connect(host, port)
        self.client.loop_start()
        if not connected.wait(10):
            raise TimeoutError("probe could not connect")


class RecordingSimulator(CloudSimulator):
    """The simulator, remembering every token pair it hands out (the test scans for them)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.issued: list[str] = []

    def _issue_pair(self) -> tuple[str, str]:
        token, refresh = super()._issue_pair()
        self.issued += [token, refresh]
        return token, refresh


def password_broker(user: str = MQTT_USER, password: str = MQTT_PASSWORD) -> MosquittoBroker:
    b = MosquittoBroker(
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {dir}/passwd\npersistence false\n"
    )
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(b.dir / "passwd"), user, password],
                   check=True, capture_output=True, timeout=30)
    (b.dir / "passwd").chmod(0o644)  # mosquitto may run as another user after dropping root
    b.dir.chmod(0o755)
    return b.start()


def topic(env: dict, rest: str) -> str:
    return f"{env['MQTT_BASE_TOPIC']}/{rest}"


# ---- TLS to the broker -------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_broker():
    """mosquitto with a TLS listener (the bridge's) and a plain one on loopback (the probe's)."""
    if not openssl_available():
        pytest.skip("needs the openssl command line")
    # Not under pytest's 0700 tmp folder: mosquitto drops root and must read the files.
    cert_dir = Path(tempfile.mkdtemp(prefix="bridge-certs-"))
    certs = make_server_certs(cert_dir)
    plain_port = free_port()
    conf = (
        "per_listener_settings false\nallow_anonymous true\npersistence false\n"
        "listener {port} 127.0.0.1\n"
        f"cafile {certs.ca}\ncertfile {certs.cert}\nkeyfile {certs.key}\n"
        f"listener {plain_port} 127.0.0.1\n"
    )
    b = MosquittoBroker(conf).start()
    b.plain_port = plain_port
    b.certs = certs
    yield b
    b.close()
    shutil.rmtree(cert_dir, ignore_errors=True)


@pytest.fixture
def sim():
    with CloudSimulator() as s:
        yield s


def _run_bridge(tmp_path, broker, sim, **extra) -> tuple[BridgeProcess, dict]:
    env = bridge_env(broker, sim, tmp_path / "state", **{**FAST, **extra})
    return BridgeProcess(env, tmp_path).start(), env


@pytest.mark.slow
def test_tls_with_the_right_ca_comes_online(tls_broker, sim, tmp_path):
    probe = Probe(tls_broker.host, tls_broker.plain_port)
    bridge, env = _run_bridge(tmp_path, tls_broker, sim, MQTT_TLS="true", MQTT_CA_FILE=str(tls_broker.certs.ca))
    try:
        try:
            probe.wait_value(topic(env, "bridge/state"), "online", timeout=15)
        except AssertionError:
            raise AssertionError(f"bridge did not come online over TLS; its output:\n{bridge.output()}") from None
        # Its commands come over TLS too: a refresh is answered.
        probe.wait_value(topic(env, f"charger/{sim.chargepoint_id}/online"), "ON", timeout=15)
        t = time.monotonic()
        probe.publish(topic(env, "bridge/request/refresh"), "")
        answer = probe.wait_json(topic(env, "bridge/response"),
                                 lambda r: r["topic"] == topic(env, "bridge/request/refresh"), since=t)
        assert answer["status"] == "ok", answer
        assert bridge.terminate() == 0
    finally:
        bridge.close()
        probe.close()


@pytest.mark.slow
def test_tls_plain_broker_port_refused_when_tls_is_on(tls_broker, sim, tmp_path):
    """MQTT_TLS=true never falls back to plain text: against a plain listener it stays offline."""
    probe = Probe(tls_broker.host, tls_broker.plain_port)
    plain = SimpleNamespace(host=tls_broker.host, port=tls_broker.plain_port)
    bridge, env = _run_bridge(tmp_path, plain, sim, MQTT_TLS="true", MQTT_CA_FILE=str(tls_broker.certs.ca))
    try:
        with pytest.raises(AssertionError):
            probe.wait_value(topic(env, "bridge/state"), "online", timeout=4)
        assert bridge.alive()
    finally:
        bridge.close()
        probe.close()


@pytest.mark.slow
def test_tls_with_a_wrong_ca_does_not_connect_and_says_why(tls_broker, sim, tmp_path):
    other_ca, _ = make_ca(tmp_path / "other", "other-ca")
    probe = Probe(tls_broker.host, tls_broker.plain_port)
    bridge, env = _run_bridge(tmp_path, tls_broker, sim, MQTT_TLS="true", MQTT_CA_FILE=str(other_ca))
    try:
        with pytest.raises(AssertionError):
            probe.wait_value(topic(env, "bridge/state"), "online", timeout=5)
        assert bridge.alive(), bridge.output()
        out = bridge.output()
        # The user must learn from the log why the bridge is not connected.
        assert "certificate" in out.lower() and "verify" in out.lower(), (
            f"the log does not say that the broker's certificate failed verification:\n{out}")
        assert "Traceback" not in out
    finally:
        bridge.close()
        probe.close()


# ---- username and password to the broker ---------------------------------------------


@pytest.fixture(scope="module")
def auth_broker():
    b = password_broker()
    yield b
    b.close()


def test_anonymous_clients_are_refused_by_the_test_broker(auth_broker):
    # The premise of the next tests: the broker does enforce the password.
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"anon-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    result: list = []
    done = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p: (result.append(rc), done.set())
    c.connect(auth_broker.host, auth_broker.port)
    c.loop_start()
    try:
        assert done.wait(10)
        assert result[0].is_failure
    finally:
        c.loop_stop()
        c.disconnect()


@pytest.mark.slow
def test_username_password_comes_online(auth_broker, sim, tmp_path):
    probe = AuthProbe(auth_broker.host, auth_broker.port, MQTT_USER, MQTT_PASSWORD)
    bridge, env = _run_bridge(tmp_path, auth_broker, sim, MQTT_USERNAME=MQTT_USER, MQTT_PASSWORD=MQTT_PASSWORD)
    try:
        try:
            probe.wait_value(topic(env, "bridge/state"), "online", timeout=15)
        except AssertionError:
            raise AssertionError(f"bridge did not come online; its output:\n{bridge.output()}") from None
        assert bridge.terminate() == 0
        assert MQTT_PASSWORD not in bridge.output()
    finally:
        bridge.close()
        probe.close()


@pytest.mark.slow
def test_wrong_password_stays_offline_says_why_and_never_logs_the_password(auth_broker, sim, tmp_path):
    wrong = "wrong-Pw-" + uuid.uuid4().hex[:12]
    probe = AuthProbe(auth_broker.host, auth_broker.port, MQTT_USER, MQTT_PASSWORD)
    bridge, env = _run_bridge(tmp_path, auth_broker, sim, MQTT_USERNAME=MQTT_USER, MQTT_PASSWORD=wrong,
                              LOG_LEVEL="DEBUG")
    try:
        with pytest.raises(AssertionError):
            probe.wait_value(topic(env, "bridge/state"), "online", timeout=5)
        assert bridge.alive()
        out = bridge.output()
        assert wrong not in out and MQTT_PASSWORD not in out
        low = out.lower()
        assert "not authorized" in low or "bad user name or password" in low, out
    finally:
        bridge.close()
        probe.close()


# ---- hard limits ------------------------------------------------------------------


class Commander:
    """Sends commands with an MQTT v5 response topic and waits for the paired answer."""

    def __init__(self, probe: Probe, base: str) -> None:
        self.probe = probe
        self.base = base
        self.reply_to = f"{base}/bridge/response/sec-{uuid.uuid4().hex[:6]}"

    def send(self, rest: str, payload: str | bytes, timeout: float = 10) -> dict:
        corr = uuid.uuid4().bytes
        since = time.monotonic()
        t = f"{self.base}/{rest}"
        self.probe.publish(t, payload, response_topic=self.reply_to, correlation=corr)
        answer = self.probe.wait_json(self.reply_to, lambda r: r["topic"] == t, timeout=timeout, since=since)
        return answer


def _service_settings(broker, sim, state_dir: Path, **overrides):
    tag = uuid.uuid4().hex[:6]
    values = dict(
        chargeamps_email=sim.email, chargeamps_password=sim.password, chargeamps_api_key=sim.api_key,
        chargeamps_base_url=sim.url, chargeamps_state_dir=state_dir, chargeamps_poll_interval=10,
        mqtt_host=broker.host, mqtt_port=broker.port, mqtt_client_id=f"sec-{tag}", mqtt_base_topic=f"sec-{tag}",
        mqtt_username=None, mqtt_password=None, mqtt_tls=False,
        p1_topic_l1=f"p1-{tag}/l1", p1_topic_l2=f"p1-{tag}/l2", p1_topic_l3=f"p1-{tag}/l3",
        balancer_default_current=10, balancer_fuse_a=25, balancer_max_a=24,
        balancer_raise_hold_s=1, balancer_min_command_interval_s=0, ha_discovery=False,
    )
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def limits_service(broker, tmp_path):
    """In-process service: installation current 13 A, default current 10 A, fuse 25 A."""
    with CloudSimulator(installation_current=13) as sim:
        s = _service_settings(broker, sim, tmp_path / "state")
        svc = BridgeService(s)
        probe = Probe(broker.host, broker.port, subscribe=f"{s.mqtt_base_topic}/#")
        svc.start()
        try:
            probe.wait_value(f"{s.mqtt_base_topic}/charger/{sim.chargepoint_id}/online", "ON", timeout=15)
            yield svc, sim, probe, Commander(probe, s.mqtt_base_topic)
        finally:
            svc.stop()
            probe.close()


def _max_a_values(probe: Probe, base: str) -> list[float]:
    return [float(p) for _, t, p, _ in list(probe.messages) if t == f"{base}/balancer/max_a"]


@pytest.mark.slow
def test_max_a_never_above_the_fuse(limits_service):
    svc, sim, probe, cmd = limits_service
    base = svc.topics.base
    for payload in ("25.001", "26", "1e9", "inf", "-inf", "nan", "NaN", "1e309", '{"value": 30}', '{"value": "26"}',
                    '{"value": 1e400}', "25.0000001", "250", "9" * 5000, '"26"', "[26]"):
        answer = cmd.send("balancer/max_a/set", payload)
        assert answer["status"] == "error", (payload, answer)
        assert svc.runtime.max_a <= 25
    assert cmd.send("balancer/max_a/set", "25")["status"] == "ok"
    refused_at = time.monotonic()
    assert cmd.send("balancer/max_a/set", "5.9")["status"] == "error"
    # The refusal's snap-back comes last: every MaxA the bridge published is in by then.
    probe.wait_value(f"{base}/balancer/max_a", "25", since=refused_at)
    values = _max_a_values(probe, base)
    assert values and max(values) <= 25 and min(values) >= 6
    assert json.loads(probe.latest[f"{base}/balancer/state"])["max_a"] <= 25


def test_default_current_never_above_the_installation_current(limits_service):
    svc, sim, probe, cmd = limits_service
    for payload in ("14", "16", "32", "33", "13.5", '{"value": 14}', "1e3", "inf"):
        answer = cmd.send("balancer/default_current/set", payload)
        assert answer["status"] == "error", (payload, answer)
        assert svc.runtime.default_current == 10
    assert cmd.send("balancer/default_current/set", "13")["value"] == 13
    assert svc.runtime.default_current == 13


@pytest.mark.slow
def test_direct_current_never_above_the_default_or_installation_current(limits_service):
    svc, sim, probe, cmd = limits_service
    cp = sim.chargepoint_id
    rest = f"charger/{cp}/1/max_current/set"
    # Enabled: the balancer owns the charger, direct writes are refused outright.
    assert cmd.send(rest, "8")["status"] == "error"
    assert cmd.send("balancer/enabled/set", "OFF")["status"] == "ok"
    writes_before = len(sim.writes)
    for payload in ("11", "13", "16", "32", "5", "1", "-6", "10.5", "nan", "inf", '{"value": 11}'):
        answer = cmd.send(rest, payload)
        assert answer["status"] == "error", (payload, answer)
    assert len(sim.writes) == writes_before, sim.writes[writes_before:]
    assert cmd.send(rest, "10")["value"] == 10
    assert sim.connector(1).max_current == 10
    # Raising the default current lifts the direct limit, but only to the installation current.
    assert cmd.send("balancer/default_current/set", "13")["status"] == "ok"
    assert cmd.send(rest, "14")["status"] == "error"
    assert cmd.send(rest, "13")["value"] == 13
    assert sim.connector(1).max_current == 13
    assert all(v == 0 or 6 <= v <= 13 for _, _, _, f, v in sim.writes if f == "maxCurrent"), sim.writes


def test_balancer_never_asks_more_than_the_installation_current(broker, tmp_path):
    """BALANCER_DEFAULT_CURRENT 16 A on a charger installed for 13 A: the balancer gives the
    car 13 A on a quiet house, and never asks the cloud for more."""
    with CloudSimulator(installation_current=13) as sim:
        sim.connector(1).car_plugged = True
        s = _service_settings(broker, sim, tmp_path / "state", balancer_default_current=16,
                              balancer_strategy="homey")
        svc = BridgeService(s)
        probe = Probe(broker.host, broker.port, subscribe=f"{s.mqtt_base_topic}/#")
        svc.start()
        try:
            conn = sim.connector(1)
            def quiet_house_at_13_a() -> bool:
                for i in (1, 2, 3):
                    probe.publish(getattr(s, f"p1_topic_l{i}"), "3")
                return conn.max_current == 13

            try:
                wait_until(quiet_house_at_13_a, 10, "the charger at 13 A", step=0.2)
            except AssertionError:
                pass  # the assertions below say what the charger got instead
            attempted = [r.body.get("maxCurrent") for r in sim.requests
                         if r.method == "PUT" and isinstance(r.body, dict) and r.body.get("maxCurrent") is not None]
            assert all(v == 0 or 6 <= v <= 13 for v in attempted), attempted
            assert conn.max_current == 13, (
                f"charger at {conn.max_current} A; health: {probe.latest.get(s.mqtt_base_topic + '/bridge/health')!r}")
            assert svc._worker.is_alive()
            assert not (svc.health.last_error or "").startswith("internal error"), svc.health.last_error
        finally:
            svc.stop()
            probe.close()


# ---- secrets ------------------------------------------------------------------------


def _scan(haystack: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value and value in haystack]


@pytest.mark.slow
def test_secrets_never_in_logs_topics_state_or_errors(tmp_path):
    broker = password_broker()
    with RecordingSimulator(token_ttl_s=3, password=CLOUD_PASSWORD, api_key=CLOUD_API_KEY) as sim:
        sim.connector(1).car_plugged = True
        probe = AuthProbe(broker.host, broker.port, MQTT_USER, MQTT_PASSWORD)
        state = tmp_path / "state"
        env = bridge_env(broker, sim, state, MQTT_USERNAME=MQTT_USER, MQTT_PASSWORD=MQTT_PASSWORD,
                         LOG_LEVEL="DEBUG", **FAST)
        bridge = BridgeProcess(env, tmp_path).start()
        cmd = Commander(probe, env["MQTT_BASE_TOPIC"])
        try:
            probe.wait_value(topic(env, "bridge/state"), "online", timeout=15)
            probe.wait_value(topic(env, f"charger/{sim.chargepoint_id}/online"), "ON", timeout=15)
            for i in (1, 2, 3):
                probe.publish(env[f"P1_TOPIC_L{i}"], "4")
            # Commands, good and bad, and garbage on the meter; a secret pasted where a reading goes.
            cmd.send("balancer/max_a/set", "20")
            cmd.send("balancer/max_a/set", "26")
            cmd.send("balancer/enabled/set", b"\xff\xfe garbage")
            cmd.send(f"charger/{sim.chargepoint_id}/1/mode/set", "sideways")
            cmd.send(f"charger/{sim.chargepoint_id}/1/max_current/set", "8")
            probe.publish(env["P1_TOPIC_L1"], CLOUD_API_KEY)
            probe.publish(env["P1_TOPIC_L2"], f'{{"value": "{MQTT_PASSWORD}"}}')
            probe.publish(env["P1_TOPIC_L3"], b"\x00" * 100)
            # A cloud error (500 after the client's retries) ...
            sim.fail_next(3, status=500)
            assert cmd.send("bridge/request/refresh", "")["status"] == "error"
            # ... a 401 (the tokens were expired by the server: refresh and retry) ...
            sim.expire_tokens()
            assert cmd.send("bridge/request/refresh", "")["status"] == "ok"
            assert sim.refreshes >= 1
            # ... and a token that aged out by its own exp claim (refreshed before the call).
            time.sleep(sim.token_ttl_s + 0.2)
            assert cmd.send("bridge/request/refresh", "")["status"] == "ok"
            assert sim.refreshes >= 2, (sim.logins, sim.refreshes)
            for i in (1, 2, 3):
                probe.publish(env[f"P1_TOPIC_L{i}"], "5")
            tokens_file = state / "tokens.json"
            stored = json.loads(tokens_file.read_text())
            assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
            # Credentials revoked: refresh refused and login 401 (auth_failed).
            sim.revoke_credentials()
            sim.expire_tokens()
            cmd.send("bridge/request/refresh", "")
            probe.wait_json(topic(env, "bridge/health"), lambda h: h["cloud"] == "auth_failed", timeout=15)
            assert bridge.terminate() == 0
        finally:
            bridge.close()
            probe.close()
            broker.close()

        secrets = {
            "cloud password": CLOUD_PASSWORD,
            "API key": CLOUD_API_KEY,
            "MQTT password": MQTT_PASSWORD,
            "stored access token": stored["token"],
            "stored refresh token": stored["refresh_token"],
        }
        for n, value in enumerate(sim.issued):
            secrets[f"issued token #{n}"] = value
        # The signature part of a JWT alone is secret enough to look for.
        secrets.update({f"issued token #{n} signature": v.rsplit(".", 1)[-1]
                        for n, v in enumerate(sim.issued) if v.count(".") == 2})
        assert sim.logins >= 1 and sim.refreshes >= 2 and len(sim.issued) >= 6

        out = bridge.output()
        assert "DEBUG" in out  # the run did log at DEBUG
        assert not _scan(out, secrets), f"secrets in the log: {_scan(out, secrets)}"
        # The pasted secrets were masked in the log lines about the refused readings.
        assert out.count("***") >= 2, "the log does not show the refused readings (masked)"
        assert "Traceback" not in out
        seen = "\n".join(f"{t}\n{p.decode('utf-8', 'replace')}" for _, t, p, _ in probe.messages
                         if not t.startswith(("p1-",)) and "/set" not in t and "request/refresh" not in t)
        assert not _scan(seen, secrets), f"secrets published on MQTT: {_scan(seen, secrets)}"
        health = json.loads(probe.latest[topic(env, "bridge/health")])
        assert health["last_error"]
        for f in state.rglob("*"):
            if f.is_file() and f != tokens_file:
                assert not _scan(f.read_text(errors="replace"), secrets), f
        for f in state.rglob("*"):
            if f.is_file() and f.name.startswith(".tokens"):
                raise AssertionError(f"a temporary token file was left behind: {f}")


def test_repr_and_errors_carry_no_secret(tmp_path):
    with CloudSimulator(password=CLOUD_PASSWORD, api_key=CLOUD_API_KEY) as sim:
        s = load_settings(chargeamps_email=sim.email, chargeamps_password=CLOUD_PASSWORD,
                          chargeamps_api_key=CLOUD_API_KEY, chargeamps_base_url=sim.url,
                          chargeamps_state_dir=tmp_path, mqtt_password=MQTT_PASSWORD, mqtt_username="u")
        store = TokenStore(s.token_file)
        client = EapiClient(sim.url, sim.email, s.chargeamps_password, s.chargeamps_api_key, token_store=store)
        client.login()
        tokens = store.load(sim.url, sim.email)
        assert tokens is not None
        assert stat.S_IMODE(s.token_file.stat().st_mode) == 0o600
        secrets = {"password": CLOUD_PASSWORD, "api key": CLOUD_API_KEY, "mqtt password": MQTT_PASSWORD,
                   "token": tokens.token, "refresh token": tokens.refresh_token}
        for obj in (s, client, store, tokens, TokenSet(tokens.token, tokens.refresh_token, sim.url, sim.email)):
            for text in (repr(obj), str(obj)):
                assert not _scan(text, secrets), (type(obj).__name__, _scan(text, secrets))
        assert not _scan(repr(s.model_dump()), secrets)
        assert not _scan(s.model_dump_json(), secrets)

        # An error from bad credentials names no secret either.
        bad = EapiClient(sim.url, sim.email, "wrong-" + CLOUD_PASSWORD, CLOUD_API_KEY)
        with pytest.raises(AuthError) as e:
            bad.login()
        text = f"{e.value!s} {e.value!r} {e.value.args!r}"
        assert not _scan(text, {**secrets, "wrong password": "wrong-" + CLOUD_PASSWORD}), text
        sim.revoke_credentials()
        client2 = EapiClient(sim.url, sim.email, CLOUD_PASSWORD, CLOUD_API_KEY, token_store=TokenStore(tmp_path / "t2.json"))
        with pytest.raises(AuthError) as e2:
            client2.owned_chargepoints()
        assert not _scan(f"{e2.value!s} {e2.value!r}", secrets)


def test_invalid_config_error_names_no_secret():
    from bridge.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load_settings(chargeamps_password=CLOUD_PASSWORD, chargeamps_api_key=CLOUD_API_KEY,
                      mqtt_password=MQTT_PASSWORD, mqtt_port="not-a-port", balancer_max_a=30)
    assert not _scan(str(e.value), {"a": CLOUD_PASSWORD, "b": CLOUD_API_KEY, "c": MQTT_PASSWORD}), str(e.value)


def test_state_dir_and_token_file_permissions(tmp_path):
    store = TokenStore(tmp_path / "deep" / "tokens.json")
    old = os.umask(0)
    try:
        store.save(TokenSet("a.b.c", "refresh-xyz", "http://x", "e@x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert not stat.S_IMODE(store.path.parent.stat().st_mode) & 0o077
