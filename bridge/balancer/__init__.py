"""The load balancer: pure decisions from meter and charger readings (see docs/DESIGN.md)."""

from __future__ import annotations

from bridge.balancer.core import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    Balancer,
    meter_staleness,
    whole_amps_for_charger,
)
from bridge.balancer.model import BalancerConfig, Decision

__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "Balancer",
    "BalancerConfig",
    "Decision",
    "meter_staleness",
    "whole_amps_for_charger",
]
