"""Adopting a landscape that already exists: systems full of rows, and no event history at all.

The systems are the demo's, written without any landed event, with drift in systems that do not
own the values, and rows only systems that do not own the lifecycle hold (orphans).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from commands import assert_no_traceback, syncctl
from conftest import run_core

from examples.demo.seed.landscape import build_demo_landscape
from sync_assets.catalog.events import RECONCILER_SOURCE, format_time, make_event
from sync_assets.connectors.sources import open_source, sqlite_url
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.raw import ingest_batch
from sync_assets.project import current
from sync_assets.reconcile.adopt import land_adoption
from sync_assets.reconcile.snapshot import record_attempt, snapshot_system, snapshot_table
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect, quote
from sync_assets.warehouse.tables import opened

ORPHANS = {
    # billing accounts and a support user of customers the CRM (the lifecycle owner) never had
    ("billing", "C-999001"): (
        "INSERT INTO accounts VALUES ((SELECT 1 + max(acct_no) FROM accounts), 'C-999001',"
        " 'ORPHAN1@EXAMPLE.COM', 'PRO', 'ACTIVE', 'GB', '01/12/2025')"
    ),
    ("billing", "C-999002"): (
        "INSERT INTO accounts VALUES ((SELECT 1 + max(acct_no) FROM accounts), 'C-999002',"
        " 'ORPHAN2@EXAMPLE.COM', 'FREE', 'ACTIVE', 'FR', '01/12/2025')"
    ),
    ("support", "C-999003"): (
        "INSERT INTO users (external_id, email, name, tier, state, updated_at)"
        " VALUES ('C-999003', 'orphan3@example.com', 'Orphan Three', 'Standard', 'enabled', 0)"
    ),
}
ORPHAN_TABLES = {"billing": ("accounts", "customer_ref"), "support": ("users", "external_id")}


@pytest.fixture(scope="module")
def systems(tmp_path_factory) -> DataFolder:
    """The demo's systems with drift in non-owners and three orphans; no event, no warehouse."""
    folder = DataFolder(tmp_path_factory.mktemp("adopt") / "syncfabric")
    build_demo_landscape(folder, customers=300, orders=1200, drift=3)
    shutil.rmtree(folder.landing)
    for (system, _), statement in ORPHANS.items():
        with sqlite3.connect(folder.system_database(system)) as con:
            con.execute(statement)
    return folder


@pytest.fixture
def fresh(systems, tmp_path) -> DataFolder:
    """A copy of the systems, with an empty data folder around them."""
    copy = DataFolder(tmp_path / "syncfabric")
    copy.systems.mkdir(parents=True)
    for system in current().system_names:
        shutil.copy(systems.system_database(system), copy.system_database(system))
    return copy


def orphan_rows(folder: DataFolder) -> dict[tuple[str, str], tuple]:
    found = {}
    for system, key in ORPHANS:
        table, column = ORPHAN_TABLES[system]
        with sqlite3.connect(folder.system_database(system)) as con:
            found[system, key] = con.execute(
                f"SELECT * FROM {table} WHERE {column} = ?", (key,)
            ).fetchall()
    return found


def snapshot_everything(folder: DataFolder) -> None:
    with connect(folder.warehouse) as con:
        for m in current().mappings.values():
            snapshot_system(con, open_source(sqlite_url(folder.system_database(m.system))), m)


def landed_events(folder: DataFolder) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(folder.landing.glob("*/*.jsonl"))
        for line in path.read_text().splitlines()
    ]


# -- the events an adoption lands, without Dagster -------------------------------------------------


def test_adoption_lands_each_value_as_an_event_from_its_owner(fresh):
    snapshot_everything(fresh)
    with connect(fresh.warehouse) as con:
        adopted = land_adoption(con, LandingZone(fresh.landing), "run-1")
        live_contacts, deleted_contacts = con.execute(
            "SELECT count(*) FILTER (NOT is_deleted), count(*) FILTER (is_deleted) "
            "FROM snapshot_crm_customer"
        ).fetchone()
    events = landed_events(fresh)

    assert adopted.entities == ["customer", "order"]
    assert adopted.orphans == {("billing", "customer"): 2, ("support", "customer"): 1}
    assert adopted.events[("crm", "created")] == live_contacts
    assert adopted.events[("crm", "deleted")] == deleted_contacts
    assert sum(adopted.events.values()) == len(events)
    assert all(e["source"] == RECONCILER_SOURCE for e in events)
    for e in events:
        entity_name, action = e["type"].split(".")
        catalog = current().entity(entity_name)
        held = current().mapping(e["origin"], entity_name).attributes
        owned = {a for a in held if catalog.owner_of(a) == e["origin"]}
        if action == "created":
            assert e["origin"] == catalog.lifecycle_owner
            assert set(e["data"]) == owned | {a for a in held if catalog.attribute(a).required}
        elif action == "reconciled":
            assert e["origin"] != catalog.lifecycle_owner
            assert set(e["data"]) == owned, e
        else:
            assert (action, e["data"]) == ("deleted", {})
    assert not {e["subject"] for e in events} & {key for _, key in ORPHANS}
    assert len({(e["source"], e["id"]) for e in events}) == len(events)


