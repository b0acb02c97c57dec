"""Several connectors on one fuse: each charger link talks to the balancer through a view of its
own connector (`ConnectorView`), so that the link stays the same for one connector or many."""

from __future__ import annotations

from bridge.balancer.sharing import ConnectorView

# The name the service has used for the view.
ConnectorInputs = ConnectorView
