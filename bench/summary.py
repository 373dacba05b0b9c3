"""Issue 11's table: each figure beside its reference from the same run, the ratio and the aim.

`python -m bench` prints it after running every benchmark; `python -m bench summary` prints it
again from the results the last runs wrote to bench/results/. A row whose benchmark has not run
says so.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import RESULTS_DIR, format_table

NAME = "summary"

Results = dict[str, dict[str, Any]]
"""Each benchmark's result, by its name, as it wrote it to bench/results/<name>.json."""


@dataclass(frozen=True)
class Figure:
    now: str
    reference: str
    ratio: float | None
    met: bool | None


@dataclass(frozen=True)
class Row:
    work: str
    benchmark: str
    aim: str
    figure: Callable[[dict[str, Any]], Figure | None]
    """The row's figures from its benchmark's result; None when that run did not measure them."""


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f} s"


def _peak(mb: float) -> str:
    return f"{mb / 1024:,.2f} GB" if mb >= 1024 else f"{mb:,.0f} MB"


def _ingest(r: dict[str, Any]) -> Figure:
    return Figure(
        now=f"{_seconds(r['pipeline_seconds'])}, peak {_peak(r['peak_rss_mb'])}",
        reference=f"read_json {_seconds(r['duckdb_read_json_seconds'])}",
        ratio=r["ratio"],
        met=r["ratio"] <= r["ratio_target"],
    )


def _reconcile_run(r: dict[str, Any], rows: int) -> dict[str, Any] | None:
    return next((run for run in r["runs"] if run["rows"] == rows), None)


def _diff(r: dict[str, Any]) -> Figure | None:
    run = _reconcile_run(r, r["rows"])
    if run is None:
        return None
    return Figure(
        now=_seconds(run["phases"]["diff"]),
        reference=f"DuckDB join as a step {_seconds(run['duckdb_join_seconds'])}",
        ratio=run["ratio_diff_to_join"],
        met=run["ratio_diff_to_join"] <= r["aims"]["ratio_diff_to_join_at_most"],
    )


def _reconcile_1m(r: dict[str, Any]) -> Figure | None:
    run = _reconcile_run(r, 1_000_000)
    if run is None:
        return None
    ratio = run["ratio_end_to_end_to_reladiff"]
    return Figure(
        now=_seconds(run["end_to_end_seconds"]),
        reference=f"reladiff {_seconds(run['reladiff_seconds'])}",
        ratio=ratio,
        met=None if ratio is None else ratio <= r["aims"]["ratio_end_to_end_to_reladiff_at_most"],
    )


def _reconcile_read(r: dict[str, Any]) -> Figure | None:
    run = _reconcile_run(r, 1_000_000)
    if run is None or run.get("read_only_seconds") is None:
        return None
    return Figure(
        now=_seconds(run["read_only_seconds"]),
        reference=f"reladiff {_seconds(run['reladiff_seconds'])}",
        ratio=run["ratio_read_only_to_reladiff"],
        met=None,
    )


def _reconcile_10m(r: dict[str, Any]) -> Figure | None:
    run = _reconcile_run(r, 10_000_000)
    if run is None:
        return None
    aims = r["aims"]
    return Figure(
        now=f"{_seconds(run['end_to_end_seconds'])}, peak {_peak(run['peak_rss_mb'])}",
        reference="-",
        ratio=None,
        met=run["end_to_end_seconds"] < aims["seconds_10m_below"]
        and run["peak_rss_mb"] < aims["peak_rss_mb_10m_below"],
    )


def _ingest_raw(r: dict[str, Any]) -> Figure:
    seconds, reference = r["phases"]["ingest"], r["duckdb_read_json_seconds"]
    return Figure(
        now=_seconds(seconds),
        reference=f"read_json {_seconds(reference)}",
        ratio=seconds / reference,
        met=None,
    )


def _run_fixed(r: dict[str, Any]) -> Figure | None:
    fixed = r.get("growth", {}).get("fixed_seconds")
    if fixed is None:
        return None
    return Figure(
        now=f"{_seconds(fixed)} + {_seconds(r['growth']['seconds_per_1x'])} per 1x",
        reference=f"import definitions {_seconds(r['reference']['seconds'])}",
        ratio=fixed / r["reference"]["seconds"],
        met=None,
    )


