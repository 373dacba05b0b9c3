"""System snapshots: a system's raw rows landed in DuckDB and normalized to the catalog's form.

`snapshot_<system>_<entity>` has the entity's key, `system_key` (the system's own key, '|'-joined),
one column per catalog attribute the system holds, typed like the golden table, and `is_deleted`.
Normalization is DuckDB SQL, the same whichever database the rows came from.

`snapshot_attempts` keeps each snapshot's latest attempt, taken or failed with why: a system that
could not be read keeps its old snapshot table, which must not be diffed as if it were current
(`current_snapshots`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from sync_assets.connectors.mappings import Field, Mapping, raw_columns, raw_name
from sync_assets.connectors.sources import DEFAULT_CHUNK_SIZE, stream_batches
from sync_assets.project import current
from sync_assets.security.redact import redact_text
from sync_assets.warehouse import quote, scalar, sql_literal

SNAPSHOT_PREFIX = "snapshot_"
"""Every snapshot table, and the Dagster asset (and step) that takes it, is named with it."""
LOADING_SUFFIX = "__loading"
"""The table a snapshot is built in, renamed to the snapshot's once complete."""
LOAD_ROWS = 2 * 122_880
"""Rows normalized per INSERT, at least: two of DuckDB's row groups, which it writes out as they
fill rather than all at the commit, and normalizes in parallel."""


def snapshot_table(mapping: Mapping) -> str:
    return f"{SNAPSHOT_PREFIX}{mapping.system}_{mapping.entity}"


@dataclass(frozen=True)
class Skipped:
    """A (system, entity) a reconciliation could not diff, and why."""

    system: str
    entity: str
    reason: str


def record_attempt(
    con: duckdb.DuckDBPyConnection,
    mapping: Mapping,
    run_id: str,
    *,
    rows: int | None = None,
    error: str | None = None,
) -> None:
    """Record a snapshot's latest attempt: taken (`rows`) or failed (`error`, said for the
    operator: no values from the system). A taken one goes in the snapshot's own transaction."""
    con.execute(
        "INSERT OR REPLACE INTO snapshot_attempts VALUES (?, ?, ?, now(), ?, ?)",
        [mapping.system, mapping.entity, run_id, rows, redact_text(error) if error else None],
    )


def current_snapshots(
    con: duckdb.DuckDBPyConnection, mappings: Sequence[Mapping]
) -> tuple[list[Mapping], list[Skipped]]:
    """The mappings whose snapshot a diff may read (its latest attempt was taken), and the others
    with why: a failed latest attempt, or no snapshot ever taken."""
    latest = {
        (system, entity): error
        for system, entity, error in con.execute(
            "SELECT system, entity, error FROM snapshot_attempts"
        ).fetchall()
    }
    tables = {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = current_schema()"
        ).fetchall()
    }
    taken: list[Mapping] = []
    skipped: list[Skipped] = []
    for m in mappings:
        error = latest.get((m.system, m.entity))
        if error is not None:
            skipped.append(Skipped(m.system, m.entity, error))
        elif snapshot_table(m) not in tables:
            reason = f"no snapshot of {m.system}'s {m.entity} records was ever taken"
            skipped.append(Skipped(m.system, m.entity, reason))
        else:
            taken.append(m)
    return taken, skipped


def load_snapshot(
    con: duckdb.DuckDBPyConnection, mapping: Mapping, batches: Iterable[pa.RecordBatch]
) -> int:
    """Replace the (system, entity) snapshot with these raw rows, normalized; the row count.

    The chunks are normalized as they arrive (`gathered`, a few hundred thousand rows at a time),
    straight into a typed table (`<snapshot>__loading`), so no copy of the raw rows, all text, is
    kept: at 10M rows that copy and a window over every column of it took 145 s and a 4.7 GB
    peak. A key held twice is settled afterwards by `drop_duplicates`, over the key, the columns
    that order its copies and the row id only. The snapshot itself is replaced at the end, so a
    read that fails half-way leaves the old one.
    """
    target = snapshot_table(mapping)
    loading = f"{target}{LOADING_SUFFIX}"
    columns = raw_columns(mapping)
    empty = "(SELECT " + ", ".join(f"NULL::VARCHAR AS {quote(c)}" for c in columns) + ")"
    con.execute(
        f"CREATE OR REPLACE TABLE {quote(loading)} AS {normalize_sql(mapping, empty)} LIMIT 0"
    )
    try:
        as_text = ", ".join(f"CAST({quote(c)} AS VARCHAR) AS {quote(c)}" for c in columns)
        chunk = normalize_sql(mapping, f"(SELECT {as_text} FROM raw_chunk)")
        for rows in gathered(batches):
            con.register("raw_chunk", rows)
            try:
                con.execute(f"INSERT INTO {quote(loading)} {chunk}")
            finally:
                con.unregister("raw_chunk")
        drop_duplicates(con, mapping, loading)
        con.execute(f"DROP TABLE IF EXISTS {quote(target)}")
        con.execute(f"ALTER TABLE {quote(loading)} RENAME TO {quote(target)}")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a rolled-back transaction took it already
            con.execute(f"DROP TABLE IF EXISTS {quote(loading)}")
        raise
    return int(scalar(con, f"SELECT count(*) FROM {quote(target)}"))


