"""Generated households: many houses the balancer was not tuned on, deterministic for a seed.

A generated house is an evening or a day at 1 s, composed from the appliance
library (`bridge.sim.appliances`, one table of sizes and timings with their
sources), each appliance on its phases: oven and induction hob, kettle, sauna,
heat pump and its immersion heater, washing machine, dishwasher, dryer,
electric heating, a second car or a heat-pump water heater, lighting and
standby, solar export and meter gaps. Which appliances a house has, and when
they run, is drawn from the seed and the house's number; the same seed always
gives the same houses, in any process.

A household that lives with a 25 A main fuse learns not to run its big loads
together: each use is moved to another time when it would take a phase past
`HOUSE_CAP_A`; when no time fits, it is mostly left out and sometimes run
anyway. So most houses stay under MaxA on their own; the few that do not are
the ones the bench reports apart.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from bridge.sim.appliances import bounds, draw, draw_int
from bridge.sim.house import PHASE_NAMES, HouseTrace
from bridge.sim.scenarios import HOUR, MINUTE, _House, amps

# Every kind the generator can put in a house (what `GeneratedHouse.kinds` lists).
KINDS = (
    "oven", "hob", "kettle", "sauna", "heat-pump", "immersion-heater", "washing-machine", "dishwasher",
    "dryer", "electric-heating", "second-car", "heat-pump-boiler", "lighting", "solar-export", "meter-gap",
)
# A use is moved when it would take a phase above this (before meter noise, which adds < 0.5 A).
HOUSE_CAP_A = 23.0
PLACEMENT_TRIES = 10
RUN_ANYWAY_SHARE = 0.3  # when no time fits, the use is run anyway this often, else left out
# Share of houses that own and use each appliance in the window (estimates, for variety more than
# for census accuracy); the heating loads depend on the season below.
SEASONS = (("winter", 0.4), ("spring", 0.3), ("summer", 0.3))
PRESENCE = {
    "oven": 0.55, "hob": 0.75, "kettle": 0.7, "sauna": 0.15, "washing-machine": 0.4, "dishwasher": 0.5,
    "dryer": 0.25, "second-car": 0.15, "heat-pump-boiler": 0.15, "solar-export": 0.45,
}
HEAT_PUMP_PRESENCE = {"winter": 0.45, "spring": 0.35, "summer": 0.1}
IMMERSION_PRESENCE = {"winter": 0.6, "spring": 0.25, "summer": 0.0}
ELECTRIC_HEATING_PRESENCE = {"winter": 0.35, "spring": 0.2, "summer": 0.0}
# The day's sky over a roof: a clear day gives the sun's whole curve, smooth; passing clouds cut it
# to a third now and then for minutes; an overcast day gives a third of it, uneven, with bright
# breaks (estimate: shares of a year's days in north-western Europe).
SKIES = (("clear", 0.3), ("passing-clouds", 0.45), ("overcast", 0.25))
# Passing clouds is the sky every generated house had before skies were drawn: the default keeps
# `--generate N --seed S` the same houses, so figures measured on them stay comparable; "mixed"
# draws each roof's sky by the shares above.
DEFAULT_SKY = "passing-clouds"
MIXED_SKY = "mixed"
SKY_CHOICES = (*(name for name, _share in SKIES), MIXED_SKY)
DAY_SHARE = 0.3  # houses replayed over a day rather than an evening
THREE_PHASE_CAR_SHARE = 0.75
CAR_MAX_A = 16


@dataclass(frozen=True)
class ApplianceUse:
    """One appliance running in a generated house: what, on which phases, from when to when."""

    kind: str
    phases: str
    start_s: int
    end_s: int

    def as_json(self) -> dict:
        return {"kind": self.kind, "phases": self.phases, "start_s": self.start_s, "end_s": self.end_s}


@dataclass(frozen=True)
class GeneratedHouse:
    trace: HouseTrace
    uses: tuple[ApplianceUse, ...]

    @property
    def kinds(self) -> set[str]:
        return {use.kind for use in self.uses}


def house_name(index: int) -> str:
    return f"house-{index + 1:03d}"


def generate_houses(n: int, seed: int, sky: str = DEFAULT_SKY) -> list[GeneratedHouse]:
    return [generate_house(seed, index, sky) for index in range(n)]


def generate_house(seed: int, index: int, sky: str = DEFAULT_SKY) -> GeneratedHouse:
    """House number `index` (from 0) of `seed`: the same for the same pair, whatever else is generated.
    `sky` (one of SKIES) gives the roof that day's sky; MIXED_SKY: each house draws its own."""
    if sky not in SKY_CHOICES:
        raise ValueError(f"the sky is one of {', '.join(SKY_CHOICES)}; got {sky!r}")
    key = f"chargeamps-bridge house {seed}/{index}"
    # The sky has its own draws: a house's other loads are the same whatever its sky.
    return _Household(random.Random(key), house_name(index), random.Random(f"{key} sky"), sky).build()


