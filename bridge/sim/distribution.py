"""Figures over many houses: per-strategy percentiles, and the distribution targets (bench.run_generated replays the houses).

Per house and strategy the bench reports energy, writes and seconds over the
fuse; over many houses what matters is how those spread: the 10th percentile,
the median and the 90th percentile, the best and the worst house.
Percentiles interpolate linearly between the sorted values (the "inclusive"
method of Python's `statistics.quantiles`, numpy's default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.balancer.power import SURPLUS_MODES
from bridge.sim.power_bench import TARGET_PERIOD_MARGIN_KW
from bridge.sim.targets import TARGET_FUSE_MARGIN_S, TARGET_WRITES_PER_HOUR

METRICS = ("energy_ratio", "energy_ratio_pause_oracle", "writes_per_h", "longest_over_fuse_s",
           "seconds_over_fuse_per_h")
# With power limits (CAPACITY_LIMIT_KW, a pv or minpv --car): given for the houses they apply to.
POWER_METRICS = ("capacity_energy_ratio", "capacity_energy_ratio_pause_oracle", "max_period_over_limit_kw", "solar_share", "surplus_energy_ratio",
                 "starts_per_h")
# With several cars: the houses where two cars or more wanted to charge throughout.
SHARED_METRICS = ("fairness",)
FIGURES = ("p10", "median", "p90", "min", "max")

# Targets on the distribution of generated houses (default settings): energy against the oracle's,
# cloud writes an hour, and how long and how often the fuse is overloaded.
TARGET_ENERGY_P10 = 0.95
TARGET_ENERGY_MEDIAN = 0.97
# Against the oracle that keeps the minimum pause (one car): what is left is the controller's own loss.
TARGET_PAUSE_ENERGY_P10 = 0.965
TARGET_PAUSE_ENERGY_MEDIAN = 0.99
TARGET_WRITES_MEDIAN = 12.0
TARGET_WRITES_P90 = TARGET_WRITES_PER_HOUR
TARGET_FUSE_S_PER_H_MEDIAN = 45.0
# The worst house may overload for two lags and a margin: a second load switching on while a cut settles.
TARGET_WORST_FUSE_MARGIN_S = 5.0
# With power limits (one car, 10 s lag): the capacity guard against the capacity-aware oracle and
# every house's highest period; a pv car against the surplus oracle and its starts an hour.
TARGET_CAPACITY_ENERGY_P10 = 0.93
TARGET_CAPACITY_ENERGY_MEDIAN = 0.97
TARGET_SOLAR_SHARE_P10 = 0.95
TARGET_SURPLUS_ENERGY_P10 = 0.90
TARGET_STARTS_PER_H_P90 = 4.0


def house_figures(entry: dict, strategy: str) -> dict[str, float | None]:
    """The distribution metrics of one trace entry of the report, for one strategy."""
    s = entry["strategies"][strategy]
    hours = entry["duration_s"] / 3600
    return {
        "energy_ratio": s["energy_ratio"],
        # Against the oracle that keeps the minimum pause: what the bridge's own rules allow.
        "energy_ratio_pause_oracle": s.get("energy_ratio_pause_oracle"),
        # With several cars: the most on one connector (each charger has its own write budget).
        "writes_per_h": s.get("max_writes_per_h_per_connector", s["commands"] / hours),
        "longest_over_fuse_s": float(s["longest_over_fuse_s"]),
        "seconds_over_fuse_per_h": s["seconds_over_fuse"] / hours,
        # With several cars: the house's fairness as bench gives it (bench.SharedResult.fairness).
        "fairness": s.get("fairness"),
    }


def power_figures(entry: dict, strategy: str) -> dict[str, float | None]:
    """The power metrics of one trace entry (None where the limit or the mode does not apply)."""
    s = entry["strategies"][strategy]
    hours = entry["duration_s"] / 3600
    capacity = s.get("capacity")
    if capacity and capacity.get("house_over_capacity"):
        capacity = None  # the house alone is over the limit: counted apart (`houses_over_capacity`)
    pv = [c for c in s.get("cars", []) if c.get("mode") in SURPLUS_MODES]
    return {
        "capacity_energy_ratio": capacity["energy_ratio"] if capacity else None,
        # Against the capacity oracle that keeps the minimum current and the minimum pause.
        "capacity_energy_ratio_pause_oracle": capacity.get("energy_ratio_pause_oracle") if capacity else None,
        "max_period_over_limit_kw": (round(capacity["max_period_kw"] - capacity["limit_kw"], 4)
                                     if capacity else None),
        "solar_share": pv[0]["solar_share"] if pv else None,
        "surplus_energy_ratio": pv[0]["energy_ratio"] if pv else None,
        "starts_per_h": pv[0]["starts"] / hours if pv and "starts" in pv[0] else None,
    }


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks of sorted values (`fraction` in 0..1)."""
    if not ordered:
        raise ValueError("no values")
    position = fraction * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def summarise(values: Sequence[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)
    if not ordered:
        return {"houses": 0, **{figure: None for figure in FIGURES}}
    return {
        "houses": len(ordered),
        "p10": round(percentile(ordered, 0.1), 4),
        "median": round(percentile(ordered, 0.5), 4),
        "p90": round(percentile(ordered, 0.9), 4),
        "min": round(ordered[0], 4),
        "max": round(ordered[-1], 4),
    }


def distribution(entries: Sequence[dict], strategies: Sequence[str]) -> dict[str, dict[str, dict]]:
    """Per strategy and metric: houses, p10, median, p90, min and max over `entries`.

    A house whose oracle gets no energy has no energy ratio and is left out of that metric only.
    """
    out: dict[str, dict[str, dict]] = {}
    for strategy in strategies:
        per_house = [{**house_figures(entry, strategy), **power_figures(entry, strategy)} for entry in entries]
        out[strategy] = {
            metric: summarise([h[metric] for h in per_house if h[metric] is not None]) for metric in METRICS
        }
        for metric in POWER_METRICS + SHARED_METRICS:
            values = [h[metric] for h in per_house if h[metric] is not None]
            if values:
                out[strategy][metric] = summarise(values)
        over = [e for e in entries if e["strategies"][strategy].get("capacity", {}).get("house_over_capacity")]
        if over:
            out[strategy]["houses_over_capacity"] = {"houses": len(over)}
    return out


def distribution_misses(dist: dict, lag_s: float, strategy: str = "adaptive") -> list[str]:
    """The distribution targets `strategy` misses."""
    d = dist.get(strategy)
    if d is None or not d["energy_ratio"]["houses"]:
        return []
    # Under a power limit the car's energy is scored against the capacity or surplus oracle: the
    # fuse oracle's energy targets do not apply.
    limited = any(m in d for m in ("capacity_energy_ratio", "surplus_energy_ratio"))
    checks = [] if limited else [
        ("energy_ratio", "p10", TARGET_ENERGY_P10, False),
        ("energy_ratio", "median", TARGET_ENERGY_MEDIAN, False),
        ("energy_ratio_pause_oracle", "p10", TARGET_PAUSE_ENERGY_P10, False),
        ("energy_ratio_pause_oracle", "median", TARGET_PAUSE_ENERGY_MEDIAN, False),
    ]
    checks += [
        ("writes_per_h", "median", TARGET_WRITES_MEDIAN, True),
        ("writes_per_h", "p90", TARGET_WRITES_P90, True),
        ("longest_over_fuse_s", "p90", lag_s + TARGET_FUSE_MARGIN_S, True),
        ("longest_over_fuse_s", "max", 2 * lag_s + TARGET_WORST_FUSE_MARGIN_S, True),
        ("seconds_over_fuse_per_h", "median", TARGET_FUSE_S_PER_H_MEDIAN, True),
    ]
    checks += [
        ("capacity_energy_ratio", "p10", TARGET_CAPACITY_ENERGY_P10, False),
        ("capacity_energy_ratio", "median", TARGET_CAPACITY_ENERGY_MEDIAN, False),
        ("max_period_over_limit_kw", "max", TARGET_PERIOD_MARGIN_KW, True),
        ("solar_share", "p10", TARGET_SOLAR_SHARE_P10, False),
        ("surplus_energy_ratio", "p10", TARGET_SURPLUS_ENERGY_P10, False),
        ("starts_per_h", "p90", TARGET_STARTS_PER_H_P90, True),
    ]
    misses = []
    for metric, figure, target, at_most in checks:
        value = d.get(metric, {}).get(figure)
        if value is None:
            continue
        if (value > target) if at_most else (value < target):
            misses.append(f"{metric} {figure} {value:g} {'>' if at_most else '<'} {target:g}")
    return misses


_LABELS = {
    "energy_ratio": "energy ratio",
    "energy_ratio_pause_oracle": "energy/pause oracle",
    "writes_per_h": "writes/h",
    "longest_over_fuse_s": "longest > fuse (s)",
    "seconds_over_fuse_per_h": "s > fuse per h",
    "capacity_energy_ratio": "capacity energy",
    "capacity_energy_ratio_pause_oracle": "capacity/pause orc.",
    "max_period_over_limit_kw": "period - limit (kW)",
    "solar_share": "solar share",
    "surplus_energy_ratio": "surplus energy",
    "starts_per_h": "pv starts/h",
    "fairness": "fairness",
}
_THREE_DECIMALS = ("energy_ratio", "energy_ratio_pause_oracle", "capacity_energy_ratio",
                   "capacity_energy_ratio_pause_oracle", "max_period_over_limit_kw", "solar_share",
                   "surplus_energy_ratio", "fairness")


def format_distribution(dist: dict, lag_s: float, *, with_targets: bool) -> str:
    lines = ["", "-- distribution over the scored traces --",
             f"{'strategy':<10} {'metric':<20} {'houses':>6} " + " ".join(f"{f:>8}" for f in FIGURES)]
    for strategy, metrics in dist.items():
        for metric, figures in metrics.items():
            if metric == "houses_over_capacity":
                lines.append(f"{strategy:<10} {'house alone > limit':<20} {figures['houses']:>6}  (left out of the capacity rows)")
                continue
            cells = ["-" if figures[f] is None else f"{figures[f]:.3f}" if metric in _THREE_DECIMALS
                     else f"{figures[f]:.1f}" for f in FIGURES]
            lines.append(f"{strategy:<10} {_LABELS[metric]:<20} {figures['houses']:>6} "
                         + " ".join(f"{c:>8}" for c in cells))
    if with_targets and "adaptive" in dist:
        misses = distribution_misses(dist, lag_s)
        lines.append("adaptive distribution targets: " + ("met" if not misses else "MISSED: " + "; ".join(misses)))
    return "\n".join(lines)


def plot_distribution(path: str, report: dict, lag_s: float) -> None:
    """One panel per metric: each strategy's houses sorted (an empirical distribution), with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(report["distribution"])
    targets = {
        "energy_ratio": (TARGET_ENERGY_P10, TARGET_ENERGY_MEDIAN),
        "energy_ratio_pause_oracle": (TARGET_PAUSE_ENERGY_P10, TARGET_PAUSE_ENERGY_MEDIAN),
        "writes_per_h": (TARGET_WRITES_MEDIAN, TARGET_WRITES_P90),
        "longest_over_fuse_s": (lag_s + TARGET_FUSE_MARGIN_S, 2 * lag_s + TARGET_WORST_FUSE_MARGIN_S),
        "seconds_over_fuse_per_h": (TARGET_FUSE_S_PER_H_MEDIAN,),
    }
    fig, axes = plt.subplots(len(METRICS), 1, figsize=(10, 3.2 * len(METRICS)), squeeze=False)
    for ax, metric in zip(axes[:, 0], METRICS):
        for strategy in strategies:
            values = sorted(v for v in (house_figures(e, strategy)[metric] for e in report["traces"])
                            if v is not None)
            if values:
                share = [(i + 1) / len(values) for i in range(len(values))]
                ax.step(values, share, where="post", label=strategy)
        for target in targets[metric]:
            ax.axvline(target, color="tab:red", ls=":", lw=1)
        ax.set_title(f"{_LABELS[metric]} (dotted: targets)", loc="left", fontsize=10)
        ax.set_ylabel("share of houses")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
