"""Least privilege for a SQL system: the SQL an administrator runs so that Syncfabric reads
through a read-only role and writes through a role limited to what a delivery touches
(`syncctl grants`).

Everything comes from the project's `systems/<system>.yaml`:

- the bookkeeping tables a delivery keeps in the system's database (`deliver/sql.py`: `ledger`),
  created here as the delivery would create them, so the writer needs no CREATE;
- the reader: SELECT on exactly the columns the mappings name (`needed_columns`: keys, fields,
  delete markers, stamps, and the columns lookups read in other tables), column by column;
- the writer: SELECT, INSERT, UPDATE on each mapped table (whole tables: a delivery reads the row
  it writes in full, `FOR UPDATE`, and a compensation puts a whole row back), DELETE only where a
  delivery removes rows (the system hard-deletes, or the entity's `on_undeliverable` is
  `compensate`, whose undoing of a create removes the row), and on the bookkeeping tables what
  `deliver/sql.py` does to them (`LEDGER_PRIVILEGES`).

Nothing else: no CREATE, no DDL, no other table. Names the project and the options give are
checked (`files.identifier_problem`, `ROLE_PATTERN`) and every one is quoted by the dialect's own
quoting (SQLAlchemy's identifier preparer). The script is text to read and run; nothing here
connects anywhere. SQLite has no roles; a no-code platform has its own tokens.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.schema import CreateTable

from sync_assets.connectors.mappings import Mapping, needed_columns
from sync_assets.deliver.sql import LEDGER_PRIVILEGES, ledger
from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.ingest.outbox import outbox_table
from sync_assets.project import Project
from sync_assets.project.files import identifier_problem
from sync_assets.warehouse.sql import sql_literal

ROLE_PATTERN = r"[a-z_][a-z0-9_]{0,62}"
"""Role (PostgreSQL) and user (MariaDB/MySQL) names: lower case, so PostgreSQL never folds them."""
HOST_PATTERN = r"[A-Za-z0-9_.%:-]{1,255}"
"""The host part of a MariaDB/MySQL account: a name, an address, or a pattern with %."""
WRITES = ("SELECT", "INSERT", "UPDATE", "DELETE")
"""What a writer may do to a mapped table, in the order granted; DELETE only where rows go."""
DIALECTS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}
"""A URL's backend -> the dialect whose grants are written (MariaDB's are MySQL's)."""


@dataclass(frozen=True)
class Roles:
    reader: str
    writer: str
    host: str = "%"
    """MariaDB/MySQL only: where the two logins may connect from."""


def default_roles(system: str) -> Roles:
    return Roles(f"syncfabric_{system}_reader", f"syncfabric_{system}_writer")


def dialect_of(url: str) -> str:
    """'postgresql' or 'mysql' for a system's URL; a SyncfabricError for anything without roles."""
    if re.match(r"^https?://", url, re.IGNORECASE):
        raise _platform()
    backend = _backend(url)
    if backend is None:
        raise SyncfabricError(
            "the system's URL is not a database URL; pass --dialect", exit_code=EXIT_USAGE
        )
    if backend == "sqlite":
        raise SyncfabricError(
            "the system is a SQLite file: SQLite has no roles or grants, so there is nothing to "
            "print. Protect the file with the operating system's permissions (Syncfabric opens "
            "it read-only for snapshots), or point the system at PostgreSQL or MariaDB/MySQL.",
            exit_code=EXIT_USAGE,
        )
    if backend not in DIALECTS:
        raise SyncfabricError(
            f"no grants known for {backend!r}; Syncfabric writes them for PostgreSQL and "
            "MariaDB/MySQL",
            exit_code=EXIT_USAGE,
        )
    return DIALECTS[backend]


