"""`chargeamps-bridge demo`: the real service against a simulated house,
charger and cloud (or, with `--transport ocpp`, a simulated OCPP charger connected to the
bridge), on a real broker, in one command."""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from bridge.balancer.model import STRATEGIES
from bridge.cli_args import number_argument
from bridge.config import ConfigError, load_settings
from bridge.mqtt.client import read_retained
from bridge.mqtt.discovery import slug
from bridge.sim.bench import TRANSPORT_LAG_S
from bridge.sim.charger import ChargerModel
from bridge.sim.cloud import (SECOND_HALO_ID, CloudSimulator, SimCar, halo_site, several_cars_account,
                              site_halo_id)
from bridge.sim.house import THREE_PHASES, HouseTrace
from bridge.sim.scenarios import scenario, scenario_names

PHASE_VOLTAGE = 230.0
# The demo's own topics, never a running bridge's: its base topic, and its simulated meter under it.
DEMO_BASE_TOPIC = "chargeamps-demo"
# A scenario starts this long before the house first needs balancing, unless --start says otherwise.
LEAD_IN_S = 300
DEMO_OCPP_CHARGE_POINT = "DEMO-HALO"
DEMO_OCPP_AURA = "DEMO-AURA"  # with --cars 2 or 3 over OCPP: the two outlets of one charger, as on the cloud
OCPP_DEMO_METER_INTERVAL_S = 10  # simulated seconds between the OCPP charger's MeterValues


# `--site N`: a housing co-op's garage. N Halos under one building fuse, each with a three-phase car
# that takes 16 A; the building's own load 40 A a phase, with a step to 80 A for two minutes.
SITE_FUSE_A = 100.0
SITE_MAX_A = 96.0
SITE_CAR_A = 16
SITE_BASE_A = 40.0
SITE_STEP_A = 80.0
SITE_STEP_AT_S = 180
SITE_STEP_S = 120
SITE_DURATION_S = 900
SITE_HALOS_MOST = 50


def site_halo_ids(n: int) -> list[str]:
    """The charge point ids of a `--site N` account, in order (`simulate-cloud --halos N`'s)."""
    return [site_halo_id(i) for i in range(n)]


def site_account(n: int, installation_current: int = SITE_CAR_A) -> CloudSimulator:
    """A simulator (not started) whose account owns `n` Halos, a three-phase car that takes
    SITE_CAR_A plugged into each."""
    return halo_site(n, SimCar("three", SITE_CAR_A), installation_current=installation_current)


def site_trace() -> HouseTrace:
    """The building without its cars: SITE_BASE_A a phase, SITE_STEP_A for SITE_STEP_S from SITE_STEP_AT_S."""
    load = [SITE_STEP_A if SITE_STEP_AT_S <= s < SITE_STEP_AT_S + SITE_STEP_S else SITE_BASE_A
            for s in range(SITE_DURATION_S)]
    return HouseTrace("site", (list(load), list(load), list(load)), tuple([True] * SITE_DURATION_S for _ in range(3)),
                      car_phases=THREE_PHASES, car_max_a=SITE_CAR_A,
                      description=f"a garage's building at {SITE_BASE_A:g} A a phase, {SITE_STEP_A:g} A for "
                      f"{SITE_STEP_S // 60} minutes from minute {SITE_STEP_AT_S // 60}")


