"""Snapshots: raw chunks land in DuckDB and come out in the catalog's form, typed like golden."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import duckdb
import pytest

from sync_assets.connectors.mappings import Field, Mapping, SoftDelete
from sync_assets.connectors.sources import to_batch
from sync_assets.project import current
from sync_assets.reconcile.diff import equal
from sync_assets.reconcile.snapshot import load_snapshot
from sync_assets.warehouse import golden_table_ddl

PEOPLE = Mapping(
    system="support",
    entity="customer",
    table="people",
    key=("region", "id"),
    canonical_key=Field("customer_id", "ref"),
    fields=(
        Field("email", "mail", "lower"),
        Field("full_name", "name"),
        Field("phone", "tel", "phone"),
        Field("country", "cc", "upper"),
        Field("marketing_opt_in", "optin", "boolean"),
        Field(
            "status",
            "state",
            "vocabulary",
            vocabulary={"enabled": "active", "disabled": ("suspended", "inactive")},
        ),
    ),
    soft_delete=SoftDelete("gone", "yes"),
)
PEOPLE_COLUMNS = ("region", "id", "ref", "mail", "name", "tel", "cc", "optin", "state", "gone")


def people(*rows: tuple) -> list:
    return [to_batch(PEOPLE_COLUMNS, list(rows))]


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    yield con
    con.close()


def test_values_are_normalized_to_the_catalog_form(con):
    batches = people(
        ("eu", 1, " C-000001 ", " Ada@Example.COM ", "Ada  Lovelace", "+44 7700 900123", "gb", 1,
         "Enabled", "no"),
        ("eu", 2, "C-000002", "bob@example.com", "", "0049 151 2345-678", "de", "0",
         "DISABLED", "YES"),
        ("us", 1, "C-000003", "c@example.com", "Cy", None, "us", None, "archived", None),
    )  # fmt: skip
    assert load_snapshot(con, PEOPLE, batches) == 3
    rows = con.execute("SELECT * FROM snapshot_support_customer ORDER BY customer_id").fetchall()
    assert rows == [
        ("C-000001", "eu|1", "ada@example.com", "Ada  Lovelace", "+447700900123", "GB", True,
         "active", False),
        ("C-000002", "eu|2", "bob@example.com", None, "+491512345678", "DE", False,
         "inactive|suspended", True),
        ("C-000003", "us|1", "c@example.com", "Cy", None, "US", None, "archived", False),
    ]  # fmt: skip


ORDERS = Mapping(
    system="billing",
    entity="order",
    table="orders",
    key=("no",),
    canonical_key=Field("order_id", "no"),
    fields=(
        Field("amount", "cents", "cents"),
        Field("placed_at", "placed", "timestamp", format="%d/%m/%Y %H:%M"),
        Field("currency", "cur", "upper"),
    ),
    soft_delete=SoftDelete("voided", "1"),
)


def test_chunks_append_and_a_new_load_replaces_the_snapshot(con):
    def chunk(*rows):
        return to_batch(("no", "cents", "placed", "cur", "voided"), list(rows))

    first = [chunk(("O-0000001", 10749, "04/10/2026 16:07", "eur", 0)), chunk(("O-0000002", 5, "31/12/2026 23:59", "usd", 1))]  # fmt: skip
    assert load_snapshot(con, ORDERS, iter(first)) == 2
    assert con.execute("SELECT * FROM snapshot_billing_order ORDER BY order_id").fetchall() == [
        ("O-0000001", "O-0000001", Decimal("107.49"), datetime(2026, 10, 4, 16, 7, tzinfo=UTC), "EUR", False),
        ("O-0000002", "O-0000002", Decimal("0.05"), datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "USD", True),
    ]  # fmt: skip
    assert load_snapshot(con, ORDERS, [chunk(("O-0000003", 0, "bad date", "gbp", 0))]) == 1
    assert con.execute("SELECT order_id, amount, placed_at FROM snapshot_billing_order").fetchall() == [
        ("O-0000003", Decimal("0.00"), None)
    ]  # fmt: skip


def test_snapshot_columns_are_typed_like_the_golden_table(con):
    con.execute(golden_table_ddl(current().entity("order")))
    load_snapshot(con, ORDERS, [])

    def types(table: str) -> dict[str, str]:
        return dict(
            con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall()
        )

    snapshot, golden = types("snapshot_billing_order"), types("golden_order")
    assert {name: golden[name] for name in ("order_id", *ORDERS.attributes)} == {
        name: snapshot[name] for name in ("order_id", *ORDERS.attributes)
    }
    assert snapshot["is_deleted"] == "BOOLEAN"


def test_a_key_held_twice_keeps_the_live_row_and_rows_without_key_are_dropped(con):
    batches = people(
        ("eu", 1, "C-000001", "old@example.com", "A", None, "gb", None, "enabled", "yes"),
        ("eu", 2, "C-000001", "new@example.com", "A", None, "gb", None, "enabled", "no"),
        ("eu", 3, None, "nobody@example.com", "N", None, "gb", None, "enabled", "no"),
    )
    assert load_snapshot(con, PEOPLE, batches) == 1
    assert con.execute("SELECT email, system_key FROM snapshot_support_customer").fetchall() == [
        ("new@example.com", "eu|2")
    ]


@pytest.mark.parametrize(
    ("attribute", "left", "right", "same"),
    [
        (("order", "placed_at"), "TIMESTAMPTZ '2026-10-04 16:07:59+00'", "TIMESTAMPTZ '2026-10-04 16:07:00+00'", True),
        (("order", "placed_at"), "TIMESTAMPTZ '2026-10-04 16:08:00+00'", "TIMESTAMPTZ '2026-10-04 16:07:00+00'", False),
        (("order", "amount"), "107.49::DECIMAL(18,2)", "107.50::DECIMAL(18,2)", True),
        (("order", "amount"), "107.49::DECIMAL(18,2)", "107.51::DECIMAL(18,2)", False),
        (("order", "amount"), "NULL::DECIMAL(18,2)", "0::DECIMAL(18,2)", False),
        (("customer", "email"), "' Ada@Example.com'", "'ada@example.com'", True),
        (("customer", "full_name"), "'Ada  Lovelace '", "'Ada Lovelace'", True),
        (("customer", "full_name"), "'ada lovelace'", "'Ada Lovelace'", False),
        (("customer", "phone"), "''", "NULL", True),
        (("customer", "phone"), "'+4477'", "NULL", False),
        (("customer", "status"), "'suspended'", "'inactive|suspended'", True),
        (("customer", "status"), "'active'", "'inactive|suspended'", False),
        (("customer", "status"), "NULL", "'active'", False),
        (("customer", "marketing_opt_in"), "NULL", "false", False),
    ],
)  # fmt: skip
def test_comparison_rules_of_the_catalog(con, attribute, left, right, same):
    a = current().entity(attribute[0]).attribute(attribute[1])
    assert con.execute(f"SELECT {equal(a, left, right)}").fetchone() == (same,)


def test_a_failing_read_leaves_the_old_snapshot(con):
    def chunk(*rows):
        return to_batch(("no", "cents", "placed", "cur", "voided"), list(rows))

    assert load_snapshot(con, ORDERS, [chunk(("O-0000001", 1, "04/10/2026 16:07", "eur", 0))]) == 1

    def broken():
        yield chunk(("O-0000002", 2, "04/10/2026 16:07", "eur", 0))
        raise ConnectionError("the system went away")

    with pytest.raises(ConnectionError):
        load_snapshot(con, ORDERS, broken())
    assert con.execute("SELECT order_id FROM snapshot_billing_order").fetchall() == [("O-0000001",)]
