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

from dataclasses import dataclass

import duckdb

from sync_assets import ledger
from sync_assets.catalog.entities import Entity
from sync_assets.crashpoints import crash_point
from sync_assets.project import current
from sync_assets.security.sql import pii_of
from sync_assets.warehouse import golden_table_ddl, quote, scalar, sql_list, sql_literal
from sync_assets.warehouse.tables import opened_value

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
    return f"(origin = {sql_literal(owner)} AND list_contains(set_attributes, {sql_literal(attribute)}))"


def _lifecycle(entity: Entity) -> str:
    actions = sql_list(list(LIFECYCLE_ACTIONS))
    return f"(origin = {sql_literal(entity.lifecycle_owner)} AND action IN ({actions}))"


def _fold_sql(entity: Entity) -> str:
    """Fold the events in `apply_events` into one row per key, laid out like the golden table.

    Each register is one `arg_max_null` over a {value, version} struct (one aggregate per
    register instead of two: measured 1.9 times faster on a million events). A PII value is
    folded sealed, as the event log stores it, and only each register's winner is opened: one
    decryption per record instead of one per event (the fold took half the time on 200k events).
    """
    registers = {
        attribute.name: (quote(attribute.name), _owned(entity, attribute.name))
        for attribute in entity.attributes
    }
    registers["lifecycle"] = (
        "CASE WHEN action = 'deleted' THEN 'deleted' ELSE 'live' END",
        _lifecycle(entity),
    )
    folds = [
        f"arg_max_null({{'value': {value}, 'v': version}}, CASE WHEN {written} THEN version END) "
        f"AS {quote('reg_' + name)}"
        for name, (value, written) in registers.items()
    ]
    folds.append(
        "arg_max({'v': version, 'event_id': event_id, 'correlation_id': correlation_id}, version)"
        " AS reg_last"
    )
    columns = [f"entity_key AS {quote(entity.key)}"]
    for attribute in entity.attributes:
        register = quote("reg_" + attribute.name)
        value = f"{register}.value"
        if attribute.pii:
            value = opened_value(entity, attribute, value)
        columns.append(f"{value} AS {quote(attribute.name)}")
        columns.append(f"{register}.v AS {quote(attribute.name + '__v')}")
    columns += [
        "reg_lifecycle.value AS lifecycle_state",
        "reg_lifecycle.v AS lifecycle__v",
        "reg_last.v AS last_version",
        "reg_last.event_id AS last_event_id",
        "reg_last.correlation_id AS last_correlation_id",
    ]
    return f"""
CREATE OR REPLACE TEMP TABLE apply_folded AS
SELECT {", ".join(columns)}
FROM (SELECT entity_key, {", ".join(folds)} FROM apply_events GROUP BY entity_key)
"""


def _merge_sql(entity: Entity, target: str) -> list[str]:
    """Merge `apply_folded` into `target`: each register keeps the newer of its two versions."""
    key = quote(entity.key)
    registers = [(quote(a.name), quote(a.name + "__v")) for a in entity.attributes]
    registers.append(("lifecycle_state", "lifecycle__v"))
    updates = []
    for value, version in registers:
        updates.append(
            f"{value} = CASE WHEN {newer(f'f.{version}', f't.{version}')} "
            f"THEN f.{value} ELSE t.{value} END"
        )
        updates.append(f"{version} = greatest(f.{version}, t.{version})")
    for column in ("last_event_id", "last_correlation_id"):
        updates.append(
            f"{column} = CASE WHEN {newer('f.last_version', 't.last_version')} "
            f"THEN f.{column} ELSE t.{column} END"
        )
    updates.append("last_version = greatest(f.last_version, t.last_version)")
    # The UPDATE's source holds only keys already in the target: with new keys in it, DuckDB's
    # UPDATE ... FROM took minutes instead of seconds (172 s against 2 s on 60k keys).
    existing = (
        f"(SELECT * FROM apply_folded SEMI JOIN {quote(target)} AS g "
        f"ON g.{key} = apply_folded.{key})"
    )
    return [
        f"UPDATE {quote(target)} AS t SET {', '.join(updates)} "
        f"FROM {existing} AS f WHERE t.{key} = f.{key}",
        f"INSERT INTO {quote(target)} SELECT f.* FROM apply_folded AS f "
        f"ANTI JOIN {quote(target)} AS t ON t.{key} = f.{key}",
    ]


