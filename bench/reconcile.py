"""Reconcile benchmark: a CRM table in PostgreSQL against a billing table in MariaDB, 1% drift.

Generates N customers server-side, once as the CRM's `contacts` (PostgreSQL, mapping CRM_CUSTOMER)
and once as billing's `accounts` (MariaDB, mapping BILLING_CUSTOMER), each in its own format (CRM:
lower-case emails, 'Active', lower-case country codes, 'Pro'; billing: upper case throughout,
'CLOSED' for deleted customers, its own account numbers), with 1% drift planted in billing (an
email, status, country or plan changed) and 0.1% of the customers missing from billing. Then, each
in a fresh process:

- Syncfabric end to end, as the reconcile assets run it: `snapshot_system` of both systems into a
  fresh DuckDB warehouse (engines from `open_source`: extract through its own stream_batches (connectorx on servers) + normalize in
  DuckDB), then `diff_systems` (crm vs billing); extract+normalize per system and the diff timed
  apart, the process's peak RSS; then, as the floor under the end to end figure, both systems
  read again through the same path and dropped (nothing normalized, stored or diffed);
- the same with connectorx as the extraction path (whole table as Arrow, as an Arrow stream of
  bounded batches, and chunked by key ranges), fed to the same `load_snapshot` and `diff_systems`;
- DuckDB's own FULL OUTER JOIN of the two snapshot tables, in the same warehouse: the floor, as
  a step of its own like the diff (a fresh connection, the join, closed), and again warm beside a
  second diff in one connection;
- reladiff (hashdiff, the maintained fork of data-diff) between the two servers on normalized
  views, with a time limit.

    python -m bench reconcile                     # 1,000,000 customers
    python -m bench reconcile --rows 200000
    python -m bench reconcile --with-10m          # then 10,000,000 if 1M ran well under 2 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import (
    PROJECT_ROOT,
    format_table,
    machine_info,
    peak_rss_mb,
    write_result,
    write_worker_result,
)

NAME = "reconcile"
DEFAULT_ROWS = 1_000_000
LARGE_ROWS = 10_000_000
LARGE_ONLY_IF_UNDER_S = 60.0
"""--with-10m runs 10M only if the 1M end to end (syncfabric path) took less than this."""
DEFAULT_RELADIFF_TIMEOUT_S = 600
DEFAULT_CX_CHUNK = 200_000
SCHEMA_ENV = "SYNCFABRIC_BENCH_SCHEMA"


def bench_schema() -> str:
    """The PostgreSQL schema and MariaDB database holding the tables, dropped at the end.

    `sf_bench_<pid of the run>`, so that two runs at once (say `python -m bench` in two shells)
    do not drop and refill each other's tables; the workers inherit it through the environment.
    """
    return os.environ.setdefault(SCHEMA_ENV, f"sf_bench_{os.getpid()}")


# Issue 11's aims: the diff within 1.5x DuckDB's own join; end to end at 1M within a tenth of
# reladiff's time; at 10M under a minute in under 3 GB.
DIFF_TO_JOIN_AIM = 1.5
RELADIFF_RATIO_AIM = 0.1
SECONDS_10M_AIM = 60.0
PEAK_RSS_AIM_MB = 3 * 1024
EXTRACT_MODES = ("syncfabric", "cx_arrow", "cx_stream", "cx_keyset")

# the planted differences, by customer number i in [0, N)
DRIFT_EVERY = 100  # i % 100 == 7: billing differs on one attribute (1%)
DRIFT_AT = 7
DRIFT_KINDS = ("email", "status", "country", "plan")  # by (i // 100) % 4
MISSING_EVERY = 1000  # i % 1000 == 13: no billing account (0.1%)
MISSING_AT = 13
DELETED_EVERY = 200  # i % 200 == 50: deleted in the CRM (deleted = 1), closed in billing (0.5%)
DELETED_AT = 50

FIRST = ["ada", "alan", "grace", "zoe", "jose", "malgorzata", "linus", "ingrid", "soren", "amelie",
         "chidi", "yuki", "priya", "mateo", "fatima", "olu"]  # fmt: skip
LAST = ["lovelace", "turing", "hopper", "muller", "garcia", "nowak", "kierkegaard", "okafor",
        "tanaka", "sharma", "obrien", "dubois"]  # fmt: skip
DOMAINS = ["example.com", "example.org", "mail.example.net", "example.co.uk"]
COUNTRIES = ["GB", "DE", "FR", "US", "NL", "SE", "PL", "ES", "IT", "JP", "NG", "BR", "IN", "DK"]
PLANS = ["free", "starter", "pro", "enterprise"]
COMPARED = ("email", "country", "status", "plan")
"""The attributes CRM_CUSTOMER and BILLING_CUSTOMER share: what diff_systems compares."""


def expected_counts(rows: int) -> dict[str, int]:
    def every(step: int, at: int) -> int:
        return 0 if rows <= at else (rows - 1 - at) // step + 1

    return {
        "divergences": every(DRIFT_EVERY, DRIFT_AT),  # one attribute each, live in both systems
        "missing_in_billing": every(MISSING_EVERY, MISSING_AT),
        "deleted": every(DELETED_EVERY, DELETED_AT),
    }


# -- the servers ----------------------------------------------------------------------------------


def server_urls() -> tuple[Any, Any]:
    """The SQLAlchemy URLs of the two servers (tests/databases.py: env vars or local defaults)."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.databases import mariadb_url, postgres_url

    return postgres_url(), mariadb_url()