def _port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnBroker:
    """mosquitto from PATH on a free loopback port, for as long as the demo runs."""

    def __init__(self) -> None:
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            raise ConfigError(
                "no MQTT broker answers at MQTT_HOST and no `mosquitto` on PATH; install it "
                "(Debian/Ubuntu: apt-get install mosquitto, macOS: brew install mosquitto) "
                "or set MQTT_HOST/MQTT_PORT to a broker"
            )
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chargeamps-demo-"))
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _port_answers("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Tally:
    energy_kwh: float = 0.0
    seconds: int = 0
    seconds_over_max_a: int = 0
    seconds_over_fuse: int = 0
    meter: tuple[float, float, float] = (0.0, 0.0, 0.0)
    car: tuple[float, float, float] = (0.0, 0.0, 0.0)
    first_s: int | None = None
    last_s: int | None = None


class House(threading.Thread):
    """Publishes the P1 currents (house + car) once a simulated second and moves
    the charger model along with what the cloud simulator was told."""

    def __init__(self, trace: HouseTrace, sim: CloudSimulator, charger: ChargerModel, clock,
                 host: str, port: int, topics: tuple[str, str, str], max_a: float, fuse_a: float,
                 username: str | None, password: str | None,
                 outlets: list[tuple[str, int, ChargerModel]] | None = None,
                 model_clock: Callable[[], float] | None = None,
                 plug_ins: list[tuple[float, Callable[[], None]]] | None = None) -> None:
        super().__init__(name="demo-house", daemon=True)
        self.trace, self.sim, self.charger, self.clock = trace, sim, charger, clock
        # Each outlet with a car: (charge point, connector, the car's charger model).
        self.outlets = outlets or [(sim.chargepoint_id, 1, charger)]
        # No cloud simulator (sim None): the OCPP charger moves its car itself, on its own clock.
        self.model_clock = model_clock
        # (simulated second, plug the car in): the OCPP chargers' later cars (the cloud simulator plugs its own).
        self.plug_ins = sorted(plug_ins or [], key=lambda p: p[0])
        self._offered_at: dict[tuple[str, int], float] = {}
        self.topics, self.max_a, self.fuse_a = topics, max_a, fuse_a
        self.tally = Tally()
        self.stop_event = threading.Event()
        self.finished = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"demo-house-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.connect(host, port)
        self.client.loop_start()

    def _follow_cloud(self, now: float) -> None:
        while self.plug_ins and self.plug_ins[0][0] <= now:
            self.plug_ins.pop(0)[1]()
        if self.sim is None:
            return
        self.sim.plug_due(now)
        for cp_id, cid, charger in self.outlets:
            cp = self.sim.charge_points[cp_id]
            conn = cp.connectors[cid]
            offered = 0.0 if conn.mode != "On" or not conn.car_plugged else min(
                conn.max_current, cp.max_current if cp.max_current is not None else math.inf)
            if offered != self._offered_at.get((cp_id, cid)):
                self._offered_at[(cp_id, cid)] = offered
                charger.write(now, int(offered))

    def run(self) -> None:
        second = int(self.clock()) - 1
        while not self.stop_event.is_set():
            now = self.clock()
            self._follow_cloud(now)
            # Every simulated second is stepped, also those a busy machine let pass
            # between two wake-ups: the tally counts the time the clock reached.
            for s in range(second + 1, int(now) + 1):
                if s >= self.trace.duration_s:
                    self.finished.set()
                    return
                self._step(s, now)
                second = s
            self.stop_event.wait(0.02)

    def _step(self, s: int, now: float) -> None:
        at = now if self.model_clock is None else self.model_clock()
        draws = [charger.phase_draw(at) for _, _, charger in self.outlets]
        car = (sum(d[0] for d in draws), sum(d[1] for d in draws), sum(d[2] for d in draws))
        meter = tuple(self.trace.base[p][s] + car[p] for p in range(3))
        for p in range(3):
            if self.trace.metered[p][s]:
                self.client.publish(self.topics[p], f"{meter[p]:.2f}", qos=0)
        t = self.tally
        t.seconds += 1
        t.first_s = s if t.first_s is None else t.first_s
        t.last_s = s
        t.energy_kwh += sum(car) * PHASE_VOLTAGE / 3_600_000
        t.seconds_over_max_a += any(m > self.max_a for m in meter)
        t.seconds_over_fuse += any(m > self.fuse_a for m in meter)
        t.meter, t.car = meter, car

    def close(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)
        self.client.loop_stop()
        self.client.disconnect()


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def first_need_s(trace: HouseTrace, max_a: float, car_a: float) -> int | None:
    """The first second at which the house plus a car drawing `car_a` would exceed MaxA."""
    for s in range(trace.duration_s):
        if any(trace.base[p][s] + (car_a if trace.car_phases[p] else 0.0) > max_a for p in range(3)):
            return s
    return None


def clear_retained(host: str, port: int, topics: list[str], username: str | None,
                   password: SecretStr | None) -> int:
    """Remove every retained message on `topics` (filters); how many there were."""
    found = read_retained(host, port, topics, username=username, password=password) or {}
    if not found:
        return 0
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"demo-cleanup-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password.get_secret_value() if password else None)
    client.connect(host, port)
    client.loop_start()
    try:
        for info in [client.publish(t, b"", qos=1, retain=True) for t in found]:
            info.wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()
    return len(found)


def _phase_text(phases: tuple[bool, bool, bool]) -> str:
    """The simulator's name for a car's phases: "three", or the one phase it uses."""
    return "three" if sum(phases) > 1 else f"L{phases.index(True) + 1}"


def _phase_flags(text: str) -> tuple[bool, bool, bool]:
    return (True, True, True) if text == "three" else tuple(text == f"L{p + 1}" for p in range(3))  # type: ignore[return-value]


def demo_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="chargeamps-bridge demo",
        description="Run the real service against a simulated house, charger and Charge Amps cloud. "
        "Uses the broker at MQTT_HOST/MQTT_PORT when one answers, else starts mosquitto on a free port.",
    )
    parser.add_argument("--scenario", default="evening-oven", choices=scenario_names())
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (1 to 60)")
    parser.add_argument("--duration", type=float, default=None,
                        help="real seconds to run (default: until the scenario ends or Ctrl-C)")
    parser.add_argument("--charger-lag-s", type=float, default=None,
                        help="simulated seconds from a write to the car drawing it (default: 10 with the cloud, "
                        "2 with ocpp)")
    parser.add_argument("--transport", choices=("cloud", "ocpp"), default="cloud",
                        help="cloud: the Charge Amps cloud simulator; ocpp: simulated OCPP 1.6J chargers that "
                        "connect to the bridge (CHARGER_TRANSPORT=ocpp)")
    parser.add_argument("--strategy", choices=STRATEGIES, default=None,
                        help="balancer strategy (default: BALANCER_STRATEGY)")
    parser.add_argument("--start", type=number_argument("--start", minimum=0), default=None, metavar="MINUTES",
                        help="simulated minute of the scenario to begin at (default: "
                        f"{LEAD_IN_S // 60} minutes before the house first needs balancing)")
    parser.add_argument("--ha-discovery", action="store_true",
                        help="publish Home Assistant discovery for the simulated charger (off by default, "
                        "so a Home Assistant on the same broker gets no demo entities)")
    parser.add_argument("--cars", type=int, default=1, choices=(1, 2, 3),
                        help="cars sharing the fuse: 1 (a Halo, as always), 2 (an Aura's two outlets; the "
                        "second car plugs in two simulated minutes in), 3 (and a one-phase car on a second Halo "
                        "four minutes in); over OCPP the chargers DEMO-HALO, DEMO-AURA")
    parser.add_argument("--site", type=int, default=None, metavar="N",
                        help=f"a site: N Halos (2 to {SITE_HALOS_MOST}) on one account, each with a three-phase "
                        f"{SITE_CAR_A} A car, under a building fuse of {SITE_FUSE_A:g} A (MaxA {SITE_MAX_A:g} A) whose "
                        f"own load is {SITE_BASE_A:g} A with a step to {SITE_STEP_A:g} A (replaces --scenario and --cars)")
    args = parser.parse_args(argv)
    if args.site is not None and not 2 <= args.site <= SITE_HALOS_MOST:
        parser.error(f"--site takes 2 to {SITE_HALOS_MOST} Halos")
    if args.site is not None and (args.transport == "ocpp" or args.cars != 1):
        parser.error("--site runs its own cars on the cloud (no --transport ocpp, no --cars)")
    if not 1 <= args.speed <= 60:
        parser.error("--speed must be from 1 to 60")
    if args.charger_lag_s is None:
        args.charger_lag_s = TRANSPORT_LAG_S[args.transport]
    if args.charger_lag_s < 0:
        parser.error("--charger-lag-s cannot be negative")

    from bridge.service import BridgeService
    from bridge.sim.clock import ScaledClock

    base = load_settings()
    logging.getLogger().setLevel(logging.WARNING)
    trace = site_trace() if args.site else scenario(args.scenario)
    cleanup: list = []
    try:
        own_broker = None
        if _port_answers(base.mqtt_host, base.mqtt_port):
            host, port = base.mqtt_host, base.mqtt_port
            print(f"Using the broker at {host}:{port} (base topic {DEMO_BASE_TOPIC}; "
                  "its retained messages are removed when the demo ends)")
        else:
            broker = own_broker = OwnBroker()
            cleanup.append(broker.close)
            host, port = "127.0.0.1", broker.port
            print(f"No broker at {base.mqtt_host}:{base.mqtt_port}; started mosquitto on {host}:{port}")

        installation_current = max(16, min(32, trace.car_max_a))
        ocpp = args.transport == "ocpp"
        sim: CloudSimulator | None = None  # with ocpp, the charger connects to the bridge once it runs
        if args.site:
            sim = site_account(args.site)
        elif not ocpp:
            sim = CloudSimulator(installation_current=installation_current) if args.cars == 1 else \
                several_cars_account({}, installation_current=installation_current)
        if sim is not None:
            sim.start()
            cleanup.append(sim.stop)
        # The OCPP charger's car runs on real time: its lag is the simulated one over the speed.
        charger = ChargerModel(lag_s=args.charger_lag_s / args.speed if ocpp else args.charger_lag_s,
                               phases=trace.car_phases, car_max_a=trace.car_max_a)
        if args.start is not None:
            start_s = min(args.start * 60, trace.duration_s - 1)
        elif args.site:
            start_s = 0
        else:
            need = first_need_s(trace, base.balancer_max_a, min(trace.car_max_a, base.balancer_default_current))
            start_s = 0 if need is None else max(0, need - LEAD_IN_S)
        clock = ScaledClock(args.speed, start_s)

        # The trace's car at the first outlet; with more cars, a three-phase 16 A car plugging in
        # two minutes in, and a one-phase (L1) 16 A car on the second Halo at four minutes.
        first_cp = sim.chargepoint_id if sim is not None else DEMO_OCPP_AURA if args.cars >= 2 else DEMO_OCPP_CHARGE_POINT
        cars = [(first_cp, 1, SimCar(phases=_phase_text(trace.car_phases), max_a=trace.car_max_a))]
        if args.site:
            cars = [(cp, 1, SimCar("three", SITE_CAR_A)) for cp in site_halo_ids(args.site)]
        if args.cars >= 2:
            cars.append((first_cp, 2, SimCar("three", 16, plug_in_s=start_s + 120)))
        if args.cars >= 3:
            cars.append((SECOND_HALO_ID if sim is not None else DEMO_OCPP_CHARGE_POINT, 1,
                         SimCar("L1", 16, plug_in_s=start_s + 240)))
        outlets: list[tuple[str, int, ChargerModel]] = []
        for cp_id, cid, car in cars:
            model = charger if not outlets else ChargerModel(
                lag_s=charger.lag_s, phases=_phase_flags(car.phases), car_max_a=car.max_a)
            if sim is not None:
                conn = sim.plug(cp_id, cid, car)
                conn.draw_override = lambda offered, now, m=model: m.phase_draw(clock())
            outlets.append((cp_id, cid, model))
        state_dir = Path(tempfile.mkdtemp(prefix="chargeamps-demo-state-"))
        cleanup.append(lambda: shutil.rmtree(state_dir, ignore_errors=True))
        ocpp_password = uuid.uuid4().hex
        if sim is not None:
            reach: dict = dict(chargeamps_base_url=sim.url, chargeamps_email=sim.email, chargeamps_password=sim.password,
                               chargeamps_api_key=sim.api_key, chargeamps_chargepoint_id=None)
        else:
            reach = dict(charger_transport="ocpp", ocpp_host="127.0.0.1", ocpp_port=_free_port(),
                         ocpp_charge_points=",".join(dict.fromkeys(cp for cp, _, _ in cars)),
                         chargeamps_chargepoint_id=first_cp if args.cars == 1 else None,
                         ocpp_password=SecretStr(ocpp_password), ocpp_upstream_url=None,
                         ocpp_meter_interval_s=max(1.0, OCPP_DEMO_METER_INTERVAL_S / args.speed))
        overrides = dict(
            **reach, chargeamps_state_dir=state_dir,
            chargeamps_poll_interval=max(10.0, base.chargeamps_poll_interval), mqtt_host=host, mqtt_port=port,
            mqtt_client_id=f"chargeamps-bridge-demo-{uuid.uuid4().hex[:6]}",
            # Its own topics: nothing it publishes lands on a running bridge's topics, meter or
            # Home Assistant (discovery only when asked).
            mqtt_base_topic=DEMO_BASE_TOPIC, ha_discovery=args.ha_discovery, p1_preset=None, p1_device=None,
            p1_unit="A", p1_heartbeat_topic=None,
            chargeamps_connectors=None if len(outlets) == 1 else ",".join(f"{cp}:{n}" for cp, n, _ in outlets),
            **{f"p1_topic_l{n}": f"{DEMO_BASE_TOPIC}/meter-sim/current_l{n}" for n in (1, 2, 3)},
            **{f"p1_json_path_l{n}": None for n in (1, 2, 3)},
        )
        if args.strategy:
            overrides["balancer_strategy"] = args.strategy
        if args.site:
            overrides.update(balancer_fuse_a=SITE_FUSE_A, balancer_max_a=SITE_MAX_A)
        settings = load_settings(**overrides)
        if own_broker is None:
            # After the service has said `offline` (the cleanup runs in reverse order of start).
            leftovers = [f"{DEMO_BASE_TOPIC}/#"]
            if settings.ha_discovery:
                leftovers.append(f"{settings.ha_discovery_prefix.strip('/')}/+/{slug(DEMO_BASE_TOPIC)}/+/config")
            cleanup.insert(0, lambda: clear_retained(host, port, leftovers, settings.mqtt_username,
                                                     settings.mqtt_password))
        service = BridgeService(settings, clock=clock)
        service.start()
        cleanup.insert(0, service.stop)
        ocpp_chargers = []
        plug_ins: list[tuple[float, Callable[[], None]]] = []
        if ocpp:
            from bridge.sim.ocpp_charger import SimCharger

            for cp_id in dict.fromkeys(cp for cp, _, _ in cars):
                mine = [(cid, car, model) for (cp, cid, car), (_, _, model) in zip(cars, outlets) if cp == cp_id]
                point = SimCharger(f"ws://127.0.0.1:{settings.ocpp_port}/ocpp", cp_id,
                                   connectors=max(cid for cid, _, _ in mine), password=ocpp_password,
                                   model="Aura" if cp_id == DEMO_OCPP_AURA else "Halo")
                for cid, car, model in mine:
                    if car.plug_in_s is None or car.plug_in_s <= start_s:
                        point.plug(cid, model)  # the car's model, on its phases
                    else:
                        plug_ins.append((car.plug_in_s, lambda p=point, c=cid, m=model: p.plug(c, m)))
                point.start_in_thread()
                ocpp_chargers.append(point)
                cleanup.insert(1, point.stop)  # after the service: a bridge that stops warns of no charger gone
        house = House(trace, sim, charger, clock, host, port, service.meter.topics, settings.balancer_max_a,
                      settings.balancer_fuse_a, settings.mqtt_username,
                      settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
                      outlets=outlets, model_clock=time.monotonic if ocpp else None, plug_ins=plug_ins)
        house.start()
        cleanup.insert(0, house.close)

        b = settings.mqtt_base_topic
        print(f"Scenario {trace.name}: {trace.description}")
        print(f"Strategy {settings.balancer_strategy}, MaxA {settings.balancer_max_a:g} A, speed x{args.speed:g}, "
              f"charger lag {args.charger_lag_s:g} s")
        print(f"Watch the topics: mosquitto_sub -h {host} -p {port} -v -t '{b}/#'")
        print(f"{'time':>8} {'L1':>6} {'L2':>6} {'L3':>6} {'ChargeAt':>8} {'LoadBal':>7} {'car':>5}  reason")
        end = None if args.duration is None else time.monotonic() + args.duration

        shown: list[int] = []

        def row() -> None:
            d, t = service.decision, house.tally
            if d is not None and t.last_s is not None and t.last_s not in shown[-1:]:
                shown.append(t.last_s)
                print(f"{_hms(t.last_s):>8} {t.meter[0]:>6.1f} {t.meter[1]:>6.1f} {t.meter[2]:>6.1f} "
                      f"{d.charge_at:>8d} {max(d.loadbal):>7.1f} {max(t.car):>5.1f}  {d.reason}", flush=True)
                if args.site:
                    # A line a connector would be a screen a second: how many charge, how many wait.
                    given = sum(1 for c in d.connectors if c.charge_at > 0)
                    print(f"{'':>8}   {given} of {len(d.connectors)} cars given current, "
                          f"{sum(1 for c in d.connectors if c.charging)} charging", flush=True)
                    return
                for c in getattr(d, "connectors", ()) if len(outlets) > 1 else ():
                    print(f"{'':>8}   {c.key:<17} priority {c.priority}  ChargeAt {c.charge_at:>2d} A  "
                          f"{'charging' if c.charging else 'not charging':<12}  {c.reason}", flush=True)

        try:
            while not house.finished.is_set() and (end is None or time.monotonic() < end):
                time.sleep(1.0)
                row()
        except KeyboardInterrupt:
            print()
        house.close()  # the tally stops here: the last row and the summary show the same time
        row()
        t = house.tally
        if ocpp_chargers:
            writes, what = sum(len(point.received) for point in ocpp_chargers), "charging profiles"
        else:
            writes, what = sum(1 for w in sim.writes if w[3] == "maxCurrent"), "cloud writes"
        reached = ("00:00:00 simulated" if t.first_s is None else
                   f"{_hms(t.last_s - t.first_s)} simulated, {_hms(t.first_s)} to {_hms(t.last_s)}")
        print(f"Summary after {reached}: car energy {t.energy_kwh:.2f} kWh, "
              f"time over MaxA {t.seconds_over_max_a} s, over the fuse {t.seconds_over_fuse} s, {what} {writes}")
        return 0
    finally:
        for close in cleanup:
            try:
                close()
            except Exception as e:  # cleaning up: report and go on with the rest
                print(f"demo: cleanup: {e}", file=sys.stderr)
