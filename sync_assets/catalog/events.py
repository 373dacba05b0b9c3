"""The event envelope: CloudEvents 1.0 with Syncfabric's extensions.

An event on the wire is one JSON object per line:

    {"specversion": "1.0", "id": "crm-000001", "source": "/systems/crm",
     "type": "customer.updated", "time": "2026-11-25T08:30:00.000000Z",
     "subject": "C-000042", "datacontenttype": "application/json",
     "schemaversion": 2, "correlationid": "...", "causationid": null, "origin": "crm",
     "data": {"email": "ada@example.com"}}

`subject` is the entity's canonical key; `data` is the minimal payload, described by the contract
for (`type`, `schemaversion`); `origin` is the system whose change this is, and decides ownership.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

SPECVERSION = "1.0"
ACTIONS: tuple[str, ...] = ("created", "updated", "deleted", "reconciled")
RECONCILER_SOURCE = "/syncfabric/reconciler"
"""The CloudEvents source of events Syncfabric writes itself (missed events, adoption)."""

MAX_EVENT_BYTES = 64 * 1024
"""An event line longer than this is dead-lettered: payloads must stay minimal."""

ENVELOPE_FIELDS: tuple[str, ...] = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "schemaversion",
    "correlationid",
    "causationid",
    "origin",
)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, the one form Syncfabric writes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event(
    *,
    event_type: str,
    subject: str,
    origin: str,
    data: dict[str, Any],
    time: datetime,
    schema_version: int,
    event_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    event_id = event_id or str(uuid.uuid4())
    return {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": source or f"/systems/{origin}",
        "type": event_type,
        "time": format_time(time),
        "subject": subject,
        "datacontenttype": "application/json",
        "schemaversion": schema_version,
        "correlationid": correlation_id or event_id,
        "causationid": causation_id,
        "origin": origin,
        "data": data,
    }


def to_line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
