"""Versioned event contracts: one pandera schema per (event type, schema version).

A payload version lists the fields its events carry and the catalog attribute each one holds; the
mapping is also the upcaster, since a later version only renames or adds fields. The versions are
data the team owns (`contracts/<entity>.yaml` in the project, loaded by `sync_assets/project/`);
older versions' events stay readable and are upcast to the current form before they are applied.

The rules per action:
- `created`: every required attribute is present and not null;
- `updated` and `reconciled`: at least one attribute; a required attribute may not be set to null;
- `deleted`: no attributes, the key in `subject` is all it needs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date

import polars as pl

from sync_assets.catalog.entities import Attribute, Entity
from sync_assets.catalog.events import SPECVERSION

KEY_COLUMN = "subject"


@dataclass(frozen=True)
class Split:
    """A field of an older version that holds several of today's attributes joined: upcast, its
    text is cut at `separator` into `into`, in order, the last taking the rest (`name` 'Ada
    King' into first and last name). Parts it does not have are missing (null)."""

    into: tuple[str, ...]
    separator: str = " "


@dataclass(frozen=True)
class PayloadVersion:
    entity: Entity
    version: int
    fields: dict[str, str]
    """Payload field name in this version -> catalog attribute it holds (a split field: itself,
    defined in `overrides`)."""
    overrides: dict[str, Attribute] = dataclass_field(default_factory=dict)
    """Attribute -> its definition in this version, where it differs from the catalog's."""
    defaults: dict[str, object] = dataclass_field(default_factory=dict)
    """Attribute -> the value created events of earlier versions, lacking it, take on upcast."""
    retired: bool = False
    """Events of a retired version are dead letters; it stays in the registry's history."""
    splits: dict[str, Split] = dataclass_field(default_factory=dict)
    """Field -> the attributes it is cut into when upcast."""

    def attribute(self, field_name: str) -> Attribute:
        """The attribute a field holds, as this version defines it."""
        name = self.fields[field_name]
        return self.overrides.get(name) or self.entity.attribute(name)

    @property
    def carried(self) -> set[str]:
        """The catalog attributes this version's events carry, split ones included."""
        whole = {a for f, a in self.fields.items() if f not in self.splits}
        return whole | {a for split in self.splits.values() for a in split.into}

    def attributes_of(self, field_name: str) -> tuple[str, ...]:
        """The catalog attributes a field sets: one, or the parts of a split."""
        split = self.splits.get(field_name)
        return split.into if split else (self.fields[field_name],)


@dataclass(frozen=True)
class Deprecation:
    attribute: str
    removal_version: int | None
    after: date | None
    note: str = ""


@dataclass(frozen=True)
class ContractPolicy:
    """What governs changes to an entity's event schemas (`contracts/<entity>.yaml`)."""

    compatibility: dict[str, str]
    """Action -> the compatibility mode its event type's new versions are held to."""
    approvers: tuple[str, ...] = ()
    """Consumers who must each sign off a change (empty: one sign-off by anyone)."""
    deprecated: tuple[Deprecation, ...] = ()


@dataclass(frozen=True)
class Contract:
    payload: PayloadVersion
    action: str

    @property
    def entity(self) -> Entity:
        return self.payload.entity

    @property
    def version(self) -> int:
        return self.payload.version

    @property
    def event_type(self) -> str:
        return f"{self.entity.name}.{self.action}"

    @property
    def name(self) -> str:
        return f"{self.event_type}/v{self.version}"

    @property
    def fields(self) -> dict[str, str]:
        """The payload fields this action accepts (none for deletes)."""
        return {} if self.action == "deleted" else self.payload.fields

    def required_fields(self) -> tuple[str, ...]:
        if self.action != "created":
            return ()
        return tuple(f for f in self.fields if self.payload.attribute(f).required)

    def non_nullable_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if self.payload.attribute(f).required)

    def upcast_renames(self) -> dict[str, str]:
        return {f: a for f, a in self.fields.items() if f != a}

    @functools.cached_property
    def schema(self):  # -> pandera.polars.DataFrameSchema (imported lazily: pandera is slow)
        return build_payload_schema(self)


POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "enum": pl.String(),
    "decimal": pl.Float64(),
    "timestamp": pl.Datetime("us", "UTC"),
    "boolean": pl.Boolean(),
}


def _attribute_checks(attribute: Attribute) -> list:
    import pandera.polars as pa

    checks = []
    if attribute.allowed:
        checks.append(pa.Check.isin(list(attribute.allowed)))
    if attribute.pattern:
        checks.append(pa.Check.str_contains(attribute.pattern))
    if attribute.minimum is not None:
        checks.append(pa.Check.ge(attribute.minimum))
    return checks


def build_payload_schema(contract: Contract):
    """The pandera schema of one contract, over a frame of `subject` plus one column per field."""
    import pandera.polars as pa

    entity_ = contract.entity
    required = set(contract.required_fields())
    columns = {
        KEY_COLUMN: pa.Column(
            pl.String,
            pa.Check.str_contains(entity_.key_pattern),
            nullable=False,
            description=f"The {entity_.name}'s canonical key ({entity_.key}).",
        )
    }
    for field_name in contract.fields:
        attribute = contract.payload.attribute(field_name)
        columns[field_name] = pa.Column(
            POLARS_TYPES[attribute.type],
            _attribute_checks(attribute),
            nullable=field_name not in required,
            required=True,
            description=attribute.description,
        )
    return pa.DataFrameSchema(
        columns,
        name=contract.name,
        description=f"Payload contract of {contract.event_type}, schema version {contract.version}",
        strict=False,
    )


@functools.cache
def build_envelope_schema(
    sources: tuple[str, ...], event_types: tuple[str, ...], systems: tuple[str, ...]
):
    """The pandera schema every event's envelope must satisfy before its payload is checked:
    its source, type and origin among the project's (`Project.sources`, `.event_types`,
    `.system_names`)."""
    import pandera.polars as pa

    return pa.DataFrameSchema(
        {
            "specversion": pa.Column(pl.String, pa.Check.isin([SPECVERSION]), nullable=False),
            "id": pa.Column(pl.String, pa.Check.str_length(min_value=1), nullable=False),
            "source": pa.Column(pl.String, pa.Check.isin(list(sources)), nullable=False),
            "type": pa.Column(pl.String, pa.Check.isin(list(event_types)), nullable=False),
            "time": pa.Column(pl.Datetime("us", "UTC"), nullable=False),
            "subject": pa.Column(pl.String, nullable=False),
            "datacontenttype": pa.Column(
                pl.String, pa.Check.isin(["application/json"]), nullable=True
            ),
            "schemaversion": pa.Column(pl.Int64, nullable=False),
            "correlationid": pa.Column(pl.String, nullable=False),
            "origin": pa.Column(pl.String, pa.Check.isin(list(systems)), nullable=False),
        },
        name="envelope",
        description="CloudEvents 1.0 envelope with Syncfabric's extensions",
        strict=False,
    )
