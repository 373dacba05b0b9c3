"""A loaded Syncfabric project: the landscape as the pipeline reads it.

`Project` holds what the project's files declare, already checked against each other: the
systems, the catalog's entities, how each system stores each entity (`Mapping`), and the event
schema versions. Everything else (contracts, event types, the pairs of systems reconciliation
compares) is derived here, once, so no code needs to know a system or an entity by name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sync_assets.catalog.contracts import Contract, ContractPolicy, PayloadVersion
from sync_assets.catalog.entities import Entity
from sync_assets.catalog.events import ACTIONS, RECONCILER_SOURCE
from sync_assets.connectors.mappings import Mapping


@dataclass(frozen=True)
class Thresholds:
    """What the reconciliation checks judge by, and the review gate of mass corrections with them:
    ERROR past `error_rate` of the rows compared, and at least `error_floor` discrepancies."""

    error_rate: float = 0.01
    error_floor: int = 10

    def error_above(self, rows_compared: int) -> int:
        return max(self.error_floor, int(rows_compared * self.error_rate))


@dataclass(frozen=True)
class AlertLimits:
    """What the alerts judge one system by (sync_assets/operate/alerts.py); syncfabric.yaml's
    `alerts:` sets them for all systems, `alerts.systems.<system>` for one."""

    dead_letters_held: int = 100
    """Ingest dead letters held (not redriven) from the system above this."""
    ingest_latency_s: float = 3600.0
    """Publish-to-ingest SLA: an event's time to its batch's ingestion."""
    delivery_latency_ms: float = 10_000.0
    """A delivery attempt to the system slower than this."""
    consecutive_failures: int = 3
    """Failed delivery attempts in a row to the system, or its dead letters held, from this many."""
    batch_within_s: float = 86_400.0
    """Stale when the system's last batch landed longer ago than this."""
    snapshot_within_s: float = 7_200.0
    """Stale when the system's last successful snapshot is older than this."""
    bus_pending: int = 10_000
    """Messages on the system's subjects its bus consumer has not had acknowledged, above this."""
    bus_oldest_s: float = 3_600.0
    """...or the oldest of them stored longer ago than this (seconds)."""


@dataclass(frozen=True)
class AlertSettings:
    defaults: AlertLimits = AlertLimits()
    systems: dict[str, AlertLimits] = field(default_factory=dict)
    correlation_ids: int = 5
    """At most this many correlation ids named in an alert."""

    def limits(self, system: str) -> AlertLimits:
        return self.systems.get(system, self.defaults)


@dataclass(frozen=True)
class Settings:
    name: str
    description: str = ""
    schedule: str = "0 * * * *"
    thresholds: Thresholds = Thresholds()
    alerts: AlertSettings = AlertSettings()
    seed: str | None = None
    """The project's example-data package, relative to its folder (`syncctl demo`)."""


@dataclass(frozen=True)
class System:
    name: str
    kind: Literal["sql", "http"]
    url_env: str
    """The environment variable holding the system's URL (credentials included)."""
    description: str = ""
    write_url_env: str | None = None
    """The variable of the URL deliveries write through, when not `url_env` (a writer role)."""
    delivery: dict[str, Any] = field(default_factory=dict)
    """How corrections are delivered to it (`DeliveryFile`'s fields: retries, batches,
    concurrency, timeout); the defaults where empty."""

    landing: str = ""
    """The system's landing folder (under <data>/landing/); its name unless the file says."""
    signing_key_env: str | None = None
    """The environment variable holding the key its events are signed with, if they are."""
    outbox: str | None = None
    """The outbox table in the system's database its events are read from, if it has one
    (`channels.outbox`); they land in its landing folder as batch files."""

    @property
    def writer_env(self) -> str:
        """The variable deliveries take their URL from: `write_url_env`, else `url_env`."""
        return self.write_url_env or self.url_env

    def __post_init__(self) -> None:
        if not self.landing:
            object.__setattr__(self, "landing", self.name)

    @property
    def channel(self) -> str:
        """The channel the system's events arrive through, as reasons name it."""
        return f"landing/{self.landing}/"

    @property
    def source(self) -> str:
        """The CloudEvents source of the system's own events."""
        return f"/systems/{self.name}"