def _phases(*phases: int) -> str:
    return ",".join(PHASE_NAMES[p] for p in sorted(set(phases)))


class _Layer(_House):
    """One use's load, composed apart so it can be checked against the house before it is added.

    It shares the house's random draws and composes with the same builders (thermostat, pulsing);
    it has no meter flags of its own, and it remembers the seconds it touched.
    """

    def __init__(self, n: int, rng: random.Random) -> None:
        self.n = n
        self.rng = rng
        self.load = [[0.0] * n for _ in range(3)]
        self.low, self.high = n, 0

    def add(self, phase: int, start: float, end: float, a: float) -> None:
        first, last = max(0, int(start)), min(self.n, int(end))
        if first < last:
            self.low, self.high = min(self.low, first), max(self.high, last)
            super().add(phase, start, end, a)


class _Household:
    def __init__(self, rng: random.Random, name: str, sky_rng: random.Random | None = None,
                 sky: str | None = None) -> None:
        self.rng = rng
        self.name = name
        self.sky_rng = sky_rng or random.Random(name)
        self.sky = self._weighted(SKIES, self.sky_rng) if sky in (None, MIXED_SKY) else sky
        self.season = self._weighted(SEASONS)
        self.is_day = rng.random() < DAY_SHARE
        if self.is_day:
            self.start_h, hours = draw(rng, "house.day_start_h"), draw(rng, "house.day_hours")
        else:
            self.start_h, hours = draw(rng, "house.evening_start_h"), draw(rng, "house.evening_hours")
        self.n = int(hours * HOUR)
        self.house = _House(self.n, seed=0)
        self.house.rng = rng
        self.uses: list[ApplianceUse] = []

    # ---- composition ---------------------------------------------------------------

    def _weighted(self, options: tuple[tuple[str, float], ...], rng: random.Random | None = None) -> str:
        pick = (rng or self.rng).random() * sum(w for _, w in options)
        for name, weight in options:
            pick -= weight
            if pick < 0:
                return name
        return options[-1][0]

    def _has(self, kind: str) -> bool:
        return self.rng.random() < PRESENCE[kind]

    def _phase(self) -> int:
        return self.rng.randrange(3)

    def _clock_s(self, hour: float) -> float:
        """Seconds from the start of the trace to `hour` o'clock."""
        return (hour - self.start_h) * HOUR

    def _start_between(self, first_h: float, last_h: float, length_s: float) -> float:
        """A start time in that clock range when it falls in the window, else anywhere in it."""
        latest = max(0.0, self.n - min(length_s, self.n / 2))
        low, high = max(0.0, self._clock_s(first_h)), min(latest, self._clock_s(last_h))
        if low >= high:
            low, high = 0.0, latest
        return self.rng.uniform(low, high)

    def _place(self, kind: str, phases: str, build, when) -> None:
        """Compose a use with `build(layer, start) -> end`, at a time from `when()` that fits the house."""
        load = self.house.load
        for attempt in range(PLACEMENT_TRIES):
            layer = _Layer(self.n, self.rng)
            start = when()
            end = build(layer, start)
            if layer.low >= layer.high:
                return
            fits = all(
                max(h + a for h, a in zip(load[p][layer.low:layer.high], layer.load[p][layer.low:layer.high]))
                <= HOUSE_CAP_A
                for p in range(3)
            )
            if not fits and attempt == PLACEMENT_TRIES - 1 and self.rng.random() >= RUN_ANYWAY_SHARE:
                return  # no time fits: this evening goes without it
            if fits or attempt == PLACEMENT_TRIES - 1:
                for p in range(3):
                    series, extra = load[p], layer.load[p]
                    for s in range(layer.low, layer.high):
                        series[s] += extra[s]
                # A use may begin before the window (an oven preheating before the evening starts).
                self.uses.append(ApplianceUse(kind, phases, max(0, int(start)), int(min(end, self.n))))
                return

    def build(self) -> GeneratedHouse:
        rng, h = self.rng, self.house
        levels = (draw(rng, "background.level_a"), draw(rng, "background.level_a"), draw(rng, "background.level_a"))
        h.background(levels)
        h.fridge(self._phase())
        self.uses.append(ApplianceUse("lighting", "L1,L2,L3", 0, self.n))
        self._lighting()
        # Loads that run the whole window first; the others fit around them.
        if rng.random() < HEAT_PUMP_PRESENCE[self.season]:
            self._heat_pump()
        if rng.random() < ELECTRIC_HEATING_PRESENCE[self.season]:
            self._electric_heating()
        if self._has("solar-export"):
            self._solar()
        if self._has("second-car"):
            self._second_car()
        elif self._has("heat-pump-boiler"):
            self._boiler()
        meal_h = (11.5, 13.0) if self.is_day and rng.random() < 0.5 else (16.5, 19.5)
        if self._has("oven"):
            self._oven(meal_h)
        if self._has("hob"):
            self._hob(meal_h)
        if self._has("sauna"):
            self._sauna()
        if self._has("washing-machine"):
            self._washer()
        if self._has("dishwasher"):
            self._dishwasher()
        if self._has("dryer"):
            self._dryer()
        if self._has("kettle"):
            for _ in range(draw_int(rng, "kettle.uses")):
                self._kettle()
        self._meter_gaps()
        h.noise()
        three_phase = rng.random() < THREE_PHASE_CAR_SHARE
        car_phase = self._phase()
        car_phases = (True, True, True) if three_phase else (car_phase == 0, car_phase == 1, car_phase == 2)
        trace = h.trace(self.name, self._description(car_phases), car_phases=car_phases, car_max_a=CAR_MAX_A)
        return GeneratedHouse(trace, tuple(sorted(self.uses, key=lambda u: (u.start_s, u.kind))))

    def _description(self, car_phases) -> str:
        start = f"{int(self.start_h):02d}:{int(self.start_h % 1 * 60):02d}"
        car = "three-phase" if all(car_phases) else "one-phase on " + PHASE_NAMES[car_phases.index(True)]
        part = "day" if self.is_day else "evening"
        kinds = ", ".join(sorted({u.kind for u in self.uses} - {"lighting"}))
        sky = f" ({self.sky})" if "solar-export" in {u.kind for u in self.uses} else ""
        return f"{self.season} {part} from {start}, {self.n / HOUR:.1f} h, car {car}: {kinds}{sky}"

    # ---- appliances ----------------------------------------------------------------

    def _lighting(self) -> None:
        """Lights switched on as the evening goes (and some during the day), on any phase."""
        rng = self.rng
        for _ in range(draw_int(rng, "lighting.switches")):
            phase, start = self._phase(), rng.uniform(0, self.n)
            self.house.add(phase, start, start + rng.uniform(5 * MINUTE, 3 * HOUR), amps(draw(rng, "lighting.step_w")))

    def _heat_pump(self) -> None:
        rng = self.rng
        per_phase = amps(draw(rng, "heat_pump.compressor_w")) / 3
        inrush = draw(rng, "heat_pump.inrush")

        def build(layer: _Layer, start: float) -> float:
            t = start
            while t < self.n:
                run = draw(rng, "heat_pump.run_s")
                layer.add_all(t, t + 2, (per_phase * inrush,) * 3)
                layer.add_all(t + 2, t + run, (per_phase,) * 3)
                if run > 30 * MINUTE and rng.random() < 0.5:  # a defrost: the compressor works harder
                    layer.add_all(t + run / 2, t + run / 2 + 5 * MINUTE, (per_phase * 0.3,) * 3)
                t += run + draw(rng, "heat_pump.rest_s")
            return self.n

        self._place("heat-pump", "L1,L2,L3", build, lambda: rng.uniform(0, 10 * MINUTE))
        if rng.random() < IMMERSION_PRESENCE[self.season]:
            self._immersion_heater()

    def _immersion_heater(self) -> None:
        """Stepped in and out one step at a time on the heating demand; step k's element on phase k mod 3."""
        rng = self.rng
        step_a = amps(draw(rng, "heat_pump.immersion_step_w"))
        max_steps = draw_int(rng, "heat_pump.immersion_steps")
        length = draw(rng, "heat_pump.immersion_s")

        def build(layer: _Layer, start: float) -> float:
            t, steps, end = start, 0, start + length
            while t < end:
                hold = draw(rng, "heat_pump.immersion_hold_s")
                steps = max(0, min(max_steps, steps + rng.choice((-1, 1, 1) if t < start + length / 2 else (-1, -1, 1))))
                for k in range(steps):
                    layer.add(k % 3, t, min(end, t + hold), step_a)
                t += hold
            return end

        self._place("immersion-heater", "L1,L2,L3", build, lambda: rng.uniform(0, max(0.0, self.n - length)))

    def _electric_heating(self) -> None:
        rng = self.rng
        first = self._phase()
        for heater in range(draw_int(rng, "heating.heaters")):
            phase = (first + heater) % 3  # an electrician spreads the heaters over the phases
            per_phase = [0.0, 0.0, 0.0]
            per_phase[phase] = amps(draw(rng, "heating.heater_w"))

            def build(layer: _Layer, start: float, per_phase=tuple(per_phase)) -> float:
                layer.thermostat(start, self.n, per_phase, on_s=(rng.uniform(120, 300), rng.uniform(300, 600)),
                                 off_s=(rng.uniform(180, 400), rng.uniform(400, 900)))
                return self.n

            self._place("electric-heating", _phases(phase), build, lambda: rng.uniform(0, 10 * MINUTE))

    def _solar(self) -> None:
        """Export following the sun from 06:00 to 21:00 (a bell peaking at 13:30) under the day's sky
        (SKIES): clear, passing clouds, or overcast with breaks."""
        rng, sky_rng = self.rng, self.sky_rng
        if rng.random() < 0.5:
            phases, peak = (self._phase(),), amps(draw(rng, "solar.one_phase_w"))
        else:
            phases, peak = (0, 1, 2), amps(draw(rng, "solar.three_phase_w")) / 3
        sun, cloud_until = 1.0, 0.0
        used = False
        for start in range(0, self.n, 10):
            clock = self.start_h + start / HOUR
            height = math.sin(math.pi * (clock - 6.0) / 15.0) if 6.0 < clock < 21.0 else 0.0
            # The cloud events are drawn whatever the sky, so that the house's other loads stay the same.
            if start >= cloud_until and rng.random() < 0.01:
                cloud_until = start + draw(rng, "solar.cloud_s")
            in_event = start < cloud_until
            if self.sky == "clear":
                target = 1.0 - 0.02 * sky_rng.random()  # haze
            elif self.sky == "overcast":
                target = 0.8 if in_event else 0.2 + 0.2 * sky_rng.random()  # a break, else thick and uneven
            else:
                target = 0.3 if in_event else 1.0
            sun += (target - sun) * 0.5  # cloud edges take tens of seconds
            export = peak * height * sun
            if export > 0.05:
                used = True
                for p in phases:
                    self.house.add(p, start, start + 10, -export)
        if used:
            self.uses.append(ApplianceUse("solar-export", _phases(*phases), 0, self.n))

    def _second_car(self) -> None:
        rng = self.rng
        phase, a, run = self._phase(), draw(rng, "second_car.amps"), draw(rng, "second_car.run_s")

        def build(layer: _Layer, start: float) -> float:
            layer.add(phase, start, start + run, a)
            return start + run

        self._place("second-car", _phases(phase), build, lambda: rng.uniform(0, self.n * 0.7))

    def _boiler(self) -> None:
        rng = self.rng
        phase, run = self._phase(), draw(rng, "boiler.run_s")
        compressor = amps(draw(rng, "boiler.compressor_w"))
        element = amps(draw(rng, "boiler.element_w")) if rng.random() < 0.4 else 0.0

        def build(layer: _Layer, start: float) -> float:
            layer.add(phase, start, start + 2, compressor * 2)
            layer.add(phase, start, start + run, compressor)
            if element:  # the backup element finishes the heating (legionella programme)
                layer.add(phase, start + run, start + run + 20 * MINUTE, element)
                return start + run + 20 * MINUTE
            return start + run

        self._place("heat-pump-boiler", _phases(phase), build, lambda: rng.uniform(0, self.n * 0.8))

    def _oven(self, meal_h: tuple[float, float]) -> None:
        """A one-phase built-in oven or a three-phase cooker: preheat on every element, then a thermostat
        on the programme's elements (a power step down)."""
        rng = self.rng
        three_phase = rng.random() < 0.5
        phases = (0, 1, 2) if three_phase else (self._phase(),) * 3
        top, bottom, ring = (amps(draw(rng, "oven.element_w")) for _ in range(3))
        if not three_phase:  # a 16 A one-phase oven: elements up to about 3.5 kW together
            top, bottom, ring = top * 0.5, bottom * 0.5, ring * 0.7
        use = draw(rng, "oven.use_s")
        preheat = draw(rng, "oven.preheat_s")
        fan_only = rng.random() < 0.5

        def per_phase(elements: tuple[float, float, float]) -> tuple[float, float, float]:
            out = [0.0, 0.0, 0.0]
            for phase, a in zip(phases, elements):
                out[phase] += a
            return (out[0], out[1], out[2])

        def build(layer: _Layer, start: float) -> float:
            layer.add(phases[2], start, start + use, 0.2)  # fan and lamp
            layer.add_all(start, start + preheat, per_phase((top, 0.0, ring) if fan_only else (top, bottom, ring)))
            cycle = per_phase((0.0, 0.0, ring) if fan_only else (top, bottom, 0.0))
            layer.thermostat(start + preheat + draw(rng, "oven.off_s"), start + use, cycle,
                             on_s=bounds("oven.on_s"), off_s=bounds("oven.off_s"))
            return start + use

        self._place("oven", _phases(*phases), build, lambda: self._start_between(*meal_h, use) - preheat)

    def _hob(self, meal_h: tuple[float, float]) -> None:
        """An induction hob: each zone on its own phase (a pair of zones per phase); a zone boils on
        boost, then its power level is turned up and down by hand; low levels pulse the coil."""
        rng = self.rng
        hob_phases = [0, 1, 2] if rng.random() < 0.4 else rng.sample([0, 1, 2], 2)
        zones = rng.sample(hob_phases, min(len(hob_phases), draw_int(rng, "hob.zones")))
        session = draw(rng, "hob.session_s")

        def build(layer: _Layer, start: float) -> float:
            end = start + session
            for phase in zones:
                zone_a = amps(draw(rng, "hob.zone_max_w"))
                t = start + rng.uniform(0, 5 * MINUTE)
                if rng.random() < 0.7:
                    boost = draw(rng, "hob.boost_s")
                    layer.add(phase, t, t + boost, amps(draw(rng, "hob.boost_w")))
                    t += boost
                level = rng.randrange(3, 9)
                while t < end:
                    hold = draw(rng, "hob.level_s")
                    fraction = level / 9
                    if fraction >= 0.5:
                        layer.add(phase, t, min(end, t + hold), zone_a * fraction)
                    else:  # the coil runs at half power for part of each period
                        period = draw(rng, "hob.pulse_period_s")
                        layer.pulsing(phase, t, min(end, t + hold), zone_a / 2, on_s=period * fraction * 2,
                                      period_s=period)
                    t += hold
                    level = max(1, min(9, level + rng.choice((-2, -1, -1, 1, 1, 2))))
            return end

        self._place("hob", _phases(*zones), build, lambda: self._start_between(*meal_h, session))

    def _kettle(self) -> None:
        rng = self.rng
        phase, a, run = self._phase(), amps(draw(rng, "kettle.power_w")), draw(rng, "kettle.run_s")

        def build(layer: _Layer, start: float) -> float:
            layer.add(phase, start, start + run, a)
            return start + run

        self._place("kettle", _phases(phase), build, lambda: rng.uniform(0, self.n - run))

    def _sauna(self) -> None:
        rng = self.rng
        per_phase = amps(draw(rng, "sauna.power_w")) / 3
        session, heatup = draw(rng, "sauna.session_s"), draw(rng, "sauna.heatup_s")

        def build(layer: _Layer, start: float) -> float:
            layer.add_all(start, start + heatup, (per_phase,) * 3)
            layer.thermostat(start + heatup + draw(rng, "sauna.off_s"), start + session, (per_phase,) * 3,
                             on_s=bounds("sauna.on_s"), off_s=bounds("sauna.off_s"))
            return start + session

        self._place("sauna", "L1,L2,L3", build, lambda: self._start_between(17.0, 21.0, session))

    def _washer(self) -> None:
        rng = self.rng
        phase, run = self._phase(), draw(rng, "washer.run_s")
        heater, heating = amps(draw(rng, "washer.heater_w")), draw(rng, "washer.heater_s")
        motor, spin = amps(draw(rng, "washer.motor_w")), amps(draw(rng, "washer.spin_w"))

        def build(layer: _Layer, start: float) -> float:
            layer.add(phase, start, start + run, motor)
            heat_from = start + rng.uniform(2, 6) * MINUTE
            layer.add(phase, heat_from, heat_from + heating, heater)
            spin_from = start + run - rng.uniform(5, 10) * MINUTE
            layer.pulsing(phase, spin_from, start + run, spin, on_s=rng.uniform(40, 90), period_s=120)
            return start + run

        self._place("washing-machine", _phases(phase), build, lambda: rng.uniform(0, max(0.0, self.n - run / 2)))

    def _dishwasher(self) -> None:
        rng = self.rng
        phase, run = self._phase(), draw(rng, "dishwasher.run_s")
        heater = amps(draw(rng, "dishwasher.heater_w"))

        def build(layer: _Layer, start: float) -> float:
            layer.add(phase, start, start + run, 0.35)  # circulation pump
            first = start + rng.uniform(3, 8) * MINUTE
            layer.add(phase, first, first + draw(rng, "dishwasher.heater_s"), heater)
            second = start + run * rng.uniform(0.55, 0.7)
            layer.add(phase, second, second + draw(rng, "dishwasher.heater_s"), heater)
            return start + run

        self._place("dishwasher", _phases(phase), build,
                    lambda: self._start_between(18.5, 22.0, run / 2))

    def _dryer(self) -> None:
        rng = self.rng
        phase, run = self._phase(), draw(rng, "dryer.run_s")
        heat_pump_dryer = rng.random() < 0.3

        def build(layer: _Layer, start: float) -> float:
            layer.add(phase, start, start + run, 0.9)  # drum motor and fan
            if heat_pump_dryer:
                layer.add(phase, start + 60, start + run - 5 * MINUTE, amps(draw(rng, "dryer.heat_pump_w")))
            else:
                layer.thermostat(start + 30, start + run - 10 * MINUTE, tuple(
                    amps(draw(rng, "dryer.heater_w")) if p == phase else 0.0 for p in range(3)),
                    on_s=bounds("dryer.on_s"), off_s=bounds("dryer.off_s"), first_on_s=rng.uniform(8, 15) * MINUTE)
            return start + run

        self._place("dryer", _phases(phase), build, lambda: rng.uniform(0, max(0.0, self.n - run / 2)))

    def _meter_gaps(self) -> None:
        """Seconds to minutes without meter messages, log-uniformly long: most gaps are short."""
        rng = self.rng
        low, high = bounds("meter_gap.length_s")
        for _ in range(draw_int(rng, "meter_gap.count")):
            length = int(math.exp(rng.uniform(math.log(low), math.log(high))))
            start = int(rng.uniform(0, self.n - length))
            phases = (0, 1, 2) if rng.random() < 0.8 else (self._phase(),)
            self.house.dropout(start, length, phases)
            self.uses.append(ApplianceUse("meter-gap", _phases(*phases), start, start + length))

