"""Several connectors on one fuse: which car gets how many amps, per house phase.

Pure: no I/O, no clock (every call passes `now`), no threads, deterministic.

With one connector `SharedBalancer` is today's `Balancer` (it delegates), so the
one-car behaviour is unchanged. With several, each connector keeps its own
`Balancer` as the store of its inputs (its charger's reports, its commands) and
the adaptive strategy's reading of them: what its car may draw on each phase
while a command is on its way, and that a car offered enough but drawing
nothing is drawing nothing. On top of that, per house phase:

- the house's own load is the meter less what all cars may draw there; the
  cars' total on a phase is cut at once when it is above the headroom (beyond
  the cut tolerance), by the allocation of `share` for that headroom (never
  raising anyone in a cut);
- raises wait until the headroom has held (the quick hold while every
  connector's write budget can pay for a raise and its cut, else the raise
  hold, doubled for each cut soon after a raise), and then go to the
  allocation the headroom allowed over the hold; amps move from one car to
  another cut first: a raise waits until no written change is still settling;
- a connector is written no faster than `min_command_interval_s` for raises,
  each from its own write budget; cuts are never delayed;
- who charges when not every car can have the minimum: `share` admits cars in
  precedence order (higher priority first; among equals a car in the middle of
  its turn, then the one with the least energy in the last `rotate_s`, then the
  least since its car plugged in, then the one paused longest), so the lowest
  priority pauses first and equals take turns of `rotate_s`, also when a power
  budget rather than a phase is what has room for one car only; a paused
  connector resumes no sooner than `min_pause_s` after its pause;
- turns change on the clock: at multiples of `rotate_s` of the wall clock the
  service tells (`align_turns`; a turn begun less than half a turn before such a
  boundary runs on to the next one), and a changeover never pauses every
  charging car in one decision: some keep their amps while the next cars start
  in the room the others free, within the fuse with the paused ones still counted
  (else once those pauses have settled, without a further raise hold).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.balancer.adaptive import LANDING_TOLERANCE_A, PHASE_IN_USE_A, WRITES_PER_RAISE, AdaptiveStrategy
from bridge.balancer.circuits import MAIN, Circuit, CircuitRoom, CircuitTree, binding, circuit_rooms, circuits_over
from bridge.balancer.core import Balancer, fail_safe, fail_safe_cap, fail_safe_current, meter_staleness
from bridge.balancer.loads import LoadTracker
from bridge.balancer.model import (
    DEFAULT_STRATEGY,
    PHASES,
    BalancerConfig,
    Decision,
    OptTriple,
    Triple,
    CutCycles,
    WriteBudget,
    connector_limit,
    min_pause_left,
    paused_by_power_limit,
    phase_name,
    raise_holds,
    waiting_for_meter,
)

PRIORITY_RANGE = (0, 9)
DEFAULT_PRIORITY = 5
IDENTITY_PHASES = (0, 1, 2)
# A car that draws this much below its setting in two reports in a row takes less than offered.
LIMITED_GAP_A = 2.0
LIMITED_REPORTS = 2
ENERGY_BUCKET_S = 10.0
# Amps are moved from one car to another (a cut and a raise: two writes) for a resume, or for a
# raise of at least this much; a smaller evening-out is not worth the writes.
MOVE_MIN_STEP_A = 2
# A charging car is raised by at least this much (or to its cap) unless its write budget is within
# this many writes of full: a load that falls slowly is not followed an amp a write, but a quiet
# house gets its last amp.
RAISE_MIN_STEP_A = 2
SMALL_RAISE_SPARE_WRITES = 4

# A step of the meter on every phase of a car (two phases at least: one phase's step is no proof),
# within this window and matching the car's own draw within LANDING_TOLERANCE_A, is that car: its
# draw falling to nothing (full, its own timer, unplugged) or a car held idle waking up.
STEP_WINDOW_S = 3.0
# A site's reason names this many connectors at most and counts the rest: twenty cars held where
# they are are one line, not twenty (it goes out in `balancer/state` and in the decision log).
NAMED_IN_SUMMARY = 4
STEP_MIN_PHASES = 2

_ENTRY = re.compile(r"^(?P<cp>[^:/@\s,]+):(?P<n>\d+)(?:/(?P<phases>[^/@\s]*))?(?:@(?P<circuit>[^@\s]*))?$")


# ---- which connectors -------------------------------------------------------------

@dataclass(frozen=True)
class ConnectorSpec:
    """One connector on the shared fuse."""

    key: str  # "CP:N", e.g. "2001:1"
    # The house phase that the charger's L1, L2, L3 are wired to ("/L2L3L1" gives (1, 2, 0)).
    phase_map: tuple[int, int, int] = IDENTITY_PHASES
    priority: int = DEFAULT_PRIORITY  # 0..9, higher first
    circuit: str = MAIN  # the circuit it is on (`@garage`); the main fuse when none is named

    def __post_init__(self) -> None:
        if _ENTRY.match(self.key) is None or "/" in self.key or "@" in self.key:
            raise ValueError(f"connector {self.key!r} must be CHARGEPOINT:CONNECTOR, e.g. 2001:1")
        if sorted(self.phase_map) != list(PHASES):
            raise ValueError(f"connector {self.key}: the phase map must use L1, L2, L3 once each, "
                             f"got {self.phase_map!r}")
        check_priority(self.priority)

    @property
    def chargepoint(self) -> str:
        return split_key(self.key)[0]

    @property
    def connector(self) -> int:
        return split_key(self.key)[1]


def split_key(key: str) -> tuple[str, int]:
    """"2001:2" -> ("2001", 2)."""
    chargepoint, _, number = key.rpartition(":")
    return chargepoint, int(number)


def check_priority(priority: object) -> int:
    low, high = PRIORITY_RANGE
    if isinstance(priority, bool) or not isinstance(priority, int) or not low <= priority <= high:
        raise ValueError(f"priority must be a whole number from {low} to {high}, got {priority!r}")
    return priority


def parse_phase_map(text: str) -> tuple[int, int, int]:
    """`L2L3L1` -> (1, 2, 0): the house phases that the charger's L1, L2, L3 are wired to."""
    names = re.findall(r"L[123]", text.upper())
    if "".join(names) != text.upper() or sorted(names) != ["L1", "L2", "L3"]:
        raise ValueError(f"phases {text!r} must name L1, L2 and L3 once each, in the order "
                         "the charger's L1, L2, L3 are wired to (e.g. L2L3L1)")
    return (int(names[0][1]) - 1, int(names[1][1]) - 1, int(names[2][1]) - 1)


def parse_connectors(text: str) -> list[ConnectorSpec]:
    """`2001:1@garage,2001:2@garage,2002:1/L2L3L1` -> specs; ValueError names the bad entry."""
    specs: list[ConnectorSpec] = []
    entries = [e.strip() for e in text.split(",")]
    if not any(entries):
        raise ValueError("no connector listed; expected CHARGEPOINT:CONNECTOR entries such as 2001:1,2001:2")
    for entry in entries:
        if not entry:
            raise ValueError(f"empty entry in connector list {text!r}")
        match = _ENTRY.match(entry)
        if match is None:
            raise ValueError(f"connector entry {entry!r}: expected CHARGEPOINT:CONNECTOR[/PHASES][@CIRCUIT], "
                             "e.g. 2001:1, 2002:1/L2L3L1 or 2001:2@garage")
        if int(match["n"]) < 1:
            raise ValueError(f"connector entry {entry!r}: connectors are numbered from 1")
        phase_map = IDENTITY_PHASES
        if match["phases"] is not None:
            try:
                phase_map = parse_phase_map(match["phases"])
            except ValueError as e:
                raise ValueError(f"connector entry {entry!r}: {e}") from None
        key = f"{match['cp']}:{int(match['n'])}"
        if any(s.key == key for s in specs):
            raise ValueError(f"connector entry {entry!r}: {key} is listed twice")
        circuit = MAIN if match["circuit"] is None else match["circuit"].strip()
        if not circuit:
            raise ValueError(f"connector entry {entry!r}: no circuit named after @")
        specs.append(ConnectorSpec(key=key, phase_map=phase_map, circuit=circuit))
    return specs


# ---- the allocation ---------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """What one connector may be given, for `share`."""

    key: str
    phases: tuple[int, ...]  # house phases its car draws on
    cap: int  # the most it may be given; below the minimum it may not charge
    priority: int = DEFAULT_PRIORITY
    fixed: int | None = None  # a charger that cannot be written: held at this, first
    held: int = 0  # what it has now: an amp that cannot be split evenly stays where it is
    # What one amp counts in a power budget: the house phases its car draws on (None: `phases`);
    # 0 for an outlet whose car draws nothing (no car, or a full one).
    power_phases: int | None = None

    @property
    def weight(self) -> int:
        return len(self.phases) if self.power_phases is None else self.power_phases


@dataclass(frozen=True)
class PowerBudget:
    """A power limit on a group of connectors (the capacity tariff's allowance for every car, the
    solar surplus for those charging from it): the connectors in `keys` (None: every one) together
    stay within `phase_amps`, each counting its amps times the house phases its car draws on
    (`Claim.weight`); watts are phase-amps times the voltage."""

    phase_amps: float
    keys: frozenset[str] | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.phase_amps) and self.phase_amps >= 0):
            raise ValueError(f"a power budget must be a finite number of at least 0, got {self.phase_amps!r}")

    def holds(self, key: str) -> bool:
        return self.keys is None or key in self.keys


