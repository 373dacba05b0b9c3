"""Delivery benchmark: corrections through the retry loop to PostgreSQL and to the HTTP platform.

Delivers N `updated` corrections (a changed `full_name`), then M `created` ones (to PostgreSQL
only unless --http-creates: there a create is one POST like an update, not cheaper), with
`sync_assets.deliver.engine.deliver` and RetryPolicy(base_s=0.05, cap_s=1.0, max_attempts=8),
each scenario in a fresh process on a fresh target pre-filled with N support-desk users:

- PostgreSQL (a fresh schema per scenario, dropped after it), batched upserts through
  `SqlDestination(batch_size=500)`, the engine on NullPool so that every batch opens its own
  connection: directly, then through a local asyncio TCP proxy (written here) cutting 30% of its
  connections mid-stream (a doomed connection is aborted, both sides,
  at a random client->server message among the first a batch of that phase sends; the message it
  falls on is not forwarded, so the server rolls the transaction back); `--scenarios pg_proxy`
  adds the proxy without faults, to see its own cost (left out by default to keep the run near
  two minutes);
- the local platform service (`PlatformService` over a fresh SQLite file, in a process of its own
  so that it does not share the deliverer's GIL) through `HttpDestination(concurrency=8,
  batch_size=256)`: healthy, then with `Faults(error_rate=0.3)` (30% of writes answered 503,
  nothing applied).

Figures per scenario and action: corrections/s (corrections / wall time of `deliver`), latency
p50/p95 per correction (wall time from the start of the first batch that included it to the end
of the batch that gave its verdict: retries and backoff waits included), attempts per correction,
verdicts (dead-lettered should be 0) and the worker's peak RSS; afterwards the rows are checked
(every renamed and created row there, one ledger row per correction).

    python -m bench deliver                         # 20,000 updates (+ 20,000 creates on PostgreSQL)
    python -m bench deliver --corrections 5000 --creates 0
    python -m bench deliver --http-creates --scenarios http http_faults
    python -m bench deliver --scenarios pg_direct pg_proxy pg_proxy_faults
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import (
    PROJECT_ROOT,
    format_table,
    machine_info,
    peak_rss_mb,
    run_worker,
    write_result,
    write_worker_result,
)

NAME = "deliver"
DEFAULT_CORRECTIONS = 20_000
DEFAULT_FAILURE_RATE = 0.3
DEFAULT_SEED = 42
PG_BATCH = 500
HTTP_BATCH = 256
HTTP_CONCURRENCY = 8
VERSION_STAMP = "2026-11-25T10:00:00.000000Z"
PREFILLED_AT = 1_764_000_000  # updated_at of the pre-filled rows (epoch seconds)

SCENARIOS: dict[str, dict[str, Any]] = {
    "pg_direct": {"target": "postgres", "proxy": False, "faulty": False},
    "pg_proxy": {"target": "postgres", "proxy": True, "faulty": False},
    "pg_proxy_faults": {"target": "postgres", "proxy": True, "faulty": True},
    "http": {"target": "http", "proxy": False, "faulty": False},
    "http_faults": {"target": "http", "proxy": False, "faulty": True},
}
DEFAULT_SCENARIOS = ["pg_direct", "pg_proxy_faults", "http", "http_faults"]
"""pg_proxy (the proxy, no faults) only when asked: about 20 s more at the default size."""

USERS_DDL = """CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    external_id VARCHAR(16) NOT NULL UNIQUE,
    email VARCHAR(200) NOT NULL,
    name VARCHAR(200) NOT NULL,
    tier VARCHAR(20) NOT NULL,
    state VARCHAR(20) NOT NULL,
    updated_at INTEGER NOT NULL
)"""


def policy() -> Any:
    from sync_assets.deliver.retry import RetryPolicy

    return RetryPolicy(base_s=0.05, cap_s=1.0, max_attempts=8)


def key_width(total: int) -> int:
    return max(6, len(str(total - 1)))


def customer_key(i: int, width: int) -> str:
    return f"C-{i:0{width}d}"


# -- the corrections ------------------------------------------------------------------------------


def build_deliveries(action: str, first: int, count: int, width: int) -> list[Any]:
    """`count` corrections of customers first.. first+count-1: renames, or new customers."""
    from sync_assets.deliver.engine import Delivery

    emitted_at = datetime.now(UTC)
    deliveries = []
    for i in range(first, first + count):
        key = customer_key(i, width)
        if action == "updated":
            values: dict[str, Any] = {"full_name": f"Renamed {key}"}
        else:
            values = {
                "email": f"new.{i}@example.com",
                "full_name": f"Created {key}",
                "support_tier": "standard" if i % 2 else "priority",
                "status": "active",
            }
        tag = action[0]  # u / c
        deliveries.append(
            Delivery(
                f"bench-corr-{tag}-{i}",
                f"bench-idem-{tag}-{i}",
                "customer",
                key,
                action,
                values,
                version=f"{VERSION_STAMP}|bench-{i}",
                emitted_at=emitted_at,
            )
        )
    return deliveries


class TimedDestination:
    """The destination as the engine sees it, noting when each correction's batches start and end.

    A correction's latency is the end of the last batch that included it (the one whose outcome
    gave its verdict) minus the start of the first.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.batch_size = inner.batch_size
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.batch_seconds: list[float] = []

    def deliver(self, batch: Sequence[Any]) -> list[Any]:
        started = time.perf_counter()
        outcomes = self.inner.deliver(batch)
        ended = time.perf_counter()
        for delivery in batch:
            self.first.setdefault(delivery.correction_id, started)
            self.last[delivery.correction_id] = ended
        self.batch_seconds.append(ended - started)
        return outcomes

    def close(self) -> None:
        self.inner.close()


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def deliver_phase(destination: Any, deliveries: list[Any], seed: int) -> dict[str, Any]:
    """Deliver through the real retry loop; the figures of one action."""
    from sync_assets.deliver.engine import deliver

    timed = TimedDestination(destination)
    started = time.perf_counter()
    report = deliver(deliveries, timed, policy(), rng=random.Random(seed))
    seconds = time.perf_counter() - started
    latency = {c: (timed.last[c] - timed.first[c]) * 1000 for c in timed.first}
    latencies = list(latency.values())
    retried = [latency[v.correction_id] for v in report.verdicts if v.attempts > 1]
    first_try = [latency[v.correction_id] for v in report.verdicts if v.attempts == 1]
    verdicts = Counter(v.status for v in report.verdicts)
    outcomes = Counter(a.outcome for a in report.attempts)
    count = len(deliveries)
    dead = [v for v in report.verdicts if v.status == "dead_lettered"]
    by_id = {d.correction_id: d for d in deliveries}
    return {
        "corrections": count,
        "seconds": seconds,
        "corrections_per_second": count / seconds if seconds else None,
        "latency_ms": {
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "max": max(latencies, default=None),
            "mean": statistics.fmean(latencies) if latencies else None,
        },
        "latency_ms_first_try": {
            "count": len(first_try),
            "p50": _percentile(first_try, 50),
            "p95": _percentile(first_try, 95),
        },
        "latency_ms_retried": {
            "count": len(retried),
            "p50": _percentile(retried, 50),
            "p95": _percentile(retried, 95),
        },
        "batches": len(timed.batch_seconds),
        "batch_seconds_p50": _percentile(timed.batch_seconds, 50),
        "attempts": len(report.attempts),
        "attempts_per_correction": len(report.attempts) / count if count else None,
        "max_attempts_of_a_correction": max((v.attempts for v in report.verdicts), default=0),
        "attempt_outcomes": dict(outcomes),
        "verdicts": dict(verdicts),
        "dead_lettered": len(dead),
        "dead_letter_reasons": sorted({v.reason or "" for v in dead})[:5],
        "dead_lettered_entity_keys": [by_id[v.correction_id].entity_key for v in dead],
        "dead_lettered_idempotency_keys": [by_id[v.correction_id].idempotency_key for v in dead],
        "peak_rss_mb": peak_rss_mb(),
    }


