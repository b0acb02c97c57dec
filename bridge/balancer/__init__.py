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
from bridge.balancer.sharing import (
    ConnectorDecision,
    ConnectorSpec,
    SharedBalancer,
    SharedDecision,
    parse_connectors,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "STRATEGIES",
    "Balancer",
    "BalancerConfig",
    "ConnectorDecision",
    "ConnectorSpec",
    "Decision",
    "SharedBalancer",
    "SharedDecision",
    "parse_connectors",
    "meter_staleness",
    "whole_amps_for_charger",
]
