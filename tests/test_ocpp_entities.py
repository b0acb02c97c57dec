"""Home Assistant sees the same entities over local OCPP as over the cloud: the service runs once
with CHARGER_TRANSPORT=cloud against the cloud simulator and once with CHARGER_TRANSPORT=ocpp against
a simulated OCPP charger (the `ocpp` library on both sides), each on the real broker, and the
discovery configs each leaves retained are compared, the charge point's id aside."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from bridge.ocpp.central import installation_currents
from bridge.sim.cloud import AURA_CHARGEPOINT_ID, DEFAULT_CHARGEPOINT_ID, CloudSimulator, several_cars_account
from bridge.sim.ocpp_charger import SimCharger
from tests.broker import free_port
from tests.e2e import InProcessBridge, Probe, bridge_env, topic
from tests.test_ocpp_e2e import NO_CLOUD

PREFIX = "homeassistant"
# What one config says, by the keys that make an entity what it is for Home Assistant and for a user.
COMPARED = ("unique_id", "object_id", "default_entity_id", "name", "state_topic", "command_topic",
            "json_attributes_topic", "device_class", "unit_of_measurement", "state_class", "entity_category",
            "enabled_by_default", "options", "min", "max", "step", "payload_on", "payload_off", "icon")


def retained_configs(probe: Probe, node: str) -> dict[str, dict]:
    """Every non-empty retained discovery config of `node` on the broker, by config topic."""
    pattern = re.compile(rf"^{PREFIX}/[a-z_]+/{re.escape(node)}/[^/]+/config$")
    return {t: json.loads(p) for t, p in list(probe.latest.items()) if pattern.match(t) and p}


def normalised(configs: dict[str, dict], node: str, cp: str) -> dict[str, dict[str, Any]]:
    """The configs with the node and the charge point's id replaced, reduced to COMPARED and the device."""
    def plain(value: Any) -> Any:
        return json.loads(json.dumps(value).replace(cp, "<CP>").replace(node, "<NODE>"))

    out = {}
    for t, c in configs.items():
        kept = {k: c[k] for k in COMPARED if k in c}
        # The device's model is what each source calls it (the cloud's type, BootNotification's model).
        kept["device"] = {k: c["device"].get(k) for k in ("identifiers", "name", "manufacturer")}
        out[plain(t)] = plain(kept)
    return out


def settle(probe: Probe, node: str, until: Any, timeout: float = 20.0) -> dict[str, dict]:
    """The retained configs once `until(configs)` holds (each announcement after the charger is known)."""
    deadline = time.monotonic() + timeout
    while True:
        configs = retained_configs(probe, node)
        if until(configs):
            return configs
        if time.monotonic() > deadline:
            raise AssertionError(f"discovery not complete within {timeout} s: {sorted(configs)}")
        time.sleep(0.05)


def announced(broker, probe, tmp_path, env: dict, charger: Any, cp: str, connectors: list[int],
              model: str) -> dict[str, dict]:
    """What the service configured with `env` leaves retained for Home Assistant once the charger
    (started by `charger()` after the service) is online with each connector's status known."""
    bridge = InProcessBridge(env, tmp_path).start()
    stop = None
    try:
        stop = charger()
        node = env["MQTT_BASE_TOPIC"]
        probe.wait_value(topic(env, f"charger/{cp}/online"), "ON", timeout=15)
        for n in connectors:
            probe.wait_for(topic(env, f"charger/{cp}/{n}/status"), timeout=15)
        several = len(connectors) > 1

        def complete(configs: dict[str, dict]) -> bool:
            models = {c["device"].get("model") for c in configs.values()}
            outlets = all(any(f"/{cp}_{n}_" in t for t in configs) for n in connectors) if several else True
            return bool(configs) and models == {model} and outlets

        return normalised(settle(probe, node, complete), node, cp)
    finally:
        bridge.close()
        if stop is not None:
            stop()


def cloud_run(broker, probe, tmp_path, sim: CloudSimulator, cp: str, connectors: list[int], model: str,
              **extra: Any) -> dict[str, dict]:
    env = bridge_env(broker, sim, tmp_path / "cloud-state", HA_DISCOVERY="true", **extra)
    return announced(broker, probe, tmp_path, env, lambda: None, cp, connectors, model)


