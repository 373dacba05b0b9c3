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

The events are written by DuckDB straight from the snapshots (`to_json` over the envelope of
`make_event`, field by field, with the values in event form): building them one by one in Python
took 30 µs an event, 10 s for a landscape of 100,000 customers and orders.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from sync_assets.catalog.entities import Entity
from sync_assets.catalog.events import RECONCILER_SOURCE, make_event
from sync_assets.connectors.mappings import Mapping
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.signatures import sign_lines
from sync_assets.ledger import pending_batches
from sync_assets.project import current
from sync_assets.reconcile.snapshot import current_snapshots, snapshot_table
from sync_assets.warehouse import quote, scalar, sql_literal


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
    not_adopted: dict[str, str] = field(default_factory=dict)
    """Entities with empty golden records left for a later run, and why (an owner's snapshot
    was not taken)."""

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
        return {
            "entities": self.entities,
            "events": events,
            "orphans": orphans,
            "not_adopted": self.not_adopted,
        }


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
    entities = []
    for name in empty_golden(con):
        missing = _owners_not_snapshotted(con, current().entity(name))
        if missing:
            adoption.not_adopted[name] = missing
        else:
            entities.append(name)
    if not entities:
        return adoption
    adoption.waiting_for = pending_batches(con)
    if adoption.waiting_for:
        return adoption
    by_owner: dict[str, list[str]] = {}
    for name in entities:
        catalog = current().entities[name]
        adoption.entities.append(name)
        for owner, action, sql in adoption_queries(con, catalog, run_id, now):
            lines = [line for (line,) in con.execute(sql).fetchall()]
            by_owner.setdefault(owner, []).extend(lines)
            if lines:
                adoption.events[owner, action] += len(lines)
        for system, count in orphans(con, catalog).items():
            adoption.orphans[system, name] = count
    stem = f"adopted-{now.strftime('%Y%m%dT%H%M%S')}-{run_id[:8]}"
    for owner, lines in by_owner.items():
        if not lines:
            continue
        owner_system = current().systems[owner]
        if owner_system.signing_key_env is not None:  # its channel wants its key
            lines = sign_lines(owner_system, (json.loads(line) for line in lines))
        adoption.batches.append(zone.write_batch(owner, stem, lines).batch_id)
    return adoption


def adoption_queries(
    con: duckdb.DuckDBPyConnection, catalog: Entity, run_id: str, now: datetime
) -> list[tuple[str, str, str]]:
    """(owner, action, SQL selecting one event line per record) for the entity's owners, per the
    table above."""
    lifecycle = _lifecycle_source(con, catalog)
    if lifecycle is None:
        return []
    key = quote(catalog.key)
    live_keys = f"SELECT {key} FROM {quote(snapshot_table(lifecycle))} WHERE NOT is_deleted"
    names = _owned(catalog, lifecycle, with_required=True)
    owner = lifecycle.system
    queries = [
        (
            owner,
            "created",
            _lines(catalog, lifecycle, "created", names, run_id, now, "NOT is_deleted"),
        ),
        (owner, "deleted", _lines(catalog, lifecycle, "deleted", [], run_id, now, "is_deleted")),
    ]
    for source in _sources(con, catalog):
        names = _owned(catalog, source, with_required=False)
        if source.system == owner or not names:
            continue
        said = " OR ".join(f"{quote(name)} IS NOT NULL" for name in names)
        where = f"{key} IN ({live_keys}) AND ({said})"  # all empty: nothing to say
        queries.append(
            (
                source.system,
                "reconciled",
                _lines(catalog, source, "reconciled", names, run_id, now, where),
            )
        )
    return queries


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


# -- the owners' rows as event lines ---------------------------------------------------------------


def _sources(con: duckdb.DuckDBPyConnection, catalog: Entity) -> list[Mapping]:
    """The entity's systems whose latest snapshot was taken (not failed), in the mappings'
    order."""
    taken, _ = current_snapshots(con, current().mappings_for(catalog.name))
    return taken


def _owners_not_snapshotted(con: duckdb.DuckDBPyConnection, catalog: Entity) -> str:
    """Why the entity cannot be adopted now: an owner (of its lifecycle or of an attribute a
    mapping holds) whose snapshot was not taken; '' when every owner's was. Adopting without one
    would build records that lack its values, to be filled later through review-gated missed
    events."""
    mappings = current().mappings_for(catalog.name)
    owners = {catalog.lifecycle_owner} | {
        catalog.owner_of(name) for m in mappings for name in m.attributes
    }
    _, skipped = current_snapshots(con, [m for m in mappings if m.system in owners])
    reasons = [f"{s.system}'s {s.entity} records: {s.reason}" for s in skipped]
    if catalog.lifecycle_owner not in {m.system for m in mappings}:
        reasons.append(f"{catalog.lifecycle_owner}, the lifecycle owner, has no mapping")
    return "; ".join(reasons)


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


def _lines(
    catalog: Entity,
    source: Mapping,
    action: str,
    names: list[str],
    run_id: str,
    now: datetime,
    where: str,
) -> str:
    """SQL: one event line per key of the system's snapshot (a live row preferred to a deleted
    one, then the lowest system key) that `where` keeps, in key order."""
    key = quote(catalog.key)
    rows = (
        f"SELECT * FROM {quote(snapshot_table(source))} WHERE {key} IS NOT NULL "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY is_deleted, system_key) = 1"
    )
    line = _envelope(catalog, source.system, action, names, run_id, now)
    return f"SELECT {line} FROM ({rows}) WHERE {where} ORDER BY {key}"


def _envelope(
    catalog: Entity, owner: str, action: str, names: list[str], run_id: str, now: datetime
) -> str:
    """SQL: the event of a snapshot row as JSON text. The envelope is `make_event`'s own: each
    field is a constant of it, or the row's key, id, causation or data where it has them."""
    key = quote(catalog.key)
    fill = {
        _KEY: key,
        _ID: f"{sql_literal(f'adopted-{catalog.name}-{owner}-')} || {key}",
        _CAUSE: f"{sql_literal(f'{run_id}/{owner}/{catalog.name}/')} || {key}",
    }
    template = make_event(
        event_type=f"{catalog.name}.{action}",
        subject=_KEY,
        origin=owner,
        data={},
        time=now,
        schema_version=current().current_version[catalog.name],
        event_id=_ID,
        causation_id=_CAUSE,
        source=RECONCILER_SOURCE,
    )
    fields = []
    for name, value in template.items():
        if name == "data":
            expression = _data(catalog, names)
        elif isinstance(value, str) and value in fill:
            expression = fill[value]
        else:
            expression = f"{sql_literal(json.dumps(value))}::JSON"
        fields.append(f"{quote(name)} := {expression}")
    return f"CAST(to_json(struct_pack({', '.join(fields)})) AS VARCHAR)"


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""`format_time`'s form, for DuckDB's strftime (tests/test_adoption.py holds the two together)."""

_KEY, _ID, _CAUSE = "\x00key", "\x00id", "\x00cause"
"""Stand-ins for the row's own values in the envelope `make_event` builds."""


def _data(catalog: Entity, names: list[str]) -> str:
    """SQL: the event's data, values as the contracts read them (times in RFC 3339 UTC)."""
    if not names:
        return "'{}'::JSON"
    values = []
    for name in names:
        value = quote(name)
        if catalog.attribute(name).type == "timestamp":
            value = f"strftime(timezone('UTC', {value}), {sql_literal(TIME_FORMAT)})"
        values.append(f"{quote(name)} := {value}")
    return f"struct_pack({', '.join(values)})"