# -- the fault-injecting proxy --------------------------------------------------------------------

DECK = 10
"""The proxy dooms round(DECK x failure_rate) of every DECK connections."""
PG_TERMINATE = b"X\x00\x00\x00\x04"
"""The client's goodbye: a connection cut there would have lost nothing, so it is never cut."""
PG_COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"
"""psycopg's COMMIT (a simple query): a doomed connection is cut there at the latest."""


class FaultyProxy:
    """A TCP proxy on 127.0.0.1 in a background thread (asyncio) that drops whole connections.

    New connections are doomed `failure_rate` of the time: exactly round(10 x rate) of every 10,
    in shuffled order (so a short run gets its share too). A doomed connection is cut (both sides
    aborted, a TCP reset) when its client sends its k-th chunk, or its COMMIT if that comes first,
    the chunk not forwarded, so the server rolls the transaction back. k is drawn uniformly from 1
    to the median number of chunks of the connections completed since `reset_counts` (psycopg
    sends a chunk per statement, so that is about a batch's length; before any completed, the cut
    is at the COMMIT), so the cut falls anywhere in the connection's life: during connect, between
    statements, or at its COMMIT. Every doomed connection is cut (`cut` counts them) unless it
    ends without a COMMIT before its k-th chunk.
    """

    def __init__(self, host: str, port: int, *, seed: int) -> None:
        self.target = (host, port)
        self.failure_rate = 0.0
        self.port = 0
        self.connections = 0
        self.doomed = 0
        self.cut = 0
        self.cut_at_commit = 0
        self.cut_points: list[int] = []
        self._completed: deque[int] = deque(maxlen=31)
        self._deck: list[bool] = []
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faulty-proxy")
        self._server: asyncio.Server | None = None

    def start(self) -> FaultyProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result()
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "doomed": self.doomed,
            "cut": self.cut,
            "cut_share": self.cut / self.connections if self.connections else 0.0,
            "cut_at_commit": self.cut_at_commit,
            "cut_at_chunk_p50": _percentile(self.cut_points, 50),
            "median_chunks_per_connection": self._horizon(),
        }

    def reset_counts(self) -> None:
        self.connections = self.doomed = self.cut = self.cut_at_commit = 0
        self.cut_points = []
        self._completed.clear()
        self._deck = []

    def _horizon(self) -> int | None:
        return int(statistics.median(self._completed)) if self._completed else None

    def _cut_point(self) -> float | None:
        """Where to cut a new connection (its k-th chunk; at its COMMIT at the latest), or None
        to leave it be."""
        if not self.failure_rate:
            return None
        if not self._deck:
            doomed = round(DECK * self.failure_rate)
            self._deck = [True] * doomed + [False] * (DECK - doomed)
            self._rng.shuffle(self._deck)
        if not self._deck.pop():
            return None
        self.doomed += 1
        horizon = self._horizon()
        return math.inf if horizon is None else self._rng.randint(1, max(1, horizon))

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # stop() with a connection still open
            await self._relay(client_r, client_w)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        cut_at = self._cut_point()
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        upstream = asyncio.create_task(self._upstream(client_r, server_w, cut_at))
        downstream = asyncio.create_task(self._downstream(server_r, client_w))
        cut = False
        try:
            done, _ = await asyncio.wait(
                {upstream, downstream}, return_when=asyncio.FIRST_COMPLETED
            )
            cut = upstream in done and upstream.result() == "cut"
        finally:
            for task in (upstream, downstream):
                task.cancel()
            for writer in (client_w, server_w):
                if cut:
                    writer.transport.abort()
                else:
                    writer.close()

    async def _upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut_at: float | None
    ) -> str:
        chunks = 0
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if data != PG_TERMINATE:
                    chunks += 1
                    if cut_at is not None and (chunks >= cut_at or data.startswith(PG_COMMIT)):
                        self.cut += 1
                        self.cut_points.append(chunks)
                        self.cut_at_commit += data.startswith(PG_COMMIT)
                        return "cut"
                writer.write(data)
                await writer.drain()
            self._completed.append(chunks)
        return "closed"

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        return "closed"


