"""The fitness club's seed: `syncctl --project examples/fitness demo` creates the club's tables
and rows (seed/club.py) in its two systems, wherever their URLs say.

Each system is where its systems/<name>.yaml's `url_env` variable points: a PostgreSQL URL (its
schema, named by `?options=-csearch_path%3D<schema>`, is created if missing), a MariaDB URL (its
database is created if missing), or, unset, the SQLite file systems/<name>.sqlite in the data
folder. The club has no event history: the first `syncctl run` adopts the rows as they are.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from sync_assets.connectors.problems import reading
from sync_assets.connectors.sources import configured_url
from sync_assets.project import load_project
from sync_assets.settings import DataFolder

from .club import ROWS, TABLES

PROJECT = Path(__file__).resolve().parents[1]


def system_urls(folder: DataFolder) -> dict[str, str]:
    """Each system's URL, as Syncfabric will read it."""
    project = load_project(PROJECT)
    return {
        name: configured_url(system.url_env, folder.system_database(name))
        for name, system in project.systems.items()
    }


def exists(folder: DataFolder) -> bool:
    """True when every system already holds the club's tables."""
    for system, url in system_urls(folder).items():
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            return False
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            inspector = sa.inspect(engine)
            if not all(inspector.has_table(name) for name in TABLES[system].tables):
                return False
        except sa.exc.OperationalError:  # the database or schema is not there yet
            return False
        finally:
            engine.dispose()
    return True


def build(folder: DataFolder, args: list[str]) -> str:
    """(Re)create the club's tables in each system, with their rows; one line saying where."""
    argparse.ArgumentParser(prog="syncctl demo", add_help=False).parse_args(args)  # none taken
    where = []
    for system, url in system_urls(folder).items():
        with reading(system, url):  # a server it cannot reach: a message naming the variable
            engine = _prepared(url)
            try:
                with engine.begin() as connection:
                    TABLES[system].drop_all(connection)
                    TABLES[system].create_all(connection)
                    for table, rows in ROWS[system]:
                        connection.execute(table.insert(), rows)
            finally:
                engine.dispose()
        where.append(f"{system} in {sa.make_url(url).render_as_string(hide_password=True)}")
    # No events to land: an empty landing zone, ready for the systems' batches, which also makes
    # the folder a data folder for the commands that follow (`syncctl run` adopts the rows).
    folder.landing.mkdir(parents=True, exist_ok=True)
    rows = sum(len(r) for tables in ROWS.values() for _, r in tables)
    return f"the fitness club's {rows} rows, drift included: {'; '.join(where)}"


def _prepared(url: str) -> sa.Engine:
    """An engine on `url`, whose schema (PostgreSQL) or database (MariaDB) exists."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
    elif backend == "postgresql":
        options = parsed.query.get("options", "")
        found = re.search(r"search_path\s*=\s*([A-Za-z0-9_]+)", str(options))
        if found:
            engine = sa.create_engine(parsed, poolclass=NullPool)
            with engine.begin() as connection:
                schema = connection.dialect.identifier_preparer.quote(found.group(1))
                connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
            engine.dispose()
    elif backend in ("mysql", "mariadb") and parsed.database:
        # information_schema: a database every server has, to create this one from
        engine = sa.create_engine(parsed.set(database="information_schema"), poolclass=NullPool)
        with engine.begin() as connection:
            database = connection.dialect.identifier_preparer.quote(parsed.database)
            connection.execute(
                sa.text(f"CREATE DATABASE IF NOT EXISTS {database} CHARACTER SET utf8mb4")
            )
        engine.dispose()
    return sa.create_engine(parsed, poolclass=NullPool)
