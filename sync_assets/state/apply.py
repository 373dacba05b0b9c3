"""Applying validated events to the golden record: idempotent and order-insensitive.

Every attribute of a golden record is a last-writer-wins register: it holds the value of the newest
event, by event time then event id (the `version` string `<RFC 3339 UTC time>|<event id>` sorts
that way), among the events from the system that owns the attribute. Others' attempts are kept as
ownership conflicts and change nothing. Whether the entity exists is one more register, written by
the lifecycle owner's created, reconciled (live) and deleted (tombstone) events, so an older event
can never resurrect a deleted record, whatever order events arrive in.

Because each register keeps the maximum, applying is a merge: applying the same events again, in
any order or grouping, gives the same state, and replaying the whole log equals incremental apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from sync_assets.catalog.entities import ENTITIES, Entity
from sync_assets.warehouse import golden_table_ddl, quote, scalar

LIFECYCLE_ACTIONS = ("created", "reconciled", "deleted")
LIFECYCLE = "(lifecycle)"


@dataclass(frozen=True)
class ApplyCounts:
    applied: int
    conflicts: int
    superseded: int


def newer(candidate: str, current: str) -> str:
    """SQL: is the `candidate` version newer than the `current` one? The ordering guard."""
    return f"({candidate} > coalesce({current}, ''))"


def _owned(entity: Entity, attribute: str) -> str:
    owner = entity.owner_of(attribute)
    return f"(origin = '{owner}' AND list_contains(set_attributes, '{attribute}'))"


def _lifecycle(entity: Entity) -> str:
    actions = ", ".join(f"'{a}'" for a in LIFECYCLE_ACTIONS)
    return f"(origin = '{entity.lifecycle_owner}' AND action IN ({actions}))"


def _merge_sql(entity: Entity, target: str) -> str:
    """Fold the events in `apply_events` into `target`, one row per key, keeping the newest."""
    key = quote(entity.key)
    aggregates = []
    updates = []
    for attribute in entity.attributes:
        name, version = quote(attribute.name), quote(attribute.name + "__v")
        owned = _owned(entity, attribute.name)
        aggregates.append(f"arg_max_null({name}, CASE WHEN {owned} THEN version END) AS {name}")
        aggregates.append(f"max(CASE WHEN {owned} THEN version END) AS {version}")
        updates.append(
            f"{name} = CASE WHEN {newer(f'excluded.{version}', f't.{version}')} "
            f"THEN excluded.{name} ELSE t.{name} END"
        )
        updates.append(f"{version} = greatest(excluded.{version}, t.{version})")
    lifecycle = _lifecycle(entity)
    aggregates += [
        "arg_max_null(CASE WHEN action = 'deleted' THEN 'deleted' ELSE 'live' END, "
        f"CASE WHEN {lifecycle} THEN version END) AS lifecycle_state",
        f"max(CASE WHEN {lifecycle} THEN version END) AS lifecycle__v",
        "max(version) AS last_version",
        "arg_max(event_id, version) AS last_event_id",
        "arg_max(correlation_id, version) AS last_correlation_id",
    ]
    updates += [
        f"lifecycle_state = CASE WHEN {newer('excluded.lifecycle__v', 't.lifecycle__v')} "
        "THEN excluded.lifecycle_state ELSE t.lifecycle_state END",
        "lifecycle__v = greatest(excluded.lifecycle__v, t.lifecycle__v)",
    ]
    for column in ("last_event_id", "last_correlation_id"):
        updates.append(
            f"{column} = CASE WHEN {newer('excluded.last_version', 't.last_version')} "
            f"THEN excluded.{column} ELSE t.{column} END"
        )
    updates.append("last_version = greatest(excluded.last_version, t.last_version)")
    return f"""
INSERT INTO {quote(target)} AS t
SELECT entity_key AS {key}, {", ".join(aggregates)}
FROM apply_events GROUP BY entity_key
ON CONFLICT ({key}) DO UPDATE SET {", ".join(updates)}
"""


def _conflicts_sql(entity: Entity) -> str:
    owners = " ".join(f"WHEN '{a.name}' THEN '{a.owner}'" for a in entity.attributes)
    actions = ", ".join(f"'{a}'" for a in LIFECYCLE_ACTIONS)
    return f"""
INSERT INTO ownership_conflicts
SELECT event_id, batch_id, '{entity.name}', entity_key, attribute, origin, owner, event_time
FROM (
    SELECT *, CASE attribute {owners} END AS owner
    FROM (SELECT *, unnest(set_attributes) AS attribute FROM apply_events)
    UNION ALL
    SELECT *, '{LIFECYCLE}' AS attribute, '{entity.lifecycle_owner}' AS owner
    FROM apply_events WHERE action IN ({actions})
)
WHERE origin <> owner
ON CONFLICT DO NOTHING
"""


def _superseded_sql(entity: Entity, target: str) -> str:
    """Events that won nothing: every register they wrote holds a newer event's value."""
    registers = [quote(a.name + "__v") for a in entity.attributes] + ["lifecycle__v"]
    won = " OR ".join(f"g.{register} IS NOT DISTINCT FROM e.version" for register in registers)
    return f"""
SELECT e.batch_id, count(*) FROM apply_events e
JOIN {quote(target)} g ON g.{quote(entity.key)} = e.entity_key
WHERE NOT ({won})
GROUP BY e.batch_id
"""


