"""The house without the car: per-phase base load, one value a second.

A `HouseTrace` holds the house's true load on each phase for every second and,
separately, whether the meter reported that phase at that second. The two are
apart because a meter that goes quiet does not switch the house off: the
benchmark keeps scoring the real load while the balancer sees nothing.

Traces come from CSV files (`load_trace`) or from the built-in scenarios in
`bridge.sim.scenarios`.

CSV format::

    # car_phases: L2          (optional: the phases the car charges on; default L1,L2,L3)
    # car_max_a: 16           (optional: the most the car draws per phase; default 32)
    t,l1,l2,l3
    0,3.1,2.4,-1.0
    1,3.2,,-1.1               (empty cell: no meter message for L2 at that second)

Columns `car1`, `car2`, ... after `l3` give each car's demand in A for that
second (0 = not plugged in, or full; empty = as the second before; before the
first value: the car takes what it is offered). With them the bench puts one
car per column on the trace (three-phase unless `bench --car` says otherwise).

`t` is in seconds and is rounded to whole seconds (the bench runs at 1 s); when
several rows fall in the same second the last one counts. Seconds without a
row, and empty cells, are seconds without a meter message; the house load is
held at the last reported value through them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

PHASE_NAMES = ("L1", "L2", "L3")
THREE_PHASES = (True, True, True)
DEFAULT_CAR_MAX_A = 32
# A month of 1 s data; a typo in `t` (a timestamp in ms, say) must not allocate gigabytes.
MAX_TRACE_S = 31 * 24 * 3600


@dataclass(frozen=True)
class CarSpec:
    """A car on the trace: the house phases it charges on, the most it draws per phase, its charge mode."""

    phases: tuple[bool, bool, bool] = THREE_PHASES
    max_a: int = DEFAULT_CAR_MAX_A
    mode: str = "fast"
    circuit: str = "main"  # the circuit it hangs on (`@garage`, bench --circuit); the main fuse by default

    def __post_init__(self) -> None:
        if not any(self.phases):
            raise ValueError("a car must charge on at least one phase")

    @property
    def label(self) -> str:
        text = "".join(n for n, on in zip(PHASE_NAMES, self.phases) if on)
        if self.max_a != DEFAULT_CAR_MAX_A or self.mode != "fast":
            text = f"{text}:{self.max_a}"
        text = text if self.mode == "fast" else f"{text}:{self.mode}"
        return text if self.circuit == "main" else f"{text}@{self.circuit}"


def parse_car(text: str) -> CarSpec:
    """`L1L2L3`, `L2`, `L1L2L3:10`, `L1L2L3:16:pv`, `L1L2L3:16@garage`: the car's phases and,
    optionally, the most it draws, its charge mode (fast, pv, minpv, off) and its circuit."""
    from bridge.balancer.power import CHARGE_MODES

    text, at, circuit = text.strip().partition("@")
    circuit = circuit.strip()
    if at and not circuit:
        raise ValueError(f"car {text!r}: no circuit named after @")
    phases_text, colon, rest = text.strip().partition(":")
    max_text, _, mode_text = rest.partition(":")
    if colon and not rest:
        raise ValueError(f"car {text!r}: the maximum after ':' must be whole amps")
    phases_text = phases_text.upper()
    names = [phases_text[i:i + 2] for i in range(0, len(phases_text), 2)]
    if not names or any(n not in PHASE_NAMES for n in names) or len(set(names)) != len(names):
        raise ValueError(f"car {text!r}: expected phases such as L1L2L3 or L2, optionally :MAX_A[:MODE] "
                         "(e.g. L1L2L3:16:pv)")
    max_a = DEFAULT_CAR_MAX_A
    if max_text:
        try:
            max_a = int(max_text)
        except ValueError:
            raise ValueError(f"car {text!r}: the maximum after ':' must be whole amps") from None
        if not 6 <= max_a <= 80:
            raise ValueError(f"car {text!r}: the maximum must be between 6 and 80 A, got {max_a}")
    mode = mode_text.strip().lower() or "fast"
    if mode not in CHARGE_MODES:
        raise ValueError(f"car {text!r}: the mode must be one of {', '.join(CHARGE_MODES)}, got {mode_text!r}")
    return CarSpec(phases=tuple(n in names for n in PHASE_NAMES), max_a=max_a, mode=mode,  # type: ignore[arg-type]
                   circuit=circuit or "main")


class TraceError(ValueError):
    """A trace that cannot be used; the message names the file, the line and the fault."""


@dataclass(frozen=True)
class HouseTrace:
    """Per-phase house load (amps, signed: negative = export) for each second from 0."""

    name: str
    base: tuple[list[float], list[float], list[float]]
    metered: tuple[list[bool], list[bool], list[bool]]
    car_phases: tuple[bool, bool, bool] = THREE_PHASES
    car_max_a: int = DEFAULT_CAR_MAX_A
    description: str = ""
    # A scenario built to show a house that no balancer can keep under MaxA.
    meant_to_exceed_max_a: bool = False
    # Several cars: each one's demand per second (A; 0 = not plugged in or full), and the cars.
    car_demand: tuple[list[float], ...] = ()
    cars: tuple[CarSpec, ...] = ()
    # Several cars: whether each one is plugged in, per second (empty: plugged in throughout). An
    # unplugged car draws nothing and its connector's status says so at each report.
    car_plugged: tuple[list[bool], ...] = ()

    def __post_init__(self) -> None:
        lengths = {len(s) for s in (*self.base, *self.metered)}
        if len(lengths) != 1:
            raise ValueError(f"trace {self.name!r}: phases and meter flags differ in length")
        if not any(self.car_phases):
            raise ValueError(f"trace {self.name!r}: the car must charge on at least one phase")
        if any(len(d) != len(self.base[0]) for d in self.car_demand):
            raise ValueError(f"trace {self.name!r}: a car's demand differs in length from the house load")
        if any(len(p) != len(self.base[0]) for p in self.car_plugged):
            raise ValueError(f"trace {self.name!r}: a car's plug-in state differs in length from the house load")
        if self.cars and self.car_demand and len(self.cars) != len(self.car_demand):
            raise ValueError(f"trace {self.name!r}: {len(self.cars)} cars but {len(self.car_demand)} demand columns")

    @property
    def duration_s(self) -> int:
        return len(self.base[0])

    def house_peak_a(self) -> float:
        """The highest load of the house alone on any phase."""
        return max(max(phase) for phase in self.base)

    def seconds_house_over(self, max_a: float) -> int:
        """Seconds in which the house alone is above `max_a` on some phase."""
        l1, l2, l3 = self.base
        return sum(1 for a, b, c in zip(l1, l2, l3) if a > max_a or b > max_a or c > max_a)


def load_trace(path: str | Path, *, name: str | None = None) -> HouseTrace:
    """Read a `t,l1,l2,l3` CSV; raises TraceError naming the file and line of any fault."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return parse_trace(f, source=str(path), name=name or path.stem)
    except OSError as e:
        raise TraceError(f"{path}: cannot read the trace: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a text (UTF-8) file") from None


