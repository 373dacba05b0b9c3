"""Observability benchmark: what tracing, measuring and reporting cost, against the work they watch.

A demo landscape (`--customers`, `--orders`) is built and run once through `syncctl run` in a
fresh data folder (not timed). Then, in this process, each --repeat times (best kept):

| figure                      | reference, in the same run                                       |
| --------------------------- | ---------------------------------------------------------------- |
| metrics of every batch (`ingest_metrics`) | the same batches' ingest, validate and apply (first ingest to last apply, from the ledger) |
| `syncctl trace` of the most travelled change (`trace_change`) | one SELECT of its events by correlation id |
| the report (`render`)       | `summarize` of the ledger (what `syncctl summary` computes)      |
| a recorded span (in-memory exporter) | a no-op span (tracing off), per span; against a delivery attempt's mean latency |

    python -m bench observe                       # the demo's size: 10,000 customers, 50,000 orders
    python -m bench observe --customers 100000 --orders 500000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, format_table, machine_info, peak_rss_mb, write_result

NAME = "observe"
SPANS = 20_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (best kept)")


def _best(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def _syncctl(home: Path, *args: str) -> None:
    env = {**os.environ, "SYNCFABRIC_HOME": str(home)}
    env.setdefault("SYNCFABRIC_PROJECT", str(PROJECT_ROOT / "examples" / "demo"))
    command = [str(Path(sys.executable).with_name("syncctl")), *args]
    subprocess.run(command, env=env, cwd=PROJECT_ROOT, check=True, capture_output=True)


def _span_cost(repeat: int) -> tuple[float, float]:
    """Seconds per span: recorded (SDK, in-memory exporter) and not (tracing off)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sync_assets import telemetry

    def spans() -> None:
        for i in range(SPANS):
            telemetry.start_span("bench", {"syncfabric.attempt": i}).end()

    off = _best(spans, repeat) / SPANS
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    with telemetry.use(provider):
        on = _best(spans, repeat) / SPANS
    return on, off


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sync_assets.ledger import summarize
    from sync_assets.operate import metrics
    from sync_assets.operate.report import render
    from sync_assets.operate.trace import trace_change
    from sync_assets.project import current
    from sync_assets.settings import DataFolder
    from sync_assets.warehouse import connect, scalar

    with tempfile.TemporaryDirectory(prefix="bench-observe-") as tmp:
        home = Path(tmp) / "syncfabric"
        _syncctl(home, "demo", "--customers", str(args.customers), "--orders", str(args.orders))
        _syncctl(home, "run")
        os.environ["SYNCFABRIC_HOME"] = str(home)
        project = current()
        with connect(DataFolder(home).warehouse, read_only=True) as con:
            batches = [r[0] for r in con.execute("SELECT batch_id FROM batches").fetchall()]
            pipeline_s = scalar(
                con, "SELECT epoch(max(applied_at)) - epoch(min(ingested_at)) FROM batches"
            )
            busiest = scalar(
                con,
                "SELECT correlation_id FROM corrections GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            )
            events_table = project.entity(next(iter(project.entities))).events_table
            latency_ms = scalar(con, "SELECT avg(latency_ms) FROM delivery_attempts")

            metrics_s = _best(
                lambda: [metrics.ingest_metrics(con, b) for b in batches], args.repeat
            )
            trace_s = _best(lambda: trace_change(con, project, busiest), args.repeat)
            select_s = _best(
                lambda: con.execute(
                    f'SELECT * FROM "{events_table}" WHERE correlation_id = ?', [busiest]
                ).fetchall(),
                args.repeat,
            )
            report_s = _best(lambda: render(con, project), args.repeat)
            summary_s = _best(lambda: summarize(con), args.repeat)
            hops = len(trace_change(con, project, busiest).hops)
    span_on, span_off = _span_cost(args.repeat)
    rows = [
        ["metrics of every batch (s)", metrics_s, pipeline_s],
        [f"trace of {hops} hops (s)", trace_s, select_s],
        ["report (s)", report_s, summary_s],
        ["span, recorded vs off (ms)", span_on * 1000, span_off * 1000],
        ["span vs a delivery attempt (ms)", span_on * 1000, latency_ms],
    ]
    rows = [[name, f"{value:.4g}", f"{reference:.4g}", f"{value / reference:.3g}"]
            for name, value, reference in rows]  # fmt: skip
    print(f"demo: {args.customers:,} customers, {args.orders:,} orders, {len(batches)} batches")
    print(format_table(["figure", "value", "reference", "ratio"], rows))
    print(
        "references: ingest to apply of the same batches (ledger timestamps); one SELECT of the "
        "change's events; the ledger summary; a no-op span; a delivery attempt's mean latency"
    )
    result = {
        "customers": args.customers,
        "orders": args.orders,
        "batches": len(batches),
        "metrics_s": round(metrics_s, 4),
        "ingest_to_apply_s": round(pipeline_s, 3),
        "trace_s": round(trace_s, 4),
        "trace_hops": hops,
        "trace_reference_select_s": round(select_s, 4),
        "report_s": round(report_s, 4),
        "report_reference_summary_s": round(summary_s, 4),
        "span_recorded_us": round(span_on * 1e6, 2),
        "span_off_us": round(span_off * 1e6, 2),
        "delivery_attempt_mean_ms": round(latency_ms, 2),
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine_info(),
    }
    path = write_result(NAME, result)
    print(f"written to {path}")
    return result
