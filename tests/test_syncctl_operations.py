"""What an operator meets, through the installed `syncctl`: a busy data folder, a killed run and
what the next command does about it, `doctor`, bad settings, and what the console shows."""

from __future__ import annotations

import http.server
import json
import os
import pty
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import (
    SYNCCTL,
    assert_no_traceback,
    instance_of,
    syncctl,
    unfinished_runs_and_claims,
)
from ports import refused_port

from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.raw import ingest_batch
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect, transaction

CLEAR = "\x1b[2K"
"""What the progress writes before redrawing its status line."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Path:
    """A small demo landscape, landed and not yet run."""
    home = tmp_path_factory.mktemp("ops") / "syncfabric"
    built = syncctl(home, "demo", "--customers", "300", "--orders", "1200")
    assert built.returncode == 0, built.stderr
    return home


@pytest.fixture
def home(landed, tmp_path) -> Path:
    copy = tmp_path / "syncfabric"
    shutil.copytree(landed, copy)
    return copy


def crash_a_run(home: Path) -> None:
    """SIGKILL `syncctl run` once its first step has started and holds the writer pool."""
    crashed = syncctl(home, "run", SYNCFABRIC_CRASH_AT="after-step-start")
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    runs, claims = unfinished_runs_and_claims(home)
    assert [(run.job_name, run.status) for run in runs] == [("ingest_batch", "STARTED")]
    assert [(claim.pool, claim.run_id) for claim in claims] == [("duckdb_writer", runs[0].run_id)]


# ---- one syncctl at a time ----------------------------------------------------------------------


def test_a_second_writer_exits_75_naming_who_holds_the_data_folder(home):
    from sync_assets.operate.lock import hold

    with hold(DataFolder(home), "run"):
        ran = syncctl(home, "run")
        repair = syncctl(home, "doctor", "--repair")
        read = syncctl(home, "summary", "--json")  # read-only commands take no lock

    for refused in (ran, repair):
        assert refused.returncode == 75, refused.stderr[-3000:]
        assert f"in use by pid {os.getpid()} (syncctl run, since " in refused.stderr
        assert_no_traceback(refused)
    assert read.returncode == 0, read.stderr
    assert syncctl(home, "run", "--json").returncode == 0  # free again once released


def test_with_wait_the_second_writer_goes_once_the_first_is_done(home):
    from sync_assets.operate.lock import hold

    with hold(DataFolder(home), "check"):
        second = subprocess.Popen(
            [SYNCCTL, "run", "--json", "--wait", "300"],
            env={**os.environ, "SYNCFABRIC_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting = second.stderr.readline()  # said once the lock was found taken
    out, err = second.communicate(timeout=300)

    assert f"waiting for pid {os.getpid()} (syncctl check" in waiting
    assert second.returncode == 0, err[-3000:]
    assert len(json.loads(out)["runs"]) == 3


def test_a_warehouse_held_by_another_process_is_said_plainly(home):
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('open', flush=True); "
            "sys.stdin.read()",
            str(home / "warehouse.duckdb"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline() == "open\n"
        # after waiting a second (SYNCFABRIC_WAREHOUSE_WAIT_SECONDS; 10 by default)
        read = syncctl(home, "summary", SYNCFABRIC_WAREHOUSE_WAIT_SECONDS="1")
        ran = syncctl(home, "run", SYNCFABRIC_WAREHOUSE_WAIT_SECONDS="1")
    finally:
        writer.communicate("", timeout=30)

    for refused in (read, ran):
        assert refused.returncode == 75, refused.stderr[-3000:]
        assert f"is open in another process: pid {writer.pid} (" in refused.stderr
        assert_no_traceback(refused)


# ---- a killed run, and the next command ---------------------------------------------------------


def test_a_killed_run_is_marked_failed_and_its_claim_freed_by_the_next_run(home):
    crash_a_run(home)
    [dead], _ = unfinished_runs_and_claims(home)

    found = syncctl(home, "doctor", "--json")
    ran = syncctl(home, "run", "--json")
    healthy = syncctl(home, "doctor")

    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert [run["run_id"] for run in report["stuck_runs"]] == [dead.run_id]
    assert f"(pid {dead.pid}) is gone" in report["stuck_runs"][0]["why"]
    assert [claim["pool"] for claim in report["stale_claims"]] == ["duckdb_writer"]

    assert ran.returncode == 0, ran.stderr[-3000:]
    assert f"marked failed and freed its pool claims: run {dead.run_id} (ingest_batch" in ran.stderr
    counts = json.loads(ran.stdout)
    assert counts["pending"] == 0 and counts["golden"]["customer"] > 0
    assert unfinished_runs_and_claims(home) == ([], [])
    with instance_of(home) as instance:
        assert instance.get_run_by_id(dead.run_id).status.value == "FAILURE"
    assert healthy.returncode == 0, healthy.stdout
    assert "healthy" in healthy.stdout


def test_doctor_repair_fails_dead_runs_frees_claims_and_resumes_stranded_batches(home):
    crash_a_run(home)
    folder = DataFolder(home)
    stranded = LandingZone(folder.landing).pending()[0]
    with connect(folder.warehouse) as con, transaction(con):
        ingest_batch(con, stranded)  # raw events in, never validated nor applied

    before = syncctl(home, "doctor")
    repaired = syncctl(home, "doctor", "--repair", "--json")
    summary = syncctl(home, "summary", "--json")

    assert before.returncode == 1
    assert "runs whose process is gone: 1" in before.stdout
    assert "stale pool claims: 1" in before.stdout
    assert f"stranded batches (not applied): 1\n  {stranded.batch_id}: raw" in before.stdout
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-3000:]
    report = json.loads(repaired.stdout)
    assert report["healthy"] and report["stuck_runs"] == report["stranded_batches"] == []
    assert any(action.startswith("marked failed: run ") for action in report["repaired"])
    assert any(stranded.batch_id in action for action in report["repaired"])
    assert unfinished_runs_and_claims(home) == ([], [])
    assert json.loads(summary.stdout)["pending"] == 0


class Lines:
    """A process's stream read line by line in a thread, so a test can wait for a line with a
    deadline (a process waiting in silence must fail the test, not hang it)."""

    def __init__(self, stream) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def first_saying(self, words: str, limit_s: float = 300) -> str:
        while True:
            try:
                line = self._lines.get(timeout=limit_s)
            except queue.Empty:
                raise AssertionError(f"nothing said {words!r} within {limit_s} s") from None
            if line is None:
                raise AssertionError(f"the stream ended without {words!r}: {self.seen}")
            self.seen.append(line)
            if words in line:
                return line

    def rest(self) -> str:
        """Everything, once the stream has ended."""
        while (line := self._lines.get(timeout=300)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


HOLD_THE_WRITER_POOL = """
import sys
import dagster as dg
from dagster._core.instance.ref import InstanceRef

