"""The reconciliation's steps in `syncctl worker` processes, through Dagster's celery executor on
the real RabbitMQ (127.0.0.1:5672, or SYNCFABRIC_TEST_RABBITMQ_URL): two workers share the steps,
the warehouse still has one writer at a time, and every result equals the default executor's on
an identical data folder.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import SYNCCTL, instance_of, syncctl
from databases import in_ci
from ports import unreachable

from sync_assets.errors import EXIT_FAILED, EXIT_USAGE
from sync_assets.security.redact import redact_text
from sync_assets.settings import CELERY_BROKER_URL_ENV, DataFolder, celery_broker_url
from sync_assets.warehouse import WRITER_POOL, connect

BROKER = os.environ.get("SYNCFABRIC_TEST_RABBITMQ_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
READY_S = 60.0


# -- without a server -----------------------------------------------------------------------------


def test_the_setting_is_optional_and_refuses_what_is_not_rabbitmq(monkeypatch):
    from sync_assets.errors import SyncfabricError

    monkeypatch.delenv(CELERY_BROKER_URL_ENV, raising=False)
    assert celery_broker_url() is None
    monkeypatch.setenv(CELERY_BROKER_URL_ENV, "redis://user:hunter22@cache:6379/0")
    with pytest.raises(SyncfabricError, match="is not a RabbitMQ URL") as refused:
        celery_broker_url()
    assert "hunter22" not in refused.value.message and "cache:6379" in refused.value.message


def test_without_the_setting_the_jobs_keep_the_default_executor(monkeypatch):
    from sync_assets.jobs import CHECK_JOB, RECONCILE_JOB
    from sync_assets.operate.workers import runs_in_workers, step_executor

    monkeypatch.delenv(CELERY_BROKER_URL_ENV, raising=False)
    assert step_executor() is None
    monkeypatch.setenv(CELERY_BROKER_URL_ENV, "pyamqp://guest:guest@127.0.0.1:5672//")
    from sync_assets.definitions import build_definitions

    defs = build_definitions(DataFolder(Path("/nonexistent")))
    assert runs_in_workers(defs.resolve_job_def(RECONCILE_JOB))
    assert runs_in_workers(defs.resolve_job_def(CHECK_JOB))
    assert not runs_in_workers(defs.resolve_job_def("deliver_corrections"))  # PII in memory


def test_a_worker_without_a_broker_says_how_to_set_it(demo, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != CELERY_BROKER_URL_ENV}
    result = subprocess.run(
        [SYNCCTL, "worker", "--name", "lonely"],
        env={**env, "SYNCFABRIC_HOME": str(demo.root)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == EXIT_USAGE, result.stderr
    assert f"{CELERY_BROKER_URL_ENV} is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broker_nobody_listens_on_is_refused_without_its_password(demo):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = syncctl(
        demo.root,
        "worker",
        **{CELERY_BROKER_URL_ENV: f"pyamqp://guest:s3cr3tpw@127.0.0.1:{port}//"},
    )

    assert result.returncode == EXIT_FAILED, result.stderr
    assert "cannot reach the celery broker at pyamqp://guest:***@127.0.0.1" in result.stderr
    assert "s3cr3tpw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


# -- against RabbitMQ -----------------------------------------------------------------------------


@pytest.fixture
def broker() -> str:
    reason = unreachable(BROKER, 5672)
    if reason:
        shown = redact_text(BROKER, url=BROKER)
        message = f"RabbitMQ not reachable at {shown} ({reason}); start rabbitmq-server"
        if in_ci():
            pytest.fail(f"{message}. CI must run these tests: call .ci/services.sh", pytrace=False)
        pytest.skip(message)
    return BROKER


def _copy(demo: DataFolder, to: Path) -> DataFolder:
    """The demo's whole data folder (its PII keys too: the same fingerprints in both), with the
    same drift by hand: names changed in the support desk, which does not own them."""
    shutil.copytree(demo.root, to)
    folder = DataFolder(to)
    with sqlite3.connect(folder.system_database("support")) as con:
        con.execute(
            "UPDATE users SET name = name || ' Jr' WHERE id IN (SELECT id FROM users ORDER BY id "
            "LIMIT 3)"
        )
    return folder


@pytest.fixture
def workers(demo, broker, tmp_path) -> Iterator[tuple[DataFolder, list[str]]]:
    """A copy of the demo's data folder with two `syncctl worker` processes on it, each with a
    name of its own, answering on the broker; stopped (terminated and waited for) after."""
    from sync_assets.operate.workers import celery_app

    folder = _copy(demo, tmp_path / "spread")
    tag = uuid.uuid4().hex[:8]
    names = [f"sf-{tag}-a", f"sf-{tag}-b"]
    env = {**os.environ, "SYNCFABRIC_HOME": str(folder.root), CELERY_BROKER_URL_ENV: broker}
    processes: list[subprocess.Popen] = []
    logs = []
    try:
        for name in names:
            log = (tmp_path / f"{name}.log").open("w")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [SYNCCTL, "worker", "--name", name, "--concurrency", "1"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        app = celery_app(broker)
        deadline = time.monotonic() + READY_S
        answered: set[str] = set()
        while not all(any(a.startswith(f"{n}@") for a in answered) for n in names):
            for process, name in zip(processes, names, strict=True):
                if process.poll() is not None:
                    pytest.fail(f"worker {name} exited: {(tmp_path / f'{name}.log').read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"workers {names} did not answer within {READY_S} s")
            answered |= {node for reply in app.control.ping(timeout=0.5) or [] for node in reply}
        strangers = {a for a in answered if not any(a.startswith(f"{n}@") for n in names)}
        assert not strangers, f"other celery workers listen on {broker}: {strangers}"
        yield folder, sorted(a for a in answered if a not in strangers)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def _without_run_ids(output: str) -> dict:
    report = json.loads(output)
    report.pop("run_id")
    return report


def _results(folder: DataFolder) -> dict[str, list[tuple]]:
    """What a reconciliation and a delivery leave, without run ids, times or sealed values
    (sealed anew each time): the discrepancies, the comparisons, the corrections and their
    verdicts, the golden records' versions."""
    queries = {
        "discrepancies": "SELECT kind, resolution, system, entity, entity_key, attribute, "
        "expected, actual, other_system, views FROM discrepancies",
        "comparisons": "SELECT check_name, entity, system, other_system, rows_compared, missing, "
        "extra, mismatch, divergence FROM reconcile_comparisons",
        "corrections": "SELECT kind, target, entity, entity_key, action, golden_version, status, "
        "attempts FROM corrections",
        "golden_customer": "SELECT customer_id, last_version, last_event_id, lifecycle_state "
        "FROM golden_customer",
        "golden_order": "SELECT order_id, last_version, last_event_id, lifecycle_state "
        "FROM golden_order",
    }
    with connect(folder.warehouse, read_only=True) as con:
        return {
            name: sorted(map(tuple, con.execute(sql).fetchall())) for name, sql in queries.items()
        }


