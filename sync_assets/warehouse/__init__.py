"""The DuckDB warehouse: its tables, derived from the catalog, and how to open it.

One writer at a time: DuckDB locks the file per process, so every Dagster asset that writes here
runs in the `duckdb_writer` pool (limit 1, see dagster.yaml) and keeps its transaction short.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from sync_assets.catalog.entities import Entity
from sync_assets.errors import SyncfabricError
from sync_assets.project import current

WRITER_POOL = "duckdb_writer"

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id      VARCHAR PRIMARY KEY,
    system        VARCHAR NOT NULL,
    file_name     VARCHAR NOT NULL,
    state         VARCHAR NOT NULL,   -- landed | raw | validated | applied (ledger.STATES)
    landed        BIGINT,             -- lines in the file: known once raw
    duplicates    BIGINT,             -- known once validated
    dead_lettered BIGINT,
    validated     BIGINT,
    applied       BIGINT,
    landed_at     TIMESTAMPTZ NOT NULL,
    ingested_at   TIMESTAMPTZ,
    validated_at  TIMESTAMPTZ,
    applied_at    TIMESTAMPTZ,
    failures      INTEGER NOT NULL DEFAULT 0,  -- failed attempts at the batch's next step
    failed_step   VARCHAR,
    last_error    VARCHAR,
    failed_at     TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS raw_events (
    batch_id     VARCHAR NOT NULL,
    line_no      BIGINT NOT NULL,
    arrived_at   TIMESTAMPTZ NOT NULL,
    size_bytes   BIGINT NOT NULL,
    decode_error VARCHAR,
    line         VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS duplicate_events (
    batch_id       VARCHAR NOT NULL,
    line_no        BIGINT NOT NULL,
    source         VARCHAR NOT NULL,
    event_id       VARCHAR NOT NULL,
    first_batch_id VARCHAR NOT NULL,
    first_line_no  BIGINT NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    batch_id         VARCHAR NOT NULL,
    line_no          BIGINT NOT NULL,
    source           VARCHAR,
    event_id         VARCHAR,
    event_type       VARCHAR,
    contract         VARCHAR,
    rule             VARCHAR NOT NULL,
    reason           VARCHAR NOT NULL,
    payload          VARCHAR NOT NULL,
    dead_lettered_at TIMESTAMPTZ NOT NULL,
    resolution       VARCHAR,         -- NULL while held; redriven | accepted_copy
    resolved_by      VARCHAR,         -- the redrive batch, or the batch:line of the copy accepted
    resolved_at      TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS batch_applications (
    batch_id   VARCHAR NOT NULL,
    entity     VARCHAR NOT NULL,
    applied    BIGINT NOT NULL,
    conflicts  BIGINT NOT NULL,
    superseded BIGINT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch_id, entity)
);
CREATE TABLE IF NOT EXISTS ownership_conflicts (
    source      VARCHAR NOT NULL,
    event_id    VARCHAR NOT NULL,
    batch_id    VARCHAR NOT NULL,
    entity      VARCHAR NOT NULL,
    entity_key  VARCHAR NOT NULL,
    attribute   VARCHAR NOT NULL,
    origin      VARCHAR NOT NULL,
    owner       VARCHAR NOT NULL,
    event_time  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, event_id, attribute)
);
"""


def quote(identifier: str) -> str:
    """Quote an identifier for DuckDB; catalog names are trusted, but quote them all the same."""
    return '"' + identifier.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_list(values: list[str]) -> str:
    return ", ".join(sql_literal(value) for value in values)


def events_table_ddl(entity: Entity) -> str:
    attributes = ",\n    ".join(f"{quote(a.name)} {a.duckdb_type}" for a in entity.attributes)
    return f"""
CREATE TABLE IF NOT EXISTS {quote(entity.events_table)} (
    event_id       VARCHAR NOT NULL,
    batch_id       VARCHAR NOT NULL,
    line_no        BIGINT NOT NULL,
    action         VARCHAR NOT NULL,
    entity_key     VARCHAR NOT NULL,
    event_time     TIMESTAMPTZ NOT NULL,
    version        VARCHAR NOT NULL,
    origin         VARCHAR NOT NULL,
    source         VARCHAR NOT NULL,
    correlation_id VARCHAR NOT NULL,
    causation_id   VARCHAR,
    schema_version INTEGER NOT NULL,
    set_attributes VARCHAR[] NOT NULL,
    {attributes}
);"""