# -- PostgreSQL -----------------------------------------------------------------------------------


def postgres_url() -> Any:
    """The server (tests/databases.py: $SYNCFABRIC_TEST_POSTGRES_URL or 127.0.0.1:5432/test)."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.databases import postgres_url as url

    return url()


def _pg_admin() -> Any:
    import sqlalchemy as sa

    return sa.create_engine(postgres_url(), poolclass=sa.pool.NullPool)


def create_postgres(schema: str, rows: int, width: int) -> None:
    engine = _pg_admin()
    with engine.begin() as con:
        con.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        con.exec_driver_sql(f"CREATE SCHEMA {schema}")
        con.exec_driver_sql(USERS_DDL.replace("CREATE TABLE users", f"CREATE TABLE {schema}.users"))
        con.exec_driver_sql(
            f"""
INSERT INTO {schema}.users
SELECT i + 1, 'C-' || lpad(i::text, {width}, '0'), 'user.' || i || '@example.com',
       'User ' || i, CASE WHEN mod(i, 2) = 0 THEN 'Standard' ELSE 'Priority' END, 'enabled',
       {PREFILLED_AT}
FROM generate_series(0, {rows - 1}) AS i"""
        )
    with engine.connect() as con:
        con.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            f"VACUUM (ANALYZE) {schema}.users"
        )
    engine.dispose()


def drop_postgres(schema: str) -> None:
    engine = _pg_admin()
    with engine.begin() as con:
        con.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    engine.dispose()


def dead_lettered(phases: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The entity keys and idempotency keys of every dead-lettered correction."""
    entity_keys = [k for p in phases.values() for k in p["dead_lettered_entity_keys"]]
    idempotency_keys = [k for p in phases.values() for k in p["dead_lettered_idempotency_keys"]]
    return entity_keys, idempotency_keys


