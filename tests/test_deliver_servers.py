"""Convergence on real servers: the CRM on PostgreSQL and billing on MariaDB (support in SQLite),
drifted by hand with SQL, corrected through the Dagster jobs, while a lock on the CRM's table
makes the first attempts time out (a transient fault the retries must ride out). The lock is held
until a delivery has waited on it and timed out, however long the delivery takes to get there."""

from __future__ import annotations

import shutil
import threading
import time

import sqlalchemy as sa
from databases import copy_sqlite_table
from test_reconcile_servers import ACCOUNT_COLUMNS, CRM_COLUMNS, ORDER_COLUMNS

from sync_assets.runner import pipeline
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect

LOCK_WAIT_LIMIT_S = 120.0
"""The lock is released after this long even if no delivery ever waited on it (then the test
fails on its assertion rather than hanging)."""


def url_of(engine: sa.Engine, **options: str) -> str:
    url = engine.url
    if options:
        extra = " ".join(f"-c {k}={v}" for k, v in options.items())
        url = url.update_query_dict({"options": f"{url.query.get('options', '')} {extra}".strip()})
    return url.render_as_string(hide_password=False)


def one(engine: sa.Engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_drift_on_postgres_and_mariadb_converges_through_a_lock_timeout(
    demo, tmp_path, postgres_engine, mariadb_engine, monkeypatch
):
    folder = DataFolder(tmp_path / "copy")
    folder.systems.mkdir(parents=True)
    shutil.copy(demo.warehouse, folder.warehouse)
    shutil.copy(demo.system_database("support"), folder.system_database("support"))
    copy_sqlite_table(demo.system_database("crm"), "contacts", postgres_engine, column_types=CRM_COLUMNS)  # fmt: skip
    billing = demo.system_database("billing")
    copy_sqlite_table(billing, "accounts", mariadb_engine, column_types=ACCOUNT_COLUMNS)
    copy_sqlite_table(billing, "orders", mariadb_engine, column_types=ORDER_COLUMNS)
    with mariadb_engine.begin() as conn:
        conn.execute(sa.text("CREATE UNIQUE INDEX accounts_customer ON accounts (customer_ref)"))
        conn.execute(sa.text(
            "UPDATE accounts SET billing_email = 'STALE@EXAMPLE.COM' WHERE account_state <> 'CLOSED' "
            "ORDER BY acct_no LIMIT 3"
        ))  # fmt: skip
        conn.execute(sa.text(
            "UPDATE accounts SET account_state = 'CLOSED' WHERE account_state = 'ACTIVE' "
            "ORDER BY acct_no DESC LIMIT 1"
        ))  # fmt: skip
    with postgres_engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE contacts SET plan_name = 'Free' WHERE contact_id IN (SELECT contact_id "
            "FROM contacts WHERE deleted = 0 AND plan_name = 'Pro' ORDER BY contact_id LIMIT 4)"
        ))  # fmt: skip
    monkeypatch.setenv("SYNCFABRIC_CRM_URL", url_of(postgres_engine, lock_timeout="300ms"))
    monkeypatch.setenv("SYNCFABRIC_BILLING_URL", url_of(mariadb_engine))
    monkeypatch.setenv("SYNCFABRIC_SUPPORT_URL", f"sqlite:///{folder.system_database('support')}")

    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        """Lock the CRM's table until a statement that queued behind the lock has given up.

        A waiting statement is known by its backend and its start; once one seen waiting is no
        longer waiting (it cannot have been granted the lock: we hold it), it timed out. Polling
        for "nobody waiting" instead misses the moment when the retries of concurrent deliveries
        overlap, and the lock outlives their attempts."""
        waiting = sa.text(
            "SELECT l.pid, a.query_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.relation = 'contacts'::regclass AND NOT l.granted"
        )
        with postgres_engine.begin() as conn, postgres_engine.connect() as watcher:
            conn.execute(sa.text("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            seen: set[tuple[object, ...]] = set()
            deadline = time.monotonic() + LOCK_WAIT_LIMIT_S
            while not release.is_set() and time.monotonic() < deadline:
                now = {tuple(row) for row in watcher.execute(waiting)}
                watcher.rollback()  # a fresh snapshot of pg_locks each time
                if seen - now:
                    return  # a waiter timed out (lock_timeout): release, let the retries in
                seen |= now
                release.wait(0.02)

    with pipeline(folder) as runs:
        first = runs.reconcile()
        assert first.success
        assert runs.pending_corrections() == 8  # 3 emails + 1 account, 4 plans
        holder = threading.Thread(target=hold_lock)
        holder.start()
        assert locked.wait(10)
        delivered = runs.deliver()
        release.set()
        holder.join()
        final = runs.reconcile()

    assert delivered.success, delivered.counts
    assert delivered.counts["delivered"] == 8 and delivered.counts["retries"] > 0
    assert final.success and sum(c.discrepancies for c in final.checks) == 0
    assert one(mariadb_engine, "SELECT count(*) FROM accounts WHERE billing_email = 'STALE@EXAMPLE.COM'") == 0  # fmt: skip
    assert one(mariadb_engine, "SELECT count(*) FROM syncfabric_applied") == 4
    assert one(postgres_engine, "SELECT count(*) FROM syncfabric_applied") == 4
    with connect(folder.warehouse, read_only=True) as con:
        lock_errors = con.execute(
            "SELECT count(*) FROM delivery_attempts WHERE destination = 'crm' "
            "AND outcome = 'transient' AND error ILIKE '%lock%'"
        ).fetchall()[0][0]
    assert lock_errors > 0, "the lock timed out the first attempts"
