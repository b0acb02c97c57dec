"""Typed errors of the EAPI client.

Messages say what to do next and never carry a secret (password, API key,
token): callers log them and print them as they are.
"""

from __future__ import annotations


class EapiError(Exception):
    """Base of every error raised by the Charge Amps client."""


class AuthError(EapiError):
    """The cloud rejected the credentials (or refresh and login both failed)."""


class ApiError(EapiError):
    """The cloud answered with an error status (4xx other than 401/429, or 5xx after retries)."""

    def __init__(self, status: int, message: str = "") -> None:
        self.status = int(status)
        self.message = message
        text = f"Charge Amps API answered HTTP {self.status}"
        if message:
            text = f"{text}: {message}"
        super().__init__(text)


class RateLimited(EapiError):
    """The cloud answered 429 and asked for a longer pause than the client waits by itself."""

    def __init__(self, retry_after_s: float | None) -> None:
        self.retry_after_s = retry_after_s
        if retry_after_s is None:
            text = "Charge Amps API rate limit hit (429); slow down before the next call"
        else:
            text = (
                f"Charge Amps API rate limit hit (429); retry after {retry_after_s:g} s"
            )
        super().__init__(text)


class CloudUnavailable(EapiError):
    """No answer from the cloud: connection refused/reset or timeout, after retries."""


class SchemaError(EapiError, ValueError):
    """A request body does not validate against the EAPI v5 document (a bug in the caller)."""