def judged(
    found: dict[str, int], expected: dict[str, int], phases: dict[str, Any]
) -> dict[str, Any]:
    """`ok`: every correction landed, once. `consistent`: the destination matches the verdicts:
    every delivered correction landed, no dead-lettered one did (what a dead letter must mean)."""
    dead = {a: p["dead_lettered"] for a, p in phases.items()}
    short = {
        "renamed_rows": dead.get("updated", 0),
        "created_rows": dead.get("created", 0),
        "users_rows": dead.get("created", 0),
        "applied_updates": dead.get("updated", 0),
        "applied_creates": dead.get("created", 0),
        "applied_rows": sum(dead.values()),
        "applications": sum(dead.values()),
    }
    given_verdicts = {k: v - short.get(k, 0) for k, v in expected.items()}
    return {
        "found": found,
        "expected": expected,
        "ok": found == expected,
        "expected_given_verdicts": given_verdicts,
        "consistent": found == given_verdicts,
    }


def check_postgres(
    schema: str, updates: int, creates: int, first_create: int, phases: dict[str, Any]
) -> dict[str, Any]:
    import sqlalchemy as sa

    engine = _pg_admin()
    dead_entities, dead_idempotency = dead_lettered(phases)
    with engine.connect() as con:

        def scalar(sql: str) -> int:
            return con.exec_driver_sql(sql).scalar_one()

        def among(sql: str, keys: list[str]) -> int:
            statement = sa.text(sql).bindparams(sa.bindparam("keys", expanding=True))
            return con.execute(statement, {"keys": keys}).scalar_one() if keys else 0

        found = {
            "renamed_rows": scalar(
                f"SELECT count(*) FROM {schema}.users WHERE name = 'Renamed ' || external_id"
            ),
            "created_rows": scalar(
                f"SELECT count(*) FROM {schema}.users WHERE name = 'Created ' || external_id"
                f" AND id > {first_create}"
            ),
            "users_rows": scalar(f"SELECT count(*) FROM {schema}.users"),
            "applied_updates": scalar(
                f"SELECT count(*) FROM {schema}.syncfabric_applied"
                " WHERE starts_with(idempotency_key, 'bench-idem-u-')"
            ),
            "applied_creates": scalar(
                f"SELECT count(*) FROM {schema}.syncfabric_applied"
                " WHERE starts_with(idempotency_key, 'bench-idem-c-')"
            ),
            "applied_rows": scalar(f"SELECT count(*) FROM {schema}.syncfabric_applied"),
            "dead_lettered_landed": among(
                f"SELECT count(*) FROM {schema}.users WHERE external_id IN :keys"
                " AND name IN ('Renamed ' || external_id, 'Created ' || external_id)",
                dead_entities,
            )
            + among(
                f"SELECT count(*) FROM {schema}.syncfabric_applied WHERE idempotency_key IN :keys",
                dead_idempotency,
            ),
        }
    engine.dispose()
    expected = {
        "renamed_rows": updates,
        "created_rows": creates,
        "users_rows": first_create + creates,
        "applied_updates": updates,
        "applied_creates": creates,
        "applied_rows": updates + creates,
        "dead_lettered_landed": 0,
    }
    return judged(found, expected, phases)


