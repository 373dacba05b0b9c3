"""Versioned contracts: one pandera schema per (event type, schema version), derived from the
catalog, with the upcast from version 1 of the customer events."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pandera.polars as pa
import polars as pl
import pytest
from pandera.errors import SchemaError, SchemaErrors

from sync_assets.catalog.contracts import KEY_COLUMN, build_envelope_schema
from sync_assets.catalog.events import ACTIONS
from sync_assets.project import current

# One valid value per (entity, attribute), to build a frame every contract must accept.
VALID = {
    ("customer", "email"): "ada@example.com",
    ("customer", "full_name"): "Ada Lovelace",
    ("customer", "phone"): "+442071838750",
    ("customer", "country"): "GB",
    ("customer", "status"): "active",
    ("customer", "marketing_opt_in"): True,
    ("customer", "plan"): "pro",
    ("customer", "support_tier"): "priority",
    ("order", "customer_id"): "C-000001",
    ("order", "status"): "paid",
    ("order", "amount"): 12.5,
    ("order", "currency"): "EUR",
    ("order", "placed_at"): datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
}
KEYS = {"customer": "C-000001", "order": "O-0000001"}
CONTRACT_IDS = [f"{t}/v{v}" for (t, v) in current().contracts]


def frame(contract, **overrides) -> pl.DataFrame:
    """A one-row payload frame for `contract`: valid values unless overridden."""
    entity = contract.entity.name
    values = {KEY_COLUMN: KEYS[entity]}
    values |= {f: VALID[(entity, a)] for f, a in contract.fields.items()}
    values |= overrides
    schema = {KEY_COLUMN: pl.String}
    for field_name, attribute_name in contract.fields.items():
        schema[field_name] = {
            "string": pl.String,
            "enum": pl.String,
            "decimal": pl.Float64,
            "timestamp": pl.Datetime("us", "UTC"),
            "boolean": pl.Boolean,
        }[contract.entity.attribute(attribute_name).type]
    return pl.DataFrame({k: [v] for k, v in values.items()}, schema=schema)


def test_every_event_type_and_payload_version_has_a_contract():
    expected = {
        (f"{entity}.{action}", version)
        for (entity, version) in current().payload_versions
        for action in ACTIONS
    }
    assert set(current().contracts) == expected
    assert {t for (t, _) in current().contracts} == set(current().event_types)
    assert current().current_version == {"customer": 2, "order": 1}


@pytest.mark.parametrize("key", list(current().contracts), ids=CONTRACT_IDS)
def test_every_contract_builds_a_pandera_schema_that_accepts_a_valid_payload(key):
    contract = current().contracts[key]
    schema = contract.schema

    assert isinstance(schema, pa.DataFrameSchema)
    assert schema.name == contract.name == f"{key[0]}/v{key[1]}"
    assert set(schema.columns) == {KEY_COLUMN, *contract.fields}
    schema.validate(frame(contract))  # raises if the schema rejects a valid payload


@pytest.mark.parametrize("key", list(current().contracts), ids=CONTRACT_IDS)
def test_every_contract_rejects_a_bad_key(key):
    contract = current().contracts[key]
    with pytest.raises(SchemaErrors, match="str_contains"):
        contract.schema.validate(frame(contract, **{KEY_COLUMN: "not-a-key"}), lazy=True)


def test_deletes_carry_no_fields():
    for (event_type, _), contract in current().contracts.items():
        if event_type.endswith(".deleted"):
            assert contract.fields == {}
            assert set(contract.schema.columns) == {KEY_COLUMN}


@pytest.mark.parametrize(
    ("version", "required", "absent"), [(1, "name", "full_name"), (2, "full_name", "name")]
)
def test_customer_created_requires_the_name_field_of_its_version(version, required, absent):
    contract = current().contract_for("customer.created", version)
    columns = contract.schema.columns

    assert absent not in columns
    assert not columns[required].nullable
    assert required in contract.required_fields()
    assert set(contract.required_fields()) == {"email", required, "country", "status"}
    with pytest.raises(SchemaError, match=f"non-nullable column '{required}'"):
        contract.schema.validate(frame(contract, **{required: None}))


@pytest.mark.parametrize("action", ["updated", "reconciled"])
def test_updates_may_leave_out_required_attributes(action):
    contract = current().contract_for(f"customer.{action}", 2)
    assert contract.required_fields() == ()
    assert all(
        column.nullable for name, column in contract.schema.columns.items() if name != KEY_COLUMN
    )
    assert set(contract.non_nullable_fields()) == {"email", "full_name", "country", "status"}


def test_marketing_opt_in_exists_only_from_version_2():
    assert "marketing_opt_in" not in current().contract_for("customer.updated", 1).fields
    assert (
        current().contract_for("customer.updated", 2).fields["marketing_opt_in"]
        == "marketing_opt_in"
    )


@pytest.mark.parametrize("action", ["created", "updated", "reconciled"])
def test_v1_upcast_renames_name_to_full_name(action):
    assert current().contract_for(f"customer.{action}", 1).upcast_renames() == {"name": "full_name"}
    assert current().contract_for(f"customer.{action}", 2).upcast_renames() == {}
    assert current().contract_for(f"order.{action}", 1).upcast_renames() == {}


def test_v1_fields_map_onto_catalog_attributes():
    v1 = current().payload_versions[("customer", 1)]
    customer = current().entities["customer"]
    assert set(v1.fields.values()) <= set(customer.attribute_names)
    assert v1.attribute("name") == customer.attribute("full_name")


@pytest.mark.parametrize(
    ("event_type", "version", "known"),
    [
        ("customer.created", 3, "[1, 2]"),
        ("order.updated", 2, "[1]"),
        ("customer.deleted", 0, "[1, 2]"),
    ],
)
def test_contract_for_an_unknown_version_names_the_known_versions(event_type, version, known):
    with pytest.raises(
        KeyError, match=re.escape(f"{event_type} version {version}; known versions: {known}")
    ):
        current().contract_for(event_type, version)


def test_contract_for_a_known_version():
    contract = current().contract_for("customer.created", 1)
    assert (contract.event_type, contract.version, contract.action) == (
        "customer.created",
        1,
        "created",
    )
    assert contract is current().contracts[("customer.created", 1)]


def test_enum_and_minimum_rules_come_from_the_catalog():
    order = current().contract_for("order.created", 1)
    with pytest.raises(SchemaErrors) as raised:
        order.schema.validate(frame(order, status="lost", amount=-1.0), lazy=True)
    failed = set(raised.value.failure_cases["column"].to_list())
    assert failed == {"status", "amount"}


def test_the_envelope_schema_builds_and_checks_the_event_type():
    project = current()
    schema = build_envelope_schema(project.sources, project.event_types, project.system_names)
    assert isinstance(schema, pa.DataFrameSchema)
    assert {"specversion", "id", "source", "type", "time", "subject", "origin"} <= set(
        schema.columns
    )
    envelope = pl.DataFrame(
        {
            "specversion": ["1.0"],
            "id": ["e1"],
            "source": ["/systems/crm"],
            "type": ["customer.merged"],
            "time": [datetime(2026, 11, 25, tzinfo=UTC)],
            "subject": ["C-000001"],
            "datacontenttype": ["application/json"],
            "schemaversion": [2],
            "correlationid": ["e1"],
            "origin": ["crm"],
        },
        schema_overrides={"time": pl.Datetime("us", "UTC")},
    )
    with pytest.raises(SchemaError, match="isin"):
        schema.validate(envelope)
    schema.validate(envelope.with_columns(type=pl.lit("customer.created")))


# Unicode decimal digits that are not ASCII: Arabic-Indic, Devanagari, fullwidth.
OTHER_DIGITS = ("٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "".join(chr(0xFF10 + d) for d in range(10)))


def catalog_patterns() -> list[tuple[str, str, str]]:
    """(where, pattern, a valid value) for every pattern in the catalog."""
    found = [(f"{e.name} key", e.key_pattern, KEYS[e.name]) for e in current().entities.values()]
    for e in current().entities.values():
        for a in e.attributes:
            if a.pattern:
                found.append((f"{e.name}.{a.name}", a.pattern, VALID[(e.name, a.name)]))
    return found


def test_no_catalog_pattern_takes_non_ascii_digits():
    """pandera's str_contains runs polars (Rust) regexes, where \\d matches any Unicode digit:
    C-٠١٢٣٤٥ would pass for a customer key. Patterns spell digits [0-9]."""
    taken = []
    for where, pattern, valid in catalog_patterns():
        assert pl.Series([valid]).str.contains(pattern).item(), f"{where}: {valid!r} must match"
        for digits in OTHER_DIGITS:
            lookalike = valid.translate(str.maketrans("0123456789", digits))
            if lookalike != valid and pl.Series([lookalike]).str.contains(pattern).item():
                taken.append((where, pattern, lookalike))
        if "\\d" in pattern or "\\w" in pattern:
            taken.append((where, pattern, "\\d or \\w in the pattern"))
    assert not taken
