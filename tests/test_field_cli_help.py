"""Help texts a new user reads first: each names the program as it is typed and its defaults."""

from __future__ import annotations

import pytest

from tests.test_cli import base_env, run_cli

pytestmark = pytest.mark.slow


def test_simulate_cloud_help_names_the_program_and_the_default_port(tmp_path):
    result = run_cli(["simulate-cloud", "--help"], base_env(), tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: chargeamps-bridge simulate-cloud ")
    assert "default 8080" in result.stdout