def ocpp_run(broker, probe, tmp_path, identity: str, connectors: list[int], model: str,
             sim_kw: dict, **extra: Any) -> dict[str, dict]:
    port = free_port()
    env = bridge_env(broker, NO_CLOUD, tmp_path / "ocpp-state", HA_DISCOVERY="true", CHARGER_TRANSPORT="ocpp",
                     OCPP_HOST="127.0.0.1", OCPP_PORT=port, OCPP_CHARGE_POINTS=identity,
                     OCPP_METER_INTERVAL_S=1, CHARGEAMPS_POLL_INTERVAL="", **extra)

    def charger():
        sim = SimCharger(f"ws://127.0.0.1:{port}/ocpp", identity, lag_s=0.2, backoff_s=(0.1, 0.5),
                         **sim_kw).start_in_thread()
        return sim.stop

    return announced(broker, probe, tmp_path, env, charger, identity, connectors, model)


def differences(cloud: dict[str, dict], ocpp: dict[str, dict]) -> list[str]:
    out = [f"only over the cloud: {t}" for t in sorted(set(cloud) - set(ocpp))]
    out += [f"only over OCPP: {t}" for t in sorted(set(ocpp) - set(cloud))]
    for t in sorted(set(cloud) & set(ocpp)):
        for key in sorted(set(cloud[t]) | set(ocpp[t])):
            if cloud[t].get(key) != ocpp[t].get(key):
                out.append(f"{t} {key}: cloud {cloud[t].get(key)!r}, OCPP {ocpp[t].get(key)!r}")
    return out


def entity_kinds(configs: dict[str, dict]) -> dict[str, str]:
    """object id -> component (sensor, number, ...)."""
    return {t.split("/")[3]: t.split("/")[1] for t in configs}


@pytest.mark.slow
def test_one_halo_has_the_same_entities_over_ocpp_as_over_the_cloud(broker, probe, tmp_path):
    sim = CloudSimulator()
    sim.connector(1).car_plugged = True
    with sim:
        cloud = cloud_run(broker, probe, tmp_path, sim, DEFAULT_CHARGEPOINT_ID, [1], "HALO")
    ocpp = ocpp_run(broker, probe, tmp_path, "HALO1", [1], "Halo",
                    dict(profile="charge-amps", cars={1: 16}), CHARGEAMPS_CHARGEPOINT_ID="HALO1")
    assert entity_kinds(ocpp) == entity_kinds(cloud)
    assert differences(cloud, ocpp) == []


@pytest.mark.slow
def test_an_auras_two_outlets_have_the_same_entities_over_ocpp_as_over_the_cloud(broker, probe, tmp_path):
    cp = AURA_CHARGEPOINT_ID
    with several_cars_account() as sim:
        cloud = cloud_run(broker, probe, tmp_path, sim, cp, [1, 2], "AURA",
                          CHARGEAMPS_CONNECTORS=f"{cp}:1,{cp}:2")
    ocpp = ocpp_run(broker, probe, tmp_path, "AURA1", [1, 2], "Aura",
                    dict(profile="charge-amps", connectors=2, cars={1: 16, 2: 16}, model="Aura"),
                    CHARGEAMPS_CONNECTORS="AURA1:1,AURA1:2")
    assert entity_kinds(ocpp) == entity_kinds(cloud)
    assert differences(cloud, ocpp) == []


def test_the_installation_current_is_read_from_charge_amps_max_current_key():
    # The value a Halo on firmware 180 gives for its read-only MaxCurrent key, as posted in
    # https://github.com/evcc-io/evcc/issues/15943 (GetConfiguration): `<connector>.<A>` pairs.
    assert installation_currents("0.16,1.16") == {0: 16.0, 1: 16.0}
    assert installation_currents("0.32, 1.16 ,2.10") == {0: 32.0, 1: 16.0, 2: 10.0}
    # Anything else leaves the installation current unknown (as without the key), never an error.
    for value in (None, "", "16", "x.16", "1.x", "1.0", "1.-6", "-1.16", "1.500", 7):
        assert installation_currents(value) == {}, value