def bench_urls() -> dict[str, Any]:
    """Every URL the workers need, pointing at the benchmark schema / database."""
    pg, my = server_urls()
    my_bench = my.set(database=bench_schema())

    def plain(url: Any, scheme: str) -> str:
        auth = url.username or ""
        if url.password:
            auth += f":{url.password}"
        return f"{scheme}://{auth}@{url.host}:{url.port}/{url.database}"

    return {
        "pg_sqlalchemy": pg.render_as_string(hide_password=False),
        "my_sqlalchemy": my_bench.render_as_string(hide_password=False),
        "pg_plain": plain(pg, "postgresql"),
        "my_plain": plain(my_bench, "mysql"),
    }


def _execute(con: Any, sql: str) -> None:
    """A statement through the driver's own cursor, no parameters (so '%' is just '%')."""
    cursor = con.connection.driver_connection.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


def _elt(index: str, values: list[str]) -> str:
    return f"ELT({index}, " + ", ".join(f"'{v}'" for v in values) + ")"


def key_width(rows: int) -> int:
    return max(6, len(str(rows - 1)))


def create_postgres(rows: int) -> float:
    """sf_bench.contacts: N customers in the CRM's format, INSERT ... SELECT generate_series."""
    import sqlalchemy as sa

    pg, _ = server_urls()
    w = key_width(rows)
    started = time.perf_counter()
    engine = sa.create_engine(pg, poolclass=sa.pool.NullPool)
    with engine.begin() as con:
        _execute(con, f"DROP SCHEMA IF EXISTS {bench_schema()} CASCADE")
        _execute(con, f"CREATE SCHEMA {bench_schema()}")
        _execute(
            con,
            f"""
CREATE TABLE {bench_schema()}.contacts (
    contact_id       text PRIMARY KEY,
    email_address    text NOT NULL,
    display_name     text NOT NULL,
    phone            text,
    country_code     text NOT NULL,
    lifecycle_status text NOT NULL,
    marketing_opt_in integer,
    plan_name        text,
    deleted          integer NOT NULL DEFAULT 0
)""",
        )
        _execute(
            con,
            f"""
INSERT INTO {bench_schema()}.contacts
SELECT
    'C-' || lpad(i::text, {w}, '0'),
    f || '.' || l || i || '@' || d,
    initcap(f) || ' ' || initcap(l),
    CASE WHEN i % 5 = 0 THEN NULL ELSE '+44 7700 ' || lpad((i % 1000000)::text, 6, '0') END,
    lower(c),
    CASE i % 10 WHEN 8 THEN 'Inactive' WHEN 9 THEN 'Suspended' ELSE 'Active' END,
    CASE i % 3 WHEN 0 THEN 0 WHEN 1 THEN 1 END,
    initcap(p),
    CASE WHEN i % {DELETED_EVERY} = {DELETED_AT} THEN 1 ELSE 0 END
FROM (
    SELECT
        i,
        ({_array(FIRST)})[1 + (i * 7) % {len(FIRST)}] AS f,
        ({_array(LAST)})[1 + (i * 13) % {len(LAST)}] AS l,
        ({_array(DOMAINS)})[1 + i % {len(DOMAINS)}] AS d,
        ({_array(COUNTRIES)})[1 + (i * 3) % {len(COUNTRIES)}] AS c,
        ({_array(PLANS)})[1 + (i * 11) % {len(PLANS)}] AS p
    FROM generate_series(0::bigint, {rows - 1}) AS i
) g""",
        )
        # for reladiff: a view normalized like Syncfabric's snapshot (live rows only), keyed by
        # the customer number as an integer (reladiff cannot key MySQL/MariaDB on text), indexed
        _execute(
            con,
            f"CREATE INDEX contacts_customer_no ON {bench_schema()}.contacts "
            "((substr(contact_id, 3)::bigint))",
        )
        _execute(
            con,
            f"""
CREATE VIEW {bench_schema()}.contacts_cmp AS
SELECT substr(contact_id, 3)::bigint AS customer_no, lower(trim(email_address)) AS email,
       upper(trim(country_code)) AS country, lower(trim(lifecycle_status)) AS status,
       lower(trim(plan_name)) AS plan
FROM {bench_schema()}.contacts WHERE deleted = 0""",
        )
    with engine.connect() as con:  # VACUUM outside a transaction: hint bits set, as in steady state
        con = con.execution_options(isolation_level="AUTOCOMMIT")
        _execute(con, f"VACUUM (ANALYZE) {bench_schema()}.contacts")
    engine.dispose()
    return time.perf_counter() - started