def postgres_worker(args: argparse.Namespace, proxied: bool, faulty: bool) -> dict[str, Any]:
    import sqlalchemy as sa

    from sync_assets.deliver.sql import SqlDestination
    from sync_assets.project import current

    if faulty:  # a batch's pipeline (executemany) cut mid-way: psycopg warns, the error is kept
        logging.getLogger("psycopg").setLevel(logging.ERROR)
    n, m = args.corrections, args.creates
    width = key_width(n + m)
    schema = f"sf_bench_deliver_{os.getpid()}"
    started = time.perf_counter()
    create_postgres(schema, n, width)
    setup_seconds = time.perf_counter() - started
    server = postgres_url()
    proxy = None
    result: dict[str, Any] = {"setup_seconds": setup_seconds, "schema": schema}
    try:
        url = server.update_query_dict({"options": f"-csearch_path={schema}"})
        if proxied:
            proxy = FaultyProxy(server.host, server.port or 5432, seed=args.seed + 1).start()
            url = url.set(host="127.0.0.1", port=proxy.port)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as con:  # the dialect's first-connect queries: not measured
            con.exec_driver_sql("SELECT 1")
        destination = SqlDestination(
            "support",
            engine,
            {"customer": current().mappings["support", "customer"]},
            batch_size=PG_BATCH,
        )
        phases: dict[str, Any] = {}
        for action, first, count in (("updated", 0, n), ("created", n, m)):
            if count == 0:
                continue
            deliveries = build_deliveries(action, first, count, width)
            if proxy is not None:
                proxy.reset_counts()
                proxy.failure_rate = args.failure_rate if faulty else 0.0
            phases[action] = deliver_phase(destination, deliveries, args.seed)
            if proxy is not None:
                proxy.failure_rate = 0.0
                phases[action]["proxy"] = proxy.stats()
        destination.close()
        result["phases"] = phases
        result["check"] = check_postgres(schema, n, m, n, phases)
    finally:
        if proxy is not None:
            proxy.stop()
        if not args.keep:
            drop_postgres(schema)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def postgres_version() -> str:
    engine = _pg_admin()
    with engine.connect() as con:
        version = con.exec_driver_sql("SELECT version()").scalar_one().split(",")[0]
    engine.dispose()
    return version


# -- the HTTP platform ----------------------------------------------------------------------------


def create_sqlite(path: Path, rows: int, width: int) -> None:
    con = sqlite3.connect(path)
    con.execute(USERS_DDL)
    con.executemany(
        "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (
                i + 1,
                customer_key(i, width),
                f"user.{i}@example.com",
                f"User {i}",
                "Standard" if i % 2 == 0 else "Priority",
                "enabled",
                PREFILLED_AT,
            )
            for i in range(rows)
        ),
    )
    con.commit()
    con.close()


def check_sqlite(
    path: Path, updates: int, creates: int, first_create: int, phases: dict[str, Any]
) -> dict[str, Any]:
    from examples.demo.seed.platform import database_counts, open_database

    con = open_database(path)
    dead_entities, dead_idempotency = dead_lettered(phases)
    try:

        def scalar(sql: str, params: Sequence[str] = ()) -> int:
            return con.execute(sql, list(params)).fetchone()[0]

        def marks(keys: list[str]) -> str:
            return ", ".join("?" for _ in keys) or "NULL"

        found = {
            "renamed_rows": scalar(
                "SELECT count(*) FROM users WHERE name = 'Renamed ' || external_id"
            ),
            "created_rows": scalar(
                "SELECT count(*) FROM users WHERE name = 'Created ' || external_id"
                f" AND id > {first_create}"
            ),
            "users_rows": scalar("SELECT count(*) FROM users"),
            "applied_updates": scalar(
                "SELECT count(*) FROM _applications WHERE idempotency_key LIKE 'bench-idem-u-%'"
            ),
            "applied_creates": scalar(
                "SELECT count(*) FROM _applications WHERE idempotency_key LIKE 'bench-idem-c-%'"
            ),
            **database_counts(con),
            "dead_lettered_landed": scalar(
                f"SELECT count(*) FROM users WHERE external_id IN ({marks(dead_entities)})"
                " AND name IN ('Renamed ' || external_id, 'Created ' || external_id)",
                dead_entities,
            )
            + scalar(
                "SELECT count(*) FROM _applications"
                f" WHERE idempotency_key IN ({marks(dead_idempotency)})",
                dead_idempotency,
            ),
        }
    finally:
        con.close()
    expected = {
        "renamed_rows": updates,
        "created_rows": creates,
        "users_rows": first_create + creates,
        "applied_updates": updates,
        "applied_creates": creates,
        "applications": updates + creates,
        "keys_applied_more_than_once": 0,
        "dead_lettered_landed": 0,
    }
    return judged(found, expected, phases)


def platform_main(argv: list[str]) -> None:
    """The platform service in a process of its own: prints its URL, serves until stdin closes."""
    from examples.demo.seed.platform import Faults, PlatformService

    parser = argparse.ArgumentParser(prog="python -m bench.deliver platform")
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    service = PlatformService(args.database, seed=args.seed).start()
    print(service.url, flush=True)
    for line in sys.stdin:  # commands from the worker: "faults <error_rate>", "stats"
        words = line.split()
        if words[:1] == ["faults"]:
            service.set_faults(Faults(error_rate=float(words[1])))
            print("ok", flush=True)
        elif words[:1] == ["stats"]:
            stats = service.stats()
            print(" ".join(f"{k}={v}" for k, v in stats.items()), flush=True)
    service.stop()
    print(f"peak_rss_mb={peak_rss_mb():.1f}", flush=True)


