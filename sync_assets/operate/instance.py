"""The Dagster instance's configuration: the one dagster.yaml that syncctl, `make ui` and the
daemon read from DAGSTER_HOME ($SYNCFABRIC_HOME/dagster).

The project's dagster.yaml (the repository's root) holds what every instance has: the pools (the
DuckDB writer one at a time), the queued run coordinator and its limits, run monitoring and run
retries. Its storage is Dagster's SQLite default, under the data folder: a laptop needs nothing
else. Where `SYNCFABRIC_DAGSTER_PG_URL` names a PostgreSQL database (`postgresql+psycopg2://`), the
runs, event log and schedules live there instead (`dagster-postgres`), so the webserver, the
daemon and syncctl on several machines share one instance. The URL reaches Dagster only through
the environment (`postgres_url: {env: SYNCFABRIC_DAGSTER_PG_URL}`): its password is never written
into the file, and an error shows the URL with its password hidden.
"""

from __future__ import annotations

import os

from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.settings import PROJECT_ROOT

PG_URL_ENV = "SYNCFABRIC_DAGSTER_PG_URL"
DRIVER = "postgresql+psycopg2"
"""Dagster's PostgreSQL storage sends `NOTIFY channel, %(id)s`, which only psycopg2 binds; and
SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3: the URL names the driver."""


def dagster_pg_url() -> str | None:
    """The PostgreSQL URL of the instance's storage, None for SQLite under the data folder; a
    SyncfabricError (its password hidden) when it is not a PostgreSQL URL."""
    raw = os.environ.get(PG_URL_ENV, "").strip()
    if not raw:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        # the text could be anything, a password among it: none of it is repeated
        raise SyncfabricError(
            f"{PG_URL_ENV} is not a database URL (its value is not shown, it may hold a "
            f"password); fix: set it to {DRIVER}://user@host:5432/database, or unset it "
            "to keep Dagster's runs in SQLite under the data folder",
            exit_code=EXIT_USAGE,
        ) from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() != "postgresql" or not url.database:
        raise SyncfabricError(
            f"{PG_URL_ENV}={shown} does not name a PostgreSQL database; fix: set it to "
            f"{DRIVER}://user@host:5432/database, or unset it to keep Dagster's runs "
            "in SQLite under the data folder",
            exit_code=EXIT_USAGE,
        )
    if url.drivername != DRIVER:
        fixed = url.set(drivername=DRIVER).render_as_string(hide_password=True)
        raise SyncfabricError(
            f"{PG_URL_ENV}={shown} does not name the psycopg2 driver, the only one Dagster's "
            f"PostgreSQL storage works with; fix: set it to {fixed}",
            exit_code=EXIT_USAGE,
        )
    return raw


def render() -> str:
    """dagster.yaml for the data folder's instance: the project's, plus PostgreSQL storage
    where `SYNCFABRIC_DAGSTER_PG_URL` is set (named there, its value never written)."""
    text = (PROJECT_ROOT / "dagster.yaml").read_text()
    if dagster_pg_url() is None:
        return text
    return (
        text.rstrip("\n")
        + "\n\n# Runs, event log and schedules in PostgreSQL: SYNCFABRIC_DAGSTER_PG_URL is set.\n"
        "storage:\n"
        "  postgres:\n"
        "    postgres_url:\n"
        f"      env: {PG_URL_ENV}\n"
    )
