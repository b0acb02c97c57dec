"""The circuit tree: the main fuse and the feeders under it, each a per-phase limit.

Pure: no I/O, no clock. This is the one home of "the limits over the tree": which
connectors each circuit feeds, how much room each circuit leaves its cars on each
phase, which circuit is over, and which one binds a connector. `share` (sharing.py)
keeps every claim within every circuit it is under; the balancer cuts a circuit that
is over as it cuts the main fuse.

A circuit's load is its sub-meter's reading when it has one, else its cars' draws.
A stale sub-meter leaves its cars together the fail-safe current (the main meter's
rule, with the same staleness check), and they are never raised while it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bridge.balancer.model import PHASES, OptTriple, Triple, phase_name

MAIN = "main"  # the main fuse: its limit is BALANCER_MAX_A
# A circuit's name is also part of variable names (CIRCUIT_<NAME>_TOPIC_L1) and topics.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Every variable a circuit reads (its meter, in the P1_* settings' shapes): CIRCUIT_<NAME>_<SETTING>.
CIRCUIT_METER_SETTINGS = ("TOPIC_L1", "TOPIC_L2", "TOPIC_L3", "JSON_PATH_L1", "JSON_PATH_L2", "JSON_PATH_L3",
                          "UNIT", "VOLTAGE")
CIRCUIT_VARIABLE = re.compile(r"CIRCUIT_[A-Z][A-Z0-9_]*_(?:" + "|".join(CIRCUIT_METER_SETTINGS) + ")")


def circuit_variable(name: str, setting: str) -> str:
    """`garage`, `TOPIC_L1` -> `CIRCUIT_GARAGE_TOPIC_L1`."""
    return f"CIRCUIT_{name.upper()}_{setting}"


@dataclass(frozen=True)
class Circuit:
    """A circuit: its per-phase limit in A (with its margin, like MaxA) and the circuit it hangs on."""

    name: str
    max_a: float
    parent: str = MAIN

    def __post_init__(self) -> None:
        if _NAME.match(self.name) is None:
            raise ValueError(f"circuit name {self.name!r} must be a letter then letters, digits or _ "
                             "(it is part of CIRCUIT_<NAME>_* variables and topics)")
        if self.name.lower() == MAIN:
            raise ValueError(f"circuit name {MAIN!r} is the main fuse (BALANCER_MAX_A); name the circuit otherwise")
        if not (math.isfinite(self.max_a) and self.max_a > 0):
            raise ValueError(f"circuit {self.name}: the limit must be a number of amps above 0, got {self.max_a!r}")


def parse_circuits(text: str | None) -> list[Circuit]:
    """`garage:16,box1:10:garage` -> circuits (NAME:MAX_A[:PARENT]); ValueError names the bad entry."""
    if text is None or not text.strip():
        return []
    circuits: list[Circuit] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            raise ValueError(f"empty entry in circuit list {text!r}")
        parts = entry.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"circuit entry {entry!r}: expected NAME:MAX_A[:PARENT], e.g. garage:16 or box1:10:garage")
        try:
            max_a = float(parts[1])
        except ValueError:
            raise ValueError(f"circuit entry {entry!r}: the limit {parts[1]!r} is not a number of amps") from None
        try:
            circuit = Circuit(parts[0].strip(), max_a, parts[2].strip() if len(parts) == 3 else MAIN)
        except ValueError as e:
            raise ValueError(f"circuit entry {entry!r}: {e}") from None
        if any(c.name.lower() == circuit.name.lower() for c in circuits):
            raise ValueError(f"circuit entry {entry!r}: {circuit.name} is listed twice")
        circuits.append(circuit)
    return circuits


class CircuitTree:
    """The circuits under the main fuse and the connectors on each; ValueError names a cycle, an
    unknown parent, a connector on an unknown circuit, or a child whose limit is above its parent's."""

    def __init__(self, circuits: Sequence[Circuit], main_max_a: float, members: Mapping[str, str]) -> None:
        by_name = {c.name: c for c in circuits}
        for c in circuits:
            if c.parent != MAIN and c.parent not in by_name:
                raise ValueError(f"circuit {c.name}: unknown parent circuit {c.parent!r} "
                                 f"(known: {', '.join([MAIN, *by_name])})")
        for c in circuits:
            seen = [c.name]
            parent = c.parent
            while parent != MAIN:
                if parent in seen:
                    raise ValueError(f"circuit {c.name}: its parents make a cycle ({' -> '.join([*seen, parent])})")
                seen.append(parent)
                parent = by_name[parent].parent
        for c in circuits:
            parent_a = main_max_a if c.parent == MAIN else by_name[c.parent].max_a
            if c.max_a > parent_a:
                where = f"the main fuse's BALANCER_MAX_A ({parent_a:g} A)" if c.parent == MAIN \
                    else f"its parent {c.parent}'s ({parent_a:g} A)"
                raise ValueError(f"circuit {c.name}: its limit {c.max_a:g} A is above {where}")
        for key, name in members.items():
            if name != MAIN and name not in by_name:
                raise ValueError(f"connector {key}: unknown circuit {name!r} "
                                 f"(CIRCUITS lists: {', '.join(by_name) or 'none'})")
        self.circuits: dict[str, Circuit] = by_name
        self.members = {k: v for k, v in members.items() if v != MAIN}
        # Deepest first: a cut in a child comes before its parent's, which may then need none.
        self.order = sorted(by_name, key=lambda n: -len(self.chain(n)))

    def chain(self, name: str) -> list[str]:
        """`name` and the circuits above it, up to (not including) the main fuse."""
        out = []
        while name != MAIN:
            out.append(name)
            name = self.circuits[name].parent
        return out

    def keys_under(self, name: str) -> frozenset[str]:
        """The connectors the circuit feeds: its own and those of the circuits under it."""
        return frozenset(k for k, c in self.members.items() if name in self.chain(c))

    def circuits_of(self, key: str) -> list[str]:
        """The circuits a connector is under, its own first (the main fuse not included)."""
        own = self.members.get(key)
        return [] if own is None else self.chain(own)

    @property
    def balances(self) -> bool:
        """A connector is on a circuit (else the tree is only the main fuse for the balancer)."""
        return bool(self.members)


