"""The central system under faults: a charger that goes, one that never answers, bad frames,
wrong credentials, many chargers at once. Real WebSockets on loopback, nothing mocked."""

from __future__ import annotations

import json
import logging
import ssl
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bridge.ocpp import events as ev
from bridge.ocpp.identity import basic_header
from tests.certs import make_server_certs, openssl_available
from tests.ocpp_helpers import Fleet, sim_for, start_central, url_of, wait_until


@pytest.fixture
def central():
    started = []

    def start(identities=("CP1",), **kw):
        c, events = start_central(identities, **kw)
        started.append(c)
        return c, events

    yield start
    for c in started:
        c.stop()


class RawCharger:
    """A charger written by hand, for the frames no well-behaved charger sends."""

    def __init__(self, url: str, headers: dict | None = None, ssl_context=None) -> None:
        self.ws = connect(url, subprotocols=["ocpp1.6"], additional_headers=headers, ssl=ssl_context,
                          open_timeout=5).__enter__()
        self.calls_received: list[list] = []

    def send(self, frame: str) -> None:
        self.ws.send(frame)

    def answer_for(self, unique_id: str, timeout: float = 5) -> list:
        """The central system's answer to our call `unique_id`; its own calls on the way are kept
        (and answered with an empty CallResult, as a charger acknowledging them would)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if frame[0] == 2:
                self.calls_received.append(frame)
                self.ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
            elif frame[1] == unique_id:
                return frame

    def close(self) -> None:
        self.ws.close()


# Frames as OCPP-J 1.6 section 4 frames them: [2, id, action, payload] a call, [3, id, payload]
# a result, [4, id, code, description, details] an error.
HEARTBEAT = '[2, "hb-1", "Heartbeat", {}]'
BOOT = '[2, "boot-1", "BootNotification", {"chargePointVendor": "Charge Amps", "chargePointModel": "Aura"}]'


def booted(central) -> RawCharger:
    """A hand-written charger past its BootNotification."""
    raw = RawCharger(url_of(central) + "/CP1")
    raw.send(BOOT)
    assert raw.answer_for("boot-1")[2]["status"] == "Accepted"
    return raw


def test_garbage_frames_are_dropped_and_the_connection_kept(central):
    c, events = central()
    raw = booted(c)
    for garbage in ("not json at all", "{}", "[]", "[2]", '[9, "x"]', '"text"', "[2, 5, null, 7]"):
        raw.send(garbage)
    raw.send(HEARTBEAT)
    assert raw.answer_for("hb-1")[0] == 3  # still connected and answering
    assert c.connected() == {"CP1"}
    raw.close()


def test_an_unknown_action_is_answered_not_implemented_and_the_connection_kept(central):
    c, events = central()
    raw = booted(c)
    raw.send('[2, "u-1", "OpenThePodBayDoors", {}]')
    answer = raw.answer_for("u-1")
    assert answer[0] == 4 and answer[2] == "NotImplemented"
    raw.send(HEARTBEAT)
    assert raw.answer_for("hb-1")[0] == 3
    raw.close()


def test_a_message_before_boot_notification_is_answered_and_a_boot_asked_for(central):
    # A charger reconnecting to a restarted bridge often sends no BootNotification.
    c, events = central()
    raw = RawCharger(url_of(c) + "/CP1")
    raw.send('[2, "st-1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}]')
    assert raw.answer_for("st-1")[0] == 3
    events.wait(ev.StatusChanged, cp="CP1", connector=1, status="Charging")
    raw.send(HEARTBEAT)
    raw.answer_for("hb-1")
    triggers = [f for f in raw.calls_received if f[2] == "TriggerMessage"]
    assert [f[3] for f in triggers] == [{"requestedMessage": "BootNotification"}]
    raw.close()


def test_authorize_start_and_stop_transaction_are_accepted(central):
    c, events = central()
    raw = booted(c)
    raw.send('[2, "a-1", "Authorize", {"idTag": "RFID-1"}]')
    assert raw.answer_for("a-1")[2]["idTagInfo"]["status"] == "Accepted"
    raw.send('[2, "s-1", "StartTransaction", {"connectorId": 1, "idTag": "RFID-1", "meterStart": 0, '
             '"timestamp": "2026-01-01T10:00:00Z"}]')
    started = raw.answer_for("s-1")[2]
    assert started["idTagInfo"]["status"] == "Accepted"
    events.wait(ev.TransactionChanged, cp="CP1", connector=1, transaction_id=started["transactionId"])
    raw.send(f'[2, "p-1", "StopTransaction", {{"transactionId": {started["transactionId"]}, "meterStop": 100, '
             '"timestamp": "2026-01-01T11:00:00Z"}]')
    assert raw.answer_for("p-1")[2]["idTagInfo"]["status"] == "Accepted"
    events.wait(ev.TransactionChanged, cp="CP1", connector=1, transaction_id=None)
    raw.close()


def test_an_identity_not_listed_is_refused_at_the_handshake_and_counted(central):
    c, events = central(("CP1",))
    with pytest.raises(InvalidStatus) as refused:
        RawCharger(url_of(c) + "/INTRUDER")
    assert refused.value.response.status_code == 404
    assert c.refused == 1
    assert events.wait(ev.Refused).identity == "INTRUDER"
    assert not events.of(ev.Connected)


def test_a_wrong_password_is_refused_at_the_handshake_and_never_logged(central, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Pa55"
    c, events = central(("CP1",), password=secret)
    for headers in (None, {"Authorization": basic_header("CP1", "wrong-guess")},
                    {"Authorization": basic_header("OTHER", secret)}, {"Authorization": "Basic !!!"}):
        with pytest.raises(InvalidStatus) as refused:
            RawCharger(url_of(c) + "/CP1", headers)
        assert refused.value.response.status_code == 401
    assert c.refused == 4
    assert not events.of(ev.Connected)
    raw = RawCharger(url_of(c) + "/CP1", {"Authorization": basic_header("CP1", secret)})
    events.wait(ev.Connected, cp="CP1")
    raw.close()
    assert secret not in caplog.text and "wrong-guess" not in caplog.text
    assert all(secret not in repr(e) and "wrong-guess" not in repr(e) for e in events.seen)


def test_the_simulated_charger_authenticates_with_the_password(central):
    c, events = central(("CP1",), password="pw-1")
    sim = sim_for(c, password="pw-1").start_in_thread()
    try:
        events.wait(ev.Booted, cp="CP1")
        assert "pw-1" not in repr(sim)
    finally:
        sim.stop()


@pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")
def test_wss_with_the_bridge_certificate(central, tmp_path):
    certs = make_server_certs(tmp_path)
    c, events = central(("CP1",), tls=(certs.cert, certs.key), password="pw-2")
    trust = ssl.create_default_context(cafile=str(certs.ca))
    sim = sim_for(c, password="pw-2", ssl_context=trust)
    sim.url = url_of(c, "wss") + "/CP1"
    sim.start_in_thread()
    try:
        events.wait(ev.Booted, cp="CP1")
        assert c.set_current("CP1", 1, 8).result(5) is True
    finally:
        sim.stop()
    with pytest.raises(Exception):  # plain ws to a wss server gets no handshake
        RawCharger(url_of(c) + "/CP1")


@pytest.mark.slow
def test_a_charger_that_never_answers_blocks_no_other(central):
    c, events = central(("MUTE", "OK"), call_timeout_s=1.5)
    mute = sim_for(c, "MUTE", answers_calls=False).start_in_thread()
    ok = sim_for(c, "OK").start_in_thread()
    try:
        events.wait(ev.TransactionChanged, cp="MUTE", connector=1)
        events.wait(ev.TransactionChanged, cp="OK", connector=1)
        started = time.monotonic()
        stuck = c.set_current("MUTE", 1, 10)
        fine = c.set_current("OK", 1, 10)
        assert fine.result(5) is True
        assert time.monotonic() - started < 1.0  # not behind the mute charger's timeout
        assert stuck.result(10) is False
        failed = events.wait(ev.CallFailed, cp="MUTE")
        assert "no answer" in failed.message
        assert c.method_of("MUTE") is None  # a timeout teaches nothing
        wait_until(lambda: ok.draw(1) == 10, what="the answering charger's car follows")
    finally:
        mute.stop()
        ok.stop()


@pytest.mark.slow
def test_a_charger_that_disconnects_mid_session_is_taken_back_on_its_return(central):
    c, events = central(("CP1",), profile_ttl_s=2)
    sim = sim_for(c).start_in_thread()
    events.wait(ev.TransactionChanged, cp="CP1", connector=1)
    assert c.set_current("CP1", 1, 16).result(5) is True
    wait_until(lambda: sim.draw(1) == 16, what="charging")
    sim.go_offline(4)  # the charger's connection drops; its car goes on under its profiles
    try:
        events.wait(ev.Disconnected, cp="CP1")
        assert c.connected() == set()
        wait_until(lambda: sim.draw(1) == 6, timeout=5, what="the car at the fail-safe once the limit ran out")
        assert c.set_current("CP1", 1, 12).result(5) is False  # nobody to send it to: kept for the return
        wait_until(lambda: len(events.of(ev.Connected)) == 2, timeout=8, what="the charger back")
        wait_until(lambda: sim.draw(1) == 12, what="the limit set while it was away")
    finally:
        sim.stop()


def test_twenty_chargers_connecting_at_once(central):
    identities = tuple(f"CP{n:02d}" for n in range(20))
    c, events = central(identities)
    fleet = Fleet([sim_for(c, cp, lag_s=0.1) for cp in identities]).start()
    try:
        wait_until(lambda: len(events.of(ev.Booted)) == 20, timeout=20, what="20 chargers booted")
        wait_until(lambda: len(events.of(ev.TransactionChanged)) >= 20, timeout=20, what="20 transactions")
        results = [c.set_current(cp, 1, 6 + n % 10) for n, cp in enumerate(identities)]
        assert all(r.result(15) for r in results)
        wait_until(lambda: all(s.draw(1) == 6 + n % 10 for n, s in enumerate(fleet.sims)), timeout=10,
                   what="every car at its own limit")
        assert c.connected() == set(identities)
        assert c.refused == 0
    finally:
        fleet.stop()


def test_a_restarted_bridge_takes_back_a_charger_that_sends_no_new_boot(central):
    first, events = central(("CP1",), profile_ttl_s=30)
    sim = sim_for(first, boot_on_connect=False, backoff_s=(0.1, 0.3)).start_in_thread()
    try:
        events.wait(ev.Connected, cp="CP1")
        wait_until(lambda: sim.transactions.get(1), what="a transaction")
        assert first.set_current("CP1", 1, 14).result(5) is True
        port = first.port
        first.stop()
        wait_until(lambda: not sim.connected.is_set(), what="the charger cut off")
        second, again = central(("CP1",), port=port)
        again.wait(ev.Connected, cp="CP1")
        # Asked for the BootNotification it did not send; nothing written before the bridge decides.
        again.wait(ev.Booted, cp="CP1")
        assert second.method_of("CP1") is None
        assert second.set_current("CP1", 1, 9).result(5) is True
        wait_until(lambda: sim.draw(1) == 9, what="the new bridge's limit")
    finally:
        sim.stop()


def test_without_a_password_the_bridge_warns_once_and_still_refuses_strangers(central, caplog):
    caplog.set_level(logging.WARNING, logger="bridge.ocpp")
    c, events = central(("CP1",))
    RawCharger(url_of(c) + "/CP1").close()
    RawCharger(url_of(c) + "/CP1").close()
    with pytest.raises(InvalidStatus):
        RawCharger(url_of(c) + "/CP2")
    assert sum("OCPP_PASSWORD is not set" in r.getMessage() for r in caplog.records) == 1
    assert c.refused == 1
