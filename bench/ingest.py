"""Ingest benchmark: landed JSON lines -> raw events -> validated events -> golden records.

Generates N customer events (one customer per ten events, created then partially updated, mostly
by the CRM, plan changes from billing and support-tier changes from support, schema versions 1 and
2 mixed, 1% exact duplicates and 1% deliberately invalid events of 13 kinds), lands them as one
part and/or as --batches parts (each part a file per system's channel, landing/<system>/), and
times, each in a fresh process on a fresh warehouse:

- the pipeline, each step in its own connection as the Dagster assets run it: `ingest_batch`,
  `validate_batch`, `apply_pending_batches` (--order phases, the default: a backfill, all batches
  through each phase in turn in one connection and transaction, as the asset's step runs them;
  --order job: per batch ingest, validate, apply, as the ingest_batch job does for each batch the
  sensor lands);
- DuckDB's own `read_json` of the same file(s) into a table on a fresh file: the floor. Plain
  `read_json` fails on the invalid lines, so it is timed with `ignore_errors = true`; a second
  floor declares the envelope's typed columns (`records = true, columns = {...}`).

    python -m bench ingest                       # 1,000,000 events in 10 batches
    python -m bench ingest --events 200000       # both forms: one file and 10 batches
    python -m bench ingest --order job           # one apply per batch, as in production
    python -m bench ingest --profile             # statement timings + cProfile of validate_batch
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    format_table,
    machine_info,
    peak_rss_mb,
    run_worker,
    write_result,
    write_worker_result,
)

NAME = "ingest"
DEFAULT_EVENTS = 1_000_000
DEFAULT_BATCHES = 10
PROFILE_EVENTS = 200_000
RATIO_TARGET = 2.5
"""Issue 11: the pipeline within 2.5x DuckDB's own read_json of the same files."""
LANDING_SYSTEM = "crm"  # the folder of the lines that name no system (malformed ones)
DUPLICATE_RATE = 0.01
INVALID_RATE = 0.01
EPOCH = np.datetime64("2025-11-01T00:00:00", "us")  # in the past: no event beyond the clock skew
SPAN_SECONDS = 30 * 24 * 3600

# -- the events -----------------------------------------------------------------------------------

FIRST_NAMES = [
    ("Ada", "ada"), ("Alan", "alan"), ("Grace", "grace"), ("Zoë", "zoe"), ("José", "jose"),
    ("Małgorzata", "malgorzata"), ("Linus", "linus"), ("Ingrid", "ingrid"), ("Søren", "soren"),
    ("Amélie", "amelie"), ("Chidi", "chidi"), ("Yuki", "yuki"), ("Priya", "priya"),
    ("Mateo", "mateo"), ("Fatima", "fatima"), ("Olu", "olu"),
]  # fmt: skip
LAST_NAMES = [
    ("Lovelace", "lovelace"), ("Turing", "turing"), ("Hopper", "hopper"), ("Müller", "muller"),
    ("García", "garcia"), ("Nowak", "nowak"), ("Kierkegaard", "kierkegaard"), ("Okafor", "okafor"),
    ("Tanaka", "tanaka"), ("Sharma", "sharma"), ("O'Brien", "obrien"), ("Dubois", "dubois"),
]  # fmt: skip
DOMAINS = ["example.com", "example.org", "mail.example.net", "example.co.uk"]
COUNTRIES = ["GB", "DE", "FR", "US", "NL", "SE", "PL", "ES", "IT", "JP", "NG", "BR", "IN", "DK"]
CRM_UPDATE_FIELDS = ["email", "name", "phone", "country", "status", "marketing_opt_in"]
CRM_UPDATE_WEIGHTS = [0.2, 0.1, 0.2, 0.1, 0.25, 0.15]
INVALID_KINDS = [
    "malformed_json",
    "not_an_object",
    "bad_status",
    "bad_email",
    "bad_country",
    "unknown_field",
    "unknown_schema_version",
    "schemaversion_as_string",
    "bad_subject",
    "empty_update",
    "missing_required",
    "null_required",
    "origin_mismatch",
]


def _allowed(attribute: str) -> tuple[str, ...]:
    """The demo catalog's allowed values (the events are the demo's customers)."""
    from sync_assets.project import current

    return current().entity("customer").attribute(attribute).allowed


