"""The bridge service and its components, one concern per module:

- `service`: lifecycle, the event queue, the worker and the signals; wires the rest;
- `charger_link`: the cloud side of one charger connector (connect, poll, write, backoff);
- `commands`: the MQTT commands, one table from name to parse, check, apply and snap-back;
- `meter_input`: the meter's readings into the balancer;
- `publisher`: the retained state topics, each sent when it changed;
- `discovery`: Home Assistant discovery;
- `runtime`: the settings a user changed by command, kept across restarts;
- `factory`: the real collaborators, built from Settings.
"""

from bridge.service.backoff import CloudBackoff
from bridge.service.commands import CommandBudget, CommandRefused
from bridge.service.service import BridgeService

__all__ = ["BridgeService", "CloudBackoff", "CommandBudget", "CommandRefused"]
