"""The `chargeamps-bridge` command line.

Exit codes: 0 ok, 1 runtime or cloud error, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable

from bridge import __version__
from bridge.config import ConfigError, Settings, load_settings
from bridge.limits import MAX_CURRENT_A, MIN_CURRENT_A, LimitError, check_charger_current
from bridge.cli_args import number_argument
from bridge.units import format_kw

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("bridge")


class RedactSecrets(logging.Filter):
    """Last line of defence: a secret that reaches a log record anyway is masked."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(s in message for s in self.secrets):
                record.msg, record.args = redact(message, self.secrets), None
        return True


def setup_logging(level: str, secrets: list[str] | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets or []))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 logs each retry as a warning; the bridge and the commands say what failed themselves.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def settings_secrets(s: Settings) -> list[str]:
    return [
        v.get_secret_value()
        for v in (s.chargeamps_password, s.chargeamps_api_key, s.mqtt_password, s.ocpp_password,
                  s.ocpp_upstream_password)
        if v is not None
    ]


def _client(s: Settings):
    from bridge.eapi import client_from_settings

    s.require_cloud()
    return client_from_settings(s)


def _chargepoint_id(s: Settings, client) -> str:
    if s.chargeamps_chargepoint_id:
        return s.chargeamps_chargepoint_id
    cps = client.owned_chargepoints()
    if not cps:
        raise ConfigError("the account owns no charge point")
    return cps[0].id


# ---- commands ------------------------------------------------------------------


def cmd_run(args, s: Settings) -> int:
    from bridge.instance import InstanceConflict, claim
    from bridge.service import BridgeService

    try:
        lock = claim(s)  # held until the process ends
    except InstanceConflict as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return BridgeService(s).run_forever()
    finally:
        if lock is not None:
            lock.release()


def cmd_login(args, s: Settings) -> int:
    client = _client(s)
    cps = client.login()
    print(f"Logged in as {s.chargeamps_email}; tokens stored in {s.token_file}")
    if not cps:
        print("The account owns no charge point.")
    for cp in cps:
        connectors = ", ".join(f"{c.connector_id} ({c.type})" for c in (cp.connectors or []))
        print(f"  {cp.id}  {cp.name or ''}  {cp.type or ''}  connectors: {connectors}")
    return EXIT_OK


def _readable(read: Callable[[], object]) -> tuple[object | None, str | None]:
    """(the settings, None), or (None, why) when the cloud would not give them: the rest of
    `status` is still worth showing."""
    from bridge.eapi import AuthError, EapiError

    try:
        return read(), None
    except AuthError:
        raise  # nothing else will be readable either
    except EapiError as e:
        return None, str(e)


def _status_data(s: Settings, client) -> list[dict]:
    wanted = s.chargeamps_chargepoint_id
    out = []
    for cp in client.owned_chargepoints():
        if wanted and cp.id != wanted:
            continue
        status = client.status(cp.id)
        settings, settings_error = _readable(lambda: client.chargepoint_settings(cp.id))
        connectors = []
        for c in cp.connectors or []:
            cs, cs_error = _readable(lambda: client.connector_settings(cp.id, c.connector_id))
            st = next((x for x in status.connector_statuses or [] if x.connector_id == c.connector_id), None)
            connectors.append({
                "connector_id": c.connector_id,
                "type": c.type,
                "status": st.status if st else None,
                "currents": {str(m.phase): m.current for m in (st.measurements or [])} if st else {},
                "power_kw": st.charging_power_kw if st else None,
                "session_energy_kwh": st.total_consumption_kwh if st else None,
                "max_current": cs.max_current if cs else None,
                "mode": cs.mode if cs else None,
                "installation_current": cs.installation_current if cs else None,
                "settings_error": cs_error,
            })
        out.append({
            "id": cp.id, "name": cp.name, "type": cp.type, "status": status.status,
            "max_current": settings.max_current if settings else None,
            "installation_current": settings.installation_current if settings else None,
            "settings_error": settings_error,
            "connectors": connectors,
        })
    if wanted and not out:
        raise ConfigError(f"CHARGEAMPS_CHARGEPOINT_ID: charge point {wanted} is not owned by this account")
    return out


def _amps_text(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g} A"


def cmd_status(args, s: Settings) -> int:
    data = _status_data(s, _client(s))
    if args.json:
        print(json.dumps({"chargepoints": data}, indent=2, default=str))
        return EXIT_OK
    for cp in data:
        print(f"Charge point {cp['id']}  {cp['name'] or ''}  {cp['type'] or ''}  {cp['status']}")
        if cp["settings_error"]:
            print(f"  settings not readable: {cp['settings_error']}")
        else:
            print(f"  max current {_amps_text(cp['max_current'])}, "
                  f"installation current {_amps_text(cp['installation_current'])}")
        print(f"  {'conn':<5}{'type':<9}{'status':<14}{'L1':>6}{'L2':>6}{'L3':>6}{'kW':>7}{'kWh':>8}{'max A':>7}  mode")
        for c in cp["connectors"]:
            cur = [c["currents"].get(p) for p in ("L1", "L2", "L3")]
            cells = "".join(f"{x:>6.1f}" if x is not None else f"{'-':>6}" for x in cur)
            print(
                f"  {c['connector_id']:<5}{str(c['type']):<9}{str(c['status']):<14}{cells}"
                f"{format_kw(c['power_kw'] or 0):>7}{(c['session_energy_kwh'] or 0):>8.2f}"
                f"{'-' if c['max_current'] is None else format(c['max_current'], 'g'):>7}  {c['mode'] or '-'}"
            )
        for c in cp["connectors"]:
            if c["settings_error"]:
                print(f"  connector {c['connector_id']}: settings not readable: {c['settings_error']}")
    return EXIT_OK