def share(budget: Sequence[float], claims: Sequence[Claim], min_current: int,
          powers: Sequence[PowerBudget] = (), circuits: Sequence[CircuitRoom] = ()) -> dict[str, int]:
    """Whole amps per connector: per house phase the connectors on it together stay within
    `budget`, those under each circuit of `circuits` within its room on that phase, and the
    connectors of each power budget in `powers` within it; each gets 0 or
    `min_current` up to its cap. `claims` come in precedence order: a claim gets its minimum when
    it fits after those before it (so the last pause first). Then, priority by priority from the
    highest, the admitted ones are raised one amp at a time, the lowest first (max-min fair; among
    equals the one that holds more now, so an odd amp does not move back and forth), while their
    phases and power budgets have an amp left: a higher priority reaches its cap before a lower one
    gets more than its minimum. A car whose circuit is full stops there; the others go on (max-min
    fair over the whole tree)."""
    left = [float(b) for b in budget]
    room = [float(pb.phase_amps) for pb in powers]
    mine = {c.key: [i for i, pb in enumerate(powers) if pb.holds(c.key)] for c in claims}
    feeder = [list(r.room) for r in circuits]
    under = {c.key: [i for i, r in enumerate(circuits) if r.holds(c.key)] for c in claims}

    def fits(c: Claim, amps: int) -> bool:
        return (all(left[p] >= amps for p in c.phases)
                and all(feeder[i][p] >= amps for i in under[c.key] for p in c.phases)
                and all(room[i] >= amps * c.weight for i in mine[c.key]))

    def take(c: Claim, amps: int) -> None:
        for p in c.phases:
            left[p] -= amps
            for i in under[c.key]:
                feeder[i][p] -= amps
        for i in mine[c.key]:
            room[i] -= amps * c.weight

    amps: dict[str, int] = {}
    for c in claims:
        if c.fixed is not None:
            amps[c.key] = c.fixed
            take(c, c.fixed)
    admitted: list[Claim] = []
    for c in claims:
        if c.fixed is not None:
            continue
        if c.cap >= min_current and fits(c, min_current):
            amps[c.key] = min_current
            take(c, min_current)
            admitted.append(c)
        else:
            amps[c.key] = 0
    order = {c.key: i for i, c in enumerate(admitted)}
    for level in sorted({c.priority for c in admitted}, reverse=True):
        group = [c for c in admitted if c.priority == level]
        while True:
            growable = [c for c in group if amps[c.key] < c.cap and fits(c, 1)]
            if not growable:
                break
            c = min(growable, key=lambda g: (amps[g.key], -g.held, order[g.key]))
            amps[c.key] += 1
            take(c, 1)
    return amps


def least_cut(headroom: Sequence[float], targets: dict[str, int], fair: dict[str, int],
              phases: dict[str, tuple[int, ...]], min_current: int, tolerance: float = 0.0) -> dict[str, int]:
    """A cut that writes as few connectors as it can: while a phase is over its headroom (beyond
    `tolerance`), one connector on it gives up all that phase needs when it can keep the minimum
    (the one furthest above its `fair` share); else the one furthest above its fair share goes
    to that share. Never raises anyone. Evening out is left to the raises that follow."""
    new = dict(targets)

    def over() -> dict[int, float]:
        load = [sum(new[k] for k in new if p in phases[k] and new[k] >= min_current) for p in range(3)]
        return {p: load[p] - headroom[p] for p in range(3) if load[p] > headroom[p] + tolerance}

    while (excess := over()):
        need = {k: math.ceil(max(excess[p] for p in phases[k] if p in excess))
                for k in new if new[k] >= min_current and set(phases[k]) & set(excess)}
        if not give_way(new, need, fair, {k: min_current for k in need}):
            return {k: min(new[k], fair[k]) for k in new}
    return new


def give_way(new: dict[str, int], need: dict[str, int], fair: dict[str, int], keep: dict[str, int]) -> bool:
    """One step of a cut that writes as few connectors as it can, in place: of the connectors in
    `need`, one that can give all it needs and still have its `keep` gives it (the one furthest
    above its `fair` share, then the one with most); else the one furthest above its fair share
    goes to that share. False when none is above its fair share (nothing was changed)."""
    whole = [k for k in need if new[k] - need[k] >= keep[k]]
    if whole:
        k = max(whole, key=lambda c: (new[c] - fair[c], new[c], c))
        new[k] -= need[k]
        return True
    above = [k for k in need if new[k] > fair[k]]
    if not above:
        return False
    k = max(above, key=lambda c: (new[c] - fair[c], c))
    new[k] = fair[k]
    return True


def next_turn_change(wall_s: float, rotate_s: float) -> float:
    """The first moment after `wall_s` (seconds of the site's local clock) at which the cars' turns
    change: they change at its multiples of `rotate_s` (BALANCER_ROTATE_S), the quarter hours."""
    return (math.floor(wall_s / rotate_s) + 1) * rotate_s


