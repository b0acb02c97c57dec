"""The bridge as the chargers' OCPP 1.6J central system (CHARGER_TRANSPORT=ocpp).

`identity` checks who may connect, `profiles` builds the charging profiles (pure),
`central` runs the WebSocket server in a thread of its own that only hands events
to the service's worker, `events` names those events.
"""
