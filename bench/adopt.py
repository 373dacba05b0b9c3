"""Adopt benchmark: systems full of rows, no event history, golden records built from the owners.

Writes the demo's three SQLite systems for N customers and N orders, with no landed event:
the CRM holds every customer (1% deleted), billing an account for 95% of them and every order
(1% voided), support a user for 60%; 0.1% of billing's accounts belong to customers the CRM never
had (orphans). Then, in a fresh process on a fresh warehouse, each step as its asset runs it (its
own connection and transaction):

- snapshot: `snapshot_system` of every mapping;
- today's path, for comparison: the diff against the empty golden records and `missed_events`
  (the events it would land in its first round; it needs three rounds and two reviews to fill the
  golden records, and was quadratic until the owners' rows were read once per system);
- adoption: `land_adoption` (the owners' rows as their events, one batch per owner), then the
  ingest of those batches (`ingest_batch`, `validate_batch`, `apply_pending_batches`), then the
  diff of every system against the adopted golden records (only the orphans must be left);
- in the same process, the floors: DuckDB's `read_json` of the same batch files into a table, and
  one DuckDB join of the owners' snapshots into a golden-like table.

And, unless --skip-syncctl, `syncctl run` end to end on a copy of the same systems (adoption,
reconciliation, delivery, confirmation, all through Dagster), timed from outside.

    python -m bench adopt                      # 10,000 and 100,000 customers
    python -m bench adopt --sizes 10000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    format_table,
    machine_info,
    peak_rss_mb,
    run_worker,
    write_result,
    write_worker_result,
)

NAME = "adopt"
DEFAULT_SIZES = (10_000, 100_000)
DELETED_EVERY = 100  # customers and orders deleted in their lifecycle owner: 1%
ACCOUNT_EVERY = 20  # customers without a billing account: 1 in 20
SUPPORT_EVERY = 5  # customers with a support user: 3 in 5
ORPHAN_EVERY = 1000  # billing accounts of customers the CRM never had: 0.1%
EPOCH = 1_759_276_800  # 2025-10-01 UTC: every time in the past (validation refuses the future)

COUNTRIES = ["GB", "DE", "FR", "US", "NL", "SE", "PL", "ES", "IT", "JP"]
PLANS = ["free", "starter", "pro", "enterprise"]
STATUSES = ["active"] * 8 + ["inactive", "suspended"]
ORDER_STATUSES = ["pending", "paid", "shipped", "cancelled", "refunded"]
CURRENCIES = ["USD", "EUR", "GBP"]


# -- the systems ----------------------------------------------------------------------------------


def write_systems(folder: Path, customers: int) -> dict[str, int]:
    """The demo's SQLite systems for `customers` customers and as many orders; what they hold."""
    from examples.demo.seed.systems import Customer, Order, write_system_databases
    from sync_assets.settings import DataFolder

    people = []
    for i in range(customers):
        deleted = i % DELETED_EVERY == 7
        people.append(
            Customer(
                number=i + 1,
                email=f"person{i}@example.com",
                full_name=f"Person {i}",
                phone=None if i % 4 == 0 else f"+4477009{i % 100000:05d}",
                country=COUNTRIES[i % len(COUNTRIES)],
                status=STATUSES[i % len(STATUSES)],
                marketing_opt_in=None if i % 3 == 0 else bool(i % 2),
                plan=None if i % ACCOUNT_EVERY == 3 else PLANS[i % len(PLANS)],
                support_tier=("priority" if i % 2 else "standard")
                if i % SUPPORT_EVERY < 3
                else None,
                created_at=EPOCH + i,
                last_at=EPOCH + i + 60,
                deleted=deleted,
                acct_no=None if i % ACCOUNT_EVERY == 3 else 100_000 + i,
                support_user_id=i + 1 if i % SUPPORT_EVERY < 3 else None,
            )
        )
    with_account = [c for c in people if c.acct_no is not None]
    orders = [
        Order(
            number=j + 1,
            customer=with_account[j % len(with_account)],
            status=ORDER_STATUSES[j % len(ORDER_STATUSES)],
            cents=1_000 + (j * 37) % 100_000,
            currency=CURRENCIES[j % len(CURRENCIES)],
            placed_at=EPOCH + 60 * j,
            deleted=j % DELETED_EVERY == 11,
        )
        for j in range(customers)
    ]
    data = DataFolder(folder)
    write_system_databases(data, people, orders)
    orphans = customers // ORPHAN_EVERY
    with sqlite3.connect(data.system_database("billing")) as con:
        con.executemany(
            "INSERT INTO accounts VALUES (?, ?, ?, 'PRO', 'ACTIVE', 'GB', '01/10/2025')",
            [
                (900_000_000 + k, f"C-{900_000 + k:06d}", f"ORPHAN{k}@EXAMPLE.COM")
                for k in range(orphans)
            ],
        )
    return {
        "customers": customers,
        "accounts": len(with_account) + orphans,
        "support_users": sum(1 for c in people if c.support_user_id and not c.deleted),
        "orders": len(orders),
        "orphans": orphans,
    }


