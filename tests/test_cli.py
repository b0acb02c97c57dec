"""The command line, through the installed console script, against the cloud simulator."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import __version__
from bridge.sim.cloud import CloudSimulator

CLI = [shutil.which("chargeamps-bridge")] if shutil.which("chargeamps-bridge") else [sys.executable, "-m", "bridge"]
OWN_PREFIXES = ("CHARGEAMPS_", "MQTT_", "P1_", "BALANCER_", "HA_DISCOVERY", "LOG_LEVEL", "STRICT_CONFIG")
TIMEOUT_S = 30


def base_env() -> dict[str, str]:
    """The inherited environment without any setting of ours, so only the test's values count."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(OWN_PREFIXES)}


def sim_env(sim: CloudSimulator, state_dir: Path, **extra: str) -> dict[str, str]:
    env = base_env()
    env.update(
        CHARGEAMPS_BASE_URL=sim.url,
        CHARGEAMPS_EMAIL=sim.email,
        CHARGEAMPS_PASSWORD=sim.password,
        CHARGEAMPS_API_KEY=sim.api_key,
        CHARGEAMPS_STATE_DIR=str(state_dir),
    )
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)


def run_cli_parallel(runs: list[tuple[list[str], dict[str, str]]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Independent runs side by side: each start of the interpreter costs most of a second."""
    procs = [
        (args, subprocess.Popen([*CLI, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True))
        for args, env in runs
    ]
    results = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT_S)
        results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return results


def assert_one_clean_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The final message of a run that got as far as the cloud (log lines may precede it)."""
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "expected an error message on stderr"
    return lines[-1]


def assert_no_secret(result: subprocess.CompletedProcess[str], secrets: list[str]) -> None:
    output = result.stdout + result.stderr
    for secret in secrets:
        assert secret and secret not in output, "a secret was printed"


def token_values(state_dir: Path) -> list[str]:
    """Every token-like string in the stored token file (whatever its layout)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and len(node) >= 20 and "@" not in node and "://" not in node:
            found.append(node)

    walk(json.loads((state_dir / "tokens.json").read_text()))
    return found


def settings_puts(sim: CloudSimulator) -> list:
    return sim.requests_to("/settings", "PUT")


@pytest.fixture
def sim():
    with CloudSimulator() as s:
        yield s


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


# ---- login ----------------------------------------------------------------------


@pytest.mark.slow
def test_login_lists_charge_points_stores_tokens_0600_and_prints_no_secret(sim, state_dir, tmp_path):
    result = run_cli(["login"], sim_env(sim, state_dir), tmp_path)

    assert result.returncode == 0, result.stderr
    assert sim.chargepoint_id in result.stdout
    assert sim.logins == 1
    token_file = state_dir / "tokens.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    tokens = token_values(state_dir)
    assert len(tokens) >= 2, "expected an access token and a refresh token in the file"
    assert_no_secret(result, [sim.password, sim.api_key, *tokens])


@pytest.mark.slow
def test_login_with_debug_logging_still_prints_no_secret(sim, state_dir, tmp_path):
    result = run_cli(["login"], sim_env(sim, state_dir, LOG_LEVEL="DEBUG"), tmp_path)

    assert result.returncode == 0, result.stderr
    assert_no_secret(result, [sim.password, sim.api_key, *token_values(state_dir)])


# ---- status ---------------------------------------------------------------------


@pytest.mark.slow
def test_status_table_then_json_and_the_second_run_does_not_log_in(sim, state_dir, tmp_path):
    sim.connector(1).car_plugged = True
    env = sim_env(sim, state_dir)

    table = run_cli(["status"], env, tmp_path)
    assert table.returncode == 0, table.stderr
    assert sim.logins == 1

    as_json = run_cli(["status", "--json"], env, tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert sim.logins == 1, "the second run must reuse the stored token"
    assert sim.refreshes == 0

    header = next(line for line in table.stdout.splitlines() if "status" in line and "L1" in line)
    assert re.search(r"L1\s+L2\s+L3", header)
    row = next(line for line in table.stdout.splitlines() if re.match(r"\s*1\s", line))
    assert "Charging" in row
    currents = [float(x) for x in re.findall(r"\d+\.\d", row)[:3]]
    assert len(currents) == 3 and all(6 <= c <= 16 for c in currents), row
    assert sim.chargepoint_id in table.stdout

    doc = json.loads(as_json.stdout)
    (cp,) = doc["chargepoints"]
    assert cp["id"] == sim.chargepoint_id
    assert cp["installation_current"] == 16
    connector = next(c for c in cp["connectors"] if c["connector_id"] == 1)
    assert connector["status"] == "Charging"
    assert connector["max_current"] == sim.connector(1).max_current
    assert set(connector["currents"]) == {"L1", "L2", "L3"}
    assert all(6 <= a <= 16 for a in connector["currents"].values())
    for field in ("type", "mode", "power_kw", "session_energy_kwh", "installation_current"):
        assert field in connector
    other = next(c for c in cp["connectors"] if c["connector_id"] == 2)
    assert other["status"] != "Charging"
    assert all(r.valid for r in sim.requests)


@pytest.mark.slow
def test_status_of_a_charge_point_the_account_does_not_own_is_a_config_error(sim, state_dir, tmp_path):
    result = run_cli(["status"], sim_env(sim, state_dir, CHARGEAMPS_CHARGEPOINT_ID="999"), tmp_path)

    assert result.returncode == 2
    assert "CHARGEAMPS_CHARGEPOINT_ID" in error_line(result)


# ---- set-current ----------------------------------------------------------------


@pytest.mark.slow
def test_set_current_writes_reads_back_and_prints_the_applied_value(sim, state_dir, tmp_path):
    assert sim.connector(1).max_current != 10

    result = run_cli(["set-current", "10"], sim_env(sim, state_dir), tmp_path)

    assert result.returncode == 0, result.stderr
    assert sim.connector(1).max_current == 10
    assert re.search(r"\b10 A\b", result.stdout), result.stdout
    puts = settings_puts(sim)
    assert len(puts) == 1 and "/connectors/1/settings" in puts[0].path
    # read back: a GET of the connector's settings after the PUT
    after = sim.requests[sim.requests.index(puts[0]) + 1:]
    assert any(r.method == "GET" and "/connectors/1/settings" in r.path for r in after)
    assert all(r.valid for r in sim.requests)


@pytest.mark.slow
@pytest.mark.parametrize("level", ["chargepoint", "Chargepoint"])
def test_set_current_at_chargepoint_level_writes_the_charge_points_max_current(sim, state_dir, tmp_path, level):
    connector_before = sim.connector(1).max_current

    result = run_cli(["set-current", "8"], sim_env(sim, state_dir, CHARGEAMPS_CURRENT_LEVEL=level), tmp_path)

    assert result.returncode == 0, result.stderr
    assert sim.charge_points[sim.chargepoint_id].max_current == 8
    assert sim.connector(1).max_current == connector_before
    (put,) = settings_puts(sim)
    assert "/connectors/" not in put.path
    assert re.search(r"\b8 A\b", result.stdout)


@pytest.mark.slow
def test_set_current_refuses_values_outside_0_or_6_to_32_without_writing(sim, state_dir, tmp_path):
    env = sim_env(sim, state_dir)
    cases = {"5": "6 to 32", "40": "6 to 32", "10.5": "whole", "-6": "6 to 32",
             "nan": "number", "inf": "number", "ten": "number"}

    results = run_cli_parallel([(["set-current", amps], env) for amps in cases], tmp_path)

    for (amps, expected), result in zip(cases.items(), results):
        assert result.returncode == 2, (amps, result.stderr)
        assert "Traceback" not in result.stderr
        assert expected in result.stderr, (amps, result.stderr)
        assert "AMPS" in result.stderr
    assert settings_puts(sim) == []
    assert sim.writes == []


@pytest.mark.slow
def test_set_current_above_the_installation_current_is_refused_without_writing(tmp_path, state_dir):
    with CloudSimulator(installation_current=16) as sim:
        result = run_cli(["set-current", "20"], sim_env(sim, state_dir), tmp_path)

        assert result.returncode == 2
        line = error_line(result)
        assert "installation current" in line and "16" in line
        assert settings_puts(sim) == []
        assert sim.connector(1).max_current == 16


@pytest.mark.slow
def test_set_current_zero_pauses(sim, state_dir, tmp_path):
    result = run_cli(["set-current", "0"], sim_env(sim, state_dir), tmp_path)

    assert result.returncode == 0, result.stderr
    assert sim.connector(1).max_current == 0


# ---- configuration errors ---------------------------------------------------------


@pytest.mark.slow
def test_missing_credentials_name_the_variables_in_one_line(sim, state_dir, tmp_path):
    all_missing = sim_env(sim, state_dir)
    for name in ("CHARGEAMPS_EMAIL", "CHARGEAMPS_PASSWORD", "CHARGEAMPS_API_KEY"):
        del all_missing[name]
    password_missing = sim_env(sim, state_dir)
    del password_missing["CHARGEAMPS_PASSWORD"]
    key_empty = sim_env(sim, state_dir, CHARGEAMPS_API_KEY="")

    runs = [(["status"], all_missing), (["login"], all_missing), (["set-current", "10"], all_missing),
            (["status"], password_missing), (["status"], key_empty)]
    results = run_cli_parallel(runs, tmp_path)

    for result in results[:3]:
        assert result.returncode == 2
        line = assert_one_clean_line(result)
        for name in ("CHARGEAMPS_EMAIL", "CHARGEAMPS_PASSWORD", "CHARGEAMPS_API_KEY"):
            assert name in line
    password_line = assert_one_clean_line(results[3])
    assert results[3].returncode == 2
    assert "CHARGEAMPS_PASSWORD" in password_line and "CHARGEAMPS_EMAIL" not in password_line
    assert results[4].returncode == 2
    assert "CHARGEAMPS_API_KEY" in assert_one_clean_line(results[4])
    assert_no_secret(results[3], [sim.api_key])
    assert sim.requests == [], "nothing may reach the cloud without the account settings"


INVALID_SETTINGS = [
    ({"CHARGEAMPS_POLL_INTERVAL": "5"}, "CHARGEAMPS_POLL_INTERVAL"),
    ({"BALANCER_MAX_A": "30", "BALANCER_FUSE_A": "25"}, "BALANCER_MAX_A"),
    ({"MQTT_PORT": "abc"}, "MQTT_PORT"),
    ({"P1_PRESET": "nope"}, "P1_PRESET"),
    ({"CHARGEAMPS_CURRENT_LEVEL": "phase"}, "CHARGEAMPS_CURRENT_LEVEL"),
    ({"CHARGEAMPS_BASE_URL": "ftp://example.invalid"}, "CHARGEAMPS_BASE_URL"),
    ({"BALANCER_RAISE_HOLD_S": "100000"}, "BALANCER_RAISE_HOLD_S"),
]


@pytest.mark.slow
def test_invalid_values_stop_with_one_line_naming_the_variable(sim, state_dir, tmp_path):
    runs = [(["status"], sim_env(sim, state_dir, **values)) for values, _ in INVALID_SETTINGS]

    results = run_cli_parallel(runs, tmp_path)

    for (values, name), result in zip(INVALID_SETTINGS, results):
        assert result.returncode == 2, (values, result.stderr)
        line = assert_one_clean_line(result)
        assert name in line, (values, line)
        assert_no_secret(result, [sim.password, sim.api_key])
    assert sim.requests == []


@pytest.mark.slow
def test_a_dotenv_file_is_honoured_and_the_real_environment_wins(sim, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"CHARGEAMPS_BASE_URL={sim.url}\n"
        f"CHARGEAMPS_EMAIL={sim.email}\n"
        f"CHARGEAMPS_PASSWORD={sim.password}\n"
        "CHARGEAMPS_API_KEY=a-key-that-the-cloud-refuses\n"
        "CHARGEAMPS_POLL_INTERVAL=5\n"
    )
    only_dotenv = base_env()
    only_dotenv["CHARGEAMPS_STATE_DIR"] = str(tmp_path / "state-a")
    env_wins = dict(only_dotenv, CHARGEAMPS_POLL_INTERVAL="30", CHARGEAMPS_API_KEY=sim.api_key,
                    CHARGEAMPS_STATE_DIR=str(tmp_path / "state-b"))

    from_dotenv, overridden = run_cli_parallel([(["status", "--json"], only_dotenv),
                                                (["status", "--json"], env_wins)], tmp_path)

    assert from_dotenv.returncode == 2
    assert "CHARGEAMPS_POLL_INTERVAL" in assert_one_clean_line(from_dotenv)
    assert overridden.returncode == 0, overridden.stderr
    assert json.loads(overridden.stdout)["chargepoints"][0]["id"] == sim.chargepoint_id
    assert sim.logins == 1


@pytest.mark.slow
def test_a_misspelled_variable_is_a_warning_and_with_strict_config_exit_2(sim, tmp_path):
    (tmp_path / ".env").write_text("BALANSER_MAX_A=20\n")
    lenient = sim_env(sim, tmp_path / "state-a", BALANCER_MAX_AA="20")
    strict = sim_env(sim, tmp_path / "state-b", BALANCER_MAX_AA="20", STRICT_CONFIG="true")

    warned, refused = run_cli_parallel([(["status", "--json"], lenient), (["status", "--json"], strict)], tmp_path)

    assert warned.returncode == 0, warned.stderr
    [warning] = [line for line in warned.stderr.splitlines() if "WARNING" in line]
    assert "BALANCER_MAX_AA" in warning and "BALANSER_MAX_A" in warning and "did you mean BALANCER_MAX_A?" in warning
    assert refused.returncode == 2
    line = assert_one_clean_line(refused)
    assert "BALANCER_MAX_AA" in line and "BALANSER_MAX_A" in line and "STRICT_CONFIG" in line
    assert sim.logins == 1  # the strict run stopped before the cloud


# ---- cloud errors -----------------------------------------------------------------


@pytest.mark.slow
def test_wrong_password_exits_1_with_a_clear_message_and_no_secret(sim, state_dir, tmp_path):
    wrong = "not-the-password-4711"

    result = run_cli(["status"], sim_env(sim, state_dir, CHARGEAMPS_PASSWORD=wrong), tmp_path)

    assert result.returncode == 1
    last = error_line(result)
    assert "refused" in last and "CHARGEAMPS_PASSWORD" in last
    assert_no_secret(result, [wrong, sim.password, sim.api_key])


@pytest.mark.slow
def test_revoked_credentials_exit_1_with_a_clear_message_and_no_secret(sim, state_dir, tmp_path):
    env = sim_env(sim, state_dir)
    assert run_cli(["login"], env, tmp_path).returncode == 0
    tokens = token_values(state_dir)
    sim.revoke_credentials()
    sim.expire_tokens()

    result = run_cli(["status"], env, tmp_path)

    assert result.returncode == 1
    assert "CHARGEAMPS_" in error_line(result)
    assert_no_secret(result, [sim.password, sim.api_key, *tokens])


@pytest.mark.slow
def test_an_unreachable_cloud_exits_1_with_a_clear_message(tmp_path, state_dir):
    with CloudSimulator() as sim:
        env = sim_env(sim, state_dir)
    # the simulator is stopped: its port now refuses connections

    result = run_cli(["status"], env, tmp_path)

    assert result.returncode == 1
    last = error_line(result)
    assert "unreachable" in last and "CHARGEAMPS_BASE_URL" in last
    assert_no_secret(result, [sim.password, sim.api_key])


# ---- help and version ---------------------------------------------------------------


@pytest.mark.slow
def test_help_on_every_command_and_version(tmp_path):
    commands = ["run", "login", "status", "set-current", "simulate-cloud", "bench", "demo"]
    runs = [(["--help"], base_env()), (["--version"], base_env())]
    runs += [([command, "--help"], base_env()) for command in commands]

    top, version, *per_command = run_cli_parallel(runs, tmp_path)

    assert top.returncode == 0
    for command in commands:
        assert command in top.stdout
    assert version.returncode == 0
    assert version.stdout.strip() == f"chargeamps-bridge {__version__}"
    for command, result in zip(commands, per_command):
        assert result.returncode == 0, (command, result.stderr)
        assert "usage" in result.stdout.lower(), command
        assert command in result.stdout, command


@pytest.mark.slow
def test_no_command_or_an_unknown_one_is_a_usage_error(tmp_path):
    results = run_cli_parallel([([], base_env()), (["frobnicate"], base_env())], tmp_path)

    for result in results:
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "usage" in result.stderr.lower()
