"""Who may connect: the charge point identity (the last path segment of
ws://host:port/<identity>) and, with OCPP_PASSWORD, HTTP Basic authentication
(OCPP security profile 1, the user being the identity)."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from urllib.parse import unquote, urlsplit

# OCPP 1.6 JSON: the identity is a CiString of at most 48 characters; no path separator, no
# separator of our own lists.
_IDENTITY = re.compile(r"^[^/\s,:]{1,48}$")


def parse_identities(text: str) -> tuple[str, ...]:
    """`A,B,C` as a tuple, in order, without repeats; ValueError names a bad identity."""
    out: list[str] = []
    for part in text.split(","):
        identity = part.strip()
        if not identity:
            continue
        if _IDENTITY.match(identity) is None:
            raise ValueError(f"charge point identity {identity!r} must be 1-48 characters without '/', ':', ',' or spaces")
        if identity not in out:
            out.append(identity)
    if not out:
        raise ValueError("no charge point identity given")
    return tuple(out)


def identity_of(path: str) -> str:
    """The identity a charger names in its URL path (`/ocpp/HALO123` -> `HALO123`)."""
    segments = [s for s in urlsplit(path).path.split("/") if s]
    return unquote(segments[-1]) if segments else ""


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header, or None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if sep else None


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def refusal(identity: str, accepted: tuple[str, ...] | frozenset[str], password: str | None,
            authorization: str | None) -> str | None:
    """Why a handshake is refused, or None when it may proceed. Never quotes a password."""
    if identity not in accepted:
        return f"identity {identity!r} is not in OCPP_CHARGE_POINTS"
    if password is None:
        return None
    credentials = basic_credentials(authorization)
    if credentials is None:
        return f"{identity}: no HTTP Basic credentials"
    user, given = credentials
    # Both compared in constant time; the user must be the identity (OCPP security profile 1).
    ok_user = hmac.compare_digest(user.encode(), identity.encode())
    ok_password = hmac.compare_digest(given.encode(), password.encode())
    if not (ok_user and ok_password):
        return f"{identity}: wrong user or password"
    return None