_amps_argument = number_argument("AMPS")


def cmd_set_current(args, s: Settings) -> int:
    amps = args.amps
    try:
        check_charger_current(amps, MAX_CURRENT_A)
    except LimitError:
        print(f"error: AMPS must be 0 (pause) or whole amps from {MIN_CURRENT_A} to {MAX_CURRENT_A}; got {amps:g}",
              file=sys.stderr)
        return EXIT_USAGE
    client = _client(s)
    cp = _chargepoint_id(s, client)
    try:
        applied = client.set_current(cp, s.chargeamps_connector_id, int(amps), level=s.chargeamps_current_level)
    except ValueError as e:  # e.g. above the installation current
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    where = "charge point" if s.chargeamps_current_level == "chargepoint" else f"connector {s.chargeamps_connector_id}"
    print(f"{cp} {where}: max current {applied:g} A")
    return EXIT_OK


def cmd_simulate_cloud(argv: list[str]) -> int:
    from bridge.sim.cloud import main as simulate_main

    return simulate_main(argv)


def cmd_simulate_charger(argv: list[str]) -> int:
    from bridge.sim.ocpp_charger import main as simulate_main

    return simulate_main(argv)


def cmd_bench(argv: list[str]) -> int:
    from bridge.sim.bench import bench_main

    return bench_main(argv)


def cmd_demo(argv: list[str]) -> int:
    from bridge.sim.demo import demo_main

    return demo_main(argv)


# Commands with a parser of their own: everything after the name is theirs.
DELEGATED: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "simulate-cloud": (cmd_simulate_cloud, "run the Charge Amps EAPI v5 simulator (see `simulate-cloud --help`)"),
    "simulate-charger": (cmd_simulate_charger, "run a simulated OCPP 1.6J charger against a central system "
                         "(see `simulate-charger --help`)"),
    "bench": (cmd_bench, "replay traces through the balancer strategies and compare them (see `bench --help`)"),
    "demo": (cmd_demo, "run the whole system against simulators (see `demo --help`)"),
}


# ---- entry -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chargeamps-bridge",
        description="Per-phase load balancer and MQTT bridge for Charge Amps chargers. "
        "Configuration comes from environment variables and a .env file (see docs/configuration.md).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run the service: MQTT in and out, balancing, cloud writes",
                   description="Run the bridge until SIGTERM/Ctrl-C.").set_defaults(func=cmd_run)
    sub.add_parser("login", help="check the credentials, store the tokens, list charge points",
                   description="Log in to the Charge Amps cloud, store the tokens (never printed) "
                   "and list the owned charge points.").set_defaults(func=cmd_login)
    st = sub.add_parser("status", help="show charge point, connectors, currents and settings",
                        description="Show the charge point(s), connector status, per-phase currents, "
                        "session energy and settings.")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_status)
    sc = sub.add_parser("set-current", help=f"set the charging current (0 or {MIN_CURRENT_A}..{MAX_CURRENT_A} A)",
                        description="Write the charging current (connector maxCurrent, or the charge point's "
                        "with CHARGEAMPS_CURRENT_LEVEL=chargepoint), read it back and print it.")
    sc.add_argument("amps", type=_amps_argument, metavar="AMPS", help=f"0 pauses; {MIN_CURRENT_A} to {MAX_CURRENT_A}, not above the installation current")
    sc.set_defaults(func=cmd_set_current)
    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, help=text, description=text)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    secrets: list[str] = []
    try:
        if argv and argv[0] in DELEGATED:
            setup_logging("INFO")
            return DELEGATED[argv[0]][0](argv[1:])
        args = parser.parse_args(argv)
        settings = load_settings()
        secrets = settings_secrets(settings)
        setup_logging(settings.log_level, secrets)
        for warning in settings.warnings:
            logging.getLogger("bridge.config").warning("%s", warning)
        return args.func(args, settings)
    except ConfigError as e:
        print(redact(f"configuration error: {e}", secrets), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as e:
        from bridge.eapi import EapiError

        # Messages are meant to be secret-free; masking again costs nothing.
        if isinstance(e, EapiError):
            print(redact(f"error: {e}", secrets), file=sys.stderr)
            return EXIT_ERROR
        logging.getLogger("bridge").debug("internal error", exc_info=True)
        print(redact(f"internal error: {type(e).__name__}: {e} (LOG_LEVEL=DEBUG shows where)", secrets),
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
