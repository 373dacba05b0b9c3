"""The Dagster instance on PostgreSQL where SYNCFABRIC_DAGSTER_PG_URL names a database, SQLite
under the data folder otherwise (sync_assets/operate/instance.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from commands import assert_no_traceback, syncctl
from databases import POSTGRES, postgres_url, require_server
from sqlalchemy.pool import NullPool

from sync_assets.errors import SyncfabricError
from sync_assets.operate.instance import PG_URL_ENV, render
from sync_assets.settings import PROJECT_ROOT, DataFolder

PASSWORD = "pw-canary-7Qz"


def test_without_the_url_the_instance_is_the_projects_sqlite_one(monkeypatch):
    monkeypatch.delenv(PG_URL_ENV, raising=False)

    rendered = yaml.safe_load(render())

    assert rendered == yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert "storage" not in rendered
    assert rendered["concurrency"]["pools"]["default_limit"] == 1, "the duckdb_writer pool"
    assert rendered["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert rendered["concurrency"]["runs"]["tag_concurrency_limits"]
    assert rendered["run_monitoring"]["enabled"] is True
    assert rendered["run_retries"] == {
        "enabled": True,
        "max_retries": 1,
        "retry_on_asset_or_op_failure": False,
    }


def test_the_url_names_postgres_storage_through_the_environment_only(monkeypatch, tmp_path):
    monkeypatch.setenv(PG_URL_ENV, f"postgresql+psycopg2://sync:{PASSWORD}@db.example:5432/dagster")

    home = DataFolder(tmp_path / "data").prepare_dagster_home()
    written = (home / "dagster.yaml").read_text()

    assert yaml.safe_load(written)["storage"] == {"postgres": {"postgres_url": {"env": PG_URL_ENV}}}
    assert PASSWORD not in written and "db.example" not in written
    assert yaml.safe_load(written)["concurrency"]["pools"]["default_limit"] == 1


@pytest.mark.parametrize(
    "url",
    [
        f"mysql+pymysql://sync:{PASSWORD}@db.example/dagster",
        f"postgresql+psycopg2://sync:{PASSWORD}@db.example:5432",
        f"postgresql://sync:{PASSWORD}@db.example:5432/dagster",
        f"postgresql+psycopg://sync:{PASSWORD}@db.example:5432/dagster",
        f"not a url {PASSWORD}",
    ],
)
def test_a_wrong_url_is_refused_without_its_password(monkeypatch, url):
    monkeypatch.setenv(PG_URL_ENV, url)

    with pytest.raises(SyncfabricError, match=PG_URL_ENV) as refused:
        render()

    assert PASSWORD not in str(refused.value)


def test_syncctl_refuses_a_wrong_url_plainly_without_its_password(tmp_path):
    home = tmp_path / "data"
    assert syncctl(home, "demo", "--customers", "5", "--orders", "5").returncode == 0

    result = syncctl(home, "doctor", **{PG_URL_ENV: f"mysql://sync:{PASSWORD}@db.example/x"})

    assert result.returncode == 2, result.stderr
    assert PG_URL_ENV in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert_no_traceback(result)


@pytest.fixture
def dagster_database() -> str:
    """A fresh PostgreSQL database for one instance, dropped after; its URL (with a password,
    which the local server's trust authentication ignores)."""
    server = postgres_url()
    require_server(POSTGRES, server)
    name = f"sf_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(
            drivername="postgresql+psycopg2", database=name, password=PASSWORD
        ).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_the_demo_runs_with_its_runs_and_materializations_in_postgres(tmp_path, dagster_database):
    home = tmp_path / "syncfabric"
    env = {PG_URL_ENV: dagster_database}

    built = syncctl(home, "demo", "--customers", "300", "--orders", "1200", **env)
    assert built.returncode == 0, built.stderr[-3000:]
    ran = syncctl(home, "run", **env)
    assert ran.returncode == 0, ran.stderr[-3000:]

    engine = sa.create_engine(sa.make_url(dagster_database).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            runs = connection.execute(
                sa.text("SELECT status, count(*) FROM runs GROUP BY status")
            ).all()
            materialized = connection.execute(
                sa.text(
                    "SELECT count(DISTINCT asset_key) FROM event_logs "
                    "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert dict(runs).get("SUCCESS", 0) >= 2, runs
    assert set(dict(runs)) == {"SUCCESS"}, runs
    assert materialized > 5
    sqlite_files = [p for p in (home / "dagster").rglob("*.db") if p.is_file()]
    assert sqlite_files == [], "no run or event storage in SQLite under the data folder"
    assert not any(PASSWORD in text for text in _texts(home)), "the password in the data folder"
    assert PASSWORD not in built.stdout + built.stderr + ran.stdout + ran.stderr


def _texts(root: Path) -> list[str]:
    return [p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()]