def system_grants(
    project: Project,
    system: str,
    *,
    dialect: str | None = None,
    reader: str | None = None,
    writer: str | None = None,
    host: str = "%",
    schema: str | None = None,
) -> str:
    """`syncctl grants`: the script for `system`, its dialect and (MariaDB/MySQL) database taken
    from the system's URL in the environment (its writer's, else its own) unless given."""
    _mappings(project, system)
    found = project.systems[system]
    if found.kind == "http":
        raise _platform()
    url = os.environ.get(found.writer_env) or os.environ.get(found.url_env)
    if dialect is not None:
        dialect = dialect_of(f"{dialect}://")
    elif url:
        dialect = dialect_of(url)
    else:
        raise SyncfabricError(
            f"{found.url_env} is not set, so {system} is the embedded default, a SQLite file: "
            "SQLite has no roles or grants. Set the variable to the system's PostgreSQL or "
            "MariaDB/MySQL URL, or pass --dialect postgresql|mariadb",
            exit_code=EXIT_USAGE,
        )
    if (
        schema is None
        and dialect == "mysql"
        and url
        and DIALECTS.get(_backend(url) or "") == "mysql"
    ):
        schema = sa.make_url(url).database or None
    defaults = default_roles(system)
    roles = Roles(reader or defaults.reader, writer or defaults.writer, host)
    return grants_script(project, system, dialect, roles, schema)


def _backend(url: str) -> str | None:
    try:
        return sa.make_url(url).get_backend_name()
    except sa.exc.ArgumentError:
        return None


def _platform() -> SyncfabricError:
    return SyncfabricError(
        "the system is a no-code platform reached over HTTP: it has no SQL roles. Give "
        "Syncfabric a token that can only read, and one that can write the mapped tables, "
        "in the platform itself.",
        exit_code=EXIT_USAGE,
    )


def grants_script(
    project: Project, system: str, dialect: str, roles: Roles, schema: str | None = None
) -> str:
    """The SQL that creates the bookkeeping tables and the two roles of `system`, with comments.

    `schema` is where unqualified names resolve (the bookkeeping tables, mapped tables without
    `schema:`): PostgreSQL's schema (default `public`, also set as both roles' search_path), or
    MariaDB/MySQL's database (default: the one the administrator is connected to).
    """
    mappings = _mappings(project, system)
    _check_names(roles, schema)
    if dialect == "postgresql":
        lines = _postgresql(project, mappings, roles, schema or "public")
    elif dialect == "mysql":
        lines = _mysql(project, mappings, roles, schema)
    else:
        raise SyncfabricError(f"no grants known for {dialect!r}", exit_code=EXIT_USAGE)
    return "\n".join(lines) + "\n"


def writer_privileges(project: Project, mapping: Mapping) -> tuple[str, ...]:
    """What a delivery does to the mapped table: DELETE only where it removes rows."""
    removes = mapping.soft_delete is None or (
        project.entity(mapping.entity).on_undeliverable == "compensate"
    )
    return WRITES if removes else WRITES[:3]


def reader_columns(mappings: list[Mapping]) -> dict[tuple[str | None, str], list[str]]:
    """(schema, table) -> the columns the reader may read there, over all the system's mappings."""
    found: dict[tuple[str | None, str], set[str]] = {}
    for mapping in mappings:
        for table, columns in needed_columns(mapping).items():
            found.setdefault((mapping.schema, table), set()).update(columns)
    return {where: sorted(columns) for where, columns in found.items()}


def writer_tables(
    project: Project, mappings: list[Mapping]
) -> dict[tuple[str | None, str], list[str]]:
    """(schema, table) -> the privileges the writer has there (two entities in one table: both)."""
    found: dict[tuple[str | None, str], set[str]] = {}
    for mapping in mappings:
        found.setdefault((mapping.schema, mapping.table), set()).update(
            writer_privileges(project, mapping)
        )
    return {where: [p for p in WRITES if p in granted] for where, granted in found.items()}


# --- the dialects ---------------------------------------------------------------------------------