def test_the_events_duckdb_writes_are_those_make_event_makes(fresh):
    # Adoption writes its lines in SQL for speed: each must be exactly the envelope make_event
    # builds, with the snapshot's values in event form (decimals as numbers, times RFC 3339).
    snapshot_everything(fresh)
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with connect(fresh.warehouse) as con:
        land_adoption(con, LandingZone(fresh.landing), "run-1", now)
        snapshots = {
            (m.system, m.entity): {
                row[catalog_key(m.entity)]: row
                for row in con.sql(f"SELECT * FROM {snapshot_table(m)}")
                .to_arrow_table()
                .to_pylist()
            }
            for m in current().mappings.values()
        }
    events = landed_events(fresh)
    assert {e["type"] for e in events} >= {"order.created", "customer.reconciled"}
    for e in events:
        entity_name = e["type"].split(".")[0]
        row = snapshots[e["origin"], entity_name][e["subject"]]
        expected = make_event(
            event_type=e["type"],
            subject=e["subject"],
            origin=e["origin"],
            data={name: event_value(row[name]) for name in e["data"]},
            time=now,
            schema_version=current().current_version[entity_name],
            event_id=f"adopted-{entity_name}-{e['origin']}-{e['subject']}",
            causation_id=f"run-1/{e['origin']}/{entity_name}/{e['subject']}",
            source=RECONCILER_SOURCE,
        )
        assert e == expected


def catalog_key(entity_name: str) -> str:
    return current().entity(entity_name).key


def event_value(value):
    if isinstance(value, Decimal):
        return float(value)
    return format_time(value) if isinstance(value, datetime) else value


def test_an_adoption_landed_twice_before_it_is_ingested_applies_once(fresh):
    snapshot_everything(fresh)
    zone = LandingZone(fresh.landing)
    with connect(fresh.warehouse) as con:
        first = land_adoption(con, zone, "run-1aaaa")
        second = land_adoption(con, zone, "run-2bbbb")
    results = run_core(fresh, first.batches + second.batches)

    assert first.events == second.events
    for batch_id in second.batches:
        validation = results[batch_id]["validation"]
        assert validation.duplicates > 0, "the same ids: duplicates"
        assert validation.validated == validation.dead_lettered == 0
    with connect(fresh.warehouse) as con:
        again = land_adoption(con, zone, "run-3cccc")
    assert again.entities == [] and again.landed == 0, "golden records hold something now"


def test_adoption_waits_for_a_batch_not_applied(fresh):
    snapshot_everything(fresh)
    zone = LandingZone(fresh.landing)
    with connect(fresh.warehouse) as con:
        first = land_adoption(con, zone, "run-1aaaa")
    with connect(fresh.warehouse) as con:  # the first batch ingested, not applied yet
        ingest_batch(con, zone.locate(first.batches[0]))
        waiting = land_adoption(con, zone, "run-2bbbb")

    assert waiting.waiting_for == [first.batches[0]]
    assert waiting.landed == 0


def test_an_entity_waits_while_a_snapshot_of_one_of_its_owners_failed(fresh):
    # Billing owns the customers' plan: without its snapshot the customers would be adopted
    # without plans, to be filled later only through review-gated missed events.
    snapshot_everything(fresh)
    with connect(fresh.warehouse) as con:
        failed = current().mapping("billing", "customer")
        record_attempt(con, failed, "run-1", error="billing cannot be reached")
        adopted = land_adoption(con, LandingZone(fresh.landing), "run-1")

    assert adopted.entities == ["order"]
    assert "billing cannot be reached" in adopted.not_adopted["customer"]
    assert {e["type"].split(".")[0] for e in landed_events(fresh)} == {"order"}


# -- syncctl run on the systems, end to end --------------------------------------------------------


def golden_differing_from_owners(con) -> Counter:
    """Per (entity, attribute): live golden records whose value is not the owner's row's (a live
    row preferred to a deleted one; NULL where the owner holds no row)."""
    differing: Counter = Counter()
    for catalog in current().entities.values():
        key = quote(catalog.key)
        for attribute in catalog.attributes:
            owner = (attribute.owner, catalog.name)
            source = current().mappings.get(owner)
            if source is None or attribute.name not in source.attributes:
                continue
            column = quote(attribute.name)
            differing[catalog.name, attribute.name] = con.execute(
                f"""SELECT count(*) FROM {quote(catalog.golden_table)} g
                    LEFT JOIN (SELECT * FROM {quote(snapshot_table(source))} QUALIFY
                        row_number() OVER (PARTITION BY {key} ORDER BY is_deleted, system_key) = 1
                    ) s ON s.{key} = g.{key}
                    WHERE g.lifecycle_state = 'live' AND g.{column} IS DISTINCT FROM s.{column}"""
            ).fetchone()[0]
    return differing