class PlatformProcess:
    def __init__(self, database: Path, seed: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.deliver", "platform", "--database", str(database),
             "--seed", str(seed)],
            cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.process.kill()
            raise RuntimeError(f"the platform service did not start: {self.url!r}")

    def command(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in (w.split("=") for w in self.command("stats").split())}

    def stop(self) -> float | None:
        """Stop it; its peak RSS in MiB."""
        out, _ = self.process.communicate(timeout=30)
        for line in out.splitlines():
            if line.startswith("peak_rss_mb="):
                return float(line.split("=")[1])
        return None


def http_worker(args: argparse.Namespace, faulty: bool) -> dict[str, Any]:
    from sync_assets.deliver.http import HttpDestination
    from sync_assets.project import current

    n, m = args.corrections, args.creates
    width = key_width(n + m)
    folder = Path(tempfile.mkdtemp(prefix="syncfabric-bench-deliver-"))
    database = folder / "support.sqlite"
    result: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        create_sqlite(database, n, width)
        result["setup_seconds"] = time.perf_counter() - started
        platform = PlatformProcess(database, args.seed)
        try:
            destination = HttpDestination(
                "support",
                platform.url,
                {"customer": current().mapping("support", "customer")},
                concurrency=HTTP_CONCURRENCY,
                batch_size=HTTP_BATCH,
            )
            phases: dict[str, Any] = {}
            for action, first, count in (("updated", 0, n), ("created", n, m)):
                if count == 0:
                    continue
                deliveries = build_deliveries(action, first, count, width)
                before = platform.stats()
                platform.command(f"faults {args.failure_rate if faulty else 0.0}")
                phases[action] = deliver_phase(destination, deliveries, args.seed)
                platform.command("faults 0")
                after = platform.stats()
                phases[action]["platform"] = {
                    k: after[k] - before[k]
                    for k in ("requests", "applied", "injected_errors", "replayed")
                }
            destination.close()
        finally:
            result["platform_peak_rss_mb"] = platform.stop()
        result["phases"] = phases
        result["check"] = check_sqlite(database, n, m, n, phases)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


# -- workers --------------------------------------------------------------------------------------


def worker_main(argv: list[str]) -> None:
    if argv[:1] == ["platform"]:
        platform_main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.deliver")
    parser.add_argument("worker", choices=list(SCENARIOS))
    parser.add_argument("--corrections", type=int, default=DEFAULT_CORRECTIONS)
    parser.add_argument("--creates", type=int, default=DEFAULT_CORRECTIONS)
    parser.add_argument("--failure-rate", type=float, default=DEFAULT_FAILURE_RATE)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.worker]
    if scenario["target"] == "postgres":
        result = postgres_worker(args, scenario["proxy"], scenario["faulty"])
    else:
        result = http_worker(args, scenario["faulty"])
    write_worker_result(args.out, result)


# -- the benchmark --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--corrections",
        type=int,
        default=DEFAULT_CORRECTIONS,
        help=f"rows pre-filled and `updated` corrections delivered (default {DEFAULT_CORRECTIONS:,})",
    )
    parser.add_argument(
        "--creates",
        type=int,
        default=None,
        help="`created` corrections delivered after the updates (default: as many; 0: none)",
    )
    parser.add_argument(
        "--http-creates",
        action="store_true",
        help="deliver the creates to the HTTP platform too (each one POST, as costly as an update)",
    )
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=DEFAULT_FAILURE_RATE,
        help=f"share of connections cut / writes failed in the faulty scenarios "
        f"(default {DEFAULT_FAILURE_RATE})",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=list(SCENARIOS),
        default=DEFAULT_SCENARIOS,
        help=f"scenarios to run (default: {' '.join(DEFAULT_SCENARIOS)}; pg_proxy = through the "
        "proxy without faults, its own cost)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schemas")


def _fault_description(name: str, rate: float) -> str:
    scenario = SCENARIOS[name]
    if not scenario["faulty"]:
        return "none" + (" (through the proxy)" if scenario["proxy"] else "")
    if scenario["target"] == "postgres":
        return f"proxy cuts {rate:.0%} of connections mid-stream (TCP reset, message dropped)"
    return f"Faults(error_rate={rate:g}): {rate:.0%} of writes answered 503, nothing applied"