PER_RUN = {"updated_at", "updated", "created_on", "applied_at", "correction_id"}
"""The systems' change stamps, and when delivery applied which correction (a new id each
emission): the time and ids of each run, not its result."""


def _systems(folder: DataFolder) -> dict[str, list[tuple]]:
    """Every table of every demo system, row by row but for the times (what deliveries wrote)."""
    tables: dict[str, list[tuple]] = {}
    for database in sorted(folder.systems.glob("*.sqlite")):
        with sqlite3.connect(database) as con:
            names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for name in names:
                columns = [c for (_, c, *_) in con.execute(f'PRAGMA table_info("{name}")')]
                kept = ", ".join(f'"{c}"' for c in columns if c not in PER_RUN)
                rows = con.execute(f'SELECT {kept} FROM "{name}"').fetchall()
                tables[f"{database.stem}.{name}"] = sorted(rows, key=repr)
    return tables


def _steps(home: Path, run_id: str) -> tuple[dict[str, str], dict[str, tuple[float, float]]]:
    """Per step of the run: the celery worker that ran it (dagster_celery's engine event), and
    when it started and ended (its own events, written by the worker)."""
    import dagster as dg

    where: dict[str, str] = {}
    started: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    with instance_of(home) as instance:
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type == dg.DagsterEventType.ENGINE_EVENT:
                metadata = event.engine_event_data.metadata
                if "Celery worker" in metadata:
                    where[event.step_key] = str(metadata["Celery worker"].value)
            elif event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = entry.timestamp
            elif event.event_type in (
                dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE,
            ):
                spans[event.step_key] = (started[event.step_key], entry.timestamp)
    return where, spans


