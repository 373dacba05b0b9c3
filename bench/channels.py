"""Channels benchmark: what the channel rule and signatures cost validation, against a reference.

Validates one batch of N CRM `customer.updated` events landed in the CRM's channel, on a fresh
warehouse each time, in this one process (same data, same warmed imports), three ways:

- reference: the envelope gate as it ran before channels were bound to systems (its one check
  that `origin` names the system in `source` where the channel rule now is);
- channel rule: as every unsigned system's batches are validated now;
- signed: the CRM signing its events (`signing:`), each line checked in Python (HMAC-SHA256 over
  its RFC 8785 form).

Each way runs --repeat times (3); the fastest counts.

The ratios against the reference say what a batch pays: the channel rule on every system's hot
path, the signature pass only on the batches of systems that sign.

    python -m bench channels                    # 200,000 events
    python -m bench channels --events 50000
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import PROJECT_ROOT, format_table, machine_info, write_result

NAME = "channels"
DEFAULT_EVENTS = 200_000
KEY_ENV = "SYNCFABRIC_BENCH_CRM_SIGNING_KEY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each way; the fastest counts (noise)"
    )


def _check_before_channels(system) -> list[str]:
    """The envelope check the channel rule replaced: `origin` names the system in `source`."""
    from sync_assets.ingest.validate import _error, _text

    return [
        _error(
            "envelope",
            f"starts_with({_text('e.source')}, '/systems/') "
            f"AND {_text('e.source')} <> '/systems/' || coalesce({_text('e.origin')}, '')",
            "'envelope field ''origin'' must name the system in ''source'' (' || "
            f"{_text('e.source')} || '); fix: set origin to that system'",
        )
    ]


def _signing_project(root: Path) -> Path:
    """The demo project, with the CRM signing its events."""
    demo = PROJECT_ROOT / "examples" / "demo"
    project = root / "project"
    shutil.copytree(demo, project, ignore=shutil.ignore_patterns("__pycache__"))
    crm = project / "systems" / "crm.yaml"
    crm.write_text(crm.read_text() + f"signing: {{key_env: {KEY_ENV}}}\n")
    return project


def _lines(events: int, key: str | None) -> list[str]:
    from datetime import UTC, datetime, timedelta

    from sync_assets.catalog.events import make_event, sign_event, to_line

    start = datetime(2025, 11, 1, tzinfo=UTC)
    lines = []
    for n in range(events):
        event = make_event(
            event_type="customer.updated",
            subject=f"C-{n % 10_000:06d}",
            origin="crm",
            data={"email": f"person{n}@example.com", "status": "active"},
            time=start + timedelta(seconds=n),
            schema_version=2,
            event_id=f"crm-{n:08d}",
        )
        lines.append(to_line(event if key is None else sign_event(event, key)))
    return lines


def _best_seconds(root: Path, name: str, lines: list[str], repeat: int) -> tuple[float, int]:
    """The fastest of `repeat` validations of the lines, and how many were valid."""
    runs = [_validate_seconds(root, f"{name}-{n}", lines) for n in range(repeat)]
    return min(seconds for seconds, _ in runs), runs[0][1]


def _validate_seconds(root: Path, name: str, lines: list[str]) -> tuple[float, int]:
    """Land the lines in the CRM's channel on a fresh data folder; time validate_batch alone."""
    from sync_assets.ingest.landing import LandingZone
    from sync_assets.ingest.raw import ingest_batch
    from sync_assets.ingest.validate import validate_batch
    from sync_assets.warehouse import connect, transaction

    folder = root / name
    batch = LandingZone(folder / "landing").write_batch("crm", "events", lines)
    with connect(folder / "wh.duckdb") as con:
        with transaction(con):
            ingest_batch(con, batch)
        started = time.perf_counter()
        with transaction(con):
            counts = validate_batch(con, batch.batch_id)
        seconds = time.perf_counter() - started
    shutil.rmtree(folder)
    return seconds, counts.validated


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pandera.polars  # noqa: F401  (validate imports it lazily: keep import time out)

    from sync_assets.ingest import validate

    events = args.events
    root = Path(tempfile.mkdtemp(prefix="syncfabric-bench-channels-"))
    try:
        with mock.patch.dict(os.environ):  # the variables set here are this run's only
            os.environ["SYNCFABRIC_PROJECT"] = str(PROJECT_ROOT / "examples" / "demo")
            plain = _lines(events, None)
            _validate_seconds(root, "warm-up", plain[:1000])
            channel_errors = validate._channel_errors
            validate._channel_errors = _check_before_channels  # type: ignore[assignment]
            try:
                reference, reference_valid = _best_seconds(root, "reference", plain, args.repeat)
            finally:
                validate._channel_errors = channel_errors  # type: ignore[assignment]
            channel, channel_valid = _best_seconds(root, "channel", plain, args.repeat)

            os.environ["SYNCFABRIC_PROJECT"] = str(_signing_project(root))
            os.environ[KEY_ENV] = "bench-key"
            signed_lines = _lines(events, "bench-key")
            signed, signed_valid = _best_seconds(root, "signed", signed_lines, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not reference_valid == channel_valid == signed_valid == events:
        raise RuntimeError(
            f"every event should be valid: {reference_valid}, {channel_valid}, {signed_valid}"
        )
    figures = [
        ("reference (before channels)", reference),
        ("channel rule (unsigned systems)", channel),
        ("channel rule + signatures", signed),
    ]
    print(
        format_table(
            ["validate_batch", "seconds", "events/s", "x reference"],
            [[name, s, round(events / s), s / reference] for name, s in figures],
        )
    )
    result = {
        "events": events,
        "repeat": args.repeat,
        "seconds": {name: s for name, s in figures},
        "ratio_to_reference": {name: s / reference for name, s in figures},
        "machine": machine_info(),
    }
    print(f"written to {write_result(NAME, result)}")
    return result