def unexplained(con) -> Counter:
    """Per (entity, register): golden values set, but by no validated event from their owner,
    sent by the reconciler, holding that very value."""
    found: Counter = Counter()
    for catalog in current().entities.values():
        golden = quote(catalog.golden_table)
        # the event log's PII columns opened, as apply reads them
        events = f"(SELECT {opened(catalog)} FROM {quote(catalog.events_table)})"
        for attribute in catalog.attributes:
            column, version = quote(attribute.name), quote(attribute.name + "__v")
            found[catalog.name, attribute.name] = con.execute(
                f"""SELECT count(*) FROM {golden} g WHERE g.{version} IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM {events} e WHERE e.version = g.{version}
                      AND e.origin = '{attribute.owner}' AND e.source = '{RECONCILER_SOURCE}'
                      AND e.{column} IS NOT DISTINCT FROM g.{column})"""
            ).fetchone()[0]
        found[catalog.name, "(lifecycle)"] = con.execute(
            f"""SELECT count(*) FROM {golden} g WHERE NOT EXISTS (
                SELECT 1 FROM {events} e WHERE e.version = g.lifecycle__v
                  AND e.origin = '{catalog.lifecycle_owner}' AND e.source = '{RECONCILER_SOURCE}'
                  AND e.action = CASE g.lifecycle_state WHEN 'live' THEN 'created'
                                                        ELSE 'deleted' END)"""
        ).fetchone()[0]
    return found


@pytest.mark.slow
def test_syncctl_run_adopts_existing_systems_and_deletes_nothing(fresh):
    home = fresh.root
    orphans_before = orphan_rows(fresh)

    first = syncctl(home, "run", "--json")
    checked = syncctl(home, "check", "--json")

    assert_no_traceback(first)
    ran = json.loads(first.stdout)
    assert ran["adoption"]["entities"] == ["customer", "order"]
    assert ran["adoption"]["orphans"] == {"billing": {"customer": 2}, "support": {"customer": 1}}
    assert ran["pending"] == 0 and ran["dead_lettered"] == 0 and ran["landed"] == ran["applied"]
    assert ran["landed"] == ran["adoption"]["landed"], "every event landed is an adoption's"
    # The drift in the systems that do not own the values was corrected...
    assert ran["corrections"]["emitted"] > 0
    assert ran["corrections"]["delivered"] == ran["corrections"]["emitted"]
    # ...and what is left is the orphans: reported, so the run says so and exits 1.
    assert ran["corrections"]["discrepancies_left"] == len(ORPHANS)
    assert first.returncode == 1 and "3 discrepancies left" in first.stderr
    found = [
        (f["system"], f["entity_key"], f["kind"], f["resolution"])
        for check in json.loads(checked.stdout)["checks"]
        for f in check["found"]
    ]
    assert sorted(found) == sorted((s, k, "extra", "orphan") for s, k in ORPHANS)
    assert orphan_rows(fresh) == orphans_before, "orphans are left as they were"
    with connect(fresh.warehouse, read_only=True) as con:
        assert sum(golden_differing_from_owners(con).values()) == 0
        assert sum(unexplained(con).values()) == 0, unexplained(con)
        actions = dict(
            con.execute("SELECT action, count(*) FROM corrections GROUP BY ALL").fetchall()
        )
        in_golden = con.execute(
            "SELECT count(*) FROM golden_customer WHERE customer_id IN ('C-999001', 'C-999002', 'C-999003')"
        ).fetchone()[0]
        lifecycles = con.execute(
            "SELECT count(*) FROM golden_customer g FULL JOIN snapshot_crm_customer s USING (customer_id)"
            " WHERE g.lifecycle_state IS DISTINCT FROM"
            " CASE WHEN s.is_deleted THEN 'deleted' ELSE 'live' END"
        ).fetchone()[0]
    assert "deleted" not in actions, actions
    assert in_golden == 0, "orphans are not invented into golden records"
    assert lifecycles == 0, "every contact of the CRM is a golden record, live or deleted as there"

    second = syncctl(home, "run", "--json")

    again = json.loads(second.stdout)
    assert again["runs"] == [] and again["adoption"]["run_id"] is None
    assert again["landed"] == ran["landed"], "no event landed"
    assert again["corrections"]["emitted"] == 0 and again["corrections"]["missed_events"] == 0
    assert again["corrections"]["discrepancies_left"] == len(ORPHANS)
    assert orphan_rows(fresh) == orphans_before
