"""Business rules benchmark: the catalog's rules as great-expectations suites over N golden records,
against DuckDB counting the same rule breaks in SQL.

For each N, a fresh warehouse (the demo's project) holds N golden customers and N golden orders,
with one seeded break of each demo rule that can break on them (a shared e-mail, an unknown
status, a bad country code, an order of an unknown customer, an amount past the plausible range).
Then, in this process, each --repeat times (best kept):

- `check_records` of each entity: what the asset checks run (the rows read into pandas, the
  suite built and validated, samples masked);
- the reference: one SQL statement per entity counting each rule's breaks in DuckDB.

Both must find the same counts. great-expectations' import is timed once, apart: a process pays it
once, before its first suite.

    python -m bench rules                       # 100,000 and 1,000,000 records
    python -m bench rules --sizes 10000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import format_table, machine_info, peak_rss_mb, write_result

NAME = "rules"
DEFAULT_SIZES = (100_000, 1_000_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        help=f"golden records per entity ({', '.join(f'{n:,}' for n in DEFAULT_SIZES)})",
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs of each (best kept)")


def _fill(con: Any, n: int) -> None:
    """N customers and N orders, all live, each demo rule broken exactly once where it can be."""
    con.execute(
        """INSERT INTO golden_customer BY NAME
        SELECT printf('C-%06d', i) AS customer_id,
               CASE WHEN i = 1 THEN 'c0@example.com' ELSE 'c' || i || '@example.com' END AS email,
               'Customer ' || i AS full_name, '+4420718' || lpad(i::VARCHAR, 5, '0') AS phone,
               CASE WHEN i = 2 THEN 'gb' ELSE 'GB' END AS country,
               CASE WHEN i = 3 THEN 'gone' ELSE 'active' END AS status,
               'live' AS lifecycle_state, 'bench' AS last_version, 'bench' AS last_event_id,
               'bench' AS last_correlation_id
        FROM range($n) t(i)""",
        {"n": n},
    )
    con.execute(
        """INSERT INTO golden_order BY NAME
        SELECT printf('O-%07d', i) AS order_id,
               CASE WHEN i = 4 THEN 'C-999999' ELSE printf('C-%06d', i % $n) END AS customer_id,
               'paid' AS status, CASE WHEN i = 5 THEN 20000 ELSE (i % 900) + 0.5 END AS amount,
               'EUR' AS currency, TIMESTAMPTZ '2026-01-01 00:00:00+00' AS placed_at,
               'live' AS lifecycle_state, 'bench' AS last_version, 'bench' AS last_event_id,
               'bench' AS last_correlation_id
        FROM range($n) t(i)""",
        {"n": n},
    )


REFERENCE = {
    "customer": """
        SELECT
          (SELECT count(*) FROM golden_customer WHERE lifecycle_state = 'live' AND email IN (
             SELECT email FROM golden_customer WHERE lifecycle_state = 'live'
             GROUP BY email HAVING count(*) > 1)) AS email_unique,
          count(*) FILTER (WHERE status NOT IN ('active', 'inactive', 'suspended')) AS status_known,
          count(*) FILTER (WHERE NOT regexp_matches(country, '^[A-Z]{2}$')) AS country_code,
          count(*) FILTER (WHERE NOT regexp_matches(phone, '^\\+[1-9][0-9]{6,14}$')) AS phone_e164
        FROM golden_customer WHERE lifecycle_state = 'live'""",
    "order": """
        SELECT
          count(*) FILTER (WHERE customer_id NOT IN (SELECT customer_id FROM golden_customer))
            AS customer_exists,
          count(*) FILTER (WHERE amount < 0 OR amount > 10000) AS amount_plausible,
          count(*) FILTER (WHERE status NOT IN ('pending', 'paid', 'shipped', 'cancelled',
                                                'refunded')) AS status_known
        FROM golden_order WHERE lifecycle_state = 'live'""",
}


def _best(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    best, outcome = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        outcome = work()
        best = min(best, time.perf_counter() - started)
    return best, outcome


def measure(n: int, repeat: int, root: Path) -> dict[str, Any]:
    from sync_assets.catalog.expectations import LIVE_GOLDEN, check_records
    from sync_assets.project import current
    from sync_assets.warehouse import connect, transaction

    project = current()
    found: dict[str, Any] = {"records": n}
    with connect(root / str(n) / "warehouse.duckdb") as con:
        with transaction(con):
            _fill(con, n)
        for name, sql in REFERENCE.items():
            entity = project.entity(name)

            def counted(sql: str = sql) -> Any:
                return con.execute(sql).df().iloc[0]

            def suite_run(entity: Any = entity) -> list[Any]:
                return check_records(
                    con,
                    entity,
                    entity.golden_table,
                    entity.rules,
                    live=LIVE_GOLDEN,
                    entities=project.entities,
                    remember=False,  # each repeat runs the suite: it is what is timed
                )

            reference, counts = _best(repeat, counted)
            suite, results = _best(repeat, suite_run)
            by_rule = {r.rule.name: r.unexpected for r in results}
            expected = {rule: int(count) for rule, count in counts.items()}
            if by_rule != expected:
                raise AssertionError(f"{name}: the suite found {by_rule}, SQL {expected}")
            found[name] = {
                "suite_s": round(suite, 3),
                "reference_sql_s": round(reference, 3),
                "ratio": round(suite / reference, 1),
                "broken": by_rule,
            }
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    started = time.perf_counter()
    import great_expectations  # noqa: F401  (timed apart: a process pays it once)

    import_s = time.perf_counter() - started
    rows = []
    sizes = []
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        for n in args.sizes:
            measured = measure(n, args.repeat, Path(tmp))
            sizes.append(measured)
            for entity in REFERENCE:
                m = measured[entity]
                rows.append([f"{n:,}", entity, m["suite_s"], m["reference_sql_s"], m["ratio"]])
    print(f"great-expectations import: {import_s:.2f} s (once per process)")
    print(
        format_table(
            ["records", "entity", "suite (s)", "DuckDB SQL (s)", "ratio"],
            rows,
        )
    )
    result = {
        "great_expectations_import_s": round(import_s, 2),
        "sizes": sizes,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine_info(),
    }
    path = write_result(NAME, result)
    print(f"written to {path}")
    return result
