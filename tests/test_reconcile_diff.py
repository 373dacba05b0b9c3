"""The diff on the demo landscape: a fresh demo is consistent, and seeded drift of every kind is
found exactly (no more, no fewer) with the right kind and resolution, each divergence once."""

from __future__ import annotations

import sqlite3

from conftest import first_unused_key

from sync_assets.connectors.sources import open_source, sqlite_url
from sync_assets.project import current
from sync_assets.reconcile.diff import diff_entity, diff_system, summarize
from sync_assets.reconcile.snapshot import snapshot_system
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect

Found = tuple[str, str, str, str, str | None, str | None]
"""(kind, resolution, system, entity_key, attribute, other_system)"""


def reconcile(folder: DataFolder, run_id: str) -> list[Found]:
    """Snapshot every system, diff each against golden and each pair; this run's findings."""
    with connect(folder.warehouse) as con:
        for m in current().mappings.values():
            snapshot_system(con, open_source(sqlite_url(folder.system_database(m.system))), m)
        for entity_name in current().entities:
            diff_entity(con, current().mappings_for(entity_name), run_id)
        return con.execute(
            "SELECT kind, resolution, system, entity_key, attribute, other_system"
            " FROM discrepancies WHERE run_id = ?",
            [run_id],
        ).fetchall()


def test_a_fresh_demo_has_no_discrepancies(landscape):
    assert reconcile(landscape, "fresh") == []
    with connect(landscape.warehouse) as con:
        crm, orders, users, disabled = (
            con.execute(
                "SELECT (SELECT count(*) FROM snapshot_crm_customer),"
                " (SELECT count(*) FROM snapshot_billing_order),"
                " (SELECT count(*) FROM snapshot_support_customer),"
                " (SELECT count(*) FROM snapshot_support_customer WHERE status = 'inactive|suspended')"
            ).fetchone()
            or ()
        )
    assert (crm, orders) == (300, 1200)
    assert users > 100
    assert disabled > 0  # the lossy support vocabulary was compared, without false alarms


class Seeder:
    """Changes the copied systems' SQLite files and picks golden records to change."""

    def __init__(self, folder: DataFolder):
        self.folder = folder
        self.used: set[str] = set()

    def sql(self, system: str, statement: str, params: tuple = ()) -> None:
        con = sqlite3.connect(self.folder.system_database(system))
        with con:
            assert con.execute(statement, params).rowcount == 1, statement
        con.close()

    def keys(self, system: str, query: str) -> set[str]:
        con = sqlite3.connect(self.folder.system_database(system))
        found = {key for (key,) in con.execute(query)}
        con.close()
        return found

    def pick(self, query: str, *, account: bool | None = None, user: bool | None = None) -> str:
        """The first key the golden query returns that no other seed has taken, with or without
        a live billing account or a support user as asked."""
        accounts = self.keys("billing", "SELECT customer_ref FROM accounts WHERE account_state <> 'CLOSED'")  # fmt: skip
        users = self.keys("support", "SELECT external_id FROM users")
        with connect(self.folder.warehouse) as con:
            candidates = con.execute(query).fetchall()
        return first_unused_key(
            candidates, self.used, accounts=accounts, users=users, account=account, user=user
        )


LIVE = "SELECT customer_id FROM golden_customer WHERE lifecycle_state = 'live'"
LIVE_ORDER = "SELECT order_id FROM golden_order WHERE lifecycle_state = 'live' ORDER BY order_id"