@dg.op(pool="duckdb_writer")
def hold_the_writer_pool():
    print("held", flush=True)
    sys.stdin.readline()

job = dg.GraphDefinition(name="launched_from_the_ui", node_defs=[hold_the_writer_pool]).to_job()
with dg.DagsterInstance.from_ref(InstanceRef.from_dir(sys.argv[1])) as instance:
    job.execute_in_process(instance=instance)
"""


def test_a_live_run_holding_the_pool_is_left_alone_and_the_wait_is_said(home):
    assert syncctl(home, "doctor").returncode == 0  # the instance exists, with its pool limit
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITER_POOL, str(home / "dagster")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout.readline() == "held\n"  # its step holds the writer pool's slot
        ran = subprocess.Popen(
            [SYNCCTL, "run", "--json"],
            env={**os.environ, "SYNCFABRIC_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stderr = Lines(ran.stderr)
        said = stderr.first_saying("waits for")  # its first step found the pool taken
        other.communicate("go on\n", timeout=120)
        out = ran.stdout.read()
        ran.wait(timeout=300)
        err = stderr.rest()
    finally:
        if other.poll() is None:
            other.kill()

    assert "ingest_batch: step raw_events waits for the duckdb_writer pool, held by run " in said
    assert "(launched_from_the_ui, STARTED, launched by the UI or the daemon)" in said
    assert ran.returncode == 0, err[-3000:]
    assert "marked failed" not in err
    assert json.loads(out)["pending"] == 0
    with instance_of(home) as instance:
        [theirs] = [r for r in instance.get_runs() if r.job_name == "launched_from_the_ui"]
        assert theirs.status.value == "SUCCESS"


def test_a_run_of_the_ui_whose_worker_died_is_found_by_its_pid_and_recovered(home):
    assert syncctl(home, "doctor").returncode == 0
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_WRITER_POOL, str(home / "dagster")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout.readline() == "held\n"
    other.kill()  # the worker dies holding the slot, as an OOM-killed run worker would
    other.wait(timeout=30)

    found = syncctl(home, "doctor", "--json")
    ran = syncctl(home, "run", "--json")

    assert found.returncode == 1
    [stuck] = json.loads(found.stdout)["stuck_runs"]
    assert (stuck["job"], stuck["launched_by"]) == ("launched_from_the_ui", "dagster")
    assert stuck["why"] == f"its process (pid {other.pid}) is gone"
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert f"run {stuck['run_id']} (launched_from_the_ui, STARTED, started " in ran.stderr
    assert unfinished_runs_and_claims(home) == ([], [])


# ---- bad settings ------------------------------------------------------------------------------


@pytest.fixture
def answers_404() -> Iterator[str]:
    """A real HTTP server on loopback that answers 404 to everything: a wrong platform URL."""

    class NotHere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotHere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://sync:s3cret@127.0.0.1:{server.server_address[1]}/wrong"
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("variable", "url", "said"),
    [
        (
            "SYNCFABRIC_CRM_URL",
            f"postgresql+psycopg://sync:s3cret@127.0.0.1:{refused_port()}/crm",
            "nothing accepts connections at 127.0.0.1:",
        ),
        (
            "SYNCFABRIC_BILLING_URL",
            "mysql+pymysql://sync:s3cret@no-such-host.invalid/billing",
            "is unknown (the name does not resolve)",
        ),
        ("SYNCFABRIC_SUPPORT_URL", "404", "answered 404 Not Found"),
    ],
)
def test_a_bad_system_url_fails_at_once_naming_the_variable(home, answers_404, variable, url, said):
    url = answers_404 if url == "404" else url
    checked = syncctl(home, "check", **{variable: url})

    assert checked.returncode == 2, checked.stderr[-3000:]
    assert_no_traceback(checked)
    [line] = [line for line in checked.stderr.splitlines() if variable in line]
    assert said in line and "Fix:" in line
    assert "s3cret" not in checked.stdout + checked.stderr
    assert "tried" not in line, "a permanent failure is not retried"


def test_run_with_a_bad_url_reconciles_the_other_systems_and_says_why_once(home):
    url = f"postgresql+psycopg://sync:s3cret@127.0.0.1:{refused_port()}/crm"
    ran = syncctl(home, "run", SYNCFABRIC_CRM_URL=url)

    assert ran.returncode == 2
    assert_no_traceback(ran)
    [said] = [line for line in ran.stderr.splitlines() if "SYNCFABRIC_CRM_URL (" in line]
    assert said.startswith("crm (customer) not checked: ")
    assert "SYNCFABRIC_CRM_URL (postgresql+psycopg://sync:***@127.0.0.1:" in said
    checks = {line.split()[0]: line for line in ran.stdout.splitlines() if "_in_sync" in line}
    assert "NOT CHECKED" in checks["crm_customer_in_sync"]
    assert (
        "NOT CHECKED" not in checks["billing_customer_in_sync"] + checks["support_customer_in_sync"]
    )
    assert "deliver --emit" not in ran.stderr, "no advice to deliver past a failed reconciliation"


def test_a_missing_data_folder_is_an_error_for_every_command_but_demo(tmp_path):
    missing = tmp_path / "typo"
    for command in (["summary"], ["run"], ["doctor"], ["dead-letters"], ["check"], ["replay"]):
        result = syncctl(missing, *command)
        assert result.returncode == 2, (command, result.stdout, result.stderr[-2000:])
        assert f"no Syncfabric data folder at {missing}" in result.stderr
        assert "SYNCFABRIC_HOME" in result.stderr
        assert result.stdout == ""
        assert_no_traceback(result)
    assert not missing.exists()


def test_a_bad_clock_skew_setting_stops_every_command_before_it_starts(home):
    result = syncctl(home, "summary", SYNCFABRIC_MAX_CLOCK_SKEW_SECONDS="five minutes")

    assert result.returncode == 2
    assert "SYNCFABRIC_MAX_CLOCK_SKEW_SECONDS='five minutes' is not a whole number" in result.stderr
    assert_no_traceback(result)


# ---- what the console shows ---------------------------------------------------------------------


def test_an_error_check_prints_its_table_and_no_traceback_unless_verbose(home):
    quiet = syncctl(home, "check")  # nothing ingested: every system is all "extra", ERROR
    verbose = syncctl(home, "-v", "check")

    assert quiet.returncode == 1
    assert "FAILED (ERROR)" in quiet.stdout
    assert_no_traceback(quiet)
    assert "reconcile_check: step reconciliation_checks failed: " in quiet.stderr
    assert verbose.returncode == 1
    assert "DagsterAssetCheckFailedError" in verbose.stderr and "Stack Trace" in verbose.stderr


def test_verbose_shows_the_traceback_of_an_operator_error(tmp_path):
    result = syncctl(tmp_path / "typo", "-v", "summary")

    assert result.returncode == 2
    assert "Traceback" in result.stderr and "SyncfabricError" in result.stderr
    assert result.stderr.rstrip().endswith("make a real one.")


def on_a_terminal(home: Path, *args: str) -> tuple[int, str]:
    """Run syncctl with its stdout on a pseudo-terminal; its exit code and what the terminal got."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [SYNCCTL, *args],
        env={**os.environ, "SYNCFABRIC_HOME": str(home), "COLUMNS": "200"},
        stdout=terminal,
        stderr=subprocess.DEVNULL,
    )
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return process.wait(timeout=300), shown.decode(errors="replace")


def test_progress_shows_steps_and_counts_on_a_terminal_only(home, tmp_path):
    piped_home = shutil.copytree(home, tmp_path / "piped")
    json_home = shutil.copytree(home, tmp_path / "json")
    code, shown = on_a_terminal(home, "run")
    piped = syncctl(piped_home, "run")
    json_code, json_shown = on_a_terminal(json_home, "run", "--json")

    assert code == 0
    assert "ingest_batch / raw_events done in " in shown  # the status line, step by step
    assert re.search(r"\ringest_batch: done, \d+ step\(s\) succeeded in ", shown.replace(CLEAR, ""))
    assert "landed 4,012" in shown
    assert "reconcile / snapshot_crm_customer done in " in shown and "row_count 300" in shown
    assert piped.returncode == 0 and " / " not in piped.stdout  # not a terminal: no progress
    assert json_code == 0 and " / raw_events" not in json_shown
    assert json.loads(json_shown.strip().splitlines()[-1])["pending"] == 0
