"""The settings a user changes by command (MaxA, default current, enabled), kept across restarts."""

from __future__ import annotations

import logging
import math

from bridge.balancer.capacity import MAX_CAPACITY_LIMIT_KW
from bridge.balancer.power import DEFAULT_CHARGE_MODE, check_charge_mode
from bridge.config import Settings
from bridge.limits import LimitError, check_default_current, check_max_a
from bridge.state import RuntimeSettings, RuntimeStore

log = logging.getLogger(__name__)


class RuntimeKeeper:
    """Restores the runtime settings at start (a hand-edited file must not lift a
    hard limit) and saves every change."""

    def __init__(self, store: RuntimeStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    @property
    def last_error(self) -> str | None:
        return self.store.last_error

    def restore(self) -> RuntimeSettings:
        s = self.settings
        defaults = RuntimeSettings(max_a=s.balancer_max_a, default_current=s.balancer_default_current)
        loaded = self.store.load(defaults)
        try:
            check_max_a(loaded.max_a, s.balancer_min_current, s.balancer_fuse_a)
        except LimitError as e:
            log.error("stored %s; using %.1f A", e, defaults.max_a)
            loaded.max_a = defaults.max_a
        try:
            check_default_current(loaded.default_current, s.balancer_min_current, None)
        except LimitError as e:
            log.error("stored value refused: %s; using %d A", e, defaults.default_current)
            loaded.default_current = defaults.default_current
        limit = loaded.capacity_limit_kw
        if limit is not None and not (math.isfinite(limit) and 0 <= limit <= MAX_CAPACITY_LIMIT_KW):
            log.error("stored capacity limit %r refused; using CAPACITY_LIMIT_KW", limit)
            loaded.capacity_limit_kw = None
        try:
            loaded.charge_mode = check_charge_mode(loaded.charge_mode)
        except ValueError as e:
            log.error("stored value refused: %s; charging fast", e)
            loaded.charge_mode = DEFAULT_CHARGE_MODE
        return loaded

    def save(self, runtime: RuntimeSettings) -> bool:
        """False when the file could not be written (`last_error` says why); the change holds until restart."""
        return self.store.save(runtime)
