"""Alerts over a demo landscape the real pipeline ran on: a reconciliation that finds broad drift,
a destination that refuses every write, a system that cannot be snapshotted. Each alert fires on
its fault and is silent without it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import dagster as dg
from conftest import rows
from test_alerts import evaluated, project_with
from test_deliver_dagster import (
    a_customer_with_an_account_and_a_user,
    deliver_corrections,
    discrepancies,
    snapshot_assets,
)
from test_reconcile_dagster import change_crm, reconcile

from sync_assets.deliver.assets import corrections
from sync_assets.resources import default_resources


def of_kind(found, kind: str) -> list[tuple[str, str]]:
    return sorted((a.subject, a.detail) for a in found if a.kind == kind)


def test_broad_drift_raises_its_check_and_a_clean_reconciliation_none(landscape):
    assert reconcile(landscape).success
    assert of_kind(evaluated(landscape), "check_failed") == []

    change_crm(landscape, "UPDATE contacts SET country_code = 'zz'")
    reconcile(landscape)

    [alert] = [a for a in evaluated(landscape) if a.kind == "check_failed"]
    assert (alert.subject, alert.detail, alert.severity) == (
        "crm",
        "reconcile/crm_customer_in_sync",
        "ERROR",
    )
    assert alert.counts["mismatch"] > 200 and "zz" not in alert.summary
    changes = {c for (c,) in rows(landscape, "SELECT last_correlation_id FROM golden_customer")}
    assert len(alert.correlation_ids) == 5 and set(alert.correlation_ids) <= changes


def test_a_destination_refusing_every_write_is_failing(landscape):
    key = a_customer_with_an_account_and_a_user(landscape)
    with sqlite3.connect(landscape.system_database("billing")) as billing:
        billing.execute(
            "UPDATE accounts SET billing_email = 'STALE@X.IO' WHERE customer_ref = ?", [key]
        )
    with sqlite3.connect(landscape.system_database("support")) as support:
        support.execute("DELETE FROM users WHERE external_id = ?", [key])
        support.execute(
            "CREATE TRIGGER closed BEFORE INSERT ON users BEGIN SELECT RAISE(ABORT, 'closed'); END"
        )
    resources = default_resources(landscape)
    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize(
            [*snapshot_assets, discrepancies, corrections], instance=instance, resources=resources
        )
        deliver_corrections.execute_in_process(
            instance=instance, resources=resources, raise_on_error=False
        )

    strict = project_with(consecutive_failures=1)
    [alert] = [a for a in evaluated(landscape, strict) if a.kind == "destination_failing"]
    assert (alert.subject, alert.severity) == ("support", "ERROR")
    assert alert.counts == {"failed_in_a_row": 1, "dead_letters_held": 1, "limit": 1}
    assert len(alert.correlation_ids) == 1
    # Billing took its correction; and at the default limit (3) one failure is no outage.
    assert of_kind(evaluated(landscape), "destination_failing") == []


def test_a_system_not_snapshotted_within_its_sla_is_stale(landscape):
    assert reconcile(landscape).success
    now = datetime.now(UTC)
    assert of_kind(evaluated(landscape, now=now), "stale") == []
    later = of_kind(evaluated(landscape, now=now + timedelta(hours=3)), "stale")
    assert ("crm", "snapshot") in later and ("billing", "snapshot") in later

    change_crm(landscape, "ALTER TABLE contacts RENAME TO contacts_gone")  # unreadable now
    reconcile(landscape)
    assert of_kind(evaluated(landscape, now=now), "stale") == [("crm", "snapshot")]
