"""The appliance library of the household generator: every size and timing range in one table.

Each entry is a range the generator draws uniformly from, with where it comes
from. Sources, by short name:

- *VT 2014*: M. Pipattanasomporn et al., "Load Profiles of Selected Major
  Household Appliances and Their Demand Response Opportunities", IEEE
  Transactions on Smart Grid 5(2), 2014: washers, dryers, oven, dishwasher
  measured at 1 s (thermostat cycling, heater phases).
- *Parson 2011*: O. Parson, "Appliance survey - tumble dryer, washing machine
  and dishwasher" (blog.oliverparson.co.uk, 2011), from whole-house meter data:
  dryer alternating 2000/200 W for 100-140 min; washer heating at 2000 W for
  10-30 min; dishwasher two heating phases of ~25 and ~30 min at 1600 W.
- *Consumer NZ*: consumer.org.nz, "Induction cooktops": 1 litre boils in about
  2 minutes on induction; zones share power in pairs, a boost borrows from the
  other zone of its pair.
- *Harvia*: Harvia sauna heater manuals: HL series 6.8 / 9.0 / 10.5 kW, three-
  phase (U3S) versions; a Forte heats the room in 5-15 min from standby, an
  ordinary heater in about an hour.
- *NIBE SVM*: NIBE BA-SVM 10-200 installer manual: immersion heater up to 9 kW
  in 7 steps, stepped in and out on the heating demand (degree minutes).
- *VDE 4105*: VDE-AR-N 4105: a one-phase inverter may feed at most 4.6 kVA, so
  larger PV systems are three-phase.
- *IEC 61851*: a car charges at 6-32 A per phase; most home on-board chargers
  take 16 A on one or three phases.
- *estimate*: no published figure found; a plausible value for a European
  house with a 25 A main fuse, stated so it can be challenged.

Watts are per element; the generator turns them into amps at 230 V.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A range to draw from, and the source of its numbers."""

    low: float
    high: float
    source: str

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


MIN = 60.0  # ranges below are in watts, seconds or a count; `MIN` keeps minutes readable