def create_mariadb(rows: int) -> float:
    """sf_bench.accounts: the same customers in billing's format, 1% drift, 0.1% missing."""
    import sqlalchemy as sa

    _, my = server_urls()
    w = key_width(rows)
    started = time.perf_counter()
    engine = sa.create_engine(my, poolclass=sa.pool.NullPool)
    drift = f"IF(seq % {DRIFT_EVERY} = {DRIFT_AT}, (seq DIV {DRIFT_EVERY}) % 4, -1)"
    n_first, n_last, n_country, n_plan = len(FIRST), len(LAST), len(COUNTRIES), len(PLANS)
    with engine.begin() as con:
        _execute(con, f"DROP DATABASE IF EXISTS {bench_schema()}")
        _execute(con, f"CREATE DATABASE {bench_schema()} CHARACTER SET utf8mb4")
        _execute(
            con,
            f"""
CREATE TABLE {bench_schema()}.accounts (
    acct_no       INT PRIMARY KEY,
    customer_ref  VARCHAR(16) NOT NULL UNIQUE,
    billing_email VARCHAR(255) NOT NULL,
    plan          VARCHAR(32) NOT NULL,
    account_state VARCHAR(16) NOT NULL,
    country       VARCHAR(2) NOT NULL,
    updated       VARCHAR(10) NOT NULL
) ENGINE = InnoDB""",
        )
        _execute(con, "SET SESSION unique_checks = 0")
        _execute(
            con,
            f"""
INSERT INTO {bench_schema()}.accounts
SELECT
    100000 + seq,
    CONCAT('C-', LPAD(seq, {w}, '0')),
    UPPER(CONCAT(IF(k = 0, 'new.', ''), f, '.', l, seq, '@', d)),
    UPPER({_elt(f"1 + (seq * 11 + IF(k = 3, 1, 0)) % {n_plan}", PLANS)}),
    CASE
        WHEN seq % {DELETED_EVERY} = {DELETED_AT} THEN 'CLOSED'
        WHEN k = 1 THEN IF(seq % 10 IN (8, 9), 'ACTIVE', 'SUSPENDED')
        WHEN seq % 10 = 8 THEN 'INACTIVE'
        WHEN seq % 10 = 9 THEN 'SUSPENDED'
        ELSE 'ACTIVE'
    END,
    {_elt(f"1 + (seq * 3 + IF(k = 2, 1, 0)) % {n_country}", COUNTRIES)},
    DATE_FORMAT(DATE '2026-01-01' + INTERVAL (seq % 365) DAY, '%d/%m/%Y')
FROM (
    SELECT
        seq,
        {_elt(f"1 + (seq * 7) % {n_first}", FIRST)} AS f,
        {_elt(f"1 + (seq * 13) % {n_last}", LAST)} AS l,
        {_elt(f"1 + seq % {len(DOMAINS)}", DOMAINS)} AS d,
        {drift} AS k
    FROM seq_0_to_{rows - 1}
    WHERE seq % {MISSING_EVERY} <> {MISSING_AT}
) g""",
        )
        # for reladiff: the customer number as an indexed integer (a virtual column), and a view
        _execute(
            con,
            f"ALTER TABLE {bench_schema()}.accounts ADD COLUMN customer_no BIGINT AS "
            "(CAST(SUBSTRING(customer_ref, 3) AS UNSIGNED)) VIRTUAL, ADD INDEX (customer_no)",
        )
        _execute(
            con,
            f"""
CREATE VIEW {bench_schema()}.accounts_cmp AS
SELECT customer_no, lower(trim(billing_email)) AS email,
       upper(trim(country)) AS country, lower(trim(account_state)) AS status,
       lower(trim(plan)) AS plan
FROM {bench_schema()}.accounts WHERE account_state <> 'CLOSED'""",
        )
        _execute(con, f"ANALYZE TABLE {bench_schema()}.accounts")
    engine.dispose()
    return time.perf_counter() - started


def drop_tables() -> None:
    import sqlalchemy as sa

    pg, my = server_urls()
    for url, statement in (
        (pg, f"DROP SCHEMA IF EXISTS {bench_schema()} CASCADE"),
        (my, f"DROP DATABASE IF EXISTS {bench_schema()}"),
    ):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.begin() as con:
            _execute(con, statement)
        engine.dispose()


def server_versions() -> dict[str, str]:
    import sqlalchemy as sa

    versions = {}
    for name, url in zip(("postgresql", "mariadb"), server_urls(), strict=True):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as con:
            versions[name] = con.exec_driver_sql("SELECT version()").scalar_one().split(",")[0]
        engine.dispose()
    return versions


# -- the workers: each runs in a fresh process ----------------------------------------------------


def bench_mappings() -> tuple[Any, Any]:
    from sync_assets.project import current

    # PostgreSQL: the schema in the mapping; MariaDB: the database in the URL
    return dataclasses.replace(
        current().mapping("crm", "customer"), schema=bench_schema()
    ), current().mapping("billing", "customer")


def _timed(batches: Iterable[Any], clock: list[float]) -> Iterator[Any]:
    """The batches, adding the time spent producing them (the extraction) to clock[0]."""
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            clock[0] += time.perf_counter() - started
            return
        clock[0] += time.perf_counter() - started
        yield batch


def _sql_for(mapping: Any, engine: Any) -> str:
    from sync_assets.connectors.sources import select_rows

    return str(select_rows(mapping).compile(engine, compile_kwargs={"literal_binds": True}))


def _literal(value: Any) -> str:
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


