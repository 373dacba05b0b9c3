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

A `deleted` goes out only for a record whose golden lifecycle is a tombstone (the lifecycle
owner deleted it): a record the golden record merely lacks (an empty or partial golden state, a
row only non-owners hold) is never deleted, whatever the discrepancy says (the diff calls those
`orphan`).

The same correction is never emitted twice while one is open (pending or dead-lettered): its
idempotency key would be the same. Once delivered, a reappearing identical drift is a new
correction, with the next generation in its key, so the destination applies it again.

Nothing is corrected from a golden state that may be wrong:

- while any landed batch is not yet applied (`ledger.pending_batches`), the golden records are
  incomplete and nothing is emitted at all (`GoldenIncomplete`);
- a record with a `missed_event` in the same run is withheld whole: the owner's value must enter
  the golden record first, and the next reconciliation corrects the other systems from it.

PII in `attributes`, `event` and `seen` is sealed field by field, and `previous` whole
(sync_assets/security/fields.py): the outbox opens them to deliver.

Each correction keeps what the reconciliation saw of the target's record (`seen`: present or not,
deleted or not, its values in catalog form), so the destination can refuse to overwrite a record
that changed since (see `deliver/recheck.py`).

| status        | meaning                                                                      |
| ------------- | ---------------------------------------------------------------------------- |
| pending       | to deliver                                                                   |
| dead_lettered | failed for good; waits for a redrive                                         |
| delivered     | the destination applied it                                                   |
| duplicate     | the destination's ledger already held its idempotency key                    |
| superseded    | the destination holds a newer golden version of the record                   |
| stale         | the golden record changed after it was emitted; not sent (the next reconciliation emits what is still needed) |
| changed       | the target's record changed after the reconciliation saw it; not overwritten |
| in_sync       | the target's record already held the values; nothing written                 |
| compensated   | a dead letter whose change set was put back (`outbox.compensate`)            |
| rolled_back   | a delivered correction that a compensation undid                             |

`reason` says why a correction closed without a write, or why it was dead-lettered.
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

from sync_assets import telemetry
from sync_assets.catalog.events import RECONCILER_SOURCE, make_event
from sync_assets.connectors.render import to_json
from sync_assets.errors import EXIT_FAILED, SyncfabricError
from sync_assets.ledger import pending_batches
from sync_assets.project import current
from sync_assets.reconcile.diff import RecordToFix, records_to_fix
from sync_assets.reconcile.snapshot import snapshot_table
from sync_assets.security.fields import seal_correction
from sync_assets.security.sql import pii_of
from sync_assets.warehouse import quote, registered

RUNBOOK = "docs/runbooks/delivery.md"

OPEN = ("pending", "dead_lettered")
"""Statuses of a correction still to be delivered (a dead letter waits for its redrive)."""
FINAL = (
    "delivered", "duplicate", "superseded", "stale", "changed", "in_sync", "compensated",
    "rolled_back",
)  # fmt: skip


class GoldenIncomplete(SyncfabricError):
    """Batches are not applied yet: a correction computed now could undo what they hold."""


def require_complete_golden(con: duckdb.DuckDBPyConnection) -> None:
    """Raise `GoldenIncomplete`, naming the batches, while any landed batch is not applied.

    A golden record missing its events makes every system look drifted: after a crash that left
    the golden records empty, 15,167 delete corrections were emitted from such a state.
    """
    pending = pending_batches(con)
    if pending:
        shown = ", ".join(pending[:5]) + (
            f" and {len(pending) - 5} more" if len(pending) > 5 else ""
        )
        raise GoldenIncomplete(
            f"{len(pending)} batch(es) landed but not applied yet ({shown}): the golden records "
            "are incomplete, so nothing is corrected from them. Let the ingest finish or resume "
            f"it (syncctl run), then reconcile again; see {RUNBOOK}",
            exit_code=EXIT_FAILED,
        )


@dataclass(frozen=True)
class Emitted:
    emitted: int
    already_open: int
    """Drift whose correction is still pending or dead-lettered: not emitted again."""
    by_target: dict[str, int]
    withheld: int = 0
    """Drifted records withheld because their owner's missed event must enter golden first."""


