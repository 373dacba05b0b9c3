"""The corrections table as an outbox: what is due, what happened, dead letters, redrive and
compensation. Everything here runs inside the caller's DuckDB transaction.

Just before delivery, `close_stale` closes the pending corrections whose golden record changed
since they were emitted (status `stale`, with the versions in `reason`): they were computed from a
golden state that is no more, and the next reconciliation emits what is still needed.

Compensation works per change set: the corrections one reconciliation run emitted for one record
(same run, entity and key), which together make every system agree. When one of them is
dead-lettered, the entity's policy decides:

- `hold`: the others stay applied; the dead letter waits for a redrive, and the delivery run fails
  so someone is alerted (docs/runbooks/delivery.md).
- `compensate`: each applied sibling gets a compensating correction that puts back the row it
  had (a row it created is removed), written only if the destination still holds the version the
  sibling wrote. The dead letter closes as `compensated`; the next reconciliation finds the drift
  again and emits the change set anew, to be tried as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb

from sync_assets.deliver.corrections import (
    FINAL,
    correction_event,
    insert_corrections,
)
from sync_assets.deliver.engine import Delivery, Report, Verdict
from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.project import current
from sync_assets.security.crypto import Sealer
from sync_assets.security.fields import PREVIOUS, open_correction
from sync_assets.security.sql import pii_of
from sync_assets.warehouse import quote, registered

Policy = Literal["hold", "compensate"]


def due(con: duckdb.DuckDBPyConnection, target: str) -> list[Delivery]:
    """The pending corrections for one system, oldest first."""
    rows = con.execute(
        """SELECT correction_id, idempotency_key, entity, entity_key, action, attributes,
                  golden_version, emitted_at, seen, kind,
                  CASE WHEN json_valid(event) THEN json_extract_string(event, '$.traceparent') END
           FROM corrections WHERE status = 'pending' AND target = ?
           ORDER BY emitted_at, correction_id""",
        [target],
    ).fetchall()
    sealer, project = pii_of(con).sealer, current()
    opened = []
    for row in rows:
        values = open_correction(
            sealer, project.entity(row[2]), {"attributes": row[5], "seen": row[8], "kind": row[9]}
        )
        opened.append((*row[:5], values["attributes"], *row[6:8], values["seen"], row[10]))
    return [_delivery(*row) for row in opened]


def _delivery(
    correction_id: str,
    idempotency_key: str,
    entity_name: str,
    entity_key: str,
    action: str,
    attributes: str,
    version: str,
    emitted_at: datetime,
    seen: str | None,
    traceparent: str | None,
) -> Delivery:
    return Delivery(
        correction_id, idempotency_key, entity_name, entity_key, action,
        json.loads(attributes), version, emitted_at, None if seen is None else json.loads(seen),
        traceparent,
    )  # fmt: skip


def close_stale(con: duckdb.DuckDBPyConnection, delivery_run: str) -> dict[str, int]:
    """Close, unsent, the pending corrections whose golden record changed since they were
    emitted (or that carry no view of the target to re-check); how many, by target.

    A correction is the difference between a golden record and a system at one moment. Once the
    golden record moved on (an owner's missed event absorbed, a new change), delivering it could
    write back what the golden record no longer says.
    """
    closed: dict[str, int] = {}
    for catalog in current().entities.values():
        found = con.execute(
            f"""UPDATE corrections c SET status = 'stale', finished_at = now(),
                       delivery_run = $run,
                       reason = CASE WHEN c.seen IS NULL
                           THEN 'emitted without the reconciliation''s view of the target; not sent, the next reconciliation emits it again'
                           ELSE 'the golden record changed since it was emitted (version '
                                || c.golden_version || ' -> ' || coalesce(g.last_version, 'none')
                                || '); not sent, the next reconciliation emits what is still needed'
                       END
                FROM (SELECT c2.correction_id, g2.last_version FROM corrections c2
                      LEFT JOIN {quote(catalog.golden_table)} g2
                        ON g2.{quote(catalog.key)} = c2.entity_key
                      WHERE c2.status = 'pending' AND c2.kind = 'correction'
                        AND c2.entity = $entity) g
                WHERE c.correction_id = g.correction_id
                  AND (c.seen IS NULL OR coalesce(g.last_version, '') <> c.golden_version)
                RETURNING c.target""",
            {"run": delivery_run, "entity": catalog.name},
        ).fetchall()
        for (target,) in found:
            closed[target] = closed.get(target, 0) + 1
    return closed


def record(con: duckdb.DuckDBPyConnection, report: Report, delivery_run: str) -> None:
    """Write a destination's attempts and verdicts; dead letters keep every attempt's error."""
    attempts = report.attempts
    if attempts:
        rows: dict[str, list[Any]] = {
            "correction_id": [a.correction_id for a in attempts],
            "attempt": [a.attempt for a in attempts],
            "destination": [a.destination for a in attempts],
            "delivery_run": [delivery_run] * len(attempts),
            "started_at": [a.started_at for a in attempts],
            "latency_ms": [a.latency_ms for a in attempts],
            "outcome": [a.outcome for a in attempts],
            "error": [a.error for a in attempts],
        }
        with registered(con, "attempts_frame", rows) as frame:
            con.execute(f"INSERT INTO delivery_attempts BY NAME SELECT * FROM {frame}")
    if report.verdicts:
        _record_verdicts(con, report.verdicts, report.destination, delivery_run)
    _close_undone(con, report)


def _record_verdicts(
    con: duckdb.DuckDBPyConnection, verdicts: list[Verdict], destination: str, delivery_run: str
) -> None:
    sealer = pii_of(con).sealer  # the target's row before: its raw columns, sealed whole
    rows: dict[str, list[Any]] = {
        "correction_id": [v.correction_id for v in verdicts],
        "status": [v.status for v in verdicts],
        "attempts": [v.attempts for v in verdicts],
        "previous": [_sealed(sealer, _json(v.previous)) for v in verdicts],
        "reason": [v.reason for v in verdicts],
        "errors": [v.errors for v in verdicts],
    }
    with registered(con, "verdicts_frame", rows) as frame:
        con.execute(
            f"""UPDATE corrections SET status = v.status, attempts = corrections.attempts + v.attempts,
                       finished_at = now(), previous = coalesce(v.previous, corrections.previous),
                       reason = v.reason, delivery_run = $run
                FROM {frame} v WHERE corrections.correction_id = v.correction_id""",
            {"run": delivery_run},
        )
        con.execute(
            f"""INSERT INTO delivery_dead_letters
                    (correction_id, destination, reason, errors, attempts, dead_lettered_at)
                SELECT correction_id, $destination, reason, errors, attempts, now()
                FROM {frame} WHERE status = 'dead_lettered'
                ON CONFLICT (correction_id) DO UPDATE SET
                    reason = excluded.reason, errors = excluded.errors,
                    attempts = excluded.attempts, dead_lettered_at = excluded.dead_lettered_at,
                    redriven_at = NULL""",
            {"destination": destination},
        )


def _close_undone(con: duckdb.DuckDBPyConnection, report: Report) -> None:
    """A delivered compensation rolls back the correction it undoes."""
    delivered = [v.correction_id for v in report.verdicts if v.status == "delivered"]
    if delivered:
        con.execute(
            """UPDATE corrections SET status = 'rolled_back' WHERE correction_id IN (
                   SELECT compensates FROM corrections
                   WHERE correction_id IN (SELECT unnest($ids)) AND compensates IS NOT NULL)""",
            {"ids": delivered},
        )


def redrive(
    con: duckdb.DuckDBPyConnection,
    correction_ids: Iterable[str] = (),
    destination: str | None = None,
) -> int:
    """Send chosen dead letters again (all of them when none is named); how many.

    Raises `SyncfabricError` (nothing redriven) for an unknown destination, an unknown id, or an
    id that is not dead-lettered.
    """
    ids = list(correction_ids)
    check_redrive(con, ids, destination)
    chosen = con.execute(
        """SELECT correction_id FROM corrections
           WHERE status = 'dead_lettered'
             AND (len($ids) = 0 OR correction_id IN (SELECT unnest($ids)))
             AND ($destination IS NULL OR target = $destination)""",
        {"ids": ids, "destination": destination},
    ).fetchall()
    chosen_ids = [row[0] for row in chosen]
    if chosen_ids:
        con.execute(
            "UPDATE corrections SET status = 'pending' WHERE correction_id IN (SELECT unnest($ids))",
            {"ids": chosen_ids},
        )
        con.execute(
            """UPDATE delivery_dead_letters SET redriven_at = now(), redrives = redrives + 1
               WHERE correction_id IN (SELECT unnest($ids))""",
            {"ids": chosen_ids},
        )
    return len(chosen_ids)


def check_redrive(
    con: duckdb.DuckDBPyConnection, correction_ids: list[str], destination: str | None = None
) -> None:
    """Raise `SyncfabricError` unless every id names a dead letter (of `destination`, if set)
    and `destination` is a known system: a typo must not look like a redrive that found nothing."""
    if destination is not None and destination not in current().system_names:
        raise SyncfabricError(
            f"unknown destination {destination!r}; the systems are: {', '.join(current().system_names)}",
            exit_code=EXIT_USAGE,
        )
    if not correction_ids:
        return
    found = {
        correction_id: (status, target)
        for correction_id, status, target in con.execute(
            "SELECT correction_id, status, target FROM corrections "
            "WHERE correction_id IN (SELECT unnest($ids))",
            {"ids": correction_ids},
        ).fetchall()
    }
    problems = []
    for correction_id in dict.fromkeys(correction_ids):
        if correction_id not in found:
            problems.append(f"{correction_id}: no such correction")
            continue
        status, target = found[correction_id]
        if status != "dead_lettered":
            problems.append(f"{correction_id}: not dead-lettered, its status is {status}")
        elif destination is not None and target != destination:
            problems.append(f"{correction_id}: a dead letter of {target}, not of {destination}")
    if problems:
        raise SyncfabricError(
            "cannot redrive: " + "; ".join(problems) + ". List the dead letters held: "
            "syncctl dead-letters",
            exit_code=EXIT_USAGE,
        )


def compensate(con: duckdb.DuckDBPyConnection, policies: dict[str, Policy]) -> int:
    """Emit compensations for change sets broken by a dead letter, where the entity's policy
    says so; how many were emitted."""
    entities = [name for name, policy in policies.items() if policy == "compensate"]
    if not entities:
        return 0
    broken = """
        SELECT DISTINCT reconcile_run_id, entity, entity_key FROM corrections
        WHERE kind = 'correction' AND status = 'dead_lettered'
          AND entity IN (SELECT unnest($entities))"""
    applied = con.execute(
        f"""SELECT c.* FROM corrections c JOIN ({broken}) b USING (reconcile_run_id, entity, entity_key)
            WHERE c.kind = 'correction' AND c.status = 'delivered' AND c.previous IS NOT NULL""",
        {"entities": entities},
    )
    names = [d[0] for d in applied.description]
    sealer = pii_of(con).sealer
    # A compensation reads only the row a correction replaced: that alone is opened.
    siblings = [
        {**row, "previous": sealer.open(PREVIOUS, row["previous"])}
        for row in (dict(zip(names, values, strict=True)) for values in applied.fetchall())
    ]
    insert_corrections(con, [_compensation(sibling) for sibling in siblings])
    con.execute(
        f"""UPDATE corrections SET status = 'compensated'
            WHERE kind = 'correction' AND status = 'dead_lettered'
              AND (reconcile_run_id, entity, entity_key) IN ({broken})""",
        {"entities": entities},
    )
    return len(siblings)


def _compensation(sibling: dict[str, Any]) -> dict[str, Any]:
    previous = json.loads(sibling["previous"])
    now = datetime.now(UTC)
    undo_id = f"undo-{sibling['correction_id']}"
    attributes = json.dumps(
        {"row": previous.get("row"), "version": previous.get("version")},
        sort_keys=True,
        default=str,
    )
    row = {
        "correction_id": undo_id,
        "idempotency_key": f"undo.{sibling['idempotency_key']}",
        "base_key": f"undo.{sibling['base_key']}",
        "kind": "compensation",
        "reconcile_run_id": sibling["reconcile_run_id"],
        "emitted_at": now,
        "target": sibling["target"],
        "entity": sibling["entity"],
        "entity_key": sibling["entity_key"],
        "action": "compensated",
        "attributes": attributes,
        "golden_version": sibling["golden_version"],
        "causation_id": sibling["correction_id"],
        "correlation_id": sibling["correlation_id"],
        "compensates": sibling["correction_id"],
        "status": "pending",
    }
    return row | {"event": json.dumps(correction_event(row), separators=(",", ":"))}


def open_dead_letters(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Dead letters still waiting, by destination."""
    found = con.execute(
        "SELECT target, count(*) FROM corrections WHERE status = 'dead_lettered' GROUP BY target"
    ).fetchall()
    return dict(found)


def held_dead_letters(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The dead letters still held, oldest first, with their reason (no record values)."""
    result = con.execute(
        """SELECT c.correction_id, d.destination, c.entity, c.entity_key, c.action, d.attempts,
                  d.reason, d.errors, d.dead_lettered_at, d.redrives
           FROM corrections c JOIN delivery_dead_letters d USING (correction_id)
           WHERE c.status = 'dead_lettered' ORDER BY d.dead_lettered_at, c.correction_id"""
    )
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def delivery_counts(con: duckdb.DuckDBPyConnection, delivery_run: str) -> dict[str, int]:
    """What one delivery run did: corrections by verdict, compensations, attempts, retries."""
    by_status = dict(
        con.execute(
            """SELECT c.status, count(DISTINCT c.correction_id) FROM corrections c
               JOIN delivery_attempts a USING (correction_id)
               WHERE a.delivery_run = ? AND c.kind = 'correction' GROUP BY c.status""",
            [delivery_run],
        ).fetchall()
    )
    attempts, retries, compensations = con.execute(
        """SELECT count(*), count(*) FILTER (WHERE a.attempt > 1),
                  count(DISTINCT a.correction_id) FILTER (WHERE c.kind = 'compensation')
           FROM delivery_attempts a JOIN corrections c USING (correction_id)
           WHERE a.delivery_run = ?""",
        [delivery_run],
    ).fetchone() or (0, 0, 0)
    # Stale corrections closed by this run were never attempted: counted by the run that closed them.
    stale = con.execute(
        "SELECT count(*) FROM corrections WHERE delivery_run = ? AND status = 'stale'",
        [delivery_run],
    ).fetchone()
    by_status["stale"] = int(stale[0]) if stale else 0
    counts = {status: int(by_status.get(status, 0)) for status in (*FINAL, "dead_lettered")}
    return counts | {"compensations": compensations, "attempts": attempts, "retries": retries}


def written_by(con: duckdb.DuckDBPyConnection, delivery_run: str) -> set[tuple[str, str]]:
    """The (system, entity) pairs one delivery run tried to write: corrections and compensations
    it attempted, whatever their verdict."""
    found = con.execute(
        """SELECT DISTINCT c.target, c.entity FROM corrections c
           JOIN delivery_attempts a USING (correction_id) WHERE a.delivery_run = ?""",
        [delivery_run],
    ).fetchall()
    return {(target, entity) for target, entity in found}


def emitted_by(con: duckdb.DuckDBPyConnection, reconcile_run: str) -> int:
    found = con.execute(
        "SELECT count(*) FROM corrections WHERE reconcile_run_id = ? AND kind = 'correction'",
        [reconcile_run],
    ).fetchone()
    return int(found[0]) if found else 0


def pending_count(con: duckdb.DuckDBPyConnection) -> int:
    found = con.execute("SELECT count(*) FROM corrections WHERE status = 'pending'").fetchone()
    return int(found[0]) if found else 0


def _sealed(sealer: Sealer, value: str | None) -> str | None:
    return None if value is None else sealer.seal(PREVIOUS, value)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)