def connectorx_batches(
    url: str, sql: str, mode: str, key: str, chunk: int, quote_char: str
) -> Iterator[Any]:
    """The mapping's raw rows through connectorx, as stream_batches could read them.

    cx_arrow: one query, the whole table as one Arrow table, then sliced;
    cx_stream: one query, an Arrow stream of `chunk`-row batches (bounded memory);
    cx_keyset: one query per chunk, `WHERE key > last ORDER BY key LIMIT chunk` (bounded memory,
    each chunk its own statement and so its own snapshot of the table).
    """
    import connectorx as cx

    if mode == "cx_arrow":
        yield from cx.read_sql(url, sql, return_type="arrow").to_batches(chunk)
    elif mode == "cx_stream":
        yield from cx.read_sql(url, sql, return_type="arrow_stream", batch_size=chunk)
    elif mode == "cx_keyset":
        quoted = f"{quote_char}{key}{quote_char}"
        last = None
        while True:
            where = "" if last is None else f" WHERE {quoted} > {_literal(last)}"
            query = f"SELECT * FROM ({sql}) AS s{where} ORDER BY {quoted} LIMIT {chunk}"
            table = cx.read_sql(url, query, return_type="arrow")
            if table.num_rows == 0:
                return
            yield from table.to_batches(chunk)
            if table.num_rows < chunk:
                return
            last = table.column(key)[-1].as_py()
    else:
        raise ValueError(mode)


def _join_sql(a: str, b: str) -> str:
    """DuckDB's own comparison of the two snapshots: one FULL OUTER JOIN, every column compared."""
    differs = " OR ".join(f"a.{c} IS DISTINCT FROM b.{c}" for c in (*COMPARED, "is_deleted"))
    return f"SELECT count(*) FROM {a} a FULL OUTER JOIN {b} b USING (customer_id) WHERE {differs}"


def _single_join_diff_sql(left: Any, right: Any) -> str:
    """What diff_systems inserts (same rows, same owner orientation), from one join, counted.

    Not the project's code: a measured alternative, to see what one pass instead of one join per
    attribute would cost.
    """
    from sync_assets.project import current
    from sync_assets.reconcile.diff import display, equal
    from sync_assets.reconcile.snapshot import snapshot_table

    catalog = current().entity(left.entity)
    systems = {left.system: "l", right.system: "r"}
    cases = []
    for name in COMPARED:
        attribute = catalog.attribute(name)
        owner, other = (
            (right, left) if attribute.owner == right.system else (left, right)
        )  # the owner's value is the expected one
        e, o = f"{systems[owner.system]}.{name}", f"{systems[other.system]}.{name}"
        cases.append(
            f"CASE WHEN NOT {equal(attribute, e, o)} THEN "
            f"{{'attribute': '{name}', 'expected': {display(attribute, e)}, "
            f"'actual': {display(attribute, o)}, 'system': '{other.system}'}} END"
        )
    return f"""
SELECT count(*) FROM (
    SELECT unnest(list_filter([{", ".join(cases)}], lambda x: x IS NOT NULL)) AS d
    FROM {snapshot_table(left)} l JOIN {snapshot_table(right)} r USING (customer_id)
    WHERE NOT l.is_deleted AND NOT r.is_deleted
)"""


