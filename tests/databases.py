"""Helpers for tests against real database servers (PostgreSQL and MariaDB).

Fixtures `postgres_engine` and `mariadb_engine` give each test a SQLAlchemy engine bound to a
fresh, uniquely named PostgreSQL schema (via `search_path`) or MariaDB database, dropped after the
test, so tests never see each other's tables. `engine.url` describes that target completely: a
second engine made from it (`sqlalchemy.create_engine(engine.url)`) lands in the same place.

Where the servers are: `SYNCFABRIC_TEST_POSTGRES_URL` and `SYNCFABRIC_TEST_MARIADB_URL`, by default
the local servers (PostgreSQL on 127.0.0.1:5432, MariaDB on 127.0.0.1:3306, database `test`). When
one is not reachable, its tests are skipped on a developer's machine and fail when `CI` is set
(CI must run them: `.ci/services.sh` starts the servers).

`copy_sqlite_table` copies a table of a SQLite file (the demo systems in
`$SYNCFABRIC_HOME/systems/*.sqlite`) into a server with realistic server-side types, which differ
between the servers as they do in real deployments: on MariaDB, VARCHAR columns compare case- and
trailing-space-insensitively (`'A' = 'a'`), DATETIME keeps whole seconds and CHAR drops trailing
spaces on read; on PostgreSQL, TEXT compares exactly, TIMESTAMP(6) keeps microseconds and CHAR(n)
pads with spaces.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pymysql.constants import SERVER_STATUS
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

CONNECT_TIMEOUT_S = 3
COPY_CHUNK_ROWS = 10_000
MYSQL_STATEMENT_BYTES = 1_000_000  # per multi-row INSERT; max_allowed_packet is 16 MB by default


@dataclass(frozen=True)
class Server:
    label: str
    env_var: str
    default_url: str
    marker: str


POSTGRES = Server(
    "PostgreSQL",
    "SYNCFABRIC_TEST_POSTGRES_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgres",
)
MARIADB = Server(
    "MariaDB",
    "SYNCFABRIC_TEST_MARIADB_URL",
    "mysql+pymysql://root@127.0.0.1:3306/test",
    "mariadb",
)


def _normalise(url: str | URL) -> URL:
    """The URL with our drivers (psycopg 3, PyMySQL) and a connect timeout of a few seconds."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername in ("mysql", "mariadb"):
        parsed = parsed.set(drivername=f"{parsed.drivername}+pymysql")
    extra = {"connect_timeout": str(CONNECT_TIMEOUT_S)}
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        extra["charset"] = "utf8mb4"
    return parsed.update_query_dict({k: v for k, v in extra.items() if k not in parsed.query})


def postgres_url() -> URL:
    """The PostgreSQL server for tests: $SYNCFABRIC_TEST_POSTGRES_URL or the local default."""
    return _normalise(os.environ.get(POSTGRES.env_var) or POSTGRES.default_url)


def mariadb_url() -> URL:
    """The MariaDB server for tests: $SYNCFABRIC_TEST_MARIADB_URL or the local default."""
    return _normalise(os.environ.get(MARIADB.env_var) or MARIADB.default_url)


def in_ci() -> bool:
    """True when running in CI (`CI` set to anything but empty, 0, false or no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@functools.cache
def unreachable_reason(url: URL) -> str | None:
    """None when a connection to `url` works (within a few seconds), else why not (cached)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except (sa.exc.DBAPIError, OSError, ImportError) as error:
        first_line = (str(getattr(error, "orig", None) or error).strip().splitlines() or [""])[0]
        return f"{type(error).__name__}: {first_line}"
    finally:
        engine.dispose()
    return None


def require_server(server: Server, url: URL, *, ci: bool | None = None) -> None:
    """Return if `url` is reachable; else skip the test, or fail it in CI."""
    reason = unreachable_reason(url)
    if reason is None:
        return
    shown = url.render_as_string(hide_password=True)
    message = (
        f"{server.label} not reachable at {shown} ({reason}); start it or set {server.env_var}"
    )
    if in_ci() if ci is None else ci:
        pytest.fail(
            f"{message}. CI must run these tests: call .ci/services.sh first", pytrace=False
        )
    pytest.skip(message)


