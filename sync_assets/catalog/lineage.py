"""Column lineage: which column of which system each golden attribute comes from, and where it goes.

Derived from the loaded project alone (the catalog's owners, each system's mappings), as plain
data that Dagster's `dagster/column_lineage` metadata, `syncctl lineage` and the lineage page all
read. One attribute's path through the flow:

    <owner> table.column ──normalized──▶ snapshot_<owner>_<entity>.<attribute>
          │ change events                     │ reconciled events (missed events, adoption)
          ▼                                   ▼
    validated_events <entity>.<attribute>  (table validated_<entity>_events)
          │ applied: the owner's newest value
          ▼
    golden_<entity>.<attribute>
          │ emitted where a system that does not own it drifts
          ▼
    corrections <entity>.<attribute> ──delivered──▶ delivered/<system> table.column

Every other system that maps the attribute is snapshotted too (its column -> its snapshot), and
is a destination of the corrections unless it reads the attribute through a lookup (which a
correction cannot write). Columns are named as their asset's column schema names them: a system's
columns as `table.column`, the assets that hold every entity (validated_events, corrections) as
`<entity>.<attribute>`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sync_assets.catalog.entities import Entity
from sync_assets.connectors.mappings import Field, Lookup, Mapping, raw_name
from sync_assets.errors import SyncfabricError
from sync_assets.project.model import Project

Stage = Literal["system", "snapshot", "events", "golden", "corrections", "destination"]
STAGES: tuple[Stage, ...] = ("system", "snapshot", "events", "golden", "corrections", "destination")

EVENTS_ASSET = "validated_events"
CORRECTIONS_ASSET = "corrections"


def destination_asset(system: str) -> str:
    """The asset key (as a user string) of a system as the destination of corrections."""
    return f"delivered/{system}"


def system_asset(system: str) -> str:
    return f"system_{system}"


def snapshot_asset(mapping: Mapping) -> str:
    return f"snapshot_{mapping.system}_{mapping.entity}"


@dataclass(frozen=True)
class Column:
    """One column of one asset."""

    stage: Stage
    asset: str
    """The asset's key as a user string: `system_crm`, `golden_customer`, `delivered/billing`."""
    column: str
    """The column's name in the asset's column schema."""
    table: str
    """The table the values sit in: the system's own table, or the warehouse's."""
    system: str | None = None
    """The system whose column it is (system, snapshot and destination stages)."""
    holds: str = ""
    """The `<entity>.<attribute>` (or key) whose values it holds."""

    @property
    def label(self) -> str:
        """How people read it: `crm contacts.email_address`, `golden_customer.email`."""
        if self.stage in ("system", "destination"):
            return f"{self.system} {self.column}"
        if self.stage == "events":
            return f"{self.table}.{self.column.split('.', 1)[1]}"
        if self.stage == "corrections":
            return f"{self.table} {self.column}"
        return f"{self.table}.{self.column}"

    def as_dict(self) -> dict[str, str | None]:
        return {
            "stage": self.stage,
            "asset": self.asset,
            "column": self.column,
            "table": self.table,
            "system": self.system,
            "holds": self.holds,
            "label": self.label,
        }


@dataclass(frozen=True)
class Edge:
    """Values of `source` flow into `target`; `how` says by what."""

    source: Column
    target: Column
    how: str


@dataclass(frozen=True)
class Node:
    """A column in an attribute's upstream or downstream tree, with how it is reached."""

    column: Column
    how: str
    children: tuple[Node, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            **self.column.as_dict(),
            "how": self.how,
            "children": [child.as_dict() for child in self.children],
        }

    def columns(self) -> Iterable[Column]:
        yield self.column
        for child in self.children:
            yield from child.columns()


