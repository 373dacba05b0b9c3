"""Correction events: what each drifted system must be told so it agrees with the golden record.

One correction per (target system, entity, key) found drifted by a reconciliation run, in the
CloudEvents envelope of every other event, with these extensions:

| extension      | what                                                                   |
| -------------- | ---------------------------------------------------------------------- |
| target         | the system to correct                                                  |
| goldenversion  | the golden record's version; a destination applies only newer ones     |
| idempotencykey | target, key, action and desired values (and a generation, see below)   |
| causationid    | `<run>/<system>/<entity>/<key>`: the discrepancy rows that caused it   |
| correlationid  | the correlation id of the change that made the golden record so        |

The action follows the discrepancy: `missing` -> `created` (every attribute the target holds:
there is no row whose owner could be overwritten), `extra` -> `deleted`, `mismatch` -> `updated`
with only the attributes that differ. Only `drift` is corrected: the target does not own what is
set, so owners are never overwritten; a `missed_event` is the owner's own change, which enters
the golden record instead.

The same correction is never emitted twice while one is open (pending or dead-lettered): its
idempotency key would be the same. Once delivered, a reappearing identical drift is a new
correction, with the next generation in its key, so the destination applies it again.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from sync_assets.catalog.entities import entity
from sync_assets.catalog.events import RECONCILER_SOURCE, make_event
from sync_assets.connectors.mappings import mapping
from sync_assets.connectors.render import to_json
from sync_assets.reconcile.diff import records_to_fix
from sync_assets.warehouse import quote, registered

OPEN = ("pending", "dead_lettered")
"""Statuses of a correction still to be delivered (a dead letter waits for its redrive)."""
FINAL = ("delivered", "duplicate", "superseded", "compensated", "rolled_back")

DELIVERY_DDL = """
CREATE TABLE IF NOT EXISTS corrections (
    correction_id    VARCHAR PRIMARY KEY,
    idempotency_key  VARCHAR NOT NULL UNIQUE,
    base_key         VARCHAR NOT NULL,
    kind             VARCHAR NOT NULL,   -- correction | compensation
    reconcile_run_id VARCHAR NOT NULL,
    emitted_at       TIMESTAMPTZ NOT NULL,
    target           VARCHAR NOT NULL,
    entity           VARCHAR NOT NULL,
    entity_key       VARCHAR NOT NULL,
    action           VARCHAR NOT NULL,   -- created | updated | deleted | compensated
    attributes       VARCHAR NOT NULL,   -- JSON: catalog values to set (raw columns to restore, for a compensation)
    golden_version   VARCHAR NOT NULL,
    causation_id     VARCHAR NOT NULL,
    correlation_id   VARCHAR NOT NULL,
    compensates      VARCHAR,            -- the correction a compensation undoes
    event            VARCHAR NOT NULL,   -- the CloudEvents envelope, as JSON
    status           VARCHAR NOT NULL,   -- pending | delivered | duplicate | superseded | dead_lettered | compensated | rolled_back
    attempts         INTEGER NOT NULL DEFAULT 0,
    finished_at      TIMESTAMPTZ,
    previous         VARCHAR             -- JSON: the row before it was applied, for compensation
);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    correction_id VARCHAR NOT NULL,
    attempt       INTEGER NOT NULL,
    destination   VARCHAR NOT NULL,
    delivery_run  VARCHAR NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    latency_ms    DOUBLE NOT NULL,
    outcome       VARCHAR NOT NULL,
    error         VARCHAR
);
CREATE TABLE IF NOT EXISTS delivery_dead_letters (
    correction_id    VARCHAR PRIMARY KEY,
    destination      VARCHAR NOT NULL,
    reason           VARCHAR NOT NULL,
    errors           VARCHAR[] NOT NULL,
    attempts         INTEGER NOT NULL,
    dead_lettered_at TIMESTAMPTZ NOT NULL,
    redriven_at      TIMESTAMPTZ,
    redrives         INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Emitted:
    emitted: int
    already_open: int
    """Drift whose correction is still pending or dead-lettered: not emitted again."""
    by_target: dict[str, int]


def emit_corrections(con: duckdb.DuckDBPyConnection, run_id: str) -> Emitted:
    """Turn a reconciliation run's drift into pending corrections; callers hold a transaction."""
    now = datetime.now(UTC)
    rows = [_correction(target, run_id, now) for target in _drifted(con, run_id)]
    existing = _existing(con, [row["base_key"] for row in rows])
    emitted: list[dict[str, Any]] = []
    by_target: dict[str, int] = {}
    for row in rows:
        generations, still_open = existing.get(row["base_key"], (0, False))
        if still_open:
            continue
        row["idempotency_key"] = f"{row['base_key']}.{generations}"
        row["event"] = json.dumps(correction_event(row), separators=(",", ":"))
        emitted.append(row)
        by_target[row["target"]] = by_target.get(row["target"], 0) + 1
    insert_corrections(con, emitted)
    return Emitted(len(emitted), len(rows) - len(emitted), by_target)


def insert_corrections(con: duckdb.DuckDBPyConnection, rows: Iterable[dict[str, Any]]) -> None:
    columns = [
        "correction_id", "idempotency_key", "base_key", "kind", "reconcile_run_id", "emitted_at",
        "target", "entity", "entity_key", "action", "attributes", "golden_version",
        "causation_id", "correlation_id", "compensates", "event", "status",
    ]  # fmt: skip
    rows = list(rows)
    if rows:
        frame = {c: [row.get(c) for row in rows] for c in columns}
        with registered(con, "corrections_frame", frame) as name:
            con.execute(f"INSERT INTO corrections BY NAME SELECT * FROM {name}")


def idempotency_base(target: str, entity_name: str, key: str, action: str, values: str) -> str:
    digest = hashlib.sha256(f"{target}|{entity_name}|{key}|{action}|{values}".encode())
    return digest.hexdigest()[:32]


# -- from discrepancies to corrections -------------------------------------------------------------


def _drifted(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """Per drifted (system, entity, key): the action and the golden values to set."""
    found = records_to_fix(con, run_id, "drift")
    golden = {name: _golden(con, name, run_id) for name in {r.entity for r in found}}
    targets = []
    for r in found:
        if r.missing:
            action, names = "created", list(mapping(r.system, r.entity).attributes)
        elif r.extra:
            action, names = "deleted", []
        else:
            action, names = "updated", r.attributes
        record = golden[r.entity].get(r.entity_key)
        targets.append(
            {
                "system": r.system,
                "entity": r.entity,
                "key": r.entity_key,
                "action": action,
                "values": {n: record[n] for n in names} if record else {},
                # A record the golden log never saw has no version or change to correlate with.
                "version": record["last_version"] if record else "",
                "correlation_id": (
                    record["last_correlation_id"]
                    if record
                    else f"unknown/{r.entity}/{r.entity_key}"
                ),
            }
        )
    return targets


def _golden(
    con: duckdb.DuckDBPyConnection, entity_name: str, run_id: str
) -> dict[str, dict[str, Any]]:
    """The golden records of an entity's drifted keys in a run, by key."""
    catalog = entity(entity_name)
    key = quote(catalog.key)
    rows = con.sql(
        f"""SELECT * FROM {quote(catalog.golden_table)} WHERE {key} IN (
            SELECT entity_key FROM discrepancies
            WHERE run_id = $run_id AND entity = $entity AND resolution = 'drift')""",
        params={"run_id": run_id, "entity": entity_name},
    ).to_arrow_table()
    return {row[catalog.key]: row for row in rows.to_pylist()}


def _correction(target: dict[str, Any], run_id: str, now: datetime) -> dict[str, Any]:
    values = to_json(target["values"])
    return {
        "correction_id": str(uuid.uuid4()),
        "base_key": idempotency_base(
            target["system"], target["entity"], target["key"], target["action"], values
        ),
        "kind": "correction",
        "reconcile_run_id": run_id,
        "emitted_at": now,
        "target": target["system"],
        "entity": target["entity"],
        "entity_key": target["key"],
        "action": target["action"],
        "attributes": values,
        "golden_version": target["version"],
        "causation_id": f"{run_id}/{target['system']}/{target['entity']}/{target['key']}",
        "correlation_id": target["correlation_id"],
        "compensates": None,
        "status": "pending",
    }


def _existing(con: duckdb.DuckDBPyConnection, base_keys: list[str]) -> dict[str, tuple[int, bool]]:
    """Per idempotency base: how many corrections had it, and whether one is still open."""
    found = con.execute(
        "SELECT base_key, count(*), bool_or(list_contains($open, status)) "
        "FROM corrections WHERE base_key IN (SELECT unnest($keys)) GROUP BY base_key",
        {"keys": base_keys, "open": list(OPEN)},
    ).fetchall()
    return {base: (generations, still_open) for base, generations, still_open in found}


def correction_event(row: dict[str, Any]) -> dict[str, Any]:
    event = make_event(
        event_type=f"{row['entity']}.{row['action']}",
        subject=row["entity_key"],
        origin="golden",
        data=json.loads(row["attributes"]),
        time=row["emitted_at"],
        schema_version=1,
        event_id=row["correction_id"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        source=RECONCILER_SOURCE,
    )
    event |= {
        "target": row["target"],
        "goldenversion": row["golden_version"],
        "idempotencykey": row["idempotency_key"],
    }
    return event
