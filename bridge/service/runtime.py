"""The settings a user changes by command (MaxA, default current, enabled, capacity limit,
charge mode; with several connectors each one's priority, charge mode and default current),
kept across restarts.

A stored value is checked by the same rules as the command that sets it: a value
the command would refuse is refused from the file too, and the configured one is used.
"""

from __future__ import annotations

import logging

from bridge.balancer.capacity import check_capacity_limit
from bridge.balancer.power import DEFAULT_CHARGE_MODE, check_charge_mode
from bridge.balancer.sharing import DEFAULT_PRIORITY, check_priority
from bridge.config import Settings
from bridge.limits import LimitError, check_default_current, check_max_a
from bridge.mqtt.payloads import PayloadError, parse_bool
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
            loaded.max_a = check_max_a(loaded.max_a, s.balancer_min_current, s.balancer_fuse_a)
        except LimitError as e:
            self._refused(e, f"{defaults.max_a:g} A")
            loaded.max_a = defaults.max_a
        # The installation current is not known yet: `fit` checks against it once it is.
        try:
            loaded.default_current = check_default_current(loaded.default_current, s.balancer_min_current, None)
        except LimitError as e:
            self._refused(e, f"{defaults.default_current} A")
            loaded.default_current = defaults.default_current
        if not isinstance(loaded.enabled, bool):
            try:
                loaded.enabled = parse_bool(str(loaded.enabled))
            except PayloadError as e:
                self._refused(f"enabled: {e}", "ON" if defaults.enabled else "OFF")
                loaded.enabled = defaults.enabled
        for key, priority in list(loaded.priorities.items()):
            try:
                check_priority(priority)
            except ValueError as e:
                self._refused(f"priority of {key}: {e}", f"{DEFAULT_PRIORITY}")
                del loaded.priorities[key]
        if loaded.capacity_limit_kw is not None:  # None: CAPACITY_LIMIT_KW applies
            try:
                loaded.capacity_limit_kw = check_capacity_limit(loaded.capacity_limit_kw)
            except ValueError as e:
                self._refused(e, "CAPACITY_LIMIT_KW")
                loaded.capacity_limit_kw = None
        try:
            loaded.charge_mode = check_charge_mode(str(loaded.charge_mode))
        except ValueError as e:
            self._refused(e, DEFAULT_CHARGE_MODE)
            loaded.charge_mode = DEFAULT_CHARGE_MODE
        for key, amps in list(loaded.default_currents.items()):
            try:
                loaded.default_currents[key] = check_default_current(amps, s.balancer_min_current, None)
            except (LimitError, TypeError) as e:
                self._refused(f"default current of {key}: {e}", "the shared default current")
                del loaded.default_currents[key]
        for key, mode in list(loaded.charge_modes.items()):
            try:
                loaded.charge_modes[key] = check_charge_mode(str(mode))
            except ValueError as e:
                self._refused(f"charge mode of {key}: {e}", DEFAULT_CHARGE_MODE)
                del loaded.charge_modes[key]
        return loaded

    def fit(self, runtime: RuntimeSettings, installation_current: int | None, whose: str | None = None) -> bool:
        """Refuse a stored default current above the installation current (once that is
        known; `whose` it is, with several connectors), as the command would; True when the
        runtime settings changed."""
        s = self.settings
        if runtime.default_current == s.balancer_default_current:
            return False  # the configured value: the balancer caps it at the installation current
        try:
            check_default_current(runtime.default_current, s.balancer_min_current, installation_current, whose)
        except LimitError as e:
            self._refused(e, f"{s.balancer_default_current} A")
            runtime.default_current = s.balancer_default_current
            return True
        return False

    def fit_connector(self, runtime: RuntimeSettings, key: str, installation_current: int | None,
                      whose: str) -> bool:
        """Refuse a connector's stored default current above its installation current, as the
        command would; True when the runtime settings changed."""
        own = runtime.default_currents.get(key)
        if own is None:
            return False
        try:
            check_default_current(own, self.settings.balancer_min_current, installation_current, whose)
        except LimitError as e:
            self._refused(e, "the shared default current")
            del runtime.default_currents[key]
            return True
        return False

    def _refused(self, why: object, instead: str) -> None:
        log.error("%s: value refused (%s); using %s", self.store.path, why, instead)

    def save(self, runtime: RuntimeSettings) -> bool:
        """False when the file could not be written (`last_error` says why); the change holds until restart."""
        return self.store.save(runtime)
