"""The catalog's shapes: an entity, its key and its attributes, as the pipeline reads them.

The catalog itself is data the team owns: `catalog/<entity>.yaml` in the project folder, loaded by
`sync_assets/project/`. Each entity declares its key, its attributes (type, allowed values, owner,
PII, description) and which system owns its lifecycle (creates and deletes it). Contracts, DuckDB
tables, assets and the docs are all derived from these declarations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sync_assets.catalog.rules import Rule

AttributeType = Literal["string", "enum", "decimal", "timestamp", "boolean"]

DECIMAL_DIGITS, DECIMAL_PLACES = 18, 2
"""Decimal attributes are stored as DECIMAL(18, 2): rounded to 2 places, below 10^16 in absolute
value. Validation dead-letters a value that does not fit, as the insert would fail on it."""


@dataclass(frozen=True)
class Attribute:
    name: str
    type: AttributeType
    owner: str
    description: str
    required: bool = False
    """Must be present and non-null when the entity is created."""
    allowed: tuple[str, ...] = ()
    pattern: str | None = None
    """A regular expression the value must contain a match of (polars, i.e. Rust, syntax). Write
    digits as [0-9]: Rust's \\d also matches non-ASCII digits such as Arabic-Indic ones."""
    minimum: float | None = None
    pii: bool = False
    compare: Literal["exact", "whitespace", "casefold"] = "exact"
    """How reconciliation compares text: exactly, ignoring runs of spaces, or also ignoring case."""
    tolerance: float = 0
    """Reconciliation ignores a numeric difference up to this much."""
    timestamp_precision: str | None = None
    """Reconciliation compares timestamps truncated to this unit (e.g. 'minute'), if set."""

    @property
    def described(self) -> str:
        """The catalog's description with its owner and PII mark: what every column of this
        attribute says in Dagster (golden records, snapshots, the registry)."""
        return f"{self.description} Owned by {self.owner}.{' PII.' if self.pii else ''}"

    @property
    def nullable(self) -> bool:
        return not self.required

    @property
    def duckdb_type(self) -> str:
        return {
            "string": "VARCHAR",
            "enum": "VARCHAR",
            "decimal": f"DECIMAL({DECIMAL_DIGITS}, {DECIMAL_PLACES})",
            "timestamp": "TIMESTAMPTZ",
            "boolean": "BOOLEAN",
        }[self.type]


@dataclass(frozen=True)
class Entity:
    name: str
    key: str
    key_pattern: str
    """The canonical key's pattern; ASCII digits only ([0-9], not \\d), like every pattern."""
    lifecycle_owner: str
    """The system whose create and delete events decide whether the entity exists."""
    description: str
    consumers: tuple[str, ...] = ()
    """The teams or systems that read the entity's events (who signs off a schema change)."""
    attributes: tuple[Attribute, ...] = field(default_factory=tuple)
    on_undeliverable: Literal["hold", "compensate"] = "hold"
    """When a correction cannot reach one system: hold the others and alert, or put them back
    (see sync_assets/deliver/outbox.py). Delivery config can override it per entity."""
    business_rules: tuple[str, ...] = ()
    """The rules the business holds the entity to, in words, for the people reading the catalog."""
    rules: tuple[Rule, ...] = ()
    """The business rules written as data, which the asset checks run (catalog/rules.py)."""

    def attribute(self, name: str) -> Attribute:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        raise KeyError(f"{self.name} has no attribute {name!r}")

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(attribute.name for attribute in self.attributes)

    @property
    def pii_attributes(self) -> frozenset[str]:
        return frozenset(a.name for a in self.attributes if a.pii)

    def owner_of(self, attribute: str) -> str:
        return self.attribute(attribute).owner

    @property
    def golden_table(self) -> str:
        return f"golden_{self.name}"

    @property
    def events_table(self) -> str:
        return f"validated_{self.name}_events"