def gathered(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """The batches, `LOAD_ROWS` or more at a time; a batch whose columns are typed otherwise than
    the one before (a SQLite column read as text in one chunk only) starts a new table."""
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if held and batch.schema != held[0].schema:
            yield pa.Table.from_batches(held)
            held, rows = [], 0
        held.append(batch)
        rows += batch.num_rows
        if rows >= LOAD_ROWS:
            yield pa.Table.from_batches(held)
            held, rows = [], 0
    if held:
        yield pa.Table.from_batches(held)


def snapshot_system(
    con: duckdb.DuckDBPyConnection,
    engine: sa.Engine,
    mapping: Mapping,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Stream the mapping's rows from the system and load them as its snapshot."""
    return load_snapshot(con, mapping, stream_batches(engine, mapping, chunk_size))


def normalize_sql(mapping: Mapping, raw: str) -> str:
    """SELECT the rows of `raw` (a subquery of the raw columns, each as text) in the catalog's
    form: the entity's key, `system_key`, the attributes typed like the golden table, and
    `is_deleted`. Rows without a key are left out; copies of a key are left to `drop_duplicates`."""
    catalog = current().entity(mapping.entity)
    key = normalize(mapping.canonical_key)
    system_key = "concat_ws('|', " + ", ".join(quote(c) for c in mapping.key) + ")"
    values = [
        f"CAST({normalize(f)} AS {catalog.attribute(f.attribute).duckdb_type}) AS {quote(f.attribute)}"
        for f in mapping.fields
    ]
    return f"""
SELECT
    {key} AS {quote(catalog.key)},
    {system_key} AS system_key,
    {", ".join(values)},
    {deleted_sql(mapping)} AS is_deleted
FROM {raw}
WHERE {key} IS NOT NULL"""


def drop_duplicates(con: duckdb.DuckDBPyConnection, mapping: Mapping, table: str) -> None:
    """One row per key: a system holding a key twice keeps its live row (then its lowest own key).

    Only the keys held more than once are ranked, and only by the key, `is_deleted`, `system_key`
    and the row id: no column of values is read or copied."""
    key = quote(current().entity(mapping.entity).key)
    name = quote(table)
    con.execute(f"""
DELETE FROM {name} WHERE rowid IN (
    SELECT rowid FROM (
        SELECT rowid, row_number() OVER (
            PARTITION BY {key} ORDER BY is_deleted, system_key, rowid
        ) AS copy
        FROM {name}
        WHERE {key} IN (SELECT {key} FROM {name} GROUP BY {key} HAVING count(*) > 1)
    )
    WHERE copy > 1
)""")


def deleted_sql(mapping: Mapping) -> str:
    marker = mapping.soft_delete
    if marker is None:
        return "false"  # hard deletes: a deleted record has no row
    column = quote(marker.column)
    return f"coalesce(upper(trim({column})) = upper({sql_literal(marker.value)}), false)"


def normalize(f: Field) -> str:
    """SQL turning the raw text of a field into its catalog form."""
    x = quote(raw_name(f.source))
    text = f"NULLIF(trim({x}), '')"
    match f.rule:
        case "text":
            return text
        case "lower":
            return f"lower({text})"
        case "upper":
            return f"upper({text})"
        case "phone":
            return f"NULLIF(regexp_replace(regexp_replace({text}, '^00', '+'), '[^0-9+]', '', 'g'), '')"
        case "cents":
            return f"TRY_CAST({text} AS DECIMAL(18, 0)) * 0.01"  # stays decimal: exact
        case "decimal":
            return f"TRY_CAST({text} AS DECIMAL(38, 2))"
        case "boolean":
            return (
                f"CASE WHEN lower({text}) IN ('1', 'true', 't', 'yes', 'y') THEN true "
                f"WHEN lower({text}) IN ('0', 'false', 'f', 'no', 'n') THEN false END"
            )
        case "epoch":
            return f"to_timestamp(TRY_CAST({text} AS DOUBLE))"
        case "timestamp" if f.format:
            # A native DATETIME/TIMESTAMP column arrives in ISO form whatever `format` says.
            parsed = f"coalesce(try_strptime({text}, {sql_literal(f.format)}), TRY_CAST({text} AS TIMESTAMP))"
            return f"timezone('UTC', {parsed})"
        case "timestamp":
            return f"TRY_CAST({text} AS TIMESTAMPTZ)"
        case "vocabulary":
            return _vocabulary(f, text)
    raise ValueError(f"unknown rule {f.rule!r} for {f.attribute}")


def _vocabulary(f: Field, text: str) -> str:
    """Each system word to its catalog value; a lossy word to its values joined by '|'.

    A word outside the vocabulary is kept, lower case, so it shows up as a mismatch.
    """
    cases = []
    for word, meaning in f.vocabulary.items():
        values = (meaning,) if isinstance(meaning, str) else meaning
        cases.append(
            f"WHEN {sql_literal(word.upper())} THEN {sql_literal('|'.join(sorted(values)))}"
        )
    return f"CASE upper({text}) {' '.join(cases)} ELSE lower({text}) END"