def run(args: argparse.Namespace) -> dict[str, Any]:
    creates = args.corrections if args.creates is None else args.creates
    load_before = os.getloadavg()
    scenarios: dict[str, Any] = {}
    for name in args.scenarios:
        http = SCENARIOS[name]["target"] == "http"
        scenario_creates = 0 if http and not args.http_creates else creates
        print(
            f"deliver: {name} ({args.corrections:,} updates, {scenario_creates:,} creates) ...",
            flush=True,
        )
        worker_args = [
            name,
            "--corrections", str(args.corrections),
            "--creates", str(scenario_creates),
            "--failure-rate", str(args.failure_rate),
            "--seed", str(args.seed),
        ]  # fmt: skip
        if args.keep:
            worker_args.append("--keep")
        load = [os.getloadavg()[0]]
        result = run_worker("bench.deliver", worker_args)
        load.append(os.getloadavg()[0])
        result.update(
            creates=scenario_creates,
            destination=SCENARIOS[name]["target"],
            fault=_fault_description(name, args.failure_rate),
            load_average_1m=load,
        )
        scenarios[name] = result
        for action, phase in result["phases"].items():
            print(
                f"deliver:   {action}: {phase['corrections_per_second']:,.0f} corrections/s, "
                f"p95 {phase['latency_ms']['p95']:,.0f} ms",
                flush=True,
            )
    machine = machine_info()
    for package in ("sqlalchemy", "psycopg", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            machine[package] = metadata.version(package)
    with contextlib.suppress(Exception):
        machine["servers"] = {"postgresql": postgres_version()}
    rp = policy()
    result = {
        "benchmark": NAME,
        "corrections": args.corrections,
        "creates": creates,
        "http_creates": args.http_creates,
        "failure_rate": args.failure_rate,
        "seed": args.seed,
        "retry_policy": {
            "base_s": rp.base_s,
            "cap_s": rp.cap_s,
            "max_attempts": rp.max_attempts,
        },
        "destinations": {
            "postgres": f"SqlDestination(batch_size={PG_BATCH}), engine on NullPool",
            "http": f"HttpDestination(concurrency={HTTP_CONCURRENCY}, batch_size={HTTP_BATCH}) "
            "to PlatformService over SQLite, in its own process",
        },
        "all_checks_passed": all(s["check"]["ok"] for s in scenarios.values())
        and all(p["dead_lettered"] == 0 for s in scenarios.values() for p in s["phases"].values()),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "versions": machine,
        "timestamp": machine["timestamp"],
        "notes": [
            "corrections_per_second = corrections / wall time of one deliver() call (all "
            "retries and backoff waits included); setup (pre-fill, first connect) excluded",
            "latency per correction = wall time from the start of the first batch that included "
            "it to the end of the batch whose outcome gave its verdict (its retries, backoff "
            "waits and the batches sent meanwhile included; time queued before its first batch "
            "not included)",
            "PostgreSQL fault: a local asyncio TCP proxy between engine and server dooms each new "
            "connection with probability failure_rate and aborts it (TCP reset, both sides) at "
            "a client->server chunk drawn uniformly from 1 to the median chunk count of "
            "completed connections, that chunk not forwarded; the engine uses NullPool, so one "
            "connection is one batch (one transaction). pg_proxy (no faults) shows the proxy's "
            "own cost; pg_direct bypasses it",
            "HTTP fault: PlatformService Faults(error_rate) answers that share of writes 503 "
            "before applying anything; the service runs in a process of its own",
            "peak_rss_mb = the deliverer worker process's VmHWM (the PostgreSQL proxy runs in it; "
            "the platform service does not, its own is platform_peak_rss_mb)",
        ],
        "scenarios": scenarios,
    }
    report(result)
    path = write_result(NAME, result)
    print(f"deliver: wrote {path}")
    return result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def report(result: dict[str, Any]) -> None:
    headers = [
        "scenario",
        "action",
        "corrections",
        "corr/s",
        "p50 ms",
        "p95 ms",
        "max ms",
        "attempts/corr",
        "failed attempts",
        "dead-lettered",
        "peak RSS MiB",
    ]
    rows = []
    for name, scenario in result["scenarios"].items():
        for action, p in scenario["phases"].items():
            rows.append(
                [
                    name,
                    action,
                    p["corrections"],
                    round(p["corrections_per_second"]),
                    p["latency_ms"]["p50"],
                    p["latency_ms"]["p95"],
                    p["latency_ms"]["max"],
                    p["attempts_per_correction"],
                    p["attempt_outcomes"].get("transient", 0),
                    p["dead_lettered"],
                    scenario["peak_rss_mb"],
                ]
            )
    policy_ = result["retry_policy"]
    print()
    print(
        f"deliver benchmark: {result['corrections']:,} users pre-filled, "
        f"{result['corrections']:,} updates (full_name) then {result['creates']:,} creates"
        f"{'' if result['http_creates'] else ' (PostgreSQL only)'}; "
        f"RetryPolicy(base_s={policy_['base_s']}, cap_s={policy_['cap_s']}, "
        f"max_attempts={policy_['max_attempts']})"
    )
    print(format_table(headers, rows))
    print("faults injected:")
    for name, scenario in result["scenarios"].items():
        line = f"  {name}: {scenario['fault']}"
        proxies = [p["proxy"] for p in scenario["phases"].values() if "proxy" in p]
        if proxies and SCENARIOS[name]["faulty"]:
            cut = sum(p["cut"] for p in proxies)
            connections = sum(p["connections"] for p in proxies)
            at_commit = sum(p["cut_at_commit"] for p in proxies)
            line += (
                f"; {cut} of {connections} connections cut ({cut / max(1, connections):.0%}), "
                f"{at_commit} of them at the COMMIT"
            )
        platforms = [p["platform"] for p in scenario["phases"].values() if "platform" in p]
        if platforms and SCENARIOS[name]["faulty"]:
            injected = sum(p["injected_errors"] for p in platforms)
            requests = sum(p["requests"] for p in platforms)
            line += f"; {injected} of {requests} writes failed ({injected / max(1, requests):.0%})"
        print(line)
    print(
        "latency = wall time from the start of the first batch including a correction to the end "
        "of the batch that gave its verdict (retries and backoff waits included)"
    )
    for name, scenario in result["scenarios"].items():
        for action, p in scenario["phases"].items():
            first, retried = p["latency_ms_first_try"], p["latency_ms_retried"]
            if retried["count"]:
                print(
                    f"  {name} {action}: {first['count']:,} settled at the first attempt, "
                    f"p50 {_ms(first['p50'])} / p95 {_ms(first['p95'])} ms; "
                    f"{retried['count']:,} retried, p50 {_ms(retried['p50'])} / "
                    f"p95 {_ms(retried['p95'])} ms"
                )
    if any(SCENARIOS[name]["faulty"] for name in result["scenarios"]):
        rate, attempts = result["failure_rate"], policy_["max_attempts"]
        chance = rate**attempts
        print(
            f"by chance, {attempts} failed attempts in a row at {rate:.0%}: {chance:.1e} per "
            f"correction sent alone (HTTP), {chance * result['corrections']:.1f} expected "
            f"dead-lettered of {result['corrections']:,} per faulty run; on PostgreSQL a cut "
            "fails its whole batch, and corrections retried in one batch fail together, so dead "
            "letters come in groups (more variable)"
        )
    if "pg_proxy_faults" in result["scenarios"] and "pg_proxy" not in result["scenarios"]:
        print(
            "note: pg_proxy_faults runs through the proxy, whose own cost is in its figures "
            "(compare its first-attempt latency with pg_direct's; --scenarios pg_proxy measures it)"
        )
    for name, scenario in result["scenarios"].items():
        check = scenario["check"]
        verdicts = {a: p["verdicts"] for a, p in scenario["phases"].items()}
        if check["ok"]:
            print(f"check {name}: ok ({check['found']}); verdicts {verdicts}")
        elif check["consistent"]:  # dead letters: a verdict the policy allows, not a loss
            print(
                f"check {name}: ok, the destination matches the verdicts (every delivered "
                f"correction landed once, no dead-lettered one did); verdicts {verdicts}"
            )
        else:
            print(
                f"FAILED check {name}: the destination does NOT match the verdicts: found "
                f"{check['found']}, expected {check['expected_given_verdicts']}"
            )
        for action, p in scenario["phases"].items():
            if p["dead_lettered"]:
                print(
                    f"dead letters {name} {action}: {p['dead_lettered']} (to redrive): "
                    f"{p['dead_letter_reasons']}"
                )
    loads = [x for s in result["scenarios"].values() for x in s["load_average_1m"]]
    if loads and max(loads) > 1.0:
        print(
            f"note: the machine was busy (1-minute load {min(loads):.1f} to {max(loads):.1f}, "
            f"{result['versions']['cpu_count']} CPUs); figures are pessimistic"
        )


if __name__ == "__main__":
    worker_main(sys.argv[1:])
