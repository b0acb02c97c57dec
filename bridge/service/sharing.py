"""Several connectors on one fuse: each charger link talks to the shared balancer
through a view of its own connector, so that the link stays the same for one
connector or many."""

from __future__ import annotations

from bridge.balancer.sharing import SharedBalancer


class ConnectorInputs:
    """The shared balancer as one connector's link sees it: its charger's reports, its
    commands and its installation current go to that connector."""

    def __init__(self, shared: SharedBalancer, key: str) -> None:
        self.shared = shared
        self.key = key

    def charger(self, now: float, currents: tuple[float, float, float] | None,
                phases: tuple[bool, bool, bool] | None) -> None:
        self.shared.charger(now, self.key, currents, phases)

    def car_plugged(self, now: float, plugged: bool | None) -> None:
        self.shared.car_plugged(now, self.key, plugged)

    def commanded(self, now: float, amps: int) -> None:
        self.shared.commanded(now, self.key, amps)

    def reconfigure(self, now: float, **changes: object) -> None:
        if set(changes) == {"installation_current"}:
            self.shared.set_installation_current(now, self.key, changes["installation_current"])  # type: ignore[arg-type]
        else:
            self.shared.reconfigure(now, **changes)