def _conflicts_sql(entity: Entity) -> str:
    owners = " ".join(
        f"WHEN {sql_literal(a.name)} THEN {sql_literal(a.owner)}" for a in entity.attributes
    )
    actions = sql_list(list(LIFECYCLE_ACTIONS))
    return f"""
INSERT INTO ownership_conflicts
SELECT source, event_id, batch_id, {sql_literal(entity.name)}, entity_key, attribute, origin, owner,
       event_time
FROM (
    SELECT *, CASE attribute {owners} END AS owner
    FROM (SELECT *, unnest(set_attributes) AS attribute FROM apply_events)
    UNION ALL
    SELECT *, {sql_literal(LIFECYCLE)} AS attribute, {sql_literal(entity.lifecycle_owner)} AS owner
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
    con: duckdb.DuckDBPyConnection, entity: Entity, where: str
) -> dict[str, ApplyCounts]:
    """Apply the validated events of `entity` selected by the SQL condition `where`.

    Returns the counts per batch of the events applied.
    """
    return _apply(con, entity, entity.golden_table, where)


def _apply(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    target: str,
    where: str,
) -> dict[str, ApplyCounts]:
    # A view, not a copy: each step below scans only the columns it needs. PII stays sealed in
    # it; the fold opens the values that win (`_fold_sql`).
    pii_of(con)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW apply_events AS "
        f"SELECT * FROM {quote(entity.events_table)} WHERE {where}"
    )
    applied = _per_batch(con, "SELECT batch_id, count(*) FROM apply_events GROUP BY batch_id")
    conflicts: dict[str, int] = {}
    superseded: dict[str, int] = {}
    if applied:
        con.execute(_conflicts_sql(entity))
        conflicts = _per_batch(
            con,
            "SELECT batch_id, count(DISTINCT (source, event_id)) FROM ownership_conflicts "
            "WHERE (source, event_id) IN (SELECT (source, event_id) FROM apply_events) "
            "GROUP BY batch_id",
        )
        con.execute(_fold_sql(entity))
        for statement in _merge_sql(entity, target):
            con.execute(statement)
        con.execute("DROP TABLE apply_folded")
        superseded = _per_batch(con, _superseded_sql(entity, target))
    con.execute("DROP VIEW apply_events")
    return {
        batch_id: ApplyCounts(count, conflicts.get(batch_id, 0), superseded.get(batch_id, 0))
        for batch_id, count in applied.items()
    }


def _per_batch(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, int]:
    return dict(con.execute(sql).fetchall())


def apply_batches(
    con: duckdb.DuckDBPyConnection, batch_ids: list[str]
) -> dict[str, dict[str, ApplyCounts]]:
    """Apply validated batches and move them to `applied`; counts per batch and entity.

    All of them are merged in one pass per entity (the merge is order-insensitive, so this equals
    applying them one by one, and costs one aggregation instead of one per batch). Runs inside
    the caller's transaction: a batch is either fully applied and recorded, or not.
    """
    if not batch_ids:
        return {}
    results: dict[str, dict[str, ApplyCounts]] = {batch_id: {} for batch_id in batch_ids}
    for entity in current().entities.values():
        per_batch = apply_events(con, entity, f"batch_id IN ({sql_list(batch_ids)})")
        for batch_id in batch_ids:
            counts = per_batch.get(batch_id, ApplyCounts(0, 0, 0))
            results[batch_id][entity.name] = counts
            con.execute(
                "INSERT INTO batch_applications VALUES (?, ?, ?, ?, ?, now())",
                [batch_id, entity.name, counts.applied, counts.conflicts, counts.superseded],
            )
    for batch_id, by_entity in results.items():
        ledger.mark_applied(con, batch_id, sum(c.applied for c in by_entity.values()))
    broken = [row for row in ledger.unbalanced_batches(con) if row[0] in results]
    if broken:  # raised inside the transaction: nothing of these batches is applied
        raise ledger.CountsDoNotAddUp(broken)
    crash_point("mid-apply")
    return results


def apply_pending_batches(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, ApplyCounts]]:
    """Apply every validated batch not yet applied (see `apply_batches`)."""
    return apply_batches(con, ledger.in_state(con, "validated"))


def replay(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rebuild every golden table from the whole validated log and swap it in.

    Returns, per entity, how many rows differed between the rebuilt and the incremental state
    (zero when incremental application was right, as it must be).
    """
    differences: dict[str, int] = {}
    for entity in current().entities.values():
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