def syncfabric_worker(mode: str, warehouse: Path, chunk: int) -> dict[str, Any]:
    """Snapshot both systems into a fresh warehouse and diff them, as the reconcile assets do."""
    import sqlalchemy as sa

    from sync_assets.connectors.sources import open_source, stream_batches
    from sync_assets.reconcile import snapshot as snapshot_module
    from sync_assets.reconcile.diff import diff_systems
    from sync_assets.reconcile.snapshot import load_snapshot, snapshot_system, snapshot_table
    from sync_assets.warehouse import connect, scalar, transaction

    urls = bench_urls()
    crm, billing = bench_mappings()
    phases: dict[str, float] = {}
    extract: dict[str, float] = {}
    rows: dict[str, int] = {}
    rss: dict[str, float] = {"start": peak_rss_mb()}
    engines = {
        "crm": open_source(sa.make_url(urls["pg_sqlalchemy"])),
        "billing": open_source(sa.make_url(urls["my_sqlalchemy"])),
    }
    plain = {"crm": urls["pg_plain"], "billing": urls["my_plain"]}
    quote_char = {"crm": '"', "billing": "`"}
    with connect(warehouse):
        pass  # the schema, not timed
    for mapping in (crm, billing):
        system = mapping.system
        clock = [0.0]
        started = time.perf_counter()
        with connect(warehouse) as con, transaction(con):
            if mode == "syncfabric":
                # snapshot_system itself, its stream of batches timed on the way
                def timed_stream(*a: Any, _clock: list[float] = clock, **k: Any) -> Any:
                    return _timed(stream_batches(*a, **k), _clock)

                snapshot_module.stream_batches = timed_stream
                try:
                    rows[system] = snapshot_system(con, engines[system], mapping)
                finally:
                    snapshot_module.stream_batches = stream_batches
            else:
                sql = _sql_for(mapping, engines[system])
                batches = connectorx_batches(
                    plain[system], sql, mode, mapping.key[0], chunk, quote_char[system]
                )
                rows[system] = load_snapshot(con, mapping, _timed(batches, clock))
        phases[f"extract_normalize_{system}"] = time.perf_counter() - started
        extract[system] = clock[0]
        rss[system] = peak_rss_mb()
    started = time.perf_counter()
    with connect(warehouse) as con, transaction(con):
        result = diff_systems(con, crm, billing, "bench-run")
    phases["diff"] = time.perf_counter() - started
    rss["diff"] = peak_rss_mb()
    # The floor under the end to end figure: both systems read through the same path and dropped,
    # nothing normalized, stored or diffed (the servers' caches as warm as for the snapshots).
    read_only: float | None = None
    if mode == "syncfabric":
        started = time.perf_counter()
        for mapping in (crm, billing):
            for _ in stream_batches(engines[mapping.system], mapping):
                pass
        read_only = time.perf_counter() - started
    for engine in engines.values():
        engine.dispose()

    # The floor: DuckDB's own join of the same tables, as a step of its own like the diff: a
    # fresh connection (nothing of the tables in DuckDB's buffers yet; the OS's cache warm for
    # both), opened, joined and closed. Then, in one connection, both again once warm.
    a, b = snapshot_table(crm), snapshot_table(billing)
    started = time.perf_counter()
    with connect(warehouse) as con:
        scalar(con, _join_sql(a, b))  # its count is taken from the warm runs below
    join_step = time.perf_counter() - started
    joins: list[float] = []
    single: list[float] = []
    with connect(warehouse) as con:
        for _ in range(3):
            started = time.perf_counter()
            join_count = scalar(con, _join_sql(a, b))
            joins.append(time.perf_counter() - started)
        started = time.perf_counter()
        with transaction(con):
            diff_systems(con, crm, billing, "bench-run")  # replaces its own rows: the same ones
        warm_diff = time.perf_counter() - started
        for _ in range(2):
            started = time.perf_counter()
            single_count = scalar(con, _single_join_diff_sql(crm, billing))
            single.append(time.perf_counter() - started)
        by_attribute = dict(
            con.execute(
                "SELECT attribute, count(*) FROM discrepancies WHERE run_id = 'bench-run'"
                " GROUP BY ALL ORDER BY 1"
            ).fetchall()
        )
        memory_limit = scalar(con, "SELECT current_setting('memory_limit')")
        threads = scalar(con, "SELECT current_setting('threads')")
    return {
        "mode": mode,
        "phases": phases,
        "extract_seconds": extract,
        "normalize_seconds": {
            s: phases[f"extract_normalize_{s}"] - extract[s] for s in ("crm", "billing")
        },
        "snapshot_rows": rows,
        "read_only_seconds": read_only,
        "diff_counts": result.counts,
        "divergences_by_attribute": by_attribute,
        "duckdb_join_step_seconds": join_step,
        "duckdb_join_seconds_runs": joins,
        "warm_diff_seconds": warm_diff,
        "duckdb_join_count": join_count,
        "single_join_diff_seconds_runs": single,
        "single_join_diff_count": single_count,
        "peak_rss_mb": peak_rss_mb(),
        "rss_high_water_after_mb": rss,
        "warehouse_mb": warehouse.stat().st_size / 2**20,
        "duckdb_memory_limit": memory_limit,
        "duckdb_threads": threads,
    }


def reladiff_worker(threads: int) -> dict[str, Any]:
    """reladiff's hashdiff between the two servers, on the normalized views."""
    import reladiff

    urls = bench_urls()
    started = time.perf_counter()
    left = reladiff.connect_to_table(
        urls["pg_plain"], f"{bench_schema()}.contacts_cmp", "customer_no", thread_count=threads
    )
    right = reladiff.connect_to_table(
        urls["my_plain"], "accounts_cmp", "customer_no", thread_count=threads
    )
    connected = time.perf_counter() - started
    diff = reladiff.diff_tables(
        left,
        right,
        extra_columns=COMPARED,
        algorithm="hashdiff",
        threaded=threads > 1,
        max_threadpool_size=threads,
    )
    signs = {"-": 0, "+": 0}
    keys = set()
    for sign, row in diff:
        signs[sign] += 1
        keys.add(row[0])
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "connect_seconds": connected,
        "rows_only_or_changed_in_postgres": signs["-"],
        "rows_only_or_changed_in_mariadb": signs["+"],
        "differing_keys": len(keys),
        "threads": threads,
        "peak_rss_mb": peak_rss_mb(),
    }


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile")
    parser.add_argument("worker", choices=["syncfabric", "reladiff"])
    parser.add_argument("--mode", choices=EXTRACT_MODES, default="syncfabric")
    parser.add_argument("--warehouse", type=Path)
    parser.add_argument("--chunk", type=int, default=DEFAULT_CX_CHUNK)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.worker == "syncfabric":
        result = syncfabric_worker(args.mode, args.warehouse, args.chunk)
    else:
        result = reladiff_worker(args.threads)
    write_worker_result(args.out, result)


# -- the benchmark --------------------------------------------------------------------------------


def run_worker_limited(args: list[str], timeout: float | None = None) -> dict[str, Any]:
    """`python -m bench.reconcile args... --out FILE` in a fresh process, killed after `timeout`.

    Returns what it wrote plus `process_peak_rss_mb` (wait4), or {"timeout": seconds}.
    """
    with tempfile.TemporaryDirectory(prefix="syncfabric-bench-worker-") as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, "-m", "bench.reconcile", *args, "--out", str(out)]
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, start_new_session=True)
        deadline = None if timeout is None else started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                os.killpg(process.pid, signal.SIGKILL)  # the worker's own process group
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = -9
                return {
                    "timeout": timeout,
                    "seconds": time.perf_counter() - started,
                    "process_peak_rss_mb": usage.ru_maxrss / 1024,
                }
            select.select([], [], [], 0.2)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"worker failed with exit code {process.returncode}: {command}")
        result = json.loads(out.read_text())
    result["process_peak_rss_mb"] = usage.ru_maxrss / 1024
    result["process_seconds"] = time.perf_counter() - started
    return result