@dataclass(frozen=True)
class Planned:
    """What emitting a run's corrections would insert, computed without inserting it."""

    rows: list[dict[str, Any]]
    already_open: int
    withheld: int

    def by_target_action(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for row in self.rows:
            pair = (row["target"], row["action"])
            counts[pair] = counts.get(pair, 0) + 1
        return counts


def emit_corrections(con: duckdb.DuckDBPyConnection, run_id: str) -> Emitted:
    """Turn a reconciliation run's drift into pending corrections; callers hold a transaction.

    Raises `GoldenIncomplete` while batches are pending: nothing is emitted.
    """
    require_complete_golden(con)
    planned = plan_corrections(con, run_id)
    for row in planned.rows:  # traced only once emitted: a span per correction, with its context
        row["traceparent"] = telemetry.correction_traceparent(row)
        if row["traceparent"]:
            row["event"] = json.dumps(correction_event(row), separators=(",", ":"))
    insert_corrections(con, planned.rows)
    by_target: dict[str, int] = {}
    for (target, _), count in planned.by_target_action().items():
        by_target[target] = by_target.get(target, 0) + count
    return Emitted(len(planned.rows), planned.already_open, by_target, planned.withheld)


def plan_corrections(
    con: duckdb.DuckDBPyConnection, run_id: str, now: datetime | None = None
) -> Planned:
    """The corrections a run's drift calls for that are not open already, with their keys."""
    now = now or datetime.now(UTC)
    found = records_to_fix(con, run_id, "drift")
    waiting = _awaiting_owner(con, run_id)
    fixable = [r for r in found if (r.entity, r.entity_key) not in waiting]
    rows = [_correction(target, run_id, now) for target in _drifted(con, run_id, fixable)]
    existing = _existing(con, [row["base_key"] for row in rows])
    emitted: list[dict[str, Any]] = []
    for row in rows:
        generations, still_open = existing.get(row["base_key"], (0, False))
        if still_open:
            continue
        row["idempotency_key"] = f"{row['base_key']}.{generations}"
        row["event"] = json.dumps(correction_event(row), separators=(",", ":"))
        emitted.append(row)
    return Planned(emitted, len(rows) - len(emitted), len(found) - len(fixable))


def insert_corrections(con: duckdb.DuckDBPyConnection, rows: Iterable[dict[str, Any]]) -> None:
    columns = [
        "correction_id", "idempotency_key", "base_key", "kind", "reconcile_run_id", "emitted_at",
        "target", "entity", "entity_key", "action", "attributes", "golden_version",
        "causation_id", "correlation_id", "compensates", "event", "status", "seen",
    ]  # fmt: skip
    rows = list(rows)
    if rows:
        # PII sealed as stored (sync_assets/security/fields.py); `due` opens it to deliver.
        sealer, project = pii_of(con).sealer, current()
        rows = [seal_correction(sealer, project.entity(row["entity"]), row) for row in rows]
        frame = {c: [row.get(c) for row in rows] for c in columns}
        with registered(con, "corrections_frame", frame) as name:
            con.execute(f"INSERT INTO corrections BY NAME SELECT * FROM {name}")


def idempotency_base(target: str, entity_name: str, key: str, action: str, values: str) -> str:
    digest = hashlib.sha256(f"{target}|{entity_name}|{key}|{action}|{values}".encode())
    return digest.hexdigest()[:32]


# -- from discrepancies to corrections -------------------------------------------------------------


def _awaiting_owner(con: duckdb.DuckDBPyConnection, run_id: str) -> set[tuple[str, str]]:
    """(entity, key) of the records an owner changed without an event, in this run."""
    found = con.execute(
        "SELECT DISTINCT entity, entity_key FROM discrepancies "
        "WHERE run_id = ? AND resolution = 'missed_event'",
        [run_id],
    ).fetchall()
    return {(entity_name, key) for entity_name, key in found}


def _drifted(
    con: duckdb.DuckDBPyConnection, run_id: str, found: list[RecordToFix]
) -> list[dict[str, Any]]:
    """Per drifted (system, entity, key): the action, the golden values to set, and what the
    reconciliation saw of the system's record."""
    golden = {name: _golden(con, name, run_id) for name in {r.entity for r in found}}
    pairs = {(r.system, r.entity) for r in found}  # one query per system's entity, not per record
    seen = {(system, name): _seen(con, system, name, run_id) for system, name in pairs}
    project = current()  # once, not per record: a lookup costs ~70 µs
    targets = []
    for r in found:
        record = golden[r.entity].get(r.entity_key)
        if r.missing:
            action, names = "created", list(project.mapping(r.system, r.entity).attributes)
        elif r.extra:
            if record is None or record["lifecycle_state"] != "deleted":
                continue  # only the lifecycle owner's delete is a reason to delete
            action, names = "deleted", []
        else:
            action, names = "updated", r.attributes
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
                "seen": seen[r.system, r.entity].get(
                    r.entity_key, {"present": False, "deleted": False, "values": {}}
                ),
            }
        )
    return targets


def _seen(
    con: duckdb.DuckDBPyConnection, system: str, entity_name: str, run_id: str
) -> dict[str, dict[str, Any]]:
    """The system's snapshot rows of its drifted records, by key: present, deleted, and the
    values in catalog form (the snapshot is the one the run's diff read)."""
    source = current().mapping(system, entity_name)
    key = current().entity(entity_name).key
    cursor = con.execute(
        f"""SELECT * EXCLUDE (system_key) FROM {quote(snapshot_table(source))}
            WHERE {quote(key)} IN (
                SELECT entity_key FROM discrepancies WHERE run_id = ? AND system = ?
                  AND entity = ? AND resolution = 'drift' AND other_system IS NULL)""",
        [run_id, system, entity_name],
    )
    names = [d[0] for d in cursor.description]
    seen = {}
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        deleted = bool(row.pop("is_deleted"))
        seen[row.pop(key)] = {"present": True, "deleted": deleted, "values": row}
    return seen


def _golden(
    con: duckdb.DuckDBPyConnection, entity_name: str, run_id: str
) -> dict[str, dict[str, Any]]:
    """The golden records of an entity's drifted keys in a run, by key."""
    catalog = current().entity(entity_name)
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
        "seen": to_json(target["seen"]),
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
    if row.get("traceparent"):  # CloudEvents' distributed-tracing extension (tracing on)
        event["traceparent"] = row["traceparent"]
    return event
