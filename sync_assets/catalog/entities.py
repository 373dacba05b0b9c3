"""The catalog: the single source of truth for what Syncfabric keeps in sync.

Each entity declares its key, its attributes (type, allowed values, owner, PII, description) and
which system owns its lifecycle (creates and deletes it). Contracts, DuckDB tables, assets and the
docs are all derived from these declarations; change an entity here and everything follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AttributeType = Literal["string", "enum", "decimal", "timestamp", "boolean"]

SYSTEMS: tuple[str, ...] = ("crm", "billing", "support")

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
    attributes: tuple[Attribute, ...] = field(default_factory=tuple)
    on_undeliverable: Literal["hold", "compensate"] = "hold"
    """When a correction cannot reach one system: hold the others and alert, or put them back
    (see sync_assets/deliver/outbox.py). Delivery config can override it per entity."""

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


CUSTOMER = Entity(
    name="customer",
    key="customer_id",
    key_pattern=r"^C-[0-9]{6}$",
    lifecycle_owner="crm",
    description="A person or company that buys from us; the CRM is where customers are born.",
    attributes=(
        Attribute(
            "email",
            "string",
            owner="crm",
            required=True,
            pii=True,
            pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$",
            compare="casefold",
            description="Primary contact address, lower case.",
        ),
        Attribute(
            "full_name",
            "string",
            owner="crm",
            required=True,
            pii=True,
            pattern=r"\S",
            compare="whitespace",
            description="Display name; called `name` in schema version 1.",
        ),
        Attribute(
            "phone",
            "string",
            owner="crm",
            pii=True,
            pattern=r"^\+[1-9][0-9]{6,14}$",
            description="Phone number in E.164 form, e.g. +442071838750.",
        ),
        Attribute(
            "country",
            "string",
            owner="crm",
            required=True,
            pattern=r"^[A-Z]{2}$",
            description="ISO 3166-1 alpha-2 country code, upper case.",
        ),
        Attribute(
            "status",
            "enum",
            owner="crm",
            required=True,
            allowed=("active", "inactive", "suspended"),
            description="Whether the customer may buy and log in.",
        ),
        Attribute(
            "marketing_opt_in",
            "boolean",
            owner="crm",
            description="Consent to marketing e-mail; added in schema version 2.",
        ),
        Attribute(
            "plan",
            "enum",
            owner="billing",
            allowed=("free", "starter", "pro", "enterprise"),
            description="The subscription plan billing charges for.",
        ),
        Attribute(
            "support_tier",
            "enum",
            owner="support",
            allowed=("standard", "priority"),
            description="The service level the support desk gives.",
        ),
    ),
)

ORDER = Entity(
    name="order",
    key="order_id",
    key_pattern=r"^O-[0-9]{7}$",
    lifecycle_owner="billing",
    description="A purchase by a customer; billing takes and settles orders.",
    attributes=(
        Attribute(
            "customer_id",
            "string",
            owner="billing",
            required=True,
            pattern=r"^C-[0-9]{6}$",
            description="The canonical key of the customer who placed the order.",
        ),
        Attribute(
            "status",
            "enum",
            owner="billing",
            required=True,
            allowed=("pending", "paid", "shipped", "cancelled", "refunded"),
            description="Where the order is in its life.",
        ),
        Attribute(
            "amount",
            "decimal",
            owner="billing",
            required=True,
            minimum=0,
            tolerance=0.01,  # a system rounding a converted amount may differ by a cent
            description="Order total in `currency`, two decimals.",
        ),
        Attribute(
            "currency",
            "enum",
            owner="billing",
            required=True,
            allowed=("USD", "EUR", "GBP"),
            description="ISO 4217 currency code of `amount`.",
        ),
        Attribute(
            "placed_at",
            "timestamp",
            owner="billing",
            required=True,
            timestamp_precision="minute",  # billing keeps the minute only
            description="When the customer placed the order (UTC).",
        ),
    ),
)

ENTITIES: dict[str, Entity] = {entity.name: entity for entity in (CUSTOMER, ORDER)}


def entity(name: str) -> Entity:
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; the catalog has {sorted(ENTITIES)}") from None
