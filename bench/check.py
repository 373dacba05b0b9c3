"""Check benchmark: `syncctl check --json` on N customers, the CRM on PostgreSQL, billing MariaDB.

The landscape is bench/reconcile.py's: N customers generated server-side as the CRM's `contacts`
(PostgreSQL, in the benchmark's schema) and billing's `accounts` (MariaDB, the benchmark's
database), 1% drifted in billing, 0.1% missing from billing. Beside them, what the demo project
also expects to find: a `created_on` column in `contacts` (a stamp the CRM fills on create) and an
empty billing `orders` table. The project is a copy of examples/demo whose CRM mapping names the
benchmark's schema; the support desk stays the demo's SQLite file, empty.

Untimed set-up: `syncctl run` once on a fresh data folder, which adopts the landscape into golden
records (they are empty) and corrects the drift; then the tables are generated again, so the drift
is back. Then, `--repeat` times, in turn:

- `syncctl check --json` as a subprocess, twice: first with the business rules' remembered
  outcomes outdated (each kept under a fingerprint no suite has), so every suite runs, as after
  the systems' rows changed ("rules run"); then
  again, the systems unchanged, so the suites' outcomes are read back ("rules remembered"). Wall
  seconds, CPU seconds and peak RSS (wait4) of each;
- the floor: `syncctl check --json` of the demo project on a data folder of its own whose three
  systems are empty SQLite files, checked once untimed before (its Dagster instance and warehouse
  made, the rules' outcomes remembered): start-up, imports, Dagster and every step, no rows;
- the reference, in this process: an independent DuckDB diff of the same two tables, each read
  whole into Arrow through connectorx (load), then normalized and FULL OUTER JOINed in DuckDB
  (diff). Its CPU seconds are this process's (all threads).

Neither side's CPU seconds include the servers' own work. The aim is on wall seconds.

    python -m bench check                 # 100,000 customers
    python -m bench check --rows 20000 --repeat 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, format_table, machine_info, write_result
from bench.reconcile import (
    _execute,
    bench_schema,
    bench_urls,
    create_mariadb,
    create_postgres,
    drop_tables,
    expected_counts,
    server_urls,
)

NAME = "check"
DEFAULT_ROWS = 100_000
DEFAULT_REPEAT = 3
CHECK_TO_REFERENCE_AIM = 2.0


# -- the landscape and the project ----------------------------------------------------------------


def create_landscape(rows: int) -> None:
    """bench/reconcile.py's two tables, and what else the demo's systems files name."""
    import sqlalchemy as sa

    create_postgres(rows)
    create_mariadb(rows)
    pg, my = server_urls()
    for url, statement in (
        (pg, f"ALTER TABLE {bench_schema()}.contacts ADD COLUMN created_on text"),
        (
            my,
            f"CREATE TABLE {bench_schema()}.orders (order_number VARCHAR(16) PRIMARY KEY, "
            "acct_no INT NOT NULL, state VARCHAR(16) NOT NULL, total_cents INT NOT NULL, "
            "currency VARCHAR(3) NOT NULL, placed VARCHAR(16) NOT NULL, voided INT NOT NULL)",
        ),
    ):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.begin() as con:
            _execute(con, statement)
        engine.dispose()


def prepare(folder: Path) -> dict[str, str]:
    """The copied project, a fresh data folder with the demo's empty SQLite systems (support's is
    the one read), and the environment `syncctl` runs in."""
    from examples.demo.seed.systems import write_system_databases
    from sync_assets.settings import DataFolder

    project = folder / "project"
    shutil.copytree(
        PROJECT_ROOT / "examples" / "demo", project, ignore=shutil.ignore_patterns("__pycache__")
    )
    crm = project / "systems" / "crm.yaml"
    text = crm.read_text()
    table = "\n    table: contacts\n"
    if table not in text:
        raise RuntimeError(f"{crm}: no `table: contacts` line to put the schema under")
    crm.write_text(text.replace(table, f"{table}    schema: {bench_schema()}\n"))
    home = folder / "home"
    write_system_databases(DataFolder(home), [], [])
    urls = bench_urls()
    env = {k: v for k, v in os.environ.items() if k != "SYNCFABRIC_SUPPORT_URL"}
    return env | {
        "SYNCFABRIC_HOME": str(home),
        "SYNCFABRIC_PROJECT": str(project),
        "SYNCFABRIC_CRM_URL": urls["pg_sqlalchemy"],
        "SYNCFABRIC_BILLING_URL": urls["my_sqlalchemy"],
    }


def prepare_empty(folder: Path) -> dict[str, str]:
    """The demo project on a data folder whose three systems are empty SQLite files: a check there
    does everything but read rows, the floor under the check of the landscape."""
    from examples.demo.seed.systems import write_system_databases
    from sync_assets.settings import DataFolder

    home = folder / "empty"
    write_system_databases(DataFolder(home), [], [])
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("SYNCFABRIC_") and k.endswith("_URL"))
    }
    return env | {
        "SYNCFABRIC_HOME": str(home),
        "SYNCFABRIC_PROJECT": str(PROJECT_ROOT / "examples" / "demo"),
    }


def syncctl(command: str, env: dict[str, str]) -> dict[str, Any]:
    """`syncctl COMMAND --json`: its JSON, wall seconds, exit code and peak RSS (wait4)."""
    executable = str(Path(sys.executable).with_name("syncctl"))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen([executable, command, "--json"], env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if not stdout.startswith("{"):
        code = os.waitstatus_to_exitcode(status)
        raise RuntimeError(f"syncctl {command} failed ({code}): {stderr[-2000:]}")
    return {
        "json": json.loads(stdout),
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "exit_code": os.waitstatus_to_exitcode(status),
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


# -- the reference --------------------------------------------------------------------------------


def reference_diff() -> dict[str, Any]:
    """Both tables into Arrow (connectorx), then one normalized FULL OUTER JOIN in DuckDB."""
    import connectorx as cx
    import duckdb

    urls = bench_urls()
    started, cpu_started = time.perf_counter(), time.process_time()
    crm = cx.read_sql(
        urls["pg_plain"],
        "SELECT contact_id, email_address, country_code, lifecycle_status, plan_name, deleted "
        f"FROM {bench_schema()}.contacts",
        return_type="arrow",
    )
    billing = cx.read_sql(
        urls["my_plain"],
        "SELECT customer_ref, billing_email, country, account_state, plan FROM accounts",
        return_type="arrow",
    )
    loaded = time.perf_counter()
    con = duckdb.connect()
    con.register("crm_raw", crm)
    con.register("billing_raw", billing)
    con.execute("""
