"""Token persistence and JWT expiry.

The account keeps at most 10 token sessions and every login logs the user out
of one of them (the phone app included), so the token pair is kept on disk and
reused across restarts.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.files import atomic_write_json, read_json_object

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1


def _jwt_payload(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    segment += "=" * (-len(segment) % 4)
    try:
        payload = json.loads(base64.urlsafe_b64decode(segment.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        return None
    return payload if isinstance(payload, dict) else None


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (seconds since the epoch), or None when unreadable.

    The signature is not checked: the client only needs to know when to refresh,
    and the server is the one that decides whether the token is good.
    """
    payload = _jwt_payload(token)
    if payload is None:
        return None
    exp = payload.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)


def jwt_issued_at(token: str) -> float | None:
    """The `iat` claim of a JWT, or None."""
    payload = _jwt_payload(token)
    if payload is None:
        return None
    iat = payload.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        return None
    return float(iat)


@dataclass(frozen=True)
class TokenSet:
    """An access token and its refresh token, and the account they belong to."""

    token: str
    refresh_token: str
    base_url: str
    email: str

    def __repr__(self) -> str:
        return f"TokenSet(base_url={self.base_url!r}, email={self.email!r}, token=<hidden>)"

    __str__ = __repr__

    @property
    def expires_at(self) -> float | None:
        return jwt_expiry(self.token)


class TokenStore:
    """A JSON file (mode 0600, written atomically) holding one account's tokens."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"TokenStore(path={str(self.path)!r})"

    def load(self, base_url: str, email: str) -> TokenSet | None:
        """The stored tokens of this account at this base URL, or None.

        A missing, corrupt or foreign file yields None (and a log line): the
        client then logs in, which is always a safe fallback.
        """
        try:
            data = read_json_object(self.path)
            if data is None:
                return None
            stored = TokenSet(
                token=_require_str(data, "token"),
                refresh_token=_require_str(data, "refresh_token"),
                base_url=_require_str(data, "base_url"),
                email=_require_str(data, "email"),
            )
        except OSError as exc:
            log.warning("cannot read token file %s (%s); logging in instead", self.path, exc.strerror)
            return None
        except ValueError as exc:
            # Neither json's nor our messages quote the file's content, which holds secrets.
            log.warning("ignoring corrupt token file %s (%s); logging in instead", self.path, exc)
            return None
        if stored.base_url != _norm_url(base_url) or stored.email.lower() != email.lower():
            log.info("token file %s belongs to another account or server; not reusing it", self.path)
            return None
        return stored

    def save(self, tokens: TokenSet) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        data = {
            "version": _FORMAT_VERSION,
            "base_url": _norm_url(tokens.base_url),
            "email": tokens.email,
            "token": tokens.token,
            "refresh_token": tokens.refresh_token,
            "saved_at": time.time(),
        }
        atomic_write_json(self.path, data, mode=0o600)

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _require_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"field {key!r} missing or not a string")
    return value


def _norm_url(url: str) -> str:
    return url.rstrip("/")