def _postgresql(project: Project, mappings: list[Mapping], roles: Roles, schema: str) -> list[str]:
    dialect = postgresql.dialect()
    q = dialect.identifier_preparer.quote_identifier
    reader, writer = q(roles.reader), q(roles.writer)
    schemas = sorted({schema} | {m.schema for m in mappings if m.schema})
    lines = [
        *_header(mappings[0].system, "PostgreSQL", roles, f"schema {schema}"),
        "BEGIN;",
        "",
        "-- The bookkeeping tables deliveries keep beside the system's tables.",
        *_ledger_ddl(dialect, schema),
        *_outbox_ddl(project, mappings[0].system, dialect, schema),
        "",
        "-- The roles: they log in, and can do nothing until granted below.",
    ]
    for role in (roles.reader, roles.writer):
        lines.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = "
            f"{sql_literal(role)}) THEN CREATE ROLE {q(role)} LOGIN; END IF; END $$;"
        )
        lines.append(f"ALTER ROLE {q(role)} SET search_path TO {q(schema)};")
    lines += [
        "",
        f"GRANT USAGE ON SCHEMA {', '.join(q(s) for s in schemas)} TO {reader}, {writer};",
    ]
    lines += ["", "-- The reader: SELECT on the mapped columns, nothing else."]
    lines += _grant_lines(
        project,
        mappings,
        lambda where, table: f"{q(where or schema)}.{q(table)}",
        q,
        reader,
        writer,
    )
    lines += [
        "",
        "COMMIT;",
        "",
        "-- Then give each role a password (or the authentication your server uses), e.g.",
        f"--   ALTER ROLE {reader} PASSWORD '...';   ALTER ROLE {writer} PASSWORD '...';",
        "-- and put them in the system's URLs: url_env (reader) and write_url_env (writer).",
    ]
    return lines


def _mysql(
    project: Project, mappings: list[Mapping], roles: Roles, schema: str | None
) -> list[str]:
    dialect = mysql.dialect()
    q = dialect.identifier_preparer.quote_identifier
    reader = f"{sql_literal(roles.reader)}@{sql_literal(roles.host)}"
    writer = f"{sql_literal(roles.writer)}@{sql_literal(roles.host)}"

    def name(where: str | None, table: str) -> str:
        where = where or schema
        return f"{q(where)}.{q(table)}" if where else q(table)

    where_said = f"database {schema}" if schema else "the database you are connected to"
    lines = [
        *_header(mappings[0].system, "MariaDB/MySQL", roles, where_said),
        "-- The bookkeeping tables deliveries keep beside the system's tables.",
        *_ledger_ddl(dialect, schema),
        *_outbox_ddl(project, mappings[0].system, dialect, schema),
        "",
        "-- The two logins, locked until you give them a password (below).",
        f"CREATE USER IF NOT EXISTS {reader} ACCOUNT LOCK;",
        f"CREATE USER IF NOT EXISTS {writer} ACCOUNT LOCK;",
        "",
        "-- The reader: SELECT on the mapped columns, nothing else.",
        *_grant_lines(project, mappings, name, q, reader, writer),
    ]
    lines += [
        "",
        "-- Then give each account a password and unlock it, e.g.",
        f"--   ALTER USER {reader} IDENTIFIED BY '...' ACCOUNT UNLOCK;",
        f"--   ALTER USER {writer} IDENTIFIED BY '...' ACCOUNT UNLOCK;",
        "-- and put them in the system's URLs: url_env (reader) and write_url_env (writer).",
    ]
    return lines


