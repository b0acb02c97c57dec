"""How long the bridge leaves the cloud alone after an error."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CloudBackoff:
    """Exponential backoff for cloud calls after an error: 5 s doubling to 5 min."""

    initial_s: float = 5.0
    max_s: float = 300.0
    failures: int = 0
    retry_at: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.retry_at

    def failed(self, now: float, at_least_s: float = 0.0) -> float:
        delay = min(self.max_s, self.initial_s * (2 ** self.failures))
        delay = max(delay, at_least_s)
        self.failures += 1
        self.retry_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def try_now(self, now: float) -> None:
        """A user's command goes now, even during the backoff."""
        self.retry_at = min(self.retry_at, now)

    def retry_in(self, now: float) -> float:
        """Seconds until the next try; 0 when not backing off."""
        return round(max(0.0, self.retry_at - now), 1) if self.failures else 0
