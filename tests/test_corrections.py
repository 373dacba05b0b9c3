"""From discrepancies to what must happen, without Dagster: correction events for drift (only
what the target holds and does not own, with idempotency keys that never repeat a delivered
correction) and the owners' missed events."""

from __future__ import annotations

import json
import sqlite3

from test_reconcile_diff import reconcile

from sync_assets.deliver.corrections import emit_corrections
from sync_assets.project import current
from sync_assets.reconcile.missed import missed_events
from sync_assets.security.fields import open_correction
from sync_assets.security.sql import pii_of
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect


def change(folder: DataFolder, system: str, sql: str, *params: object) -> None:
    with sqlite3.connect(folder.system_database(system)) as con:
        con.execute(sql, params)


def customers_everywhere(folder: DataFolder) -> set[str]:
    """Customers with a support user and a live billing account."""
    with sqlite3.connect(folder.system_database("support")) as con:
        users = {k for (k,) in con.execute("SELECT external_id FROM users")}
    with sqlite3.connect(folder.system_database("billing")) as con:
        live = "SELECT customer_ref FROM accounts WHERE account_state <> 'CLOSED'"
        return users & {k for (k,) in con.execute(live)}


def a_customer_everywhere(folder: DataFolder) -> str:
    return min(customers_everywhere(folder))


def corrections(folder: DataFolder, *, sealed: bool = False) -> list[dict]:
    """The corrections, their PII opened (as delivery reads them), or as stored (`sealed`)."""
    with connect(folder.warehouse) as con:
        cursor = con.execute("SELECT * FROM corrections ORDER BY target, entity_key")
        names = [d[0] for d in cursor.description]
        stored = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        sealer = pii_of(con).sealer
    if sealed:
        return stored
    return [open_correction(sealer, current().entity(row["entity"]), row) for row in stored]


def test_drift_becomes_one_correction_per_record_with_only_what_the_target_does_not_own(landscape):
    key = a_customer_everywhere(landscape)
    change(landscape, "billing", "UPDATE accounts SET billing_email = 'X@Y.IO' WHERE customer_ref = ?", key)  # fmt: skip
    flipped = "CASE state WHEN 'enabled' THEN 'disabled' ELSE 'enabled' END"
    change(landscape, "support", f"UPDATE users SET name = 'Nobody', state = {flipped} WHERE external_id = ?", key)  # fmt: skip
    reconcile(landscape, "run-1")

    with connect(landscape.warehouse) as con:
        emitted = emit_corrections(con, "run-1")
        golden = con.execute(
            "SELECT email, full_name, status, last_version, last_correlation_id FROM golden_customer "
            "WHERE customer_id = ?",
            [key],
        ).fetchall()[0]

    assert emitted.emitted == 2 and emitted.by_target == {"billing": 1, "support": 1}
    billing, support = corrections(landscape)
    # Only what differs: billing's plan, status and country agree; e-mail is the CRM's.
    assert json.loads(billing["attributes"]) == {"email": golden[0]}
    stored = corrections(landscape, sealed=True)[0]  # as stored, e-mail (PII) is sealed
    assert json.loads(stored["attributes"])["email"].startswith("enc:")
    assert golden[0] not in stored["attributes"] + stored["event"] + stored["seen"]
    assert json.loads(support["attributes"]) == {"full_name": golden[1], "status": golden[2]}
    assert billing["action"] == support["action"] == "updated"
    assert billing["golden_version"] == golden[3] and billing["correlation_id"] == golden[4]
    assert billing["causation_id"] == f"run-1/billing/customer/{key}"
    event = json.loads(billing["event"])
    assert (event["type"], event["subject"], event["target"]) == (
        "customer.updated",
        key,
        "billing",
    )
    assert event["idempotencykey"] == billing["idempotency_key"] and event["specversion"] == "1.0"