def seed_every_kind(seed: Seeder) -> set[Found]:
    """Seed drift of every kind into the systems; what the diff must find."""
    expected: set[Found] = set()

    # missing: a support user gone (support does not own the lifecycle: drift) ...
    c = seed.pick(LIVE + " ORDER BY 1", user=True)
    seed.sql("support", "DELETE FROM users WHERE external_id = ?", (c,))
    expected.add(("missing", "drift", "support", c, None, None))
    # ... and a billing order gone (billing owns orders' lifecycle: an event was missed)
    o = seed.pick(LIVE_ORDER)
    seed.sql("billing", "DELETE FROM orders WHERE order_number = ?", (o,))
    expected.add(("missing", "missed_event", "billing", o, None, None))

    # soft deletes: the CRM (lifecycle owner) marks a live customer deleted; billing voids a live
    # order (owner); billing closes a live customer's account (not the owner: drift)
    c = seed.pick(LIVE + " ORDER BY 1 DESC", user=False)
    seed.sql("crm", "UPDATE contacts SET deleted = 1 WHERE contact_id = ?", (c,))
    expected.add(("missing", "missed_event", "crm", c, None, None))
    o = seed.pick(LIVE_ORDER + " DESC")
    seed.sql("billing", "UPDATE orders SET voided = 1 WHERE order_number = ?", (o,))
    expected.add(("missing", "missed_event", "billing", o, None, None))
    c = seed.pick(LIVE + " ORDER BY 1", account=True)
    seed.sql("billing", "UPDATE accounts SET account_state = 'CLOSED' WHERE customer_ref = ?", (c,))
    expected.add(("missing", "drift", "billing", c, None, None))

    # extra: a contact the golden record never heard of (the CRM owns the lifecycle) and a support
    # user for a customer the golden record has deleted (drift)
    seed.sql(
        "crm",
        "INSERT INTO contacts VALUES ('C-999001', 'new@example.com', 'New Person', NULL, 'gb',"
        " 'Active', NULL, NULL, '2026-12-01 10:00:00', 0)",
    )
    expected.add(("extra", "missed_event", "crm", "C-999001", None, None))
    c = seed.pick("SELECT customer_id FROM golden_customer WHERE lifecycle_state = 'deleted'")
    seed.sql(
        "support",
        "INSERT INTO users (external_id, email, name, tier, state, updated_at)"
        " VALUES (?, 'gone@example.com', 'Gone', 'Standard', 'enabled', 0)",
        (c,),
    )
    expected.add(("extra", "drift", "support", c, None, None))

    # a value changed in the owner (missed event): the CRM's email. Billing's copy now differs
    # from the CRM's too, but that is the same divergence: one finding, billing's value in views
    c = seed.pick(LIVE + " ORDER BY 1", account=True, user=False)
    seed.sql("crm", "UPDATE contacts SET email_address = 'moved@example.org' WHERE contact_id = ?", (c,))  # fmt: skip
    expected.add(("mismatch", "missed_event", "crm", c, "email", None))
    # ... and billing's plan (billing owns plan), which the CRM also holds
    c = seed.pick(LIVE + " ORDER BY 1 DESC", account=True)
    seed.sql("billing", "UPDATE accounts SET plan = CASE plan WHEN 'PRO' THEN 'FREE' ELSE 'PRO' END WHERE customer_ref = ?", (c,))  # fmt: skip
    expected.add(("mismatch", "missed_event", "billing", c, "plan", None))
    # ... and an order amount well beyond the tolerance
    o = seed.pick(LIVE_ORDER)
    seed.sql("billing", "UPDATE orders SET total_cents = total_cents + 250 WHERE order_number = ?", (o,))  # fmt: skip
    expected.add(("mismatch", "missed_event", "billing", o, "amount", None))

    # a value changed in a non-owner (drift): billing's country (the CRM owns it)
    c = seed.pick(LIVE + " ORDER BY 1", account=True)
    seed.sql("billing", "UPDATE accounts SET country = CASE country WHEN 'SE' THEN 'NO' ELSE 'SE' END WHERE customer_ref = ?", (c,))  # fmt: skip
    expected.add(("mismatch", "drift", "billing", c, "country", None))
    # ... and support disables an active customer: its mismatch against the golden record is the
    # one finding, not again against the CRM (the owner) and billing
    c = seed.pick(LIVE + " AND status = 'active' ORDER BY 1", account=True, user=True)
    seed.sql("support", "UPDATE users SET state = 'disabled' WHERE external_id = ?", (c,))
    expected.add(("mismatch", "drift", "support", c, "status", None))

    # two systems that own neither the record nor its email hold a customer the golden record
    # and the CRM never heard of, differently: each is extra, an orphan (reported, never
    # deleted), and their difference, which no mismatch explains, is a divergence of its own
    # (unowned: the owner's diff decides)
    seed.sql(
        "billing",
        "INSERT INTO accounts VALUES ((SELECT 1 + max(acct_no) FROM accounts), 'C-999002',"
        " 'ONE@EXAMPLE.COM', 'PRO', 'ACTIVE', 'GB', '01/12/2026')",
    )
    seed.sql(
        "support",
        "INSERT INTO users (external_id, email, name, tier, state, updated_at)"
        " VALUES ('C-999002', 'other@example.com', 'Same Name', 'Standard', 'enabled', 0)",
    )
    expected |= {
        ("extra", "orphan", "billing", "C-999002", None, None),
        ("extra", "orphan", "support", "C-999002", None, None),
        ("divergence", "unowned", "support", "C-999002", "email", "billing"),
    }

    # differences that must NOT count: case and spacing where the catalog ignores them, an empty
    # phone for a missing one, an amount within tolerance
    c = seed.pick(LIVE + " ORDER BY 1 DESC", user=True)
    seed.sql("support", "UPDATE users SET email = '  ' || upper(email) || ' ', name = replace(name, ' ', '   ') || ' ' WHERE external_id = ?", (c,))  # fmt: skip
    c = seed.pick(LIVE + " ORDER BY 1 DESC", account=True)
    seed.sql("billing", "UPDATE accounts SET billing_email = lower(billing_email) WHERE customer_ref = ?", (c,))  # fmt: skip
    c = seed.pick("SELECT customer_id FROM golden_customer WHERE lifecycle_state = 'live' AND phone IS NULL ORDER BY 1")  # fmt: skip
    seed.sql("crm", "UPDATE contacts SET phone = '' WHERE contact_id = ?", (c,))
    o = seed.pick(LIVE_ORDER + " DESC")
    seed.sql("billing", "UPDATE orders SET total_cents = total_cents + 1 WHERE order_number = ?", (o,))  # fmt: skip
    return expected


