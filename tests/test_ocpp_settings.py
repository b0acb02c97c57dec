"""The OCPP transport's settings: names, defaults, and the errors a wrong one gives."""

from __future__ import annotations

import os

import pytest

from bridge.config import ConfigError, load_settings

SECRET = "ocpp-pass-never-shown"


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.upper().startswith(("CHARGEAMPS_", "MQTT_", "P1_", "BALANCER_", "OCPP_", "CHARGER_TRANSPORT")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return monkeypatch


def test_defaults_keep_the_cloud(env):
    s = load_settings()
    assert s.charger_transport == "cloud"
    assert (s.ocpp_host, s.ocpp_port, s.ocpp_meter_interval_s, s.ocpp_profile_ttl_s) == ("0.0.0.0", 8887, 10, 120)
    assert s.ocpp_password is None and s.ocpp_tls_cert is None and s.ocpp_upstream_url is None


def test_ocpp_settings_are_read(env):
    env.setenv("CHARGER_TRANSPORT", "OCPP")
    env.setenv("OCPP_PORT", "9000")
    env.setenv("OCPP_CHARGE_POINTS", "HALO_1, AURA_2,HALO_1")
    env.setenv("OCPP_PASSWORD", SECRET)
    env.setenv("OCPP_PROFILE_TTL_S", "60")
    s = load_settings()
    assert s.charger_transport == "ocpp" and s.ocpp_port == 9000 and s.ocpp_profile_ttl_s == 60
    assert s.ocpp_identities() == ("HALO_1", "AURA_2")
    assert s.ocpp_password.get_secret_value() == SECRET
    assert SECRET not in repr(s) and SECRET not in str(s)


def test_identities_default_to_the_charge_points_of_the_connectors(env):
    env.setenv("CHARGER_TRANSPORT", "ocpp")
    env.setenv("BALANCER_STRATEGY", "adaptive")
    env.setenv("CHARGEAMPS_CONNECTORS", "HALO_1:1,HALO_1:2,AURA_2:1")
    assert load_settings().ocpp_identities() == ("HALO_1", "AURA_2")


@pytest.mark.parametrize("name, value, message", [
    ("CHARGER_TRANSPORT", "modbus", "CHARGER_TRANSPORT"),
    ("OCPP_PORT", "0", "OCPP_PORT"),
    ("OCPP_CHARGE_POINTS", "a/b", "OCPP_CHARGE_POINTS"),
    ("OCPP_TLS_CERT", "/no/such/cert.pem", "OCPP_TLS_CERT"),
    ("OCPP_UPSTREAM_URL", "https://ocpp.example.invalid", "OCPP_UPSTREAM_URL"),
    ("OCPP_PROFILE_TTL_S", "5", "OCPP_PROFILE_TTL_S"),
])
def test_a_bad_value_names_the_variable(env, name, value, message):
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_ocpp_without_any_identity_is_an_error(env):
    env.setenv("CHARGER_TRANSPORT", "ocpp")
    with pytest.raises(ConfigError, match="OCPP_CHARGE_POINTS"):
        load_settings()


def test_a_certificate_needs_its_key(env, tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    env.setenv("OCPP_TLS_CERT", str(cert))
    with pytest.raises(ConfigError, match="OCPP_TLS_KEY"):
        load_settings()


def test_an_empty_password_is_not_no_password(env):
    from bridge.config import Settings

    with pytest.raises(Exception, match="OCPP_PASSWORD"):
        Settings(ocpp_password="")


def test_the_ocpp_passwords_are_masked_in_the_log(env):
    from bridge.cli import settings_secrets

    env.setenv("OCPP_PASSWORD", SECRET)
    env.setenv("OCPP_UPSTREAM_PASSWORD", SECRET + "-up")
    assert {SECRET, SECRET + "-up"} <= set(settings_secrets(load_settings()))


def test_the_balancer_defaults_follow_the_transport_and_a_value_set_wins(env):
    cloud = load_settings().balancer_config()
    env.setenv("CHARGER_TRANSPORT", "ocpp")
    env.setenv("OCPP_CHARGE_POINTS", "HALO_1")
    local = load_settings().balancer_config()
    assert (cloud.min_command_interval_s, cloud.write_budget_per_h) == (15, 18)
    assert local.min_command_interval_s == 2 and local.settle_s < cloud.settle_s
    assert local.write_budget_per_h == 3600 / 2  # no hourly budget: as many as the interval lets through
    assert local.min_pause_s == cloud.min_pause_s  # the car's minimum pause stays
    env.setenv("BALANCER_MIN_COMMAND_INTERVAL_S", "15")
    env.setenv("BALANCER_SETTLE_S", "12")
    set_by_user = load_settings().balancer_config()
    assert (set_by_user.min_command_interval_s, set_by_user.settle_s) == (15, 12)
    assert set_by_user.write_budget_per_h == 3600 / 15


def test_the_upstream_reaches_the_central_system_and_its_password_no_log(env, caplog):
    from bridge.ocpp.link import central_system

    env.setenv("CHARGER_TRANSPORT", "ocpp")
    env.setenv("OCPP_CHARGE_POINTS", "HALO_1")
    env.setenv("OCPP_UPSTREAM_URL", "wss://ocpp.charge.space/ocpp")
    env.setenv("OCPP_UPSTREAM_PASSWORD", SECRET)
    s = load_settings()
    central = central_system(s, lambda event: None)
    assert central.upstream_url == "wss://ocpp.charge.space/ocpp"
    assert SECRET not in repr(s) and SECRET not in caplog.text
