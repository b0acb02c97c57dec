"""Load signatures: which of the house's loads is on, and which of them cycles.

Pure and deterministic. The tracker is fed the house's own load per phase (the
meter minus what the car draws) once per decision, or None while the car's draw
is unsure (a change in flight). A jump of at least `load_step_min_a` on some
phase, against the level the phase held before, is a load switching on (up) or
off (down). Its signature is the phases it is on and its size on each: a load
that switches on again with the same signature (same phases, each step within
`load_match_tolerance` of the learned size, or `load_match_min_a`) is the same load coming
back; anything else is a different load.

Per signature the tracker keeps how long the load stays on and off (moving
averages) and how often it came back. A load that came back and whose usual
off-time is shorter than `cycle_follow_off_s` is a cycling load (oven and sauna
thermostats, a hob pulsing): while it is off, its step is the `reserve` the car
keeps free for it, so the car holds the level that fits the load's on-state
instead of chasing its off-times (every chase costs two writes and `lag`
seconds over the limit), unless the amps a raise would win times the expected
off-time less the hold and `settle_s` reach `cycle_follow_gain_as`. A load off
for longer than `load_forget_factor` times the longest off-time seen (and at
least `cycle_window_s`: loads come back) is taken to have finished: its reserve
is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.balancer.model import PHASES, BalancerConfig, Triple, phase_name

MAX_LOADS = 32  # signatures kept at most (the newest)
EMA = 0.5  # the weight of the newest on/off duration in a load's averages


@dataclass
class Load:
    step: list[float]  # amps per phase (0 on phases the load is not on)
    on: bool
    since: float
    comebacks: int = 0  # off -> on transitions seen
    on_s: float | None = None
    off_s: float | None = None
    longest_off_s: float = 0.0

    @property
    def phases(self) -> tuple[int, ...]:
        return tuple(n for n in PHASES if self.step[n] > 0)

    def label(self) -> str:
        return "+".join(phase_name(n) for n in self.phases)


class LoadTracker:
    def __init__(self) -> None:
        self.loads: list[Load] = []
        self._level: list[float | None] = [None, None, None]
        self.last_up: tuple[float, Load, bool] | None = None  # when, which load, whether it came back

    def reset(self) -> None:
        self._level = [None, None, None]

    # ---- input --------------------------------------------------------------
    def feed(self, now: float, house: Triple | None, cfg: BalancerConfig) -> None:
        if house is None:
            return
        delta = [0.0, 0.0, 0.0]
        for n in PHASES:
            level = self._level[n]
            if level is None:
                self._level[n] = house[n]
                continue
            d = house[n] - level
            if abs(d) >= cfg.load_step_min_a:
                delta[n] = d
        for n in PHASES:
            if delta[n] != 0.0:
                self._level[n] = house[n]
            elif self._level[n] is not None:
                # Follow slow wander, not noise: a light moving average.
                self._level[n] = 0.8 * self._level[n] + 0.2 * house[n]  # type: ignore[operator]
        ups = [max(0.0, d) for d in delta]
        downs = [max(0.0, -d) for d in delta]
        if any(downs):
            self._down(now, downs, cfg)
        if any(ups):
            self._up(now, ups, cfg)
        self._forget(now, cfg)

    def _matches(self, load: Load, step: list[float], cfg: BalancerConfig) -> bool:
        for n in PHASES:
            if (load.step[n] > 0) != (step[n] > 0):
                return False
            if step[n] > 0 and abs(step[n] - load.step[n]) > max(cfg.load_match_min_a, cfg.load_match_tolerance * load.step[n]):
                return False
        return True

    def _up(self, now: float, step: list[float], cfg: BalancerConfig) -> None:
        for load in self.loads:
            if not load.on and self._matches(load, step, cfg):
                off = now - load.since
                load.off_s = off if load.off_s is None else EMA * off + (1 - EMA) * load.off_s
                load.longest_off_s = max(load.longest_off_s, off)
                load.comebacks += 1
                load.on, load.since = True, now
                load.step = [(a + b) / 2 if a > 0 else 0.0 for a, b in zip(load.step, step)]
                self.last_up = (now, load, True)
                return
        load = Load(step=list(step), on=True, since=now)
        self.loads.append(load)
        self.last_up = (now, load, False)

    def _down(self, now: float, step: list[float], cfg: BalancerConfig) -> None:
        for load in sorted(self.loads, key=lambda ld: -ld.since):
            if load.on and self._matches(load, step, cfg):
                on = now - load.since
                load.on_s = on if load.on_s is None else EMA * on + (1 - EMA) * load.on_s
                load.on, load.since = False, now
                return

    def _forget(self, now: float, cfg: BalancerConfig) -> None:
        keep = []
        for load in self.loads:
            if not load.on and now - load.since > self._forget_after(load, cfg):
                continue
            if load.on and now - load.since > cfg.load_on_forget_s:
                continue  # its switch-off was never seen: the signature no longer says anything
            keep.append(load)
        self.loads = keep[-MAX_LOADS:]

    @staticmethod
    def _forget_after(load: Load, cfg: BalancerConfig) -> float:
        if load.comebacks == 0:
            return cfg.cycle_window_s
        # Loads come back (the pot moved on the hob): a stopped cycling load keeps its reserve
        # for at least cycle_window_s.
        return max(cfg.cycle_window_s, cfg.load_forget_factor * load.longest_off_s)

    # ---- output -------------------------------------------------------------
    def cycling(self, load: Load, cfg: BalancerConfig) -> bool:
        """A load that came back and whose off-times are too short to be worth a raise and a cut."""
        return load.comebacks >= 1 and load.off_s is not None and load.off_s < cfg.cycle_follow_off_s

    def off_cycling(self, now: float, cfg: BalancerConfig) -> list[Load]:
        """Cycling loads that are off now and expected back."""
        return [
            load for load in self.loads
            if not load.on and self.cycling(load, cfg) and now - load.since <= self._forget_after(load, cfg)
        ]

    def reserve(self, now: float, cfg: BalancerConfig, house: Triple, used: tuple[int, ...],
                cap: int) -> tuple[Triple, Load | None]:
        """Amps per phase to keep free for cycling loads that are off now (and the largest of them).

        A load whose expected off-time, less the raise's hold and the charger's settling, times the
        amps a raise would win, reaches `cycle_follow_gain_as` is followed instead (no reserve)."""
        loads = sorted(self.off_cycling(now, cfg), key=lambda ld: -max(ld.step))
        res = [0.0, 0.0, 0.0]
        for load in loads:
            for n in PHASES:
                res[n] += load.step[n]

        def level(r: list[float]) -> float:
            return min(cap, min(cfg.max_a - house[n] - r[n] for n in used))

        kept: Load | None = None
        for load in loads:
            without = [r - s for r, s in zip(res, load.step)]
            gain = level(without) - level(res)
            useful_s = (load.off_s or 0.0) - cfg.quick_raise_hold_s - cfg.settle_s
            if gain > 0 and useful_s * gain >= cfg.cycle_follow_gain_as:
                res = without
            elif kept is None:
                kept = load
        return (res[0], res[1], res[2]), kept

    def cycling_on(self, cfg: BalancerConfig) -> Load | None:
        """The largest cycling load that is on now."""
        on = [ld for ld in self.loads if ld.on and self.cycling(ld, cfg)]
        return max(on, key=lambda ld: max(ld.step)) if on else None

    @staticmethod
    def describe(load: Load) -> str:
        on = "?" if load.on_s is None else f"{load.on_s:.0f}"
        off = "?" if load.off_s is None else f"{load.off_s:.0f}"
        return f"load on {load.label()} ({max(load.step):.1f} A) cycling (on ~{on} s, off ~{off} s)"

