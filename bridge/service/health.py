"""What `bridge/health` reports, gathered by the components that know it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass
class Health:
    cloud: str = "unknown"
    last_cloud_call: dict[str, Any] | None = None
    last_error: str | None = None
    invalid_meter_payloads: int = 0
    meter_readings_superseded: int = 0
    commands_refused: int = 0
    charger_overrides: int = 0  # times the charger's setting was found changed outside the bridge
    last_override: str | None = None
    # Connectors ("CP:N") that refused mode Off during a session and are paused by 0 A instead.
    pause_fallback: dict[str, str] = field(default_factory=dict)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