def test_an_open_correction_is_not_emitted_again_and_a_delivered_one_gets_a_new_key(landscape):
    key = a_customer_everywhere(landscape)
    change(landscape, "billing", "UPDATE accounts SET billing_email = 'X@Y.IO' WHERE customer_ref = ?", key)  # fmt: skip
    reconcile(landscape, "run-1")
    reconcile(landscape, "run-2")
    with connect(landscape.warehouse) as con:
        first = emit_corrections(con, "run-1")
        still_pending = emit_corrections(con, "run-2")
        con.execute("UPDATE corrections SET status = 'delivered'")
        redrifted = emit_corrections(con, "run-2")  # the same drift, back after delivery

    assert (first.emitted, still_pending.emitted, still_pending.already_open) == (1, 0, 1)
    assert redrifted.emitted == 1
    keys = [c["idempotency_key"] for c in corrections(landscape)]
    assert len(set(keys)) == 2 and {k.rsplit(".", 1)[1] for k in keys} == {"0", "1"}
    assert len({k.rsplit(".", 1)[0] for k in keys}) == 1  # same target, key and values


def test_a_missing_record_is_created_whole_and_an_extra_one_deleted(landscape):
    key = a_customer_everywhere(landscape)
    change(landscape, "support", "DELETE FROM users WHERE external_id = ?", key)
    change(landscape, "billing", "UPDATE accounts SET account_state = 'CLOSED' WHERE customer_ref = ?", key)  # fmt: skip
    reconcile(landscape, "run-1")
    with connect(landscape.warehouse) as con:
        emit_corrections(con, "run-1")
    found = {c["target"]: c for c in corrections(landscape)}
    assert {t: c["action"] for t, c in found.items()} == {
        "billing": "created",
        "support": "created",
    }
    assert set(json.loads(found["support"]["attributes"])) == {"email", "full_name", "support_tier", "status"}  # fmt: skip


def test_an_owners_change_becomes_the_owners_own_event(landscape):
    key = a_customer_everywhere(landscape)
    change(landscape, "crm", "UPDATE contacts SET email_address = 'new@example.com' WHERE contact_id = ?", key)  # fmt: skip
    change(landscape, "billing", "UPDATE accounts SET plan = 'ENTERPRISE' WHERE customer_ref = ?", key)  # fmt: skip
    reconcile(landscape, "run-1")
    with connect(landscape.warehouse) as con:
        events = missed_events(con, "run-1")
        emitted = emit_corrections(con, "run-1")

    assert {s: [(e["type"], e["subject"], e["data"]) for e in found] for s, found in events.items()} == {
        "crm": [("customer.reconciled", key, {"email": "new@example.com"})],
        "billing": [("customer.reconciled", key, {"plan": "enterprise"})],
    }  # fmt: skip
    assert all(e["source"] == "/syncfabric/reconciler" for found in events.values() for e in found)
    assert emitted.emitted == 0, "the owners are right: nothing to correct until golden has it"


def test_a_record_with_an_owners_missed_event_is_withheld_until_golden_has_it(landscape):
    key = a_customer_everywhere(landscape)
    other = min(customers_everywhere(landscape) - {key})
    # Billing owns the plan (a missed event) and holds the CRM's e-mail (drift), on one record;
    # support drifted on another record, which has no missed event.
    change(landscape, "billing", "UPDATE accounts SET billing_email = 'X@Y.IO', plan = 'ENTERPRISE' WHERE customer_ref = ?", key)  # fmt: skip
    change(landscape, "support", "UPDATE users SET name = 'Nobody' WHERE external_id IN (?, ?)", key, other)  # fmt: skip
    reconcile(landscape, "run-1")

    with connect(landscape.warehouse) as con:
        emitted = emit_corrections(con, "run-1")

    assert (emitted.emitted, emitted.withheld) == (1, 2)  # billing and support for `key`
    [correction] = corrections(landscape)
    assert (correction["target"], correction["entity_key"]) == ("support", other)
    assert json.loads(correction["seen"])["values"]["full_name"] == "Nobody"  # what it saw