def apply_events(
    con: duckdb.DuckDBPyConnection, entity: Entity, where: str, params: Sequence[object] = ()
) -> dict[str, ApplyCounts]:
    """Apply the validated events of `entity` selected by `where` to its golden table.

    Returns the counts per batch of the events applied.
    """
    return _apply(con, entity, entity.golden_table, where, params)


def _apply(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    target: str,
    where: str,
    params: Sequence[object] = (),
) -> dict[str, ApplyCounts]:
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE apply_events AS "
        f"SELECT * FROM {quote(entity.events_table)} WHERE {where}",
        list(params),
    )
    applied = _per_batch(con, "SELECT batch_id, count(*) FROM apply_events GROUP BY batch_id")
    conflicts: dict[str, int] = {}
    superseded: dict[str, int] = {}
    if applied:
        con.execute(_conflicts_sql(entity))
        conflicts = _per_batch(
            con,
            "SELECT batch_id, count(DISTINCT event_id) FROM ownership_conflicts "
            "WHERE event_id IN (SELECT event_id FROM apply_events) GROUP BY batch_id",
        )
        con.execute(_merge_sql(entity, target))
        superseded = _per_batch(con, _superseded_sql(entity, target))
    con.execute("DROP TABLE apply_events")
    return {
        batch_id: ApplyCounts(count, conflicts.get(batch_id, 0), superseded.get(batch_id, 0))
        for batch_id, count in applied.items()
    }


def _per_batch(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, int]:
    return dict(con.execute(sql).fetchall())


def apply_pending_batches(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, ApplyCounts]]:
    """Apply every validated batch not yet applied; returns counts per batch and entity.

    All pending batches are merged in one pass per entity (the merge is order-insensitive, so
    this equals applying them one by one, and costs one aggregation instead of one per batch).
    Runs inside the caller's transaction: a batch is either fully applied and recorded, or not.
    """
    pending = [
        row[0]
        for row in con.execute(
            "SELECT batch_id FROM batches WHERE validated_at IS NOT NULL AND applied_at IS NULL "
            "ORDER BY batch_id"
        ).fetchall()
    ]
    if not pending:
        return {}
    results: dict[str, dict[str, ApplyCounts]] = {batch_id: {} for batch_id in pending}
    for entity in ENTITIES.values():
        per_batch = apply_events(con, entity, "list_contains(?, batch_id)", [pending])
        for batch_id in pending:
            counts = per_batch.get(batch_id, ApplyCounts(0, 0, 0))
            results[batch_id][entity.name] = counts
            con.execute(
                "INSERT INTO batch_applications VALUES (?, ?, ?, ?, ?, now())",
                [batch_id, entity.name, counts.applied, counts.conflicts, counts.superseded],
            )
    for batch_id, by_entity in results.items():
        con.execute(
            "UPDATE batches SET applied = ?, applied_at = now() WHERE batch_id = ?",
            [sum(c.applied for c in by_entity.values()), batch_id],
        )
    return results


def replay(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rebuild every golden table from the whole validated log and swap it in.

    Returns, per entity, how many rows differed between the rebuilt and the incremental state
    (zero when incremental application was right, as it must be).
    """
    differences: dict[str, int] = {}
    for entity in ENTITIES.values():
        rebuilt = f"replay_{entity.golden_table}"
        con.execute(f"DROP TABLE IF EXISTS {quote(rebuilt)}")
        con.execute(golden_table_ddl(entity, table=rebuilt, temporary=True))
        _apply(con, entity, rebuilt, "TRUE")
        differences[entity.name] = count_differences(con, entity, entity.golden_table, rebuilt)
        con.execute(f"DELETE FROM {quote(entity.golden_table)}")
        con.execute(f"INSERT INTO {quote(entity.golden_table)} SELECT * FROM {quote(rebuilt)}")
        con.execute(f"DROP TABLE {quote(rebuilt)}")
    return differences


def count_differences(con: duckdb.DuckDBPyConnection, entity: Entity, left: str, right: str) -> int:
    """Keys whose rows are not identical in both tables (present in one only, or different)."""
    key = quote(entity.key)
    return scalar(
        con,
        f"SELECT count(DISTINCT {key}) FROM ("
        f"(SELECT * FROM {quote(left)} EXCEPT SELECT * FROM {quote(right)}) UNION ALL "
        f"(SELECT * FROM {quote(right)} EXCEPT SELECT * FROM {quote(left)}))",
    )