# -- the worker -----------------------------------------------------------------------------------


def adoption_worker(systems: Path, home: Path) -> dict[str, Any]:
    """Snapshot, today's missed events, adoption and its ingest, the diff, and the floors."""
    import duckdb
    import pandera.polars  # noqa: F401  (validation imports it lazily: keep import time out)

    from sync_assets.connectors.sources import open_source, sqlite_url
    from sync_assets.ingest.landing import LandingZone
    from sync_assets.ingest.raw import ingest_batch
    from sync_assets.ingest.validate import validate_batch
    from sync_assets.project import current
    from sync_assets.reconcile.adopt import land_adoption
    from sync_assets.reconcile.diff import diff_system, diff_systems, summarize
    from sync_assets.reconcile.missed import missed_events
    from sync_assets.reconcile.snapshot import snapshot_system, snapshot_table
    from sync_assets.settings import DataFolder
    from sync_assets.state.apply import apply_pending_batches
    from sync_assets.warehouse import connect, scalar, transaction

    project = current()
    folder = DataFolder(home)
    zone = LandingZone(folder.landing)
    phases: dict[str, float] = {}

    def step(phase: str, work) -> Any:
        started = time.perf_counter()
        with connect(folder.warehouse) as con, transaction(con):
            outcome = work(con)
        phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - started
        return outcome

    def diff_everything(con, run_id: str) -> dict[str, int]:
        for m in project.mappings.values():
            diff_system(con, m, run_id)
        for name in project.entities:
            for left, right in project.comparable_pairs(name):
                diff_systems(con, left, right, run_id)
        found = summarize(con, run_id)
        return {**found.counts, **found.by_resolution}

    step("setup", lambda con: None)  # the schema
    rows = {}
    for m in project.mappings.values():
        engine = open_source(sqlite_url(systems / f"{m.system}.sqlite"))
        rows[m.name] = step("snapshot", lambda con, m=m, e=engine: snapshot_system(con, e, m))
    step("today: diff against empty golden", lambda con: diff_everything(con, "today"))
    today = step(
        "today: missed_events (round 1)",
        lambda con: sum(len(e) for e in missed_events(con, "today").values()),
    )
    adopted = step("adoption: land events", lambda con: land_adoption(con, zone, "adoption"))
    for batch in zone.pending():
        step("adoption: ingest", lambda con, b=batch: ingest_batch(con, b))
        zone.archive(batch)
        step("adoption: validate", lambda con, b=batch: validate_batch(con, b.batch_id, zone=zone))
    step("adoption: apply", apply_pending_batches)
    after = step("adoption: diff", lambda con: diff_everything(con, "after"))
    with connect(folder.warehouse, read_only=True) as con:
        golden = dict(
            con.execute(
                "SELECT 'customer', count(*) FROM golden_customer "
                "UNION ALL SELECT 'order', count(*) FROM golden_order"
            ).fetchall()
        )
        dead_letters = scalar(con, "SELECT count(*) FROM dead_letters")
        conflicts = scalar(con, "SELECT count(*) FROM ownership_conflicts")
    peak = peak_rss_mb()

    # The floors, in this process: DuckDB reading the same events, and joining the same rows.
    files = sorted(str(p) for p in folder.landing.glob("*/archive/*.jsonl"))
    floor = duckdb.connect(str(home / "floor.duckdb"))
    started = time.perf_counter()
    floor.execute(
        "CREATE TABLE events AS SELECT * FROM read_json(?, format = 'newline_delimited')", [files]
    )
    floor.execute("CHECKPOINT")
    read_json_seconds = time.perf_counter() - started
    floor.execute(f"ATTACH '{folder.warehouse}' AS w (READ_ONLY)")
    joined = []
    for name, catalog in project.entities.items():
        key = catalog.key
        sources = [m for m in project.mappings.values() if m.entity == name]
        owner = next(m for m in sources if m.system == catalog.lifecycle_owner)
        select = [f"l.{key}", "l.is_deleted"]
        joins = []
        for n, m in enumerate(sources):
            alias = "l" if m is owner else f"s{n}"
            owned = [a for a in m.attributes if catalog.owner_of(a) == m.system]
            select += [f'{alias}."{a}"' for a in owned]
            if m is not owner and owned:
                joins.append(f"LEFT JOIN w.{snapshot_table(m)} {alias} ON {alias}.{key} = l.{key}")
        joined.append(
            f"CREATE TABLE golden_{name} AS SELECT {', '.join(select)} "
            f"FROM w.{snapshot_table(owner)} l {' '.join(joins)}"
        )
    started = time.perf_counter()
    for statement in joined:
        floor.execute(statement)
    floor.execute("CHECKPOINT")
    join_seconds = time.perf_counter() - started
    floor.close()
    return {
        "phases": phases,
        "snapshot_rows": rows,
        "today_missed_events": today,
        "adoption": adopted.as_dict() | {"landed": adopted.landed},
        "events_read_by_duckdb": len(files)
        and int(
            scalar(
                duckdb.connect(str(home / "floor.duckdb"), read_only=True),
                "SELECT count(*) FROM events",
            )
        ),
        "golden": golden,
        "dead_letters": dead_letters,
        "ownership_conflicts": conflicts,
        "discrepancies_after": after,
        "duckdb_read_json_seconds": read_json_seconds,
        "duckdb_join_seconds": join_seconds,
        "peak_rss_mb": peak,
    }


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.adopt")
    parser.add_argument("--systems", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    write_worker_result(args.out, adoption_worker(args.systems, args.home))


# -- the benchmark --------------------------------------------------------------------------------


def syncctl_run(systems: Path, home: Path) -> dict[str, Any]:
    """`syncctl run --json` on a fresh data folder around a copy of the systems, timed."""
    shutil.copytree(systems, home / "systems")
    syncctl = str(Path(sys.executable).with_name("syncctl"))
    env = {**os.environ, "SYNCFABRIC_HOME": str(home)}
    started = time.perf_counter()
    done = subprocess.run(
        [syncctl, "run", "--json"], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if not done.stdout.startswith("{"):
        raise RuntimeError(f"syncctl run failed ({done.returncode}): {done.stderr[-2000:]}")
    ran = json.loads(done.stdout)
    return {
        "seconds": seconds,
        "exit_code": done.returncode,
        "landed": ran["landed"],
        "adoption": ran["adoption"],
        "corrections": ran["corrections"],
    }


def measure(size: int, root: Path, with_syncctl: bool) -> dict[str, Any]:
    from sync_assets.settings import DataFolder

    source = DataFolder(root / f"source_{size}")
    systems = source.systems
    print(f"adopt: writing the systems for {size:,} customers and {size:,} orders ...", flush=True)
    started = time.perf_counter()
    held = write_systems(source.root, size)
    print(f"adopt:   written in {time.perf_counter() - started:.1f} s: {held}", flush=True)
    load = [os.getloadavg()[0]]
    result = run_worker(
        "bench.adopt", ["--systems", str(systems), "--home", str(root / f"adopt_{size}")]
    )
    load.append(os.getloadavg()[0])
    shutil.rmtree(root / f"adopt_{size}", ignore_errors=True)
    phases = result["phases"]
    adoption = sum(
        v for k, v in phases.items() if k.startswith("adoption:") and k != "adoption: diff"
    )
    floor = result["duckdb_read_json_seconds"] + result["duckdb_join_seconds"]
    result.update(
        size=size,
        held=held,
        load_average_1m=load,
        adoption_seconds=adoption,
        floor_seconds=floor,
        ratio_adoption_to_floor=adoption / floor,
        microseconds_per_event=adoption / result["adoption"]["landed"] * 1e6,
    )
    if with_syncctl:
        print(f"adopt: syncctl run on {size:,} customers ...", flush=True)
        result["syncctl_run"] = syncctl_run(systems, root / f"syncctl_{size}")
        shutil.rmtree(root / f"syncctl_{size}", ignore_errors=True)
    shutil.rmtree(source.root, ignore_errors=True)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        help="customers (and as many orders) per run (default 10,000 and 100,000)",
    )
    parser.add_argument("--skip-syncctl", action="store_true", help="no `syncctl run` end to end")


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="syncfabric-bench-adopt-"))
    try:
        runs = [measure(size, root, not args.skip_syncctl) for size in args.sizes]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": NAME,
        "runs": runs,
        "versions": machine_info(),
        "notes": [
            "adoption = land_adoption + ingest + validate + apply of the batches it landed, each "
            "step in its own connection and transaction; snapshots and the diff apart",
            "floor = DuckDB read_json of the same batch files into a table + one join of the "
            "owners' snapshots into a golden-like table per entity, in the same process",
            "today = the missed-events path on the same empty golden records: its first round "
            "only (the CRM's and billing's created events); it needs three rounds to fill them",
            "syncctl run = the whole command through Dagster on a copy of the systems: adoption, "
            "ingest, reconciliation, delivery and the confirming reconciliation",
        ],
    }
    report(result)
    path = write_result(NAME, result)
    print(f"adopt: wrote {path}")
    return result


