"""Bus benchmark: publish-to-golden-record latency through NATS JetStream and the real daemon.

In a fresh temporary data folder (SYNCFABRIC_HOME, its own DAGSTER_HOME; never ~/.syncfabric or
the repository's .syncfabric), the real `dagster-daemon run -m sync_assets.definitions` runs the
project's sensors as configured: the bus sensor (sensors/bus.py) lands the messages waiting on
NATS JetStream (SYNCFABRIC_BUS_URL, else nats://127.0.0.1:4222; a stream and subject prefix of
this run's own, deleted afterwards) as batch files, the landed-batches sensor (sensors/ingest.py)
requests an `ingest_batch` run per file, and the daemon's queue launches them: raw events,
validation, golden records.

Once the bus sensor has ticked (its stream exists), this process publishes new CRM customers
(`customer.created`, built by `publish.envelope`, stamped with the moment they are published) at
--rate events/s for --seconds through the product's `jetstream.publish`, then waits until every
published event's batch is applied (or --drain-timeout passes), stops the daemon and every process
it started, and reads the warehouse (read-only):

- latency per event: its batch's `applied_at` in the ledger (DuckDB's now() of the apply
  transaction, so the commit a moment later is not counted) minus the event's `time` (its
  publication); p50, p95 (nearest rank) and max;
- sustained events/s: events applied / (last apply - first publish).

The sensors run at their own `minimum_interval_seconds` (read from the definitions and printed):
SYNCFABRIC_INGEST_INTERVAL_SECONDS, 30 unless set; `--interval` sets it for this run. The scheduled reconciliation is moved
out of the measured window (SYNCFABRIC_RECONCILE_CRON, once a year): it would fail without the
demo's systems and hold the warehouse meanwhile.

The reference, in this process: the same events (same ids and times) landed as one batch file in
the CRM's landing folder of another fresh data folder and ingested at once as `syncctl run` does
(`Pipeline.ingest_pending`, in-process): the pipeline's work without waiting for sensors.

    python -m bench bus                          # 10 events/s for 90 s (3 to 4 minutes in all)
    python -m bench bus --rate 20 --seconds 60
    python -m bench bus --interval 5             # the ingest sensors every 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import duckdb

from bench.common import PROJECT_ROOT, format_table, machine_info, write_result
from sync_assets.settings import INGEST_INTERVAL_ENV

NAME = "bus"
SYSTEM = "crm"
DEFAULT_URL = "nats://127.0.0.1:4222"
POLL_S = 5.0
"""How often the warehouse is looked at while the daemon's runs work (read-only, a moment)."""
START_TIMEOUT_S = 180.0
"""How long the daemon may take to load the definitions and tick the bus sensor once."""
STOP_TIMEOUT_S = 60.0
NEVER_CRON = "0 0 1 1 *"
"""The scheduled reconciliation's cron during the benchmark: not within the measured minutes."""
DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))
ENV_DROPPED = ("SYNCFABRIC_DAGSTER_PG_URL",)
"""Never the user's shared instance: the daemon's runs are recorded under the temporary folder."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=10.0, help="events published per second")
    parser.add_argument("--seconds", type=float, default=90.0, help="how long to publish")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait, after the last publish, for every event to be applied",
    )
    parser.add_argument(
        "--interval",
        type=int,
        default=None,
        help="the ingest sensors' interval in seconds (SYNCFABRIC_INGEST_INTERVAL_SECONDS); "
        "unset, the environment's or the default 30",
    )


# -- the measure (pure SQL over a warehouse) ------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Publish-to-apply of the applied events of a warehouse."""

    events: int
    p50_s: float
    p95_s: float
    max_s: float
    first_publish: float
    """Epoch seconds of the earliest event `time`."""
    last_apply: float
    """Epoch seconds of the latest batch's `applied_at`."""

    @property
    def events_per_second(self) -> float:
        span = self.last_apply - self.first_publish
        return self.events / span if span > 0 else 0.0


