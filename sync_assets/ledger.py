"""The batch ledger: every landed event is applied, a duplicate, or a dead letter, and it adds up.

`landed = applied + duplicates + dead_lettered` must hold for every batch that has been applied;
`applied` counts events that a newer write superseded and ownership conflicts too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import duckdb

from sync_assets.catalog.entities import ENTITIES
from sync_assets.warehouse import one, quote, scalar


@dataclass(frozen=True)
class Summary:
    batches: int
    landed: int
    applied: int
    duplicates: int
    dead_lettered: int
    pending: int
    """Events in batches ingested but not yet applied (a run in progress, or one that failed)."""
    golden: dict[str, int] = field(default_factory=dict)
    """Live golden records per entity."""
    deleted: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    unbalanced_batches: tuple[str, ...] = ()

    @property
    def balanced(self) -> bool:
        return not self.unbalanced_batches

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["unbalanced_batches"] = list(self.unbalanced_batches)
        return data


def unbalanced_batches(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, int, int, int]]:
    """Applied batches whose counts do not add up: (batch, landed, applied, duplicates, dead)."""
    return con.execute(
        """
        SELECT batch_id, landed, applied, duplicates, dead_lettered FROM batches
        WHERE applied_at IS NOT NULL AND landed <> applied + duplicates + dead_lettered
        ORDER BY batch_id
        """
    ).fetchall()


def pending_batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Batches ingested but not yet applied: a run in progress, or one that stopped on the way.

    While any is pending the golden records are incomplete, so nothing may be corrected from them.
    """
    rows = con.execute(
        "SELECT batch_id FROM batches WHERE applied_at IS NULL ORDER BY batch_id"
    ).fetchall()
    return [row[0] for row in rows]


def golden_states(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """Golden records per entity: live, deleted, and not yet created (only non-owners wrote)."""
    states = {}
    for entity in ENTITIES.values():
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
               coalesce(sum(applied) FILTER (WHERE applied_at IS NOT NULL), 0),
               coalesce(sum(duplicates), 0), coalesce(sum(dead_lettered), 0),
               coalesce(sum(landed - duplicates - coalesce(dead_lettered, 0))
                        FILTER (WHERE applied_at IS NULL), 0)
        FROM batches
        """,
    )
    states = golden_states(con)
    conflicts = scalar(con, "SELECT count(DISTINCT event_id) FROM ownership_conflicts")
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
    )