# One table: `<appliance>.<quantity>` -> range. Durations in seconds.
LIBRARY: dict[str, Span] = {
    # -- oven: elements on their phases, a preheat at full power, then a thermostat cycling
    "oven.element_w": Span(900, 2500, "VT 2014 (bake ~3 kW in all); elements 0.9-2.5 kW on data sheets"),
    "oven.preheat_s": Span(8 * MIN, 15 * MIN, "VT 2014: first on-period of a bake"),
    "oven.on_s": Span(30, 90, "VT 2014: thermostat on-periods of tens of seconds"),
    "oven.off_s": Span(40, 150, "VT 2014: thermostat off-periods"),
    "oven.use_s": Span(30 * MIN, 90 * MIN, "estimate: one dish"),
    # -- induction hob: a zone boils on boost, then power levels changed by hand; low levels pulse
    "hob.zone_max_w": Span(1400, 2300, "Consumer NZ; zones of 1.4-2.3 kW on data sheets"),
    "hob.boost_w": Span(2800, 3700, "Consumer NZ: a boost borrows the pair's power, 3.7 kW per pair"),
    "hob.boost_s": Span(90, 300, "Consumer NZ: 1 litre boils in about 2 min"),
    "hob.level_s": Span(10, 60, "estimate: a cook turns a level up or down within a minute"),
    "hob.pulse_period_s": Span(6, 20, "estimate: low levels switch the coil on and off every few seconds"),
    "hob.session_s": Span(10 * MIN, 35 * MIN, "estimate"),
    "hob.zones": Span(1, 3.99, "estimate: one to three pans"),
    # -- kettle
    "kettle.power_w": Span(2000, 3000, "rating plates of EU kettles (2-3 kW)"),
    "kettle.run_s": Span(100, 240, "estimate: 0.5-1.5 litres at 2-3 kW"),
    "kettle.uses": Span(1, 4.99, "estimate"),
    # -- sauna: three-phase heater, heat-up at full power, then a thermostat
    "sauna.power_w": Span(6000, 9000, "Harvia: 6.8 and 9.0 kW three-phase heaters"),
    "sauna.heatup_s": Span(35 * MIN, 60 * MIN, "Harvia: an ordinary heater warms the room in about an hour"),
    "sauna.on_s": Span(2 * MIN, 5 * MIN, "estimate: a heater's thermostat at bathing temperature"),
    "sauna.off_s": Span(1 * MIN, 3 * MIN, "estimate"),
    "sauna.session_s": Span(80 * MIN, 150 * MIN, "estimate"),
    # -- heat pump: three-phase compressor with a soft start; immersion heater in steps
    "heat_pump.compressor_w": Span(1500, 3500, "estimate: an 8-12 kW air-to-water pump at COP 2.5-4"),
    "heat_pump.inrush": Span(1.2, 1.6, "estimate: soft-starter inrush over about 2 s"),
    "heat_pump.run_s": Span(15 * MIN, 45 * MIN, "estimate"),
    "heat_pump.rest_s": Span(5 * MIN, 25 * MIN, "estimate"),
    "heat_pump.immersion_step_w": Span(9000 / 7, 9000 / 7, "NIBE SVM: 9 kW in 7 steps"),
    "heat_pump.immersion_steps": Span(2, 7.99, "NIBE SVM: up to 7 steps; fewer where the output is locked lower"),
    "heat_pump.immersion_hold_s": Span(2 * MIN, 10 * MIN, "NIBE SVM: a step per degree-minute band (estimate of the pace)"),
    "heat_pump.immersion_s": Span(30 * MIN, 120 * MIN, "estimate: the coldest hours"),
    # -- washing machine: motor, one heater phase, a spin
    "washer.heater_w": Span(1800, 2200, "Parson 2011: 2000 W heating; VT 2014"),
    "washer.heater_s": Span(10 * MIN, 25 * MIN, "Parson 2011: 10-30 min"),
    "washer.motor_w": Span(100, 300, "VT 2014"),
    "washer.spin_w": Span(300, 600, "VT 2014"),
    "washer.run_s": Span(60 * MIN, 150 * MIN, "VT 2014, Parson 2011"),
    # -- dishwasher: two heater phases
    "dishwasher.heater_w": Span(1600, 2200, "Parson 2011: 1600 W; VT 2014"),
    "dishwasher.heater_s": Span(8 * MIN, 25 * MIN, "Parson 2011: ~25 and ~30 min phases; shorter in eco programmes"),
    "dishwasher.run_s": Span(90 * MIN, 180 * MIN, "Parson 2011, VT 2014"),
    # -- dryer: a heater on its thermostat (or a heat-pump dryer's compressor)
    "dryer.heater_w": Span(1800, 2500, "Parson 2011: alternating 2000/200 W; VT 2014"),
    "dryer.on_s": Span(60, 240, "VT 2014: heater cycling"),
    "dryer.off_s": Span(30, 120, "VT 2014"),
    "dryer.run_s": Span(60 * MIN, 120 * MIN, "Parson 2011: 100-140 min in all"),
    "dryer.heat_pump_w": Span(500, 900, "estimate: heat-pump dryers"),
    # -- electric heating: room heaters on their thermostats
    "heating.heater_w": Span(500, 2000, "estimate: panel heaters and floor heating loops"),
    "heating.heaters": Span(1, 4.99, "estimate"),
    "heating.on_s": Span(2 * MIN, 10 * MIN, "estimate"),
    "heating.off_s": Span(3 * MIN, 15 * MIN, "estimate"),
    # -- a second car on its own (unmanaged) charger, or a heat-pump water heater
    "second_car.amps": Span(8, 16, "IEC 61851: 6-16 A on one phase for a granny cable or a small wallbox"),
    "second_car.run_s": Span(60 * MIN, 240 * MIN, "estimate"),
    "boiler.compressor_w": Span(400, 700, "estimate: heat-pump water heaters of 200-300 litres"),
    "boiler.element_w": Span(1500, 3000, "estimate: their backup element"),
    "boiler.run_s": Span(60 * MIN, 180 * MIN, "estimate"),
    # -- lighting, standby, fridge: the background, drifting minute by minute
    "background.level_a": Span(0.5, 2.0, "estimate: standby, fridge, lights, electronics"),
    "lighting.step_w": Span(50, 400, "estimate: a room's lights"),
    "lighting.switches": Span(4, 15.99, "estimate"),
    # -- solar export (negative house current)
    "solar.one_phase_w": Span(2000, 4600, "VDE 4105: one-phase inverters feed at most 4.6 kVA"),
    "solar.three_phase_w": Span(5000, 10000, "estimate: 5-10 kWp roofs, three-phase inverters"),
    "solar.cloud_s": Span(60, 600, "estimate: passing clouds"),
    # -- meter gaps (all phases silent, or one)
    "meter_gap.length_s": Span(3, 420, "estimate: Wi-Fi drops and reader restarts, a few seconds to several minutes"),
    "meter_gap.count": Span(0, 4.99, "estimate"),
    # -- the house and its evening or day
    "house.evening_start_h": Span(15.5, 18.0, "estimate"),
    "house.evening_hours": Span(3.0, 5.0, "estimate"),
    "house.day_start_h": Span(7.0, 9.0, "estimate"),
    "house.day_hours": Span(6.0, 9.0, "estimate"),
}


def draw(rng: random.Random, key: str) -> float:
    """A value of `key`'s range."""
    return LIBRARY[key].draw(rng)


def draw_int(rng: random.Random, key: str) -> int:
    """A whole number from `key`'s range (its upper end .99 so the last count is as likely)."""
    return int(LIBRARY[key].draw(rng))


def bounds(key: str) -> tuple[float, float]:
    """The two ends of `key`'s range."""
    span = LIBRARY[key]
    return (span.low, span.high)
