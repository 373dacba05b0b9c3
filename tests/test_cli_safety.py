"""No command harms a system: `check` only looks, `reconcile` emits, a mass correction needs the
reviewed count, and unknown ids or destinations are errors; through the installed `syncctl`."""

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from commands import syncctl
from test_end_to_end import demo_home  # noqa: F401  (the fixture, built once here)

pytestmark = pytest.mark.slow


def copy_of(demo_home: Path, tmp_path: Path) -> Path:  # noqa: F811
    home = tmp_path / "syncfabric"
    shutil.copytree(demo_home, home)
    return home


def warehouse(home: Path, sql: str) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def landed_files(home: Path) -> list[Path]:
    return sorted((home / "landing").glob("*/*.jsonl"))


def drift_an_owner_and_a_copy(home: Path) -> None:
    """The CRM's e-mail of one customer changed by hand (an owner: a missed event), and billing's
    copy of another customer's e-mail (drift: a correction)."""
    with sqlite3.connect(home / "systems" / "crm.sqlite") as crm:
        crm.execute(
            "UPDATE contacts SET email_address = 'by.hand@example.com' "
            "WHERE contact_id = (SELECT min(contact_id) FROM contacts WHERE deleted = 0)"
        )
    with sqlite3.connect(home / "systems" / "billing.sqlite") as billing:
        billing.execute(
            "UPDATE accounts SET billing_email = 'STALE@EXAMPLE.COM' WHERE acct_no = "
            "(SELECT max(acct_no) FROM accounts WHERE account_state <> 'CLOSED')"
        )


def test_check_is_read_only(demo_home, tmp_path):  # noqa: F811
    home = copy_of(demo_home, tmp_path)
    drift_an_owner_and_a_copy(home)
    corrections_before = warehouse(home, "SELECT count(*) FROM corrections")

    checked = syncctl(home, "check", "--json")

    assert checked.returncode == 0, checked.stderr[-3000:]
    kinds = {
        finding["resolution"]
        for check in json.loads(checked.stdout)["checks"]
        for finding in check["found"]
    }
    assert {"missed_event", "drift"} <= kinds, "it did find both"
    assert "read-only" in checked.stderr
    assert warehouse(home, "SELECT count(*) FROM corrections") == corrections_before
    assert landed_files(home) == [], "no missed event landed"


def test_reconcile_lands_missed_events_and_emits_corrections(demo_home, tmp_path):  # noqa: F811
    home = copy_of(demo_home, tmp_path)
    drift_an_owner_and_a_copy(home)

    reconciled = syncctl(home, "reconcile", "--json")

    assert reconciled.returncode == 0, reconciled.stderr[-3000:]
    report = json.loads(reconciled.stdout)
    assert (report["emitted"], report["pending"]) == (1, 1)  # billing's copy of the e-mail
    [landed] = landed_files(home)
    assert landed.parent.name == "crm"  # the CRM's own change, as its missed event
    [(target, action, status)] = warehouse(
        home,
        "SELECT target, action, status FROM corrections WHERE reconcile_run_id = "
        f"'{report['run_id']}'",
    )
    assert (target, action, status) == ("billing", "updated", "pending")
    assert "syncctl deliver" in reconciled.stderr


def test_a_mass_correction_is_emitted_only_with_the_reviewed_count(demo_home, tmp_path):  # noqa: F811
    home = copy_of(demo_home, tmp_path)
    support = home / "systems" / "support.sqlite"
    with sqlite3.connect(support) as desk:
        users = desk.execute("SELECT count(*) FROM users").fetchone()[0]
        desk.execute("DELETE FROM users")  # restored from an empty backup: every user gone
    corrections_before = warehouse(home, "SELECT count(*) FROM corrections")[0][0]

    reconciled = syncctl(home, "reconcile")
    emitted = syncctl(home, "deliver", "--emit")
    wrong = syncctl(home, "deliver", "--emit", "--i-have-reviewed", str(users - 1))
    nothing_yet = warehouse(home, "SELECT count(*) FROM corrections")[0][0]
    reviewed = syncctl(home, "deliver", "--emit", "--i-have-reviewed", str(users), "--json")

    for refused, flag in ((reconciled, "syncctl reconcile"), (emitted, "syncctl deliver --emit")):
        assert refused.returncode == 1, refused.stderr[-3000:]
        assert "support_customer_in_sync" in refused.stderr
        assert f"{users:,} corrections: support created {users:,}" in refused.stderr
        assert "syncctl check --json" in refused.stderr
        assert f"{flag} --i-have-reviewed {users}" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert wrong.returncode == 1 and f"you reviewed {users - 1:,}" in wrong.stderr
    assert nothing_yet == corrections_before, "nothing emitted before the right count"
    assert reviewed.returncode == 0, reviewed.stderr[-3000:]
    assert json.loads(reviewed.stdout)["delivered"] == users
    with sqlite3.connect(support) as desk:
        assert desk.execute("SELECT count(*) FROM users").fetchone() == (users,)