def golden_table_ddl(entity: Entity, *, table: str | None = None, temporary: bool = False) -> str:
    columns = []
    for a in entity.attributes:
        columns.append(f"{quote(a.name)} {a.duckdb_type}")
        columns.append(f"{quote(a.name + '__v')} VARCHAR")
    attribute_columns = ",\n    ".join(columns)
    return f"""
CREATE {"TEMP " if temporary else ""}TABLE IF NOT EXISTS {quote(table or entity.golden_table)} (
    {quote(entity.key)} VARCHAR PRIMARY KEY,
    {attribute_columns},
    lifecycle_state VARCHAR,
    lifecycle__v    VARCHAR,
    last_version    VARCHAR NOT NULL,
    last_event_id   VARCHAR NOT NULL,
    last_correlation_id VARCHAR NOT NULL
);"""


def accepted_events_view() -> str:
    """Every accepted event of every entity, by (source, id): what deduplication looks up."""
    selects = [
        f"SELECT source, event_id, batch_id, line_no FROM {quote(entity.events_table)}"
        for entity in current().entities.values()
    ]
    return "CREATE OR REPLACE VIEW accepted_events AS " + " UNION ALL ".join(selects)


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    # The later stages' tables are declared where they are used; imported here to avoid a cycle.
    from sync_assets.deliver.corrections import DELIVERY_DDL
    from sync_assets.reconcile.diff import DISCREPANCIES_DDL

    _refuse_an_older_layout(con)
    con.execute(LEDGER_DDL)
    for entity in current().entities.values():
        con.execute(events_table_ddl(entity))
        con.execute(golden_table_ddl(entity))
    con.execute(accepted_events_view())
    con.execute(DISCREPANCIES_DDL)
    con.execute(DELIVERY_DDL)


def _refuse_an_older_layout(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse made before batches had states cannot be read as one: say so, and how to go on."""
    columns = {
        name
        for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'batches'"
        ).fetchall()
    }
    if columns and "state" not in columns:
        raise SyncfabricError(
            f"the warehouse {scalar(con, 'SELECT path FROM duckdb_databases() LIMIT 1')} was made by an "
            "earlier Syncfabric (its batches have no states); move it aside and run syncctl run "
            "again, with the batch files moved back from landing/<system>/archive/ to be ingested anew"
        )


_SCHEMA_READY: set[Path] = set()
"""Files whose tables this process has created already: DDL on every connect costs ~10 ms."""


@contextlib.contextmanager
def connect(path: Path | str, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    path = Path(path)
    if read_only and not path.exists():
        con = duckdb.connect(":memory:")
        create_schema(con)  # nothing ingested yet: an empty warehouse reads as one
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        con = _open(path, read_only)
        if not read_only and (fresh or path not in _SCHEMA_READY):
            create_schema(con)
            _SCHEMA_READY.add(path)
    con.execute("SET TimeZone = 'UTC'")
    try:
        yield con
    finally:
        con.close()


def _open(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the file; another process holding it is an operator's situation, not a bug."""
    from sync_assets.operate.lock import warehouse_refusal

    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        refusal = warehouse_refusal(error, path)
        if refusal is None:
            raise
        raise refusal from error


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: a crash or an error inside leaves the last commit intact."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


@contextlib.contextmanager
def registered(
    con: duckdb.DuckDBPyConnection, name: str, columns: Mapping[str, Sequence[Any]]
) -> Iterator[str]:
    """Python rows as a table DuckDB reads in one statement, for the `with` block: a row at a
    time (executemany, or a statement per row) costs about 0.4 ms a row, 8 s for 20,000."""
    con.register(name, pa.table(columns))
    try:
        yield name
    finally:
        con.unregister(name)


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> tuple:
    """The single row an aggregate query returns."""
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise LookupError(f"expected one row from: {sql}")
    return row


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None):
    return one(con, sql, params)[0]


def query_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
) -> pl.DataFrame:
    """Run a query and hand its result to polars through Arrow, without copying row by row."""
    result = pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())
    assert isinstance(result, pl.DataFrame)
    return result
