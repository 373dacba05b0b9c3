"""Mappings and sources: the mappings match the demo layouts and the catalog; sources only read,
quote every name and stream in bounded chunks."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from examples.demo.seed.systems import LAYOUTS
from sync_assets.connectors.mappings import Field, Lookup, Mapping
from sync_assets.connectors.sources import open_source, sqlite_url, stream_batches
from sync_assets.project import current


@pytest.mark.parametrize("key", list(current().mappings), ids="_".join)
def test_mapping_holds_what_the_demo_layout_says(key):
    m = current().mappings[key]
    table = LAYOUTS[m.system].table(m.table)
    assert table.entity == m.entity
    assert m.canonical_key.source == table.key
    in_layout = {
        c.name: c.attribute.split(".")[1]
        for c in table.columns
        if c.attribute and c.attribute.startswith(f"{m.entity}.")
    }
    in_mapping = {
        (next(iter(f.source.on)) if isinstance(f.source, Lookup) else f.source): f.attribute
        for f in m.fields
    }
    assert in_mapping == in_layout


def test_systems_sharing_attributes_are_paired():
    pairs = {(a.system, b.system) for a, b in current().comparable_pairs("customer")}
    assert pairs == {("crm", "billing"), ("crm", "support"), ("billing", "support")}
    assert current().comparable_pairs("order") == []


@pytest.fixture
def orders_db(tmp_path):
    """A SQLite database with awkward names: a reserved word, a space and a quote."""
    path = tmp_path / "odd names.sqlite"
    con = sqlite3.connect(path)
    con.execute('CREATE TABLE "order" ("select" TEXT PRIMARY KEY, "from" INTEGER, "it""s" TEXT)')
    con.execute('CREATE TABLE "acc ounts" ("from" INTEGER PRIMARY KEY, "ref" TEXT)')
    con.executemany('INSERT INTO "acc ounts" VALUES (?, ?)', [(1, "C-000001"), (2, "C-000002")])
    con.executemany(
        'INSERT INTO "order" VALUES (?, ?, ?)',
        [(f"O-{n:07d}", 1 + n % 2, "PAID") for n in range(1, 1051)],
    )
    con.commit()
    con.close()
    return path


ODD = Mapping(
    system="billing",
    entity="order",
    table="order",
    key=("select",),
    canonical_key=Field("order_id", "select"),
    fields=(
        Field("customer_id", Lookup("acc ounts", on={"from": "from"}, value="ref")),
        Field("status", 'it"s', "lower"),
    ),
    soft_delete=None,
)


def test_streaming_uses_bounded_chunks_and_quotes_names(orders_db):
    engine = open_source(sqlite_url(orders_db))
    batches = list(stream_batches(engine, ODD, chunk_size=100))
    assert len(batches) == 11
    assert max(b.num_rows for b in batches) == 100
    assert sum(b.num_rows for b in batches) == 1050
    first = batches[0].to_pylist()[0]
    assert first == {"select": "O-0000001", "from": 2, 'it"s': "PAID", "acc ounts.ref": "C-000002"}


def test_sources_only_read(orders_db):
    engine = open_source(sqlite_url(orders_db))
    with engine.connect() as conn, pytest.raises(sa.exc.OperationalError, match="readonly"):
        conn.execute(sa.text('DELETE FROM "order"'))
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT count(*) FROM "order"')).scalar() == 1050
        assert conn.execute(sa.text("PRAGMA query_only")).scalar() == 1


def test_unknown_backends_are_refused():
    with pytest.raises(ValueError, match="oracle"):
        open_source("oracle://somewhere/db")
