"""How each system stores each catalog entity, written out as plain data.

One `Mapping` per (system, entity) says where the rows are, which column holds the canonical key,
which canonical attribute each column holds and how its values are normalized, how a deleted
record shows, and which golden records the system is expected to hold at all. The demo systems'
`LAYOUTS` (sync_assets/demo/systems.py) describe the same tables; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sync_assets.catalog.entities import entity

Rule = Literal[
    "text",  # trimmed; empty means NULL
    "lower",  # trimmed, lower case
    "upper",  # trimmed, upper case
    "phone",  # '+44 7700 900123' -> '+447700900123' (E.164)
    "cents",  # integer cents -> decimal amount
    "decimal",  # a decimal amount as it is
    "boolean",  # 1/0, true/false, yes/no
    "epoch",  # epoch seconds -> UTC timestamp
    "timestamp",  # text in `format` (strptime), in UTC -> UTC timestamp
    "vocabulary",  # the system's words -> catalog values, see Field.vocabulary
]

Style = Literal["as_is", "lower", "upper", "capitalize"]
"""How a system writes text it receives: a correction is written the way the system writes it."""


@dataclass(frozen=True)
class Lookup:
    """A value found in another table of the same system (a cross-reference)."""

    table: str
    on: dict[str, str]
    """Column here -> column there; several pairs for a composite key."""
    value: str
    """The column there that holds the value wanted."""


@dataclass(frozen=True)
class Field:
    attribute: str
    """The catalog attribute, or the entity's key."""
    source: str | Lookup
    """The column holding it, or a lookup through another table."""
    rule: Rule = "text"
    format: str | None = None
    """strptime format of a `timestamp` column, e.g. '%d/%m/%Y %H:%M'."""
    vocabulary: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    """System word (any case) -> catalog value. A word standing for several catalog values (a
    lossy vocabulary) maps to all of them, and matches any of them when compared."""
    style: Style | None = None
    """How the system writes the text; None: as the rule reads it (lower, upper, else as is)."""


@dataclass(frozen=True)
class SoftDelete:
    """The system keeps a deleted record's row and marks it: `column` holds `value`."""

    column: str
    value: str
    """Compared as text, ignoring case."""
    live: str | None = None
    """What the column holds while the record lives, when no field writes it (e.g. '0')."""


@dataclass(frozen=True)
class Stamp:
    """A column the system fills itself (a creation date, a last-change time), which a write
    made by Syncfabric must fill the same way: `format` is a strftime format or 'epoch'."""

    column: str
    format: str
    on: Literal["create", "write"] = "write"


@dataclass(frozen=True)
class Mapping:
    system: str
    entity: str
    table: str
    key: tuple[str, ...]
    """The system's own primary key column(s)."""
    canonical_key: Field
    fields: tuple[Field, ...]
    soft_delete: SoftDelete | None
    """None: the system hard-deletes, a deleted record's row is gone."""
    scope: tuple[str, ...] = ()
    """Golden attributes a live record must have (not NULL) for the system to hold it."""
    stamps: tuple[Stamp, ...] = ()
    schema: str | None = None
    description: str = ""

    @property
    def name(self) -> str:
        return f"{self.system}_{self.entity}"

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(f.attribute for f in self.fields)

    def field_for(self, attribute: str) -> Field:
        return next(f for f in self.fields if f.attribute == attribute)


def raw_name(source: str | Lookup) -> str:
    """The name a source's values carry in the raw rows streamed from the system."""
    if isinstance(source, Lookup):
        return f"{source.table}.{source.value}"
    return source


def raw_columns(mapping: Mapping) -> tuple[str, ...]:
    """Every raw column a mapping reads: its keys, its fields and its delete marker."""
    names = [*mapping.key, raw_name(mapping.canonical_key.source)]
    names += [raw_name(f.source) for f in mapping.fields]
    if mapping.soft_delete:
        names.append(mapping.soft_delete.column)
    return tuple(dict.fromkeys(names))