def _unique_name() -> str:
    return f"sf_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """An engine on a fresh PostgreSQL schema (first and only entry of its search_path)."""
    url = postgres_url()
    require_server(POSTGRES, url)
    schema = _unique_name()
    admin = sa.create_engine(url, poolclass=NullPool)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(url.update_query_dict({"options": f"-csearch_path={schema}"}))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def mariadb_engine() -> Iterator[Engine]:
    """An engine on a fresh MariaDB database (utf8mb4, the server's default collation)."""
    url = mariadb_url()
    require_server(MARIADB, url)
    database = _unique_name()
    admin = sa.create_engine(url, poolclass=NullPool)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    engine = sa.create_engine(url.set(database=database))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text("SET SESSION lock_wait_timeout = 10"))
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{database}`"))
        admin.dispose()


def read_only_engine(url: URL | str) -> Engine:
    """An engine whose every session is read-only: the server rejects writes (as a source should)."""
    engine = sa.create_engine(url)
    statement = (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
        if engine.dialect.name == "postgresql"
        else "SET SESSION TRANSACTION READ ONLY"
    )

    @sa.event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()  # a rolled-back SET would be undone on PostgreSQL

    return engine


def mark_database_tests(items: list[pytest.Item]) -> None:
    """Mark tests that use `postgres_engine` / `mariadb_engine` with `postgres` / `mariadb`."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "postgres_engine" in names:
            item.add_marker(pytest.mark.postgres)
        if "mariadb_engine" in names:
            item.add_marker(pytest.mark.mariadb)


# --- copying SQLite tables --------------------------------------------------------------------

Converter = Callable[[Any], Any]
ColumnType = str | sa.types.TypeEngine
"""A kind ("integer", "bigint", "text", "varchar(n)", "char(n)", "decimal", "decimal(p,s)",
"real", "timestamp", "date") or a SQLAlchemy type used as it is."""

_ISO_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_DAY_FIRST = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_INT32 = 2**31 - 1


def _to_datetime(value: Any) -> datetime | None:
    """ISO text, day-first text (dd/mm/yyyy [HH:MM[:SS]]) or Unix seconds -> naive UTC."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    text = str(value).strip()
    if match := _DAY_FIRST.match(text):
        day, month, year, hour, minute, second = (int(part or 0) for part in match.groups())
        return datetime(year, month, day, hour, minute, second)
    parsed = datetime.fromisoformat(text)
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _to_date(value: Any) -> date | None:
    return None if value is None else _to_datetime(value).date()  # type: ignore[union-attr]


def _to_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _to_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _to_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _to_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _sqlite_kind(declared: str, values: list[Any]) -> str:
    """A kind for a SQLite column from its declared type (affinity rules) and its values."""
    declared = declared.upper()
    present = [v for v in values if v is not None]
    if "INT" in declared or "BOOL" in declared:
        return (
            "bigint" if any(abs(v) > _INT32 for v in present if isinstance(v, int)) else "integer"
        )
    if "TIMESTAMP" in declared or "DATETIME" in declared:
        return "timestamp"
    if "DATE" in declared:
        return "date"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "real"
    if "DEC" in declared or "NUMERIC" in declared:
        return "decimal"
    if present and all(isinstance(v, str) and _ISO_TIMESTAMP.match(v) for v in present):
        return "timestamp"
    return "text"


def _server_type(
    kind: str, dialect: str, values: list[Any]
) -> tuple[sa.types.TypeEngine, Converter]:
    """The realistic server type for a kind on `dialect`, and how to convert SQLite values."""
    kind = kind.strip().lower().replace(" ", "")
    on_mariadb = dialect in ("mysql", "mariadb")
    if kind in ("integer", "int"):
        return sa.Integer(), _to_int
    if kind == "bigint":
        return sa.BigInteger(), _to_int
    if kind == "text":
        if not on_mariadb:
            return sa.Text(), _to_text
        longest = max((len(str(v)) for v in values if v is not None), default=0)
        return (sa.String(255) if longest <= 255 else mysql.MEDIUMTEXT()), _to_text
    if match := re.fullmatch(r"(varchar|char)\((\d+)\)", kind):
        length = int(match.group(2))
        return (sa.String(length) if match.group(1) == "varchar" else sa.CHAR(length)), _to_text
    if match := re.fullmatch(r"(?:decimal|numeric)(?:\((\d+),(\d+)\))?", kind):
        precision, scale = (int(match.group(1)), int(match.group(2))) if match.group(1) else (12, 2)
        return sa.Numeric(precision, scale, asdecimal=True), _to_decimal
    if kind == "real":
        return sa.Double(), _to_float
    if kind == "timestamp":
        return (mysql.DATETIME() if on_mariadb else postgresql.TIMESTAMP(precision=6)), _to_datetime
    if kind == "date":
        return sa.Date(), _to_date
    raise ValueError(f"unknown column kind {kind!r}")


_MYSQL_ESCAPES = str.maketrans(
    {"\0": "\\0", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\032": "\\Z", '"': '\\"', "'": "\\'"}
)


def _mysql_literal(value: Any, driver: Any) -> str:
    """A MariaDB literal for the types a copy produces (others: PyMySQL's escape)."""
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is str:
        return "'" + value.translate(_MYSQL_ESCAPES) + "'"
    if kind is int:
        return str(value)
    if kind is Decimal and value.is_finite():
        return format(value, "f")  # plain notation: 1E+2 -> 100
    if kind is datetime or kind is date:
        return "'" + value.isoformat(" ") + "'" if kind is datetime else f"'{value.isoformat()}'"
    return driver.escape(value)


_IDENTITY_WHEN: dict[Converter, type] = {_to_text: str, _to_int: int, _to_float: float}


def _convert_rows(data: list[tuple], converters: list[Converter]) -> Iterator[tuple]:
    """Rows with each value converted for its server column (None stays None).

    Columns whose values already have the wanted type are passed through, and the converters of
    the others are memoised (dates and amounts repeat a lot), which keeps 100k rows fast.
    """
    work: list[tuple[int, Converter]] = []
    for index, convert in enumerate(converters):
        wanted = _IDENTITY_WHEN.get(convert)
        if wanted and all(type(row[index]) is wanted or row[index] is None for row in data):
            continue
        work.append((index, functools.lru_cache(maxsize=100_000)(convert)))
    for row in data:
        if not work:
            yield row
            continue
        values = list(row)
        for index, convert in work:
            value = values[index]
            if value is not None:
                values[index] = convert(value)
        yield tuple(values)


def _bulk_insert(
    connection: sa.Connection, table: sa.Table, names: list[str], rows: Iterator[tuple]
) -> None:
    """COPY on psycopg; multi-row INSERTs of about 1 MB on PyMySQL; else SQLAlchemy executemany."""
    driver = connection.connection.driver_connection
    if connection.dialect.driver == "psycopg":
        preparer = connection.dialect.identifier_preparer
        target = preparer.format_table(table)
        quoted = ", ".join(preparer.quote(name) for name in names)
        with driver.cursor() as cursor, cursor.copy(f"COPY {target} ({quoted}) FROM STDIN") as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
        return
    if connection.dialect.driver == "pymysql" and not (
        driver.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES  # type: ignore[union-attr]
    ):
        # PyMySQL's own executemany spends most of its time in its generic escape(); these
        # literals are the same for the types a copy produces, several times faster.
        preparer = connection.dialect.identifier_preparer
        head = f"INSERT INTO {preparer.format_table(table)} ({', '.join(map(preparer.quote, names))}) VALUES "
        with driver.cursor() as cursor:  # type: ignore[union-attr]
            values: list[str] = []
            size = 0
            for row in rows:
                literal = "(" + ",".join([_mysql_literal(v, driver) for v in row]) + ")"
                values.append(literal)
                size += len(literal)
                if size > MYSQL_STATEMENT_BYTES:
                    cursor.execute(head + ",".join(values))
                    values, size = [], 0
            if values:
                cursor.execute(head + ",".join(values))
        return
    while chunk := [
        dict(zip(names, row, strict=True)) for row in itertools.islice(rows, COPY_CHUNK_ROWS)
    ]:
        connection.execute(table.insert(), chunk)


def copy_sqlite_table(
    sqlite_path: str | Path,
    table_name: str,
    engine: Engine,
    *,
    column_types: Mapping[str, ColumnType | tuple[ColumnType, Converter]] | None = None,
    target_name: str | None = None,
) -> sa.Table:
    """Copy a SQLite table into the engine's database (replacing a table of that name there).

    Server types come from the SQLite declared types: INTEGER -> INTEGER (BIGINT when needed);
    TEXT -> TEXT on PostgreSQL, VARCHAR(255) in the database's (case-insensitive) collation on
    MariaDB; REAL -> DOUBLE; DECIMAL/NUMERIC -> NUMERIC(12,2) / DECIMAL(12,2); DATETIME/TIMESTAMP
    and TEXT columns holding only ISO timestamps -> TIMESTAMP(6) / DATETIME (whole seconds);
    DATE -> DATE. `column_types` overrides per column with a kind ("char(3)", "decimal(12,2)",
    "timestamp", ...) or a SQLAlchemy type, optionally paired with a converter for the SQLite
    values (e.g. `("decimal", lambda cents: Decimal(cents) / 100)`); "timestamp" parses ISO text,
    day-first text (dd/mm/yyyy [HH:MM[:SS]], as the demo billing system writes) and Unix seconds.
    Primary key and NOT NULL are kept. Returns the server table.
    """
    overrides = dict(column_types or {})
    source = sqlite3.connect(f"file:{Path(sqlite_path)}?mode=ro", uri=True)
    try:
        info = source.execute(f'PRAGMA table_info("{table_name}")').fetchall()
        if not info:
            raise ValueError(f"no table {table_name!r} in {sqlite_path}")
        unknown = set(overrides) - {row[1] for row in info}
        if unknown:
            raise ValueError(f"column_types names columns not in {table_name}: {sorted(unknown)}")
        names = [row[1] for row in info]
        quoted = ", ".join(f'"{name}"' for name in names)
        data = source.execute(f'SELECT {quoted} FROM "{table_name}"').fetchall()
    finally:
        source.close()

    dialect = engine.dialect.name
    columns: list[sa.Column] = []
    converters: list[Converter] = []
    for index, (_cid, name, declared, notnull, _default, pk) in enumerate(info):
        values = [row[index] for row in data]
        wanted = overrides.get(name)
        converter: Converter | None = None
        if isinstance(wanted, tuple):
            wanted, converter = wanted
        if wanted is None:
            wanted = _sqlite_kind(declared or "", values)
        if isinstance(wanted, str):
            server_type, default_converter = _server_type(wanted, dialect, values)
        else:
            server_type, default_converter = wanted, (lambda v: v)
        columns.append(
            sa.Column(
                name,
                server_type,
                primary_key=bool(pk),
                nullable=not (notnull or pk),
                autoincrement=False,  # else MariaDB makes an INTEGER key AUTO_INCREMENT (0 -> 1)
            )
        )
        converters.append(converter or default_converter)

    table = sa.Table(target_name or table_name, sa.MetaData(), *columns)
    converted = _convert_rows(data, converters)
    with engine.begin() as connection:
        table.drop(connection, checkfirst=True)
        table.create(connection)
        _bulk_insert(connection, table, names, converted)
    return table
