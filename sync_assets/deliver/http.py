"""HTTP destinations: corrections POSTed to a no-code platform's records API.

Each correction is one `POST /v1/tables/<table>/records` with an `Idempotency-Key` header, sent
concurrently (a pool of connections, `concurrency` in flight). Before it, the record is read
(`GET /v1/tables/<table>/record?match=`, with its ETag) and re-checked against what the
reconciliation saw (`deliver/recheck.py`): a record that already holds the values is not written
(`in_sync`), one that changed since is not overwritten (`changed`). The write itself is
conditional: `If-Match: <the ETag read>` (`If-None-Match: *` where there was no record), so an
edit between the read and the write makes the platform answer 412 and apply nothing; the next
attempt reads the record again.

| answer                              | outcome                                             |
| ----------------------------------- | --------------------------------------------------- |
| 200 (a replay of the key included)  | applied                                             |
| 409 `stale_version`                 | superseded: it holds a newer version of the record  |
| 412 `precondition_failed`           | transient: read the record again, then decide       |
| 429 with Retry-After                | transient, retried no sooner than Retry-After       |
| 408, 5xx, timeout, dropped connection | transient                                         |
| any other 4xx                       | permanent (a constraint, an unknown field)          |

A dropped connection after the platform applied the change is safe: the retry is the very same
request (same key, body and precondition), and the platform answers it from its idempotency
ledger instead of applying it again. A record that reads as changed is first looked up in that
ledger (`GET /v1/idempotency/<key>`): if this correction was applied before (a run that crashed
before recording it), that is its answer, not `changed`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from sync_assets.connectors.mappings import Mapping
from sync_assets.connectors.render import UnwritableField, columns_written, render_key
from sync_assets.deliver.engine import Delivery, Outcome
from sync_assets.deliver.recheck import CHECKED, judge

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Read:
    """A record as the platform holds it just before the write (None: no record)."""

    record: dict[str, Any] | None
    etag: str | None
    latency_ms: float


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
        self._sent: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
        """Per correction, the request sent and not yet answered for good: a retry sends it
        again as it was, so that the platform's ledger recognises it."""

    def close(self) -> None:
        self._pool.shutdown()
        self._client.close()

    def deliver(self, batch: Sequence[Delivery]) -> list[Outcome]:
        to_read = [d for d in batch if _checked(d) and d.correction_id not in self._sent]
        reads = dict(
            zip(
                [d.correction_id for d in to_read], self._pool.map(self._read, to_read), strict=True
            )
        )
        verdicts: dict[str, Outcome] = {}
        for entity_name in dict.fromkeys(d.entity for d in to_read):
            group = [d for d in to_read if d.entity == entity_name]
            readable = [d for d in group if isinstance(reads[d.correction_id], Read)]
            rows = {}
            for d in readable:
                read = reads[d.correction_id]
                if isinstance(read, Read) and read.record is not None:
                    rows[d.entity_key] = read.record
            verdicts |= judge(self.mappings[entity_name], readable, rows)
        return list(
            self._pool.map(
                lambda d: self._send(d, reads.get(d.correction_id), verdicts.get(d.correction_id)),
                batch,
            )
        )

    def _read(self, delivery: Delivery) -> Read | Outcome:
        """The record the correction would write, as it is now, with its ETag."""
        mapping = self.mappings[delivery.entity]
        try:
            key_column, key = render_key(mapping, delivery.entity_key)
        except UnwritableField as error:
            return Outcome("permanent", str(error))
        started = time.perf_counter()
        try:
            response = self._client.get(
                f"{self.base_url}/v1/tables/{mapping.table}/record",
                params={"match": json.dumps({key_column: key})},
            )
        except httpx.TransportError as error:
            return Outcome("transient", _transport_error(error), latency_ms=_since(started))
        if response.status_code != 200:
            return replace(_outcome(response), latency_ms=_since(started))
        payload = response.json()
        return Read(payload.get("record"), payload.get("etag"), _since(started))

    def _send(
        self, delivery: Delivery, read: Read | Outcome | None, verdict: Outcome | None
    ) -> Outcome:
        if isinstance(read, Outcome):
            return read  # the record could not be read: nothing is written blind
        read_ms = read.latency_ms if read is not None else 0.0
        if verdict is not None:  # in_sync or changed: unless this correction did it already
            return replace(self._from_ledger(delivery) or verdict, latency_ms=read_ms)
        request = self._sent.get(delivery.correction_id)
        if request is None:
            try:
                request = self._request(delivery, read)
            except UnwritableField as error:
                return Outcome("permanent", str(error))
            self._sent[delivery.correction_id] = request
        body, headers = request
        outcome, response = self._post(delivery, body, headers, read_ms)
        if response is None:
            return outcome
        if response.status_code == 412 or outcome.status != "transient":
            self._sent.pop(delivery.correction_id, None)  # answered: a retry reads again
        return outcome

    def _post(
        self, delivery: Delivery, body: dict[str, Any], headers: dict[str, str], read_ms: float
    ) -> tuple[Outcome, httpx.Response | None]:
        """One write, with the attempt's W3C trace context in `traceparent` when traced."""
        sent = {**headers, "traceparent": delivery.traceparent} if delivery.traceparent else headers
        table = self.mappings[delivery.entity].table
        started = time.perf_counter()
        try:
            response = self._client.post(
                f"{self.base_url}/v1/tables/{table}/records", json=body, headers=sent
            )
        except httpx.TransportError as error:  # timeouts, refused and dropped connections
            latency = read_ms + _since(started)
            return Outcome("transient", _transport_error(error), latency_ms=latency), None
        return replace(_outcome(response), latency_ms=read_ms + _since(started)), response

    def _request(
        self, delivery: Delivery, read: Read | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The body and headers of the write: conditional on the record as read."""
        headers = {"Idempotency-Key": delivery.idempotency_key}
        if read is not None:
            if read.etag is None:
                headers["If-None-Match"] = "*"
            else:
                headers["If-Match"] = read.etag
        return request_body(self.mappings[delivery.entity], delivery), headers

    def _from_ledger(self, delivery: Delivery) -> Outcome | None:
        """The platform's stored answer to this correction's key, if it ever had one."""
        try:
            response = self._client.get(
                f"{self.base_url}/v1/idempotency/{quote(delivery.idempotency_key, safe='')}"
            )
        except httpx.TransportError as error:
            return Outcome("transient", _transport_error(error))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            return _outcome(response)
        stored = response.json()
        return replace(
            _answer(int(stored["status"]), stored["response"]), replayed=stored["status"] == 200
        )


def _checked(delivery: Delivery) -> bool:
    return delivery.seen is not None and delivery.action in CHECKED


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _transport_error(error: httpx.TransportError) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")


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
    outcome = _answer(response.status_code, _payload(response), _retry_after(response))
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    return replace(outcome, replayed=replayed) if outcome.status == "applied" else outcome


def _answer(status: int, payload: Any, retry_after: float | None = None) -> Outcome:
    """The outcome of a platform's answer to a write (or of the answer its ledger stored)."""
    if status == 200:
        previous = payload.get("previous") if isinstance(payload, dict) else None
        return Outcome("applied", previous={"row": previous, "version": None})
    error = f"HTTP {status}: {_error_text(payload)}"
    code = payload.get("error") if isinstance(payload, dict) else None
    if status == 409 and code == "stale_version":
        return Outcome("superseded", error)
    if status == 412:
        return Outcome("transient", f"{error} (the record changed between its read and the write)")
    if status in TRANSIENT_STATUS:
        return Outcome("transient", error, retry_after=retry_after)
    return Outcome("permanent", error)


def _payload(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:200]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from these platforms; the backoff applies


def _error_text(payload: Any) -> str:
    if not isinstance(payload, dict):
        return str(payload)[:300]
    return str(payload.get("message") or payload.get("error") or payload)[:300]