class _Maker:
    """Builds event lines; byte for byte what `to_line(make_event(...))` writes."""

    def __init__(self, rng: np.random.Generator, customers: int):
        self.rng = rng
        self.statuses = _allowed("status")
        self.plans = _allowed("plan")
        self.tiers = _allowed("support_tier")
        self.customers = customers

    def ids(self, count: int) -> list[str]:
        raw = self.rng.bytes(16 * count).hex()
        out = []
        for i in range(0, 32 * count, 32):
            h = raw[i : i + 32]
            out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}")
        return out

    def person(self, customer: int, salt: int) -> tuple[str, str, str, str]:
        first, first_ascii = FIRST_NAMES[(customer * 7 + salt) % len(FIRST_NAMES)]
        last, last_ascii = LAST_NAMES[(customer * 13 + salt * 3) % len(LAST_NAMES)]
        domain = DOMAINS[(customer + salt) % len(DOMAINS)]
        email = f"{first_ascii}.{last_ascii}{customer}@{domain}"
        phone = (
            f"+{(customer * 7919 + salt * 104729) % 90 + 10}{(customer * 31 + salt) % 10**9:09d}"
        )
        return email, f"{first} {last}", phone, COUNTRIES[(customer + salt * 5) % len(COUNTRIES)]

    def created(self, customer: int, version: int, salt: int) -> dict[str, Any]:
        email, name, phone, country = self.person(customer, salt)
        data: dict[str, Any] = {"email": email, ("name" if version == 1 else "full_name"): name}
        if salt % 3:
            data["phone"] = phone
        data["country"] = country
        data["status"] = "active" if salt % 10 else "inactive"
        if version == 2:
            data["marketing_opt_in"] = bool(salt % 2)
        return data

    def crm_update(self, customer: int, version: int, fields: list[str], salt: int):
        email, name, phone, country = self.person(customer, salt)
        data: dict[str, Any] = {}
        for field in fields:
            if field == "email":
                data["email"] = email
            elif field == "name":
                data["name" if version == 1 else "full_name"] = name
            elif field == "phone":
                data["phone"] = phone
            elif field == "country":
                data["country"] = country
            elif field == "status":
                data["status"] = self.statuses[salt % len(self.statuses)]
            elif field == "marketing_opt_in" and version == 2:
                data["marketing_opt_in"] = bool(salt % 2)
        if not data:  # marketing_opt_in does not exist in version 1
            data["status"] = self.statuses[salt % len(self.statuses)]
        return data


_DATA = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _event_line(
    event_id: str, origin: str, action: str, time: str, customer: int, version: int, data: dict
) -> str:
    """`to_line(make_event(...))` for ids, times and keys that need no JSON escaping; fast."""
    return (
        f'{{"specversion":"1.0","id":"{event_id}","source":"/systems/{origin}",'
        f'"type":"customer.{action}","time":"{time}","subject":"C-{customer:06d}",'
        f'"datacontenttype":"application/json","schemaversion":{version},'
        f'"correlationid":"{event_id}","causationid":null,"origin":"{origin}",'
        f'"data":{_DATA.encode(data)}}}'
    )


def _check_lines(lines: list[str]) -> None:
    """The fast lines must be exactly what the project's own event writer produces."""
    from datetime import datetime

    from sync_assets.catalog.events import make_event, to_line

    for line in lines:
        e = json.loads(line)
        expected = to_line(
            make_event(
                event_type=e["type"],
                subject=e["subject"],
                origin=e["origin"],
                data=e["data"],
                time=datetime.fromisoformat(e["time"]),
                schema_version=e["schemaversion"],
                event_id=e["id"],
            )
        )
        if expected != line:
            raise AssertionError(f"generated line differs from to_line(make_event(...)):\n{line}")


def _times(seconds: np.ndarray) -> list[str]:
    moments = EPOCH + (seconds * 1e6).astype("int64").astype("timedelta64[us]")
    return [t + "Z" for t in np.datetime_as_string(moments, unit="us").tolist()]


