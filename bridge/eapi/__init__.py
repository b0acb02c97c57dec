"""Charge Amps External REST API (EAPI) v5: client, models, tokens, schema validation."""

from __future__ import annotations

from bridge.eapi.client import EapiClient, client_from_settings, validate_amps
from bridge.eapi.errors import (
    ApiError,
    AuthError,
    CloudUnavailable,
    EapiError,
    RateLimited,
    SchemaError,
)
from bridge.eapi.models import (
    CONNECTOR_MODES,
    ChargePoint,
    ChargePointSettings,
    ChargePointStatus,
    Connector,
    ConnectorMode,
    ConnectorSettings,
    ConnectorStatus,
    Measurement,
)
from bridge.eapi.schema import match_path, validate_request
from bridge.eapi.tokens import TokenSet, TokenStore, jwt_expiry

__all__ = [
    "CONNECTOR_MODES",
    "ApiError",
    "AuthError",
    "ChargePoint",
    "ChargePointSettings",
    "ChargePointStatus",
    "CloudUnavailable",
    "Connector",
    "ConnectorMode",
    "ConnectorSettings",
    "ConnectorStatus",
    "EapiClient",
    "EapiError",
    "Measurement",
    "RateLimited",
    "SchemaError",
    "TokenSet",
    "TokenStore",
    "jwt_expiry",
    "match_path",
    "client_from_settings",
    "validate_amps",
    "validate_request",
]
