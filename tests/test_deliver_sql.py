"""SQL destinations on SQLite, PostgreSQL and MariaDB: dialect-aware upserts, soft and hard
deletes, the newer-than guard, the idempotency ledger, isolation of a bad row, compensation."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from sync_assets.deliver.engine import Delivery
from sync_assets.deliver.sql import APPLIED, VERSIONS, SqlDestination
from sync_assets.project import current

BILLING = current().mappings["billing", "customer"]
SUPPORT = current().mappings["support", "customer"]
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


# -- the re-check just before writing: what the reconciliation saw, against the row now ----------

SEEN_ACCOUNT = {"present": True, "deleted": False, "values": ACCOUNT}
"""What a reconciliation saw of the account created with ACCOUNT: catalog form, so lower case
where billing writes upper case (the comparison follows the catalog's rules)."""


def applied_keys(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(APPLIED.c.idempotency_key)).scalars())


def test_a_row_edited_after_the_reconciliation_is_not_overwritten(engine):
    destination = billing(engine)
    destination.deliver([delivery("C-000001", "created", ACCOUNT)])
    destination.deliver([delivery("C-000002", "created", ACCOUNT)])
    with engine.begin() as conn:  # someone edits C-000001 between reconciliation and delivery
        conn.execute(
            ACCOUNTS.update()
            .where(ACCOUNTS.c.customer_ref == "C-000001")
            .values(billing_email="BY.HAND@EXAMPLE.COM")
        )
    edited = delivery("C-000001", "updated", {"plan": "free"}, V2, seen=SEEN_ACCOUNT)
    untouched = delivery("C-000002", "updated", {"plan": "free"}, V2, seen=SEEN_ACCOUNT)

    outcomes = destination.deliver([edited, untouched])

    assert statuses(outcomes) == ["changed", "applied"]
    assert "email" in outcomes[0].error and "not overwritten" in outcomes[0].error
    accounts = rows(engine, ACCOUNTS)
    assert (accounts["C-000001"]["plan"], accounts["C-000001"]["billing_email"]) == (
        "PRO",
        "BY.HAND@EXAMPLE.COM",
    )
    assert accounts["C-000002"]["plan"] == "FREE"
    assert edited.idempotency_key not in applied_keys(engine)


def test_a_row_removed_or_closed_after_the_reconciliation_is_not_written_back(engine):
    destination = billing(engine)
    destination.deliver([delivery(key, "created", ACCOUNT) for key in ("C-000001", "C-000002")])
    with engine.begin() as conn:
        conn.execute(ACCOUNTS.delete().where(ACCOUNTS.c.customer_ref == "C-000001"))
        conn.execute(
            ACCOUNTS.update()
            .where(ACCOUNTS.c.customer_ref == "C-000002")
            .values(account_state="CLOSED")
        )
    outcomes = destination.deliver(
        [
            delivery("C-000001", "updated", {"plan": "free"}, V2, seen=SEEN_ACCOUNT),
            delivery("C-000002", "updated", {"plan": "free"}, V2, seen=SEEN_ACCOUNT),
        ]
    )
    assert statuses(outcomes) == ["changed", "changed"]
    assert "removed" in outcomes[0].error and "deleted" in outcomes[1].error
    assert "C-000001" not in rows(engine, ACCOUNTS)
    assert rows(engine, ACCOUNTS)["C-000002"]["plan"] == "PRO"


def test_a_create_where_someone_created_the_row_meanwhile_is_not_written(engine):
    destination = billing(engine)
    destination.deliver([delivery("C-000001", "created", ACCOUNT | {"plan": "free"})])
    absent = {"present": False, "deleted": False, "values": {}}

    outcome = destination.deliver([delivery("C-000001", "created", ACCOUNT, V2, seen=absent)])

    assert statuses(outcome) == ["changed"] and "created" in outcome[0].error
    assert rows(engine, ACCOUNTS)["C-000001"]["plan"] == "FREE"


def test_a_row_that_already_holds_the_values_is_not_written(engine):
    destination = billing(engine)
    destination.deliver([delivery("C-000001", "created", ACCOUNT)])
    stamp_before = rows(engine, ACCOUNTS)["C-000001"]["updated"]
    # The reconciliation saw a stale e-mail; someone fixed it by hand before the delivery.
    saw = {**SEEN_ACCOUNT, "values": ACCOUNT | {"email": "stale@example.com"}}
    fix = delivery("C-000001", "updated", {"email": "ADA@example.com "}, V2, seen=saw)
    already_closed = delivery("C-000002", "deleted", {}, V2, seen=SEEN_ACCOUNT)  # no row at all

    outcomes = destination.deliver([fix, already_closed])

    assert statuses(outcomes) == ["in_sync", "in_sync"]
    assert not {fix.idempotency_key, already_closed.idempotency_key} & applied_keys(engine)
    assert rows(engine, ACCOUNTS)["C-000001"]["updated"] == stamp_before  # not even the stamp
    with engine.connect() as conn:
        assert conn.execute(sa.select(VERSIONS.c.version)).scalar() == V1


def test_a_lossy_vocabulary_and_the_systems_own_forms_are_not_a_change(engine):
    desk = support(engine)
    user = {"email": "ada@example.com", "full_name": "Ada  Lovelace", "support_tier": "priority", "status": "suspended"}  # fmt: skip
    desk.deliver([delivery("C-000001", "created", user)])
    assert rows(engine, USERS)["C-000001"]["state"] == "disabled"
    # Support's `disabled` stands for inactive or suspended: the snapshot says so.
    saw = {"present": True, "deleted": False, "values": user | {"status": "inactive|suspended", "full_name": "Ada Lovelace"}}  # fmt: skip

    rename = desk.deliver(
        [delivery("C-000001", "updated", {"full_name": "Ada King"}, V2, seen=saw)]
    )
    suspend = desk.deliver([delivery("C-000001", "updated", {"status": "inactive"}, V3, seen=saw | {"values": saw["values"] | {"full_name": "Ada King"}})])  # fmt: skip

    assert statuses(rename) == ["applied"]
    assert rows(engine, USERS)["C-000001"]["name"] == "Ada King"
    assert statuses(suspend) == ["in_sync"]  # 'disabled' already says inactive
