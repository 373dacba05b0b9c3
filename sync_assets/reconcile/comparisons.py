"""The record of every comparison a reconciliation run made, found or not found anything.

`discrepancies` only holds what differs; this table also says what was compared, when, and how
many rows, so a check can tell "in sync" from "not checked". `reconcile_skipped` says which
(system, entity) a run could not compare at all (its snapshot failed), and why: their checks are
"not checked", never "in sync".
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from sync_assets.connectors.mappings import Mapping
from sync_assets.project import current
from sync_assets.reconcile.diff import DiffResult, comparison_filter
from sync_assets.reconcile.snapshot import Skipped, snapshot_table
from sync_assets.security.redact import redact_text
from sync_assets.warehouse import quote, scalar
from sync_assets.warehouse.tables import KINDS


@dataclass(frozen=True)
class Comparison:
    check_name: str
    entity: str
    system: str
    other_system: str | None
    rows_compared: int
    counts: dict[str, int]

    @property
    def discrepancies(self) -> int:
        return sum(self.counts.values())


def check_name(entity_name: str, system: str, other_system: str | None = None) -> str:
    """The name of the check judging a comparison; a pair is named in alphabetical order."""
    if other_system is None:
        return f"{system}_{entity_name}_in_sync"
    first, second = sorted((system, other_system))
    return f"{first}_vs_{second}_{entity_name}_in_sync"


def rows_in(con: duckdb.DuckDBPyConnection, *mappings: Mapping) -> int:
    return max(
        int(scalar(con, f"SELECT count(*) FROM {quote(snapshot_table(m))}")) for m in mappings
    )


def record(
    con: duckdb.DuckDBPyConnection, run_id: str, result: DiffResult, rows_compared: int
) -> None:
    con.execute(
        f"INSERT OR REPLACE INTO reconcile_comparisons VALUES (?, now(), ?, ?, ?, ?, ?, "
        f"{', '.join('?' for _ in KINDS)})",
        [
            run_id,
            check_name(result.entity, result.system, result.other_system),
            result.entity,
            result.system,
            result.other_system,
            rows_compared,
            *(result.counts.get(kind, 0) for kind in KINDS),
        ],
    )


def record_skipped(con: duckdb.DuckDBPyConnection, run_id: str, found: list[Skipped]) -> None:
    """Record the (system, entity) this run could not compare, replacing a retry's."""
    con.execute("DELETE FROM reconcile_skipped WHERE run_id = ?", [run_id])
    for s in found:
        con.execute(
            "INSERT INTO reconcile_skipped VALUES (?, now(), ?, ?, ?)",
            [run_id, s.system, s.entity, redact_text(s.reason)],
        )


def skipped(con: duckdb.DuckDBPyConnection, run_id: str) -> list[Skipped]:
    """What a run could not compare, and why."""
    if not _recorded(con, "reconcile_skipped"):
        return []
    rows = con.execute(
        "SELECT system, entity, reason FROM reconcile_skipped WHERE run_id = ? ORDER BY ALL",
        [run_id],
    ).fetchall()
    return [Skipped(*row) for row in rows]


def not_checked(found: list[Skipped]) -> dict[str, str]:
    """The checks a run could not judge, each with why: a skipped snapshot's own check against
    the golden records, and those of every pair it is in."""
    checks: dict[str, str] = {}
    for s in found:
        checks[check_name(s.entity, s.system)] = s.reason
        for left, right in current().comparable_pairs(s.entity):
            if s.system in (left.system, right.system):
                checks.setdefault(check_name(s.entity, left.system, right.system), s.reason)
    return checks


def _recorded(con: duckdb.DuckDBPyConnection, table: str = "reconcile_comparisons") -> bool:
    """Whether the table was ever written (readers may hold a read-only connection)."""
    return bool(scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]))


def latest_run(con: duckdb.DuckDBPyConnection) -> str | None:
    """The latest reconciliation run, including one that could compare nothing (every snapshot
    failed): an older run's findings must not be taken for the latest's."""
    made = [
        f"SELECT run_id, {at} AS made_at FROM {table}"
        for table, at in (
            ("reconcile_comparisons", "compared_at"),
            ("reconcile_skipped", "skipped_at"),
        )
        if _recorded(con, table)
    ]
    if not made:
        return None
    row = con.execute(" UNION ALL ".join(made) + " ORDER BY made_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def comparisons(con: duckdb.DuckDBPyConnection, run_id: str) -> list[Comparison]:
    if not _recorded(con):
        return []
    rows = con.execute(
        f"SELECT check_name, entity, system, other_system, rows_compared, {', '.join(KINDS)} "
        "FROM reconcile_comparisons WHERE run_id = ? ORDER BY check_name",
        [run_id],
    ).fetchall()
    return [
        Comparison(row[0], row[1], row[2], row[3], row[4], dict(zip(KINDS, row[5:], strict=True)))
        for row in rows
    ]


def found(
    con: duckdb.DuckDBPyConnection, run_id: str, comparison: Comparison, limit: int | None = None
) -> list[dict[str, object]]:
    """The discrepancies behind one comparison of a run, full values included, each with its
    views of the other systems' values."""
    where, params = comparison_filter(
        run_id, comparison.entity, comparison.system, comparison.other_system
    )
    sql = (
        "SELECT kind, resolution, system, other_system, entity, entity_key, attribute, expected, "
        f"actual, views FROM discrepancies WHERE {where} ORDER BY kind, entity_key, attribute"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    result = con.execute(sql, params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
