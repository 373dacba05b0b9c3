"""Validation: every bad line is dead-lettered with a reason that says what is wrong and how to fix
it, the rest of its batch is applied, and the ledger's counts add up."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from conftest import at, customer_created, event, land, rows, run_core

from sync_assets.catalog.events import MAX_EVENT_BYTES, to_line
from sync_assets.settings import DataFolder


@dataclass(frozen=True)
class Bad:
    """One kind of bad input: the line, the rule it breaks, what the reason must mention."""

    line: str | bytes | dict
    rule: str
    mentions: str


def order_created(subject: str = "O-0000001", **data) -> dict:
    payload = {
        "customer_id": "C-000001",
        "status": "paid",
        "amount": 12.5,
        "currency": "EUR",
        "placed_at": "2026-11-25T08:00:00Z",
        **data,
    }
    return event("order.created", subject, payload, origin="billing", event_id=f"ev-{subject}")


def bad_customer(event_id: str, data: dict | None = None, **envelope) -> dict:
    """A customer.created, fine but for `data` and `envelope` changes; its PII is distinctive."""
    built = customer_created(
        "C-000009",
        event_id=event_id,
        data={"email": f"{event_id}@pii.example.com", "full_name": f"Person {event_id}"}
        | (data or {}),
    )
    built.update(envelope)
    return built


def without(event_: dict, field: str) -> dict:
    event_ = json.loads(json.dumps(event_))
    del event_["data"][field]
    return event_


BAD = {
    "malformed JSON": Bad('{"specversion": "1.0", "id": "bad-json", "type": ', "json", "JSON"),
    "invalid UTF-8": Bad(
        to_line(bad_customer("bad-utf8")).encode().replace(b"Person", b"Pers\xff"),
        "utf8",
        "UTF-8",
    ),
    "oversized event": Bad(
        bad_customer("bad-size", data={"full_name": "x" * (MAX_EVENT_BYTES + 1)}),
        "size",
        str(MAX_EVENT_BYTES),
    ),
    "missing required field on created": Bad(
        without(bad_customer("bad-missing"), "country"), "not_nullable", "'country'"
    ),
    "wrong type (amount as a string)": Bad(
        order_created("O-0000009", amount="12.50"), "payload", "'amount'"
    ),
    "unknown event type": Bad(bad_customer("bad-type", type="customer.merged"), "isin", "'type'"),
    "unknown schema version": Bad(
        bad_customer("bad-version", schemaversion=7), "contract", "version 7"
    ),
    "null subject": Bad(bad_customer("bad-subject", subject=None), "not_nullable", "'subject'"),
    "time without zone": Bad(
        bad_customer("bad-time", time="2026-11-25T08:30:00"), "envelope", "'time'"
    ),
    "bad enum value": Bad(
        bad_customer("bad-enum", data={"status": "archived"}), "isin", "'status'"
    ),
    "unknown payload field": Bad(
        bad_customer("bad-field", data={"nickname": "Addie"}), "payload", "nickname"
    ),
    "update with no attributes": Bad(
        event("customer.updated", "C-000001", {}, event_id="bad-empty-update"),
        "payload",
        "customer.updated",
    ),
    "email not an address (PII)": Bad(
        bad_customer("bad-email", data={"email": "bad-email.at.pii.example.com"}),
        "str_contains",
        "'email'",
    ),
    "required attribute set to null on update": Bad(
        event("customer.updated", "C-000001", {"email": None}, event_id="bad-null-email"),
        "payload",
        "'email'",
    ),
    "data not an object": Bad(
        bad_customer("bad-data", data=None) | {"data": [1, 2]}, "payload", "data"
    ),
    "amount below minimum": Bad(
        order_created("O-0000008", amount=-1), "greater_than_or_equal_to", "'amount'"
    ),
    "payload timestamp without zone": Bad(
        order_created("O-0000007", placed_at="2026-11-25T08:00:00"), "payload", "'placed_at'"
    ),
    "id not a string": Bad(bad_customer("bad-id", id=12345), "envelope", "'id'"),
    "origin not the system in source": Bad(
        bad_customer("bad-origin", origin="billing"), "envelope", "'origin'"
    ),
}

GOOD_FIRST = customer_created("C-000001", event_id="good-first")
GOOD_V1 = event(
    "customer.created",
    "C-000002",
    {"email": "byron@example.com", "name": "Ada Byron", "country": "GB", "status": "active"},
    event_id="good-v1",
    schema_version=1,
)
GOOD_ORDER = order_created("O-0000001")
GOOD_LAST = event(
    "customer.updated", "C-000001", {"plan": "pro"}, origin="billing", time=at(60), event_id="last"
)

LINES = [
    GOOD_FIRST,
    *(bad.line for bad in BAD.values()),
    GOOD_V1,
    GOOD_FIRST,
    GOOD_ORDER,
    GOOD_LAST,
]
LINE_OF = {name: n for n, name in enumerate(BAD, start=2)}  # line 1 is GOOD_FIRST
DUPLICATE_LINE = len(BAD) + 3


@dataclass(frozen=True)
class Landed:
    folder: DataFolder
    batch_id: str
    result: dict
    dead_letters: dict[int, tuple]  # line_no -> (event_id, rule, reason, payload)


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Landed:
    folder = DataFolder(tmp_path_factory.mktemp("validation"))
    batch = land(folder, "0001", LINES)
    result = run_core(folder, [batch.batch_id])[batch.batch_id]
    letters = rows(
        folder,
        "SELECT line_no, event_id, rule, reason, payload FROM dead_letters WHERE batch_id = ?",
        [batch.batch_id],
    )
    return Landed(folder, batch.batch_id, result, {row[0]: row[1:] for row in letters})


@pytest.mark.parametrize("name", list(BAD))
def test_bad_line_is_dead_lettered_with_rule_field_and_fix(landed, name):
    bad = BAD[name]
    line_no = LINE_OF[name]
    assert line_no in landed.dead_letters, f"{name}: line {line_no} was not dead-lettered"
    event_id, rule, reason, payload = landed.dead_letters[line_no]
    if isinstance(bad.line, dict):
        assert event_id == str(bad.line["id"])
    assert rule == bad.rule
    assert bad.mentions in reason
    assert "fix:" in reason, f"{name}: the reason says no fix: {reason!r}"
    expected_payload = bad.line if isinstance(bad.line, str | bytes) else to_line(bad.line)
    if isinstance(expected_payload, bytes):
        expected_payload = expected_payload.decode("utf-8", errors="backslashreplace")
    assert payload == expected_payload  # the line is kept verbatim for a re-send


def test_every_reason_names_its_line(landed):
    """A reason read on its own (a log, an alert) still says which line of the batch failed."""
    missing = {
        name: landed.dead_letters[line_no][2]
        for name, line_no in LINE_OF.items()
        if line_no in landed.dead_letters
        and f"line {line_no}" not in landed.dead_letters[line_no][2]
    }
    assert not missing, f"reasons that do not name their line: {missing}"


def test_only_the_bad_lines_are_dead_lettered(landed):
    assert sorted(landed.dead_letters) == sorted(LINE_OF.values())


def test_the_rest_of_the_batch_is_applied(landed):
    golden = rows(
        landed.folder,
        "SELECT customer_id, email, plan, lifecycle_state FROM golden_customer ORDER BY ALL",
    )
    assert golden == [
        ("C-000001", "ada@example.com", "pro", "live"),
        ("C-000002", "byron@example.com", None, "live"),
    ]
    assert rows(landed.folder, "SELECT order_id, amount, currency FROM golden_order") == [
        ("O-0000001", 12.5, "EUR")
    ]
    validated = rows(
        landed.folder,
        "SELECT event_id FROM validated_customer_events UNION ALL "
        "SELECT event_id FROM validated_order_events ORDER BY ALL",
    )
    assert validated == [("ev-O-0000001",), ("good-first",), ("good-v1",), ("last",)]


def test_counts_add_up_for_the_batch(landed):
    [(landed_, validated, duplicates, dead_lettered, applied)] = rows(
        landed.folder,
        "SELECT landed, validated, duplicates, dead_lettered, applied FROM batches "
        "WHERE batch_id = ?",
        [landed.batch_id],
    )
    assert landed_ == len(LINES)
    assert duplicates == 1
    assert rows(landed.folder, "SELECT line_no, event_id, first_line_no FROM duplicate_events") == [
        (DUPLICATE_LINE, "good-first", 1)
    ]
    assert dead_lettered == len(BAD)
    assert validated == 4
    assert landed_ == validated + duplicates + dead_lettered
    assert applied == validated
    counts = landed.result["validation"]
    assert (counts.validated, counts.dead_lettered) == (validated, dead_lettered)
    assert sum(counts.by_rule.values()) == dead_lettered


def test_counts_add_up_for_every_batch_across_batches(data_folder):
    first = land(data_folder, "0001", [GOOD_FIRST, "[1, 2]", GOOD_FIRST])
    second = land(
        data_folder, "0002", [GOOD_FIRST, GOOD_V1, "not json", BAD["bad enum value"].line, GOOD_V1]
    )
    run_core(data_folder, [first.batch_id, second.batch_id])
    ledger = rows(
        data_folder,
        "SELECT batch_id, landed, validated, duplicates, dead_lettered FROM batches ORDER BY ALL",
    )
    assert ledger == [(first.batch_id, 3, 1, 1, 1), (second.batch_id, 5, 1, 2, 2)]
    for _, landed_, validated, duplicates, dead_lettered in ledger:
        assert landed_ == validated + duplicates + dead_lettered


def test_no_pii_value_appears_in_a_dead_letter_reason(landed):
    pii_values = set()
    for bad in BAD.values():
        if isinstance(bad.line, dict):
            data = bad.line.get("data") or {}
            if isinstance(data, dict):
                pii_values |= {data.get(f) for f in ("email", "full_name", "phone", "name")}
    pii_values.discard(None)
    assert "bad-email.at.pii.example.com" in pii_values
    for _, _, reason, _ in landed.dead_letters.values():
        leaked = [value for value in pii_values if value in reason]
        assert not leaked, f"PII in dead-letter reason {reason!r}"
    email_reason = landed.dead_letters[LINE_OF["email not an address (PII)"]][2]
    assert "withheld (PII)" in email_reason


@pytest.mark.parametrize(
    ("version", "field", "value"),
    [(2, "full_name", " "), (2, "phone", "+44 20 7183 8750"), (1, "name", " ")],
    ids=["v2 full_name", "v2 phone", "v1 name"],
)
def test_a_failing_pii_value_is_withheld_in_every_schema_version(
    data_folder, version, field, value
):
    data = {"email": "ada@example.com", "country": "GB", "status": "active", field: value}
    data.setdefault("name" if version == 1 else "full_name", "Ada Lovelace")
    batch = land(
        data_folder,
        "0001",
        [event("customer.created", "C-000001", data, event_id="e1", schema_version=version)],
    )
    run_core(data_folder, [batch.batch_id])
    [(rule, reason)] = rows(data_folder, "SELECT rule, reason FROM dead_letters")
    assert rule == "str_contains"
    assert f"field {field!r}" in reason
    assert "withheld (PII)" in reason
    assert repr(value) not in reason


def test_v1_customer_name_is_upcast_to_full_name(landed):
    assert rows(
        landed.folder,
        "SELECT full_name FROM golden_customer WHERE customer_id = 'C-000002'",
    ) == [("Ada Byron",)]
    assert rows(
        landed.folder,
        "SELECT schema_version, full_name, set_attributes FROM validated_customer_events "
        "WHERE event_id = 'good-v1'",
    ) == [(1, "Ada Byron", ["email", "full_name", "country", "status"])]


def test_v1_update_of_name_changes_full_name(data_folder):
    first = land(data_folder, "0001", [GOOD_V1])
    rename = event(
        "customer.updated",
        "C-000002",
        {"name": "Ada King"},
        event_id="rename",
        schema_version=1,
        time=at(60),
    )
    second = land(data_folder, "0002", [rename])
    run_core(data_folder, [first.batch_id, second.batch_id])
    assert rows(data_folder, "SELECT full_name, email FROM golden_customer") == [
        ("Ada King", "byron@example.com")
    ]


@pytest.mark.parametrize(
    ("version", "data", "unknown"),
    [(1, {"full_name": "Ada"}, "full_name"), (2, {"name": "Ada"}, "name")],
    ids=["v2 field in v1", "v1 field in v2"],
)
def test_a_field_of_another_version_is_unknown(data_folder, version, data, unknown):
    batch = land(
        data_folder,
        "0001",
        [event("customer.updated", "C-000001", data, event_id="e1", schema_version=version)],
    )
    run_core(data_folder, [batch.batch_id])
    [(rule, reason)] = rows(data_folder, "SELECT rule, reason FROM dead_letters")
    assert rule == "payload"
    assert f"unknown field(s) {unknown}" in reason
