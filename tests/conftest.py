"""Shared, generic helpers for the tests of the pure (non-Dagster) core.

Keep this small: helpers to build events, land batches and run ingest -> validate -> apply on a
data folder under pytest's tmp_path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from examples.demo.seed.landscape import build_demo_landscape
from sync_assets.catalog.events import make_event, to_line
from sync_assets.ingest.landing import Batch, LandingZone
from sync_assets.ingest.raw import ingest_batch
from sync_assets.ingest.validate import validate_batch
from sync_assets.project import current
from sync_assets.settings import DataFolder
from sync_assets.state.apply import apply_pending_batches
from sync_assets.warehouse import connect, transaction

DEMO_PROJECT = Path(__file__).resolve().parents[1] / "examples" / "demo"


def pytest_configure(config: pytest.Config) -> None:
    """The tests work on the demo project unless one says otherwise (set before any test module
    is collected, so before any project is loaded)."""
    os.environ.setdefault("SYNCFABRIC_PROJECT", str(DEMO_PROJECT))


BASE_TIME = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)


@pytest.fixture
def data_folder(tmp_path) -> DataFolder:
    """A fresh, empty data folder under tmp_path."""
    return DataFolder(tmp_path / "syncfabric")


def at(seconds: float = 0) -> datetime:
    """A fixed point in time, `seconds` after BASE_TIME."""
    return BASE_TIME + timedelta(seconds=seconds)


def event(
    event_type: str,
    subject: str,
    data: dict[str, Any] | None = None,
    *,
    origin: str = "crm",
    time: datetime | None = None,
    event_id: str | None = None,
    schema_version: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid-by-default event envelope; `overrides` replace envelope fields as they are."""
    entity_name = event_type.split(".")[0]
    built = make_event(
        event_type=event_type,
        subject=subject,
        origin=origin,
        data={} if data is None else data,
        time=time or BASE_TIME,
        schema_version=schema_version or current().current_version[entity_name],
        event_id=event_id,
    )
    built.update(overrides)
    return built


def customer_created(subject: str = "C-000001", **kwargs: Any) -> dict[str, Any]:
    """A complete, valid customer.created (current version) from the CRM."""
    data = {
        "email": "ada@example.com",
        "full_name": "Ada Lovelace",
        "country": "GB",
        "status": "active",
    }
    data.update(kwargs.pop("data", {}))
    return event("customer.created", subject, data, **kwargs)


def land(
    folder: DataFolder,
    stem: str,
    lines: Iterable[str | bytes | dict],
    *,
    system: str | None = None,
) -> Batch:
    """Land a batch file; dict lines are serialised as events, str/bytes are written verbatim.

    A channel speaks for one system: without `system`, the batch goes to the channel of the system
    its events come from (`origin`; crm when none says), and events of two systems are an error
    in the test, not two batches. Pass `system` to land in another channel on purpose."""
    lines = list(lines)
    if system is None:
        origins = {line.get("origin") for line in lines if isinstance(line, dict)}
        origins = {o for o in origins if isinstance(o, str) and o in current().system_names}
        if len(origins) > 1:
            raise ValueError(f"one batch per channel: these events come from {sorted(origins)}")
        system = origins.pop() if origins else "crm"
    rendered = [to_line(line) if isinstance(line, dict) else line for line in lines]
    return LandingZone(folder.landing).write_batch(system, stem, rendered)


def run_core(
    folder: DataFolder, batch_ids: Sequence[str], *, apply_each: bool = True
) -> dict[str, Any]:
    """Ingest, validate and apply the given landed batches, one transaction per batch, in order.

    With `apply_each=False`, the batches are only ingested and validated one by one, then applied
    all together in a last transaction. Returns, per batch id, the raw and validation counts and
    what `apply_pending_batches` returned (counts per batch id and entity).
    """
    zone = LandingZone(folder.landing)
    results: dict[str, Any] = {}
    with connect(folder.warehouse) as con:
        for batch_id in batch_ids:
            with transaction(con):
                raw = ingest_batch(con, zone.locate(batch_id))
                validation = validate_batch(con, batch_id)
                applied = apply_pending_batches(con) if apply_each else None
            results[batch_id] = {"raw": raw, "validation": validation, "applied": applied}
        if not apply_each:
            with transaction(con):
                applied = apply_pending_batches(con)
            for result in results.values():
                result["applied"] = applied
    return results


def rows(folder: DataFolder, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    """Run a read query against the folder's warehouse."""
    with connect(folder.warehouse) as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DataFolder:
    """A demo landscape, ingested and applied: systems and golden records that agree."""
    folder = DataFolder(tmp_path_factory.mktemp("reconcile") / "syncfabric")
    build_demo_landscape(folder, customers=300, orders=1200)
    run_core(folder, [b.batch_id for b in LandingZone(folder.landing).pending()])
    return folder


@pytest.fixture
def landscape(demo, tmp_path) -> DataFolder:
    """A copy of the demo's warehouse and systems that a test may change."""
    copy = DataFolder(tmp_path / "copy")
    copy.systems.mkdir(parents=True)
    shutil.copy(demo.warehouse, copy.warehouse)
    for system in current().system_names:
        shutil.copy(demo.system_database(system), copy.system_database(system))
    return copy


def first_unused_key(
    candidates: Iterable[tuple],
    used: set[str],
    *,
    accounts: set[str],
    users: set[str],
    account: bool | None = None,
    user: bool | None = None,
) -> str:
    """For drift seeding: the first candidate key not taken yet, with or without a live billing
    account or a support user as asked; marks it taken."""
    for (key,) in candidates:
        if key in used:
            continue
        if account is not None and (key in accounts) != account:
            continue
        if user is not None and (key in users) != user:
            continue
        used.add(key)
        return key
    raise LookupError("no candidate key left")


# Real database servers (PostgreSQL, MariaDB): fixtures and their markers, see tests/databases.py.
from databases import mariadb_engine, mark_database_tests, postgres_engine  # noqa: E402, F401


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that use `postgres_engine` / `mariadb_engine` with `postgres` / `mariadb`."""
    mark_database_tests(items)
