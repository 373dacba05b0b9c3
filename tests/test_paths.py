"""The data folder is a path, never parsed as a URL: a folder whose path holds '?', '#', '%' and a
space keeps every file Syncfabric makes inside it, or is refused by name where a library (DuckDB,
Dagster's storage) cannot take such a path."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from conftest import rows, run_core

from examples.demo.seed.landscape import build_demo_landscape
from sync_assets.connectors.resource import system_url
from sync_assets.connectors.sources import open_source, open_writer
from sync_assets.errors import SyncfabricError
from sync_assets.ingest.landing import LandingZone
from sync_assets.project import current
from sync_assets.reconcile.snapshot import snapshot_system, snapshot_table
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect, create_schema, quote


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


@pytest.fixture(autouse=True)
def no_demo_urls(monkeypatch):
    """The embedded default: every system on its SQLite file in the data folder."""
    for system in current().systems.values():
        monkeypatch.delenv(system.url_env, raising=False)


def test_snapshot_and_delivery_on_sqlite_keep_to_a_folder_with_url_characters(tmp_path):
    folder = DataFolder(tmp_path / "data?mode=memory#top 100%25 sure")
    build_demo_landscape(folder, customers=20, orders=40)
    before = files_under(tmp_path)
    assert before and all(folder.root in p.parents for p in before)

    crm = current().mapping("crm", "customer")
    url = system_url(folder, "crm")
    assert isinstance(url, str)
    assert sa.make_url(url).database == str(folder.system_database("crm"))
    con = duckdb.connect()  # the warehouse cannot sit on a '?' path (see the test below)
    create_schema(con)
    engine = open_source(url)
    try:
        assert snapshot_system(con, engine, crm) == 20
    finally:
        engine.dispose()
    assert con.execute(f"SELECT count(*) FROM {quote(snapshot_table(crm))}").fetchone() == (20,)

    writer = open_writer(url, timeout_s=5)
    try:
        with writer.begin() as session:
            session.execute(sa.text("UPDATE contacts SET display_name = 'Written Here'"))
    finally:
        writer.dispose()
    with sqlite3.connect(folder.system_database("crm")) as written:
        assert written.execute("SELECT DISTINCT display_name FROM contacts").fetchall() == [
            ("Written Here",)
        ]
    assert files_under(tmp_path) == before, "a file was made outside the data folder's files"


def test_demo_flow_keeps_to_a_folder_with_hash_percent_and_space(tmp_path):
    folder = DataFolder(tmp_path / "data#top 100%25 sure")
    build_demo_landscape(folder, customers=20, orders=40)
    run_core(folder, [b.batch_id for b in LandingZone(folder.landing).pending()])
    with connect(folder.warehouse) as con:
        for mapping in current().mappings.values():
            engine = open_source(system_url(folder, mapping.system))
            try:
                snapshot_system(con, engine, mapping)
            finally:
                engine.dispose()
    assert rows(folder, "SELECT count(*) FROM golden_customer") == [(20,)]
    assert all(folder.root in p.parents for p in files_under(tmp_path))


def test_a_question_mark_is_refused_where_duckdb_and_dagster_would_misread_it(tmp_path):
    folder = DataFolder(tmp_path / "data?x")
    with pytest.raises(SyncfabricError, match=r"'\?'.*SYNCFABRIC_HOME"), connect(folder.warehouse):
        pass
    with pytest.raises(SyncfabricError, match="SYNCFABRIC_HOME"):
        folder.prepare_dagster_home()
    assert not any(tmp_path.iterdir()), "refused before anything was made"
