"""Missed events: what an owner holds that the golden record never heard of, landed as events.

A `missed_event` discrepancy means the system that owns the value (the attribute, or the record's
lifecycle) changed it without an event reaching Syncfabric: an edit by hand, a lost webhook. The
owner is right, so its value enters the golden record the normal way, through the landing zone
and the contracts, as events from the owner sent by the reconciler:

| discrepancy (resolution missed_event) | event                                               |
| ------------------------------------- | --------------------------------------------------- |
| mismatch of an owned attribute        | `<entity>.reconciled` with the owner's values       |
| extra: the owner holds a live record  | `<entity>.created` with every attribute it holds    |
| missing: the owner deleted the record | `<entity>.deleted`                                  |

Each event is stamped with the reconciliation time, so it wins over the older golden value, and
carries the discrepancies as its causation id. Once applied, the next reconciliation corrects the
systems that do not own the value.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb

from sync_assets.catalog.contracts import CURRENT_VERSION
from sync_assets.catalog.entities import entity
from sync_assets.catalog.events import RECONCILER_SOURCE, format_time, make_event, to_line
from sync_assets.connectors.mappings import Mapping, mapping
from sync_assets.ingest.landing import LandingZone
from sync_assets.reconcile.diff import records_to_fix
from sync_assets.reconcile.snapshot import snapshot_table
from sync_assets.warehouse import quote


def missed_events(
    con: duckdb.DuckDBPyConnection, run_id: str, now: datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The events each owner missed sending, by system, from a reconciliation run."""
    now = now or datetime.now(UTC)
    found = records_to_fix(con, run_id, "missed_event")
    events: dict[str, list[dict[str, Any]]] = {}
    for r in found:
        source = mapping(r.system, r.entity)
        if r.missing:
            action, names = "deleted", []
        elif r.extra:
            action, names = "created", list(source.attributes)
        else:
            action, names = "reconciled", r.attributes
        event = make_event(
            event_type=f"{r.entity}.{action}",
            subject=r.entity_key,
            origin=r.system,
            data=_snapshot_values(con, source, r.entity_key, names),
            time=now,
            schema_version=CURRENT_VERSION[r.entity],
            causation_id=f"{run_id}/{r.system}/{r.entity}/{r.entity_key}",
            source=RECONCILER_SOURCE,
            event_id=f"reconciler-{uuid.uuid4()}",
        )
        events.setdefault(r.system, []).append(event)
    return events


def land_missed_events(
    con: duckdb.DuckDBPyConnection, zone: LandingZone, run_id: str
) -> dict[str, int]:
    """Land one batch per owner of the events it missed; how many per system."""
    now = datetime.now(UTC)
    landed = {}
    for system, events in missed_events(con, run_id, now).items():
        stem = f"reconciled-{now.strftime('%Y%m%dT%H%M%S')}-{run_id[:8]}"
        zone.write_batch(system, stem, (to_line(_plain(e)) for e in events))
        landed[system] = len(events)
    return landed


def _snapshot_values(
    con: duckdb.DuckDBPyConnection, source: Mapping, key: str, names: list[str]
) -> dict[str, Any]:
    if not names:
        return {}
    catalog_key = quote(entity(source.entity).key)
    columns = ", ".join(quote(n) for n in names)
    row = con.execute(
        f"SELECT {columns} FROM {quote(snapshot_table(source))} WHERE {catalog_key} = ?", [key]
    ).fetchall()
    return dict(zip(names, row[0], strict=True)) if row else {}


def _plain(event: dict[str, Any]) -> dict[str, Any]:
    """Values as the contracts read them: decimals as numbers, times in RFC 3339 UTC."""
    return json.loads(json.dumps(event, default=_json_value))


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"cannot write {type(value).__name__} in an event")