def test_nothing_is_emitted_while_a_batch_is_not_applied(landscape):
    from conftest import customer_created, land

    from sync_assets.deliver.corrections import GoldenIncomplete
    from sync_assets.ingest.landing import LandingZone
    from sync_assets.ingest.raw import ingest_batch

    change(landscape, "support", "DELETE FROM users")  # 100% drift: the checks would say ERROR
    reconcile(landscape, "run-1")
    batch = land(landscape, "late", [customer_created("C-999999")])
    with connect(landscape.warehouse) as con:
        ingest_batch(con, LandingZone(landscape.landing).locate(batch.batch_id))  # not applied
        try:
            emit_corrections(con, "run-1")
        except GoldenIncomplete as refused:
            message = refused.message
        else:
            raise AssertionError("emitted from an incomplete golden state")

    assert batch.batch_id in message and "docs/runbooks/delivery.md" in message
    assert corrections(landscape) == []


def test_a_live_row_of_a_record_its_lifecycle_owner_deleted_is_deleted(landscape):
    with connect(landscape.warehouse) as con:
        [(key,)] = con.execute(
            "SELECT min(customer_id) FROM golden_customer WHERE lifecycle_state = 'deleted'"
        ).fetchall()
    change(
        landscape,
        "support",
        "INSERT INTO users (external_id, email, name, tier, state, updated_at)"
        " VALUES (?, 'gone@example.com', 'Gone', 'Standard', 'enabled', 0)",
        key,
    )
    found = reconcile(landscape, "run-1")
    with connect(landscape.warehouse) as con:
        emit_corrections(con, "run-1")

    assert ("extra", "drift", "support", key, None, None) in found
    assert [(c["target"], c["entity_key"], c["action"]) for c in corrections(landscape)] == [
        ("support", key, "deleted")
    ]


def test_an_empty_golden_record_is_never_a_reason_to_delete(landscape):
    # The cold start that queued 99,800 deletes: golden records empty, and the lifecycle owner
    # (the CRM) holding none of the customers billing and support hold.
    change(landscape, "crm", "DELETE FROM contacts")
    with connect(landscape.warehouse) as con:
        con.execute("DELETE FROM golden_customer")
    found = reconcile(landscape, "run-1")
    with connect(landscape.warehouse) as con:
        emitted = emit_corrections(con, "run-1")
        live_rows = con.execute(
            "SELECT (SELECT count(*) FROM snapshot_billing_customer WHERE NOT is_deleted)"
            " + (SELECT count(*) FROM snapshot_support_customer WHERE NOT is_deleted)"
        ).fetchone()[0]

    extra = [(kind, resolution) for kind, resolution, _, _, _, other in found if kind == "extra"]
    assert len(extra) == live_rows > 0
    assert set(extra) == {("extra", "orphan")}, "only non-owners hold them: reported, no drift"
    assert emitted.emitted == 0
    assert corrections(landscape) == []


def test_a_golden_record_that_never_lived_is_no_reason_to_delete_either(landscape):
    # A partial golden record: billing's plan arrived (its own reconciled event), the CRM's
    # created never did, so the record has attributes and no lifecycle.
    key = a_customer_everywhere(landscape)
    change(landscape, "crm", "DELETE FROM contacts WHERE contact_id = ?", key)
    with connect(landscape.warehouse) as con:
        con.execute(
            "UPDATE golden_customer SET lifecycle_state = NULL, lifecycle__v = NULL "
            "WHERE customer_id = ?",
            [key],
        )
    found = reconcile(landscape, "run-1")
    with connect(landscape.warehouse) as con:
        emit_corrections(con, "run-1")

    assert {(k, r, s) for k, r, s, c, _, _ in found if c == key} == {
        ("extra", "orphan", "billing"),
        ("extra", "orphan", "support"),
    }
    assert [c for c in corrections(landscape) if c["action"] == "deleted"] == []