def parse_trace(lines: Iterable[str], *, source: str, name: str) -> HouseTrace:
    """Parse CSV text (an iterable of lines); `source` names it in error messages."""
    car_phases: tuple[bool, bool, bool] = THREE_PHASES
    car_max_a = DEFAULT_CAR_MAX_A
    header_seen = False
    t_first: float | None = None
    t_previous: float | None = None
    rows: dict[int, tuple[float | None, ...]] = {}
    n_cars = 0

    def fail(lineno: int, what: str) -> TraceError:
        return TraceError(f"{source}, line {lineno}: {what}")

    for lineno, raw_line in enumerate(lines, start=1):
        line = raw_line.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, _, value = line.lstrip("#").partition(":")
            key = key.strip().lower()
            if key == "car_phases":
                car_phases = _parse_car_phases(value, lambda what: fail(lineno, what))
            elif key == "car_max_a":
                car_max_a = _parse_car_max(value, lambda what: fail(lineno, what))
            continue
        cells = [c.strip() for c in next(csv.reader([line]))]
        if not header_seen:
            names = [c.lower() for c in cells]
            n_cars = len(names) - 4
            if names[:4] != ["t", "l1", "l2", "l3"] or names[4:] != [f"car{i + 1}" for i in range(n_cars)]:
                raise fail(lineno, f"the header must be 't,l1,l2,l3' (then car1,car2,... for cars' demand), "
                                   f"found {line[:60]!r}")
            header_seen = True
            continue
        if len(cells) != 4 + n_cars:
            columns = "t,l1,l2,l3" + "".join(f",car{i + 1}" for i in range(n_cars))
            raise fail(lineno, f"expected {4 + n_cars} values ({columns}), found {len(cells)}: {line[:60]!r}")
        if not cells[0]:
            raise fail(lineno, "t is empty: every row needs its time in seconds")
        t = _number(cells[0], lambda what: fail(lineno, f"t: {what}"))
        if t_previous is not None and t < t_previous:
            raise fail(lineno, f"t={cells[0]} goes back in time (the row before has t={t_previous:g})")
        if t_first is None:
            t_first = t
        if t - t_first > MAX_TRACE_S:
            raise fail(lineno, f"t={cells[0]} is {t - t_first:.0f} s after the first row; "
                               f"a trace may span at most {MAX_TRACE_S} s (is t in seconds?)")
        t_previous = t
        values = tuple(
            None if not cell else _number(cell, lambda what, n=n: fail(lineno, f"{column_name(n)}: {what}"))
            for n, cell in enumerate(cells[1:])
        )
        for n, value in enumerate(values[3:]):
            if value is not None and value < 0:
                raise fail(lineno, f"car{n + 1}: a car's demand cannot be negative, found {value:g}")
        rows[round(t - t_first)] = values

    if not header_seen:
        raise TraceError(f"{source}: empty trace; expected the header 't,l1,l2,l3' and rows of data")
    if not rows:
        raise TraceError(f"{source}: no data rows after the header")

    duration = max(rows) + 1
    base: list[list[float]] = []
    metered: list[list[bool]] = []
    for phase in range(3):
        reported = {s: v[phase] for s, v in rows.items() if v[phase] is not None}
        if not reported:
            raise TraceError(f"{source}: {PHASE_NAMES[phase]} has no value in any row")
        # Before the first reading the load is unknown; its first value is the best guess.
        held = reported[min(reported)]
        series = [0.0] * duration
        flags = [False] * duration
        for s in range(duration):
            value = reported.get(s)
            if value is not None:
                held = value
                flags[s] = True
            series[s] = held
        base.append(series)
        metered.append(flags)
    demand: list[list[float]] = []
    for car in range(n_cars):
        held = float(DEFAULT_CAR_MAX_A)
        series = [0.0] * duration
        for s in range(duration):
            value = rows.get(s, (None,) * (4 + n_cars))[3 + car]
            if value is not None:
                held = value
            series[s] = held
        demand.append(series)
    return HouseTrace(
        name=name,
        base=(base[0], base[1], base[2]),
        metered=(metered[0], metered[1], metered[2]),
        car_phases=car_phases,
        car_max_a=car_max_a,
        description=f"trace {source}",
        car_demand=tuple(demand),
    )


def column_name(n: int) -> str:
    return PHASE_NAMES[n] if n < 3 else f"car{n - 2}"


def _number(text: str, fail: Callable[[str], TraceError]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise fail(f"{text[:30]!r} is not a number") from None
    if not math.isfinite(value):
        raise fail(f"{text!r} is not a finite number")
    return value


def _parse_car_phases(text: str, fail: Callable[[str], TraceError]) -> tuple[bool, bool, bool]:
    names = {n.strip().upper() for n in text.replace(" ", ",").split(",") if n.strip()}
    unknown = names - set(PHASE_NAMES)
    if not names or unknown:
        raise fail(f"car_phases must list phases among L1,L2,L3, found {text.strip()!r}")
    return (PHASE_NAMES[0] in names, PHASE_NAMES[1] in names, PHASE_NAMES[2] in names)


def _parse_car_max(text: str, fail: Callable[[str], TraceError]) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise fail(f"car_max_a must be whole amps, found {text.strip()!r}") from None
    if not 6 <= value <= 80:
        raise fail(f"car_max_a must be between 6 and 80 A, found {value}")
    return value