def publish_to_apply(con: duckdb.DuckDBPyConnection) -> Latency:
    """Every accepted event of an applied batch: its batch's `applied_at` minus its own `time`."""
    from sync_assets.operate.metrics import percentile
    from sync_assets.project import current
    from sync_assets.warehouse.sql import quote

    events = " UNION ALL ".join(
        f"SELECT batch_id, event_time FROM {quote(entity.events_table)}"
        for entity in current().entities.values()
    )
    rows = con.execute(
        f"""SELECT epoch(b.applied_at) - epoch(e.event_time), epoch(e.event_time),
                   epoch(b.applied_at)
            FROM ({events}) e JOIN batches b USING (batch_id) WHERE b.state = 'applied'"""
    ).fetchall()
    if not rows:
        return Latency(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    late = [row[0] for row in rows]
    return Latency(
        events=len(rows),
        p50_s=percentile(late, 50),
        p95_s=percentile(late, 95),
        max_s=max(late),
        first_publish=min(row[1] for row in rows),
        last_apply=max(row[2] for row in rows),
    )


def publish_to_ingest_p50(con: duckdb.DuckDBPyConnection) -> float:
    """The p50 of the applied batches' publish-to-ingest latency, as the ingest metrics define it
    (operate/metrics.py): up to the batch's raw ingest, in its run; the rest is the run's work."""
    from sync_assets.operate.metrics import percentile, publish_to_ingest
    from sync_assets.project import current

    sql = f"SELECT late_s FROM ({publish_to_ingest(current())})"
    batches = con.execute("SELECT batch_id FROM batches WHERE state = 'applied'").fetchall()
    late = [row[0] for (batch,) in batches for row in con.execute(sql, {"batch": batch}).fetchall()]
    return percentile(late, 50)


def sensor_intervals() -> dict[str, int | None]:
    """The sensors on the way, at the minimum interval their definitions give them."""
    from sensors.bus import bus_sensor
    from sensors.ingest import landed_batches_sensor

    return {s.name: s.minimum_interval_seconds for s in (bus_sensor, landed_batches_sensor)}


# -- the bus and the daemon -----------------------------------------------------------------------


async def _stream_state(settings: Any, project: Any, *, delete: bool) -> bool:
    """Whether the run's stream exists (the bus sensor made it); deleted when `delete`."""
    import nats
    from nats.js.errors import NotFoundError

    from sync_assets.ingest.jetstream import stream_name

    async def quiet(_error: Exception) -> None:
        """The client would print a traceback per attempt; the error below says it once."""

    try:
        nc = await nats.connect(
            settings.url,
            connect_timeout=3,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=quiet,
        )
    except Exception as error:  # the client raises its own, OSError or TimeoutError
        where = urlsplit(settings.url)
        raise SystemExit(
            f"bench bus: no NATS server at {where.hostname}:{where.port or 4222} "
            f"({type(error).__name__}); start nats-server -js (.ci/services.sh) or set "
            "SYNCFABRIC_BUS_URL"
        ) from None
    try:
        js = nc.jetstream()
        name = stream_name(settings, project.name)
        try:
            if delete:
                await js.delete_stream(name)
            else:
                await js.stream_info(name)
        except NotFoundError:
            return False
        return True
    finally:
        await nc.close()


def _start_daemon(home: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`dagster-daemon run` over the data folder, in a process group of its own: its code server
    and the runs it launches are in it, so stopping the group stops them all."""
    from sync_assets.settings import DataFolder

    env = {**env, "DAGSTER_HOME": str(DataFolder(home).prepare_dagster_home())}
    with log.open("w") as out:
        return subprocess.Popen(
            [DAEMON, "run", "-m", "sync_assets.definitions"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the daemon's process group, SIGKILL to what is left after STOP_TIMEOUT_S."""
    group = process.pid  # start_new_session: the daemon leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break  # every process of the group is gone
        time.sleep(0.2)  # polling processes stopping, bounded by the deadline
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except OSError:
        return ""


def _wait_for_bus_sensor(daemon: subprocess.Popen, log: Path, settings: Any, project: Any) -> float:
    started = time.monotonic()
    while not asyncio.run(_stream_state(settings, project, delete=False)):
        if daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited ({daemon.returncode}):\n{_tail(log)}")
        if time.monotonic() - started > START_TIMEOUT_S:
            raise RuntimeError(f"the bus sensor did not tick in {START_TIMEOUT_S:.0f} s")
        time.sleep(1)  # polling the daemon's first tick, bounded by START_TIMEOUT_S
    return time.monotonic() - started


def _event(n: int) -> dict[str, Any]:
    from sync_assets.ingest.publish import envelope

    data = {
        "email": f"bench{n}@example.com",
        "full_name": f"Bench Customer {n}",
        "country": "GB",
        "status": "active",
    }
    return envelope("customer", "created", f"C-{n:06d}", data, system=SYSTEM)


def _publish_steadily(rate: float, seconds: float, settings: Any, project: Any) -> list[dict]:
    """Event n goes out at start + n / rate, stamped when it goes; those due together (the
    publisher late) go out in one call. Returns the events as published."""
    from sync_assets.ingest import jetstream

    total = max(1, round(rate * seconds))
    if total > 999_999:
        raise SystemExit("at most 999,999 events: the demo's customer keys have 6 digits")
    published: list[dict] = []
    start = time.monotonic()
    while len(published) < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        if due > len(published):
            events = [_event(n) for n in range(len(published) + 1, due + 1)]
            sent = jetstream.publish(events, SYSTEM, settings, project)
            if sent.duplicates:
                raise RuntimeError(f"{sent.duplicates} event(s) dropped as resends")
            published += events
        else:
            time.sleep(max(0.0, start + len(published) / rate - time.monotonic()))  # pacing
    return published


def _accounted(warehouse: Path) -> int | None:
    """Lines of the applied batches (applied, duplicates, dead letters), None while busy."""
    from sync_assets.errors import SyncfabricError
    from sync_assets.warehouse import connect, scalar

    try:
        with connect(warehouse, read_only=True) as con:
            return int(
                scalar(con, "SELECT coalesce(sum(landed), 0) FROM batches WHERE state = 'applied'")
            )
    except (duckdb.Error, SyncfabricError):  # a run holds the warehouse: look again later
        return None


def _wait_applied(warehouse: Path, total: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = _accounted(warehouse) or seen
        if seen >= total:
            break
        time.sleep(POLL_S)  # polling the daemon's runs, bounded by the deadline
    return seen


def _ingest_runs(dagster_home: Path, timeout_s: float) -> dict[str, Any]:
    """The daemon's ingest runs, once none is queued or in flight (or the timeout): how many by
    status, and the median seconds each waited in the queue and took (its process included)."""
    import statistics

    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from sensors.ingest import ACTIVE
    from sync_assets.jobs import INGEST_BATCH_JOB

    deadline = time.monotonic() + timeout_s
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        active = dg.RunsFilter(job_name=INGEST_BATCH_JOB, statuses=ACTIVE)
        while instance.get_runs(filters=active, limit=1) and time.monotonic() < deadline:
            time.sleep(1)  # polling the last run to its end, bounded by the deadline
        records = instance.get_run_records(filters=dg.RunsFilter(job_name=INGEST_BATCH_JOB))
    by_status: dict[str, int] = {}
    queued, took = [], []
    for record in records:
        status = record.dagster_run.status.value
        by_status[status] = by_status.get(status, 0) + 1
        if record.start_time is not None:
            queued.append(record.start_time - record.create_timestamp.timestamp())
            if record.end_time is not None:
                took.append(record.end_time - record.start_time)
    return {
        "by_status": by_status,
        "queued_p50_s": statistics.median(queued) if queued else None,
        "run_p50_s": statistics.median(took) if took else None,
    }


def _ledger(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    row = con.execute(
        """SELECT count(*), count(*) FILTER (WHERE state = 'applied'),
                  coalesce(sum(applied), 0), coalesce(sum(dead_lettered), 0),
                  coalesce(sum(duplicates), 0)
           FROM batches"""
    ).fetchone()
    names = ("batches", "batches_applied", "events_applied", "dead_lettered", "duplicates")
    return dict(zip(names, map(int, row or (0, 0, 0, 0, 0)), strict=True))


def _measure_bus(root: Path, args: argparse.Namespace, url: str) -> dict[str, Any]:
    from sync_assets.project import current
    from sync_assets.settings import BusSettings, DataFolder
    from sync_assets.warehouse import connect

    tag = uuid.uuid4().hex[:10]
    bus_env = {
        "SYNCFABRIC_BUS_URL": url,
        "SYNCFABRIC_BUS_PREFIX": f"bench{tag}",
        "SYNCFABRIC_BUS_STREAM": f"BENCH_{tag}",
    }
    home = root / "bus"
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROPPED}
    env.update(bus_env, SYNCFABRIC_HOME=str(home), SYNCFABRIC_RECONCILE_CRON=NEVER_CRON)
    with mock.patch.dict(os.environ, bus_env):
        settings = BusSettings.from_env()
    assert settings is not None
    project = current()
    folder = DataFolder(home)
    log = root / "daemon.log"
    if asyncio.run(_stream_state(settings, project, delete=False)):  # the server answers
        raise RuntimeError(f"the stream of run {tag} exists already")
    daemon = None
    try:
        daemon = _start_daemon(home, env, log)
        ready_s = _wait_for_bus_sensor(daemon, log, settings, project)
        print(f"daemon ready (bus sensor ticked) after {ready_s:.0f} s; publishing", flush=True)
        started = time.monotonic()
        published = _publish_steadily(args.rate, args.seconds, settings, project)
        publish_s = time.monotonic() - started
        print(f"published {len(published)} events in {publish_s:.1f} s; waiting", flush=True)
        accounted = _wait_applied(folder.warehouse, len(published), args.drain_timeout)
        runs = _ingest_runs(folder.dagster_home, STOP_TIMEOUT_S)
        if set(runs["by_status"]) - {"SUCCESS"}:
            print(f"ingest runs not all successful: {runs}; daemon log:\n{_tail(log)}", flush=True)
        if daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited ({daemon.returncode}):\n{_tail(log)}")
        _stop_group(daemon)
        daemon = None
        with connect(folder.warehouse, read_only=True) as con:
            latency = publish_to_apply(con)
            ingest_p50 = publish_to_ingest_p50(con)
            ledger = _ledger(con)
        return {
            "published": published,
            "publish_seconds": publish_s,
            "daemon_ready_seconds": ready_s,
            "complete": accounted >= len(published),
            "latency": latency,
            "publish_to_ingest_p50_s": ingest_p50,
            "ledger": ledger,
            "runs": runs,
            "settings": {"batch_size": settings.batch_size, "ack_wait_s": settings.ack_wait},
        }
    finally:
        if daemon is not None:
            print(f"dagster-daemon log (last lines):\n{_tail(log)}", file=sys.stderr)
            _stop_group(daemon)
        with contextlib.suppress(Exception, SystemExit):  # the server gone: nothing to delete
            asyncio.run(_stream_state(settings, project, delete=True))


def _reference(root: Path, published: list[dict]) -> dict[str, Any]:
    """The same events as one landed batch, ingested at once as `syncctl run` does."""
    from sync_assets.catalog.events import to_line
    from sync_assets.ingest.landing import LandingZone
    from sync_assets.runner import pipeline
    from sync_assets.settings import DataFolder
    from sync_assets.warehouse import connect

    folder = DataFolder(root / "reference")
    with mock.patch.dict(os.environ):  # what pipeline() sets is this reference's only
        for name in ("SYNCFABRIC_BUS_URL", *ENV_DROPPED):
            os.environ.pop(name, None)
        os.environ["SYNCFABRIC_HOME"] = str(folder.root)
        started = time.perf_counter()
        LandingZone(folder.landing).write_batch(SYSTEM, "bench-bus", map(to_line, published))
        with pipeline(folder) as runs:
            opened = time.perf_counter()
            report = runs.ingest_pending()
        seconds = time.perf_counter() - started
        run_s = time.perf_counter() - opened
    if report.failed:
        raise RuntimeError(f"the reference's ingest failed: {report.failed}")
    with connect(folder.warehouse, read_only=True) as con:
        ledger = _ledger(con)
    return {"seconds": seconds, "run_seconds": run_s, **ledger}


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} s"


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = os.environ.get("SYNCFABRIC_BUS_URL", "").strip() or DEFAULT_URL
    if args.interval is not None:  # before the sensors are defined, here and in the daemon
        os.environ[INGEST_INTERVAL_ENV] = str(args.interval)
    intervals = sensor_intervals()
    print(
        "sensor intervals (minimum_interval_seconds, as defined): "
        + ", ".join(f"{name} {s} s" for name, s in intervals.items()),
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="syncfabric-bench-bus-"))
    try:
        bus = _measure_bus(root, args, url)
        published = bus["published"]
        load = [round(x, 2) for x in os.getloadavg()]
        reference = _reference(root, published)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    latency: Latency = bus["latency"]
    events = len(published)
    ref_s = reference["seconds"]
    ref_eps = reference["events_applied"] / ref_s
    rows = [
        ["latency p50 (s) vs reference ingest (s)", latency.p50_s, ref_s, latency.p50_s / ref_s],
        ["latency p95 (s) vs reference ingest (s)", latency.p95_s, ref_s, latency.p95_s / ref_s],
        ["latency max (s) vs reference ingest (s)", latency.max_s, ref_s, latency.max_s / ref_s],
        [
            "sustained events/s vs reference events/s",
            latency.events_per_second,
            ref_eps,
            latency.events_per_second / ref_eps,
        ],
    ]
    runs = bus["runs"]
    print(
        f"published {events} events at {args.rate:g}/s offered "
        f"({events / bus['publish_seconds']:.2f}/s achieved) to {SYSTEM}; applied "
        f"{latency.events} in {bus['ledger']['batches_applied']} batch(es); ingest runs "
        f"{runs['by_status']}; dead letters {bus['ledger']['dead_lettered']}"
    )
    if not bus["complete"]:
        print(f"NOT COMPLETE: events still unapplied after --drain-timeout {args.drain_timeout} s")
    print(format_table(["figure", "bus + daemon", "reference", "ratio"], rows))
    print(
        f"where the time goes: publish to raw ingest p50 {bus['publish_to_ingest_p50_s']:.1f} s "
        f"(the sensors' waits, the queue, the run's start); an ingest run waited "
        f"{_seconds(runs['queued_p50_s'])} in the queue and took {_seconds(runs['run_p50_s'])} "
        "(medians)"
    )
    print(
        f"reference: the same {events} events landed as one batch and ingested in this process "
        f"(Pipeline.ingest_pending, instance open included; the run alone "
        f"{reference['run_seconds']:.2f} s); load average after publishing {load}"
    )
    result = {
        "rate": args.rate,
        "seconds": args.seconds,
        "published": events,
        "publish_seconds": round(bus["publish_seconds"], 2),
        "complete": bus["complete"],
        "sensor_intervals_s": intervals,
        "bus_settings": bus["settings"],
        "daemon_ready_seconds": round(bus["daemon_ready_seconds"], 1),
        "latency": {k: round(v, 3) for k, v in asdict(latency).items()},
        "sustained_events_per_second": round(latency.events_per_second, 2),
        "ledger": bus["ledger"],
        "publish_to_ingest_p50_s": round(bus["publish_to_ingest_p50_s"], 3),
        "ingest_runs": runs,
        "reference": {k: round(v, 3) for k, v in reference.items()},
        "reference_events_per_second": round(ref_eps, 1),
        "ratios": {
            "p50_to_reference": round(latency.p50_s / ref_s, 2),
            "p95_to_reference": round(latency.p95_s / ref_s, 2),
            "events_per_second_to_reference": round(latency.events_per_second / ref_eps, 4),
        },
        "load_average_after_publishing": load,
        "machine": machine_info(),
    }
    print(f"written to {write_result(NAME, result)}")
    return result
