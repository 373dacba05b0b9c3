"""Retry policy: exponential backoff with full jitter, per destination.

Full jitter (a delay drawn uniformly between 0 and the capped exponential) spreads the retries of
many failed deliveries over the whole window instead of sending them back together, so a
destination recovering from an outage is not knocked over again by a thundering herd.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 0.05
    """The first retry waits up to this long; each further one up to twice the previous."""
    cap_s: float = 2.0
    """No wait is drawn from a window longer than this."""
    max_attempts: int = 6
    """Attempts in all, the first included; then the correction is dead-lettered."""
    retry_after_cap_s: float = 30.0
    """A destination's Retry-After is honoured up to this long, so one answer cannot stall a run."""

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError(
                f"need 0 < base_s <= cap_s, got base_s={self.base_s}, cap_s={self.cap_s}"
            )
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def window(self, attempt: int) -> float:
        """The longest wait after failed attempt number `attempt` (1-based)."""
        return min(self.cap_s, self.base_s * 2 ** (attempt - 1))

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """How long to wait after failed attempt `attempt`: full jitter, but never less than a
        destination's own Retry-After."""
        jittered = rng.uniform(0, self.window(attempt))
        return max(jittered, min(retry_after or 0.0, self.retry_after_cap_s))

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