def generate_events(events: int, customers: int | None = None, seed: int = 42) -> dict[str, Any]:
    """The landing order of `events` lines, plus what was planted in them."""
    rng = np.random.default_rng(seed)
    duplicates = round(events * DUPLICATE_RATE)
    invalid = round(events * INVALID_RATE)
    base = events - duplicates - invalid
    customers = max(1, min(customers or events // 10, base))
    updates = base - customers
    maker = _Maker(rng, customers)

    # when: each customer is created in the first 40% of the span, then updated any time later
    created_at = np.sort(rng.uniform(0, 0.4 * SPAN_SECONDS, customers))
    updated_customer = rng.integers(0, customers, updates)
    start = created_at[updated_customer] + 1.0
    updated_at = start + rng.uniform(0, 1, updates) * (SPAN_SECONDS - start)
    seconds = np.concatenate([created_at, updated_at])
    subject = np.concatenate([np.arange(customers), updated_customer])
    # 0 created (crm), 1 crm update, 2 billing plan, 3 support tier
    kind = np.concatenate(
        [np.zeros(customers, np.int8), rng.choice(3, updates, p=[0.8, 0.12, 0.08]) + 1]
    )
    order = np.argsort(seconds, kind="stable")
    seconds, subject, kind = seconds[order], subject[order], kind[order]
    version = np.where(rng.uniform(0, 1, base) < 0.35, 1, 2)
    salt = rng.integers(0, 1_000_000, base)
    field_count = rng.choice([1, 2], base, p=[0.7, 0.3])
    field_a = rng.choice(len(CRM_UPDATE_FIELDS), base, p=CRM_UPDATE_WEIGHTS)
    field_b = rng.choice(len(CRM_UPDATE_FIELDS), base, p=CRM_UPDATE_WEIGHTS)

    ids = maker.ids(base + invalid)
    times = _times(seconds)
    plans, tiers = maker.plans, maker.tiers
    lines: list[str] = []
    for i, (k, c, v, s, n, a, b) in enumerate(
        zip(
            kind.tolist(), subject.tolist(), version.tolist(), salt.tolist(),
            field_count.tolist(), field_a.tolist(), field_b.tolist(), strict=True,
        )
    ):  # fmt: skip
        if k == 0:
            line = _event_line(ids[i], "crm", "created", times[i], c, v, maker.created(c, v, s))
        elif k == 1:
            fields = (
                [CRM_UPDATE_FIELDS[a]] if n == 1 else [CRM_UPDATE_FIELDS[a], CRM_UPDATE_FIELDS[b]]
            )
            data = maker.crm_update(c, v, fields, s)
            line = _event_line(ids[i], "crm", "updated", times[i], c, v, data)
        elif k == 2:
            data = {"plan": plans[s % len(plans)]}
            line = _event_line(ids[i], "billing", "updated", times[i], c, v, data)
        else:
            data = {"support_tier": tiers[s % len(tiers)]}
            line = _event_line(ids[i], "support", "updated", times[i], c, v, data)
        lines.append(line)
    _check_lines(lines[:200])

    # the invalid events: fresh ids, somewhere in the stream
    invalid_kinds = [INVALID_KINDS[i % len(INVALID_KINDS)] for i in range(invalid)]
    invalid_times = _times(np.sort(rng.uniform(0, SPAN_SECONDS, invalid)))
    invalid_customers = rng.integers(0, customers, invalid).tolist()
    for j, what in enumerate(invalid_kinds):
        lines.append(
            _invalid_line(maker, what, ids[base + j], invalid_times[j], invalid_customers[j], j)
        )

    # the duplicates: exact copies of earlier lines, landing up to a fifth of the stream later
    sources = rng.choice(base, duplicates, replace=False)
    reach = np.minimum(base - sources, max(1, events // 5))
    keys = np.concatenate(
        [
            np.arange(base, dtype=np.float64),
            rng.uniform(0, base, invalid),
            sources + 0.5 + rng.uniform(0, 1, duplicates) * reach,
        ]
    )
    lines.extend(lines[s] for s in sources.tolist())
    landing_order = np.argsort(keys, kind="stable").tolist()
    return {
        "lines": [lines[i] for i in landing_order],
        "customers": customers,
        "valid_events": base,
        "duplicates": duplicates,
        "invalid": invalid,
        "invalid_kinds": dict(Counter(invalid_kinds)),
        "by_kind": dict(
            zip(
                ["customer_created", "crm_update", "billing_plan", "support_tier"],
                np.bincount(kind, minlength=4).tolist(),
                strict=True,
            )
        ),
        "schema_versions": {"v1": int((version == 1).sum()), "v2": int((version == 2).sum())},
    }


def _invalid_line(maker: _Maker, what: str, event_id: str, time: str, customer: int, j: int) -> str:
    v = 2
    origin, action = "crm", "updated"
    data: dict[str, Any] = {"status": "active"}
    if what == "bad_status":
        data = {"status": "deleted"}
    elif what == "bad_email":
        data = {"email": "not-an-email"}
    elif what == "bad_country":
        data = {"country": "gb"}
    elif what == "unknown_field":
        data = {"nickname": "Ace", "status": "active"}
    elif what == "empty_update":
        data = {}
    elif what == "missing_required":
        action, data = "created", maker.created(customer, v, j)
        del data["email"]
    elif what == "null_required":
        data = {"email": None}
    event = json.loads(_event_line(event_id, origin, action, time, customer, v, data))
    if what == "unknown_schema_version":
        event["schemaversion"] = 3
    elif what == "schemaversion_as_string":
        event["schemaversion"] = "2"
    elif what == "bad_subject":
        event["subject"] = f"C-{customer}"[:4]
    elif what == "origin_mismatch":
        event["origin"] = "billing"
    elif what == "not_an_object":
        return json.dumps([event_id, time])
    line = _DATA.encode(event)
    if what == "malformed_json":
        return line[: len(line) // 2]
    return line


def land(lines: list[str], folder: Path, batches: int) -> list[Path]:
    """Write the lines as `batches` parts, each a file per channel `folder/<system>/`, as a
    landing zone holds them: a channel speaks for one system, so each line goes to the folder of
    the system in its `source` (lines without one, to LANDING_SYSTEM's)."""
    paths = []
    bounds = np.linspace(0, len(lines), batches + 1).round().astype(int).tolist()
    for n in range(batches):
        stem = "events" if batches == 1 else f"part-{n + 1:04d}"
        by_system: dict[str, list[str]] = {}
        for line in lines[bounds[n] : bounds[n + 1]]:
            found = _SOURCE.search(line)
            by_system.setdefault(found.group(1) if found else LANDING_SYSTEM, []).append(line)
        for system, part in sorted(by_system.items()):
            target = folder / system
            target.mkdir(parents=True, exist_ok=True)
            path = target / f"{stem}.jsonl"
            path.write_text("\n".join(part) + "\n", encoding="utf-8")
            paths.append(path)
    return paths


_SOURCE = re.compile(r'"source":"/systems/([a-z0-9_]+)"')


# -- the workers: each runs in a fresh process ----------------------------------------------------


def pipeline_worker(landing: Path, warehouse: Path, order: str) -> dict[str, Any]:
    """Ingest, validate and apply every pending batch the way the Dagster assets do.

    Each step opens its own connection, as the assets do. `order` is `phases` (a backfill: every
    batch ingested, then every batch validated, then all applied, each phase in one connection and
    `ledger.run_step`'s one transaction, as the asset's step runs the backfill's batches) or `job`
    (per batch ingest, validate, apply, each in its own connection and transaction, as the
    ingest_batch job runs each batch the sensor lands).
    """
    import pandera.polars  # noqa: F401  (validate imports it lazily: keep import time out)

    from sync_assets import ledger
    from sync_assets.ingest.landing import LandingZone
    from sync_assets.ingest.raw import ingest_batch
    from sync_assets.ingest.validate import validate_batch
    from sync_assets.state.apply import apply_pending_batches
    from sync_assets.warehouse import connect, one, scalar, transaction

    zone = LandingZone(landing)
    batches = zone.pending()
    phases: dict[str, float] = {"setup": 0.0, "ingest": 0.0, "validate": 0.0, "apply": 0.0}
    rss: dict[str, float] = {"start": peak_rss_mb()}
    per_batch: dict[str, dict[str, Any]] = {b.batch_id: {"batch_id": b.batch_id} for b in batches}

    def step(phase: str, batch_id: str | None, work) -> Any:
        started = time.perf_counter()
        with connect(warehouse) as con, transaction(con):
            outcome = work(con)
        seconds = time.perf_counter() - started
        phases[phase] += seconds
        if batch_id:
            per_batch[batch_id][f"{phase}_seconds"] = seconds
        rss[phase] = peak_rss_mb()
        return outcome

    def ingest(batch) -> None:
        counts = step("ingest", batch.batch_id, lambda con: ingest_batch(con, batch))
        zone.archive(batch)
        per_batch[batch.batch_id]["landed"] = counts.landed

    def validate(batch) -> None:
        counts = step(
            "validate", batch.batch_id, lambda con: validate_batch(con, batch.batch_id, zone=zone)
        )
        per_batch[batch.batch_id]["validated"] = counts.validated

    def phase(name: str, step_name: str, work) -> dict[str, Any]:
        """Every batch through one phase as the asset's step runs a backfill's batches."""
        started = time.perf_counter()
        with connect(warehouse) as con:
            result = ledger.run_step(con, step_name, list(per_batch), work)
        phases[name] += time.perf_counter() - started
        rss[name] = peak_rss_mb()
        if result.failed:
            raise RuntimeError(f"{step_name} failed: {result.failed}")
        return result.done

    step("setup", None, lambda con: None)  # the schema
    applied: dict[str, Any] = {}
    if order == "phases":
        by_id = {batch.batch_id: batch for batch in batches}
        raw = phase(
            "ingest", "raw ingest", lambda con, ids: {i: ingest_batch(con, by_id[i]) for i in ids}
        )
        for batch in batches:
            zone.archive(batch)
            per_batch[batch.batch_id]["landed"] = raw[batch.batch_id].landed
        valid = phase(
            "validate",
            "validation",
            lambda con, ids: {i: validate_batch(con, i, zone=zone) for i in ids},
        )
        for batch_id, counts in valid.items():
            per_batch[batch_id]["validated"] = counts.validated
        applied = step("apply", None, apply_pending_batches)
    else:
        for batch in batches:
            ingest(batch)
            validate(batch)
            applied |= step("apply", batch.batch_id, apply_pending_batches)

    with connect(warehouse, read_only=True) as con:
        totals = one(
            con,
            "SELECT sum(landed), sum(duplicates), sum(validated), sum(dead_lettered), sum(applied),"
            " count(*) FILTER (WHERE landed <> duplicates + validated + dead_lettered) FROM batches",
        )
        rules = dict(
            con.execute(
                "SELECT rule, count(*) FROM dead_letters GROUP BY ALL ORDER BY 1"
            ).fetchall()
        )
        golden = one(
            con, "SELECT count(*), count(*) FILTER (WHERE plan IS NOT NULL) FROM golden_customer"
        )
        conflicts = scalar(con, "SELECT count(*) FROM ownership_conflicts")
    return {
        "phases": phases,
        "peak_rss_mb": peak_rss_mb(),
        "rss_high_water_after_mb": rss,
        "per_batch": list(per_batch.values()),
        "counts": {
            "landed": int(totals[0]),
            "duplicates": int(totals[1]),
            "validated": int(totals[2]),
            "dead_lettered": int(totals[3]),
            "applied": int(totals[4]),
            "unbalanced_batches": int(totals[5]),
            "dead_letters_by_rule": rules,
            "golden_customers": golden[0],
            "golden_customers_with_plan": golden[1],
            "ownership_conflicts": conflicts,
            "batches_applied": len(applied),
        },
        "warehouse_mb": warehouse.stat().st_size / 2**20,
    }


ENVELOPE_COLUMNS = (
    "{specversion: 'VARCHAR', id: 'VARCHAR', source: 'VARCHAR', type: 'VARCHAR', "
    "time: 'TIMESTAMPTZ', subject: 'VARCHAR', datacontenttype: 'VARCHAR', schemaversion: 'BIGINT', "
    "correlationid: 'VARCHAR', causationid: 'VARCHAR', origin: 'VARCHAR', data: 'JSON'}"
)
READ_JSON_OPTIONS = {
    # the call the project set as the floor; falls back to ignore_errors when lines are invalid
    "plain": "",
    "ignore_errors": ", ignore_errors = true",
    # the same with the envelope's typed columns declared, so every line is parsed into columns
    "typed": f", records = true, columns = {ENVELOPE_COLUMNS}, ignore_errors = true",
}


def duckdb_worker(files: list[Path], database: Path, variant: str) -> dict[str, Any]:
    """DuckDB's own newline-delimited JSON reader into a table: the floor for raw loading."""
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect(str(database))
    try:
        con.execute(
            "CREATE TABLE t AS SELECT * FROM read_json(?, format = 'newline_delimited'"
            f"{READ_JSON_OPTIONS[variant]})",
            [[str(f) for f in files]],
        )
        con.execute("CHECKPOINT")
    except duckdb.Error as exc:
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
    finally:
        con.close()
    seconds = time.perf_counter() - started
    con = duckdb.connect(str(database), read_only=True)
    [(rows,)] = con.execute("SELECT count(*) FROM t").fetchall()
    columns = con.execute("DESCRIBE t").fetchall()
    con.close()
    return {
        "seconds": seconds,
        "rows": rows,
        "columns": ", ".join(f"{c[0]} {c[1]}" for c in columns)[:200],
        "peak_rss_mb": peak_rss_mb(),
    }


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("worker", choices=["pipeline", "duckdb"])
    parser.add_argument("--landing", type=Path)
    parser.add_argument("--warehouse", type=Path)
    parser.add_argument("--files", type=Path, nargs="*")
    parser.add_argument("--variant", choices=list(READ_JSON_OPTIONS), default="plain")
    parser.add_argument("--order", choices=["phases", "job"], default="phases")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.worker == "pipeline":
        result = pipeline_worker(args.landing, args.warehouse, args.order)
    else:
        result = duckdb_worker(args.files, args.warehouse, args.variant)
    write_worker_result(args.out, result)


# -- the benchmark --------------------------------------------------------------------------------


def _read_json(folder: Path, files: list[Path], variant: str) -> dict[str, Any]:
    database = folder / f"read_json_{variant}.duckdb"
    result = run_worker(
        "bench.ingest",
        ["duckdb", "--variant", variant, "--warehouse", str(database), "--files", *map(str, files)],
    )
    database.unlink(missing_ok=True)
    return result


def _measure_form(
    root: Path, lines: list[str], form: str, batches: int, order: str
) -> dict[str, Any]:
    folder = root / form
    files = land(lines, folder / "landing", batches)
    load_before = os.getloadavg()[0]
    # DuckDB first: the pipeline archives the files it ingests
    duck = _read_json(folder, files, "plain")
    strict_error = duck.get("error")
    if strict_error:
        duck = _read_json(folder, files, "ignore_errors")
    typed = _read_json(folder, files, "typed")
    for result in (duck, typed):
        if result.get("error"):
            raise RuntimeError(f"read_json failed: {result['error']}")
    pipe = run_worker(
        "bench.ingest",
        [
            "pipeline",
            "--landing",
            str(folder / "landing"),
            "--warehouse",
            str(folder / "wh.duckdb"),
            "--order",
            order,
        ],
    )
    events = len(lines)
    pipeline_seconds = sum(v for k, v in pipe["phases"].items() if k != "setup")
    return {
        "form": form,
        "events": events,
        "batches": batches,
        "order": order,
        "phases": pipe["phases"],
        "pipeline_seconds": pipeline_seconds,
        "events_per_second": events / pipeline_seconds,
        "peak_rss_mb": pipe["process_peak_rss_mb"],
        "rss_high_water_after_mb": pipe["rss_high_water_after_mb"],
        "warehouse_mb": pipe["warehouse_mb"],
        "counts": pipe["counts"],
        "per_batch": pipe["per_batch"],
        "duckdb_read_json_seconds": duck["seconds"],
        "duckdb_peak_rss_mb": duck["process_peak_rss_mb"],
        "duckdb_rows": duck["rows"],
        "duckdb_columns": duck["columns"],
        "duckdb_ignore_errors": bool(strict_error),
        "duckdb_strict_error": strict_error,
        "ratio": pipeline_seconds / duck["seconds"],
        "duckdb_typed_read_json_seconds": typed["seconds"],
        "duckdb_typed_peak_rss_mb": typed["process_peak_rss_mb"],
        "duckdb_typed_rows": typed["rows"],
        "ratio_typed": pipeline_seconds / typed["seconds"],
        "load_average_1m": [load_before, os.getloadavg()[0]],
    }


AUTO_BOTH_UP_TO = 500_000
"""`--forms auto` measures both forms up to this many events, only the batched form above it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events",
        type=int,
        help=f"events to generate (default {DEFAULT_EVENTS:,}; {PROFILE_EVENTS:,} with --profile)",
    )
    parser.add_argument(
        "--batches", type=int, default=DEFAULT_BATCHES, help="files in the batched form (10)"
    )
    parser.add_argument("--customers", type=int, help="distinct customers (default: events / 10)")
    parser.add_argument(
        "--forms",
        choices=["auto", "both", "single", "batched"],
        default="auto",
        help="land the events as one file, as --batches files, or both; auto (default) measures "
        f"both up to {AUTO_BOTH_UP_TO:,} events and only the batched form above, to keep "
        "`python -m bench` within about three minutes",
    )
    parser.add_argument(
        "--order",
        choices=["phases", "job"],
        default="phases",
        help="phases (default): every batch ingested, then validated, then applied at once, as "
        "a backfill; job: per batch ingest, validate, apply, as the ingest_batch job runs each "
        "landed batch (slower: one apply per batch)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the benchmark: per-statement timings of each phase and a cProfile of "
        "validate_batch, in this process, on one file (--forms batched: on --batches files)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")


def _forms(args: argparse.Namespace, events: int) -> dict[str, int]:
    forms = {"single": 1, "batched": args.batches}
    choice = args.forms
    if choice == "auto":
        choice = "both" if events <= AUTO_BOTH_UP_TO else "batched"
    return forms if choice == "both" else {choice: forms[choice]}


def _generate(args: argparse.Namespace, events: int) -> tuple[list[str], dict[str, Any]]:
    print(f"ingest: generating {events:,} events ...", flush=True)
    started = time.perf_counter()
    generated = generate_events(events, args.customers, args.seed)
    generated["seconds"] = time.perf_counter() - started
    lines = generated.pop("lines")
    generated["mib"] = sum(len(line.encode()) + 1 for line in lines) / 2**20
    print(
        f"ingest: generated in {generated['seconds']:.1f} s ({generated['mib']:,.0f} MiB)",
        flush=True,
    )
    return lines, generated


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.profile:
        return profile(args)
    events = args.events or DEFAULT_EVENTS
    root = Path(tempfile.mkdtemp(prefix="syncfabric-bench-ingest-"))
    try:
        lines, generated = _generate(args, events)
        configurations = []
        for form, batches in _forms(args, events).items():
            print(f"ingest: measuring {form} ({batches} file(s)) ...", flush=True)
            configurations.append(_measure_form(root, lines, form, batches, args.order))
    finally:
        if args.keep:
            print(f"ingest: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    primary = configurations[-1]  # the batched form when measured: the landing zone's way
    result = {
        "benchmark": NAME,
        "events": len(lines),
        "batches": primary["batches"],
        "phases": primary["phases"],
        "pipeline_seconds": primary["pipeline_seconds"],
        "events_per_second": primary["events_per_second"],
        "peak_rss_mb": primary["peak_rss_mb"],
        "duckdb_read_json_seconds": primary["duckdb_read_json_seconds"],
        "ratio": primary["ratio"],
        "ratio_typed": primary["ratio_typed"],
        "ratio_target": RATIO_TARGET,
        "primary_form": primary["form"],
        "order": args.order,
        "notes": [
            "pipeline seconds = ingest + validate + apply, each batch in its own connection and "
            "transaction as the Dagster assets run them; schema setup excluded",
            "read_json seconds include connect, CREATE TABLE AS and CHECKPOINT on a fresh file",
            "peak_rss_mb is the worker process's RSS high-water mark (wait4 ru_maxrss)",
        ],
        "generated": generated,
        "configurations": configurations,
        "machine": machine_info(),
    }
    report(result)
    path = write_result(NAME, result)
    print(
        f"ingest: wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
    )
    return result


def report(result: dict[str, Any]) -> None:
    configurations = result["configurations"]
    headers = [
        "",
        *(f"{c['form']} ({c['batches']} file{'s' * (c['batches'] > 1)})" for c in configurations),
    ]

    def row(label: str, key) -> list[Any]:
        return [label, *(key(c) for c in configurations)]

    rows = [
        row("events", lambda c: c["events"]),
        row("ingest (raw) s", lambda c: c["phases"]["ingest"]),
        row("validate s", lambda c: c["phases"]["validate"]),
        row("apply s", lambda c: c["phases"]["apply"]),
        row("pipeline total s", lambda c: c["pipeline_seconds"]),
        row("events / s", lambda c: round(c["events_per_second"])),
        row("peak RSS MiB", lambda c: c["peak_rss_mb"]),
        row("read_json s", lambda c: c["duckdb_read_json_seconds"]),
        row("read_json peak RSS MiB", lambda c: c["duckdb_peak_rss_mb"]),
        row("ratio pipeline / read_json", lambda c: c["ratio"]),
        row("read_json typed columns s", lambda c: c["duckdb_typed_read_json_seconds"]),
        row("ratio pipeline / typed", lambda c: c["ratio_typed"]),
        row("duplicates", lambda c: c["counts"]["duplicates"]),
        row("dead letters", lambda c: c["counts"]["dead_lettered"]),
        row("validated", lambda c: c["counts"]["validated"]),
        row("golden customers", lambda c: c["counts"]["golden_customers"]),
    ]
    print()
    print(
        f"ingest benchmark: {result['events']:,} events, {result['generated']['mib']:,.0f} MiB of "
        f"JSON lines, {result['generated']['customers']:,} customers, "
        f"{result['machine']['cpu_count']} CPUs, order: {result['order']}"
    )
    print(format_table(headers, rows))
    for c in configurations:
        if c["duckdb_ignore_errors"]:
            print(
                f"note ({c['form']}): plain read_json fails on the invalid lines "
                f"({c['duckdb_strict_error'][:90]}...); timed with ignore_errors=true, which then "
                f"loads each line as one column ({c['duckdb_columns'][:40]})"
            )
        if c["counts"]["unbalanced_batches"]:
            print(f"WARNING ({c['form']}): {c['counts']['unbalanced_batches']} unbalanced batches")
        if max(c["load_average_1m"]) > 1.0:
            print(
                f"note ({c['form']}): the machine was busy (1-minute load average "
                f"{c['load_average_1m'][0]:.1f} before, {c['load_average_1m'][1]:.1f} after); "
                "figures are pessimistic"
            )
    verdict = "meets" if result["ratio"] <= result["ratio_target"] else "misses"
    print(
        f"ratio {result['ratio']:.1f} ({result['primary_form']}) {verdict} the target of "
        f"{result['ratio_target']:g}; typed read_json floor gives {result['ratio_typed']:.1f}"
    )


# -- the profile ----------------------------------------------------------------------------------


class _TimedRelation:
    def __init__(self, relation: Any, label: str, log: dict[str, list[float]]):
        self._relation, self._label, self._log = relation, label, log

    def to_arrow_table(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._relation.to_arrow_table(*args, **kwargs)
        finally:
            _note(self._log, self._label, time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._relation, name)


class _TimedConnection:
    """A DuckDB connection that notes the wall time of every statement, by its first words."""

    def __init__(self, con: Any, log: dict[str, list[float]]):
        self._con, self._log = con, log

    def execute(self, query: str, parameters: Any = None) -> Any:
        started = time.perf_counter()
        try:
            if parameters is None:
                return self._con.execute(query)
            return self._con.execute(query, parameters)
        finally:
            _note(self._log, _label(query), time.perf_counter() - started)

    def sql(self, query: str, **kwargs: Any) -> Any:
        return _TimedRelation(self._con.sql(query, **kwargs), _label(query), self._log)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@contextlib.contextmanager
def _timed_connect(warehouse: Path, log: dict[str, list[float]]) -> Iterator[Any]:
    """`connect`, noting the time to open (and create the schema) and to close (checkpoint)."""
    from sync_assets.warehouse import connect

    started = time.perf_counter()
    with connect(warehouse) as con:
        _note(
            log,
            "(connect: open the file, CREATE IF NOT EXISTS the schema)",
            time.perf_counter() - started,
        )
        try:
            yield _TimedConnection(con, log)
        finally:
            started = time.perf_counter()
    _note(log, "(close the connection: checkpoint the WAL)", time.perf_counter() - started)


def _label(query: str) -> str:
    return " ".join(query.split())[:90]


def _note(log: dict[str, list[float]], label: str, seconds: float) -> None:
    entry = log.setdefault(label, [0, 0.0])
    entry[0] += 1
    entry[1] += seconds


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Where the time goes: statements per phase, and a cProfile of validate_batch."""
    import cProfile
    import io
    import pstats

    import pandera.polars  # noqa: F401

    from sync_assets import ledger
    from sync_assets.ingest.landing import LandingZone
    from sync_assets.ingest.raw import ingest_batch
    from sync_assets.ingest.validate import validate_batch
    from sync_assets.state.apply import apply_pending_batches
    from sync_assets.warehouse import connect, transaction

    events = args.events or PROFILE_EVENTS
    batches = args.batches if args.forms == "batched" else 1
    root = Path(tempfile.mkdtemp(prefix="syncfabric-bench-profile-"))
    phases: dict[str, dict[str, Any]] = {}
    profiler = cProfile.Profile()
    try:
        lines, _ = _generate(args, events)
        land(lines, root / "landing", batches)
        del lines
        zone = LandingZone(root / "landing")
        pending = zone.pending()
        warehouse = root / "wh.duckdb"
        with connect(warehouse):
            pass

        def timed(phase: str, step) -> None:
            log: dict[str, list[float]] = {}
            started = time.perf_counter()
            step(log)
            total = time.perf_counter() - started
            in_sql = sum(seconds for _, seconds in log.values())
            statements = sorted(log.items(), key=lambda item: -item[1][1])
            phases[phase] = {
                "seconds": total,
                "sql_seconds": in_sql,
                "statements": [
                    {"statement": label, "calls": calls, "seconds": seconds}
                    for label, (calls, seconds) in statements
                ],
            }

        # Each phase as the pipeline runs it (--order phases): a backfill's step.
        by_id = {batch.batch_id: batch for batch in pending}

        def ingest(log: dict[str, list[float]]) -> None:
            with _timed_connect(warehouse, log) as timed_con:
                ledger.run_step(
                    timed_con,
                    "raw ingest",
                    list(by_id),
                    lambda con, ids: {i: ingest_batch(con, by_id[i]) for i in ids},
                )

        def validate(log: dict[str, list[float]]) -> None:
            with _timed_connect(warehouse, log) as timed_con:
                profiler.enable()
                ledger.run_step(
                    timed_con,
                    "validation",
                    list(by_id),
                    lambda con, ids: {i: validate_batch(con, i, zone=zone) for i in ids},
                )
                profiler.disable()

        def apply(log: dict[str, list[float]]) -> None:
            with _timed_connect(warehouse, log) as timed_con, transaction(timed_con):
                apply_pending_batches(timed_con)

        print(f"ingest: profiling {events:,} events in {batches} batch(es) ...", flush=True)
        for phase, step in (("ingest", ingest), ("validate", validate), ("apply", apply)):
            timed(phase, step)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    for phase, figures in phases.items():
        print()
        print(
            f"{phase}: {figures['seconds']:.2f} s, of which {figures['sql_seconds']:.2f} s in DuckDB "
            f"(statements, connect, close) and {figures['seconds'] - figures['sql_seconds']:.2f} s "
            "in Python (reading files, pandera, polars, glue)"
        )
        rows = [
            [s["statement"][:80], s["calls"], s["seconds"], 100 * s["seconds"] / figures["seconds"]]
            for s in figures["statements"][:8]
        ]
        print(format_table(["statement", "calls", "s", "%"], rows))
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.strip_dirs().sort_stats("cumulative").print_stats(25)
    cprofile_text = buffer.getvalue()
    print()
    print("cProfile of validate_batch, by cumulative time:")
    print("\n".join(cprofile_text.splitlines()[:45]))
    result = {
        "benchmark": f"{NAME}_profile",
        "events": events,
        "batches": batches,
        "phases": phases,
        "validate_cprofile": cprofile_text,
        "machine": machine_info(),
    }
    path = write_result(f"{NAME}_profile", result)
    print(f"ingest: wrote {path}")
    return result


if __name__ == "__main__":
    worker_main(sys.argv[1:])
