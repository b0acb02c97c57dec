"""docker-compose.yml, Dockerfile and .env.example, checked without a Docker engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from bridge.config import COMPOSE_ONLY_VARIABLES, REQUIRED_VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
# A copy of the Compose specification's JSON schema, so the test runs in a bare clone.
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $VAR; `$$` is a literal dollar
VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def documented_variables() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s?([A-Z][A-Z0-9_]*)=", line)
        if m:
            names.add(m.group(1))
    return names


def test_compose_file_validates_against_the_compose_spec(compose: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    # the spec names draft-07 by an https URL jsonschema does not recognise
    jsonschema.Draft7Validator(schema).validate(compose)


def test_schema_copy_matches_shared_when_present() -> None:
    shared = ROOT.parent / "shared" / "compose" / "compose-spec.json"
    if not shared.exists():
        pytest.skip(f"{shared} is absent (only the tests/data copy is used)")
    assert json.loads(shared.read_text()) == json.loads(SCHEMA.read_text())


def test_every_variable_the_compose_file_uses_is_documented() -> None:
    used = {a or b for a, b in VARIABLE.findall(COMPOSE.read_text())}
    assert used, "the check found no variables: the pattern is broken"
    missing = used - documented_variables()
    assert not missing, f"used in docker-compose.yml but not in .env.example: {sorted(missing)}"


def test_every_setting_is_documented_and_every_documented_name_is_a_setting() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    documented = documented_variables()
    assert not settings - documented, f"settings missing from .env.example: {sorted(settings - documented)}"
    unknown = documented - settings - COMPOSE_ONLY_VARIABLES
    assert not unknown, f".env.example names variables the bridge does not read: {sorted(unknown)}"


def _bind_sources(service: dict) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
        if source and source.startswith((".", "/")):
            sources.append(source)
    return sources


def test_every_mounted_file_and_build_context_exists(compose: dict) -> None:
    checked = 0
    for name, service in compose["services"].items():
        for source in _bind_sources(service):
            assert (ROOT / source).resolve().exists(), f"{name} mounts {source}, which does not exist"
            checked += 1
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (ROOT / context / dockerfile).exists(), f"{name} builds from a missing {dockerfile}"
        for env_file in service.get("env_file", []) or []:
            entry = {"path": env_file} if isinstance(env_file, str) else env_file
            if entry.get("required", True):
                assert (ROOT / entry["path"]).exists(), f"{name} needs {entry['path']}, which does not exist"
    assert checked >= 1


def test_mosquitto_service_uses_the_shipped_config(compose: dict) -> None:
    mosquitto = compose["services"]["mosquitto"]
    assert mosquitto["image"] == "eclipse-mosquitto:2"
    config_mount = next(v for v in mosquitto["volumes"] if v.split(":")[1] == "/mosquitto/config")
    folder = ROOT / config_mount.split(":")[0]
    conf = (folder / "mosquitto.conf").read_text()
    for line in re.findall(r"^(?:password_file|acl_file) (\S+)$", conf, re.M):
        assert line.startswith("/mosquitto/config/")
    assert (folder / "acl").exists()
    assert re.search(r"^allow_anonymous false$", conf, re.M)


def test_bridge_talks_to_the_compose_broker_and_keeps_state_in_data(compose: dict) -> None:
    for name in ("bridge", "bridge-demo"):
        service = compose["services"][name]
        env = service["environment"]
        assert env["MQTT_HOST"] == "mosquitto"
        assert env["CHARGEAMPS_STATE_DIR"] == "/data"
        assert any(v.endswith(":/data") for v in service["volumes"])
        assert "mosquitto" in service["depends_on"]
    assert "profiles" not in compose["services"]["bridge"]


def test_demo_profile_runs_the_simulated_cloud_and_points_the_bridge_at_it(compose: dict) -> None:
    sim = compose["services"]["cloud-sim"]
    demo = compose["services"]["bridge-demo"]
    assert sim["profiles"] == ["demo"] and demo["profiles"] == ["demo"]
    command = sim["command"]
    assert command[0] == "simulate-cloud" and command[command.index("--port") + 1] == "8080"
    # the simulator listens on loopback unless told otherwise; the bridge is in another container
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert demo["environment"]["CHARGEAMPS_BASE_URL"] == "http://cloud-sim:8080"
    from bridge.sim import cloud

    assert demo["environment"]["CHARGEAMPS_EMAIL"] == cloud.DEMO_EMAIL
    assert demo["environment"]["CHARGEAMPS_PASSWORD"] == cloud.DEMO_PASSWORD
    assert demo["environment"]["CHARGEAMPS_API_KEY"] == cloud.DEMO_API_KEY
    assert demo["environment"]["CHARGEAMPS_CHARGEPOINT_ID"] == cloud.DEFAULT_CHARGEPOINT_ID


def test_dockerfile_runs_as_non_root_with_state_in_data() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^VOLUME /data$", text, re.M)
    assert "CHARGEAMPS_STATE_DIR=/data" in text
    assert re.search(r'^ENTRYPOINT \["chargeamps-bridge"\]$', text, re.M)
    assert re.search(r'^CMD \["run"\]$', text, re.M)
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which does not exist"


def test_dockerignore_keeps_secrets_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and "mosquitto" in ignored and ".git" in ignored


def test_env_example_leaves_only_the_required_settings_uncommented() -> None:
    # A copy of .env.example must not send anything the user did not choose (an MQTT user
    # with an empty password): only what has no default is a live line.
    live = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.strip())
        if m:
            live[m.group(1)] = m.group(2)
    assert set(live) == set(REQUIRED_VARIABLES), f"uncommented in .env.example: {sorted(live)}"
    assert all(value == "" for value in live.values()), "a required setting ships with a value"
    assert set(REQUIRED_VARIABLES) <= {name.upper() for name in Settings.model_fields}


def test_the_shipped_compose_file_makes_unknown_variables_an_error(compose: dict) -> None:
    for name in ("bridge", "bridge-demo"):
        environment = compose["services"][name]["environment"]
        assert environment["STRICT_CONFIG"] == "${STRICT_CONFIG:-true}", name


def test_the_ocpp_port_is_published_once_its_lines_are_uncommented() -> None:
    # The bridge's service carries its OCPP port commented out (a cloud user publishes nothing more);
    # uncommented as the file's comment says, the file still validates and publishes OCPP_PORT's default.
    text = COMPOSE.read_text()
    marker = "by removing the \"# \" of the next two lines:\n"
    head, found, tail = text.partition(marker)
    assert found, "the comment that tells how to publish the OCPP port is gone"
    lines = tail.splitlines(keepends=True)
    opened = head + found + "".join(line.replace("# ", "", 1) for line in lines[:2]) + "".join(lines[2:])
    compose = yaml.safe_load(opened)
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose)
    port = Settings.model_fields["ocpp_port"].default
    assert compose["services"]["bridge"]["ports"] == [f"{port}:{port}"]
    assert "ports" not in yaml.safe_load(text)["services"]["bridge"]