def test_run_advises_the_review_gate_not_a_blind_emit(demo_home, tmp_path):  # noqa: F811
    home = copy_of(demo_home, tmp_path)
    with sqlite3.connect(home / "systems" / "support.sqlite") as desk:
        desk.execute("DELETE FROM users")

    ran = syncctl(home, "run")

    assert ran.returncode == 1
    assert "syncctl check --json" in ran.stderr and "--i-have-reviewed" in ran.stderr
    assert "deliver --emit" not in ran.stderr
    assert warehouse(home, "SELECT count(*) FROM corrections WHERE status = 'pending'") == [(0,)]


def test_unknown_redrive_ids_and_destinations_are_errors(demo_home, tmp_path):  # noqa: F811
    home = copy_of(demo_home, tmp_path)
    drift_an_owner_and_a_copy(home)
    assert syncctl(home, "run").returncode == 0
    [(delivered,)] = warehouse(
        home, "SELECT correction_id FROM corrections WHERE status = 'delivered' LIMIT 1"
    )

    unknown = syncctl(home, "deliver", "--redrive", "no-such-id")
    not_dead = syncctl(home, "deliver", "--redrive", delivered)
    nowhere = syncctl(home, "deliver", "--redrive-all", "--destination", "nowhere")

    for refused in (unknown, not_dead, nowhere):
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert "Traceback" not in refused.stderr
    assert "no-such-id: no such correction" in unknown.stderr
    assert f"{delivered}: not dead-lettered, its status is delivered" in not_dead.stderr
    assert (
        "unknown destination 'nowhere'" in nowhere.stderr
        and "crm, billing, support" in nowhere.stderr
    )


@pytest.mark.parametrize("point", ["mid-delivery", "mid-record"])
def test_a_delivery_killed_before_its_verdicts_are_recorded_is_resumed_as_duplicates(
    demo_home,  # noqa: F811
    tmp_path,
    point,
):
    home = copy_of(demo_home, tmp_path)
    billing = home / "systems" / "billing.sqlite"
    with sqlite3.connect(billing) as system:
        system.execute(
            "UPDATE accounts SET billing_email = 'STALE@EXAMPLE.COM' WHERE acct_no IN "
            "(SELECT acct_no FROM accounts WHERE account_state <> 'CLOSED' LIMIT 3)"
        )
        applied_before = system.execute("SELECT count(*) FROM syncfabric_applied").fetchone()[0]
    assert syncctl(home, "reconcile").returncode == 0

    killed = syncctl(home, "deliver", SYNCFABRIC_CRASH_AT=point)
    pending = warehouse(home, "SELECT count(*) FROM corrections WHERE status = 'pending'")
    resumed = syncctl(home, "deliver", "--json")  # recovers the killed run first, then delivers

    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL
    assert pending == [(3,)], "applied by billing, but not recorded: still pending"
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    counts = json.loads(resumed.stdout)
    assert (counts["duplicate"], counts["delivered"]) == (3, 0), "billing's ledger answered"
    with sqlite3.connect(billing) as system:
        applied = system.execute("SELECT count(*) FROM syncfabric_applied").fetchone()[0]
        stale = system.execute(
            "SELECT count(*) FROM accounts WHERE billing_email = 'STALE@EXAMPLE.COM'"
        ).fetchone()
    assert applied - applied_before == 3 and stale == (0,)
