"""Reconciliation through Dagster: snapshots, the discrepancies asset and its blocking checks."""

import sqlite3

import dagster as dg
import pytest

from checks.reconcile import build_reconciliation_checks
from sync_assets.connectors.resource import SystemsResource, system_url
from sync_assets.jobs import reconcile_schedule
from sync_assets.project import current
from sync_assets.reconcile.assets import build_discrepancies, snapshot_asset
from sync_assets.resources import default_resources
from sync_assets.warehouse import connect

PROJECT = current()
snapshot_assets = [snapshot_asset(m, PROJECT.entity(m.entity)) for m in PROJECT.mappings.values()]
discrepancies = build_discrepancies(PROJECT)
reconciliation_checks = build_reconciliation_checks(PROJECT)


def reconcile(folder) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            [*snapshot_assets, discrepancies, reconciliation_checks],
            instance=instance,
            resources=default_resources(folder),
            raise_on_error=False,
        )


def evaluations(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def change_crm(folder, sql: str) -> None:
    with sqlite3.connect(folder.system_database("crm")) as con:
        con.execute(sql)


def test_a_fresh_demo_passes_every_reconciliation_check(landscape):
    result = reconcile(landscape)

    assert result.success
    checks = evaluations(result)
    assert set(checks) == {
        "crm_customer_in_sync",
        "billing_customer_in_sync",
        "billing_order_in_sync",
        "support_customer_in_sync",
        "billing_vs_crm_customer_in_sync",
        "billing_vs_support_customer_in_sync",
        "crm_vs_support_customer_in_sync",
    }
    assert all(check.passed for check in checks.values())
    assert checks["crm_customer_in_sync"].metadata["rows_compared"].value == 300


def test_a_little_drift_warns_and_the_ui_sample_hides_pii(landscape):
    change_crm(
        landscape,
        "UPDATE contacts SET email_address = 'mallory@evil.example' "
        "WHERE contact_id = (SELECT min(contact_id) FROM contacts WHERE deleted = 0)",
    )

    result = reconcile(landscape)

    check = evaluations(result)["crm_customer_in_sync"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["mismatch"].value == 1
    [record] = check.metadata["sample"].value.records
    assert record.data["attribute"] == "email"
    assert record.data["actual"].startswith("pii:")
    assert record.data["views"].startswith("billing=pii:")  # the others' copies, masked too
    assert "mallory" not in str(check.metadata) and "@" not in str(check.metadata)
    with connect(landscape.warehouse) as con:  # the warehouse keeps the mask, not the value
        [(stored,)] = con.execute(
            "SELECT actual FROM discrepancies WHERE attribute = 'email' AND system = 'crm'"
        ).fetchall()
        assert stored == record.data["actual"]
        assert stored == con.execute("SELECT pii_mask('mallory@evil.example')").fetchone()[0]


def test_broad_drift_is_an_error_that_blocks(landscape):
    change_crm(landscape, "UPDATE contacts SET country_code = 'zz'")

    result = reconcile(landscape)

    check = evaluations(result)["crm_customer_in_sync"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["mismatch"].value > 200
    spec = next(s for s in reconciliation_checks.check_specs if s.name == "crm_customer_in_sync")
    assert spec.blocking


def test_reconciliation_is_scheduled_hourly():
    schedule = reconcile_schedule(PROJECT)
    assert schedule.cron_schedule == "0 * * * *"
    assert schedule.job_name == "reconcile"


def test_a_system_url_from_the_environment_stays_an_env_var(data_folder, monkeypatch):
    secret = "postgresql+psycopg://crm:s3cret@db.internal/crm"
    monkeypatch.setenv("SYNCFABRIC_CRM_URL", secret)

    url = system_url(data_folder, "crm")

    assert isinstance(url, dg.EnvVar)
    assert url.env_var_name == "SYNCFABRIC_CRM_URL"
    resource = SystemsResource(urls={"crm": url, "billing": "sqlite://", "support": "sqlite://"})
    assert secret not in repr(resource)
    assert resource.url("crm") == "SYNCFABRIC_CRM_URL"  # resolved only inside a run


@pytest.mark.parametrize("system", ["billing", "support"])
def test_the_embedded_default_reads_the_demo_sqlite_files(data_folder, system):
    assert system_url(data_folder, system).endswith(f"systems/{system}.sqlite")


def test_a_held_dead_letter_shows_on_the_corrections_asset_until_redriven(landscape):
    from checks.deliver import no_dead_letters_held
    from sync_assets.deliver import outbox
    from sync_assets.deliver.assets import corrections
    from sync_assets.deliver.engine import Report, Verdict

    change_crm(  # a few: past the ERROR threshold, corrections would need a review
        landscape,
        "UPDATE contacts SET plan_name = 'Free' WHERE contact_id IN (SELECT contact_id "
        "FROM contacts WHERE plan_name = 'Pro' AND deleted = 0 LIMIT 3)",
    )
    with dg.DagsterInstance.ephemeral() as instance:
        run = dg.materialize(
            [*snapshot_assets, discrepancies, corrections, no_dead_letters_held],
            instance=instance,
            resources=default_resources(landscape),
        )
    [clean] = run.get_asset_check_evaluations()
    with connect(landscape.warehouse) as con:
        [first, *_] = outbox.due(con, "crm")
        outbox.record(con, Report("crm", [Verdict(first.correction_id, "dead_lettered", 6, ["attempt 6: HTTP 503"], reason="gave up")]), "run")  # fmt: skip
    with dg.DagsterInstance.ephemeral() as instance:
        held = dg.materialize([no_dead_letters_held], instance=instance, resources=default_resources(landscape), selection=dg.AssetSelection.checks(no_dead_letters_held))  # fmt: skip
    [flagged] = held.get_asset_check_evaluations()

    assert clean.passed
    assert not flagged.passed and flagged.metadata["held_for_crm"].value == 1