def _writer_steps() -> set[str]:
    """The steps in the `duckdb_writer` pool: the assets that write the warehouse."""
    from sync_assets.definitions import build_definitions

    defs = build_definitions(DataFolder(Path("/nonexistent")))
    return {
        node.name
        for node in defs.resolve_job_def("reconcile").graph.node_defs
        if getattr(node, "pool", None) == WRITER_POOL
    }


@pytest.mark.slow
@pytest.mark.rabbitmq
def test_two_workers_share_the_reconciliation_with_the_default_executors_results(
    demo, workers, tmp_path
):
    spread, names = workers
    plain = _copy(demo, tmp_path / "plain")
    env = {CELERY_BROKER_URL_ENV: BROKER}
    without = {k: v for k, v in os.environ.items() if k != CELERY_BROKER_URL_ENV}

    def plainly(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [SYNCCTL, *args], env={**without, "SYNCFABRIC_HOME": str(plain.root)},
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    checked = [syncctl(spread.root, "check", "--json", **env), plainly("check", "--json")]
    reconciled = [
        syncctl(spread.root, "reconcile", "--json", **env),
        plainly("reconcile", "--json"),
    ]
    delivered = [syncctl(spread.root, "deliver", "--json", **env), plainly("deliver", "--json")]

    for result in (*checked, *reconciled, *delivered):
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
    # the same findings, values (as fingerprints) included, and the same verdicts and exit codes
    assert checked[0].returncode == checked[1].returncode, checked[0].stderr[-3000:]
    assert _without_run_ids(checked[0].stdout) == _without_run_ids(checked[1].stdout)
    found = _without_run_ids(checked[1].stdout)["checks"]
    assert sum(c["discrepancies"] for c in found) > 0, "the demo drifted: something to compare"
    assert reconciled[0].returncode == reconciled[1].returncode == 0, reconciled[0].stderr[-3000:]
    assert _without_run_ids(reconciled[0].stdout) == _without_run_ids(reconciled[1].stdout)
    assert json.loads(reconciled[1].stdout)["emitted"] > 0
    assert delivered[0].returncode == delivered[1].returncode == 0, delivered[0].stderr[-3000:]
    assert _without_run_ids(delivered[0].stdout) == _without_run_ids(delivered[1].stdout)
    assert json.loads(delivered[1].stdout)["delivered"] > 0
    assert _results(spread) == _results(plain)
    assert _systems(spread) == _systems(plain)

    # every step of both reconciliation runs ran in a worker, and both workers took steps
    writers = _writer_steps()
    for result in (checked[0], reconciled[0]):
        run_id = json.loads(result.stdout)["run_id"]
        where, spans = _steps(spread.root, run_id)
        assert spans and set(spans) <= set(where), (
            f"steps not run in a worker: {set(spans) - set(where)}"
        )
        assert set(where.values()) == set(names), where
        with instance_of(spread.root) as instance:  # the broker's URL stays in the environment
            run = instance.get_run_by_id(run_id)
            assert run is not None and "pyamqp" not in json.dumps(run.run_config)
        # the warehouse's writers one at a time, whichever worker ran them
        writing = sorted(span for step, span in spans.items() if step in writers)
        assert len(writing) > 1
        for (_, ended), (began, _) in itertools.pairwise(writing):
            assert ended <= began, f"two steps wrote the warehouse at once in run {run_id}"