def _load() -> float:
    return os.getloadavg()[0]


def measure(rows: int, args: argparse.Namespace, folder: Path, modes: list[str]) -> dict[str, Any]:
    """Create the tables for `rows` customers and run every configuration on them."""
    print(f"reconcile: generating {rows:,} customers in PostgreSQL and MariaDB ...", flush=True)
    generate = {"postgres_seconds": create_postgres(rows), "mariadb_seconds": create_mariadb(rows)}
    print(
        f"reconcile: generated in {generate['postgres_seconds']:.1f} s (PostgreSQL), "
        f"{generate['mariadb_seconds']:.1f} s (MariaDB)",
        flush=True,
    )
    configurations: dict[str, Any] = {}
    for mode in modes:
        print(f"reconcile: syncfabric end to end, extraction {mode} ...", flush=True)
        warehouse = folder / f"{mode}_{rows}.duckdb"
        load = [_load()]
        result = run_worker_limited(
            [
                "syncfabric",
                "--mode",
                mode,
                "--warehouse",
                str(warehouse),
                "--chunk",
                str(args.chunk),
            ]
        )
        load.append(_load())
        warehouse.unlink(missing_ok=True)
        Path(f"{warehouse}.wal").unlink(missing_ok=True)
        phases = result["phases"]
        end_to_end = sum(phases.values())
        join = result["duckdb_join_step_seconds"]
        warm_join = sorted(result["duckdb_join_seconds_runs"])[1]
        result.update(
            end_to_end_seconds=end_to_end,
            rows_per_second=rows / end_to_end,
            source_rows_per_second=sum(result["snapshot_rows"].values()) / end_to_end,
            duckdb_join_seconds=join,
            ratio_diff_to_join=phases["diff"] / join,
            duckdb_warm_join_seconds=warm_join,
            ratio_warm_diff_to_join=result["warm_diff_seconds"] / warm_join,
            load_average_1m=load,
        )
        configurations[mode] = result
        print(
            f"reconcile:   {end_to_end:.1f} s end to end (diff {phases['diff']:.2f} s, "
            f"join {join:.2f} s), peak RSS {result['peak_rss_mb']:,.0f} MiB",
            flush=True,
        )
    rela: dict[str, Any] | None = None
    if not args.skip_reladiff:
        print(f"reconcile: reladiff (limit {args.reladiff_timeout:.0f} s) ...", flush=True)
        load = [_load()]
        rela = run_worker_limited(
            ["reladiff", "--threads", str(args.reladiff_threads)], args.reladiff_timeout
        )
        load.append(_load())
        rela["load_average_1m"] = load
        shown = (
            f"timed out after {rela['timeout']:.0f} s"
            if "timeout" in rela
            else f"{rela['seconds']:.1f} s"
        )
        print(f"reconcile:   reladiff {shown}", flush=True)
    return _summarize(rows, generate, configurations, rela)