CRM_CUSTOMER = Mapping(
    system="crm",
    entity="customer",
    table="contacts",
    key=("contact_id",),
    canonical_key=Field("customer_id", "contact_id"),
    fields=(
        Field("email", "email_address", "lower"),
        Field("full_name", "display_name"),
        Field("phone", "phone", "phone"),
        Field("country", "country_code", "upper", style="lower"),
        Field("status", "lifecycle_status", "lower", style="capitalize"),
        Field("marketing_opt_in", "marketing_opt_in", "boolean"),
        Field("plan", "plan_name", "lower", style="capitalize"),
    ),
    soft_delete=SoftDelete("deleted", "1", live="0"),
    stamps=(Stamp("created_on", "%Y-%m-%d %H:%M:%S", on="create"),),
    description="Every customer ever created; the CRM is where customers are born.",
)

BILLING_CUSTOMER = Mapping(
    system="billing",
    entity="customer",
    table="accounts",
    key=("acct_no",),
    canonical_key=Field("customer_id", "customer_ref"),
    fields=(
        Field("email", "billing_email", "lower", style="upper"),
        Field("plan", "plan", "lower", style="upper"),
        Field("status", "account_state", "lower", style="upper"),
        Field("country", "country", "upper"),
    ),
    soft_delete=SoftDelete("account_state", "CLOSED"),
    scope=("plan",),
    stamps=(Stamp("updated", "%d/%m/%Y"),),
    description="An account per customer with a plan; closed, not deleted, when they leave.",
)

BILLING_ORDER = Mapping(
    system="billing",
    entity="order",
    table="orders",
    key=("order_number",),
    canonical_key=Field("order_id", "order_number"),
    fields=(
        Field(
            "customer_id",
            Lookup("accounts", on={"acct_no": "acct_no"}, value="customer_ref"),
        ),
        Field("status", "state", "lower", style="upper"),
        Field("amount", "total_cents", "cents"),
        Field("currency", "currency", "upper", style="lower"),
        Field("placed_at", "placed", "timestamp", format="%d/%m/%Y %H:%M"),
    ),
    soft_delete=SoftDelete("voided", "1", live="0"),
    description="Every order ever taken; voided, not deleted.",
)

SUPPORT_CUSTOMER = Mapping(
    system="support",
    entity="customer",
    table="users",
    key=("id",),
    canonical_key=Field("customer_id", "external_id"),
    fields=(
        Field("email", "email", "lower"),
        Field("full_name", "name"),
        Field("support_tier", "tier", "lower", style="capitalize"),
        Field(
            "status",
            "state",
            "vocabulary",
            vocabulary={"enabled": "active", "disabled": ("inactive", "suspended")},
        ),
    ),
    soft_delete=None,
    scope=("support_tier",),
    stamps=(Stamp("updated_at", "epoch"),),
    description="A user per live customer who reached the desk; deleted customers' users are gone.",
)

MAPPINGS: dict[tuple[str, str], Mapping] = {
    (m.system, m.entity): m
    for m in (CRM_CUSTOMER, BILLING_CUSTOMER, BILLING_ORDER, SUPPORT_CUSTOMER)
}


def mapping(system: str, entity_name: str) -> Mapping:
    try:
        return MAPPINGS[system, entity_name]
    except KeyError:
        raise KeyError(f"no mapping for {entity_name!r} in {system!r}") from None


def mappings_for(entity_name: str) -> list[Mapping]:
    return [m for m in MAPPINGS.values() if m.entity == entity_name]


def shared_attributes(left: Mapping, right: Mapping) -> tuple[str, ...]:
    return tuple(a for a in left.attributes if a in right.attributes)


def comparable_pairs(entity_name: str) -> list[tuple[Mapping, Mapping]]:
    """Pairs of systems holding the same entity with attributes in common."""
    found = mappings_for(entity_name)
    return [
        (left, right)
        for i, left in enumerate(found)
        for right in found[i + 1 :]
        if shared_attributes(left, right)
    ]


def check_mapping(m: Mapping) -> None:
    """Raise ValueError if a mapping names something the catalog does not know."""
    catalog = entity(m.entity)
    if m.canonical_key.attribute != catalog.key:
        raise ValueError(f"{m.name}: canonical key must be {catalog.key!r}")
    for name in (*m.attributes, *m.scope):
        catalog.attribute(name)  # KeyError for an unknown attribute
    for f in m.fields:
        if f.rule == "timestamp" and not f.format:
            raise ValueError(f"{m.name}.{f.attribute}: a timestamp rule needs a format")
        if (f.rule == "vocabulary") != bool(f.vocabulary):
            raise ValueError(f"{m.name}.{f.attribute}: vocabulary goes with rule 'vocabulary'")
