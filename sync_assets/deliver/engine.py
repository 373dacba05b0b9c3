"""Delivering corrections to one destination: attempts, retries, and the verdict on each.

`deliver` sends every due correction in batches, retries the transient failures after a backoff
with full jitter (never sooner than the destination's Retry-After), and stops each correction at
one verdict:

| verdict       | when                                                                      |
| ------------- | ------------------------------------------------------------------------- |
| delivered     | the destination applied it (or had applied it: a replay of its key)       |
| duplicate     | the destination's ledger already held its idempotency key                 |
| superseded    | the destination holds a newer version of the record; nothing to do        |
| changed       | the record changed after the reconciliation saw it; not overwritten       |
| in_sync       | the record already holds the values; nothing written                      |
| dead_lettered | a permanent failure, or the attempts ran out; every attempt's error kept  |

(`changed` and `in_sync` come from the re-check just before writing: `deliver/recheck.py`.)

Every attempt is recorded (correction, attempt, start, latency, outcome, error). Time and sleep
are parameters so the retry schedule can be tested without waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from sync_assets import telemetry
from sync_assets.deliver.retry import RetryPolicy
from sync_assets.security.redact import redact_text

Status = Literal[
    "applied", "duplicate", "superseded", "changed", "in_sync", "transient", "permanent"
]
VERDICTS = {
    "applied": "delivered",
    "duplicate": "duplicate",
    "superseded": "superseded",
    "changed": "changed",
    "in_sync": "in_sync",
}
"""Final outcomes and the verdict each gives; transient ones are retried, permanent ones
dead-lettered."""


@dataclass(frozen=True)
class Delivery:
    """One correction as a destination receives it."""

    correction_id: str
    idempotency_key: str
    entity: str
    entity_key: str
    action: str
    """created | updated | deleted, or compensated (undo an applied correction)."""
    values: dict[str, Any]
    """Catalog values to set; for a compensation, {"row": <raw row before, or None>,
    "version": <the version held before>}."""
    version: str
    """The golden version; a destination holding a newer one ignores the delivery (for a
    compensation: the version of the correction it undoes)."""
    emitted_at: datetime | None = None
    """When the correction was emitted: the time a system's own change stamps get, so that every
    retry of a delivery is the same request (an idempotency key must not change meaning)."""
    seen: dict[str, Any] | None = None
    """What the reconciliation saw of the target's record: {"present", "deleted", "values" (catalog
    form)}; the record must still be so for the correction to be written. None: not re-checked
    (a compensation, which has its own guard)."""
    traceparent: str | None = None
    """The correction's W3C trace context (sync_assets/operate/telemetry.py), when traced: each
    delivery request continues its trace."""


@dataclass(frozen=True)
class Outcome:
    status: Status
    error: str | None = None
    retry_after: float | None = None
    previous: dict[str, Any] | None = None
    """The record before this delivery changed it ({"row": ..., "version": ...}), for compensation."""
    replayed: bool = False
    """The destination answered from its idempotency ledger: an earlier attempt had applied it."""
    latency_ms: float | None = None
    """This delivery's own round trip, where the destination times it (HTTP requests); else the
    batch's time is each delivery's latency (one SQL transaction)."""

    def __post_init__(self) -> None:
        # Kept in the warehouse and shown by syncctl: never a URL's password or a key.
        if self.error:
            object.__setattr__(self, "error", redact_text(self.error))


class Destination(Protocol):
    name: str
    batch_size: int

    def deliver(self, batch: Sequence[Delivery]) -> list[Outcome]:
        """One outcome per delivery, in order; never raises for a delivery's own failure."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Attempt:
    correction_id: str
    attempt: int
    destination: str
    started_at: datetime
    latency_ms: float
    outcome: str
    error: str | None


@dataclass
class Verdict:
    correction_id: str
    status: str
    attempts: int
    errors: list[str] = field(default_factory=list)
    previous: dict[str, Any] | None = None
    reason: str | None = None
    """Why it was dead-lettered, or closed without a write (superseded, changed, in_sync)."""