@dataclass(frozen=True)
class CircuitRoom:
    """One circuit at one decision: the amps its cars may have per house phase (`room`), what it
    carries now (`current`, None for a phase of a stale meter), and why its meter is stale."""

    name: str
    max_a: float
    keys: frozenset[str]
    room: Triple
    current: OptTriple
    stale: str | None = None

    def holds(self, key: str) -> bool:
        return key in self.keys

    def headroom(self) -> OptTriple:
        """Amps still free on each phase (the limit less what it carries), None where not known."""
        return tuple(None if a is None else self.max_a - a for a in self.current)  # type: ignore[return-value]

    def where(self, phase: int) -> str:
        """`garage L2 at 15.2 A` (the reason's words for a circuit that binds)."""
        at = self.current[phase]
        return f"{self.name} {phase_name(phase)} at {'?' if at is None else f'{at:.1f}'} A"


def circuit_rooms(tree: CircuitTree, cars_draw: Mapping[str, Triple], meters: Mapping[str, OptTriple],
                  stale: Mapping[str, str | None], failsafe_a: int) -> list[CircuitRoom]:
    """Each circuit's room for its cars, deepest first: with a meter, its limit less what the meter
    shows beyond its cars' draws (`cars_draw`: the most each car may draw per house phase); without
    one, its limit (its load is its cars). A stale meter leaves its cars `failsafe_a` together."""
    rooms = []
    for name in tree.order:
        circuit = tree.circuits[name]
        keys = tree.keys_under(name)
        cars = [sum(cars_draw[k][p] for k in keys) for p in PHASES]
        meter = meters.get(name)
        why = stale.get(name)
        if meter is None:
            room: Triple = (circuit.max_a,) * 3  # type: ignore[assignment]
            current: OptTriple = (cars[0], cars[1], cars[2])
        elif why is not None:
            room = (float(failsafe_a),) * 3  # type: ignore[assignment]
            current = meter
        else:
            room = tuple(circuit.max_a - (float(meter[p] or 0.0) - cars[p]) for p in PHASES)  # type: ignore[assignment]
            current = meter
        rooms.append(CircuitRoom(name, circuit.max_a, keys, room, current, why))
    return rooms


def circuits_over(rooms: Iterable[CircuitRoom], amps: Mapping[str, int], phases: Mapping[str, tuple[int, ...]],
                  min_current: int, tolerance: float) -> list[tuple[CircuitRoom, int]]:
    """The circuit phases whose cars (each counted at `amps` on `phases`, from the minimum) are above
    the circuit's room beyond `tolerance`."""
    over = []
    for r in rooms:
        for p in PHASES:
            load = sum(amps[k] for k in r.keys if p in phases[k] and amps[k] >= min_current)
            if load > r.room[p] + tolerance:
                over.append((r, p))
    return over


def binding(rooms: Iterable[CircuitRoom], key: str, amps: Mapping[str, int], phases: Mapping[str, tuple[int, ...]],
            min_current: int) -> list[str]:
    """The circuit phases that leave this connector no more amps (paused: no room for its minimum),
    in the reason's words (`garage L2 at 15.2 A`), its own circuit first."""
    need = 1 if amps.get(key, 0) else min_current
    out = []
    for r in rooms:
        if not r.holds(key):
            continue
        for p in phases[key]:
            load = sum(amps[k] for k in r.keys if k != key and p in phases[k] and amps[k] >= min_current)
            if r.room[p] - load - amps.get(key, 0) < need:
                out.append(r.where(p))
                break
    return out
