"""SQL destinations on SQLite, PostgreSQL and MariaDB: dialect-aware upserts, soft and hard
deletes, the newer-than guard, the idempotency ledger, isolation of a bad row, compensation."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from sync_assets.connectors.mappings import MAPPINGS
from sync_assets.deliver.engine import Delivery
from sync_assets.deliver.sql import APPLIED, VERSIONS, SqlDestination

BILLING = MAPPINGS["billing", "customer"]
SUPPORT = MAPPINGS["support", "customer"]
V1, V2, V3 = (
    "2026-11-25T08:00:00.000000Z|e1",
    "2026-11-25T09:00:00.000000Z|e2",
    "2026-11-25T10:00:00.000000Z|e3",
)
_ids = itertools.count(1)

schema = sa.MetaData()
ACCOUNTS = sa.Table(
    "accounts",
    schema,
    sa.Column("acct_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_ref", sa.String(16), nullable=False, unique=True),
    sa.Column("billing_email", sa.String(200), nullable=False),
    sa.Column("plan", sa.String(20), nullable=False),
    sa.Column("account_state", sa.String(20), nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("updated", sa.String(10), nullable=False),
)
USERS = sa.Table(
    "users",
    schema,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("external_id", sa.String(16), nullable=False, unique=True),
    sa.Column("email", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("tier", sa.String(20), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("updated_at", sa.Integer, nullable=False),
)
ACCOUNT = {"email": "ada@example.com", "plan": "pro", "status": "active", "country": "GB"}


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def engine(request, tmp_path) -> sa.Engine:
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'system.sqlite'}")
    else:
        engine = request.getfixturevalue(f"{request.param}_engine")
    schema.create_all(engine)
    return engine


def delivery(key: str, action: str, values: dict, version: str = V1, **more) -> Delivery:
    n = next(_ids)
    return Delivery(f"c{n}", f"k{n}", "customer", key, action, values, version, **more)


def billing(engine: sa.Engine) -> SqlDestination:
    return SqlDestination("billing", engine, {"customer": BILLING})


def support(engine: sa.Engine) -> SqlDestination:
    return SqlDestination("support", engine, {"customer": SUPPORT})


def rows(engine: sa.Engine, table: sa.Table) -> dict[str, dict]:
    key = "customer_ref" if table is ACCOUNTS else "external_id"
    with engine.connect() as conn:
        return {r[key]: dict(r) for r in conn.execute(sa.select(table)).mappings()}


def statuses(outcomes) -> list[str]:
    return [o.status for o in outcomes]


def test_a_create_is_upserted_with_the_systems_own_conventions_and_next_account_number(engine):
    destination = billing(engine)
    outcomes = destination.deliver(
        [delivery("C-000001", "created", ACCOUNT), delivery("C-000002", "created", ACCOUNT)]
    )
    assert statuses(outcomes) == ["applied", "applied"]
    accounts = rows(engine, ACCOUNTS)
    assert accounts["C-000001"]["billing_email"] == "ADA@EXAMPLE.COM"
    assert (
        accounts["C-000001"]["plan"] == "PRO" and accounts["C-000001"]["account_state"] == "ACTIVE"
    )
    assert sorted(a["acct_no"] for a in accounts.values()) == [1, 2]
    assert outcomes[0].previous == {"row": None, "version": None}


def test_an_update_sets_only_the_corrected_columns(engine):
    destination = billing(engine)
    destination.deliver([delivery("C-000001", "created", ACCOUNT)])
    outcome = destination.deliver(
        [delivery("C-000001", "updated", {"email": "new@example.com"}, V2)]
    )
    assert statuses(outcome) == ["applied"]
    account = rows(engine, ACCOUNTS)["C-000001"]
    assert account["billing_email"] == "NEW@EXAMPLE.COM" and account["plan"] == "PRO"
    assert outcome[0].previous["row"]["billing_email"] == "ADA@EXAMPLE.COM"
    assert outcome[0].previous["version"] == V1


def test_the_same_correction_twice_is_applied_once(engine):
    destination = billing(engine)
    first = delivery("C-000001", "created", ACCOUNT)
    assert statuses(destination.deliver([first])) == ["applied"]
    assert statuses(destination.deliver([first])) == ["duplicate"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(APPLIED)).scalar() == 1


def test_a_row_drifted_again_is_corrected_again_at_the_same_version(engine):
    destination = billing(engine)
    destination.deliver([delivery("C-000001", "created", ACCOUNT, V2)])
    with engine.begin() as conn:
        conn.execute(ACCOUNTS.update().values(billing_email="BY.HAND@EXAMPLE.COM"))
    again = destination.deliver([delivery("C-000001", "updated", {"email": "ada@example.com"}, V2)])
    assert statuses(again) == ["applied"]
    assert rows(engine, ACCOUNTS)["C-000001"]["billing_email"] == "ADA@EXAMPLE.COM"


def test_a_late_delivery_cannot_roll_a_row_back(engine):
    destination = billing(engine)
    destination.deliver([delivery("C-000001", "created", ACCOUNT, V3)])
    late = destination.deliver([delivery("C-000001", "updated", {"email": "old@example.com"}, V2)])
    assert statuses(late) == ["superseded"]
    assert rows(engine, ACCOUNTS)["C-000001"]["billing_email"] == "ADA@EXAMPLE.COM"
    with engine.connect() as conn:
        assert conn.execute(sa.select(VERSIONS.c.version)).scalar() == V3


def test_deletes_follow_the_system_soft_in_billing_hard_in_support(engine):
    destination = billing(engine)
    destination.deliver([delivery("C-000001", "created", ACCOUNT)])
    assert statuses(destination.deliver([delivery("C-000001", "deleted", {}, V2)])) == ["applied"]
    assert rows(engine, ACCOUNTS)["C-000001"]["account_state"] == "CLOSED"

    desk = support(engine)
    user = {
        "email": "ada@example.com",
        "full_name": "Ada",
        "support_tier": "priority",
        "status": "active",
    }
    desk.deliver([delivery("C-000001", "created", user)])
    assert rows(engine, USERS)["C-000001"]["state"] == "enabled"
    assert statuses(desk.deliver([delivery("C-000001", "deleted", {}, V2)])) == ["applied"]
    assert "C-000001" not in rows(engine, USERS)


def test_a_create_revives_a_soft_deleted_row_in_place(engine):
    destination = billing(engine)
    destination.deliver([delivery("C-000001", "created", ACCOUNT)])
    destination.deliver([delivery("C-000001", "deleted", {}, V2)])
    number = rows(engine, ACCOUNTS)["C-000001"]["acct_no"]
    assert statuses(destination.deliver([delivery("C-000001", "created", ACCOUNT, V3)])) == [
        "applied"
    ]
    revived = rows(engine, ACCOUNTS)["C-000001"]
    assert revived["account_state"] == "ACTIVE" and revived["acct_no"] == number


def test_one_bad_row_fails_alone_and_the_rest_of_its_batch_is_applied(engine):
    destination = support(engine)
    good = {
        "email": "a@example.com",
        "full_name": "A",
        "support_tier": "standard",
        "status": "active",
    }
    outcomes = destination.deliver(
        [
            delivery("C-000001", "created", good),
            delivery("C-000002", "created", good | {"full_name": None}),  # NOT NULL in the system
            delivery("C-000003", "updated", {"full_name": "Nobody"}),  # no such row
            delivery("C-000004", "created", good),
        ]
    )
    assert statuses(outcomes) == ["applied", "permanent", "permanent", "applied"]
    assert "name" in outcomes[1].error.lower() or "null" in outcomes[1].error.lower()
    assert "no row to update" in outcomes[2].error
    assert sorted(rows(engine, USERS)) == ["C-000001", "C-000004"]


def test_a_compensation_restores_the_row_only_while_the_destination_holds_what_it_undoes(engine):
    destination = billing(engine)
    destination.deliver([delivery("C-000001", "created", ACCOUNT)])
    applied = destination.deliver(
        [delivery("C-000001", "updated", {"email": "new@example.com"}, V2)]
    )
    undo = delivery("C-000001", "compensated", applied[0].previous, V2)
    assert statuses(destination.deliver([undo])) == ["applied"]
    assert rows(engine, ACCOUNTS)["C-000001"]["billing_email"] == "ADA@EXAMPLE.COM"
    with engine.connect() as conn:  # the version held before the undone correction, back too
        assert conn.execute(sa.select(VERSIONS.c.version)).scalar() == V1

    destination.deliver([delivery("C-000001", "updated", {"email": "newer@example.com"}, V3)])
    stale_undo = delivery("C-000001", "compensated", {"row": None, "version": V1}, V2)
    assert statuses(destination.deliver([stale_undo])) == ["superseded"]
    assert rows(engine, ACCOUNTS)["C-000001"]["billing_email"] == "NEWER@EXAMPLE.COM"


def test_an_unreachable_server_is_a_transient_failure():
    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    outcomes = billing(engine).deliver([delivery("C-000001", "created", ACCOUNT)])
    assert statuses(outcomes) == ["transient"]
    assert "OperationalError" in outcomes[0].error