@dataclass(frozen=True)
class AttributeLineage:
    entity: str
    attribute: str
    owner: str
    pii: bool
    is_key: bool
    golden: Column
    mapped_by: tuple[str, ...]
    """The systems that keep a column for it."""
    upstream: tuple[Node, ...]
    """From the golden column back to the systems' columns."""
    downstream: tuple[Node, ...]
    """From the golden column on to the destinations' columns."""
    compared: tuple[Node, ...]
    """The other systems' snapshot columns, which reconciliation compares with the golden one."""
    notes: tuple[str, ...]
    """What people should know: no system maps it, the owner keeps no column, a lookup."""

    @property
    def name(self) -> str:
        return f"{self.entity}.{self.attribute}"

    @property
    def unmapped(self) -> bool:
        return not self.mapped_by

    def as_dict(self) -> dict[str, object]:
        return {
            "entity": self.entity,
            "attribute": self.attribute,
            "owner": self.owner,
            "pii": self.pii,
            "key": self.is_key,
            "golden": self.golden.as_dict(),
            "mapped_by": list(self.mapped_by),
            "upstream": [node.as_dict() for node in self.upstream],
            "downstream": [node.as_dict() for node in self.downstream],
            "compared": [node.as_dict() for node in self.compared],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Lineage:
    """The project's column lineage: every edge, and each attribute's view of it."""

    edges: tuple[Edge, ...]
    attributes: dict[tuple[str, str], AttributeLineage]
    """(entity, attribute) -> its lineage; the entity's key first, then its attributes."""
    systems: tuple[str, ...] = ()
    """The project's systems, in its order."""

    def of_entity(self, entity: str) -> list[AttributeLineage]:
        return [a for (e, _), a in self.attributes.items() if e == entity]

    def columns(self, stage: Stage | None = None) -> list[Column]:
        """Every column the lineage names (of one stage), each once, in the order first met."""
        found = dict.fromkeys(c for e in self.edges for c in (e.source, e.target))
        found |= dict.fromkeys(a.golden for a in self.attributes.values())
        return [c for c in found if stage is None or c.stage == stage]

    def columns_of(self, asset: str) -> list[Column]:
        return [c for c in self.columns() if c.asset == asset]

    def deps_of(self, asset: str) -> dict[str, list[Column]]:
        """Column of `asset` -> the columns it is derived from (what Dagster's column lineage
        of the asset says)."""
        deps: dict[str, list[Column]] = {}
        for edge in self.edges:
            if edge.target.asset == asset:
                deps.setdefault(edge.target.column, []).append(edge.source)
        return deps

    def destinations(self) -> list[str]:
        """The systems that receive corrections, in the project's order."""
        found = {c.system for c in self.columns("destination")}
        return [s for s in self.systems if s in found]


def _system_column(mapping: Mapping, field: Field, stage: Stage) -> Column:
    source = field.source
    table = source.table if isinstance(source, Lookup) else mapping.table
    name = raw_name(source) if isinstance(source, Lookup) else f"{mapping.table}.{source}"
    asset = system_asset(mapping.system) if stage == "system" else destination_asset(mapping.system)
    holds = f"{mapping.entity}.{field.attribute}"
    return Column(stage, asset, name, table, mapping.system, holds)


def _snapshot_column(mapping: Mapping, attribute: str) -> Column:
    table = snapshot_asset(mapping)
    return Column(
        "snapshot", table, attribute, table, mapping.system, f"{mapping.entity}.{attribute}"
    )


def _normalized(field: Field) -> str:
    how = f"normalized ({field.rule})"
    if isinstance(field.source, Lookup):
        how += f", looked up in {field.source.table}"
    return how


def _written(field: Field) -> str:
    return f"written back ({field.style})" if field.style else "written back"


def build_lineage(project: Project) -> Lineage:
    """The column lineage of every entity's key and attributes in `project`."""
    edges: list[Edge] = []
    attributes: dict[tuple[str, str], AttributeLineage] = {}
    for entity in project.entities.values():
        mappings = project.mappings_for(entity.name)
        for name in (entity.key, *entity.attribute_names):
            found, lineage = _attribute(project, entity, name, mappings)
            edges += found
            attributes[entity.name, name] = lineage
    return Lineage(
        edges=tuple(dict.fromkeys(edges)), attributes=attributes, systems=project.system_names
    )


def _attribute(
    project: Project, entity: Entity, name: str, mappings: list[Mapping]
) -> tuple[list[Edge], AttributeLineage]:
    is_key = name == entity.key
    if is_key:
        owner, pii = entity.lifecycle_owner, False
        fields = {m.system: (m, m.canonical_key) for m in mappings}
    else:
        attribute = entity.attribute(name)
        owner, pii = attribute.owner, attribute.pii
        fields = {m.system: (m, m.field_for(name)) for m in mappings if name in m.attributes}
    holds = f"{entity.name}.{name}"
    events = Column("events", EVENTS_ASSET, holds, entity.events_table, holds=holds)
    golden = Column("golden", entity.golden_table, name, entity.golden_table, holds=holds)
    corrections = Column("corrections", CORRECTIONS_ASSET, holds, "corrections", holds=holds)
    edges: list[Edge] = []
    notes: list[str] = []

    # Each system's column is snapshotted; the owner's also feeds the events.
    snapshots: dict[str, Node] = {}
    for system, (mapping, field) in fields.items():
        source = _system_column(mapping, field, "system")
        snapshot = _snapshot_column(mapping, name)
        edges.append(Edge(source, snapshot, _normalized(field)))
        snapshots[system] = Node(
            snapshot, "compared with the golden record", (Node(source, _normalized(field)),)
        )

    upstream_events: list[Node] = []
    if owner in fields:
        mapping, field = fields[owner]
        source = _system_column(mapping, field, "system")
        by_events = f"{owner}'s change events"
        by_reconciled = "reconciled events from the snapshot (missed events, adoption)"
        edges.append(Edge(source, events, by_events))
        edges.append(Edge(snapshots[owner].column, events, by_reconciled))
        upstream_events = [
            Node(source, by_events),
            Node(snapshots[owner].column, by_reconciled, snapshots[owner].children),
        ]
    elif fields:
        notes.append(
            f"its owner {owner} keeps no column for it: its values come from {owner}'s events only"
        )
    applied = f"applied: {owner}'s newest value (last writer wins)"
    edges.append(Edge(events, golden, applied))
    upstream = (Node(events, applied, tuple(upstream_events)),)

    downstream: list[Node] = []
    if not is_key:
        targets: list[Node] = []
        for system, (mapping, field) in fields.items():
            if system == owner:
                continue
            if isinstance(field.source, Lookup):
                notes.append(
                    f"{system} reads it through {field.source.table}: compared, never corrected"
                )
                continue
            target = _system_column(mapping, field, "destination")
            targets.append(Node(target, _written(field)))
        if targets:
            emitted = "emitted where a system that does not own it drifts"
            edges.append(Edge(golden, corrections, emitted))
            edges += [Edge(corrections, t.column, t.how) for t in targets]
            downstream.append(Node(corrections, emitted, tuple(targets)))
        elif fields:
            notes.append(f"no system but its owner {owner} keeps it: nothing to correct")
    if not fields:
        notes.append(
            f"no system maps {entity.name}.{name}: it lives in the golden record only, "
            f"from {owner}'s events"
        )
    return edges, AttributeLineage(
        entity=entity.name,
        attribute=name,
        owner=owner,
        pii=pii,
        is_key=is_key,
        golden=golden,
        mapped_by=tuple(fields),
        upstream=upstream,
        downstream=tuple(downstream),
        compared=tuple(snapshots[s] for s in fields if s != owner),
        notes=tuple(notes),
    )


def select(lineage: Lineage, project: Project, target: str | None) -> list[AttributeLineage]:
    """The attributes `target` names: `entity.attribute`, `entity` (all of its attributes), or
    nothing (every entity's). An unknown name is an operator's error naming the known ones."""
    if not target:
        return list(lineage.attributes.values())
    entity_name, _, attribute = target.partition(".")
    if entity_name not in project.entities:
        raise SyncfabricError(
            f"unknown entity {entity_name!r}; the catalog has {', '.join(project.entities)}"
        )
    entity = project.entities[entity_name]
    if not attribute:
        return lineage.of_entity(entity_name)
    if (entity_name, attribute) not in lineage.attributes:
        known = ", ".join((entity.key, *entity.attribute_names))
        raise SyncfabricError(f"{entity_name} has no attribute {attribute!r}; it has {known}")
    return [lineage.attributes[entity_name, attribute]]
