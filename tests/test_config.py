"""Settings and load_settings(), read from a controlled environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from bridge.balancer import BalancerConfig
from bridge.config import DEFAULT_BASE_URL, ConfigError, Settings, load_settings
from bridge.mqtt.meter import P1_PRESETS

OWN_PREFIXES = ("CHARGEAMPS_", "MQTT_", "P1_", "BALANCER_", "HA_", "LOG_LEVEL", "CAPACITY_", "PV_", "STRICT_CONFIG",
                "BALANSER", "CIRCUIT_")
PASSWORD = "pa55-word-never-shown"
API_KEY = "api-key-never-shown-0123"
MQTT_PASSWORD = "mqtt-pass-never-shown"


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No inherited setting, no stray .env, a private XDG state home; returns monkeypatch."""
    for name in list(os.environ):
        if name.upper().startswith(OWN_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return monkeypatch


def with_secrets(env) -> None:
    env.setenv("CHARGEAMPS_EMAIL", "owner@example.invalid")
    env.setenv("CHARGEAMPS_PASSWORD", PASSWORD)
    env.setenv("CHARGEAMPS_API_KEY", API_KEY)
    env.setenv("MQTT_PASSWORD", MQTT_PASSWORD)


def assert_secret_free(text: str) -> None:
    for secret in (PASSWORD, API_KEY, MQTT_PASSWORD):
        assert secret not in text


# ---- defaults ---------------------------------------------------------------------


def test_defaults_of_the_cloud_settings(env, tmp_path):
    s = load_settings()

    assert s.chargeamps_email is None
    assert s.chargeamps_password is None
    assert s.chargeamps_api_key is None
    assert s.chargeamps_base_url == DEFAULT_BASE_URL == "https://eapi.charge.space"
    assert s.chargeamps_chargepoint_id is None
    assert s.chargeamps_connector_id == 1
    assert s.chargeamps_state_dir == tmp_path / "xdg" / "chargeamps-bridge"
    assert s.token_file.parent == s.chargeamps_state_dir
    assert s.runtime_file.parent == s.chargeamps_state_dir
    assert s.chargeamps_current_level == "connector"
    assert s.chargeamps_pause_method == "current"
    assert s.chargeamps_poll_interval == 30
    assert s.chargeamps_http_timeout == 10
    assert s.log_level == "INFO"


def test_state_dir_without_xdg_is_under_the_home_folder(env, tmp_path):
    env.delenv("XDG_STATE_HOME")
    env.setenv("HOME", str(tmp_path / "home"))

    assert load_settings().chargeamps_state_dir == tmp_path / "home" / ".local" / "state" / "chargeamps-bridge"


def test_defaults_of_the_service_settings(env):
    s = load_settings()

    assert (s.mqtt_host, s.mqtt_port) == ("localhost", 1883)
    assert s.mqtt_username is None and s.mqtt_password is None
    assert s.mqtt_tls is False and s.mqtt_ca_file is None
    assert s.mqtt_client_id == f"chargeamps-bridge-{socket.gethostname()}-chargeamps"
    assert s.mqtt_base_topic == "chargeamps"
    assert s.p1_preset is None
    meter = s.meter_source()
    assert meter.topics == ("p1/current_l1", "p1/current_l2", "p1/current_l3")
    assert meter.paths == (None, None, None)
    assert meter.unit == "A" and meter.voltage == 230
    assert s.balancer_strategy == "adaptive"
    assert (s.balancer_max_a, s.balancer_fuse_a) == (24, 25)
    assert (s.balancer_default_current, s.balancer_min_current) == (16, 6)
    assert s.balancer_stale_after_s == 30
    assert s.balancer_failsafe_current == 6
    assert s.balancer_restore_interval_s == 600
    assert s.balancer_min_pause_s == 300
    assert s.balancer_min_command_interval_s == 15
    assert s.ha_discovery is True and s.ha_discovery_prefix == "homeassistant"


# ---- reading the environment and .env ---------------------------------------------------


def test_environment_values_are_read_and_converted(env, tmp_path):
    env.setenv("CHARGEAMPS_CONNECTOR_ID", "2")
    env.setenv("CHARGEAMPS_POLL_INTERVAL", "45")
    env.setenv("CHARGEAMPS_CURRENT_LEVEL", "chargepoint")
    env.setenv("CHARGEAMPS_BASE_URL", "http://127.0.0.1:8080/")
    env.setenv("MQTT_TLS", "true")
    env.setenv("MQTT_BASE_TOPIC", "/garage/ev/")
    env.setenv("LOG_LEVEL", "debug")
    env.setenv("BALANCER_MAX_A", "20.5")

    s = load_settings()

    assert s.chargeamps_connector_id == 2
    assert s.chargeamps_poll_interval == 45
    assert s.chargeamps_current_level == "chargepoint"
    assert s.chargeamps_base_url == "http://127.0.0.1:8080"
    assert s.mqtt_tls is True
    assert s.mqtt_base_topic == "garage/ev"
    assert s.log_level == "DEBUG"
    assert s.balancer_max_a == 20.5


def test_dotenv_is_read_and_the_environment_wins(env, tmp_path):
    (tmp_path / ".env").write_text("CHARGEAMPS_EMAIL=from-file@example.invalid\n"
                                   "MQTT_HOST=file-host\nCHARGEAMPS_POLL_INTERVAL=60\n"
                                   "MQTT_PUBLISHED_PORT=1883\n")
    env.setenv("MQTT_HOST", "env-host")

    s = load_settings()

    assert s.chargeamps_email == "from-file@example.invalid"
    assert s.chargeamps_poll_interval == 60
    assert s.mqtt_host == "env-host"


def test_dotenv_that_is_not_utf8_is_a_config_error_that_does_not_quote_it(env, tmp_path):
    (tmp_path / ".env").write_bytes(b"CHARGEAMPS_PASSWORD=" + PASSWORD.encode() + b"\xff\n")

    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        load_settings()

    assert_secret_free(str(caught.value))
    assert "0xff" not in str(caught.value)


def test_empty_values_mean_the_default_as_in_env_example(env, tmp_path):
    (tmp_path / ".env").write_text("CHARGEAMPS_EMAIL=\nCHARGEAMPS_CHARGEPOINT_ID=\nP1_PRESET=\nP1_UNIT=\n"
                                   "BALANCER_RAISE_HOLD_S=\nMQTT_CA_FILE=\nMQTT_PORT=\n")

    s = load_settings()

    assert s.chargeamps_email is None and s.chargeamps_chargepoint_id is None
    assert s.p1_preset is None and s.p1_unit is None
    assert s.balancer_raise_hold_s is None and s.mqtt_ca_file is None
    assert s.mqtt_port == 1883
    with pytest.raises(ConfigError, match="CHARGEAMPS_EMAIL"):
        s.require_cloud()


def test_the_shipped_env_example_loads(env, tmp_path):
    example = Path(__file__).resolve().parent.parent / ".env.example"
    if not example.exists():
        pytest.skip(".env.example is not in this checkout")
    (tmp_path / ".env").write_text(example.read_text())

    s = load_settings()

    assert s.balancer_max_a == 24
    with pytest.raises(ConfigError, match="CHARGEAMPS_PASSWORD"):
        s.require_cloud()


def test_a_home_relative_state_dir_is_expanded(env, tmp_path):
    env.setenv("HOME", str(tmp_path / "home"))
    env.setenv("CHARGEAMPS_STATE_DIR", "~/bridge-state")

    assert load_settings().chargeamps_state_dir == tmp_path / "home" / "bridge-state"


# ---- invalid values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ({"CHARGEAMPS_POLL_INTERVAL": "5"}, "CHARGEAMPS_POLL_INTERVAL"),
        ({"CHARGEAMPS_HTTP_TIMEOUT": "0"}, "CHARGEAMPS_HTTP_TIMEOUT"),
        ({"CHARGEAMPS_CONNECTOR_ID": "zero"}, "CHARGEAMPS_CONNECTOR_ID"),
        ({"CHARGEAMPS_BASE_URL": "eapi.charge.space"}, "CHARGEAMPS_BASE_URL"),
        ({"CHARGEAMPS_CURRENT_LEVEL": "phase"}, "CHARGEAMPS_CURRENT_LEVEL"),
        ({"CHARGEAMPS_PAUSE_METHOD": "unplug"}, "CHARGEAMPS_PAUSE_METHOD"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"MQTT_PORT": "abc"}, "MQTT_PORT"),
        ({"MQTT_PORT": "70000"}, "MQTT_PORT"),
        ({"MQTT_BASE_TOPIC": "a/#"}, "MQTT_BASE_TOPIC"),
        ({"MQTT_CA_FILE": "/no/such/ca.pem"}, "MQTT_CA_FILE"),
        ({"P1_PRESET": "nope"}, "P1_PRESET"),
        ({"P1_UNIT": "VA"}, "P1_UNIT"),
        ({"P1_TOPIC_L1": "p1/+/l1"}, "P1_TOPIC_L1"),
        ({"P1_JSON_PATH_L2": "a..b"}, "P1_JSON_PATH_L2"),
        ({"P1_PHASES": "2"}, "P1_PHASES"),
        ({"P1_PHASES": "1", "P1_TOPIC_L2": "house/l2"}, "P1_TOPIC_L2"),
        ({"BALANCER_STRATEGY": "greedy"}, "BALANCER_STRATEGY"),
        ({"BALANCER_MAX_A": "30"}, "BALANCER_MAX_A"),
        ({"BALANCER_MAX_A": "4"}, "BALANCER_MAX_A"),
        ({"BALANCER_DEFAULT_CURRENT": "40"}, "BALANCER_DEFAULT_CURRENT"),
        ({"BALANCER_FAILSAFE_CURRENT": "3"}, "BALANCER_FAILSAFE_CURRENT"),
        ({"BALANCER_FAILSAFE_PAUSE_AFTER_S": "0"}, "BALANCER_FAILSAFE_PAUSE_AFTER_S"),
        ({"BALANCER_FAILSAFE_PAUSE_AFTER_S": "soon"}, "BALANCER_FAILSAFE_PAUSE_AFTER_S"),
        ({"BALANCER_RAISE_HOLD_S": "100000"}, "BALANCER_RAISE_HOLD_S"),
        ({"CAPACITY_LIMIT_KW": "0.0001"}, "CAPACITY_LIMIT_KW"),
        ({"CAPACITY_LIMIT_KW": "0.49"}, "CAPACITY_LIMIT_KW"),
        ({"CAPACITY_LIMIT_KW": "nan"}, "CAPACITY_LIMIT_KW"),
        ({"BALANCER_MAX_A": "nan"}, "BALANCER_MAX_A"),
        ({"P1_VOLTAGE": "inf"}, "P1_VOLTAGE"),
        ({"CAPACITY_LIMIT_KW": "five"}, "CAPACITY_LIMIT_KW"),
        ({"CAPACITY_PERIOD_MIN": "30"}, "CAPACITY_PERIOD_MIN"),
        ({"CAPACITY_HOURS": "Mon-Fry 07-19"}, "CAPACITY_HOURS"),
        ({"CAPACITY_HOURS": "07-25"}, "CAPACITY_HOURS"),
        ({"CAPACITY_MONTHS": "13-2"}, "CAPACITY_MONTHS"),
        ({"CAPACITY_PEAKS": "0"}, "CAPACITY_PEAKS"),
        ({"CAPACITY_PEAKS_DISTINCT_DAYS": "maybe"}, "CAPACITY_PEAKS_DISTINCT_DAYS"),
        ({"TZ": "Mars/Olympus_Mons", "CAPACITY_LIMIT_KW": "5"}, "TZ"),
        ({"PV_WINDOW_S": "0"}, "PV_WINDOW_S"),
        ({"PV_IMPORT_ALLOWANCE_W": "-5"}, "PV_IMPORT_ALLOWANCE_W"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_variable(env, values, name):
    with_secrets(env)
    for key, value in values.items():
        env.setenv(key, value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert name in message
    assert "\n" not in message
    assert_secret_free(message + repr(caught.value))


def test_config_error_keeps_no_secret_in_its_chain(env):
    with_secrets(env)
    env.setenv("BALANCER_MAX_A", "30")  # a model-level error: pydantic shows the whole input

    with pytest.raises(ConfigError) as caught:
        load_settings()

    error: BaseException | None = caught.value
    while error is not None:
        details = str(error.errors()) if hasattr(error, "errors") else ""  # a chained ValidationError
        assert_secret_free(str(error) + repr(error) + details)
        error = error.__cause__ or error.__context__


def test_require_cloud_names_only_what_is_missing(env):
    env.setenv("CHARGEAMPS_EMAIL", "owner@example.invalid")
    env.setenv("CHARGEAMPS_API_KEY", API_KEY)

    with pytest.raises(ConfigError) as caught:
        load_settings().require_cloud()

    message = str(caught.value)
    assert "CHARGEAMPS_PASSWORD" in message
    assert "CHARGEAMPS_EMAIL" not in message and "CHARGEAMPS_API_KEY" not in message
    assert_secret_free(message)


# ---- secrets --------------------------------------------------------------------------


def test_secrets_are_secret_str_and_absent_from_repr_and_str(env):
    with_secrets(env)

    s = load_settings()
    s.require_cloud()

    assert isinstance(s.chargeamps_password, SecretStr)
    assert isinstance(s.chargeamps_api_key, SecretStr)
    assert isinstance(s.mqtt_password, SecretStr)
    assert s.chargeamps_password.get_secret_value() == PASSWORD
    assert s.chargeamps_api_key.get_secret_value() == API_KEY
    assert_secret_free(repr(s) + str(s) + s.model_dump_json() + str(s.model_dump()))


# ---- the balancer's and the meter's configuration ------------------------------------------


def test_balancer_config_carries_the_balancer_settings(env):
    env.setenv("BALANCER_MAX_A", "20")
    env.setenv("BALANCER_FUSE_A", "35")
    env.setenv("BALANCER_DEFAULT_CURRENT", "13")
    env.setenv("BALANCER_MIN_CURRENT", "7")
    env.setenv("BALANCER_STALE_AFTER_S", "45")
    env.setenv("BALANCER_FAILSAFE_CURRENT", "0")
    env.setenv("BALANCER_RESTORE_INTERVAL_S", "900")
    env.setenv("BALANCER_RAISE_HOLD_S", "120")
    env.setenv("BALANCER_MIN_PAUSE_S", "400")
    env.setenv("BALANCER_MIN_COMMAND_INTERVAL_S", "25")
    env.setenv("BALANCER_FAILSAFE_PAUSE_AFTER_S", "90")

    cfg = load_settings().balancer_config()

    assert isinstance(cfg, BalancerConfig)
    assert (cfg.max_a, cfg.fuse_a) == (20, 35)
    assert (cfg.default_current, cfg.min_current, cfg.failsafe_current) == (13, 7, 0)
    assert cfg.stale_after_s == 45
    assert cfg.restore_interval_s == 900
    assert cfg.raise_hold_s == 120
    assert cfg.min_pause_s == 400
    assert cfg.min_command_interval_s == 25
    assert cfg.failsafe_pause_after_s == 90


def test_balancer_config_defaults_and_overrides(env):
    s = load_settings()

    default = s.balancer_config()
    overridden = s.balancer_config(max_a=18, default_current=10)

    assert default.raise_hold_s == BalancerConfig().raise_hold_s  # unset: the balancer's own default
    assert (default.max_a, default.fuse_a, default.default_current) == (24, 25, 16)
    assert (default.min_current, default.stale_after_s, default.failsafe_current) == (6, 30, 6)
    assert default.failsafe_pause_after_s == 120
    assert (overridden.max_a, overridden.default_current) == (18, 10)
    assert overridden.fuse_a == 25


@pytest.mark.parametrize("preset", sorted(P1_PRESETS))
def test_every_preset_is_accepted_and_fills_the_meter_source(env, preset):
    env.setenv("P1_PRESET", preset)

    s = load_settings()

    assert s.p1_preset == preset
    assert s.meter_source().topics == tuple(
        t.replace("{device}", P1_PRESETS[preset].default_device or "") for t in P1_PRESETS[preset].topics
    )


def test_explicit_p1_settings_win_over_the_preset(env):
    env.setenv("P1_PRESET", "dsmr-reader")
    env.setenv("P1_TOPIC_L2", "house/l2")
    env.setenv("P1_UNIT", "w")

    meter = load_settings().meter_source()

    assert meter.topics[1] == "house/l2"
    assert meter.topics[0] == P1_PRESETS["dsmr-reader"].topics[0]
    assert meter.unit == "W"


def test_unknown_preset_lists_the_known_ones(env):
    env.setenv("P1_PRESET", "nope")

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert "P1_PRESET" in str(caught.value)
    assert all(name in str(caught.value) for name in P1_PRESETS)


def test_overrides_take_precedence_over_the_environment(env, tmp_path):
    env.setenv("MQTT_PORT", "1999")

    s = load_settings(mqtt_port=2001, chargeamps_state_dir=tmp_path / "s")

    assert s.mqtt_port == 2001
    assert s.chargeamps_state_dir == tmp_path / "s"
    assert isinstance(s, Settings)


def test_finer_balancer_tuning_is_read_from_environment_and_dotenv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("BALANCER_SETTLE_S=12\nBALANCER_OVERSHOOT_TOLERANCE_A=0.25\n")
    monkeypatch.setenv("BALANCER_SETTLE_S", "9")  # the real environment wins over .env
    cfg = load_settings().balancer_config()
    assert cfg.settle_s == 9.0
    assert cfg.overshoot_tolerance_a == 0.25


def test_bad_finer_balancer_tuning_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BALANCER_SETTLE_S", "soon")
    with pytest.raises(ConfigError, match="BALANCER_SETTLE_S"):
        load_settings()


def test_capacity_guard_is_off_without_a_limit_and_built_from_the_settings(env):
    assert load_settings().capacity_config() is None
    env.setenv("CAPACITY_LIMIT_KW", "5")
    env.setenv("CAPACITY_PERIOD_MIN", "15")
    env.setenv("CAPACITY_HOURS", "Mon-Fri 07-19")
    env.setenv("CAPACITY_MONTHS", "11-3")
    env.setenv("CAPACITY_PEAKS", "3")
    env.setenv("CAPACITY_PEAKS_DISTINCT_DAYS", "true")
    env.setenv("CAPACITY_FOLLOW_MONTH_PEAK", "false")
    env.setenv("TZ", "Europe/Stockholm")
    settings = load_settings()
    cfg = settings.capacity_config()
    assert (cfg.limit_kw, cfg.period_min, cfg.peaks, cfg.peaks_distinct_days, cfg.follow_month_peak) == (
        5.0, 15, 3, True, False)
    assert cfg.months == frozenset({11, 12, 1, 2, 3})
    assert cfg.hours.days == frozenset(range(5)) and (cfg.hours.start_hour, cfg.hours.end_hour) == (7, 19)
    assert str(settings.local_zone()) == "Europe/Stockholm"


def test_a_tz_the_bridge_cannot_read_stops_only_a_capacity_guard(env):
    env.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")  # a POSIX rule: not an IANA zone
    assert load_settings().local_zone() is not None  # no guard: the system's zone, no error
    env.setenv("TZ", ":/etc/localtime")
    env.setenv("CAPACITY_LIMIT_KW", "5")
    assert load_settings().local_zone() is not None


# ---- what a person types ------------------------------------------------------------


@pytest.mark.parametrize("name", ["BALANCER_MAX_AA", "BALANSER_MAX_A", "balancer_max_aa"])
def test_a_misspelled_variable_is_a_warning_naming_it_and_the_real_name(env, name):
    env.setenv(name, "20")

    s = load_settings()

    assert s.balancer_max_a == 24  # ignored, as the warning says
    [warning] = s.warnings
    assert name.upper() in warning and "did you mean BALANCER_MAX_A?" in warning


def test_a_misspelled_variable_in_dotenv_is_a_warning_too(env, tmp_path):
    (tmp_path / ".env").write_text("MQTT_HOSTNAME=broker.lan\nCAPACITY_LIMIT=5\n")

    warnings = load_settings().warnings

    assert len(warnings) == 1
    assert "MQTT_HOSTNAME" in warnings[0] and "did you mean MQTT_HOST?" in warnings[0]
    assert "CAPACITY_LIMIT " in warnings[0] and "did you mean CAPACITY_LIMIT_KW?" in warnings[0]


def test_with_strict_config_a_misspelled_variable_is_an_error(env, tmp_path):
    env.setenv("BALANSER_MAX_A", "20")
    env.setenv("STRICT_CONFIG", "true")

    with pytest.raises(ConfigError, match=r"BALANSER_MAX_A .*did you mean BALANCER_MAX_A\?.*STRICT_CONFIG"):
        load_settings()


def test_every_name_the_bridge_reads_and_nothing_unrelated_is_accepted(env, tmp_path):
    from bridge.config import COMPOSE_ONLY_VARIABLES, unknown_variables

    env.setenv("STRICT_CONFIG", "true")
    # The settings, the balancer's finer tuning (BALANCER_<FIELD>), the compose file's own, the
    # dynamic names, and what any shell or container has.
    accepted = {
        "BALANCER_MAX_A": "20", "BALANCER_ROTATE_S": "900", "P1_POWER_TOPIC_L3": "x/y",
        "CIRCUIT_GARAGE_TOPIC_L2": "garage/l2", "TZ": "Europe/Stockholm", "LOG_LEVEL": "DEBUG",
        "CIRCUITS": "garage:16", "CIRCUIT_GARAGE_TOPIC_L1": "garage/l1", "CIRCUIT_GARAGE_TOPIC_L3": "garage/l3",
        "CIRCUIT_GARAGE_JSON_PATH_L1": "a", "CIRCUIT_GARAGE_UNIT": "W", "CIRCUIT_GARAGE_VOLTAGE": "230",
        "HOSTNAME": "nas", "PYTHON_VERSION": "3.11.9", "GPG_KEY": "A035C8C1", "LANG": "C.UTF-8",
        "PYTHONPATH": "/app", "XDG_STATE_HOME": str(tmp_path), "HOME": str(tmp_path),
        **{name: "1883" for name in COMPOSE_ONLY_VARIABLES},
    }
    for name, value in accepted.items():
        env.setenv(name, value)
    assert unknown_variables(accepted) == []
    assert load_settings().warnings == []
    # Not vacuous: the same check finds a prefix of the bridge's and a near miss.
    misspelled = ["PV_WINDOW", "CHARGEAMP_EMAIL", "CIRCUIT_GARAGE_TOPIK_L1"]
    assert [n for n, _ in unknown_variables([*accepted, *misspelled])] == sorted(misspelled)


def test_the_prefixes_come_from_the_settings():
    from bridge.config import setting_prefixes

    assert {"CHARGEAMPS_", "MQTT_", "P1_", "BALANCER_", "CAPACITY_", "PV_", "HA_"} <= set(setting_prefixes())


@pytest.mark.parametrize("value, said", [("nan", "not a number"), ("NaN", "not a number"),
                                         ("inf", "must be a finite number")])
def test_a_float_setting_that_is_no_number_says_so(env, value, said):
    env.setenv("BALANCER_MAX_A", value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    assert f"BALANCER_MAX_A: {said}" in str(caught.value)
    assert "less than" not in str(caught.value)


def test_the_balancers_finer_tuning_says_not_a_number_too(env):
    env.setenv("BALANCER_ROTATE_S", "nan")

    with pytest.raises(ConfigError, match="BALANCER_ROTATE_S='nan': not a number"):
        load_settings()


def test_the_default_client_id_differs_per_base_topic_and_holds_across_starts(env):
    env.setenv("MQTT_BASE_TOPIC", "garage/left")
    first = load_settings().mqtt_client_id
    assert first == load_settings().mqtt_client_id
    env.setenv("MQTT_BASE_TOPIC", "garage/right")
    second = load_settings().mqtt_client_id
    assert first != second and "/" not in first + second
    env.setenv("MQTT_CLIENT_ID", "my-bridge")
    assert load_settings().mqtt_client_id == "my-bridge"


def test_capacity_limit_below_its_minimum_is_refused_and_zero_is_off(env):
    from bridge.balancer.capacity import MIN_CAPACITY_LIMIT_KW

    env.setenv("CAPACITY_LIMIT_KW", "0.0001")
    with pytest.raises(ConfigError, match=f"CAPACITY_LIMIT_KW: the capacity limit must be 0 .off. or from "
                                          f"{MIN_CAPACITY_LIMIT_KW:g}"):
        load_settings()
    env.setenv("CAPACITY_LIMIT_KW", "0")
    assert load_settings().capacity_config() is None
    env.setenv("CAPACITY_LIMIT_KW", str(MIN_CAPACITY_LIMIT_KW))
    assert load_settings().capacity_config().limit_kw == MIN_CAPACITY_LIMIT_KW


def test_a_misspelled_secret_is_named_never_shown(env):
    env.setenv("CHARGEAMPS_PASWORD", PASSWORD)
    [warning] = load_settings().warnings
    assert "CHARGEAMPS_PASWORD" in warning and "did you mean CHARGEAMPS_PASSWORD?" in warning
    assert_secret_free(warning)
    env.setenv("STRICT_CONFIG", "true")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "CHARGEAMPS_PASWORD" in str(caught.value)
    assert_secret_free(str(caught.value))
