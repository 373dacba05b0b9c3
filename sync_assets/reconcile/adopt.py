"""Adopting a landscape that already exists: golden records built from the owners' current rows.

A team starts with systems full of rows and no event history. While an entity's golden table is
empty, every row of every system looks `extra`, and there is nothing to judge drift against. So,
first, the golden records are built from the rows of the systems that own them, as events from
those owners (source `/syncfabric/reconciler`, origin the owner), landed, validated and applied
like any other, so the event log explains every golden value:

| the owner's snapshot row                                      | event                          |
| ------------------------------------------------------------- | ------------------------------ |
| the lifecycle owner's, live                                   | `<entity>.created` with the attributes it owns (and the required ones it holds) |
| the lifecycle owner's, deleted (a soft delete)                | `<entity>.deleted`             |
| an attribute owner's (live, or deleted: its values are still the owner's), for a key the lifecycle owner has live | `<entity>.reconciled` with the attributes it owns, unless all are empty |

Then the normal reconciliation corrects the other systems against them.

Rows that only systems not owning the lifecycle hold (a billing account whose customer the CRM
never had) are counted as orphans and left alone: never invented into golden records, never
deleted (the diff reports them with the resolution `orphan`).

Every event id is fixed by (entity, owner, key): an adoption landed twice before it was ingested
is recognised the second time as duplicates, not applied twice. Adoption waits while a landed
batch is not applied (it may be the events that fill the golden records).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from sync_assets.catalog.entities import Entity
from sync_assets.catalog.events import RECONCILER_SOURCE, make_event, to_line
from sync_assets.connectors.mappings import Mapping
from sync_assets.ingest.landing import LandingZone
from sync_assets.ledger import pending_batches
from sync_assets.project import current
from sync_assets.reconcile.missed import event_value
from sync_assets.reconcile.snapshot import snapshot_table
from sync_assets.warehouse import quote, scalar


@dataclass
class Adoption:
    """What an adoption landed, and what it left alone."""

    entities: list[str] = field(default_factory=list)
    """Entities whose golden records were built."""
    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Events landed by (owner, action)."""
    orphans: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Live rows only non-owners of the lifecycle hold, by (system, entity): left alone."""
    batches: list[str] = field(default_factory=list)
    waiting_for: list[str] = field(default_factory=list)
    """Batches not applied yet: adoption waited for them and landed nothing."""

    @property
    def landed(self) -> int:
        return sum(self.events.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for metadata and JSON: events {owner: {action: n}}, orphans {system:
        {entity: n}}."""
        events: dict[str, dict[str, int]] = {}
        for (owner, action), n in sorted(self.events.items()):
            events.setdefault(owner, {})[action] = n
        orphans: dict[str, dict[str, int]] = {}
        for (system, name), n in sorted(self.orphans.items()):
            orphans.setdefault(system, {})[name] = n
        return {"entities": self.entities, "events": events, "orphans": orphans}


