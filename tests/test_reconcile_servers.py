"""Reconciliation against real servers on loopback: the CRM in PostgreSQL, billing in MariaDB
(support stays SQLite), as a deployment would run it.

The demo systems are copied into the servers with realistic server types: on PostgreSQL a CHAR(12)
key (padded with spaces), CHAR(2) country, BOOLEAN opt-in, TIMESTAMP(6); on MariaDB VARCHAR in the
database's case-insensitive collation, CHAR columns, DECIMAL totals with sub-cent precision and
the order time as a native DATETIME (whole seconds). A fresh copy must give no discrepancy at all,
and drift seeded with SQL on the servers must be found exactly: no more, no fewer.

A native DATETIME reaches the normalizer as ISO text ('2026-11-25 08:30:00'), not as the demo's
'dd/mm/yyyy HH:MM' text, so the deployment's billing order mapping names that format.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from decimal import Decimal

import pytest
import sqlalchemy as sa
from conftest import first_unused_key, run_core
from databases import copy_sqlite_table

from examples.demo.seed.landscape import build_demo_landscape
from sync_assets.connectors.mappings import Mapping
from sync_assets.connectors.sources import open_source, sqlite_url
from sync_assets.ingest.landing import LandingZone
from sync_assets.project import current
from sync_assets.reconcile.diff import diff_entity
from sync_assets.reconcile.snapshot import snapshot_system
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect

# -- the deployment --------------------------------------------------------------------------------

CRM_COLUMNS = {
    "contact_id": "char(12)",  # fixed width: PostgreSQL pads 'C-000123' with spaces
    "email_address": "varchar(320)",
    "display_name": "text",
    "country_code": "char(2)",
    "marketing_opt_in": (sa.Boolean(), lambda v: bool(v)),
    "deleted": "integer",
    "created_on": "timestamp",  # TIMESTAMP(6)
}
ACCOUNT_COLUMNS = {
    "customer_ref": "varchar(16)",  # utf8mb4, the server's case-insensitive collation
    "country": "char(2)",
    "updated": "date",
}
ORDER_COLUMNS = {
    "order_number": "varchar(16)",
    "total_cents": "decimal(15,3)",  # cents, with sub-cent precision from conversions
    "currency": "char(3)",
    "placed": "timestamp",  # DATETIME: whole seconds
}


def placed_as_datetime(order: Mapping) -> Mapping:
    """The billing order mapping for a `placed` column of type DATETIME."""
    fields = tuple(
        replace(f, format="%Y-%m-%d %H:%M:%S") if f.attribute == "placed_at" else f
        for f in order.fields
    )
    return replace(order, fields=fields)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DataFolder:
    """A demo landscape, ingested and applied: systems and golden records that agree."""
    folder = DataFolder(tmp_path_factory.mktemp("servers") / "syncfabric")
    build_demo_landscape(folder, customers=300, orders=1200)
    run_core(folder, [b.batch_id for b in LandingZone(folder.landing).pending()], apply_each=False)
    return folder


class Landscape:
    """The golden records (a DuckDB copy), the CRM on PostgreSQL, billing on MariaDB and support
    in a SQLite copy; each (system, entity) with its mapping and where to read it."""

    def __init__(
        self, demo: DataFolder, folder: DataFolder, postgres: sa.Engine, mariadb: sa.Engine
    ):
        folder.systems.mkdir(parents=True)
        shutil.copy(demo.warehouse, folder.warehouse)
        shutil.copy(demo.system_database("support"), folder.system_database("support"))
        self.folder = folder
        self.postgres, self.mariadb = postgres, mariadb
        copy_sqlite_table(demo.system_database("crm"), "contacts", postgres, column_types=CRM_COLUMNS)  # fmt: skip
        billing = demo.system_database("billing")
        copy_sqlite_table(billing, "accounts", mariadb, column_types=ACCOUNT_COLUMNS)
        copy_sqlite_table(billing, "orders", mariadb, column_types=ORDER_COLUMNS)
        with postgres.connect() as conn:
            self.pg_schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        self.sources: list[tuple[Mapping, sa.URL | str]] = [
            (replace(current().mapping("crm", "customer"), schema=self.pg_schema), postgres.url),
            (current().mapping("billing", "customer"), mariadb.url),  # the database is the URL's
            (placed_as_datetime(current().mapping("billing", "order")), mariadb.url),
            (
                current().mapping("support", "customer"),
                sqlite_url(folder.system_database("support")),
            ),
        ]

    def reconcile(self, run_id: str) -> set[Found]:
        """Snapshot every system read-only, diff each against golden and each pair."""
        with connect(self.folder.warehouse) as con:
            for m, url in self.sources:
                engine = open_source(url)
                try:
                    snapshot_system(con, engine, m)
                finally:
                    engine.dispose()
            for entity_name in ("customer", "order"):
                diff_entity(con, [m for m, _ in self.sources if m.entity == entity_name], run_id)
            found = con.execute(
                "SELECT kind, resolution, system, entity, entity_key, attribute, other_system"
                " FROM discrepancies WHERE run_id = ?",
                [run_id],
            ).fetchall()
        assert len(found) == len(set(found)), "a discrepancy reported twice"
        return set(found)

    def golden(self, sql: str) -> list[tuple]:
        with connect(self.folder.warehouse) as con:
            return con.execute(sql).fetchall()


Found = tuple[str, str, str, str, str, str | None, str | None]
"""(kind, resolution, system, entity, entity_key, attribute, other_system)"""


@pytest.fixture
def landscape(demo, tmp_path, postgres_engine, mariadb_engine) -> Landscape:
    return Landscape(demo, DataFolder(tmp_path / "copy"), postgres_engine, mariadb_engine)


def test_a_fresh_copy_on_the_servers_has_no_discrepancies(landscape):
    # the server types are the realistic ones this test is about
    with landscape.mariadb.connect() as conn:
        types = dict(
            conn.execute(
                sa.text(
                    "SELECT concat(table_name, '.', column_name), column_type"
                    " FROM information_schema.columns WHERE table_schema = database()"
                )
            ).fetchall()
        )
        insensitive = conn.execute(
            sa.text("SELECT count(*) FROM accounts WHERE billing_email = lower(billing_email)")
        ).scalar_one()
        accounts = conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one()
    assert types["orders.placed"] == "datetime"
    assert types["orders.total_cents"] == "decimal(15,3)"
    assert types["accounts.country"] == "char(2)"
    assert insensitive == accounts > 0  # upper-case emails equal their lower case on MariaDB
    with landscape.postgres.connect() as conn:
        padded = conn.execute(
            sa.text("SELECT octet_length(contact_id), pg_typeof(marketing_opt_in)::text FROM contacts LIMIT 1")
        ).one()  # fmt: skip
    assert tuple(padded) == (12, "boolean")

    assert landscape.reconcile("fresh") == set()
    counts = landscape.golden(
        "SELECT (SELECT count(*) FROM snapshot_crm_customer),"
        " (SELECT count(*) FROM snapshot_billing_customer),"
        " (SELECT count(*) FROM snapshot_billing_order),"
        " (SELECT count(*) FROM snapshot_billing_order WHERE placed_at IS NULL OR amount IS NULL),"
        " (SELECT count(*) FROM snapshot_crm_customer WHERE marketing_opt_in IS NOT NULL)"
    )[0]
    assert counts[:2] == (300, accounts)
    assert counts[2:4] == (1200, 0)  # every DATETIME and DECIMAL was read
    assert counts[4] > 0  # PostgreSQL BOOLEANs were read and compared


# -- seeding drift on the servers -----------------------------------------------------------------


class Seeder:
    """Changes the systems with SQL on their servers and picks golden records to change."""

    def __init__(self, landscape: Landscape):
        self.landscape = landscape
        self.used: set[str] = set()

    def sql(self, system: str, statement: str, **params: object) -> None:
        if system == "support":
            con = sqlite3.connect(self.landscape.folder.system_database("support"))
            with con:
                count = con.execute(statement, params).rowcount
            con.close()
        else:
            engine = self.landscape.postgres if system == "crm" else self.landscape.mariadb
            with engine.begin() as conn:
                count = conn.execute(sa.text(statement), params).rowcount
        assert count == 1, statement

    def keys(self, engine: sa.Engine, query: str) -> set[str]:
        with engine.connect() as conn:
            return {key.strip() for (key,) in conn.execute(sa.text(query))}

    def pick(self, query: str, *, account: bool | None = None, user: bool | None = None) -> str:
        """The first key the golden query returns that no other seed has taken, with or without
        a live billing account or a support user as asked."""
        accounts = self.keys(self.landscape.mariadb, "SELECT customer_ref FROM accounts WHERE account_state <> 'CLOSED'")  # fmt: skip
        con = sqlite3.connect(self.landscape.folder.system_database("support"))
        users = {key for (key,) in con.execute("SELECT external_id FROM users")}
        con.close()
        return first_unused_key(
            self.landscape.golden(query),
            self.used,
            accounts=accounts,
            users=users,
            account=account,
            user=user,
        )


LIVE = "SELECT customer_id FROM golden_customer WHERE lifecycle_state = 'live'"
LIVE_ORDER = "SELECT order_id FROM golden_order WHERE lifecycle_state = 'live' ORDER BY order_id"


def seed_every_kind(seed: Seeder) -> set[Found]:
    """Seed drift of every kind on the servers (and support); what the diff must find."""
    expected: set[Found] = set()

    def customer(*found: tuple) -> None:
        expected.update((k, r, s, "customer", key, a, o) for k, r, s, key, a, o in found)

    def order(*found: tuple) -> None:
        expected.update((k, r, s, "order", key, a, o) for k, r, s, key, a, o in found)

    # missing rows: a contact deleted outright in PostgreSQL (the CRM owns the lifecycle), an
    # order deleted in MariaDB (billing owns orders), a support user gone (support owns nothing)
    c = seed.pick(LIVE + " ORDER BY 1", account=False, user=False)
    seed.sql("crm", "DELETE FROM contacts WHERE contact_id = :c", c=c)
    customer(("missing", "missed_event", "crm", c, None, None))
    o = seed.pick(LIVE_ORDER)
    seed.sql("billing", "DELETE FROM orders WHERE order_number = :o", o=o)
    order(("missing", "missed_event", "billing", o, None, None))
    c = seed.pick(LIVE + " ORDER BY 1", user=True)
    seed.sql("support", "DELETE FROM users WHERE external_id = :c", c=c)
    customer(("missing", "drift", "support", c, None, None))

    # soft deletes: the CRM marks a live customer deleted, billing voids a live order (owners),
    # billing closes a live customer's account (not the owner: drift)
    c = seed.pick(LIVE + " ORDER BY 1 DESC", user=False)
    seed.sql("crm", "UPDATE contacts SET deleted = 1 WHERE contact_id = :c", c=c)
    customer(("missing", "missed_event", "crm", c, None, None))
    o = seed.pick(LIVE_ORDER + " DESC")
    seed.sql("billing", "UPDATE orders SET voided = 1 WHERE order_number = :o", o=o)
    order(("missing", "missed_event", "billing", o, None, None))
    c = seed.pick(LIVE + " ORDER BY 1", account=True)
    seed.sql("billing", "UPDATE accounts SET account_state = 'CLOSED' WHERE customer_ref = :c", c=c)
    customer(("missing", "drift", "billing", c, None, None))

    # a contact and a support user the golden record never heard of, with different emails: each
    # is extra, and their divergence, which no mismatch explains, is one finding of its own
    seed.sql(
        "crm",
        "INSERT INTO contacts VALUES ('C-999003', 'one@example.com', 'Same Name', NULL, 'gb',"
        " 'Active', NULL, NULL, '2026-12-01 10:00:00', 0)",
    )
    seed.sql(
        "support",
        "INSERT INTO users (external_id, email, name, tier, state, updated_at)"
        " VALUES ('C-999003', 'other@example.com', 'Same Name', 'Standard', 'enabled', 0)",
    )
    customer(
        ("extra", "missed_event", "crm", "C-999003", None, None),
        ("extra", "drift", "support", "C-999003", None, None),
        ("divergence", "drift", "support", "C-999003", "email", "crm"),
    )

    # extra rows: a contact and an order the golden records never heard of (owners: missed
    # events), an account opened in billing for a customer the golden record has deleted (drift)
    seed.sql(
        "crm",
        "INSERT INTO contacts VALUES ('C-999001', 'new@example.com', 'New Person', NULL, 'gb',"
        " 'Active', NULL, NULL, '2026-12-01 10:00:00', 0)",
    )
    customer(("extra", "missed_event", "crm", "C-999001", None, None))
    seed.sql(
        "billing",
        "INSERT INTO orders VALUES ('O-9999001', (SELECT min(acct_no) FROM accounts), 'PAID',"
        " 4200, 'eur', '2026-12-01 10:00:00', 0)",
    )
    order(("extra", "missed_event", "billing", "O-9999001", None, None))
    c = seed.pick("SELECT customer_id FROM golden_customer WHERE lifecycle_state = 'deleted' ORDER BY 1")  # fmt: skip
    seed.sql(
        "billing",
        "INSERT INTO accounts VALUES ((SELECT 1 + max(acct_no) FROM accounts a), :c,"
        " 'GONE@EXAMPLE.COM', 'PRO', 'ACTIVE', 'GB', '2026-12-01')",
        c=c,
    )
    customer(("extra", "drift", "billing", c, None, None))

    # an owner's value changed (missed event): the CRM's email in PostgreSQL; billing's copy now
    # differs from it too, the same divergence: one finding (billing's value in its views)
    c = seed.pick(LIVE + " ORDER BY 1", account=True, user=False)
    seed.sql("crm", "UPDATE contacts SET email_address = 'moved@example.org' WHERE contact_id = :c", c=c)  # fmt: skip
    customer(("mismatch", "missed_event", "crm", c, "email", None))
    # ... billing's plan in MariaDB (billing owns plan), which the CRM also holds
    c = seed.pick(LIVE + " ORDER BY 1 DESC", account=True)
    seed.sql("billing", "UPDATE accounts SET plan = CASE plan WHEN 'PRO' THEN 'FREE' ELSE 'PRO' END WHERE customer_ref = :c", c=c)  # fmt: skip
    customer(("mismatch", "missed_event", "billing", c, "plan", None))
    # ... an order's amount beyond the tolerance and its time moved by an hour
    o = seed.pick(LIVE_ORDER)
    seed.sql("billing", "UPDATE orders SET total_cents = total_cents + 250 WHERE order_number = :o", o=o)  # fmt: skip
    order(("mismatch", "missed_event", "billing", o, "amount", None))
    o = seed.pick(LIVE_ORDER)
    seed.sql("billing", "UPDATE orders SET placed = placed + INTERVAL 1 HOUR WHERE order_number = :o", o=o)  # fmt: skip
    order(("mismatch", "missed_event", "billing", o, "placed_at", None))

    # a non-owner's value changed (drift): billing's country in MariaDB (the CRM owns it)
    c = seed.pick(LIVE + " ORDER BY 1", account=True)
    seed.sql("billing", "UPDATE accounts SET country = CASE country WHEN 'SE' THEN 'NO' ELSE 'SE' END WHERE customer_ref = :c", c=c)  # fmt: skip
    customer(("mismatch", "drift", "billing", c, "country", None))
    # ... support disables an active customer: once, against the golden record
    c = seed.pick(LIVE + " AND status = 'active' ORDER BY 1", account=True, user=True)
    seed.sql("support", "UPDATE users SET state = 'disabled' WHERE external_id = :c", c=c)
    customer(("mismatch", "drift", "support", c, "status", None))

    # differences that must NOT count
    # MariaDB: an email in another case, trailing spaces (kept by VARCHAR, ignored by its
    # collation), a plan in lower case
    c = seed.pick(LIVE + " ORDER BY 1 DESC", account=True)
    seed.sql("billing", "UPDATE accounts SET billing_email = concat(lower(billing_email), '   '), plan = concat(lower(plan), ' ') WHERE customer_ref = :c", c=c)  # fmt: skip
    # PostgreSQL (exact TEXT): an email in upper case with spaces around, a name spaced out
    c = seed.pick(LIVE + " ORDER BY 1 DESC", account=True, user=True)
    seed.sql("crm", "UPDATE contacts SET email_address = '  ' || upper(email_address) || ' ', display_name = replace(display_name, ' ', '   ') || '  ' WHERE contact_id = :c", c=c)  # fmt: skip
    # MariaDB: an amount with sub-cent precision, within the tolerance of a cent; an order time
    # with seconds, equal to the minute
    o = seed.pick(LIVE_ORDER + " DESC")
    seed.sql("billing", "UPDATE orders SET total_cents = total_cents + 0.875 WHERE order_number = :o", o=o)  # fmt: skip
    o = seed.pick(LIVE_ORDER + " DESC")
    seed.sql("billing", "UPDATE orders SET placed = placed + INTERVAL 59 SECOND WHERE order_number = :o", o=o)  # fmt: skip
    return expected


def test_seeded_drift_on_the_servers_is_found_exactly(landscape):
    expected = seed_every_kind(Seeder(landscape))
    found = landscape.reconcile("seeded")
    assert sorted(found - expected, key=str) == [], "false alarms"
    assert sorted(expected - found, key=str) == [], "seeded drift not found"
    kinds = {(kind, resolution) for kind, resolution, *_ in expected}
    assert {k for k, _ in kinds} == {"missing", "extra", "mismatch", "divergence"}
    assert {r for _, r in kinds} == {"missed_event", "drift"}


def test_values_read_from_the_servers_are_reported_as_the_catalog_has_them(landscape):
    seed = Seeder(landscape)
    o = seed.pick(LIVE_ORDER)
    seed.sql("billing", "UPDATE orders SET total_cents = 123456.4 WHERE order_number = :o", o=o)
    landscape.reconcile("values")
    rows = landscape.golden(
        "SELECT d.actual, d.expected = CAST(g.amount AS VARCHAR) FROM discrepancies d"
        " JOIN golden_order g ON g.order_id = d.entity_key WHERE d.attribute = 'amount'"
    )
    assert rows == [("1234.56", True)]
    amount = landscape.golden(f"SELECT amount FROM snapshot_billing_order WHERE order_id = '{o}'")[
        0
    ][0]
    assert amount == Decimal("1234.56")


# -- read-only -------------------------------------------------------------------------------------


WRITES = (
    "INSERT INTO {t} (contact_id, email_address, display_name, country_code, lifecycle_status,"
    " created_on, deleted) VALUES ('C-999002', 'x@example.com', 'X', 'gb', 'Active',"
    " '2026-12-01 10:00:00', 0)",
    "UPDATE {t} SET deleted = 1",
    "DELETE FROM {t}",
    "DROP TABLE {t}",
)


def assert_writes_fail(url: sa.URL, table: str) -> None:
    engine = open_source(url)
    try:
        for statement in WRITES:
            with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
                conn.execute(sa.text(statement.format(t=table)))
    finally:
        engine.dispose()


def test_snapshot_connections_cannot_write_on_either_server(demo, postgres_engine, mariadb_engine):
    crm = demo.system_database("crm")
    copy_sqlite_table(crm, "contacts", postgres_engine, column_types=CRM_COLUMNS)
    copy_sqlite_table(crm, "contacts", mariadb_engine, column_types=CRM_COLUMNS)
    with postgres_engine.connect() as conn:
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    assert_writes_fail(postgres_engine.url, f'"{schema}".contacts')
    assert_writes_fail(mariadb_engine.url, "contacts")
    for engine in (postgres_engine, mariadb_engine):
        with engine.connect() as conn:
            live = conn.execute(sa.text("SELECT count(*) FROM contacts WHERE deleted = 0")).scalar()
            total = conn.execute(sa.text("SELECT count(*) FROM contacts")).scalar()
        assert total == 300 and 0 < live < 300, engine.dialect.name


def test_reconciling_never_writes_to_the_servers(landscape):
    def state() -> list:
        with landscape.postgres.connect() as pg, landscape.mariadb.connect() as my:
            return [
                pg.execute(
                    sa.text(
                        "SELECT md5(string_agg(contacts::text, ',' ORDER BY contact_id)) FROM contacts"
                    )
                ).scalar(),
                my.execute(sa.text("CHECKSUM TABLE accounts, orders")).fetchall(),
            ]

    before = state()
    landscape.reconcile("read-only")
    assert state() == before


def test_a_read_only_engine_reads_the_schema_its_postgres_url_names(
    demo, tmp_path, postgres_engine
):
    """`open_source(url)` must land where `url` says, like any engine made from it: here the
    fixture's schema, named by the URL's `options=-csearch_path=...`."""
    copy_sqlite_table(demo.system_database("crm"), "contacts", postgres_engine, column_types=CRM_COLUMNS)  # fmt: skip
    with postgres_engine.connect() as conn:
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    engine = open_source(postgres_engine.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_schema()")).scalar_one() == schema
            assert conn.execute(sa.text("SHOW transaction_read_only")).scalar_one() == "on"
        with connect(tmp_path / "search_path.duckdb") as con:
            assert snapshot_system(con, engine, current().mapping("crm", "customer")) == 300
    finally:
        engine.dispose()


def test_the_arrow_reader_of_a_server_is_read_only_too(postgres_engine, mariadb_engine):
    """Snapshots read servers through connectorx: its sessions must be as read-only as the
    engine's, and land in the schema the URL names."""
    import connectorx

    from sync_assets.connectors.sources import _ARROW_READERS

    probes = {
        "postgresql": "SELECT current_setting('transaction_read_only') AS ro, current_schema() AS s",
        "mysql": "SELECT CAST(@@session.tx_read_only AS CHAR) AS ro, DATABASE() AS s",
    }
    for server in (postgres_engine, mariadb_engine):
        with server.connect() as conn:
            expected_schema = conn.execute(
                sa.text(
                    "SELECT current_schema()"
                    if server.dialect.name == "postgresql"
                    else "SELECT DATABASE()"
                )
            ).scalar_one()
        engine = open_source(server.url)
        try:
            url, session = _ARROW_READERS[engine]
            probe = probes["postgresql" if engine.dialect.name == "postgresql" else "mysql"]
            [row] = connectorx.read_sql(
                url, probe, return_type="arrow", pre_execution_query=session or None
            ).to_pylist()
        finally:
            engine.dispose()
        assert str(row["ro"]).lower() in ("on", "1"), f"{engine.dialect.name} reader is writable"
        assert row["s"] == expected_schema
