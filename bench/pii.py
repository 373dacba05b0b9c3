"""PII sealing benchmark: ingest, validation and apply of N events with PII sealed, against the same without.

Generates the ingest benchmark's events (bench/ingest.py: customers with e-mails, names and
phones, 1% duplicates, 1% invalid lines), lands them as --batches files, and runs ingest,
validate and apply (each step in its own connection and transaction, as the assets do) on a fresh
warehouse, in this process, alternately:

- `sealed`: as shipped: raw lines and dead-letter payloads sealed whole, the event log's PII
  columns sealed field by field, opened again by validation and apply (AES-256-GCM through
  vectorized Python functions in DuckDB, sync_assets/security/sql.py);
- `clear`: the reference: the same SQL with `pii_seal`/`pii_open` as SQL macros returning the
  value, which is the pipeline before sealing.

The ratio is sealed / clear (best of --repeat runs each); also the cost of one seal and one open
in Python, per value.

    python -m bench pii                        # 200,000 events in 4 batches, 2 runs each
    python -m bench pii --events 50000 --repeat 1
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import format_table, machine_info, peak_rss_mb, write_result
from bench.ingest import generate_events, land

NAME = "pii"
DEFAULT_EVENTS = 200_000
DEFAULT_BATCHES = 4
MICRO_VALUES = 50_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES)
    parser.add_argument("--repeat", type=int, default=2, help="Runs of each mode (best kept).")


@contextmanager
def _keys() -> Iterator[None]:
    """Keys of this run only, from the variables (no key file written)."""
    from sync_assets.security.keys import FINGERPRINT_ENV, KEYS_ENV

    def key() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    with mock.patch.dict(os.environ, {KEYS_ENV: f"bench:{key()}", FINGERPRINT_ENV: key()}):
        yield


@contextmanager
def _clear() -> Iterator[None]:
    """The reference: the PII functions as macros that return the value (no sealing at all)."""
    from sync_assets.security import sql as pii

    shipped = pii.install

    def install(con, folder=None):
        found = pii._INSTALLED.get(id(con))
        if found is not None and found[0] is con:
            return found[1]
        con.execute("CREATE OR REPLACE TEMP MACRO pii_seal(f, v) AS v")
        con.execute("CREATE OR REPLACE TEMP MACRO pii_open(f, v) AS v")
        con.execute("CREATE OR REPLACE TEMP MACRO pii_mask(v) AS v")
        # No folder: `install` then looks for the functions (the macros) and registers the keys
        # only; given the folder, as `connect` gives it, it would create them over the macros.
        return shipped(con)

    pii.install = install
    try:
        yield
    finally:
        pii.install = shipped


def _pipeline(landing: Path, warehouse: Path) -> dict[str, float]:
    from sync_assets.ingest.landing import LandingZone
    from sync_assets.ingest.raw import ingest_batch
    from sync_assets.ingest.validate import validate_batch
    from sync_assets.state.apply import apply_pending_batches
    from sync_assets.warehouse import connect, scalar, transaction

    zone = LandingZone(landing)
    phases = {"ingest": 0.0, "validate": 0.0, "apply": 0.0}

    def step(phase: str, work) -> Any:
        started = time.perf_counter()
        with connect(warehouse) as con, transaction(con):
            outcome = work(con)
        phases[phase] += time.perf_counter() - started
        return outcome

    with connect(warehouse):
        pass  # the schema, outside the timings
    for batch in zone.pending():
        step("ingest", lambda con, b=batch: ingest_batch(con, b))
        zone.archive(batch)
        step("validate", lambda con, b=batch: validate_batch(con, b.batch_id, zone=zone))
    step("apply", apply_pending_batches)
    with connect(warehouse, read_only=True) as con:
        applied = scalar(con, "SELECT sum(applied) FROM batches")
        sealed = scalar(
            con,
            "SELECT count(*) FILTER (WHERE starts_with(line, 'enc:')) / count(*) FROM raw_events",
        )
    phases["total"] = sum(phases.values())
    phases["applied"] = float(applied)
    phases["sealed_share"] = float(sealed)  # 1 when sealed, 0 for the reference: what was measured
    return phases


def _micro() -> dict[str, float]:
    from sync_assets.security.crypto import Sealer
    from sync_assets.security.keys import keyring

    sealer = Sealer(keyring(None))
    values = [f"someone.{i}@example.com" for i in range(MICRO_VALUES)]
    started = time.perf_counter()
    tokens = [sealer.seal("customer.email", v) for v in values]
    sealed = time.perf_counter() - started
    started = time.perf_counter()
    opened = [sealer.open("customer.email", t) for t in tokens]
    opened_s = time.perf_counter() - started
    assert opened == values
    return {
        "seal_us_per_value": sealed / MICRO_VALUES * 1e6,
        "open_us_per_value": opened_s / MICRO_VALUES * 1e6,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pandera.polars  # noqa: F401  (validate imports it lazily: keep import time out)

    lines = generate_events(args.events)["lines"]
    runs: dict[str, list[dict[str, float]]] = {"clear": [], "sealed": []}
    with _keys(), tempfile.TemporaryDirectory(prefix="syncfabric-bench-pii-") as root:
        for n in range(args.repeat):
            for mode in ("clear", "sealed"):  # alternated: drift of the machine hits both
                folder = Path(root) / f"{mode}-{n}"
                land(lines, folder / "landing", args.batches)
                if mode == "clear":
                    with _clear():
                        runs[mode].append(
                            _pipeline(folder / "landing", folder / "warehouse.duckdb")
                        )
                else:
                    runs[mode].append(_pipeline(folder / "landing", folder / "warehouse.duckdb"))
                shutil.rmtree(folder)
        micro = _micro()
    best = {mode: min(found, key=lambda r: r["total"]) for mode, found in runs.items()}
    assert best["clear"]["applied"] == best["sealed"]["applied"], "both modes apply the same"
    assert (best["clear"]["sealed_share"], best["sealed"]["sealed_share"]) == (0.0, 1.0)
    result = {
        "benchmark": NAME,
        "events": args.events,
        "batches": args.batches,
        "repeat": args.repeat,
        "best": best,
        "runs": runs,
        "ratio": best["sealed"]["total"] / best["clear"]["total"],
        "ratio_by_phase": {
            phase: best["sealed"][phase] / best["clear"][phase]
            for phase in ("ingest", "validate", "apply")
        },
        "events_per_second": {mode: args.events / r["total"] for mode, r in best.items()},
        **micro,
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine_info(),
    }
    report(result)
    print(f"wrote {write_result(NAME, result)}")
    return result


def report(result: dict[str, Any]) -> None:
    best = result["best"]
    rows = [
        [
            phase,
            best["clear"][phase],
            best["sealed"][phase],
            best["sealed"][phase] / best["clear"][phase],
        ]
        for phase in ("ingest", "validate", "apply", "total")
    ]
    print(f"{result['events']:,} events in {result['batches']} batches, best of {result['repeat']}")
    print(format_table(["phase", "clear s", "sealed s", "ratio"], rows))
    print(
        f"events/s: clear {result['events_per_second']['clear']:,.0f}, "
        f"sealed {result['events_per_second']['sealed']:,.0f}; ratio {result['ratio']:.2f}"
    )
    print(
        f"per value in Python: seal {result['seal_us_per_value']:.1f} µs, "
        f"open {result['open_us_per_value']:.1f} µs"
    )