def test_seeded_drift_is_found_exactly(landscape):
    expected = seed_every_kind(Seeder(landscape))
    found = reconcile(landscape, "seeded")
    assert sorted(found, key=str) == sorted(expected, key=str)
    assert len(found) == len(expected)  # nothing reported twice


def test_a_drifted_copy_that_others_also_hold_is_one_finding_with_every_view(landscape):
    # support (which owns no status) disables an active customer whom the CRM (the owner) and
    # billing also hold: one divergence, reported once, against the golden record
    seed = Seeder(landscape)
    c = seed.pick(LIVE + " AND status = 'active' ORDER BY 1", account=True, user=True)
    seed.sql("support", "UPDATE users SET state = 'disabled' WHERE external_id = ?", (c,))
    reconcile(landscape, "one")
    with connect(landscape.warehouse) as con:
        found = con.execute(
            "SELECT kind, resolution, system, entity_key, attribute, expected, actual, views"
            " FROM discrepancies WHERE run_id = 'one'"
        ).fetchall()
        summary = summarize(con, "one")
    assert found == [
        (
            "mismatch",
            "drift",
            "support",
            c,
            "status",
            "active",
            "inactive|suspended",
            {"crm": "active", "billing": "active"},
        )
    ]
    assert summary.counts == {"missing": 0, "extra": 0, "mismatch": 1, "divergence": 0}


def test_a_divergence_no_mismatch_explains_is_one_finding_with_the_views(landscape):
    seed = Seeder(landscape)
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
    reconcile(landscape, "pair")
    with connect(landscape.warehouse) as con:
        found = con.execute(
            "SELECT kind, system, other_system, expected, actual, views FROM discrepancies"
            " WHERE run_id = 'pair' AND attribute IS NOT NULL"
        ).fetchall()
        one, other = con.execute(
            "SELECT pii_mask('one@example.com'), pii_mask('other@example.com')"
        ).fetchone()
    # e-mail is PII: the values are stored as keyed fingerprints, equal where the values are
    assert found == [("divergence", "support", "crm", one, other, {"crm": one})]


def test_discrepancies_carry_expected_and_actual_values(landscape):
    seed = Seeder(landscape)
    o = seed.pick(LIVE_ORDER)
    seed.sql("billing", "UPDATE orders SET total_cents = 123456 WHERE order_number = ?", (o,))
    c = seed.pick(LIVE + " AND status = 'active' ORDER BY 1", user=True)
    seed.sql("support", "UPDATE users SET state = 'disabled' WHERE external_id = ?", (c,))
    reconcile(landscape, "values")
    with connect(landscape.warehouse) as con:
        amount = con.execute(
            "SELECT d.expected, d.actual, CAST(g.amount AS VARCHAR) FROM discrepancies d"
            " JOIN golden_order g ON g.order_id = d.entity_key WHERE d.attribute = 'amount'"
        ).fetchall()
        status = con.execute(
            "SELECT expected, actual FROM discrepancies WHERE attribute = 'status' AND other_system IS NULL"
        ).fetchall()  # fmt: skip
    assert len(amount) == 1
    assert amount[0][0] == amount[0][2] and amount[0][1] == "1234.56"
    assert status == [("active", "inactive|suspended")]


def test_history_is_appended_per_run_and_a_retried_run_replaces_its_own(landscape):
    seed = Seeder(landscape)
    c = seed.pick(LIVE + " ORDER BY 1", user=True)
    seed.sql("support", "DELETE FROM users WHERE external_id = ?", (c,))
    assert len(reconcile(landscape, "run-1")) == 1
    assert len(reconcile(landscape, "run-1")) == 1  # a retry, not a second finding
    assert len(reconcile(landscape, "run-2")) == 1
    with connect(landscape.warehouse) as con:
        runs = con.execute("SELECT run_id, count(*) FROM discrepancies GROUP BY 1 ORDER BY 1").fetchall()  # fmt: skip
        summary = summarize(con, "run-2")
        result = diff_system(con, current().mappings["support", "customer"], "run-3")
    assert runs == [("run-1", 1), ("run-2", 1)]
    assert summary.counts == {"missing": 1, "extra": 0, "mismatch": 0, "divergence": 0}
    assert summary.by_resolution == {"drift": 1}
    assert [(row["kind"], row["system"], row["entity_key"]) for row in summary.sample] == [
        ("missing", "support", c)
    ]
    assert (result.total, result.counts["missing"]) == (1, 1)


def test_reconciling_never_writes_to_the_systems(landscape):
    before = landscape.system_database("billing").read_bytes()
    reconcile(landscape, "read-only")
    assert landscape.system_database("billing").read_bytes() == before
