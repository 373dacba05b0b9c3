"""A system that cannot be read fails its own snapshot; the others are still reconciled.

Through the installed `syncctl`, on a small demo: support's table renamed in its real SQLite file,
the CRM pointed at PostgreSQL on a closed port of 127.0.0.1. Billing, which still answers, is
diffed, its findings reported and its drift corrected; the two others are "not checked", with
the message that names the setting or the table and the fix, never a traceback, and the command
exits non-zero. Their old snapshots (still in the warehouse) are never read as current.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from commands import assert_no_traceback, syncctl
from ports import refused_port

from sync_assets.errors import EXIT_USAGE
from sync_assets.project import current
from sync_assets.reconcile.comparisons import (
    comparisons,
    latest_run,
    not_checked,
    record,
    record_skipped,
)
from sync_assets.reconcile.diff import DiffResult
from sync_assets.reconcile.snapshot import Skipped, current_snapshots, record_attempt
from sync_assets.security.fingerprint import fingerprint
from sync_assets.security.keys import keyring
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect

pytestmark = pytest.mark.slow

DRIFTED_EMAIL = "stale.copy@example.com"


@pytest.fixture(scope="module")
def synced(tmp_path_factory) -> Path:
    """A small demo, run once: every system in sync, every snapshot taken."""
    home = tmp_path_factory.mktemp("isolation") / "syncfabric"
    built = syncctl(home, "demo", "--customers", "300", "--orders", "1200", "--drift", "0")
    assert built.returncode == 0, built.stderr
    ran = syncctl(home, "run")
    assert ran.returncode == 0, ran.stderr[-3000:]
    return home


@pytest.fixture
def broken(synced, tmp_path) -> tuple[Path, dict[str, str], str]:
    """A copy where support's table is renamed, the CRM is unreachable and billing holds one
    drifted email (which the CRM owns and support also holds); the data folder, the environment
    to run with, and the drifted customer."""
    home = tmp_path / "syncfabric"
    shutil.copytree(synced, home)
    with sqlite3.connect(home / "systems" / "support.sqlite") as support:
        support.execute("ALTER TABLE users RENAME TO users_before_migration")
        held = {key for (key,) in support.execute("SELECT external_id FROM users_before_migration")}
    with sqlite3.connect(home / "systems" / "billing.sqlite") as billing:
        customer = next(
            key
            for (key,) in billing.execute(
                "SELECT customer_ref FROM accounts WHERE account_state <> 'CLOSED' ORDER BY 1"
            )
            if key in held
        )
        billing.execute(
            "UPDATE accounts SET billing_email = ? WHERE customer_ref = ?",
            [DRIFTED_EMAIL.upper(), customer],
        )
    crm = f"postgresql+psycopg://postgres@127.0.0.1:{refused_port()}/test"
    return home, {"SYNCFABRIC_CRM_URL": crm}, customer


def test_check_reconciles_billing_and_says_why_crm_and_support_were_not_checked(broken):
    home, env, customer = broken

    checked = syncctl(home, "check", "--json", **env)

    assert checked.returncode == EXIT_USAGE, checked.stderr[-3000:]
    assert_no_traceback(checked)
    report = json.loads(checked.stdout)
    skipped = {s["system"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"crm", "support"}
    assert "SYNCFABRIC_CRM_URL (postgresql+psycopg://postgres@127.0.0.1:" in skipped["crm"]
    assert "nothing accepts connections at 127.0.0.1:" in skipped["crm"]
    assert "the table users does not exist" in skipped["support"]
    assert all("Fix:" in reason for reason in skipped.values())

    checks = {c["check"]: c for c in report["checks"]}
    assert set(checks) == {
        "crm_customer_in_sync",
        "billing_customer_in_sync",
        "billing_order_in_sync",
        "support_customer_in_sync",
        "billing_vs_crm_customer_in_sync",
        "billing_vs_support_customer_in_sync",
        "crm_vs_support_customer_in_sync",
    }
    compared = {"billing_customer_in_sync", "billing_order_in_sync"}
    for name, check in checks.items():
        if name in compared:
            assert check["not_checked"] is None and check["rows_compared"] > 0
        else:  # never "in sync": not checked (a WARN: the others' corrections go on)
            assert check["not_checked"] and not check["passed"] and check["found"] == []
            assert check["severity"] == "WARN"
    [finding] = checks["billing_customer_in_sync"]["found"]
    assert (finding["kind"], finding["system"], finding["entity_key"], finding["attribute"]) == (
        "mismatch",
        "billing",
        customer,
        "email",
    )
    # e-mail is PII: shown as the keyed fingerprint the warehouse stores (docs/security.md)
    assert finding["actual"] == fingerprint(keyring(home).fingerprint_key, DRIFTED_EMAIL)
    # the CRM and support hold this email too, but their snapshots are old: not shown as theirs
    assert finding["views"] == {}
    assert checks["billing_order_in_sync"]["found"] == []

    lines = checked.stderr.splitlines()
    assert len([line for line in lines if "SYNCFABRIC_CRM_URL" in line]) == 1
    [support] = [line for line in lines if line.startswith("support (customer) not checked")]
    assert "the table users does not exist" in support and "SYNCFABRIC_SUPPORT_URL" in support
    assert "2 system(s) not checked (crm, support)" in checked.stderr


def test_run_corrects_billing_and_nothing_for_the_systems_it_could_not_read(broken):
    home, env, customer = broken

    ran = syncctl(home, "run", "--json", **env)

    assert ran.returncode == EXIT_USAGE, ran.stderr[-3000:]
    assert_no_traceback(ran)
    report = json.loads(ran.stdout)
    assert report["corrections"]["delivered"] == 1
    assert {s["system"] for s in report["reconciliation"]["skipped"]} == {"crm", "support"}
    with connect(DataFolder(home).warehouse, read_only=True) as con:
        # every reconciliation of this run had systems to skip
        targets = con.execute(
            "SELECT target, entity_key, action FROM corrections WHERE kind = 'correction'"
            " AND reconcile_run_id IN (SELECT run_id FROM reconcile_skipped)"
        ).fetchall()
        findings = con.execute(
            "SELECT DISTINCT system FROM discrepancies WHERE system IN ('crm', 'support')"
            " AND run_id IN (SELECT run_id FROM reconcile_skipped)"
        ).fetchall()
    assert targets == [("billing", customer, "updated")]
    assert findings == []
    with sqlite3.connect(home / "systems" / "billing.sqlite") as billing:
        [(email,)] = billing.execute(
            "SELECT billing_email FROM accounts WHERE customer_ref = ?", [customer]
        ).fetchall()
    assert email != DRIFTED_EMAIL.upper()  # the golden value is back
    assert "crm (customer) not checked" in ran.stderr
    assert ran.stderr.count("support (customer) not checked") == 1  # said once, not per pass


def test_a_failed_snapshot_is_not_current_until_it_is_taken_again(tmp_path):
    folder = DataFolder(tmp_path)
    crm = next(m for m in current().mappings.values() if m.system == "crm")
    with connect(folder.warehouse) as con:
        con.execute("CREATE TABLE snapshot_crm_customer (customer_id VARCHAR)")
        record_attempt(con, crm, "run-1", rows=0)
        assert current_snapshots(con, [crm]) == ([crm], [])
        record_attempt(con, crm, "run-2", error="cannot read the crm system")
        taken, skipped = current_snapshots(con, [crm])
        assert (taken, [(s.system, s.reason) for s in skipped]) == (
            [],
            [("crm", "cannot read the crm system")],
        )
        assert set(not_checked(skipped)) == {
            "crm_customer_in_sync",
            "billing_vs_crm_customer_in_sync",
            "crm_vs_support_customer_in_sync",
        }
        record_attempt(con, crm, "run-3", rows=0)
        assert current_snapshots(con, [crm]) == ([crm], [])


def test_a_run_that_could_compare_nothing_is_the_latest_all_the_same(tmp_path):
    # else the corrections of a run whose every snapshot failed would be an older run's again
    with connect(DataFolder(tmp_path).warehouse) as con:
        record(con, "run-1", DiffResult("run-1", "customer", "crm", None, {}), rows_compared=3)
        assert latest_run(con) == "run-1"
        record_skipped(con, "run-2", [Skipped("crm", "customer", "cannot read the crm system")])
        assert latest_run(con) == "run-2"
        assert comparisons(con, "run-2") == []
