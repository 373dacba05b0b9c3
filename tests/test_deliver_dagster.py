"""The delivery job end to end in Dagster, with the compensate policy: a change set broken by a
permanent failure in one system is put back in the system that had already taken it."""

import sqlite3

import dagster as dg

from sync_assets.deliver.assets import corrections
from sync_assets.deliver.ops import deliver_corrections
from sync_assets.reconcile.assets import discrepancies, snapshot_assets
from sync_assets.resources import DeliveryResource, default_resources
from sync_assets.warehouse import connect


def a_customer_with_an_account_and_a_user(folder) -> str:
    with sqlite3.connect(folder.system_database("support")) as con:
        users = {k for (k,) in con.execute("SELECT external_id FROM users")}
    with sqlite3.connect(folder.system_database("billing")) as con:
        live = "SELECT customer_ref FROM accounts WHERE account_state <> 'CLOSED'"
        accounts = {k for (k,) in con.execute(live)}
    return min(users & accounts)


def test_a_permanent_failure_in_one_system_is_compensated_in_the_others(landscape):
    key = a_customer_with_an_account_and_a_user(landscape)
    with sqlite3.connect(landscape.system_database("billing")) as billing:
        billing.execute(
            "UPDATE accounts SET billing_email = 'STALE@X.IO' WHERE customer_ref = ?", [key]
        )
    with sqlite3.connect(landscape.system_database("support")) as support:
        support.execute("DELETE FROM users WHERE external_id = ?", [key])
        support.execute(  # the desk takes no new users today: a permanent refusal
            "CREATE TRIGGER closed BEFORE INSERT ON users BEGIN SELECT RAISE(ABORT, 'closed'); END"
        )
    resources = default_resources(landscape) | {
        "delivery": DeliveryResource(compensation={"customer": "compensate"})
    }
    with dg.DagsterInstance.ephemeral() as instance:
        emitted = dg.materialize(
            [*snapshot_assets, discrepancies, corrections], instance=instance, resources=resources
        )
        delivered = deliver_corrections.execute_in_process(instance=instance, resources=resources)

    assert emitted.success
    assert delivered.success, "nothing is held: the broken change set was compensated"
    totals = delivered.output_for_node("record_deliveries")
    # Delivered: billing's correction, then its compensation; dead-lettered: support's.
    delivered_dead_compensations = ("delivered", "dead_lettered", "compensations_emitted")
    assert [totals[name] for name in delivered_dead_compensations] == [2, 1, 1]
    with sqlite3.connect(landscape.system_database("billing")) as billing:
        email = billing.execute(
            "SELECT billing_email FROM accounts WHERE customer_ref = ?", [key]
        ).fetchone()
    assert email == ("STALE@X.IO",), "billing was put back as it was before the change set"
    with connect(landscape.warehouse) as con:
        statuses = dict(
            con.execute("SELECT target || '/' || kind, status FROM corrections").fetchall()
        )
    assert statuses == {
        "billing/correction": "rolled_back",
        "support/correction": "compensated",
        "billing/compensation": "delivered",
    }