@dataclass
class Report:
    destination: str
    verdicts: list[Verdict] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(v.status == status for v in self.verdicts)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q / 100 * len(ranked)) - 1))]


@dataclass
class _Pending:
    delivery: Delivery
    due: float = 0.0
    attempt: int = 0
    errors: list[str] = field(default_factory=list)


def deliver(
    deliveries: Sequence[Delivery],
    destination: Destination,
    policy: RetryPolicy,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Deliver until every correction has its verdict."""
    rng = rng or random.Random()
    report = Report(destination.name)
    waiting = [_Pending(d) for d in deliveries]
    while waiting:
        now = clock()
        due = [p for p in waiting if p.due <= now]
        if not due:
            sleep(min(p.due for p in waiting) - now)
            continue
        # Retries whose backoff has passed go first: otherwise a correction whose first attempt
        # failed waits behind every correction not tried yet (p95 = the whole run).
        batch = sorted(due, key=lambda p: (p.attempt == 0, p.due))[: destination.batch_size]
        taken = {id(p) for p in batch}
        waiting = [p for p in waiting if id(p) not in taken]
        waiting += _attempt(batch, destination, policy, rng, clock, report)
    return report


def _attempt(
    batch: list[_Pending],
    destination: Destination,
    policy: RetryPolicy,
    rng: random.Random,
    clock: Callable[[], float],
    report: Report,
) -> list[_Pending]:
    """One attempt at a batch; returns what must be retried."""
    started_at, started = datetime.now(UTC), clock()
    spans = [_attempt_span(p, destination.name) for p in batch]
    outcomes = destination.deliver(
        [replace(p.delivery, traceparent=telemetry.context_of(s) or p.delivery.traceparent)
         for p, s in zip(batch, spans, strict=True)]
    )  # fmt: skip
    batch_ms = (clock() - started) * 1000
    retry = []
    for pending, outcome, span in zip(batch, outcomes, spans, strict=True):
        span.set_attribute("syncfabric.outcome", outcome.status)
        span.end()
        pending.attempt += 1
        report.attempts.append(
            Attempt(
                pending.delivery.correction_id,
                pending.attempt,
                destination.name,
                started_at,
                batch_ms if outcome.latency_ms is None else outcome.latency_ms,
                "replayed" if outcome.replayed else outcome.status,
                outcome.error,
            )
        )
        if outcome.error:
            pending.errors.append(f"attempt {pending.attempt}: {outcome.error}")
        if outcome.status == "transient" and not policy.exhausted(pending.attempt):
            pending.due = clock() + policy.delay(pending.attempt, rng, outcome.retry_after)
            retry.append(pending)
        else:
            report.verdicts.append(_verdict(pending, outcome, policy))
    return retry


def _attempt_span(pending: _Pending, destination: str) -> Any:
    """The span of one delivery attempt, a child of its correction's (a no-op when untraced)."""
    attributes = {
        "syncfabric.correction_id": pending.delivery.correction_id,
        "syncfabric.destination": destination,
        "syncfabric.attempt": pending.attempt + 1,
    }
    return telemetry.start_span(
        "syncfabric.delivery", attributes, parent=pending.delivery.traceparent
    )


def _verdict(pending: _Pending, outcome: Outcome, policy: RetryPolicy) -> Verdict:
    verdict = Verdict(
        pending.delivery.correction_id, "dead_lettered", pending.attempt, pending.errors
    )
    if outcome.status in VERDICTS:
        verdict.status = VERDICTS[outcome.status]
        verdict.previous = outcome.previous
        verdict.reason = outcome.error
    elif outcome.status == "permanent":
        verdict.reason = f"permanent failure: {outcome.error}"
    else:
        verdict.reason = f"gave up after {policy.max_attempts} attempts: {outcome.error}"
    return verdict
