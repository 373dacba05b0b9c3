"""The delivery job end to end in Dagster, with the compensate policy: a change set broken by a
permanent failure in one system is put back in the system that had already taken it."""

import datetime as dt
import sqlite3

import dagster as dg

from checks.reconcile import build_reconciliation_checks
from sync_assets.deliver.assets import corrections
from sync_assets.deliver.ops import build_deliver_corrections
from sync_assets.deliver.resources import DeliveryResource
from sync_assets.project import current
from sync_assets.reconcile.assets import build_discrepancies, snapshot_asset
from sync_assets.resources import default_resources
from sync_assets.warehouse import connect

PROJECT = current()
snapshot_assets = [snapshot_asset(m, PROJECT.entity(m.entity)) for m in PROJECT.mappings.values()]
discrepancies = build_discrepancies(PROJECT)
reconciliation_checks = build_reconciliation_checks(PROJECT)
deliver_corrections = build_deliver_corrections(PROJECT)


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
    # Each destination's asset (delivered/<system>) says what reached it: a materialization
    # where corrections were written, an observation where none was.
    [billing] = delivered.asset_materializations_for_node("record_deliveries")
    [support] = delivered.asset_observations_for_node("record_deliveries")
    assert billing.asset_key == dg.AssetKey(["delivered", "billing"])
    assert support.asset_key == dg.AssetKey(["delivered", "support"])
    assert (billing.metadata["delivered"].value, support.metadata["dead_lettered"].value) == (2, 1)
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


def materialize(folder, assets, **kwargs) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            assets,
            instance=instance,
            resources=default_resources(folder),
            raise_on_error=False,
            **kwargs,
        )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    [failed] = result.get_step_failure_events()
    return failed.step_failure_data.user_failure_data.description


def count(folder, sql: str) -> int:
    with connect(folder.warehouse) as con:
        return con.execute(sql).fetchone()[0]


def test_corrections_emit_nothing_while_a_landed_batch_is_not_applied(landscape):
    from conftest import customer_created, land

    from sync_assets.ingest.landing import LandingZone
    from sync_assets.ingest.raw import ingest_batch

    with sqlite3.connect(landscape.system_database("support")) as support:
        support.execute("DELETE FROM users WHERE id % 50 = 0")  # drift to correct, below ERROR
    reconciled = materialize(landscape, [*snapshot_assets, discrepancies])
    batch = land(landscape, "interrupted", [customer_created("C-999999")])
    with connect(landscape.warehouse) as con:  # raw events in, the run killed before validation
        ingest_batch(con, LandingZone(landscape.landing).locate(batch.batch_id))

    emitted = materialize(landscape, [corrections])

    assert reconciled.success and not emitted.success
    message = failure_message(emitted)
    assert batch.batch_id in message and "docs/runbooks/delivery.md" in message
    assert count(landscape, "SELECT count(*) FROM corrections") == 0


def test_a_mass_correction_by_hand_needs_the_reviewed_count_in_its_run_config(landscape):
    with sqlite3.connect(landscape.system_database("support")) as support:
        users = support.execute("SELECT count(*) FROM users").fetchone()[0]
        support.execute("DELETE FROM users")  # every user gone: the check fails at ERROR
    with dg.DagsterInstance.ephemeral() as instance:
        reconciled = dg.materialize(
            [*snapshot_assets, discrepancies, reconciliation_checks, corrections],
            instance=instance,
            resources=default_resources(landscape),
            raise_on_error=False,
        )
    by_hand = materialize(landscape, [corrections])
    wrong = materialize(landscape, [corrections], run_config=review(users - 1))
    right = materialize(landscape, [corrections], run_config=review(users))

    assert not reconciled.success, "the blocking check stopped the automatic corrections"
    assert not by_hand.success and not wrong.success
    refused = failure_message(by_hand)
    assert f"{users:,} corrections: support created {users:,}" in refused
    assert "syncctl check --json" in refused and f"i_have_reviewed: {users}" in refused
    assert f"you reviewed {users - 1:,}" in failure_message(wrong)
    assert right.success
    assert count(landscape, "SELECT count(*) FROM corrections") == users


def review(n: int) -> dict:
    return {"ops": {"corrections": {"config": {"i_have_reviewed": n}}}}


def test_a_correction_whose_golden_record_changed_since_is_closed_unsent(landscape):
    from conftest import event as an_event
    from conftest import land, run_core

    key = a_customer_with_an_account_and_a_user(landscape)
    with sqlite3.connect(landscape.system_database("billing")) as billing:
        billing.execute(
            "UPDATE accounts SET billing_email = 'STALE@X.IO' WHERE customer_ref = ?", [key]
        )
    emitted = materialize(landscape, [*snapshot_assets, discrepancies, corrections])
    # Before the delivery, the CRM's change of the same customer reaches the golden record.
    change = an_event(
        "customer.updated", key, {"email": "moved@example.com"}, time=dt.datetime.now(dt.UTC)
    )
    run_core(landscape, [land(landscape, "crm-change", [change]).batch_id])

    with dg.DagsterInstance.ephemeral() as instance:
        delivered = deliver_corrections.execute_in_process(
            instance=instance, resources=default_resources(landscape)
        )

    assert emitted.success and delivered.success
    with connect(landscape.warehouse) as con:
        status, reason, run = con.execute(
            "SELECT status, reason, delivery_run FROM corrections"
        ).fetchone()
    assert status == "stale" and "golden record changed" in reason
    assert run == delivered.run_id
    with sqlite3.connect(landscape.system_database("billing")) as billing:
        assert billing.execute(
            "SELECT billing_email FROM accounts WHERE customer_ref = ?", [key]
        ).fetchone() == ("STALE@X.IO",), "not written: the next reconciliation decides"
