"""Runtime settings changed by command (MaxA, default current, enabled, capacity limit,
charge mode; with several connectors each one's priority, charge mode and default current),
kept across restarts; and how each OCPP charger takes its limit, as the bridge learned it."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bridge.files import atomic_write_json, read_json_object

log = logging.getLogger(__name__)


@dataclass
class RuntimeSettings:
    max_a: float
    default_current: int
    enabled: bool = True
    # Each connector's priority on a shared fuse ("CP:N" -> 0..9); only those a user set.
    priorities: dict[str, int] = field(default_factory=dict)
    # Set by command; None = CAPACITY_LIMIT_KW (0 turns the guard off).
    capacity_limit_kw: float | None = None
    # The charge mode of a connector that has none of its own (set by command before connectors had their own).
    charge_mode: str = "fast"
    # Each connector's charge mode ("CP:N" -> mode); only those a user set.
    charge_modes: dict[str, str] = field(default_factory=dict)
    # Several connectors on one fuse: each one's own default (full-power) current ("CP:N" -> A);
    # only those a user set, the others take `default_current`.
    default_currents: dict[str, int] = field(default_factory=dict)

    def charge_mode_of(self, key: str) -> str:
        """A connector's charge mode ("CP:N"): its own, else `charge_mode` (set before connectors had
        their own, or fast)."""
        return self.charge_modes.get(key, self.charge_mode)

    def default_current_of(self, key: str) -> int:
        """A connector's default current when several share the fuse ("CP:N"): its own, else the shared one."""
        return self.default_currents.get(key, self.default_current)


class RuntimeStore:
    """`runtime.json` in the state folder. Only the values a user changed are stored;
    a corrupt file is set aside and the configured defaults are used."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_error: str | None = None

    def load(self, defaults: RuntimeSettings) -> RuntimeSettings:
        try:
            data = read_json_object(self.path)
            if data is None:
                return defaults
            # Numbers as they are (16.5 stays 16.5): the limits say whether they are allowed.
            loaded = RuntimeSettings(
                max_a=float(data.get("max_a", defaults.max_a)),
                default_current=float(data.get("default_current", defaults.default_current)),  # type: ignore[arg-type]
                enabled=data.get("enabled", defaults.enabled),
                priorities=dict(data.get("priorities", defaults.priorities)),
                capacity_limit_kw=data.get("capacity_limit_kw", defaults.capacity_limit_kw),
                charge_mode=data.get("charge_mode", defaults.charge_mode),
                charge_modes=dict(data.get("charge_modes", defaults.charge_modes)),
                default_currents=dict(data.get("default_currents", defaults.default_currents)),
            )
        except OSError as e:
            self.last_error = f"cannot read {self.path}: {e.strerror}"
            log.error("%s; using the configured defaults", self.last_error)
            return defaults
        except (ValueError, TypeError) as e:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            try:
                self.path.replace(aside)
                where = f"moved to {aside}"
            except OSError:
                where = "left in place"
            self.last_error = f"state file {self.path} is corrupt ({e}); {where}, using the configured defaults"
            log.error(self.last_error)
            return defaults
        log.info("runtime settings restored from %s: %s", self.path, asdict(loaded))
        return loaded

    def save(self, settings: RuntimeSettings) -> bool:
        try:
            data = asdict(settings)
            for name in ("priorities", "charge_modes", "default_currents"):
                if not data[name]:
                    del data[name]  # one connector: the file stays as it always was
            atomic_write_json(self.path, data)
        except OSError as e:
            self.last_error = f"cannot write {self.path}: {e.strerror}; the change holds until restart"
            log.error(self.last_error)
            return False
        return True


class ControlMethodStore:
    """`ocpp.json` in the state folder: how each OCPP charge point takes its limit, as learned by
    probing (`control_methods`: identity -> method), so that a restart does not probe again. A file
    that cannot be read, or is corrupt, is reported and left out: the chargers are probed again, and
    the next method learned replaces it."""

    KEY = "control_methods"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_error: str | None = None
        self.methods: dict[str, str] = {}

    def load(self) -> dict[str, str]:
        try:
            data = read_json_object(self.path) or {}
            methods = data.get(self.KEY, {})
            if not isinstance(methods, dict) or not all(isinstance(v, str) for v in methods.values()):
                raise ValueError(f"{self.KEY} is not an object of identities and methods")
        except OSError as e:
            self.last_error = f"cannot read {self.path}: {e.strerror}; the chargers are probed again"
            log.error(self.last_error)
            return {}
        except ValueError as e:
            self.last_error = f"state file {self.path} is corrupt ({e}); the chargers are probed again"
            log.error(self.last_error)
            return {}
        self.methods = dict(methods)
        if self.methods:
            log.info("OCPP control methods restored from %s: %s", self.path, self.methods)
        return dict(self.methods)

    def learned(self, cp: str, method: str | None) -> bool:
        """Keep what `cp` takes its limit as (None: nothing, forgotten); False when it cannot be written."""
        if self.methods.get(cp) == method:
            return True
        if method is None:
            self.methods.pop(cp, None)
        else:
            self.methods[cp] = method
        try:
            atomic_write_json(self.path, {self.KEY: self.methods})
        except OSError as e:
            self.last_error = f"cannot write {self.path}: {e.strerror}; a restart probes the chargers again"
            log.error(self.last_error)
            return False
        return True
