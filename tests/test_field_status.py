"""`status` against a cloud that answers only in part, or not at all: what it can read is
shown, what it cannot is one line saying why, and no retry warnings of the HTTP library."""

from __future__ import annotations

import json

import pytest

from bridge.sim.cloud import CloudSimulator
from tests.test_cli import assert_one_clean_line, run_cli, sim_env

pytestmark = pytest.mark.slow


def test_status_shows_the_rest_when_one_connectors_settings_cannot_be_read(sim, tmp_path):
    env = sim_env(sim, tmp_path / "state")
    # Every try (the client's retries included) at connector 2's settings gets a server error.
    sim.fail_next(20, status=500, path_contains="/connectors/2/settings")

    table = run_cli(["status"], env, tmp_path)
    as_json = run_cli(["status", "--json"], env, tmp_path)

    assert table.returncode == 0, table.stderr
    assert "Retrying" not in table.stderr and "Traceback" not in table.stderr
    lines = table.stdout.splitlines()
    assert any(line.split()[:1] == ["1"] and "Charging" in line for line in lines), table.stdout
    assert sum("settings not readable" in line for line in lines) == 1, table.stdout
    why = next(line for line in lines if "settings not readable" in line)
    assert why.strip().startswith("connector 2:") and "server error" in why
    (cp,) = json.loads(as_json.stdout)["chargepoints"]
    one, two = sorted(cp["connectors"], key=lambda c: c["connector_id"])
    assert one["max_current"] == sim.connector(1).max_current and one["settings_error"] is None
    assert two["max_current"] is None and "connector 2" in two["settings_error"]
    assert cp["max_current"] is not None and cp["settings_error"] is None


def test_status_with_the_cloud_down_is_one_line_without_retry_warnings(tmp_path):
    with CloudSimulator() as sim:
        env = sim_env(sim, tmp_path / "state")
        assert run_cli(["login"], env, tmp_path).returncode == 0
        sim.fail_next(50, status=503)
        failing = run_cli(["status"], env, tmp_path)
    # The simulator has stopped: its port now refuses connections.
    unreachable = run_cli(["status"], env, tmp_path)

    for result in (failing, unreachable):
        assert result.returncode == 1
        line = assert_one_clean_line(result)
        assert line.startswith("error: ") and "retries later" not in line, line
    assert "server error" in assert_one_clean_line(failing)
    assert "unreachable" in assert_one_clean_line(unreachable)