@dataclass(frozen=True)
class Project:
    root: Path
    settings: Settings
    systems: dict[str, System]
    entities: dict[str, Entity]
    mappings: dict[tuple[str, str], Mapping]
    """(system, entity) -> how that system stores that entity."""
    payload_versions: dict[tuple[str, int], PayloadVersion]
    """(entity, version) -> the payload version; retired ones included (the registry's history)."""
    contract_policies: dict[str, ContractPolicy] = field(default_factory=dict)
    """Entity -> what governs changes to its event schemas (compatibility, approvers, deprecations)."""

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def system_names(self) -> tuple[str, ...]:
        return tuple(self.systems)

    @property
    def outbox_systems(self) -> tuple[System, ...]:
        """The systems whose events are also read from an outbox table in their database."""
        return tuple(s for s in self.systems.values() if s.outbox)

    @functools.cached_property
    def landing_systems(self) -> dict[str, str]:
        """Landing folder -> the one system bound to it (load.py refuses a folder bound twice)."""
        return {s.landing: s.name for s in self.systems.values()}

    def entity(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            raise KeyError(
                f"unknown entity {name!r}; the catalog has {sorted(self.entities)}"
            ) from None

    def mapping(self, system: str, entity_name: str) -> Mapping:
        try:
            return self.mappings[system, entity_name]
        except KeyError:
            raise KeyError(f"no mapping for {entity_name!r} in {system!r}") from None

    def mappings_for(self, entity_name: str) -> list[Mapping]:
        return [m for m in self.mappings.values() if m.entity == entity_name]

    def comparable_pairs(self, entity_name: str) -> list[tuple[Mapping, Mapping]]:
        """Pairs of systems holding the same entity with attributes in common."""
        found = self.mappings_for(entity_name)
        return [
            (left, right)
            for i, left in enumerate(found)
            for right in found[i + 1 :]
            if set(left.attributes) & set(right.attributes)
        ]

    @functools.cached_property
    def contracts(self) -> dict[tuple[str, int], Contract]:
        """(event type, schema version) -> its contract."""
        return {
            (f"{payload.entity.name}.{action}", payload.version): Contract(payload, action)
            for payload in self.payload_versions.values()
            if not payload.retired
            for action in ACTIONS
        }

    @functools.cached_property
    def current_version(self) -> dict[str, int]:
        """Entity -> the schema version Syncfabric writes and upcasts to (the last one)."""
        return {
            name: max(v for (e, v) in self.payload_versions if e == name) for name in self.entities
        }

    def versions_of(self, entity_name: str) -> list[PayloadVersion]:
        """The entity's schema versions, oldest first, retired ones included."""
        return [p for (e, _), p in sorted(self.payload_versions.items()) if e == entity_name]

    def upcast_defaults(self, payload: PayloadVersion) -> dict[str, object]:
        """Attribute -> the value a created event of `payload`'s version takes for an attribute
        it does not carry: a later version's declared default (the latest one's, the reader's)."""
        carried = payload.carried
        found: dict[str, object] = {}
        for later in self.versions_of(payload.entity.name):
            if later.version > payload.version:
                found |= {a: v for a, v in later.defaults.items() if a not in carried}
        return found

    def contract_for(self, event_type: str, version: int) -> Contract:
        try:
            return self.contracts[(event_type, version)]
        except KeyError:
            known = sorted(v for (t, v) in self.contracts if t == event_type)
            raise KeyError(
                f"no contract for {event_type} version {version}; known versions: {known}"
            ) from None

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(f"{e}.{a}" for e in self.entities for a in ACTIONS)

    @property
    def sources(self) -> tuple[str, ...]:
        return (*(s.source for s in self.systems.values()), RECONCILER_SOURCE)