def _run(r: dict[str, Any]) -> Figure | None:
    if r["seconds_1x"] is None:
        return None
    one = r["runs"][0]
    return Figure(
        now=f"{_seconds(one['seconds'])} wall, {_seconds(one['cpu_seconds'])} CPU",
        reference=f"import definitions {_seconds(r['reference']['seconds'])}",
        ratio=r["ratio_1x_to_import"],
        met=r["seconds_1x"] < r["aims"]["seconds_1x_below"],
    )


def _check(r: dict[str, Any]) -> Figure:
    return Figure(
        now=f"{_seconds(r['check_seconds'])} at {r['rows']:,} customers",
        reference=f"independent DuckDB diff {_seconds(r['reference_seconds'])}",
        ratio=r["ratio_check_to_reference"],
        met=r["ratio_check_to_reference"] <= r["aims"]["ratio_check_to_reference_at_most"],
    )


def _check_floor(r: dict[str, Any]) -> Figure | None:
    if "empty_check_seconds" not in r:
        return None  # a result written before the floor was measured
    return Figure(
        now=_seconds(r["empty_check_seconds"]),
        reference=f"independent DuckDB diff {_seconds(r['reference_seconds'])}",
        ratio=r["ratio_empty_check_to_reference"],
        met=None,
    )


def _check_remembered(r: dict[str, Any]) -> Figure | None:
    if "check_remembered_seconds" not in r:
        return None  # a result written before the rules' outcomes were remembered
    ratio = r["ratio_check_remembered_to_reference"]
    return Figure(
        now=f"{_seconds(r['check_remembered_seconds'])} at {r['rows']:,} customers",
        reference=f"independent DuckDB diff {_seconds(r['reference_seconds'])}",
        ratio=ratio,
        met=ratio <= r["aims"]["ratio_check_to_reference_at_most"],
    )


def _missed(r: dict[str, Any]) -> Figure | None:
    largest = r["runs"][-1]
    if largest["records"] < 100_000:
        return None
    seconds = largest["missed_events_seconds"]
    return Figure(
        now=f"{_seconds(seconds)} for {largest['records']:,}; per record x{r['growth_per_record']:.2f}"
        f" from {r['runs'][0]['records']:,}",
        reference=f"one SELECT {_seconds(largest['reference_seconds'])}",
        ratio=largest["ratio_missed_to_reference"],
        met=seconds < r["aims"]["missed_events_100k_seconds_below"],
    )


ROWS = [
    Row("ingest 1M events (validate + apply)", "ingest", "<= 2.5x read_json", _ingest),
    Row("  floor: its raw phase alone (read, seal, store)", "ingest", "", _ingest_raw),
    Row("diff step, 1M rows PostgreSQL vs MariaDB", "reconcile", "<= 1.5x join", _diff),
    Row("reconcile 1M end to end", "reconcile", "<= 0.1x reladiff", _reconcile_1m),
    Row("  floor: both systems read, nothing else", "reconcile", "", _reconcile_read),
    Row("reconcile 10M end to end", "reconcile", "< 60 s, < 3 GB", _reconcile_10m),
    Row("syncctl run on the demo (1x)", "run", "< 10 s", _run),
    Row("  floor: its fixed cost (fitted over 1x, 4x, 10x)", "run", "", _run_fixed),
    Row("syncctl check --json, PostgreSQL vs MariaDB", "check", "<= 2x", _check),
    Row("  the same, systems unchanged (rules remembered)", "check", "<= 2x", _check_remembered),
    Row("  floor: the same command, empty systems", "check", "", _check_floor),
    Row("missed events for 100k records", "missed", "linear, < 5 s", _missed),
]


def table(results: Results) -> str:
    rows = []
    for row in ROWS:
        result = results.get(row.benchmark)
        figure = None if result is None else row.figure(result)
        if figure is None:
            rows.append(
                [row.work, f"not measured (python -m bench {row.benchmark})", "", "", row.aim, ""]
            )
            continue
        verdict = "" if figure.met is None else ("met" if figure.met else "missed")
        ratio = "-" if figure.ratio is None else f"{figure.ratio:.2f}x"
        rows.append([row.work, figure.now, figure.reference, ratio, row.aim, verdict])
    return format_table(["work", "now", "reference (same run)", "ratio", "aim", ""], rows)


def stored_results() -> Results:
    """What the benchmarks last wrote to bench/results/."""
    names = {row.benchmark for row in ROWS}
    return {
        name: json.loads((RESULTS_DIR / f"{name}.json").read_text())
        for name in names
        if (RESULTS_DIR / f"{name}.json").exists()
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # nothing to choose: it reads bench/results/


def run(args: argparse.Namespace) -> dict[str, Any]:
    del args
    print(table(stored_results()))
    return {}
