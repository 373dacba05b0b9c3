"""Missed events benchmark: the events owners missed sending, for N records, against reading the same rows.

For each N, a fresh warehouse (the demo's project) holds the CRM's customer snapshot and golden
records for 2N customers, where N of them differ in a way the CRM owns, in thirds: an e-mail
changed (a `customer.reconciled` event), a customer the golden records never heard of (a
`customer.created` event with every attribute), a customer the CRM deleted (a
`customer.deleted` event). `diff_system` finds them (not timed); then, in this process, each
--repeat times:

- `missed_events`: the events, by owner (reconcile/missed.py);
- `land_missed_events`: the same, written as the owner's batch in a landing zone, as the
  `missed_events` asset does;
- the reference: one SELECT reading the same run's missed-event discrepancy rows.

The ratios are against the reference of the same N; the time per record must not grow with N
(it was quadratic once: 500 records 8.6 s, 4,000 records 183 s).

    python -m bench missed                          # 500, 4,000 and 100,000 records
    python -m bench missed --sizes 500 4000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import format_table, machine_info, peak_rss_mb, write_result

NAME = "missed"
DEFAULT_SIZES = (500, 4_000, 100_000)
AIM_100K_SECONDS = 5.0
RUN_ID = "bench-missed"
CHANGES = ("reconciled", "created", "deleted")
"""What the CRM missed sending for record i, by i % 3."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        help=f"records with a missed event ({', '.join(f'{n:,}' for n in DEFAULT_SIZES)})",
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs of each (best kept)")


def _fill(con: Any, records: int) -> None:
    """2N customers in the CRM's snapshot and the golden records; N differ as CHANGES says."""
    from sync_assets.project import current
    from sync_assets.reconcile.snapshot import snapshot_table
    from sync_assets.warehouse import quote

    crm = current().mapping("crm", "customer")
    catalog = current().entity("customer")
    key = quote(catalog.key)

    def value(name: str) -> str:
        attribute = catalog.attribute(name)
        return {
            "boolean": "i % 2 = 0",
            "decimal": "i / 100",
            "timestamp": "TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i)",
        }.get(attribute.type, f"'{name}-' || i")

    change = "CASE WHEN i < $n THEN i % 3 END"  # 0 reconciled, 1 created, 2 deleted; NULL same
    golden = ", ".join(f"{value(n)} AS {quote(n)}" for n in crm.attributes)
    held = golden.replace(
        f"{value('email')} AS {quote('email')}",
        f"CASE WHEN {change} = 0 THEN 'moved-' || i ELSE {value('email')} END AS {quote('email')}",
    )
    con.execute(
        f"""CREATE OR REPLACE TABLE {quote(snapshot_table(crm))} AS
        SELECT printf('C-%09d', i) AS {key}, printf('C-%09d', i) AS system_key, {held},
               coalesce({change} = 2, false) AS is_deleted
        FROM range(2 * $n) t(i)""",
        {"n": records},
    )
    con.execute(
        f"""INSERT INTO {quote(catalog.golden_table)} BY NAME
        SELECT printf('C-%09d', i) AS {key}, {golden}, 'live' AS lifecycle_state,
               'bench' AS last_version, 'bench' AS last_event_id, 'bench' AS last_correlation_id
        FROM range(2 * $n) t(i) WHERE {change} IS DISTINCT FROM 1""",
        {"n": records},
    )


def _best(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    best, outcome = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        outcome = work()
        best = min(best, time.perf_counter() - started)
    return best, outcome


def measure(records: int, repeat: int, root: Path) -> dict[str, Any]:
    from sync_assets.ingest.landing import LandingZone
    from sync_assets.project import current
    from sync_assets.reconcile.diff import diff_system
    from sync_assets.reconcile.missed import land_missed_events, missed_events
    from sync_assets.warehouse import connect, transaction

    folder = root / str(records)
    with connect(folder / "warehouse.duckdb") as con:
        with transaction(con):
            _fill(con, records)
            diff_system(con, current().mapping("crm", "customer"), RUN_ID)
        select = "SELECT * FROM discrepancies WHERE run_id = ? AND resolution = 'missed_event'"
        reference, rows = _best(repeat, lambda: con.execute(select, [RUN_ID]).fetchall())
        missed, events = _best(repeat, lambda: missed_events(con, RUN_ID))
        zones = iter(range(repeat))
        landed_seconds, landed = _best(
            repeat,
            lambda: land_missed_events(con, LandingZone(folder / f"landing-{next(zones)}"), RUN_ID),
        )
    by_type: dict[str, int] = {}
    for event in events.get("crm", []):
        by_type[event["type"]] = by_type.get(event["type"], 0) + 1
    return {
        "records": records,
        "discrepancy_rows": len(rows),
        "events": sum(len(found) for found in events.values()),
        "events_by_type": by_type,
        "landed": landed,
        "reference_seconds": reference,
        "missed_events_seconds": missed,
        "land_missed_events_seconds": landed_seconds,
        "ratio_missed_to_reference": missed / reference,
        "ratio_land_to_reference": landed_seconds / reference,
        "missed_events_us_per_record": missed / records * 1e6,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="syncfabric-bench-missed-") as root:
        for records in args.sizes:
            print(f"missed: {records:,} records ...", flush=True)
            runs.append(measure(records, args.repeat, Path(root)))
    for found in runs:
        expected = {f"customer.{c}": sum(1 for i in range(found["records"]) if i % 3 == n)
                    for n, c in enumerate(CHANGES)}  # fmt: skip
        assert found["events_by_type"] == expected, (found["events_by_type"], expected)
    smallest, largest = runs[0], runs[-1]
    result = {
        "benchmark": NAME,
        "repeat": args.repeat,
        "runs": runs,
        "growth_per_record": largest["missed_events_us_per_record"]
        / smallest["missed_events_us_per_record"],
        "aims": {"missed_events_100k_seconds_below": AIM_100K_SECONDS, "linear": True},
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine_info(),
    }
    report(result)
    print(f"wrote {write_result(NAME, result)}")
    return result


def report(result: dict[str, Any]) -> None:
    rows = [
        [
            r["records"],
            r["events"],
            r["reference_seconds"],
            r["missed_events_seconds"],
            r["land_missed_events_seconds"],
            r["ratio_missed_to_reference"],
            r["ratio_land_to_reference"],
            r["missed_events_us_per_record"],
        ]
        for r in result["runs"]
    ]
    print(f"missed events, best of {result['repeat']} (reference: one SELECT of the same rows)")
    headers = ["records", "events", "SELECT s", "missed s", "land s", "missed/ref", "land/ref"]
    print(format_table([*headers, "µs/record"], rows))
    largest = result["runs"][-1]
    print(
        f"time per record, {largest['records']:,} vs {result['runs'][0]['records']:,} records: "
        f"{result['growth_per_record']:.2f}x (linear: about 1)"
    )
    if largest["records"] >= 100_000:
        seconds = largest["missed_events_seconds"]
        verdict = "met" if seconds < AIM_100K_SECONDS else "missed"
        print(
            f"aim {largest['records']:,} records < {AIM_100K_SECONDS:g} s: {seconds:.2f} s ({verdict})"
        )