def _summarize(
    rows: int, generate: dict[str, float], configurations: dict[str, Any], rela: dict | None
) -> dict[str, Any]:
    expected = expected_counts(rows)
    primary = configurations.get("syncfabric") or next(iter(configurations.values()))
    best_mode = min(configurations, key=lambda m: configurations[m]["end_to_end_seconds"])
    best = configurations[best_mode]
    rela_seconds = None if rela is None or "timeout" in rela else rela["seconds"]
    checks = {
        mode: c["diff_counts"]["divergence"] == expected["divergences"]
        and c["single_join_diff_count"] == expected["divergences"]
        for mode, c in configurations.items()
    }
    if rela is not None and rela_seconds is not None:
        checks["reladiff"] = rela["differing_keys"] == (
            expected["divergences"] + expected["missing_in_billing"]
        )

    def ratio(seconds: float) -> float | None:
        return None if rela_seconds is None else seconds / rela_seconds

    return {
        "rows": rows,
        "drift": {
            "rate": 1 / DRIFT_EVERY,
            "kinds": list(DRIFT_KINDS),
            "missing_rate": 1 / MISSING_EVERY,
            "deleted_rate": 1 / DELETED_EVERY,
            "expected": expected,
        },
        "generate": generate,
        "phases": primary["phases"],
        "end_to_end_seconds": primary["end_to_end_seconds"],
        "rows_per_second": primary["rows_per_second"],
        "peak_rss_mb": primary["peak_rss_mb"],
        "duckdb_join_seconds": primary["duckdb_join_seconds"],
        "ratio_diff_to_join": primary["ratio_diff_to_join"],
        "ratio_warm_diff_to_join": primary["ratio_warm_diff_to_join"],
        "reladiff_seconds": rela_seconds,
        "reladiff_timed_out": rela is not None and "timeout" in rela,
        "ratio_end_to_end_to_reladiff": ratio(primary["end_to_end_seconds"]),
        "read_only_seconds": primary["read_only_seconds"],
        "ratio_read_only_to_reladiff": (
            None if primary["read_only_seconds"] is None else ratio(primary["read_only_seconds"])
        ),
        "best_extraction": best_mode,
        "best_end_to_end_seconds": best["end_to_end_seconds"],
        "ratio_best_end_to_end_to_reladiff": ratio(best["end_to_end_seconds"]),
        "counts_as_expected": checks,
        "configurations": configurations,
        "reladiff": rela,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help=f"customers (default {DEFAULT_ROWS:,})"
    )
    parser.add_argument(
        "--with-10m",
        dest="with_10m",
        action="store_true",
        help=f"then {LARGE_ROWS:,} customers, if the first size ran end to end in under "
        f"{LARGE_ONLY_IF_UNDER_S:.0f} s",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=EXTRACT_MODES,
        default=list(EXTRACT_MODES),
        help="extraction paths to measure (default: all; syncfabric is the project's own stream_batches)",
    )
    parser.add_argument(
        "--large-modes",
        nargs="+",
        choices=EXTRACT_MODES,
        default=["syncfabric", "cx_stream"],
        help="extraction paths measured at 10M (default: syncfabric cx_stream)",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CX_CHUNK,
        help=f"rows per connectorx batch / key range ({DEFAULT_CX_CHUNK:,})",
    )
    parser.add_argument(
        "--reladiff-timeout",
        type=float,
        default=DEFAULT_RELADIFF_TIMEOUT_S,
        help=f"seconds before reladiff is stopped and reported as a timeout "
        f"({DEFAULT_RELADIFF_TIMEOUT_S})",
    )
    parser.add_argument(
        "--reladiff-threads", type=int, default=1, help="reladiff threads per database (1)"
    )
    parser.add_argument("--skip-reladiff", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the sf_bench tables")


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="syncfabric-bench-reconcile-"))
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    skipped_large = None
    try:
        runs.append(measure(args.rows, args, folder, args.modes))
        if args.with_10m and args.rows < LARGE_ROWS:
            first = runs[0]["end_to_end_seconds"]
            if first < LARGE_ONLY_IF_UNDER_S:
                runs.append(measure(LARGE_ROWS, args, folder, args.large_modes))
            else:
                skipped_large = (
                    f"{LARGE_ROWS:,} not run: {args.rows:,} took {first:.0f} s end to end "
                    f"(runs only under {LARGE_ONLY_IF_UNDER_S:.0f} s)"
                )
        versions = server_versions()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if args.keep:
            print(f"reconcile: kept schema/database {bench_schema()}")
        else:
            with contextlib.suppress(Exception):
                drop_tables()
    machine = machine_info()
    for package in ("sqlalchemy", "connectorx", "reladiff", "psycopg", "pymysql"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            machine[package] = metadata.version(package)
    primary = runs[0]
    result = {
        "benchmark": NAME,
        **{k: v for k, v in primary.items() if k not in ("configurations", "reladiff")},
        "aims": {
            "ratio_diff_to_join_at_most": DIFF_TO_JOIN_AIM,
            "ratio_end_to_end_to_reladiff_at_most": RELADIFF_RATIO_AIM,
            "seconds_10m_below": SECONDS_10M_AIM,
            "peak_rss_mb_10m_below": PEAK_RSS_AIM_MB,
        },
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "versions": {**machine, "servers": versions},
        "timestamp": machine["timestamp"],
        "skipped_large": skipped_large,
        "notes": [
            "end to end = extract+normalize crm + extract+normalize billing + diff_systems, each "
            "in its own warehouse connection and transaction; warehouse schema setup excluded",
            "extract = time spent producing the Arrow batches (SQLAlchemy rows -> Arrow, or "
            "connectorx); normalize = the rest of snapshot_system/load_snapshot (raw insert + "
            "normalize SQL)",
            "duckdb join = SELECT count(*) FROM snapshot_crm_customer FULL OUTER JOIN "
            "snapshot_billing_customer USING (customer_id) WHERE any of email, country, status, "
            "plan, is_deleted IS DISTINCT, as a step like the diff's: a fresh connection opened, "
            "the join, closed (the diff step: opened, diff_systems in a transaction, committed, "
            "closed); the warm ratio compares the median of 3 joins with a second diff_systems "
            "in the same, warm, connection",
            "single-join diff = the same divergence rows as diff_systems (catalog equality, owner "
            "orientation, display) from one join, counted: a measured alternative, not the "
            "project's code",
            "reladiff compares views normalized server-side (lower(email), upper(country), "
            "lower(status), lower(plan), live rows only): the two systems' own formats differ in "
            "case, so raw columns would differ on every row; keyed by customer_no, the number in "
            "'C-000123' as an integer, indexed on both sides (PostgreSQL expression index, "
            "MariaDB indexed virtual column), because reladiff cannot use a text key on "
            "MySQL/MariaDB ('Cannot use a column of type Text() as a key'); that index is built "
            "in the untimed setup, and Syncfabric does not need it",
            "rows_per_second = customers / end-to-end seconds; peak_rss_mb = the worker "
            "process's VmHWM; process_peak_rss_mb beside it is wait4's ru_maxrss, which can "
            "include the parent's RSS at fork when the parent is large (e.g. after `python -m "
            "bench` ran ingest in it)",
        ],
        "runs": runs,
    }
    report(result)
    path = write_result(NAME, result)
    print(f"reconcile: wrote {path}")
    return result


def report(result: dict[str, Any]) -> None:
    for run_ in result["runs"]:
        _report_run(run_)
    loads = [
        value
        for run_ in result["runs"]
        for c in [*run_["configurations"].values(), run_["reladiff"] or {}]
        for value in c.get("load_average_1m", [])
    ]
    if loads and max(loads) > 1.0:
        print(
            f"note: the machine was busy (1-minute load {min(loads):.1f} to {max(loads):.1f} "
            f"around the measurements, {result['versions']['cpu_count']} CPUs); figures are "
            "pessimistic"
        )
    if result["skipped_large"]:
        print(f"note: {result['skipped_large']}")


def _report_run(run_: dict[str, Any]) -> None:
    configurations = run_["configurations"]
    headers = ["", *configurations]

    def row(label: str, key: Callable[[dict[str, Any]], Any]) -> list[Any]:
        return [label, *(key(c) for c in configurations.values())]

    rows = [
        row("extract crm s", lambda c: c["extract_seconds"]["crm"]),
        row("normalize crm s", lambda c: c["normalize_seconds"]["crm"]),
        row("extract billing s", lambda c: c["extract_seconds"]["billing"]),
        row("normalize billing s", lambda c: c["normalize_seconds"]["billing"]),
        row("diff (diff_systems) s", lambda c: c["phases"]["diff"]),
        row("end to end s", lambda c: c["end_to_end_seconds"]),
        row("floor: both systems read only s", lambda c: c["read_only_seconds"] or "-"),
        row("customers / s", lambda c: round(c["rows_per_second"])),
        row("peak RSS MiB", lambda c: c["peak_rss_mb"]),
        row("duckdb full outer join, as a step s", lambda c: c["duckdb_join_seconds"]),
        row("ratio diff / join", lambda c: c["ratio_diff_to_join"]),
        row("warm: diff s", lambda c: c["warm_diff_seconds"]),
        row("warm: duckdb join s", lambda c: c["duckdb_warm_join_seconds"]),
        row("warm: ratio diff / join", lambda c: c["ratio_warm_diff_to_join"]),
        row("single-join diff s", lambda c: c["single_join_diff_seconds_runs"][0]),
        row("divergences found", lambda c: c["diff_counts"]["divergence"]),
        row("load avg 1m (before)", lambda c: c["load_average_1m"][0]),
    ]
    rela = run_["reladiff"]
    if run_["reladiff_seconds"] is not None:
        rows.append(row("ratio end to end / reladiff", lambda c: _ratio(c, run_)))
    expected = run_["drift"]["expected"]
    print()
    print(
        f"reconcile benchmark: {run_['rows']:,} customers (PostgreSQL contacts vs MariaDB "
        f"accounts), {expected['divergences']:,} drifted, "
        f"{expected['missing_in_billing']:,} missing in billing, {expected['deleted']:,} deleted"
    )
    print(format_table(headers, rows))
    if rela is not None:
        if "timeout" in rela:
            print(f"reladiff: timed out after {rela['timeout']:.0f} s (stopped)")
        else:
            print(
                f"reladiff hashdiff: {rela['seconds']:.1f} s, {rela['differing_keys']:,} "
                f"differing keys, peak RSS {rela['peak_rss_mb']:,.0f} MiB"
            )
    bad = [k for k, ok in run_["counts_as_expected"].items() if not ok]
    if bad:
        print(f"WARNING: counts differ from what was planted: {', '.join(bad)}")
    _verdicts(run_)


def _ratio(configuration: dict[str, Any], run_: dict[str, Any]) -> float | None:
    if run_["reladiff_seconds"] is None:
        return None
    return configuration["end_to_end_seconds"] / run_["reladiff_seconds"]


def _verdicts(run_: dict[str, Any]) -> None:
    ratio = run_["ratio_diff_to_join"]
    print(
        f"aim diff <= {DIFF_TO_JOIN_AIM:g} x join, each as a step: {ratio:.2f} x "
        f"({'met' if ratio <= DIFF_TO_JOIN_AIM else 'missed'}); warm, in one connection: "
        f"{run_['ratio_warm_diff_to_join']:.2f} x"
    )
    if run_["reladiff_seconds"] is not None:
        r, best = run_["ratio_end_to_end_to_reladiff"], run_["ratio_best_end_to_end_to_reladiff"]
        print(
            f"aim end to end <= {RELADIFF_RATIO_AIM:g} x reladiff: {r:.2f} x with syncfabric's "
            f"own path ({'met' if r <= RELADIFF_RATIO_AIM else 'missed'}), {best:.2f} x with "
            f"{run_['best_extraction']}"
        )
        if run_.get("ratio_read_only_to_reladiff") is not None:
            print(
                f"floor: reading both systems, nothing else, {run_['read_only_seconds']:.2f} s = "
                f"{run_['ratio_read_only_to_reladiff']:.2f} x reladiff"
            )
    elif run_["reladiff_timed_out"]:
        print("aim end to end within reladiff's time: reladiff timed out, no ratio")
    if run_["rows"] >= LARGE_ROWS:
        peak, seconds = run_["peak_rss_mb"], run_["end_to_end_seconds"]
        print(
            f"aim at 10M < {SECONDS_10M_AIM:g} s and < {PEAK_RSS_AIM_MB:,} MiB: {seconds:.0f} s "
            f"({'met' if seconds < SECONDS_10M_AIM else 'missed'}), {peak:,.0f} MiB "
            f"({'met' if peak < PEAK_RSS_AIM_MB else 'missed'})"
        )


if __name__ == "__main__":
    worker_main(sys.argv[1:])