def duration_text(seconds: float) -> str:
    """"45 s" under two minutes, else "30 min"."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


# ---- the balancer -----------------------------------------------------------------

@dataclass(frozen=True)
class ConnectorDecision:
    key: str
    charge_at: int  # what the balancer gives it (0 = paused)
    command: int | None  # the value to write now; None = nothing to send
    reason: str
    paused: bool
    draw: Triple  # what its car may draw per house phase (the most)
    charging: bool  # a car takes current (not: no car, full, paused)
    phases: tuple[int, ...]  # the house phases its car draws on
    priority: int

    def to_dict(self) -> dict[str, Any]:
        chargepoint, connector = split_key(self.key)
        return {
            "chargepoint": chargepoint,
            "connector": connector,
            "phases": [phase_name(p) for p in self.phases],
            "priority": self.priority,
            "charge_at": self.charge_at,
            "draw": [round(float(d), 3) for d in self.draw],
            "charging": self.charging,
            "reason": self.reason,
        }

    def line(self) -> dict[str, Any]:
        """What a site's `balancer/state` holds of it, one line on a dashboard: which connector, what it
        is given, whether a car takes it (its detail is `to_dict()`, on the connector's own topic)."""
        chargepoint, connector = split_key(self.key)
        return {"chargepoint": chargepoint, "connector": connector, "charge_at": self.charge_at,
                "charging": self.charging}


def amps_of(given: dict[str, int], keys: Sequence[str] | None = None) -> str:
    """`keys` (all of `given` when None) with their amps, "2001:1 8 A, 2001:2 8 A", the first
    NAMED_IN_SUMMARY named and the rest counted with their sum."""
    keys = list(given if keys is None else keys)
    named = ", ".join(f"{k} {given[k]} A" for k in keys[:NAMED_IN_SUMMARY])
    rest = keys[NAMED_IN_SUMMARY:]
    if not rest:
        return named
    return f"{named} and {len(rest)} more ({sum(given[k] for k in rest)} A)"


@dataclass(frozen=True)
class SharedDecision:
    connectors: tuple[ConnectorDecision, ...]
    charge_at: int  # the connectors' sum
    loadbal: Triple
    phase_currents: OptTriple
    headroom: OptTriple
    meter_stale: bool
    paused: bool  # every connector paused
    reason: str
    strategy: str
    waiting_for_meter: bool = False
    circuits: tuple[CircuitRoom, ...] = ()  # each circuit's room and load at this decision

    def connector(self, key: str) -> ConnectorDecision:
        for c in self.connectors:
            if c.key == key:
                return c
        raise KeyError(key)

    @property
    def commands(self) -> dict[str, int]:
        """The values to write now, by connector."""
        return {c.key: c.command for c in self.connectors if c.command is not None}

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `<base>/balancer/state`."""
        data = {
            "charge_at": self.charge_at,
            "command": None,
            "loadbal": [round(float(v), 3) for v in self.loadbal],
            "phase_currents": [None if v is None else round(float(v), 3) for v in self.phase_currents],
            "headroom": [None if v is None else round(float(v), 3) for v in self.headroom],
            "meter_stale": self.meter_stale,
            "paused": self.paused,
            "reason": self.reason,
            "strategy": self.strategy,
            "waiting_for_meter": self.waiting_for_meter,
            # One connector: its detail, as always. A site: a line each, for a state that goes out
            # with every new meter reading and is a Home Assistant sensor's attributes (each recorded).
            "connectors": [c.to_dict() if len(self.connectors) == 1 else c.line() for c in self.connectors],
        }
        if self.circuits:
            data["circuits"] = [{"name": r.name, "max_a": r.max_a,
                                 "current": [None if a is None else round(float(a), 3) for a in r.current],
                                 "meter_stale": r.stale is not None} for r in self.circuits]
        if len(self.connectors) == 1:
            data["command"] = self.connectors[0].command
        return data


@dataclass
class _Connector:
    spec: ConnectorSpec
    inputs: Balancer  # its reports and commands, in house phases
    priority: int
    installation_current: int | None = None
    own_default: int | None = None  # its own default current; None: the shared one
    target: int | None = None  # what it is given (0 = paused); None until the first decision
    written_at: float | None = None
    paused_at: float | None = None
    turn_since: float | None = None  # charging since
    budget: WriteBudget = field(default_factory=lambda: WriteBudget(0.0))
    failed: bool = False
    house_load: bool = False  # cannot be controlled at all: its measured draw is the house's load
    confirmed: bool = False  # a write of ours reached it (else its setting is only assumed)
    sent: bool = False  # a decision gave it a command to write (a setting told before that was found on it)
    # Reported drawing nothing while offered at least the minimum (no car, or a full one); kept
    # through a pause (a paused car draws nothing whatever it wants) until a report shows a draw.
    idle: bool = False
    plugged: bool | None = None  # a car plugged in, from the connector's status; None: not said
    limit: int | None = None  # the most its car takes, learned from its reports
    low_reports: int = 0
    energy: deque = field(default_factory=deque)  # (bucket start, amp-seconds)
    session_energy: float = 0.0  # amp-seconds since its car plugged in (or since the start)
    # A cap from a power limit (its charge mode), and why; None: none.
    power_cap: int | None = None
    power_cap_reason: str = ""
    # The house phases its car drew on when last seen drawing: a paused car's reports cannot show them.
    car_phases: tuple[int, ...] | None = None
    # The meter showed its car stop drawing (a step of its draw): counted as an empty outlet until its
    # status speaks again, for the car may have left.
    stopped_at: float | None = None
    # The meter showed its car, held idle at the minimum, wake up: in a cut it is the one that gives way.
    woke_at: float | None = None


class SharedBalancer:
    """Several connectors on one fuse; see the module docstring and docs/DESIGN.md."""

    def __init__(self, cfg: BalancerConfig | None, connectors: Sequence[ConnectorSpec],
                 strategy: str = DEFAULT_STRATEGY, circuits: Sequence[Circuit] = ()) -> None:
        self._cfg = cfg if cfg is not None else BalancerConfig()
        specs = list(connectors)
        if not specs:
            raise ValueError("at least one connector is needed")
        keys = [s.key for s in specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"a connector is listed twice: {', '.join(keys)}")
        if len(specs) > 1 and strategy != "adaptive":
            raise ValueError(f"strategy {strategy!r} balances one connector only (it is the original "
                             f"one-car flow); with {len(specs)} connectors use 'adaptive'")
        self._tree = CircuitTree(circuits, self._cfg.max_a, {s.key: s.circuit for s in specs})
        if self._tree.balances and strategy != "adaptive":
            raise ValueError(f"strategy {strategy!r} knows the main fuse only; with a connector on a "
                             "circuit use 'adaptive'")
        self._strategy_name = strategy
        self._conns = {s.key: _Connector(s, Balancer(self._cfg, strategy=strategy), s.priority)
                       for s in specs}
        for c in self._conns.values():
            c.budget = WriteBudget.full(self._cfg)
            c.installation_current = self._cfg.installation_current
        # One connector on the main fuse alone is the one-car balancer. On a circuit it takes the
        # shared path, the one that knows the tree (a sub-meter is a second meter, with its own
        # staleness, which the one-car balancer cannot read).
        self._single = len(specs) == 1 and not self._tree.balances
        self._circuit_meter: dict[str, list[float | None]] = {n: [None, None, None] for n in self._tree.circuits}
        self._circuit_meter_at: dict[str, list[float | None]] = {n: [None, None, None] for n in self._tree.circuits}
        self._metered: set[str] = set()  # circuits with a meter of their own
        self._reader = AdaptiveStrategy(lambda: self._cfg)  # reads a car's draw from its inputs
        self._meter: list[float | None] = [None, None, None]
        self._meter_at: list[float | None] = [None, None, None]
        self._started_at: float | None = None
        self._history: deque[tuple[float, Triple | None]] = deque()
        self._rooms: list[CircuitRoom] = []  # the circuits at the latest decision, deepest first
        self._room_history: deque[tuple[float, dict[str, Triple]]] = deque()  # for the raise hold
        self._cycles = CutCycles()  # cuts soon after a raise: the raise hold's doubling
        self._last_tick: float | None = None
        self._loads = LoadTracker()  # the house's loads, by their steps (cycling ones are kept free)
        self._budgets: dict[str, PowerBudget] = {}  # power limits on groups of connectors, by name
        self._recent: list[deque[tuple[float, float]]] = [deque() for _ in PHASES]  # readings of STEP_WINDOW_S
        self._silence_paused = False  # the cars were paused for the meter's silence
        self._wall_offset = 0.0  # the wall clock less `now`: turns change at its multiples of `rotate_s`
        self._paused_to_move = False  # cars were paused to move their amps: the next start follows the landing

    @property
    def config(self) -> BalancerConfig:
        return self._cfg

    @property
    def keys(self) -> list[str]:
        return list(self._conns)

    @property
    def one_car(self) -> bool:
        """One connector on the main fuse alone: decided by the one-car balancer (and its power
        limits by the one-car controllers)."""
        return self._single

    def rename(self, old: str, new: str) -> None:
        """The connector `old` is `new` ("CP:N"): its charge point became known after the start."""
        c = self._conn(old)
        if new != old and new in self._conns:
            raise ValueError(f"connector {new} is already balanced")
        c.spec = dataclasses.replace(c.spec, key=new)
        self._conns = {(new if k == old else k): v for k, v in self._conns.items()}
        if old in self._tree.members:
            self._tree.members = {(new if k == old else k): v for k, v in self._tree.members.items()}

    def _conn(self, key: str) -> _Connector:
        try:
            return self._conns[key]
        except KeyError:
            raise ValueError(f"unknown connector {key!r}; known: {', '.join(self._conns)}") from None

    def _seen(self, now: float) -> None:
        if self._started_at is None:
            self._started_at = now

    # ---- inputs -------------------------------------------------------------
    @property
    def circuits(self) -> CircuitTree:
        return self._tree

    def circuit_metered(self, name: str) -> None:
        """The circuit has a meter of its own: its load is what that meter says (until the first
        reading, and whenever it falls silent, its cars have the fail-safe current together)."""
        self._circuit(name)
        self._metered.add(name)

    def circuit_meter(self, now: float, name: str, phase: int, amps: float) -> None:
        """One live phase reading of a circuit's own meter."""
        self._seen(now)
        self._circuit(name)
        if phase not in PHASES or not math.isfinite(float(amps)):
            raise ValueError(f"circuit {name}: a reading needs a phase 0..2 and a finite current, "
                             f"got {phase!r}, {amps!r}")
        self._metered.add(name)
        self._circuit_meter[name][phase] = float(amps)
        self._circuit_meter_at[name][phase] = now

    def circuit_meter_alive(self, now: float, name: str) -> None:
        """A circuit's meter is alive, its values unchanged."""
        self._seen(now)
        at = self._circuit_meter_at[self._circuit(name)]
        for n in PHASES:
            if at[n] is not None:
                at[n] = now

    def _circuit(self, name: str) -> str:
        if name not in self._tree.circuits:
            raise ValueError(f"unknown circuit {name!r}; known: {', '.join(self._tree.circuits) or 'none'}")
        return name

    def meter(self, now: float, phase: int, amps: float) -> None:
        self._seen(now)
        for c in self._conns.values():
            c.inputs.meter(now, phase, amps)  # validates
        self._meter[phase] = float(amps)
        self._meter_at[phase] = now
        recent = self._recent[phase]
        recent.append((now, float(amps)))
        while len(recent) > 2 and recent[1][0] <= now - STEP_WINDOW_S:
            recent.popleft()

    def meter_alive(self, now: float) -> None:
        self._seen(now)
        for c in self._conns.values():
            c.inputs.meter_alive(now)
        for n in PHASES:
            if self._meter_at[n] is not None:
                self._meter_at[n] = now

    def charger(self, now: float, key: str, currents: tuple[float, float, float] | None,
                phases: tuple[bool, bool, bool] | None) -> None:
        """The connector's own report, in the charger's L1..L3 (mapped to house phases here):
        (0, 0, 0) when it reports that no car draws, None when it does not say."""
        self._seen(now)
        c = self._conn(key)
        pm = c.spec.phase_map
        house_currents = house_phases = None
        if currents is not None:
            mapped = [0.0, 0.0, 0.0]
            for i, amps in enumerate(currents):
                mapped[pm[i]] = float(amps)
            house_currents = (mapped[0], mapped[1], mapped[2])
        if phases is not None:
            flags = [False, False, False]
            for i, on in enumerate(phases):
                flags[pm[i]] = bool(on)
            house_phases = (flags[0], flags[1], flags[2])
        c.inputs.charger(now, house_currents, house_phases)
        if house_currents is not None:
            offered = c.inputs.observations().charger_offered
            if max(house_currents) >= PHASE_IN_USE_A:
                if c.idle and c.target:
                    c.woke_at = now  # drawing on the minimum it was held at (lent to the others, or kept for it)
                c.idle = False
                c.stopped_at = None
                c.car_phases = self._reader.used_phases(now, c.inputs.observations())
            elif offered is not None and offered >= self._cfg.min_current and c.confirmed:
                # Only a setting known to be on the charger offers anything: at start, before its
                # setting is read, a car paused there is not a car that takes nothing.
                c.idle = True
        self._learn_limit(now, c, house_currents)

    def car_plugged(self, now: float, key: str, plugged: bool | None) -> None:
        """Whether a car is plugged into the connector, from its status (None: the status does not
        say). With no car it is idle (held at the minimum, the first to pause). A car plugging in
        wants current until its reports show otherwise: a paused outlet cannot show a draw, so its
        car waits for its turn like any other instead of for a draw it cannot make."""
        self._seen(now)
        c = self._conn(key)
        if plugged is False:
            c.idle = True
            c.car_phases = None
        elif plugged and c.plugged is False:
            c.idle = False
            c.session_energy = 0.0
            c.limit = None
            c.low_reports = 0
            c.car_phases = None
            if not c.target:
                # A pause of an outlet without a car spared no car a stop and start: nothing to wait out.
                c.paused_at = None
        if plugged is not None:
            c.plugged = bool(plugged)
            c.stopped_at = None

    def _learn_limit(self, now: float, c: _Connector, currents: Triple | None) -> None:
        """A car drawing well below its setting, twice in a row after the setting settled, takes
        that much only (full, or its own limit): the rest goes to the others."""
        if currents is None or c.target is None or c.target < self._cfg.min_current:
            return
        if c.written_at is not None and now < c.written_at + self._cfg.settle_s:
            return
        drawn = max(currents)
        if drawn < PHASE_IN_USE_A:
            c.low_reports = 0
            return
        if c.limit is not None and drawn >= c.limit - 0.5:
            c.limit = None  # it takes what it is offered again: offer it everything
            c.low_reports = 0
        elif drawn < c.target - LIMITED_GAP_A:
            c.low_reports += 1
            if c.low_reports >= LIMITED_REPORTS:
                c.limit = max(self._cfg.min_current, math.ceil(drawn) + 1)
        else:
            c.low_reports = 0

    def commanded(self, now: float, key: str, amps: int) -> None:
        """`amps` was written to the connector's charger (the cloud accepted it)."""
        self._seen(now)
        c = self._conn(key)
        first_heard = not c.confirmed and not c.sent  # the first setting heard of, before anything was written
        # A setting found on the charger before the bridge wrote to it is no write on its way: its car
        # follows it already, and the report read with it is what the car draws (taken for a write in
        # flight, a car drawing less than its setting would be counted at the setting, and the house
        # as that much lighter than it is).
        if first_heard:
            c.inputs._seen(now)  # (its start is now, not the setting's past)
        c.inputs.commanded(self._settled_before(now) if first_heard else now, amps)
        c.failed = False
        c.confirmed = True
        if self._single:
            return
        obs = c.inputs.observations()
        if (first_heard and int(amps) >= self._cfg.min_current and obs.charger_currents is not None
                and max(obs.charger_currents) < PHASE_IN_USE_A and obs.charger_at is not None
                and now - obs.charger_at <= self._cfg.charger_stale_after_s):
            c.idle = True  # offered enough and drawing nothing: no car, or one that takes nothing now
        if c.target is None or int(amps) != c.target:
            found = int(amps) == 0 and c.target != 0
            self._set_target(now, c, int(amps))
            if found:
                # A pause the bridge did not decide (found at start, or set on the charger): no
                # minimum pause to wait out, the sharing resumes it when it has room.
                c.paused_at = None

    def charger_failed(self, now: float, key: str, failed: bool = True, *, house_load: bool = False) -> None:
        """The connector's charger cannot be written (True) or can again (False). While it cannot,
        its share is assumed at its last setting and the others share the rest; with `house_load`
        (a charger that takes no limit at all, so it has no setting) its measured draw is counted
        as the house's load instead, and the others share what the meter leaves."""
        self._seen(now)
        c = self._conn(key)
        c.failed = bool(failed)
        c.house_load = c.failed and house_load
        if c.house_load:
            c.target = 0

    def reconfigure(self, now: float, **changes: object) -> BalancerConfig:
        """Shared settings (max_a, default_current, ...); ValueError changes nothing."""
        self._seen(now)
        if "installation_current" in changes and not self._single:
            raise ValueError("the installation current is per connector: use set_installation_current")
        known = {f.name for f in dataclasses.fields(BalancerConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown balancer setting(s): {', '.join(unknown)}")
        # A connector with a default current of its own keeps it.
        own = {key: {k: v for k, v in changes.items() if k != "default_current" or c.own_default is None}
               for key, c in self._conns.items()}
        # Every connector's settings are checked before any changes: a bad value changes nothing.
        for key, c in self._conns.items():
            dataclasses.replace(c.inputs.config, **own[key])  # type: ignore[arg-type]
        new = dataclasses.replace(self._cfg, **changes)  # type: ignore[arg-type]
        for key, c in self._conns.items():
            c.inputs.reconfigure(now, **own[key])
            c.installation_current = c.inputs.config.installation_current
        self._cfg = new
        self._history.clear()
        return self._cfg

    def set_priority(self, now: float, key: str, priority: int) -> None:
        """0..9, higher first."""
        self._seen(now)
        self._conn(key).priority = check_priority(priority)

    def set_default_current(self, now: float, key: str, amps: int | None) -> None:
        """The connector's own default (full-power) current; None: the shared one. ValueError
        (nothing changed) when the connector's settings do not allow it."""
        self._seen(now)
        c = self._conn(key)
        value = self._cfg.default_current if amps is None else amps
        dataclasses.replace(c.inputs.config, default_current=value)  # validates
        c.own_default = amps
        c.inputs.reconfigure(now, default_current=value)

    def priority(self, key: str) -> int:
        return self._conn(key).priority

    def set_installation_current(self, now: float, key: str, amps: int | None) -> None:
        """The connector's own cap (charge points may differ); None when not known."""
        self._seen(now)
        c = self._conn(key)
        dataclasses.replace(c.inputs.config, installation_current=amps)  # validates
        c.installation_current = amps
        c.inputs.reconfigure(now, installation_current=amps)

    # ---- power limits (the capacity tariff, the charge modes) -------------------------
    def power_limit(self, now: float, key: str, amps_cap: float | None, reason: str = "") -> None:
        """A cap on one connector's current from a power limit (its charge mode: 0 while `off`, or
        while a `pv` car waits for surplus), or None for none. A lower cap cuts at once; a higher
        one is raised like any raise; the fuse and the power budgets apply as well."""
        self._seen(now)
        c = self._conn(key)
        if amps_cap is not None and not (math.isfinite(amps_cap) and amps_cap >= 0):
            raise ValueError(f"a power limit must be a finite current of at least 0 A, got {amps_cap!r}")
        c.power_cap = None if amps_cap is None else math.floor(amps_cap)
        c.power_cap_reason = reason
        if self._single:
            self._single_power_limit(now)

    def power_budget(self, now: float, name: str, phase_amps: float | None,
                     keys: Sequence[str] | None = None, reason: str = "") -> None:
        """The connectors in `keys` (None: every one) together draw at most `phase_amps`: each its
        amps times the house phases its car draws on (the budget's watts over the voltage); None
        removes the budget `name`. A budget that falls below what is given cuts at once; the
        connectors share it as they share the fuse (`share`)."""
        self._seen(now)
        if phase_amps is None:
            self._budgets.pop(name, None)
        else:
            group = None if keys is None else frozenset(self._conn(k).spec.key for k in keys)
            self._budgets[name] = PowerBudget(float(phase_amps), group, reason)
        if self._single:
            self._single_power_limit(now)

    def power_phases(self, now: float, key: str) -> int:
        """The house phases an amp of this connector counts in a power budget: those its car draws on
        (when paused, those it drew on last), or all three when nothing has shown them."""
        c = self._conn(key)
        return len(c.car_phases or self._reader.used_phases(now, c.inputs.observations()))

    def car_draw(self, now: float, key: str) -> Triple:
        """What the connector's car draws per house phase in the meter's latest reading, as the
        balancer reads it: its charger's report when taken after the last write settled, else the
        setting it followed before the writes still on their way (until the meter shows it follow
        one); 0 for a car offered enough that draws nothing."""
        # As `car_draw_in_doubt` reads it: a report taken after the write that shows the car at the
        # new setting is what it draws, though the write has not settled; the setting before it
        # would count the cut as the house's own load while the draw is no longer in doubt.
        return self._reader.car_draw(now, self._conn(key).inputs.observations())[0]

    def car_draw_in_doubt(self, now: float, key: str) -> bool:
        """A write to the connector is on its way and no report taken after it settled says yet
        whether the car follows it (`AdaptiveStrategy.car_draw`)."""
        return self._reader.car_draw(now, self._conn(key).inputs.observations())[1]

    def one_car_draw(self, now: float) -> tuple[Triple, bool]:
        """One car (`one_car`): what it draws as its one-car flow reads it, and whether that is in
        doubt (`Balancer.car_draw`)."""
        return next(iter(self._conns.values())).inputs.car_draw(now)

    def connector_config(self, key: str) -> BalancerConfig:
        """The settings one connector is balanced by: the shared ones with its own installation and
        default current."""
        return self._conn(key).inputs.config

    def observations(self, key: str) -> Any:
        """The connector's inputs (the meter, its charger's reports in house phases, its commands)."""
        return self._conn(key).inputs.observations()

    def _single_power_limit(self, now: float) -> None:
        """One connector: the budgets are a cap on its current, for the one-car balancer; and the
        minimum pause, for a pause a power limit made (the strategy keeps it for its own)."""
        c = next(iter(self._conns.values()))
        caps = [(c.power_cap, c.power_cap_reason)] if c.power_cap is not None else []
        n = self.power_phases(now, c.spec.key)
        caps += [(math.floor(b.phase_amps / n), b.reason) for b in self._budgets.values()]
        left = min_pause_left(now, c.paused_at, self._cfg) if c.target == 0 else 0.0
        if left > 0 and self._strategy_name == "adaptive":
            caps.append((0, f"resumes no sooner than {duration_text(self._cfg.min_pause_s)} after its "
                            f"pause ({left:.0f} s left)"))
        cap, why = min(caps, key=lambda cr: cr[0]) if caps else (None, "")
        c.inputs.power_limit(now, cap, why)

    def _weights(self, used: dict[str, tuple[int, ...]]) -> dict[str, int]:
        """What an amp of each connector counts in a power budget: nothing for an outlet whose car
        draws nothing (its minimum is held for a car to come, and counted against the fuse)."""
        return {k: 0 if c.idle else len(c.car_phases or used[k]) for k, c in self._conns.items()}

    def _share(self, budget: Sequence[float], claims: Sequence[Claim],
               rooms: Sequence[CircuitRoom] | None = None) -> dict[str, int]:
        return share(budget, claims, self._cfg.min_current, tuple(self._budgets.values()),
                     self._rooms if rooms is None else rooms)

    # ---- the circuit tree ---------------------------------------------------------
    def _circuit_rooms(self, now: float, draws: dict[str, Triple]) -> list[CircuitRoom]:
        """Every circuit's room for its cars now (`draws`: the most each car may draw per house
        phase); a sub-meter is stale by the main meter's rule."""
        meters = {n: tuple(self._circuit_meter[n]) for n in self._metered}
        stale = {n: meter_staleness(now, tuple(self._circuit_meter_at[n]), self._cfg)  # type: ignore[arg-type]
                 for n in self._metered}
        failsafe = fail_safe_current(self._cfg)
        return circuit_rooms(self._tree, draws, meters, stale, failsafe)  # type: ignore[arg-type]

    def _rooms_held(self, now: float, hold: float, targets: dict[str, int],
                    shares: dict[str, tuple[int, ...]]) -> list[CircuitRoom]:
        """For a raise: each circuit's least room over the last `hold` seconds, and never less than
        what its cars are given now (a raise only moves or adds amps)."""
        out = []
        for r in self._rooms:
            held = [r.room[p] for p in PHASES]
            for t, rooms in self._room_history:
                if t >= now - hold and r.name in rooms:
                    held = [min(held[p], rooms[r.name][p]) for p in PHASES]
            load = [sum(targets[k] for k in r.keys if p in shares[k] and targets[k] >= self._cfg.min_current)
                    for p in PHASES]
            out.append(dataclasses.replace(r, room=tuple(max(held[p], load[p]) for p in PHASES)))
        return out

    def _cut_circuits(self, new: dict[str, int], fair: dict[str, int], shares: dict[str, tuple[int, ...]]
                      ) -> dict[str, int]:
        """Each circuit over its room, deepest first, cut as the main fuse is (`least_cut` over its cars)."""
        cfg = self._cfg
        new = dict(new)
        for r in self._rooms:
            if circuits_over([r], new, shares, cfg.min_current, cfg.cut_tolerance_a):
                keys = [k for k in new if r.holds(k)]
                new.update(least_cut(r.room, {k: new[k] for k in keys}, {k: fair[k] for k in keys},
                                     {k: shares[k] for k in keys}, cfg.min_current, cfg.cut_tolerance_a))
        return new

    def _circuit_notes(self, key: str, amps: dict[str, int], shares: dict[str, tuple[int, ...]]) -> list[str]:
        """The circuits that keep this connector where it is, for its reason: a stale meter, or a
        phase with no amp left for it (`garage L2 at 15.2 A`)."""
        c = self._conns[key]
        notes = [f"circuit {r.name} meter stale ({r.stale}): fail-safe {r.room[0]:.0f} A for its cars together"
                 for r in self._rooms if r.holds(key) and r.stale is not None]
        if amps[key] < self._cap(c) and shares[key]:
            notes += binding([r for r in self._rooms if r.stale is None], key, amps, shares, self._cfg.min_current)
        return notes

    def _power_over(self, amps: dict[str, int], weights: dict[str, int]) -> tuple[list[str], set[str]]:
        """Why `amps` break a power limit (a connector above its cap, a budget exceeded), and the
        connectors that must give way; empty when none does."""
        why: list[str] = []
        keys: set[str] = set()
        for k, c in self._conns.items():
            if c.power_cap is not None and amps[k] > c.power_cap and not c.failed:
                why.append(f"{k} {c.power_cap_reason or 'power limit'}: at most {c.power_cap} A")
                keys.add(k)
        for b in self._budgets.values():
            if self._drawn(b, amps, weights) > b.phase_amps + 1e-9:
                why.append(b.reason or f"power limit {b.phase_amps:.0f} A over the phases")
                keys.update(k for k in self._conns if b.holds(k))
        return why, keys

    def _power_cut(self, amps: dict[str, int], fair: dict[str, int], weights: dict[str, int]) -> dict[str, int]:
        """A cut to the power limits that writes as few connectors as it can (as `least_cut` does
        for a phase): a connector above its cap goes to `fair` (the allocation, which keeps every
        limit); while a budget is exceeded, one of its connectors that can give all of the excess
        and keep the minimum and all but an amp of its fair share gives it, else the one furthest above
        its fair share goes to that share (`give_way`), else all go to their fair shares."""
        cfg = self._cfg
        new = dict(amps)
        for k, c in self._conns.items():
            if c.power_cap is not None and new[k] > c.power_cap and not c.failed:
                new[k] = min(new[k], fair[k])
        for b in self._budgets.values():
            while (excess := self._drawn(b, new, weights) - b.phase_amps) > 1e-9:
                members = [k for k in self._conns if b.holds(k) and not self._conns[k].failed
                           and new[k] >= cfg.min_current and weights[k] > 0]
                need = {k: math.ceil(excess / weights[k] - 1e-9) for k in members}
                # No more than an amp below its fair share: the next step of a falling budget is
                # the other's, and no evening out (a cut and a raise) is needed after.
                keep = {k: max(cfg.min_current, fair[k] - 1) for k in members}
                if not give_way(new, need, fair, keep):
                    for k in members:
                        new[k] = min(new[k], fair[k])
                    break
        return new

    def _drawn(self, b: PowerBudget, amps: dict[str, int], weights: dict[str, int]) -> float:
        return sum(amps[k] * weights[k] for k in self._conns if b.holds(k) and amps[k] >= self._cfg.min_current)

    def _power_short(self, key: str, used: dict[str, tuple[int, ...]], alloc: dict[str, int]
                     ) -> tuple[str, list[str]] | None:
        """The power budget that has no room for this connector's minimum beside what `alloc`
        gives the others in it (its reason, and those others), or None."""
        weights = self._weights(used)
        others = {k: alloc.get(k, 0) for k in self._conns if k != key}
        for name, b in self._budgets.items():
            if not b.holds(key):
                continue
            drawn = self._drawn(b, {**others, key: 0}, weights)
            if b.phase_amps - drawn < self._cfg.min_current * max(weights[key], 1):
                return (b.reason or f"power limit {name} {b.phase_amps:.0f} A over the phases",
                        [k for k in others if b.holds(k) and others[k] >= self._cfg.min_current])
        return None

    def _power_notes(self, key: str, amps: dict[str, int], weights: dict[str, int]) -> list[str]:
        """The power limits that keep this connector below its cap, for its reason."""
        c = self._conns[key]
        notes = []
        if c.power_cap is not None and amps[key] <= c.power_cap < self._cap(c) and not self._held_paused(c):
            notes.append(f"{c.power_cap_reason or 'power limit'}: at most {c.power_cap} A")
        if amps[key] < self._cap(c) and (c.power_cap is None or amps[key] < c.power_cap):
            # Held below its cap: no amp left in the budget; paused: no room for its minimum.
            need = max(weights[key], 1) * (1 if amps[key] else self._cfg.min_current)
            for b in self._budgets.values():
                if b.holds(key) and b.phase_amps - self._drawn(b, amps, weights) < need:
                    notes.append(b.reason or f"power limit {b.phase_amps:.0f} A over the phases")
        return notes

    # ---- helpers ------------------------------------------------------------
    @staticmethod
    def _failed_text(c: _Connector, amps: int) -> str:
        """Why a connector the service cannot write is assumed at `amps`: before its charger was ever
        read (at start, or the cloud not reached yet) no write was tried and nothing is its last setting."""
        if not c.confirmed and c.inputs.observations().charger_at is None:
            return f"charger not read yet: assumed at {amps} A until it is"
        return f"charger cannot be written: assumed at its last setting {amps} A"

    def _settled_before(self, now: float) -> float:
        """When a setting the car has followed for long (not written by the bridge: assumed, or found
        on the charger) is taken to have been set: settled before `now`, no write on its way."""
        return now - self._cfg.settle_s - 1.0

    @staticmethod
    def _assumed(c: _Connector) -> int:
        """What a connector that cannot be written is taken to be set to: what it was given, else
        (before its first decision: not read yet) the setting it is assumed at, a charger left alone
        charging at its cap. Counted so in the allocation too, the others share only what it leaves."""
        return c.target if c.target is not None else (c.inputs.observations().commanded or 0)

    def _held_paused(self, c: _Connector) -> bool:
        """A power limit (its charge mode) leaves the connector less than the minimum: that is why it is paused."""
        return c.power_cap is not None and c.power_cap < self._cfg.min_current

    def _cap(self, c: _Connector) -> int:
        cap = c.inputs.config.current_cap
        if c.limit is not None:
            cap = min(cap, c.limit)
        return cap

    def _idle(self, now: float, c: _Connector) -> bool:
        """No car, or a full one: held at the minimum and the first to pause."""
        return c.idle

    @staticmethod
    def _shares_on(c: _Connector, used: tuple[int, ...]) -> tuple[int, ...]:
        """The house phases on which the connector's setting is counted in the sharing. A car
        plugged in that draws nothing while offered (full, or not wanting to charge now) is held at
        the minimum and lends it to the others: if it starts again it adds at most that minimum,
        the meter shows it and it is the one that gives way (`_watch_steps`). An outlet with no car
        (or whose status does not say, or whose car the meter just saw stop: it may have left) is
        counted at the minimum, because a car plugging in draws at once, before any report shows it."""
        return () if c.idle and c.plugged and c.stopped_at is None else used

    def _woken(self, now: float, c: _Connector) -> bool:
        """Its car started drawing on the minimum it was held at, within the last `settle_s`."""
        return c.woke_at is not None and now - c.woke_at <= self._cfg.settle_s

    def _tokens(self, now: float, c: _Connector) -> float:
        return c.budget.available(now, self._cfg)

    def _set_target(self, now: float, c: _Connector, amps: int) -> None:
        if c.target is not None and amps != c.target:
            c.budget.spend(now, self._cfg)
        if amps == 0 and c.target != 0:
            c.paused_at = now
            c.turn_since = None
        elif amps > 0 and not c.target:
            c.turn_since = now
        c.target = amps
        c.written_at = now

    def align_turns(self, now: float, wall_s: float) -> None:
        """At `now` the site's wall clock reads `wall_s` (seconds; local time, so that turns change at
        the quarter hours the site sees): turns change at its multiples of `rotate_s`. Until told,
        at multiples of `now` itself."""
        self._wall_offset = wall_s - now

    def _turn_ends(self, since: float) -> float:
        """When a turn begun at `since` ends: the first boundary of the clock at least half a turn
        after it (a car started just before one keeps its turn to the next)."""
        rotate = self._cfg.rotate_s
        if rotate <= 0:
            return since
        wall = since + self._wall_offset
        boundary = next_turn_change(wall, rotate)
        if boundary - wall < rotate / 2:
            boundary += rotate
        return boundary - self._wall_offset

    def _energy(self, now: float, c: _Connector) -> float:
        horizon = now - self._cfg.rotate_s
        while c.energy and c.energy[0][0] < horizon - ENERGY_BUCKET_S:
            c.energy.popleft()
        return sum(a for t, a in c.energy if t >= horizon - ENERGY_BUCKET_S)

    def _add_energy(self, now: float, c: _Connector, amp_seconds: float) -> None:
        c.session_energy += amp_seconds
        bucket = math.floor(now / ENERGY_BUCKET_S) * ENERGY_BUCKET_S
        if c.energy and c.energy[-1][0] == bucket:
            c.energy[-1] = (bucket, c.energy[-1][1] + amp_seconds)
        else:
            c.energy.append((bucket, amp_seconds))

    # ---- decision -----------------------------------------------------------
    def decide(self, now: float) -> SharedDecision:
        self._seen(now)
        if self._single:
            return self._decide_single(now)
        return self._decide_shared(now)

    def _decide_single(self, now: float) -> SharedDecision:
        c = next(iter(self._conns.values()))
        if c.paused_at is not None:
            self._single_power_limit(now)  # the minimum pause runs out
        d = c.inputs.decide(now)
        if d.charge_at == 0 and c.target and not d.meter_stale:
            c.paused_at = now  # a stop of its contactor: the minimum pause starts
        elif d.charge_at:
            c.paused_at = None
        used = self._reader.used_phases(now, c.inputs.observations())
        draw = self._reader.car_draw_range(now, c.inputs.observations(), used)[0]
        c.target = d.charge_at
        c.sent = c.sent or d.command is not None
        one = ConnectorDecision(
            key=c.spec.key, charge_at=d.charge_at, command=d.command, reason=d.reason, paused=d.paused,
            draw=draw, charging=not d.paused and not self._idle(now, c), phases=used, priority=c.priority)
        # The circuits feed no connector here (else the shared path decides): shown, not balanced.
        self._rooms = self._circuit_rooms(now, {c.spec.key: draw})
        return SharedDecision(
            connectors=(one,), charge_at=d.charge_at, loadbal=d.loadbal, phase_currents=d.phase_currents,
            headroom=d.headroom, meter_stale=d.meter_stale, paused=d.paused, reason=d.reason,
            strategy=d.strategy, waiting_for_meter=d.waiting_for_meter, circuits=tuple(self._rooms))

    def _claims(self, now: float, used: dict[str, tuple[int, ...]], idle: dict[str, bool],
                resume_gate: bool) -> list[Claim]:
        """Every connector's claim, in precedence order (see `share`). In a cut (`resume_gate`
        False) a paused connector claims nothing: nobody is raised in a cut."""
        cfg = self._cfg
        weights = self._weights(used)
        ordered = []
        for key, c in self._conns.items():
            if c.failed:
                held = self._assumed(c)
                ordered.append(((0,), Claim(key, used[key], held, c.priority, fixed=held,
                                            power_phases=weights[key])))
                continue
            cap = cfg.min_current if idle[key] else self._cap(c)
            if c.power_cap is not None:
                cap = min(cap, c.power_cap)
            if not c.target and c.paused_at is not None and (not resume_gate or min_pause_left(now, c.paused_at, cfg)):
                cap = 0  # paused too recently to resume, or a cut
            if c.target is not None and any(r.stale is not None and r.holds(key) for r in self._rooms):
                cap = min(cap, c.target)  # its circuit's meter is stale: the fail-safe never raises
            in_turn = bool(c.target) and c.turn_since is not None and now < self._turn_ends(c.turn_since)
            # Equal charge in the last `rotate_s` (none: a power budget, or the house's load, kept
            # them all paused for longer than that): the least charge since its car plugged in first,
            # then the one paused longest, so no car is starved.
            waiting = c.paused_at if not c.target and c.paused_at is not None else now
            # A car that just woke up on the minimum it lent to the others is the one that waits for
            # room in a cut, not a car that was charging all along.
            last = idle[key] or (not resume_gate and self._woken(now, c))
            rank = (1, -c.priority, last, not in_turn, self._energy(now, c), c.session_energy, waiting, key)
            ordered.append((rank, Claim(key, used[key], cap, c.priority, held=c.target or 0,
                                        power_phases=weights[key])))
        ordered.sort(key=lambda rc: rc[0])
        return [claim for _, claim in ordered]

    def _cycle_level_at(self, now: float) -> int:
        return self._cycles.level_at(now, self._cfg)

    def _holds(self, now: float) -> tuple[float, float, bool]:
        """The quick hold, the long hold, and whether the quick one needs a step worth following:
        a quick raise costs a write and maybe the cut it invites, so it needs every connector's
        budget; while loads cycle, only a step of `follow_min_step_a` (or a resume) is worth it."""
        cfg = self._cfg
        level = self._cycle_level_at(now)
        quick_hold, long_hold = raise_holds(level, cfg)
        budget_ok = all(self._tokens(now, c) >= WRITES_PER_RAISE for c in self._conns.values() if not c.failed)
        quick = quick_hold if budget_ok else long_hold
        if self._silence_paused:
            # The meter is back after the cars were paused for its silence: they resume on its
            # first live reading, one charger lag after it speaks.
            self._silence_paused = False
            return 0.0, long_hold, False
        if self._paused_to_move:
            # Cars were paused to give their amps to others: the house's load did not change, and the
            # next cars start once the pauses have settled, not a hold later.
            self._paused_to_move = False
            return 0.0, long_hold, False
        return quick, long_hold, level > 0

    def _level_over(self, now: float, hold: float) -> Triple | None:
        """The spare per phase every reading of the last `hold` seconds allowed (the latest strictly,
        earlier ones within the cut tolerance); None when a change was in flight in that time."""
        history = self._history
        if not history or history[-1][1] is None or now - history[0][0] < hold:
            return None
        tol = self._cfg.cut_tolerance_a
        latest = history[-1][1]
        level = list(latest)
        for t, spare in reversed(history):
            if t < now - hold:
                break
            if spare is None:
                return None
            for p in PHASES:
                level[p] = min(level[p], spare[p] + tol)
        return (level[0] - self._cfg.raise_margin_a, level[1] - self._cfg.raise_margin_a,
                level[2] - self._cfg.raise_margin_a)

    def _decide_shared(self, now: float) -> SharedDecision:
        cfg = self._cfg
        conns = self._conns
        dt = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        obs = {}
        for key, c in conns.items():
            if not c.inputs.observations().recent_commands:
                # Nothing written yet: a charger left alone charges at its cap (as the adaptive
                # strategy assumes), and a first cut must not be taken for the car's whole draw.
                c.inputs.commanded(self._settled_before(now), self._cap(c))
            c.inputs._forget_settled_commands(now)
            obs[key] = c.inputs.observations()
        used = {k: self._reader.used_phases(now, obs[k]) for k in conns}
        ranges = {k: self._reader.car_draw_range(now, obs[k], used[k]) for k in conns}
        nothing = (0.0, 0.0, 0.0)
        for k, c in conns.items():
            if c.house_load:  # its draw stays in the meter's reading as the house's
                ranges[k] = (nothing, nothing, nothing, 0.0)
        for k, c in conns.items():
            # Charge per phase (amp-seconds of the car's current): a one-phase car given the same
            # current as a three-phase one has had the same turn.
            self._add_energy(now, c, max(ranges[k][1]) * dt)
        self._rooms = self._circuit_rooms(now, {k: ranges[k][0] for k in conns})
        meter = [0.0 if m is None else m for m in self._meter]
        # Every connector's inputs hear the same meter: any of them knows its usual intervals.
        limits = next(iter(conns.values())).inputs.silence_limits()
        why = meter_staleness(now, tuple(self._meter_at), cfg, limits)  # type: ignore[arg-type]
        if why is None:
            self._watch_steps(now, used, ranges)
        idle = {k: self._idle(now, conns[k]) for k in conns}
        shares = {k: self._shares_on(conns[k], used[k]) for k in conns}
        if why is not None:
            assert self._started_at is not None
            if waiting_for_meter(now, self._started_at, tuple(self._meter_at), cfg):  # type: ignore[arg-type]
                return self._waiting(now, used, ranges, idle, why)
            self._history.clear()
            self._loads.reset()
            charging = [k for k, c in conns.items() if c.target]
            new, reasons, text = self._fail_safe(now, why, shares, idle)
            d = self._output(now, new, reasons, used, ranges, idle,
                             (None, None, None), (0.0, 0.0, 0.0), text, meter_stale=True)
            for k in charging:
                if not conns[k].target:
                    conns[k].paused_at = None  # paused for the meter's silence: no minimum pause after it
            return d

        targets = {k: (c.target if c.target is not None else self._cap(c)) for k, c in conns.items()}
        for k, c in conns.items():
            if idle[k] and not c.failed and targets[k] > cfg.min_current:
                targets[k] = cfg.min_current  # no car, or one that takes nothing: held at the minimum, at once
        ranges = self._counted_draws(now, ranges, targets, shares, idle)
        high = [sum(ranges[k][0][p] for k in conns) for p in PHASES]
        low = [sum(ranges[k][1][p] for k in conns) for p in PHASES]
        in_flight = max(ranges[k][3] for k in conns) > 0
        headroom = tuple(cfg.max_a - (meter[p] - high[p]) for p in PHASES)
        house = (meter[0] - low[0], meter[1] - low[1], meter[2] - low[2])  # at its heaviest, for raises
        self._loads.feed(now, None if in_flight else house, cfg)
        phases_used = tuple(sorted({p for k in conns for p in shares[k]})) or PHASES
        caps_on = max(sum(self._cap(c) for k, c in conns.items() if p in shares[k]) for p in phases_used)
        reserve, _load = self._loads.reserve(now, cfg, house, phases_used, caps_on)
        spare = tuple(cfg.max_a - house[p] - reserve[p] for p in PHASES)
        self._history.append((now, None if in_flight else spare))  # type: ignore[arg-type]
        self._room_history.append((now, {r.name: r.room for r in self._rooms}))
        horizon = now - cfg.raise_hold_max_s - 1.0
        while len(self._history) > 1 and self._history[0][0] < horizon:
            self._history.popleft()
        while len(self._room_history) > 1 and self._room_history[0][0] < horizon:
            self._room_history.popleft()

        load = [sum(targets[k] for k in conns if p in shares[k] and targets[k] >= cfg.min_current)
                for p in PHASES]
        loadbal = (max(0.0, load[0] - headroom[0]), max(0.0, load[1] - headroom[1]),
                   max(0.0, load[2] - headroom[2]))
        reasons: dict[str, str] = {}
        over = [p for p in PHASES if load[p] > headroom[p] + cfg.cut_tolerance_a]
        tree_over = circuits_over(self._rooms, targets, shares, cfg.min_current, cfg.cut_tolerance_a)
        first = any(c.target is None for c in conns.values())
        weights = self._weights(shares)
        power_over, power_keys = self._power_over(targets, weights)
        if over or tree_over or first or power_over:
            # Cut now, to what the headroom, the circuits and the power limits give; nobody is
            # raised in a cut. Within the cut tolerance nobody is cut, so nobody is paused for less either.
            tolerated = [h + cfg.cut_tolerance_a for h in headroom]
            rooms = [dataclasses.replace(r, room=tuple(a + cfg.cut_tolerance_a for a in r.room)) for r in self._rooms]
            alloc = self._share(tolerated, self._claims(now, shares, idle, resume_gate=False), rooms)
            new = self._cut_circuits(least_cut(headroom, targets, alloc, shares, cfg.min_current, cfg.cut_tolerance_a),
                                     alloc, shares)
            if power_over and not over:
                new = self._power_cut(new, alloc, weights)
            elif power_over:
                # A phase and a power limit at once: the allocation, not two least cuts in a row
                # (each may leave a car an amp off its share, and together two amps apart).
                new = {k: min(new[k], alloc[k]) if k in power_keys else new[k] for k in conns}
            if (over or tree_over) and not any(self._woken(now, c) for c in conns.values()):
                # A car waking up explains a cut: no load cycling on the raises.
                self._cycles.note_cut(now, self._loads.last_up, cfg)
            where = ", ".join([*(f"{phase_name(p)} at {meter[p]:.1f} A, {max(headroom[p], 0):.1f} A for the cars"
                                 for p in (over or ([] if tree_over else PHASES))),
                               *(f"{r.where(p)}, {max(r.room[p], 0):.1f} A for its cars" for r, p in tree_over)])
            if power_over and not over and not tree_over:
                where = "; ".join(power_over)
            for k in conns:
                reasons[k] = self._why(k, targets[k], new[k], shares, where, headroom, new)
            for k in conns:
                if self._woken(now, conns[k]) and new[k] < targets[k]:
                    reasons[k] = f"{where}; its car woke up on the {cfg.min_current} A it lent: {reasons[k]}"
            summary = f"{where}: " + amps_of(new, list(conns))
        elif in_flight:
            new = dict(targets)
            summary = "waiting for the chargers to follow"
            for k, c in conns.items():
                left = ranges[k][3]
                reasons[k] = (f"waiting for the charger to follow {targets[k]} A "
                              f"({cfg.settle_s - left:.0f}/{cfg.settle_s:.0f} s)" if left > 0 else
                              f"holding {targets[k]} A until the other changes settle")
        else:
            new, summary = self._rebalance(now, targets, load, shares, idle, reasons)
        return self._output(now, new, reasons, used, ranges, idle, headroom, loadbal, summary, meter_stale=False)

    def _step(self, now: float, phases: Sequence[int], since: float) -> dict[int, float] | None:
        """How much the meter moved on each of `phases` within the last STEP_WINDOW_S (a reading of
        this moment against the last one at or before the window), or None when a phase has no fresh
        pair, or when the earlier reading is not after `since`."""
        step = {}
        for p in phases:
            recent = self._recent[p]
            if (len(recent) < 2 or recent[-1][0] != self._meter_at[p] or now - recent[-1][0] > 1.5
                    or recent[0][0] <= since):
                return None
            step[p] = recent[-1][1] - recent[0][1]
        return step

    def _watch_steps(self, now: float, used: dict[str, tuple[int, ...]], ranges: dict) -> None:
        """A step of the meter that matches one car's own draw on each of its phases at once is that
        car: a charging car whose draw falls to nothing stopped (full, its timer, or unplugged: it
        is counted as an empty outlet until its status speaks again), and a connector held idle at
        the minimum whose minimum appears has a car drawing again (woken up, or just plugged in).
        Only the one car that matches best, and not while a write is on its way: its landing would
        look the same."""
        cfg = self._cfg
        if any(r[3] > 0 for k, r in ranges.items() if not self._conns[k].idle):
            return
        # A step must be wholly after the latest change decided for a charging connector: the meter
        # may show a write land before the write is confirmed.
        since = max((c.written_at for c in self._conns.values() if not c.idle and c.written_at is not None),
                    default=-math.inf)
        matches: list[tuple[float, str, bool]] = []  # (how far off, connector, stopped)
        for k, c in self._conns.items():
            phases = c.car_phases or used[k]
            if c.failed or len(phases) < STEP_MIN_PHASES or not c.target or c.target < cfg.min_current:
                continue
            step = self._step(now, phases, since)
            if step is None:
                continue
            high, low = ranges[k][0], ranges[k][1]
            if not c.idle and all(high[p] == low[p] >= cfg.min_current for p in phases):
                matches.append((max(abs(step[p] + high[p]) for p in phases), k, True))
            elif c.idle and c.stopped_at is None and all(step[p] >= cfg.min_current - LANDING_TOLERANCE_A
                                                          for p in phases):
                drawn = min(c.target, self._cap(c))
                matches.append((max(max(0.0, cfg.min_current - step[p], step[p] - drawn) for p in phases), k, False))
        matches.sort()
        if not matches or matches[0][0] > LANDING_TOLERANCE_A or (
                len(matches) > 1 and matches[1][0] - matches[0][0] < LANDING_TOLERANCE_A / 2):
            return  # none, or no one car it is most likely to be
        _off, k, stopped = matches[0]
        c = self._conns[k]
        if stopped:
            c.idle, c.stopped_at = True, now
        else:
            c.idle, c.woke_at = False, now

    def _counted_draws(self, now: float, ranges: dict, targets: dict[str, int],
                       shares: dict[str, tuple[int, ...]], idle: dict[str, bool]) -> dict:
        """What each connector's car may draw, where its report is behind what is known. An idle
        one draws nothing (also a car the meter just saw stop, whose last report still shows its
        draw); its setting, when counted, is kept for a car to come. A car counted at its setting
        whose report still shows no draw (just plugged in, or woken up) may draw that setting, or the
        one before it while a write is on its way: read so, its arrival is no house load, and nobody
        is cut for it."""
        cfg = self._cfg
        out = dict(ranges)
        zero = (0.0, 0.0, 0.0)
        for k, c in self._conns.items():
            high, low, before, left = ranges[k]
            if c.house_load:
                continue  # its draw is the house's
            if idle[k]:
                out[k] = (zero, zero, zero, 0.0)  # nothing drawn: its writes change nothing on the meter
                continue
            obs = c.inputs.observations()
            report = obs.charger_currents
            # The settings it may still be following: its latest settled one and those on their way.
            offered = max([targets[k], *(a for _t, a in obs.recent_commands)])
            if (shares[k] and offered >= cfg.min_current and report is not None and max(report) < PHASE_IN_USE_A
                    and obs.charger_at is not None and now - obs.charger_at <= cfg.charger_stale_after_s):
                most = tuple(max(high[p], offered) if p in shares[k] else high[p] for p in PHASES)
                out[k] = (most, low, before, left)
        return out

    def _fail_safe(self, now: float, why: str, shares: dict[str, tuple[int, ...]],
                   idle: dict[str, bool]) -> tuple[dict[str, int], dict[str, str], str]:
        """The meter cannot be trusted: `fail_safe`, the cars together sharing its current on each
        phase in the usual precedence."""
        cfg = self._cfg
        assert self._started_at is not None
        current, reason, silence = fail_safe(now, why, tuple(self._meter_at), self._started_at, cfg)  # type: ignore[arg-type]
        if silence:
            self._silence_paused = True
            return {k: 0 for k in self._conns}, {k: reason for k in self._conns}, reason
        claims = []
        for claim in self._claims(now, shares, idle, resume_gate=False):
            c = self._conns[claim.key]
            if claim.fixed is None:
                claim = dataclasses.replace(claim, cap=fail_safe_cap(claim.cap, c.target))
            claims.append(claim)
        new = share([float(current)] * 3, claims, cfg.min_current, (), self._rooms)
        text = f"{reason} for the cars together"
        reasons = {}
        for k in self._conns:
            reasons[k] = (f"{text}: {new[k]} A" if new[k] else
                          f"{text}: paused" + ("" if self._conns[k].target == 0 else " (no room for its minimum)"))
        return new, reasons, text

    def _rebalance(self, now: float, targets: dict[str, int], load: list[int], used: dict[str, tuple[int, ...]],
                   idle: dict[str, bool], reasons: dict[str, str]) -> tuple[dict[str, int], str]:
        """Nothing in flight and nothing over: raise where the headroom held, moving amps cut first."""
        cfg = self._cfg
        quick, long_hold, cycling = self._holds(now)
        ideal = None
        for hold in dict.fromkeys((quick, long_hold)):
            level = self._level_over(now, hold)
            if level is None:
                continue
            # What is given now stays possible: amps are only moved or added, never lost to an old reading.
            budget = [max(level[p], load[p]) for p in PHASES]
            ideal = self._share(budget, self._claims(now, used, idle, resume_gate=True),
                                self._rooms_held(now, hold, targets, used))
            if hold == long_hold or not cycling:
                break
            worth = any(ideal[k] - targets[k] >= cfg.follow_min_step_a or (ideal[k] and not targets[k])
                        for k in self._conns)
            if worth:
                break
            ideal = None
        if ideal is None:
            for k in self._conns:
                reasons[k] = f"holding {targets[k]} A (headroom to hold {long_hold:.0f} s first)"
            return dict(targets), f"holding: the headroom must hold {long_hold:.0f} s"
        cuts = {k for k in self._conns if ideal[k] < targets[k]}
        new = dict(targets)
        # No charging car is cut for a connector that has no car (or a full one) to resume.
        worth_moving = any(not idle[k] and ((ideal[k] and not targets[k]) or ideal[k] - targets[k] >= MOVE_MIN_STEP_A)
                           for k in self._conns)
        if cuts and not worth_moving:
            for k in self._conns:
                reasons[k] = f"holding {targets[k]} A (moving amps would not pay for its writes)"
            return new, "holding: " + amps_of(new, list(self._conns))
        if cuts:
            cuts, started = self._changeover(now, targets, ideal, cuts, used, idle, budget)
            for k in cuts:
                new[k] = ideal[k]
                reasons[k] = self._why(k, targets[k], ideal[k], used, "sharing", budget, ideal)
            for k in started:
                new[k] = ideal[k]
                reasons[k] = f"taking turns: resume at {ideal[k]} A in the room of the cars paused before"
            for k in self._conns:
                if k in started:
                    continue
                if ideal[k] < targets[k] and k not in cuts:
                    reasons[k] = f"holding {targets[k]} A while the next cars start (its turn has ended)"
                elif k not in cuts:
                    reasons[k] = (f"{targets[k]} A; raise to {ideal[k]} A once the cut of "
                                  f"{', '.join(sorted(cuts))} has settled" if ideal[k] > targets[k]
                                  else f"holding {targets[k]} A")
            return new, "moving amps: cut first (" + amps_of(new, sorted(cuts)) + ")" + (
                "; start " + amps_of(new, started) if started else "")
        raised = []
        for k, c in self._conns.items():
            if ideal[k] <= targets[k]:
                reasons[k] = f"full power {targets[k]} A" if targets[k] >= self._cap(c) else \
                    f"holding {targets[k]} A ({self._phases_text(used[k], budget)})"
                if not targets[k] and (c.power_cap is None or c.power_cap >= cfg.min_current):
                    left = min_pause_left(now, c.paused_at, cfg)
                    reasons[k] = (f"paused: resumes no sooner than {duration_text(cfg.min_pause_s)} after its "
                                  f"pause ({left:.0f} s left)" if left > 0 else
                                  self._paused_text(k, used, budget, ideal))
                continue
            wait = 0.0 if c.written_at is None else cfg.min_command_interval_s - (now - c.written_at)
            if (targets[k] and ideal[k] - targets[k] < RAISE_MIN_STEP_A and ideal[k] < self._cap(c)
                    and self._tokens(now, c) < cfg.write_budget_burst - SMALL_RAISE_SPARE_WRITES):
                reasons[k] = (f"holding {targets[k]} A (a raise of less than {RAISE_MIN_STEP_A} A waits for "
                              "a fuller write budget)")
                continue
            if targets[k] and self._tokens(now, c) < WRITES_PER_RAISE:
                reasons[k] = f"{targets[k]} A; raise to {ideal[k]} A when its write budget allows"
                continue
            if wait > 0:
                reasons[k] = f"{targets[k]} A; raise to {ideal[k]} A in {math.ceil(wait)} s (command pacing)"
                continue
            new[k] = ideal[k]
            verb = "resume at" if not targets[k] else "raise to"
            reasons[k] = f"headroom held {hold:.0f} s: {verb} {ideal[k]} A ({self._phases_text(used[k], budget)})"
            raised.append(k)
        if raised:
            self._cycles.raised(now)
            return new, "raise: " + amps_of(new, raised)
        return new, "holding: " + amps_of(new, list(self._conns))

    def _changeover(self, now: float, targets: dict[str, int], ideal: dict[str, int], cuts: set[str],
                    used: dict[str, tuple[int, ...]], idle: dict[str, bool],
                    budget: Sequence[float]) -> tuple[set[str], list[str]]:
        """A move of amps (a change of turns): the cuts to make now, and the paused cars that start in
        the same decision. Never every charging car paused at once: when the cuts would pause them
        all, the first half of them in precedence keeps its amps until the next cars started land.
        A paused car starts now only where it fits with every cut car still counted at its old
        setting (its cut has not landed), and only on the main fuse alone: circuits and power
        limits wait for the landing, as any raise does."""
        cfg = self._cfg
        charging = [k for k in self._conns if targets[k] > 0]
        pausing = [k for k in charging if k in cuts and ideal[k] == 0]
        order = [claim.key for claim in self._claims(now, used, idle, resume_gate=True)]
        if charging and len(pausing) == len(charging) and len(pausing) > 1:
            pausing.sort(key=order.index)
            cuts = cuts - set(pausing[:len(pausing) // 2])  # the later half pauses first
        started: list[str] = []
        self._paused_to_move = any(k in cuts for k in pausing)
        if self._tree.balances or self._budgets:
            return cuts, started
        counted = [sum(targets[k] for k in self._conns if p in used[k] and targets[k] >= cfg.min_current)
                   for p in PHASES]
        for k in order:
            c = self._conns[k]
            if targets[k] or not ideal[k] or c.failed or self._tokens(now, c) < WRITES_PER_RAISE:
                continue
            if any(counted[p] + ideal[k] > budget[p] for p in used[k]):
                continue
            for p in used[k]:
                counted[p] += ideal[k]
            started.append(k)
        return cuts, started

    @staticmethod
    def _phases_text(phases: tuple[int, ...], budget: Sequence[float]) -> str:
        return ", ".join(f"{phase_name(p)} {max(budget[p], 0):.1f} A for the cars" for p in phases)

    def _why(self, key: str, old: int, new: int, used: dict[str, tuple[int, ...]], where: str,
             budget: Sequence[float], alloc: dict[str, int]) -> str:
        """A readable reason with its numbers for one connector's part in a cut or a move."""
        cfg = self._cfg
        c = self._conns[key]
        if c.failed:
            return self._failed_text(c, old)
        if new == old:
            return f"{where}; holding {old} A"
        if new > 0:
            return f"{where}; cut to {new} A"
        return self._paused_text(key, used, budget, alloc)

    def _paused_text(self, key: str, used: dict[str, tuple[int, ...]], budget: Sequence[float],
                     alloc: dict[str, int]) -> str:
        """Why `alloc` leaves this connector paused: the phase or the power budget short of the
        minimums, and why it is this one (priority, energy, its turn)."""
        cfg = self._cfg
        others = [k for k in self._conns if k != key and alloc.get(k, 0) > 0 and set(used[k]) & set(used[key])]
        binding = min(used[key] or PHASES, key=lambda p: budget[p])
        n = len(others) + 1
        text = (f"paused: {phase_name(binding)} headroom {max(budget[binding], 0):.0f} A short of "
                f"{n} x {cfg.min_current} A")
        power = self._power_short(key, used, alloc)
        if power is not None and budget[binding] - sum(alloc[k] for k in others) >= cfg.min_current:
            # The phases had room for its minimum: a power budget is what pauses it.
            why, others = power
            text = f"paused: {why}, short of {len(others) + 1} x {cfg.min_current} A"
        if others:
            mine = self._conns[key]
            same = [k for k in others if self._conns[k].priority == mine.priority]
            if len(same) < len(others):
                text += f"; lower priority ({mine.priority}) than {', '.join(o for o in others if o not in same)}"
            elif self._last_tick is not None and all(
                    self._energy(self._last_tick, mine) > self._energy(self._last_tick, self._conns[k]) for k in same):
                text += f"; most energy in the last {duration_text(cfg.rotate_s)}"
            else:
                # None had more in the last `rotate_s`: the turn went by the charge since plugging
                # in, then by the longest wait.
                text += f"; taking turns: {', '.join(same)} first"
        return text

    def _waiting(self, now: float, used: dict, ranges: dict, idle: dict, why: str) -> SharedDecision:
        waited = now - (self._started_at or now)
        text = f"waiting for the meter ({waited:.0f}/{self._cfg.stale_after_s:.0f} s; {why})"
        parts = []
        for key, c in self._conns.items():
            charge_at = c.inputs.observations().commanded
            charge_at = charge_at if charge_at is not None else self._cap(c)
            parts.append(ConnectorDecision(key, charge_at, None, text, charge_at == 0, ranges[key][0],
                                           charge_at > 0 and not idle[key], used[key], c.priority))
        total = sum(p.charge_at for p in parts)
        return SharedDecision(tuple(parts), total, (0.0, 0.0, 0.0), tuple(self._meter),  # type: ignore[arg-type]
                              (None, None, None), False, total == 0, text, self._strategy_name,
                              waiting_for_meter=True, circuits=tuple(self._rooms))

    def _output(self, now: float, new: dict[str, int], reasons: dict[str, str], used: dict, ranges: dict,
                idle: dict, headroom: OptTriple, loadbal: Triple, summary: str, *,
                meter_stale: bool) -> SharedDecision:
        """Per connector: write what changed (raises paced per connector, cuts at once)."""
        cfg = self._cfg
        parts = []
        weights = self._weights(used)
        shares = {k: self._shares_on(c, used[k]) for k, c in self._conns.items()}
        for key, c in self._conns.items():
            want = new[key]
            reason = reasons.get(key, summary)
            if not meter_stale:
                reason += "".join(f"; {n}" for n in self._power_notes(key, new, weights) if n not in reason)
            reason += "".join(f"; {n}" for n in self._circuit_notes(key, new, shares) if n not in reason)
            last = c.inputs.observations().commanded if c.confirmed else None
            if c.failed:
                want = self._assumed(c)
                reason = self._failed_text(c, want)
                if c.house_load:
                    want, reason = 0, "charger takes no limit: its draw counted as house load"
                command = None
            else:
                want = connector_limit(want, c.inputs.config, c.power_cap)
                if last is not None and c.written_at is not None and want > last:
                    wait = cfg.min_command_interval_s - (now - c.written_at)
                    if wait > 0 and c.target is not None:
                        want = c.target
                command = None if want == last else want
                c.sent = c.sent or command is not None
            if c.target is None or want != c.target:
                self._set_target(now, c, want)
            if want == 0 and self._held_paused(c) and not c.failed and not meter_stale:
                reason = paused_by_power_limit(c.power_cap_reason)
            if c.idle and c.plugged and c.stopped_at is None and not c.failed and not meter_stale and want:
                reason = (f"the car takes nothing (full, or not charging now): held at {want} A until it "
                          "draws again, lent to the others")
            parts.append(ConnectorDecision(key, want, command, reason, want == 0, ranges[key][0],
                                           want > 0 and not idle[key], used[key], c.priority))
        total = sum(p.charge_at for p in parts)
        return SharedDecision(tuple(parts), total, loadbal, tuple(self._meter),  # type: ignore[arg-type]
                              headroom, meter_stale, total == 0, summary, self._strategy_name,
                              circuits=tuple(self._rooms))


class ConnectorView:
    """One connector of a `SharedBalancer` through the one-car interface: its charger's reports,
    its commands, its power limit and its decision. A charger link, and the bench's one-car replay,
    talk to the balancer through this, the same for one connector or many."""

    def __init__(self, shared: SharedBalancer, key: str) -> None:
        self.shared = shared
        self.key = shared._conn(key).spec.key

    def rename(self, key: str) -> None:
        """Its connector is `key` ("CP:N") from now on (see `SharedBalancer.rename`)."""
        self.shared.rename(self.key, key)
        self.key = key

    @property
    def config(self) -> BalancerConfig:
        """Its connector's settings (the shared ones, with its own installation and default current)."""
        return self.shared.connector_config(self.key)

    def meter(self, now: float, phase: int, amps: float) -> None:
        self.shared.meter(now, phase, amps)

    def meter_alive(self, now: float) -> None:
        self.shared.meter_alive(now)

    def charger(self, now: float, currents: tuple[float, float, float] | None,
                phases: tuple[bool, bool, bool] | None) -> None:
        self.shared.charger(now, self.key, currents, phases)

    def car_plugged(self, now: float, plugged: bool | None) -> None:
        self.shared.car_plugged(now, self.key, plugged)

    def commanded(self, now: float, amps: int) -> None:
        self.shared.commanded(now, self.key, amps)

    def power_limit(self, now: float, amps_cap: float | None, reason: str = "") -> None:
        self.shared.power_limit(now, self.key, amps_cap, reason)

    def reconfigure(self, now: float, **changes: object) -> None:
        if set(changes) == {"installation_current"}:
            self.shared.set_installation_current(now, self.key, changes["installation_current"])  # type: ignore[arg-type]
        else:
            self.shared.reconfigure(now, **changes)

    def observations(self) -> Any:
        return self.shared.observations(self.key)

    def decide(self, now: float) -> ConnectorDecision:
        return self.shared.decide(now).connector(self.key)
