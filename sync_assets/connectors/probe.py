"""A read-only look at each system a project maps: do its tables and columns exist, how many
rows do they hold (`syncctl validate --connect`).

Nothing is written and no row is read: SQL systems are inspected through SQLAlchemy on a
read-only engine, a no-code platform through one page of one record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from sync_assets.connectors.mappings import Mapping, needed_columns
from sync_assets.connectors.platform_api import is_platform_url, read_records
from sync_assets.connectors.problems import reading
from sync_assets.connectors.sources import configured_url, open_source
from sync_assets.errors import SyncfabricError
from sync_assets.project import Project
from sync_assets.settings import DataFolder


@dataclass
class TableProbe:
    system: str
    entity: str
    table: str
    rows: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def probe_project(project: Project, folder: DataFolder) -> list[TableProbe]:
    """Every mapping of every system of the project, each system at its configured URL."""
    probes = []
    for name, system in project.systems.items():
        url = configured_url(system.url_env, folder.system_database(name))
        probes += probe_system(
            name, url, [m for m in project.mappings.values() if m.system == name]
        )
    return probes


def probe_system(system: str, url: str, mappings: list[Mapping]) -> list[TableProbe]:
    """One probe per mapping; a system that cannot be reached at all is every probe's problem."""
    try:
        with reading(system, url):
            if is_platform_url(url):
                return [_probe_platform(url, m) for m in mappings]
            engine = open_source(url)
            try:
                return [_probe_sql(engine, m) for m in mappings]
            finally:
                engine.dispose()
    except SyncfabricError as error:
        return [TableProbe(system, m.entity, m.table, problems=[error.message]) for m in mappings]


def _probe_sql(engine: sa.Engine, mapping: Mapping) -> TableProbe:
    probe = TableProbe(mapping.system, mapping.entity, mapping.table)
    inspector = sa.inspect(engine)
    for table, columns in needed_columns(mapping).items():
        if not _has_table(engine, inspector, table, mapping.schema):
            where = f"{mapping.schema}.{table}" if mapping.schema else table
            probe.problems.append(
                f"table {where!r} does not exist (or this login may not read it); fix: correct "
                f"`table:` (or the lookup's) in systems/{mapping.system}.yaml, or the URL's "
                "database, or the reader's grants (syncctl grants)"
            )
            continue
        present, whole = _columns(engine, inspector, table, mapping.schema)
        for column in sorted(columns - present):
            seen = "the table has" if whole else "the columns this login may read there are"
            probe.problems.append(
                f"{table}.{column} does not exist ({seen} {', '.join(sorted(present))}); "
                f"fix: correct the column in systems/{mapping.system}.yaml"
                + ("" if whole else ", or grant it to the reader (syncctl grants)")
            )
    if probe.ok:
        counted = sa.select(sa.func.count()).select_from(
            sa.table(mapping.table, schema=mapping.schema)
        )
        with engine.connect() as con:
            probe.rows = con.execute(counted).scalar_one()
    return probe


def _probe_platform(url: str, mapping: Mapping) -> TableProbe:
    probe = TableProbe(mapping.system, mapping.entity, mapping.table)
    present: set[str] = set()
    for batch in read_records(url, mapping.table, page_size=1):
        present = set(batch.schema.names)
        break
    columns = needed_columns(mapping)
    if present:
        for column in sorted(columns[mapping.table] - present):
            probe.problems.append(
                f"{mapping.table}.{column} is in no record; fix: correct the column in "
                f"systems/{mapping.system}.yaml"
            )
    return probe


def _has_table(engine: sa.Engine, inspector: sa.Inspector, table: str, schema: str | None) -> bool:
    """Whether the catalog has the table. MariaDB/MySQL refuse to describe a table a login has no
    privilege on as they would a missing one (so as not to say it exists): not there either."""
    try:
        return inspector.has_table(table, schema=schema)
    except sa.exc.DBAPIError as error:
        if _denied_on_mysql(engine, error):
            return False
        raise


def _columns(
    engine: sa.Engine, inspector: sa.Inspector, table: str, schema: str | None
) -> tuple[set[str], bool]:
    """The table's column names from the catalog, and whether they are all of them.

    SQLAlchemy reflects a MariaDB/MySQL table with SHOW CREATE TABLE, which a reader granted
    column by column (`syncctl grants`) may not run; the catalog's COLUMNS view then lists the
    columns it may read, which is what a snapshot needs.
    """
    try:
        return {c["name"] for c in inspector.get_columns(table, schema=schema)}, True
    except sa.exc.DBAPIError as error:
        if not _denied_on_mysql(engine, error):
            raise
    view = sa.table(
        "COLUMNS", sa.column("TABLE_SCHEMA"), sa.column("TABLE_NAME"), sa.column("COLUMN_NAME"),
        schema="information_schema",
    )  # fmt: skip
    database = sa.literal(schema) if schema else sa.func.database()
    query = sa.select(view.c["COLUMN_NAME"]).where(
        view.c["TABLE_SCHEMA"] == database, view.c["TABLE_NAME"] == table
    )
    with engine.connect() as con:
        return set(con.execute(query).scalars()), False


MYSQL_DENIED = {1044, 1142, 1143}
"""MariaDB/MySQL's errors for a database, table or column the login has no privilege on."""


def _denied_on_mysql(engine: sa.Engine, error: sa.exc.DBAPIError) -> bool:
    args: tuple[object, ...] = tuple(getattr(error.orig, "args", ()))
    return engine.dialect.name in ("mysql", "mariadb") and bool(args) and args[0] in MYSQL_DENIED
