"""The batch ledger: where every landed batch is on its way, and proof that nothing was lost.

Each batch is a small state machine, kept in the `batches` table:

    landed ──▶ raw ──▶ validated ──▶ applied
    (a run took its file)  (its lines are in raw_events)  (validated events, dead letters,
                                                           duplicates)  (golden records)

Every step moves a batch forward in the same transaction as its work, so a crash anywhere leaves
each batch at the last state it committed, and the next run of any ingest step takes it from
there (`unfinished`). A step that fails for one batch records why on that batch (`failures`,
`failed_step`, `last_error`) and goes on with the others; the batch stays where it was and is tried
again by the next run.

`landed = applied + duplicates + dead_lettered` must hold for every applied batch; `applied`
counts events that a newer write superseded and ownership conflicts too. Events of batches not yet
applied are `pending`: once a run is over, pending means something stopped, and the counts do not
add up until it is resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Generic, TypeVar

import duckdb

from sync_assets import telemetry
from sync_assets.ingest.landing import Batch
from sync_assets.project import current
from sync_assets.security.redact import redact_text
from sync_assets.warehouse import one, quote, scalar, transaction

STATES = ("landed", "raw", "validated", "applied")
NEXT_STEP = {"landed": "raw ingest", "raw": "validation", "validated": "apply"}
"""What a batch in each unfinished state waits for."""

ERROR_TEXT_LIMIT = 2000

T = TypeVar("T")


# -- the state machine ----------------------------------------------------------------------------


def mark_landed(con: duckdb.DuckDBPyConnection, batches: Iterable[Batch]) -> None:
    """Record batches a run has taken; a batch already known keeps its state."""
    for batch in batches:
        con.execute(
            """INSERT INTO batches (batch_id, system, file_name, state, landed_at)
               VALUES (?, ?, ?, 'landed', now()) ON CONFLICT DO NOTHING""",
            [batch.batch_id, batch.system, batch.file_name],
        )


def mark_raw(con: duckdb.DuckDBPyConnection, batch: Batch, landed: int) -> None:
    con.execute(
        """INSERT INTO batches (batch_id, system, file_name, state, landed, landed_at, ingested_at)
           VALUES ($id, $system, $file, 'raw', $landed, now(), now())
           ON CONFLICT (batch_id) DO UPDATE SET state = 'raw', landed = $landed,
               ingested_at = now(), failures = 0, failed_step = NULL, last_error = NULL,
               failed_at = NULL""",
        {"id": batch.batch_id, "system": batch.system, "file": batch.file_name, "landed": landed},
    )


def mark_validated(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    *,
    validated: int,
    duplicates: int,
    dead_lettered: int,
) -> None:
    con.execute(
        """UPDATE batches SET state = 'validated', validated = ?, duplicates = ?,
               dead_lettered = ?, validated_at = now(), failures = 0, failed_step = NULL,
               last_error = NULL, failed_at = NULL
           WHERE batch_id = ?""",
        [validated, duplicates, dead_lettered, batch_id],
    )


def mark_applied(con: duckdb.DuckDBPyConnection, batch_id: str, applied: int) -> None:
    con.execute(
        """UPDATE batches SET state = 'applied', applied = ?, applied_at = now(), failures = 0,
               failed_step = NULL, last_error = NULL, failed_at = NULL
           WHERE batch_id = ?""",
        [applied, batch_id],
    )


def in_state(con: duckdb.DuckDBPyConnection, state: str) -> list[str]:
    """Batches in one state, in the order they landed."""
    rows = con.execute(
        "SELECT batch_id FROM batches WHERE state = ? ORDER BY landed_at, batch_id", [state]
    ).fetchall()
    return [row[0] for row in rows]


def state_of(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> dict[str, str]:
    rows = con.execute(
        "SELECT batch_id, state FROM batches WHERE batch_id IN (SELECT unnest(?))", [batch_ids]
    ).fetchall()
    return dict(rows)


def forget_landed(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """Drop a batch that never got past `landed` (its file is gone): it holds no event."""
    con.execute("DELETE FROM batches WHERE batch_id = ? AND state = 'landed'", [batch_id])


@dataclass(frozen=True)
class Unfinished:
    batch_id: str
    state: str
    landed_at: object
    failures: int
    failed_step: str | None
    last_error: str | None

    @property
    def waits_for(self) -> str:
        return NEXT_STEP[self.state]

    @property
    def error_kind(self) -> str | None:
        return error_kind(self.last_error) if self.last_error else None

    def describe(self, *, detail: bool = False) -> str:
        """One line; the error message only with `detail` (for the operator's terminal, not for
        Dagster's storage or logs, where PII must not go)."""
        text = f"{self.batch_id}: {self.state}, waiting for {self.waits_for}"
        if self.failures:
            error = self.last_error if detail else self.error_kind
            text += f"; {self.failures} failed attempt(s) at {self.failed_step}, last: {error}"
        return text


def unfinished(con: duckdb.DuckDBPyConnection) -> list[Unfinished]:
    """Batches not yet applied: in progress, or stopped on the way (a crash, a failed step)."""
    rows = con.execute(
        """SELECT batch_id, state, landed_at, failures, failed_step, last_error FROM batches
           WHERE state <> 'applied' ORDER BY landed_at, batch_id"""
    ).fetchall()
    return [Unfinished(*row) for row in rows]


def pending_batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Batches ingested but not yet applied: a run in progress, or one that stopped on the way.

    While any is pending the golden records are incomplete, so nothing may be corrected from them.
    """
    return [batch.batch_id for batch in unfinished(con)]


@dataclass
class StepResult(Generic[T]):
    done: dict[str, T] = field(default_factory=dict)
    """Batch id -> what the step's work returned for it."""
    failed: dict[str, str] = field(default_factory=dict)
    """Batch id -> why its step failed (recorded on the batch)."""


def run_step(
    con: duckdb.DuckDBPyConnection,
    step: str,
    batch_ids: list[str],
    work: Callable[[duckdb.DuckDBPyConnection, list[str]], dict[str, T]],
) -> StepResult[T]:
    """Do one step's `work` for the batches: all in one transaction (a commit costs a sync to
    disk), and if that fails, one transaction per batch, so one bad batch does not hold back the
    others. A batch whose work fails stays in its state, with the failure recorded on it."""
    result: StepResult[T] = StepResult()
    if not batch_ids:
        return result
    with telemetry.span(
        f"syncfabric.{step.replace(' ', '_')}", {"syncfabric.batches": batch_ids}
    ) as span:
        _run_step(con, step, batch_ids, work, result)
        span.set_attributes(
            {"syncfabric.done": len(result.done), "syncfabric.failed": len(result.failed)}
        )
    return result


def _run_step(
    con: duckdb.DuckDBPyConnection,
    step: str,
    batch_ids: list[str],
    work: Callable[[duckdb.DuckDBPyConnection, list[str]], dict[str, T]],
    result: StepResult[T],
) -> StepResult[T]:
    try:
        with transaction(con):
            result.done = work(con, batch_ids)
        return result
    except Exception as error:
        if len(batch_ids) == 1:
            _failed(con, result, step, batch_ids[0], error)
            return result
    for batch_id in batch_ids:
        try:
            with transaction(con):
                result.done.update(work(con, [batch_id]))
        except Exception as error:
            _failed(con, result, step, batch_id, error)
    return result


def _failed(
    con: duckdb.DuckDBPyConnection, result: StepResult, step: str, batch_id: str, error: Exception
) -> None:
    result.failed[batch_id] = describe_error(error)
    with transaction(con):
        record_failure(con, batch_id, step, result.failed[batch_id])


def record_failure(con: duckdb.DuckDBPyConnection, batch_id: str, step: str, error: str) -> None:
    con.execute(
        """UPDATE batches SET failures = failures + 1, failed_step = ?, last_error = ?,
               failed_at = now() WHERE batch_id = ?""",
        [step, error[:ERROR_TEXT_LIMIT], batch_id],
    )


def error_kind(described: str) -> str:
    """A described error's exception type alone, for Dagster's logs and metadata: the message
    may quote an event's values, PII included."""
    return described.split(":", 1)[0]


def describe_error(error: BaseException) -> str:
    """`<exception type>: <first line>`; kept in the warehouse only (it may quote values)."""
    lines = redact_text(str(error)).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


# -- what adds up ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    batches: int
    landed: int
    applied: int
    duplicates: int
    dead_lettered: int
    pending: int
    """Events of batches not yet applied (duplicates and dead letters not yet known count too)."""
    golden: dict[str, int] = field(default_factory=dict)
    """Live golden records per entity."""
    deleted: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    unbalanced_batches: tuple[str, ...] = ()
    unfinished_batches: tuple[str, ...] = ()
    """Batches not yet applied: while any is left, the counts do not add up."""
    failed_batches: tuple[str, ...] = ()
    """Unfinished batches whose last attempt failed."""
    dead_letters_held: int = 0
    """Ingest dead letters neither redriven nor resolved by a later valid copy."""

    @property
    def balanced(self) -> bool:
        """Every event accounted for: applied, a duplicate or a dead letter, nothing pending."""
        return not self.unbalanced_batches and not self.unfinished_batches

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        for name in ("unbalanced_batches", "unfinished_batches", "failed_batches"):
            data[name] = list(data[name])
        data["adds_up"] = self.balanced
        return data


class CountsDoNotAddUp(RuntimeError):
    """Events lost or double-counted: a batch's landed <> applied + duplicates + dead_lettered."""

    def __init__(self, batches: list[tuple[str, int, int, int, int]]) -> None:
        super().__init__(
            "events lost or double-counted: landed <> applied + duplicates + dead_lettered in "
            + "; ".join(
                f"{batch} ({landed} <> {applied} + {duplicates} + {dead})"
                for batch, landed, applied, duplicates, dead in batches
            )
        )


def unbalanced_batches(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, int, int, int]]:
    """Applied batches whose counts do not add up: (batch, landed, applied, duplicates, dead)."""
    return con.execute(
        """
        SELECT batch_id, landed, applied, duplicates, dead_lettered FROM batches
        WHERE state = 'applied' AND landed <> applied + duplicates + dead_lettered
        ORDER BY batch_id
        """
    ).fetchall()