def report(result: dict[str, Any]) -> None:
    runs = result["runs"]
    headers = ["", *(f"{r['size']:,}" for r in runs)]

    def row(label: str, key) -> list[Any]:
        return [label, *(key(r) for r in runs)]

    phase_names = [name for name in runs[0]["phases"] if name != "setup"]
    rows = [row(f"{name} s", lambda r, n=name: r["phases"][n]) for name in phase_names]
    rows += [
        row("events landed by adoption", lambda r: r["adoption"]["landed"]),
        row("adoption (land + ingest) s", lambda r: r["adoption_seconds"]),
        row("  per event, microseconds", lambda r: r["microseconds_per_event"]),
        row("floor: duckdb read_json s", lambda r: r["duckdb_read_json_seconds"]),
        row("floor: duckdb join of owners s", lambda r: r["duckdb_join_seconds"]),
        row("ratio adoption / floor", lambda r: r["ratio_adoption_to_floor"]),
        row("today: missed events, round 1", lambda r: r["today_missed_events"]),
        row("golden customers", lambda r: r["golden"]["customer"]),
        row("golden orders", lambda r: r["golden"]["order"]),
        row(
            "discrepancies left (orphans)",
            lambda r: sum(
                r["discrepancies_after"][k] for k in ("missing", "extra", "mismatch", "divergence")
            ),
        ),
        row("dead letters", lambda r: r["dead_letters"]),
        row("peak RSS MiB", lambda r: r["peak_rss_mb"]),
        row("load avg 1m (before)", lambda r: r["load_average_1m"][0]),
    ]
    if all("syncctl_run" in r for r in runs):
        rows += [
            row("syncctl run end to end s", lambda r: r["syncctl_run"]["seconds"]),
            row("  corrections emitted", lambda r: r["syncctl_run"]["corrections"]["emitted"]),
        ]
    print()
    print("adopt benchmark: the demo's systems, no event history, adopted into golden records")
    print(format_table(headers, rows))
    if len(runs) > 1:
        small, large = runs[0], runs[-1]
        growth = large["size"] / small["size"]
        for label, key in (
            ("adoption", "adoption_seconds"),
            ("today's missed events", None),
        ):
            if key is None:
                seconds = [r["phases"]["today: missed_events (round 1)"] for r in (small, large)]
            else:
                seconds = [small[key], large[key]]
            print(
                f"{label}: {growth:.0f} x the rows took {seconds[1] / seconds[0]:.1f} x the time "
                f"({'linear' if seconds[1] / seconds[0] < 1.5 * growth else 'worse than linear'})"
            )
    loads = [value for r in runs for value in r["load_average_1m"]]
    if max(loads) > 1.0:
        print(
            f"note: the machine was busy (1-minute load {min(loads):.1f} to {max(loads):.1f}, "
            f"{result['versions']['cpu_count']} CPUs); figures are pessimistic"
        )


if __name__ == "__main__":
    worker_main(sys.argv[1:])
