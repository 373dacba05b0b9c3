"""HTTP destinations: corrections POSTed to a no-code platform's records API.

Each correction is one `POST /v1/tables/<table>/records` with an `Idempotency-Key` header, sent
concurrently (a pool of connections, `concurrency` in flight). The platform's answers decide:

| answer                              | outcome                                             |
| ----------------------------------- | --------------------------------------------------- |
| 200 (a replay of the key included)  | applied                                             |
| 409 `stale_version`                 | superseded: it holds a newer version of the record  |
| 429 with Retry-After                | transient, retried no sooner than Retry-After       |
| 408, 5xx, timeout, dropped connection | transient                                         |
| any other 4xx                       | permanent (a constraint, an unknown field)          |

A dropped connection after the platform applied the change is safe: the retry carries the same
key, and the platform answers it from its idempotency ledger instead of applying it again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from sync_assets.connectors.mappings import Mapping
from sync_assets.connectors.render import UnwritableField, columns_written, render_key
from sync_assets.deliver.engine import Delivery, Outcome

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


class HttpDestination:
    def __init__(
        self,
        name: str,
        base_url: str,
        mappings: dict[str, Mapping],
        *,
        concurrency: int = 8,
        timeout_s: float = 5.0,
        batch_size: int = 256,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.mappings = mappings
        self.batch_size = batch_size
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), limits=limits)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"deliver-{name}")

    def close(self) -> None:
        self._pool.shutdown()
        self._client.close()

    def deliver(self, batch: Sequence[Delivery]) -> list[Outcome]:
        return list(self._pool.map(self._post, batch))

    def _post(self, delivery: Delivery) -> Outcome:
        mapping = self.mappings[delivery.entity]
        try:
            body = request_body(mapping, delivery)
        except UnwritableField as error:
            return Outcome("permanent", str(error))
        started = time.perf_counter()
        try:
            response = self._client.post(
                f"{self.base_url}/v1/tables/{mapping.table}/records",
                json=body,
                headers={"Idempotency-Key": delivery.idempotency_key},
            )
        except httpx.TransportError as error:  # timeouts, refused and dropped connections
            message = f"{type(error).__name__}: {error}".rstrip(": ")
            return Outcome("transient", message, latency_ms=_since(started))
        return replace(_outcome(response), latency_ms=_since(started))


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def request_body(mapping: Mapping, delivery: Delivery) -> dict[str, Any]:
    """The platform request for a correction, its values as the system writes them."""
    key_column, key = render_key(mapping, delivery.entity_key)
    now = delivery.emitted_at or datetime.now(UTC)
    body: dict[str, Any] = {"match": {key_column: key}, "version": delivery.version}
    if delivery.action == "compensated":
        row = delivery.values.get("row")
        if row is None:
            return body | {"op": "delete", "fields": {}}
        fields = {c: v for c, v in row.items() if c not in (*mapping.key, key_column)}
        return body | {"op": "upsert", "fields": fields}
    if delivery.action == "deleted" and mapping.soft_delete is None:
        return body | {"op": "delete", "fields": {}}
    fields = columns_written(
        mapping, delivery.action, delivery.values, now=now, creating=delivery.action == "created"
    )
    return body | {"op": "upsert", "fields": fields}


def _outcome(response: httpx.Response) -> Outcome:
    status = response.status_code
    if status == 200:
        payload = response.json()
        return Outcome(
            "applied",
            previous={"row": payload.get("previous"), "version": None},
            replayed=response.headers.get("Idempotent-Replayed") == "true",
        )
    error = f"HTTP {status}: {_error_text(response)}"
    if status == 409 and _error_code(response) == "stale_version":
        return Outcome("superseded", error)
    if status in TRANSIENT_STATUS:
        return Outcome("transient", error, retry_after=_retry_after(response))
    return Outcome("permanent", error)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from these platforms; the backoff applies


def _error_code(response: httpx.Response) -> str | None:
    try:
        return response.json().get("error")
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    return str(payload.get("message") or payload.get("error") or payload)[:300]