def golden_states(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """Golden records per entity: live, deleted, and not yet created (only non-owners wrote)."""
    states = {}
    for entity in current().entities.values():
        live, deleted, pending = one(
            con,
            f"""SELECT count(*) FILTER (WHERE lifecycle_state = 'live'),
                       count(*) FILTER (WHERE lifecycle_state = 'deleted'),
                       count(*) FILTER (WHERE lifecycle_state IS NULL)
                FROM {quote(entity.golden_table)}""",
        )
        states[entity.name] = {"live": live, "deleted": deleted, "not_yet_created": pending}
    return states


def summarize(con: duckdb.DuckDBPyConnection) -> Summary:
    (batches, landed, applied, duplicates, dead, pending) = one(
        con,
        """
        SELECT count(*), coalesce(sum(landed), 0),
               coalesce(sum(applied) FILTER (WHERE state = 'applied'), 0),
               coalesce(sum(duplicates), 0), coalesce(sum(dead_lettered), 0),
               coalesce(sum(coalesce(landed, 0) - coalesce(duplicates, 0)
                            - coalesce(dead_lettered, 0)) FILTER (WHERE state <> 'applied'), 0)
        FROM batches
        """,
    )
    states = golden_states(con)
    conflicts = scalar(con, "SELECT count(DISTINCT (source, event_id)) FROM ownership_conflicts")
    stopped = unfinished(con)
    return Summary(
        batches=batches,
        landed=landed,
        applied=applied,
        duplicates=duplicates,
        dead_lettered=dead,
        pending=pending,
        golden={entity: counts["live"] for entity, counts in states.items()},
        deleted={entity: counts["deleted"] for entity, counts in states.items()},
        conflicts=conflicts,
        unbalanced_batches=tuple(row[0] for row in unbalanced_batches(con)),
        unfinished_batches=tuple(b.batch_id for b in stopped),
        failed_batches=tuple(b.batch_id for b in stopped if b.failures),
        dead_letters_held=scalar(con, "SELECT count(*) FROM dead_letters WHERE resolution IS NULL"),
    )