def empty_golden(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Entities whose golden table holds no record at all: no event for them was ever applied."""
    present = {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
        ).fetchall()
    }
    return [
        name
        for name, catalog in current().entities.items()
        if catalog.golden_table not in present
        or not scalar(
            con, f"SELECT count(*) FROM (SELECT 1 FROM {quote(catalog.golden_table)} LIMIT 1)"
        )
    ]


def land_adoption(
    con: duckdb.DuckDBPyConnection, zone: LandingZone, run_id: str, now: datetime | None = None
) -> Adoption:
    """Land, for every entity whose golden records are empty, its owners' rows as their events
    (one batch per owner); what was landed and what was left alone.

    Reads the snapshots as they are: take them first (the `adoption` asset depends on them).
    """
    now = now or datetime.now(UTC)
    adoption = Adoption()
    entities = [
        name for name in empty_golden(con) if _lifecycle_source(con, current().entities[name])
    ]
    if not entities:
        return adoption
    adoption.waiting_for = pending_batches(con)
    if adoption.waiting_for:
        return adoption
    by_owner: dict[str, list[str]] = {}
    for name in entities:
        catalog = current().entities[name]
        adoption.entities.append(name)
        for owner, action, event in adoption_events(con, catalog, run_id, now):
            by_owner.setdefault(owner, []).append(to_line(event))
            adoption.events[owner, action] += 1
        for system, count in orphans(con, catalog).items():
            adoption.orphans[system, name] = count
    stem = f"adopted-{now.strftime('%Y%m%dT%H%M%S')}-{run_id[:8]}"
    for owner, lines in by_owner.items():
        adoption.batches.append(zone.write_batch(owner, stem, lines).batch_id)
    return adoption


def adoption_events(
    con: duckdb.DuckDBPyConnection, catalog: Entity, run_id: str, now: datetime
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(owner, action, event) for every record the entity's owners hold, per the table above."""
    lifecycle = _lifecycle_source(con, catalog)
    if lifecycle is None:
        return
    live = (
        f"SELECT {quote(catalog.key)} FROM {quote(snapshot_table(lifecycle))} WHERE NOT is_deleted"
    )
    names = _owned(catalog, lifecycle, with_required=True)
    for key, deleted, values in _rows(con, catalog, lifecycle, names):
        action = "deleted" if deleted else "created"
        data = {} if deleted else dict(zip(names, values, strict=True))
        yield (
            lifecycle.system,
            action,
            _event(catalog, lifecycle.system, action, key, data, run_id, now),
        )
    for source in _sources(con, catalog):
        names = _owned(catalog, source, with_required=False)
        if source.system == lifecycle.system or not names:
            continue
        for key, _, values in _rows(con, catalog, source, names, within=live, skip_empty=True):
            data = dict(zip(names, values, strict=True))
            yield (
                source.system,
                "reconciled",
                _event(catalog, source.system, "reconciled", key, data, run_id, now),
            )


def orphans(con: duckdb.DuckDBPyConnection, catalog: Entity) -> dict[str, int]:
    """Live rows, by system, of keys the lifecycle owner's snapshot does not hold at all."""
    lifecycle = _lifecycle_source(con, catalog)
    if lifecycle is None:
        return {}
    key = quote(catalog.key)
    found = {}
    for source in _sources(con, catalog):
        if source.system == lifecycle.system:
            continue
        count = scalar(
            con,
            f"SELECT count(DISTINCT s.{key}) FROM {quote(snapshot_table(source))} s "
            f"ANTI JOIN {quote(snapshot_table(lifecycle))} l ON l.{key} = s.{key} "
            "WHERE NOT s.is_deleted",
        )
        if count:
            found[source.system] = int(count)
    return found


# -- reading the owners' rows ----------------------------------------------------------------------


def _sources(con: duckdb.DuckDBPyConnection, catalog: Entity) -> list[Mapping]:
    """The entity's systems whose snapshot exists, in the mappings' order."""
    tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return [
        m
        for m in current().mappings.values()
        if m.entity == catalog.name and snapshot_table(m) in tables
    ]


def _lifecycle_source(con: duckdb.DuckDBPyConnection, catalog: Entity) -> Mapping | None:
    return next((m for m in _sources(con, catalog) if m.system == catalog.lifecycle_owner), None)


def _owned(catalog: Entity, source: Mapping, *, with_required: bool) -> list[str]:
    """The attributes the system holds and owns; with `with_required`, also the required ones it
    holds (a `created` must carry them; the owner's own event then sets their golden value)."""
    return [
        name
        for name in source.attributes
        if catalog.owner_of(name) == source.system
        or (with_required and catalog.attribute(name).required)
    ]


def _rows(
    con: duckdb.DuckDBPyConnection,
    catalog: Entity,
    source: Mapping,
    names: list[str],
    *,
    within: str | None = None,
    skip_empty: bool = False,
) -> Iterator[tuple[str, bool, list[Any]]]:
    """(key, deleted, values in event form) of each key of a snapshot, once: a live row wins over
    a deleted one, then the lowest system key. `within`: SQL selecting the keys to keep;
    `skip_empty`: leave out rows whose values are all empty (they would say nothing)."""
    key = quote(catalog.key)
    columns = "".join(f", {quote(name)}" for name in names)
    within_sql = "" if within is None else f" AND s.{key} IN ({within})"
    nonempty = " AND ".join(f"{quote(name)} IS NULL" for name in names)
    cursor = con.execute(
        f"""SELECT * FROM (
                SELECT {key}, is_deleted{columns} FROM {quote(snapshot_table(source))} s
                WHERE s.{key} IS NOT NULL{within_sql}
                QUALIFY row_number() OVER (PARTITION BY s.{key} ORDER BY is_deleted, system_key) = 1)
            {f"WHERE NOT ({nonempty})" if skip_empty else ""}
            ORDER BY {key}"""
    )
    while chunk := cursor.fetchmany(10_000):
        for row in chunk:
            yield row[0], row[1], [event_value(value) for value in row[2:]]


def _event(
    catalog: Entity,
    owner: str,
    action: str,
    key: str,
    data: dict[str, Any],
    run_id: str,
    now: datetime,
) -> dict[str, Any]:
    return make_event(
        event_type=f"{catalog.name}.{action}",
        subject=key,
        origin=owner,
        data=data,
        time=now,
        schema_version=current().current_version[catalog.name],
        event_id=f"adopted-{catalog.name}-{owner}-{key}",
        causation_id=f"{run_id}/{owner}/{catalog.name}/{key}",
        source=RECONCILER_SOURCE,
    )