CREATE TABLE differing AS
WITH crm AS (
    SELECT contact_id AS customer_id, lower(trim(email_address)) AS email,
           upper(trim(country_code)) AS country, lower(trim(lifecycle_status)) AS status,
           lower(trim(plan_name)) AS plan, deleted = 1 AS is_deleted
    FROM crm_raw
), billing AS (
    SELECT customer_ref AS customer_id, lower(trim(billing_email)) AS email,
           upper(trim(country)) AS country, lower(trim(account_state)) AS status,
           lower(trim(plan)) AS plan, account_state = 'CLOSED' AS is_deleted
    FROM billing_raw
)
SELECT customer_id,
       CASE WHEN b.customer_id IS NULL THEN 'missing_in_billing'
            WHEN c.customer_id IS NULL THEN 'extra_in_billing'
            ELSE 'differs' END AS kind,
       c.email AS crm_email, b.email AS billing_email, c.country AS crm_country,
       b.country AS billing_country, c.status AS crm_status, b.status AS billing_status,
       c.plan AS crm_plan, b.plan AS billing_plan
FROM crm c FULL OUTER JOIN billing b USING (customer_id)
WHERE (b.customer_id IS NULL AND NOT c.is_deleted)
   OR c.customer_id IS NULL
   OR c.is_deleted IS DISTINCT FROM b.is_deleted
   OR (NOT c.is_deleted AND (c.email IS DISTINCT FROM b.email
       OR c.country IS DISTINCT FROM b.country OR c.status IS DISTINCT FROM b.status
       OR c.plan IS DISTINCT FROM b.plan))""")
    found = dict(con.execute("SELECT kind, count(*) FROM differing GROUP BY kind").fetchall())
    con.close()
    done = time.perf_counter()
    return {
        "load_seconds": loaded - started,
        "diff_seconds": done - loaded,
        "seconds": done - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "rows_read": {"crm": crm.num_rows, "billing": billing.num_rows},
        "found": found,
    }


# -- the benchmark --------------------------------------------------------------------------------


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall seconds (the later middle one for an even count): its parts add up."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def measure(rows: int, repeat: int, folder: Path) -> dict[str, Any]:
    print(f"check: generating {rows:,} customers in PostgreSQL and MariaDB ...", flush=True)
    create_landscape(rows)
    env = prepare(folder)
    print("check: syncctl run once, to adopt the landscape into golden records ...", flush=True)
    adopted = syncctl("run", env)
    golden = adopted["json"]["golden"]["customer"] + adopted["json"]["deleted"]["customer"]
    if golden != rows:
        raise RuntimeError(f"syncctl run adopted {golden:,} customers, not {rows:,}")
    print(
        f"check:   adopted in {adopted['seconds']:.1f} s; generating the tables again", flush=True
    )
    create_landscape(rows)  # the run corrected the drift: put it back
    from sync_assets.settings import DataFolder

    warehouse = DataFolder(Path(env["SYNCFABRIC_HOME"])).warehouse
    empty_env = prepare_empty(folder)
    syncctl("check", empty_env)  # untimed: its instance and warehouse made, its rules remembered
    checks: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": [], "empty": []}
    references = []
    for n in range(repeat):
        for kind in ("cold", "warm"):
            if kind == "cold":
                outdate_rule_outcomes(warehouse)
            load = os.getloadavg()[0]
            checked = syncctl("check", env)
            checks[kind].append(
                {k: v for k, v in checked.items() if k != "json"} | {"load_1m": load}
            )
        empty = syncctl("check", empty_env)
        checks["empty"].append({k: v for k, v in empty.items() if k != "json"})
        references.append(reference_diff())
        print(
            f"check:   run {n + 1}/{repeat}: syncctl check {checks['cold'][-1]['seconds']:.1f} s "
            f"(rules run), {checks['warm'][-1]['seconds']:.1f} s (rules remembered), "
            f"{checks['empty'][-1]['seconds']:.1f} s (empty systems), "
            f"reference {references[-1]['seconds']:.2f} s (load {load:.1f})",
            flush=True,
        )
    report = checked["json"]
    found = {c["check"]: c["counts"] for c in report["checks"] if c["discrepancies"]}
    cold, warm = median_run(checks["cold"]), median_run(checks["warm"])
    floor = median_run(checks["empty"])
    reference = median_run(references)
    expected = expected_counts(rows)
    return {
        "rows": rows,
        "adopt_setup_seconds": adopted["seconds"],
        "check_seconds": cold["seconds"],
        "check_cpu_seconds": cold["cpu_seconds"],
        "check_peak_rss_mb": max(c["peak_rss_mb"] for c in checks["cold"]),
        "check_remembered_seconds": warm["seconds"],
        "check_remembered_cpu_seconds": warm["cpu_seconds"],
        "empty_check_seconds": floor["seconds"],
        "empty_check_cpu_seconds": floor["cpu_seconds"],
        "ratio_empty_check_to_reference": floor["seconds"] / reference["seconds"],
        "reference_seconds": reference["seconds"],
        "reference_load_seconds": reference["load_seconds"],
        "reference_diff_seconds": reference["diff_seconds"],
        "reference_cpu_seconds": reference["cpu_seconds"],
        "ratio_check_to_reference": cold["seconds"] / reference["seconds"],
        "ratio_check_remembered_to_reference": warm["seconds"] / reference["seconds"],
        "check_discrepancies": sum(c["discrepancies"] for c in report["checks"]),
        "check_found": found,
        "check_exit_code": checks["warm"][-1]["exit_code"],
        "reference_found": references[-1]["found"],
        "planted": expected["divergences"] + expected["missing_in_billing"],
        "checks": checks["cold"],
        "checks_remembered": checks["warm"],
        "checks_empty": checks["empty"],
        "references": references,
    }


def outdate_rule_outcomes(warehouse: Path) -> None:
    """Keep the business rules' remembered outcomes under a fingerprint no suite has, so the next
    check runs every suite: as it does once the systems' rows have changed since the last check.
    What the outcomes said stays, as it does then (a command reads it to decide whether to import
    great-expectations ahead: catalog/expectations.py `warm_up_unless_rules_held`)."""
    from sync_assets.warehouse import connect
    from sync_assets.warehouse.tables import OUTCOMES_TABLE

    with connect(warehouse) as con:
        con.execute(f"UPDATE {OUTCOMES_TABLE} SET suite = 'outdated by bench check'")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help=f"customers (default {DEFAULT_ROWS:,})"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=DEFAULT_REPEAT,
        help=f"check + reference pairs; the median runs reported (default {DEFAULT_REPEAT})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the sf_bench tables")


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="syncfabric-bench-check-"))
    try:
        measured = measure(args.rows, args.repeat, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if args.keep:
            print(f"check: kept schema/database {bench_schema()}")
        else:
            with contextlib.suppress(Exception):
                drop_tables()
    result = {
        "benchmark": NAME,
        **measured,
        "aims": {"ratio_check_to_reference_at_most": CHECK_TO_REFERENCE_AIM},
        "versions": machine_info(),
        "notes": [
            "timed: `syncctl check --json` as a subprocess, from its start to its exit (Python "
            "start-up, imports, Dagster, fresh snapshots of all three systems, the diffs against "
            "the golden records and between systems, the checks, the JSON with the findings); "
            "peak RSS and CPU seconds = wait4's ru_maxrss and ru_utime + ru_stime of that process "
            "(and of any child it waited for); the aim is on wall seconds, CPU seconds are shown "
            "because they suffer less when the machine is busy",
            "reference, in the bench process (imports warm): connectorx reads the CRM's and "
            "billing's compared columns whole into Arrow (load), then DuckDB normalizes both "
            "(lower/upper/trim, deleted vs CLOSED) and FULL OUTER JOINs them on the customer key "
            "into a table of the differing customers (diff)",
            "set-up, untimed: `syncctl run` once adopts the landscape into golden records and "
            "corrects the drift, then both tables are generated again with the drift; the "
            "support desk is the demo's empty SQLite file",
            "the reference does less than check by design (issue 11's independent diff of two "
            "tables): no support desk, no golden records, no Dagster, no discrepancy rows kept",
            "figures are, for each side, the run of median wall seconds among --repeat rounds of "
            "check (rules run), check (rules remembered) and reference, run in turn (so its parts "
            "add up); peak RSS is the highest",
            "rules run: the business rules' remembered outcomes (warehouse table rule_outcomes) "
            "are outdated before the check (kept under a fingerprint no suite has), so every suite "
            "runs, as after the systems' rows changed; rules remembered: the check right after, "
            "same rows, reads them back (catalog/expectations.py check_records)",
        ],
    }
    report(result)
    path = write_result(NAME, result)
    print(f"check: wrote {path}")
    return result


def report(result: dict[str, Any]) -> None:
    reference_cpu = result["reference_cpu_seconds"]
    rows = [
        ["syncctl check --json s (rules run)", result["check_seconds"]],
        ["  CPU s (user + system)", result["check_cpu_seconds"]],
        ["  peak RSS MiB", result["check_peak_rss_mb"]],
        ["  discrepancies found", result["check_discrepancies"]],
        ["syncctl check --json s (rules remembered)", result["check_remembered_seconds"]],
        ["  CPU s (user + system)", result["check_remembered_cpu_seconds"]],
        ["floor: syncctl check --json s, empty systems", result["empty_check_seconds"]],
        ["  CPU s (user + system)", result["empty_check_cpu_seconds"]],
        ["reference (DuckDB diff) s", result["reference_seconds"]],
        ["  load (connectorx -> Arrow) s", result["reference_load_seconds"]],
        ["  diff (DuckDB join) s", result["reference_diff_seconds"]],
        ["  CPU s (this process's threads)", result["reference_cpu_seconds"]],
        ["  customers found differing", sum(result["reference_found"].values())],
        ["ratio check / reference (wall, rules run)", result["ratio_check_to_reference"]],
        ["ratio check / reference (CPU, rules run)", result["check_cpu_seconds"] / reference_cpu],
        [
            "ratio check / reference (wall, rules remembered)",
            result["ratio_check_remembered_to_reference"],
        ],
    ]
    print()
    print(
        f"check benchmark: {result['rows']:,} customers (PostgreSQL contacts vs MariaDB accounts), "
        f"{result['planted']:,} planted differences; median of {len(result['checks'])} run(s)"
    )
    print(format_table(["", "value"], rows))
    by_check = ", ".join(f"{name} {counts}" for name, counts in result["check_found"].items())
    print(f"syncctl check found: {by_check or 'nothing'}")
    print(f"the reference found: {result['reference_found']}")
    if result["check_discrepancies"] != sum(result["reference_found"].values()):
        print("WARNING: syncctl check and the reference found different numbers of differences")
    for said, ratio in (
        ("rules run", result["ratio_check_to_reference"]),
        ("rules remembered", result["ratio_check_remembered_to_reference"]),
    ):
        print(
            f"aim check <= {CHECK_TO_REFERENCE_AIM:g} x reference ({said}): {ratio:.1f} x "
            f"({'met' if ratio <= CHECK_TO_REFERENCE_AIM else 'missed'})"
        )
    floor = result["ratio_empty_check_to_reference"]
    print(
        f"floor: a check of empty systems (start-up, Dagster, every step, no rows) takes "
        f"{floor:.1f} x the reference: the aim is out of reach for a check run as a Dagster job "
        f"in a fresh process, however fast its work on rows"
        if floor > CHECK_TO_REFERENCE_AIM
        else f"floor: a check of empty systems takes {floor:.1f} x the reference"
    )
    loads = [c["load_1m"] for c in result["checks"] + result["checks_remembered"]]
    if max(loads) > 1.0:
        print(
            f"note: the machine was busy (1-minute load {min(loads):.1f} to {max(loads):.1f}, "
            f"{result['versions']['cpu_count']} CPUs); figures are pessimistic"
        )