def _grant_lines(
    project: Project,
    mappings: list[Mapping],
    name: Callable[[str | None, str], str],
    q: Callable[[str], str],
    reader: str,
    writer: str,
) -> list[str]:
    """The reader's and the writer's GRANTs, the same in both dialects but for how a table is
    named (`name(schema or None, table)`) and an identifier quoted (`q`)."""
    lines = [
        f"GRANT SELECT ({', '.join(q(c) for c in columns)}) ON {name(where, table)} TO {reader};"
        for (where, table), columns in reader_columns(mappings).items()
    ]
    table = project.systems[mappings[0].system].outbox
    if table:
        columns = ", ".join(q(c.name) for c in outbox_table(table).columns)
        lines.append(f"GRANT SELECT ({columns}) ON {name(None, table)} TO {reader};")
    lines += ["", "-- The writer: the mapped tables and the bookkeeping tables, nothing else."]
    lines += [
        f"GRANT {', '.join(privileges)} ON {name(where, table)} TO {writer};"
        for (where, table), privileges in writer_tables(project, mappings).items()
    ]
    lines += [
        f"GRANT {', '.join(granted)} ON {name(None, ledger_table)} TO {writer};"
        for ledger_table, granted in LEDGER_PRIVILEGES.items()
    ]
    return lines


def _header(system: str, server: str, roles: Roles, where: str) -> list[str]:
    return [
        f"-- Syncfabric's least-privilege roles for the {system} system ({server}).",
        f"-- Run as an administrator, connected to the {system} database; unqualified names are",
        f"-- in {where}. Generated by `syncctl grants --system {system}`: run it again",
        "-- after a mapping changes (it adds grants; revoke what a mapping no longer names).",
        f"-- Reader: {roles.reader} (snapshots, validate --connect). "
        f"Writer: {roles.writer} (deliveries).",
        "",
    ]


def _ledger_ddl(dialect: sa.Dialect, schema: str | None) -> list[str]:
    placed = sa.MetaData(schema=schema)
    statements = []
    for table in ledger.sorted_tables:
        copy = table.to_metadata(placed)
        ddl = str(CreateTable(copy, if_not_exists=True).compile(dialect=dialect)).strip()
        statements.append(ddl + ";")
    return statements


def _outbox_ddl(
    project: Project, system: str, dialect: sa.Dialect, schema: str | None
) -> list[str]:
    """The system's outbox table (`channels.outbox`), which the system's own application writes
    in the transaction of each change, and the reader reads (sync_assets/ingest/outbox.py)."""
    table = project.systems[system].outbox
    if not table:
        return []
    placed = outbox_table(table, sa.MetaData(schema=schema))
    ddl = str(CreateTable(placed, if_not_exists=True).compile(dialect=dialect)).strip()
    return [
        "",
        "-- The outbox: the application writes each event here in the transaction of its change",
        "-- (grant its own role INSERT on it); Syncfabric's reader only reads it.",
        ddl + ";",
    ]


def _mappings(project: Project, system: str) -> list[Mapping]:
    if system not in project.systems:
        raise SyncfabricError(
            f"the project has no system {system!r}; its systems: {', '.join(project.systems)}",
            exit_code=EXIT_USAGE,
        )
    found = [m for m in project.mappings.values() if m.system == system]
    if not found:
        raise SyncfabricError(f"{system} maps no table: nothing to grant", exit_code=EXIT_USAGE)
    return found


def _check_names(roles: Roles, schema: str | None) -> None:
    for option, value in (("--reader", roles.reader), ("--writer", roles.writer)):
        if not re.fullmatch(ROLE_PATTERN, value):
            raise SyncfabricError(
                f"{option} {value!r} is not a role name Syncfabric writes; fix: use lower case "
                "letters, digits and _, starting with a letter or _, at most 63 characters",
                exit_code=EXIT_USAGE,
            )
    if roles.reader == roles.writer:
        raise SyncfabricError(
            "--reader and --writer name the same role; fix: give the writer a name of its own",
            exit_code=EXIT_USAGE,
        )
    if not re.fullmatch(HOST_PATTERN, roles.host):
        raise SyncfabricError(
            f"--host {roles.host!r} is not a host; fix: a name, an address or a pattern with %",
            exit_code=EXIT_USAGE,
        )
    if schema is not None and (problem := identifier_problem(schema)):
        raise SyncfabricError(f"--schema: {problem}", exit_code=EXIT_USAGE)
