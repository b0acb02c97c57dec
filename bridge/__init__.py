"""chargeamps-bridge: keep the main fuse safe while a Charge Amps charger charges."""

__version__ = "0.1.0"
