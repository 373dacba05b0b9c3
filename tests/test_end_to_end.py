"""`make demo`'s pipeline end to end, through the installed `syncctl`, on a temp data folder."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from commands import syncctl

from sync_assets.security.fingerprint import fingerprint
from sync_assets.security.keys import keyring

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("demo") / "syncfabric"
    built = syncctl(home, "demo", "--customers", "400", "--orders", "2000")
    assert built.returncode == 0, built.stderr
    ran = syncctl(home, "run", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    return home


def summary(home: Path) -> dict:
    result = syncctl(home, "summary", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_demo_pipeline_accounts_for_every_event(demo_home):
    counts = summary(demo_home)

    assert counts["landed"] > 2400
    assert counts["landed"] == counts["applied"] + counts["duplicates"] + counts["dead_lettered"]
    assert counts["pending"] == 0
    assert counts["duplicates"] > 0 and counts["dead_lettered"] > 0
    assert counts["golden"]["customer"] + counts["deleted"]["customer"] == 400
    assert counts["golden"]["order"] + counts["deleted"]["order"] == 2000
    assert not list((demo_home / "landing").glob("*/*.jsonl")), "every batch is archived"


def test_running_demo_and_run_again_doubles_nothing(demo_home):
    before = summary(demo_home)

    again_demo = syncctl(demo_home, "demo")
    again_run = syncctl(demo_home, "run", "--json")

    assert again_demo.returncode == 0 and "already" in again_demo.stdout
    assert again_run.returncode == 0, again_run.stderr[-3000:]
    assert json.loads(again_run.stdout)["runs"] == []
    assert summary(demo_home) == before


def test_replay_rebuilds_the_same_golden_records(demo_home):
    replayed = syncctl(demo_home, "replay", "--json")

    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout) == {"differences": {"customer": 0, "order": 0}}


def test_the_runs_are_recorded_in_the_dagster_instance(demo_home):
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(demo_home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            materialized = instance.get_latest_materialization_event(dg.AssetKey("golden_customer"))
    finally:
        del os.environ["DAGSTER_HOME"]
    ingest = [run for run in runs if run.job_name == "ingest_batch"]
    reconcile = [run for run in runs if run.job_name == "reconcile"]
    assert len(ingest) == 1, "the second syncctl run found no new batch and started no ingest run"
    assert reconcile, "syncctl run ends with a reconciliation"
    assert all(run.is_success for run in runs)
    assert materialized is not None


def test_syncctl_check_passes_on_the_demo(demo_home):
    checked = syncctl(demo_home, "check", "--json")

    assert checked.returncode == 0, checked.stderr[-3000:]
    report = json.loads(checked.stdout)
    assert len(report["checks"]) == 7
    assert all(check["passed"] and check["found"] == [] for check in report["checks"])


def test_syncctl_check_reports_hand_made_drift_and_fails_on_request(demo_home, tmp_path):
    drifted = tmp_path / "drifted"
    shutil.copytree(demo_home, drifted)
    with sqlite3.connect(drifted / "systems" / "crm.sqlite") as crm:
        crm.execute(
            "UPDATE contacts SET email_address = 'by.hand@example.com' "
            "WHERE contact_id = (SELECT min(contact_id) FROM contacts WHERE deleted = 0)"
        )

    default = syncctl(drifted, "check", "--json")
    strict = syncctl(drifted, "check", "--fail-on", "warn")

    assert default.returncode == 0, default.stderr[-3000:]  # one drifted row: a WARN
    crm = next(
        c for c in json.loads(default.stdout)["checks"] if c["check"] == "crm_customer_in_sync"
    )
    assert (crm["passed"], crm["severity"]) == (False, "WARN")
    [finding] = crm["found"]
    assert (finding["kind"], finding["resolution"], finding["attribute"]) == (
        "mismatch",
        "missed_event",
        "email",
    )
    # PII as the warehouse stores it: the keyed fingerprint of the value (docs/security.md)
    key = keyring(drifted).fingerprint_key
    assert finding["actual"] == fingerprint(key, "by.hand@example.com")
    assert strict.returncode == 1
    assert "crm_customer_in_sync" in strict.stdout


def test_drift_made_by_hand_disappears_after_one_run(demo_home, tmp_path):
    drifted = tmp_path / "drifted"
    shutil.copytree(demo_home, drifted)
    systems = drifted / "systems"
    with sqlite3.connect(systems / "billing.sqlite") as billing:
        billing.execute(
            "UPDATE accounts SET billing_email = 'STALE@EXAMPLE.COM' "
            "WHERE acct_no IN (SELECT acct_no FROM accounts WHERE account_state <> 'CLOSED' LIMIT 2)"
        )
    with sqlite3.connect(systems / "support.sqlite") as support:
        applied_before = support.execute("SELECT count(*) FROM syncfabric_applied").fetchone()[0]
        gone = support.execute("SELECT external_id FROM users ORDER BY id LIMIT 1").fetchone()[0]
        support.execute("DELETE FROM users WHERE external_id = ?", [gone])
        support.execute(
            "UPDATE users SET name = 'Someone Else' WHERE id = (SELECT max(id) FROM users)"
        )
    with sqlite3.connect(systems / "crm.sqlite") as crm:
        crm.execute(
            "UPDATE contacts SET plan_name = 'Free' WHERE contact_id = "
            "(SELECT min(contact_id) FROM contacts WHERE deleted = 0 AND plan_name = 'Pro')"
        )

    ran = syncctl(drifted, "run", "--json")
    again = syncctl(drifted, "run", "--json")

    assert ran.returncode == 0, ran.stderr[-3000:]
    corrections = json.loads(ran.stdout)["corrections"]
    assert corrections["emitted"] == corrections["delivered"] == 5
    assert corrections["dead_lettered"] == corrections["discrepancies_left"] == 0
    assert json.loads(again.stdout)["corrections"]["emitted"] == 0
    with sqlite3.connect(systems / "billing.sqlite") as billing:
        assert billing.execute(
            "SELECT count(*) FROM accounts WHERE billing_email = 'STALE@EXAMPLE.COM'"
        ).fetchone() == (0,)
    with sqlite3.connect(systems / "support.sqlite") as support:
        assert support.execute(
            "SELECT count(*) FROM users WHERE external_id = ?", [gone]
        ).fetchone() == (1,)
        applied = support.execute("SELECT count(*) FROM syncfabric_applied").fetchone()[0]
    assert applied - applied_before == 2  # the desk's own ledger: two corrections, applied once


def test_an_owners_change_by_hand_enters_golden_and_reaches_the_other_systems(demo_home, tmp_path):
    drifted = tmp_path / "owner"
    shutil.copytree(demo_home, drifted)
    systems = drifted / "systems"
    with sqlite3.connect(systems / "support.sqlite") as support:
        users = {key for (key,) in support.execute("SELECT external_id FROM users")}
    with sqlite3.connect(systems / "billing.sqlite") as billing:
        accounts = {
            key
            for (key,) in billing.execute(
                "SELECT customer_ref FROM accounts WHERE account_state <> 'CLOSED'"
            )
        }
    key = min(users & accounts)
    with sqlite3.connect(systems / "crm.sqlite") as crm:  # the CRM owns email
        crm.execute(
            "UPDATE contacts SET email_address = 'new.address@example.com' WHERE contact_id = ?",
            [key],
        )

    ran = syncctl(drifted, "run", "--json")

    assert ran.returncode == 0, ran.stderr[-3000:]
    corrections = json.loads(ran.stdout)["corrections"]
    assert corrections["missed_events"] == 1  # the CRM's change, as a reconciled event
    assert corrections["emitted"] == corrections["delivered"] == 2  # billing and support
    assert corrections["discrepancies_left"] == 0
    with sqlite3.connect(systems / "billing.sqlite") as billing:
        assert billing.execute(
            "SELECT billing_email FROM accounts WHERE customer_ref = ?", [key]
        ).fetchone() == ("NEW.ADDRESS@EXAMPLE.COM",)
    with sqlite3.connect(systems / "support.sqlite") as support:
        assert support.execute(
            "SELECT lower(email) FROM users WHERE external_id = ?", [key]
        ).fetchone() == ("new.address@example.com",)


def test_a_system_served_as_a_no_code_platform_is_reconciled_and_corrected_over_http(
    demo_home, tmp_path
):
    home = tmp_path / "platform"
    shutil.copytree(demo_home, home)
    support_db = home / "systems" / "support.sqlite"
    with sqlite3.connect(support_db) as support:
        support.execute(
            "UPDATE users SET name = 'Someone Else' WHERE id = (SELECT min(id) FROM users)"
        )
    server = subprocess.Popen(
        [sys.executable, "-m", "examples.demo.seed.platform", "--system", "support", "--port", "0"],
        env={**os.environ, "SYNCFABRIC_HOME": str(home)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        announced = server.stderr.readline()  # printed once the service is listening
        url = next(word for word in announced.split() if word.startswith("http://"))
        ran = syncctl(home, "run", "--json", SYNCFABRIC_SUPPORT_URL=url)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)

    assert ran.returncode == 0, ran.stderr[-3000:]
    corrections = json.loads(ran.stdout)["corrections"]
    assert corrections["emitted"] == corrections["delivered"] == 1
    assert corrections["discrepancies_left"] == 0
    with sqlite3.connect(support_db) as support:  # the platform's own ledger
        assert support.execute("SELECT count(*) FROM _applications").fetchone() == (1,)
