"""The operator's tools without Dagster: the data-folder lock, processes, recovery's verdicts, and
what a failure reaching a system says (sync_assets/operate/, sync_assets/connectors/problems.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from ports import refused_port

from sync_assets.connectors.problems import classify, message, retrying
from sync_assets.connectors.sources import open_source
from sync_assets.errors import EXIT_BUSY, EXIT_USAGE, SyncfabricError
from sync_assets.operate.lock import hold, holder, is_held_here, warehouse_refusal
from sync_assets.operate.processes import is_same_process, started_at
from sync_assets.operate.recovery import RunFacts, why_dead, why_stale
from sync_assets.settings import (
    DUCKDB_MEMORY_LIMIT_ENV,
    DUCKDB_TEMP_DIRECTORY_ENV,
    DataFolder,
)
from sync_assets.warehouse import connect

HOLD_IN_A_CHILD = """
import sys
from pathlib import Path
from sync_assets.operate.lock import hold
from sync_assets.settings import DataFolder
with hold(DataFolder(Path(sys.argv[1])), "child"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def folder(tmp_path) -> DataFolder:
    root = tmp_path / "syncfabric"
    root.mkdir()
    return DataFolder(root)


def test_a_held_folder_refuses_a_second_holder_naming_the_first(folder):
    with hold(folder, "run") as me:
        assert holder(folder) == me and is_held_here(folder)
        child = subprocess.run(
            [sys.executable, "-c", HOLD_IN_A_CHILD, str(folder.root)],
            capture_output=True,
            text=True,
            input="",
            timeout=60,
        )
    assert child.returncode != 0
    assert f"pid {os.getpid()} (syncctl run, since " in child.stderr
    assert "--wait" in child.stderr
    assert holder(folder) is None and not is_held_here(folder)


def test_the_lock_of_a_killed_holder_is_free_at_once(folder):
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_A_CHILD, str(folder.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "held\n"
        held = holder(folder)
        assert held is not None and (held.pid, held.command) == (child.pid, "child")
        with pytest.raises(SyncfabricError) as refused, hold(folder, "run"):
            pass
        assert refused.value.exit_code == EXIT_BUSY
        assert f"pid {child.pid} (syncctl child" in refused.value.message
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    assert holder(folder) is None  # the record is still in the file; the flock is what counts
    with hold(folder, "run") as me:
        assert me.pid == os.getpid()


def hold_the_warehouse(folder) -> subprocess.Popen:
    """Another process with the warehouse open, until its stdin closes."""
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('open', flush=True); "
            "sys.stdin.read()",
            str(folder.warehouse),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline() == "open\n"
    return writer


def test_opening_a_warehouse_held_for_a_moment_waits_for_it(folder, monkeypatch):
    import sync_assets.warehouse as warehouse

    writer = hold_the_warehouse(folder)
    waits = []

    def release_while_waiting(seconds: float) -> None:
        waits.append(seconds)
        writer.communicate("", timeout=30)  # the holder closes: the next try opens it

    monkeypatch.setattr(warehouse, "_pause", release_while_waiting)
    with connect(folder.warehouse) as con:
        assert con.execute("SELECT 1").fetchone() == (1,)
    assert len(waits) == 1 and writer.returncode == 0


def test_duckdb_refusing_the_warehouse_is_said_plainly_with_its_pid(folder, monkeypatch):
    monkeypatch.setenv("SYNCFABRIC_WAREHOUSE_WAIT_SECONDS", "0")
    writer = hold_the_warehouse(folder)
    try:
        for read_only in (False, True):
            with (
                pytest.raises(SyncfabricError) as refused,
                connect(folder.warehouse, read_only=read_only),
            ):
                pass
            assert refused.value.exit_code == EXIT_BUSY
            assert f"pid {writer.pid} (" in refused.value.message
            assert "not a syncctl command" in refused.value.message
    finally:
        writer.communicate("", timeout=30)
    assert warehouse_refusal(ValueError("some other error"), folder.warehouse) is None


def test_a_reused_pid_is_not_the_process_that_started_a_run():
    me = os.getpid()
    assert started_at(me) is not None
    assert is_same_process(me, datetime.now(UTC))
    # A run that started an hour before this process did was not started by it.
    assert not is_same_process(me, started_at(me) - timedelta(hours=1))


def facts(**overrides) -> RunFacts:
    values = {
        "run_id": "r1",
        "job_name": "ingest_batch",
        "status": "STARTED",
        "launched_by_syncctl": True,
        "pid": 4242,
        "started": datetime(2026, 1, 1, tzinfo=UTC),
    }
    values.update(overrides)
    return RunFacts(**values)


def test_which_unfinished_runs_are_dead():
    alive = lambda pid, started: True  # noqa: E731 - the process checks are tested above
    gone = lambda pid, started: False  # noqa: E731

    # syncctl's own runs are dead whenever this syncctl holds the folder, alive process or not
    assert why_dead(facts(), lock_held_here=True, alive=alive)
    assert why_dead(facts(pid=None), lock_held_here=True, alive=alive)
    # without the lock, only a process that is gone makes a run dead
    assert why_dead(facts(), lock_held_here=False, alive=alive) is None
    assert "pid 4242" in why_dead(facts(), lock_held_here=False, alive=gone)
    # a run of the UI is judged by its worker alone
    ui = facts(launched_by_syncctl=False)
    assert why_dead(ui, lock_held_here=True, alive=alive) is None
    assert why_dead(ui, lock_held_here=True, alive=gone)
    assert why_dead(facts(launched_by_syncctl=False, pid=None), lock_held_here=True) is None
    # the run this very process is running is never dead
    assert why_dead(facts(pid=os.getpid()), lock_held_here=True) is None


def test_which_pool_claims_are_stale():
    assert why_stale("SUCCESS", set(), "r1") and why_stale("FAILURE", set(), "r1")
    assert why_stale(None, set(), "r1")  # a claim of a run the instance does not know
    assert why_stale("STARTED", {"r1"}, "r1")
    assert why_stale("STARTED", set(), "r1") is None
    assert why_stale("NOT_STARTED", {"r2"}, "r1") is None


def refusal(url: str | sa.URL, engine: sa.Engine | None = None) -> Exception:
    """What connecting to `url` (or through `engine`) raises."""
    with pytest.raises(Exception) as caught:
        (engine or sa.create_engine(url)).connect()
    return caught.value


def test_a_refused_port_or_an_unknown_host_is_permanent_and_named(monkeypatch):
    refused = f"postgresql+psycopg://sync:s3cret@127.0.0.1:{refused_port()}/crm"
    unknown = "mysql+pymysql://sync:s3cret@no-such-host.invalid/billing"
    calls = []

    def connect_refused():
        calls.append(1)
        sa.create_engine(refused).connect()

    with pytest.raises(sa.exc.OperationalError):
        retrying(connect_refused, refused)
    assert len(calls) == 1, "a refused address is not retried"

    problem = classify(refusal(refused), refused)
    assert problem is not None and not problem.transient
    assert "nothing accepts connections at 127.0.0.1:" in problem.what
    assert not classify(refusal(unknown), unknown).transient

    monkeypatch.setenv("SYNCFABRIC_CRM_URL", refused)
    said = message("crm", refused, problem)
    assert "SYNCFABRIC_CRM_URL" in said and "Fix:" in said and "s3cret" not in said


def test_rejected_credentials_are_permanent(mariadb_engine):
    url = mariadb_engine.url.set(username="nosuch", password="s3cret")
    problem = classify(refusal(url), url.render_as_string(hide_password=False))
    assert problem is not None and not problem.transient
    assert "rejected the credentials" in problem.what


def test_a_missing_demo_file_says_to_build_it_or_set_the_variable(folder, monkeypatch):
    monkeypatch.delenv("SYNCFABRIC_CRM_URL", raising=False)
    url = f"sqlite:///{folder.system_database('crm')}"
    problem = classify(refusal(url, open_source(url)), url)
    said = message("crm", url, problem)
    assert f"the SQLite file at {folder.system_database('crm')}" in said
    assert "syncctl demo" in said and "SYNCFABRIC_CRM_URL" in said


def reading_error(engine: sa.Engine, table: str) -> Exception:
    """What streaming the CRM mapping from `table` through `engine` raises."""
    from dataclasses import replace

    from sync_assets.connectors.sources import stream_batches
    from sync_assets.project import current

    with pytest.raises(Exception) as caught:
        list(stream_batches(engine, replace(current().mapping("crm", "customer"), table=table)))
    return caught.value


def test_a_missing_table_is_permanent_and_named_on_every_backend(
    folder, postgres_engine, mariadb_engine, monkeypatch
):
    sqlite = f"sqlite:///{folder.root / 'crm.sqlite'}"
    sa.create_engine(sqlite).connect().close()  # an empty database file
    for url in (sqlite, postgres_engine.url, mariadb_engine.url):
        plain = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        error = reading_error(open_source(url), "contacts_renamed")
        problem = classify(error, plain)
        assert problem is not None and not problem.transient, error
        assert "the table " in problem.what and "contacts_renamed does not exist" in problem.what
        monkeypatch.setenv("SYNCFABRIC_CRM_URL", plain)
        said = message("crm", plain, problem)
        assert "create the table" in said and "correct the table in the mapping" in said
        assert "SYNCFABRIC_CRM_URL" in said


def test_a_missing_column_is_named(folder):
    url = f"sqlite:///{folder.root / 'crm.sqlite'}"
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("CREATE TABLE contacts (contact_id TEXT)"))
    problem = classify(reading_error(open_source(url), "contacts"), url)
    assert problem is not None and not problem.transient
    assert problem.what == "the column contacts.email_address does not exist there"


def test_a_missing_data_folder_is_an_error_naming_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCFABRIC_HOME", str(tmp_path / "nope"))
    with pytest.raises(SyncfabricError) as missing:
        DataFolder.from_env().require()
    assert missing.value.exit_code == EXIT_USAGE
    assert str(tmp_path / "nope") in missing.value.message
    assert "SYNCFABRIC_HOME" in missing.value.message
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("SYNCFABRIC_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(SyncfabricError, match="holds no landing/"):
        DataFolder.from_env().require()
    (tmp_path / "elsewhere" / "landing").mkdir()
    assert DataFolder.from_env().require().root == tmp_path / "elsewhere"


def duckdb_settings(folder: DataFolder) -> tuple[str, str]:
    with connect(folder.warehouse) as con:
        [(limit, temp)] = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
        ).fetchall()
    return limit, temp


def test_the_warehouse_memory_limit_and_temp_directory_are_settings(folder, monkeypatch):
    monkeypatch.delenv(DUCKDB_MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.delenv(DUCKDB_TEMP_DIRECTORY_ENV, raising=False)
    _, temp = duckdb_settings(folder)
    assert temp == f"{folder.warehouse}.tmp", "spills stay in the data folder"
    monkeypatch.setenv(DUCKDB_MEMORY_LIMIT_ENV, "512MiB")
    monkeypatch.setenv(DUCKDB_TEMP_DIRECTORY_ENV, str(folder.root / "spill"))
    assert duckdb_settings(folder) == ("512.0 MiB", str(folder.root / "spill"))


@pytest.mark.parametrize("value", ["lots", "2", "-1GB", "2 GBs"])
def test_a_bad_memory_limit_is_refused_before_the_warehouse_is_opened(folder, monkeypatch, value):
    monkeypatch.setenv(DUCKDB_MEMORY_LIMIT_ENV, value)
    with pytest.raises(SyncfabricError) as raised, connect(folder.warehouse):
        pass
    assert raised.value.exit_code == EXIT_USAGE
    assert DUCKDB_MEMORY_LIMIT_ENV in raised.value.message and "fix:" in raised.value.message
    assert not folder.warehouse.exists()
