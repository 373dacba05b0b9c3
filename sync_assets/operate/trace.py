"""Follow one change through every hop, from the warehouse's own bookkeeping (`syncctl trace`).

A change keeps its correlation id from the event that started it (the envelope's
`correlationid`, the event's own id when it starts a change) through every hop:

| hop             | where it is recorded                                   | time               |
| --------------- | ------------------------------------------------------ | ------------------ |
| published       | `validated_<entity>_events.event_time` (the producer's) | the event's `time` |
| landed          | `batches.landed_at` of the event's batch               | the sensor saw it  |
| ingested        | `batches.ingested_at` (raw events, deduplicated)        |                    |
| duplicate       | `duplicate_events` (a resend of an accepted event)      | recorded_at        |
| dead-lettered   | `dead_letters` (by the envelope's correlation id)       | dead_lettered_at   |
| validated       | `batches.validated_at`                                  |                    |
| applied         | `batches.applied_at`, with each attribute current, superseded by a later event, or refused by ownership (`ownership_conflicts`) | |
| discrepancy     | `discrepancies` of the run a correction names           | detected_at        |
| correction      | `corrections` carrying the correlation id               | emitted_at         |
| delivery        | `delivery_attempts`, one per attempt                    | started_at         |
| delivered       | `corrections.finished_at` and its status; or `delivery_dead_letters` | |
| confirmed       | the next reconciliation of the target: no discrepancy left for the key | compared_at |

Only names, ids, counts and times are shown: never an attribute's value (values may be PII).
The functions read the warehouse and return plain data; `cli.py` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from sync_assets.errors import SyncfabricError
from sync_assets.project.model import Project
from sync_assets.warehouse.sql import quote


@dataclass(frozen=True)
class Hop:
    """One step of a change: what happened, when, and the ids to look it up by."""

    at: datetime
    hop: str
    detail: str
    ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Timeline:
    """A change's hops in time order; `since_previous` gives each hop's duration."""

    subject: str
    hops: list[Hop]

    def durations(self) -> list[float | None]:
        """Seconds from the previous hop to each hop (None for the first)."""
        out: list[float | None] = [None]
        for before, after in zip(self.hops, self.hops[1:], strict=False):
            out.append((after.at - before.at).total_seconds())
        return out

    @property
    def total_seconds(self) -> float:
        return (self.hops[-1].at - self.hops[0].at).total_seconds() if self.hops else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "total_seconds": self.total_seconds,
            "hops": [
                asdict(hop) | {"at": hop.at.isoformat(), "since_previous_seconds": seconds}
                for hop, seconds in zip(self.hops, self.durations(), strict=True)
            ],
        }


def trace_change(con: duckdb.DuckDBPyConnection, project: Project, correlation_id: str) -> Timeline:
    """Every hop of the change `correlation_id`, in time order; a SyncfabricError when the
    warehouse holds nothing of it."""
    hops: list[Hop] = []
    for entity in project.entities.values():
        events = con.execute(
            f"""SELECT source, event_id, batch_id, line_no, action, entity_key, event_time,
                       version, set_attributes
                FROM {quote(entity.events_table)} WHERE correlation_id = ?""",
            [correlation_id],
        ).fetchall()
        for event in events:
            hops += _event_hops(con, project, entity.name, event)
    hops += _dead_letter_hops(con, "correlation_id = ?", [correlation_id])
    hops += _correction_hops(con, "correlation_id = ?", [correlation_id])
    if not hops:
        raise SyncfabricError(
            f"no event, dead letter or correction carries the correlation id {correlation_id!r}; "
            "fix: take one from `syncctl trace --record <entity>:<key>`, a dead letter "
            "(`syncctl dead-letters --ingest --json`) or a correction (`syncctl dead-letters "
            "--json`); an event's correlation id is its own id when it started the change"
        )
    return Timeline(subject=f"correlation id {correlation_id}", hops=_ordered(hops))


@dataclass(frozen=True)
class AttributeSetter:
    """Who set one attribute of a golden record: the event whose value is current."""

    attribute: str
    origin: str | None
    event_id: str | None
    event_time: str | None
    correlation_id: str | None


@dataclass(frozen=True)
class RecordHistory:
    entity: str
    key: str
    exists: bool
    lifecycle: str | None
    setters: list[AttributeSetter]
    timeline: Timeline

    def as_json(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "key": self.key,
            "exists": self.exists,
            "lifecycle": self.lifecycle,
            "set_by": [asdict(s) for s in self.setters],
            **self.timeline.as_json(),
        }


def trace_record(con: duckdb.DuckDBPyConnection, project: Project, record: str) -> RecordHistory:
    """Every change of one record (`<entity>:<key>`) and which system set each attribute."""
    entity_name, _, key = record.partition(":")
    if entity_name not in project.entities or not key:
        raise SyncfabricError(
            f"--record {record!r} is not <entity>:<key> with an entity of the catalog "
            f"({', '.join(project.entities)}); fix: e.g. --record "
            f"{next(iter(project.entities))}:<key>"
        )
    entity = project.entity(entity_name)
    hops: list[Hop] = []
    events = con.execute(
        f"""SELECT source, event_id, batch_id, line_no, action, entity_key, event_time, version,
                   set_attributes, correlation_id, origin
            FROM {quote(entity.events_table)} WHERE entity_key = ?""",
        [key],
    ).fetchall()
    by_version = {event[7]: event for event in events}
    for event in events:
        hops += [
            Hop(h.at, h.hop, h.detail, h.ids | {"correlation_id": event[9]})
            for h in _event_hops(con, project, entity.name, event[:9])
        ]
    where = "entity = ? AND entity_key = ?"
    hops += _correction_hops(con, where, [entity.name, key])
    hops += _discrepancy_hops(con, where, [entity.name, key], corrected=hops)
    columns = [f"{quote(a.name + '__v')}" for a in entity.attributes]
    golden = con.execute(
        f"SELECT lifecycle_state, lifecycle__v, {', '.join(columns)} "
        f"FROM {quote(entity.golden_table)} WHERE {quote(entity.key)} = ?",
        [key],
    ).fetchone()
    if not hops and golden is None:
        raise SyncfabricError(
            f"the warehouse holds no event, golden record or correction of {entity.name} {key!r}; "
            f"fix: check the key as the catalog's key `{entity.key}` gives it"
        )
    setters = []
    if golden is not None:
        names = ["lifecycle", *(a.name for a in entity.attributes)]
        for name, version in zip(names, golden[1:], strict=True):
            setter = by_version.get(version)
            setters.append(
                AttributeSetter(
                    attribute=name,
                    origin=setter[10] if setter else None,
                    event_id=setter[1] if setter else None,
                    event_time=setter[6].isoformat() if setter else None,
                    correlation_id=setter[9] if setter else None,
                )
            )
    return RecordHistory(
        entity=entity.name,
        key=key,
        exists=golden is not None,
        lifecycle=golden[0] if golden else None,
        setters=setters,
        timeline=Timeline(subject=f"{entity.name} {key}", hops=_ordered(hops)),
    )


def _event_hops(
    con: duckdb.DuckDBPyConnection, project: Project, entity_name: str, event: tuple
) -> list[Hop]:
    source, event_id, batch_id, line_no, action, key, event_time, _version, set_attributes = event
    entity = project.entity(entity_name)
    ids = {"event_id": event_id, "source": source, "batch": f"{batch_id}:{line_no}"}
    hops = [Hop(event_time, "published", f"{source} {action} {entity_name} {key}", ids)]
    batch = con.execute(
        "SELECT landed_at, ingested_at, validated_at, applied_at FROM batches WHERE batch_id = ?",
        [batch_id],
    ).fetchone()
    if batch is None:
        return hops
    landed_at, ingested_at, validated_at, applied_at = batch
    hops.append(Hop(landed_at, "landed", f"in batch {batch_id}", ids))
    if ingested_at:
        hops.append(
            Hop(ingested_at, "ingested", "raw event kept (deduplicated by source and id)", ids)
        )
    for recorded_at, repeat_batch, repeat_line in con.execute(
        "SELECT recorded_at, batch_id, line_no FROM duplicate_events "
        "WHERE source = ? AND event_id = ? ORDER BY recorded_at",
        [source, event_id],
    ).fetchall():
        hops.append(
            Hop(
                recorded_at,
                "duplicate",
                f"sent again as {repeat_batch}:{repeat_line}: recorded, not applied twice",
                ids,
            )
        )
    if validated_at:
        hops.append(Hop(validated_at, "validated", "accepted by its contract", ids))
    if applied_at:
        hops.append(
            Hop(applied_at, "applied", _applied_detail(con, entity, event, set_attributes), ids)
        )
    return hops


def _applied_detail(
    con: duckdb.DuckDBPyConnection, entity: Any, event: tuple, set_attributes: list[str]
) -> str:
    """Which of the event's attributes are the golden record's now, which a later event
    superseded, and which its origin does not own (refused)."""
    source, event_id, *_rest = event
    key, version = event[5], event[7]
    refused = {
        row[0]: row[1]
        for row in con.execute(
            "SELECT attribute, owner FROM ownership_conflicts WHERE source = ? AND event_id = ?",
            [source, event_id],
        ).fetchall()
    }
    known = [a for a in set_attributes if a in entity.attribute_names]
    current: list[str] = []
    if known:
        row = con.execute(
            f"SELECT {', '.join(quote(a + '__v') for a in known)} "
            f"FROM {quote(entity.golden_table)} WHERE {quote(entity.key)} = ?",
            [key],
        ).fetchone()
        current = [a for a, v in zip(known, row or (), strict=False) if v == version]
    superseded = [a for a in known if a not in current and a not in refused]
    parts = []
    if current:
        parts.append("current: " + ", ".join(current))
    if superseded:
        parts.append("superseded by a later event: " + ", ".join(superseded))
    if refused:
        parts.append(
            "ownership conflict (not its owner's): "
            + ", ".join(f"{a} (owner {owner})" for a, owner in sorted(refused.items()))
        )
    return "; ".join(parts) or "no attribute set (a lifecycle change)"


def _dead_letter_hops(
    con: duckdb.DuckDBPyConnection, where: str, params: list[object]
) -> list[Hop]:
    if not _has_column(con, "dead_letters", "correlation_id"):
        return []  # a warehouse from before dead letters kept it; a write connection adds it
    hops = []
    for (
        batch_id,
        line_no,
        event_id,
        rule,
        reason,
        at,
        resolution,
        resolved_by,
        landed,
        ingested,
    ) in con.execute(
        "SELECT d.batch_id, d.line_no, d.event_id, d.rule, d.reason, d.dead_lettered_at, "
        "d.resolution, d.resolved_by, b.landed_at, b.ingested_at "
        f"FROM dead_letters d LEFT JOIN batches b USING (batch_id) WHERE {where}",
        params,
    ).fetchall():
        ids = {"event_id": event_id or "", "batch": f"{batch_id}:{line_no}"}
        if landed is not None:
            hops.append(Hop(landed, "landed", f"in batch {batch_id}", ids))
        if ingested is not None:
            hops.append(Hop(ingested, "ingested", "raw event kept", ids))
        state = f"; resolved: {resolution} by {resolved_by}" if resolution else "; held"
        hops.append(Hop(at, "dead-lettered", f"rule {rule}: {reason}{state}", ids))
    return hops


def _correction_hops(con: duckdb.DuckDBPyConnection, where: str, params: list[object]) -> list[Hop]:
    hops = []
    corrections = con.execute(
        f"""SELECT correction_id, reconcile_run_id, emitted_at, target, entity, entity_key, action,
                   json_keys(attributes), status, finished_at, reason, kind
            FROM corrections WHERE {where} ORDER BY emitted_at""",
        params,
    ).fetchall()
    for (
        cid,
        run_id,
        emitted_at,
        target,
        entity,
        key,
        action,
        names,
        status,
        finished,
        reason,
        kind,
    ) in corrections:
        ids = {"correction_id": cid, "reconcile_run": run_id, "system": target}
        for detected_at, kinds in con.execute(
            "SELECT min(detected_at), string_agg(DISTINCT kind || coalesce(' of ' || attribute, ''), "
            "', ') FROM discrepancies WHERE run_id = ? AND system = ? AND entity = ? "
            "AND entity_key = ? HAVING count(*) > 0",
            [run_id, target, entity, key],
        ).fetchall():
            hops.append(Hop(detected_at, "discrepancy", f"{target} {entity} {key}: {kinds}", ids))
        what = f"{kind} to {target}: {action}" + (f" {', '.join(sorted(names))}" if names else "")
        hops.append(Hop(emitted_at, "correction", what, ids))
        for attempt, started_at, latency_ms, outcome, error in con.execute(
            "SELECT attempt, started_at, latency_ms, outcome, error FROM delivery_attempts "
            "WHERE correction_id = ? ORDER BY attempt",
            [cid],
        ).fetchall():
            said = f": {error}" if error else ""
            hops.append(
                Hop(
                    started_at,
                    "delivery",
                    f"attempt {attempt} to {target}: {outcome} in {latency_ms:.0f} ms{said}",
                    ids,
                )
            )
        dead = con.execute(
            "SELECT dead_lettered_at, reason, attempts FROM delivery_dead_letters "
            "WHERE correction_id = ?",
            [cid],
        ).fetchone()
        if dead:
            hops.append(
                Hop(dead[0], "dead-lettered", f"after {dead[2]} attempt(s): {dead[1]}", ids)
            )
        if finished is not None:
            hops.append(
                Hop(
                    finished,
                    "delivered" if status == "delivered" else "closed",
                    f"{status}" + (f": {reason}" if reason else ""),
                    ids,
                )
            )
            hops += _confirmation(con, target, entity, key, finished, ids)
    return hops


def _confirmation(
    con: duckdb.DuckDBPyConnection,
    target: str,
    entity: str,
    key: str,
    after: datetime,
    ids: dict[str, str],
) -> list[Hop]:
    """The first reconciliation of the target after the correction closed: whether the record
    still differs there."""
    checked = con.execute(
        "SELECT run_id, min(compared_at) FROM reconcile_comparisons "
        "WHERE system = ? AND entity = ? AND compared_at > ? "
        "GROUP BY run_id ORDER BY 2 LIMIT 1",
        [target, entity, after],
    ).fetchone()
    if checked is None:
        return []
    run_id, compared_at = checked
    left = con.execute(
        "SELECT count(*) FROM discrepancies WHERE run_id = ? AND system = ? AND entity = ? "
        "AND entity_key = ?",
        [run_id, target, entity, key],
    ).fetchone()[0]  # type: ignore[index]
    verdict = "confirmed: in sync" if left == 0 else f"still differs ({left} discrepancies)"
    return [
        Hop(
            compared_at,
            "confirmed" if left == 0 else "not confirmed",
            f"next reconciliation of {target}: {verdict}",
            ids | {"reconcile_run": run_id},
        )
    ]


def _discrepancy_hops(
    con: duckdb.DuckDBPyConnection, where: str, params: list[object], corrected: list[Hop]
) -> list[Hop]:
    """Discrepancies no correction traced already (found, but not corrected: an owner's own
    change, a record withheld, an orphan)."""
    seen = {(h.ids["reconcile_run"], h.ids["system"]) for h in corrected if h.hop == "discrepancy"}
    hops = []
    for run_id, system, detected_at, kinds in con.execute(
        f"""SELECT run_id, system, min(detected_at),
                   string_agg(DISTINCT kind || coalesce(' of ' || attribute, '') || ' (' || resolution || ')', ', ')
            FROM discrepancies WHERE {where} GROUP BY run_id, system""",
        params,
    ).fetchall():
        if (run_id, system) in seen:
            continue
        ids = {"reconcile_run": run_id, "system": system}
        hops.append(Hop(detected_at, "discrepancy", f"{system}: {kinds}", ids))
    return hops


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
            [table, column],
        ).fetchone()[0]  # type: ignore[index]
    )


_ORDER = {
    name: rank
    for rank, name in enumerate(
        [
            "published",
            "landed",
            "ingested",
            "duplicate",
            "dead-lettered",
            "validated",
            "applied",
            "discrepancy",
            "correction",
            "delivery",
            "delivered",
            "closed",
            "confirmed",
            "not confirmed",
        ]
    )
}


def _ordered(hops: list[Hop]) -> list[Hop]:
    """Time order; hops recorded in the same instant (one batch's steps) in flow order."""
    return sorted(hops, key=lambda h: (h.at, _ORDER.get(h.hop, 99)))
