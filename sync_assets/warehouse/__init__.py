"""The DuckDB warehouse: how to open it; its tables (declared in tables.py) are made on open.

One writer at a time: DuckDB locks the file per process, so every Dagster asset that writes here
runs in the `duckdb_writer` pool (limit 1, see dagster.yaml) and keeps its transaction short.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from sync_assets import settings
from sync_assets.errors import SyncfabricError
from sync_assets.project import current
from sync_assets.security import sql as pii
from sync_assets.warehouse import tables
from sync_assets.warehouse.sql import quote, sql_list, sql_literal
from sync_assets.warehouse.tables import golden_table_ddl

__all__ = ["golden_table_ddl", "quote", "sql_list", "sql_literal"]

WRITER_POOL = "duckdb_writer"


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Every table of the warehouse, for the current project (see tables.py)."""
    _refuse_an_older_layout(con)
    for statement in tables.schema_statements(current()):
        con.execute(statement)


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
    if "?" in str(path):
        # DuckDB 2.0 reads what follows a '?' as options: it writes its WAL elsewhere and fails.
        raise SyncfabricError(
            f"the warehouse {path} has a '?' in its path, which DuckDB reads as the start of "
            "options, not as part of the file name; fix: keep the data folder (SYNCFABRIC_HOME) "
            "on a path without '?'"
        )
    # Read before the file is opened: a wrong setting is refused with nothing left open.
    memory_limit = settings.duckdb_memory_limit()
    temp_directory = settings.duckdb_temp_directory(path.resolve())
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
    _limit_memory(con, memory_limit, temp_directory)
    # PII is sealed and opened inside SQL (sync_assets/security/sql.py), with the keys of the
    # warehouse's data folder.
    pii.install(con, path.resolve().parent if path.exists() else None)
    try:
        yield con
    except duckdb.Error as error:
        pii.raise_failure(con, error)  # an unknown key id, a tampered token: the operator's error
        raise
    finally:
        pii.forget(con)
        con.close()


def _limit_memory(
    con: duckdb.DuckDBPyConnection, memory_limit: str | None, temp_directory: Path
) -> None:
    """DuckDB's memory limit and the folder it spills to (settings.py). A file opened twice in a
    process is one DuckDB database: its temporary directory cannot be set again, even to the same
    folder, once it has been spilled to."""
    if memory_limit is not None:
        con.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
    [(current,)] = con.execute("SELECT current_setting('temp_directory')").fetchall()
    if current != str(temp_directory):
        con.execute(f"SET temp_directory = {sql_literal(str(temp_directory))}")


_pause = time.sleep
"""How opening waits between tries (a test replaces it to release the holder meanwhile)."""


def _open(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the file. Another process holding it (DuckDB's lock) is waited for, up to
    `settings.warehouse_wait_seconds()`: a sensor reads it for a moment between runs. Still held
    after that, it is an operator's situation, not a bug."""
    from sync_assets.operate.lock import warehouse_refusal

    deadline = time.monotonic() + settings.warehouse_wait_seconds()
    pause = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            refusal = warehouse_refusal(error, path)
            if refusal is None:
                raise
            if time.monotonic() + pause > deadline:
                raise refusal from error
        _pause(pause)  # the holder is another process: nothing here can be awaited
        pause = min(pause * 2, 1.0)


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
    con: duckdb.DuckDBPyConnection, name: str, columns: Mapping[str, Sequence[Any]] | pa.Table
) -> Iterator[str]:
    """Python rows (or an Arrow table) as a table DuckDB reads in one statement, for the `with`
    block: a row at a time (executemany, or a statement per row) costs about 0.4 ms a row, 8 s
    for 20,000."""
    con.register(name, columns if isinstance(columns, pa.Table) else pa.table(columns))
    try:
        yield name
    finally:
        con.unregister(name)


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> tuple:
    """The single row an aggregate query returns, the result read to its end (DuckDB refuses to
    register a table on a connection whose last result is unfinished)."""
    rows = con.execute(sql, params or []).fetchall()
    if not rows:
        raise LookupError(f"expected one row from: {sql}")
    return rows[0]


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None):
    return one(con, sql, params)[0]


def query_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
) -> pl.DataFrame:
    """Run a query and hand its result to polars through Arrow, without copying row by row."""
    result = pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())
    assert isinstance(result, pl.DataFrame)
    return result
