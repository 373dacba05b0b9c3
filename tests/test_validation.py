"""Validation: every bad line is dead-lettered with a reason that says what is wrong and how to fix
it, the rest of its batch is applied, and the ledger's counts add up."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from conftest import at, customer_created, event, land, rows, run_core

from sync_assets.catalog.events import MAX_EVENT_BYTES, to_line
from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.raw import ingest_batch, landed_lines
from sync_assets.ingest.validate import validate_batch
from sync_assets.settings import (
    DEFAULT_MAX_CLOCK_SKEW,
    MAX_CLOCK_SKEW_ENV,
    DataFolder,
    max_clock_skew,
)
from sync_assets.warehouse import connect, transaction


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
    "origin not the system of the channel": Bad(
        bad_customer("bad-origin", origin="billing"), "origin", "'origin'"
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
    batch_ids: list[str]
    results: dict
    dead_letters: dict[int, tuple]  # position in the lines -> (event_id, rule, reason, payload)
    line_in_batch: dict[int, int]  # position in the lines -> its line in its channel's batch


def channel_of(line: str | bytes | dict) -> str:
    """The channel a line is landed in: billing's events in billing's, all else in crm's."""
    try:
        parsed = line if isinstance(line, dict) else json.loads(line)
    except ValueError:  # not JSON (or not UTF-8): whichever channel, it is refused as a line
        return "crm"
    billing = isinstance(parsed, dict) and parsed.get("source") == "/systems/billing"
    return "billing" if billing else "crm"


def land_and_run(folder: DataFolder, lines: list) -> Landed:
    """`lines` through the core, one batch per channel (a channel speaks for one system), with
    the dead letters by the position of their line in `lines`."""
    by_channel: dict[str, list] = {}
    position_of: dict[tuple[str, int], int] = {}
    for position, line in enumerate(lines, start=1):
        chunk = by_channel.setdefault(channel_of(line), [])
        chunk.append(line)
        position_of[channel_of(line), len(chunk)] = position
    batch_ids = [
        land(folder, "0001", chunk, system=system).batch_id for system, chunk in by_channel.items()
    ]
    results = run_core(folder, batch_ids)
    letters = rows(
        folder,
        "SELECT b.system, d.line_no, d.event_id, d.rule, d.reason, pii_open('dead_letters.payload', d.payload) "
        "FROM dead_letters d JOIN batches b USING (batch_id)",
    )
    return Landed(
        folder,
        batch_ids,
        results,
        {position_of[system, line_no]: rest for system, line_no, *rest in letters},
        {position: line_no for (_, line_no), position in position_of.items()},
    )


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Landed:
    return land_and_run(DataFolder(tmp_path_factory.mktemp("validation")), LINES)


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
        and f"line {landed.line_in_batch[line_no]}" not in landed.dead_letters[line_no][2]
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
        "SELECT sum(landed), sum(validated), sum(duplicates), sum(dead_lettered), sum(applied) "
        "FROM batches",
    )
    assert landed_ == len(LINES)
    assert duplicates == 1
    assert rows(landed.folder, "SELECT line_no, event_id, first_line_no FROM duplicate_events") == [
        (landed.line_in_batch[DUPLICATE_LINE], "good-first", 1)
    ]
    assert dead_lettered == len(BAD)
    assert validated == 4
    assert landed_ == validated + duplicates + dead_lettered
    assert applied == validated
    counts = [result["validation"] for result in landed.results.values()]
    assert sum(c.validated for c in counts) == validated
    assert sum(c.dead_lettered for c in counts) == dead_lettered
    assert sum(sum(c.by_rule.values()) for c in counts) == dead_lettered


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
        "SELECT schema_version, pii_open('customer.full_name', full_name), set_attributes "
        "FROM validated_customer_events WHERE event_id = 'good-v1'",
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


# -- per-event guards: what DuckDB would read quietly, or the warehouse could not store ----------


def raw_line(event_: dict, **raw: str) -> str:
    """The event as a line, with verbatim JSON text (NaN, 1e400, ...) for the named data fields."""
    marked = json.loads(json.dumps(event_))
    for name in raw:
        marked["data"][name] = f"@{name}@"
    line = to_line(marked)
    for name, text in raw.items():
        line = line.replace(f'"@{name}@"', text)
    return line


def duplicated(event_: dict, member: str, again: str) -> str:
    """The event as a line, with the JSON member `member` followed by `again`, a second copy."""
    line = to_line(event_)
    assert line.count(member) == 1, member
    return line.replace(member, f"{member},{again}")


def enveloped(event_id: str, **envelope) -> dict:
    """A valid customer.created whose envelope fields are replaced as given."""
    return bad_customer(event_id) | envelope


def digits_of(script_zero: int, ascii_digits: str) -> str:
    """ASCII digits written in another script's digits (0x660 Arabic-Indic, 0x966 Devanagari,
    0xFF10 fullwidth), which Rust's \\d, and so pandera's str_contains, also takes."""
    return "".join(chr(script_zero + int(d)) for d in ascii_digits)


GUARDS = {
    # values the warehouse cannot store: today the insert's cast fails and the batch crashes
    "amount of 1e16": Bad(order_created("O-0000101", amount=1e16), "out_of_range", "'amount'"),
    "amount rounding to 1e16": Bad(
        raw_line(order_created("O-0000102"), amount="9999999999999999.995"),
        "out_of_range",
        "'amount'",
    ),
    "amount of 1e400": Bad(
        raw_line(order_created("O-0000103"), amount="1e400"), "out_of_range", "'amount'"
    ),
    "amount of -1e20": Bad(order_created("O-0000104", amount=-1e20), "out_of_range", "'amount'"),
    "amount of 30 digits": Bad(
        raw_line(order_created("O-0000105"), amount="123456789012345678901234567890"),
        "out_of_range",
        "'amount'",
    ),
    "amount of Infinity": Bad(
        raw_line(order_created("O-0000106"), amount="Infinity"), "not_finite", "'amount'"
    ),
    "amount of -Infinity": Bad(
        raw_line(order_created("O-0000107"), amount="-Infinity"), "not_finite", "'amount'"
    ),
    "amount of NaN": Bad(
        raw_line(order_created("O-0000108"), amount="NaN"), "not_finite", "'amount'"
    ),
    # timestamps: strict RFC 3339, years 0001-9999, offsets up to 23:59
    "time in year 0000": Bad(
        enveloped("g-year0", time="0000-06-01T00:00:00Z"), "envelope", "'time'"
    ),
    "time in year 294247": Bad(
        enveloped("g-year294247", time="294247-01-01T00:00:00Z"), "envelope", "'time'"
    ),
    "time with offset +99:99": Bad(
        enveloped("g-offset", time="2026-11-25T08:30:00+99:99"), "envelope", "'time'"
    ),
    "time with offset +0100": Bad(
        enveloped("g-offset-colon", time="2026-11-25T08:30:00+0100"), "envelope", "'time'"
    ),
    "time at hour 24": Bad(enveloped("g-hour", time="2026-11-25T24:00:00Z"), "envelope", "'time'"),
    "time with a space for the T": Bad(
        enveloped("g-space", time="2026-11-25 08:30:00Z"), "envelope", "'time'"
    ),
    "placed_at in year 0000": Bad(
        order_created("O-0000109", placed_at="0000-01-01T00:00:00Z"), "payload", "'placed_at'"
    ),
    "placed_at with offset -24:00": Bad(
        order_created("O-0000110", placed_at="2026-11-25T08:00:00-24:00"), "payload", "'placed_at'"
    ),
    # event times beyond the clock skew window win every later write
    "time in 9999": Bad(enveloped("g-future", time="9999-12-31T23:59:59Z"), "clock_skew", "'time'"),
    # the decoder: duplicate keys, NUL characters
    "envelope key twice": Bad(
        duplicated(bad_customer("g-dup-envelope"), '"origin":"crm"', '"origin":"billing"'),
        "duplicate_key",
        "'origin'",
    ),
    "data key twice": Bad(
        duplicated(bad_customer("g-dup-data"), '"country":"GB"', '"country":"FR"'),
        "duplicate_key",
        "'country'",
    ),
    "NUL escape in data": Bad(
        bad_customer("g-nul-escape", data={"full_name": "Ada\u0000Lovelace"}), "nul", "'full_name'"
    ),
    "NUL escape in the envelope": Bad(
        enveloped("g-nul-envelope", correlationid="corr\u0000"), "nul", "'correlationid'"
    ),
    "raw NUL byte": Bad(
        to_line(bad_customer("g-nul-raw")).replace("Person g-nul-raw", "Person\x00g-nul-raw"),
        "nul",
        "'full_name'",
    ),
    # key patterns are ASCII: \d matches Arabic-Indic digits
    "key with Arabic-Indic digits": Bad(
        customer_created("C-" + digits_of(0x660, "012345"), event_id="g-key-arabic"),
        "str_contains",
        "'subject'",
    ),
    "order key with fullwidth digits": Bad(
        order_created("O-" + digits_of(0xFF10, "0000011")), "str_contains", "'subject'"
    ),
    "customer_id with Devanagari digits": Bad(
        order_created("O-0000111", customer_id="C-" + digits_of(0x966, "000012")),
        "str_contains",
        "'customer_id'",
    ),
    "phone with Arabic-Indic digits": Bad(
        bad_customer("g-phone", data={"phone": "+4" + digits_of(0x660, "42071838750")}),
        "str_contains",
        "'phone'",
    ),
    # envelope text fields must be JSON strings, not numbers or objects turned into text
    "specversion a number": Bad(enveloped("g-spec", specversion=1.0), "envelope", "'specversion'"),
    "source a number": Bad(enveloped("g-source", source=7), "envelope", "'source'"),
    "type an object": Bad(enveloped("g-type", type={"entity": "customer"}), "envelope", "'type'"),
    "datacontenttype a list": Bad(
        enveloped("g-content", datacontenttype=["application/json"]),
        "envelope",
        "'datacontenttype'",
    ),
    "correlationid a number": Bad(
        enveloped("g-correlation", correlationid=42), "envelope", "'correlationid'"
    ),
    "causationid a number": Bad(
        enveloped("g-causation", causationid=7), "envelope", "'causationid'"
    ),
    "origin a list": Bad(
        enveloped("g-origin", source="/syncfabric/reconciler", origin=["crm"]),
        "envelope",
        "'origin'",
    ),
}

GOOD_ESCAPED_BACKSLASH = customer_created(
    "C-000003",
    event_id="good-backslash",
    data={"full_name": "Ada \\u0000 Lovelace"},  # a backslash, then the text u0000: no NUL
)
GUARDED_LINES = [
    GOOD_FIRST,
    *(bad.line for bad in GUARDS.values()),
    GOOD_ORDER,
    GOOD_ESCAPED_BACKSLASH,
    GOOD_LAST,
]
GUARD_LINE_OF = {name: n for n, name in enumerate(GUARDS, start=2)}  # line 1 is GOOD_FIRST


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Landed:
    """Good events around every kind of poison event (a batch per channel)."""
    return land_and_run(DataFolder(tmp_path_factory.mktemp("guards")), GUARDED_LINES)


@pytest.mark.parametrize("name", list(GUARDS))
def test_a_poison_event_is_a_dead_letter_naming_its_field_rule_and_fix(guarded, name):
    bad = GUARDS[name]
    line_no = GUARD_LINE_OF[name]
    assert line_no in guarded.dead_letters, f"{name}: line {line_no} was accepted"
    _, rule, reason, _ = guarded.dead_letters[line_no]
    assert rule == bad.rule, reason
    assert bad.mentions in reason
    assert f"line {guarded.line_in_batch[line_no]}:" in reason
    assert "fix:" in reason, f"{name}: the reason says no fix: {reason!r}"


def test_one_poison_event_does_not_strand_its_batch(guarded):
    """Every good event of the batch is validated and applied; only the poison is dead-lettered."""
    assert sorted(guarded.dead_letters) == sorted(GUARD_LINE_OF.values())
    validated = rows(
        guarded.folder,
        "SELECT event_id FROM validated_customer_events UNION ALL "
        "SELECT event_id FROM validated_order_events ORDER BY ALL",
    )
    assert validated == [("ev-O-0000001",), ("good-backslash",), ("good-first",), ("last",)]
    assert rows(
        guarded.folder, "SELECT customer_id, plan, full_name FROM golden_customer ORDER BY ALL"
    ) == [("C-000001", "pro", "Ada Lovelace"), ("C-000003", None, "Ada \\u0000 Lovelace")]
    assert rows(guarded.folder, "SELECT order_id, amount FROM golden_order") == [
        ("O-0000001", 12.5)
    ]
    [(landed_, validated_, duplicates, dead_lettered, applied, applied_at)] = rows(
        guarded.folder,
        "SELECT sum(landed), sum(validated), sum(duplicates), sum(dead_lettered), sum(applied), "
        "min(applied_at) FROM batches",
    )
    assert landed_ == len(GUARDED_LINES) == validated_ + dead_lettered + duplicates
    assert (validated_, dead_lettered, applied) == (4, len(GUARDS), 4)
    assert applied_at is not None


def test_no_pii_value_appears_in_a_guard_reason(guarded):
    for line_no, (event_id, _, reason, _) in guarded.dead_letters.items():
        assert f"{event_id}@pii.example.com" not in reason, line_no
        assert f"Person {event_id}" not in reason, line_no
        assert digits_of(0x660, "42071838750") not in reason, line_no


def test_an_event_dated_in_the_future_cannot_win_over_the_owners_later_value(data_folder):
    """An event dated 9999-12-31 would win every later write forever; dead-lettered, it leaves
    the register to the owner's real changes."""
    first = land(
        data_folder,
        "0001",
        [
            GOOD_FIRST,
            event(
                "customer.updated",
                "C-000001",
                {"email": "typo@example.com"},
                event_id="from-the-future",
                time=datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
            ),
        ],
    )
    later = land(
        data_folder,
        "0002",
        [
            event(
                "customer.updated",
                "C-000001",
                {"email": "ada.king@example.com"},
                event_id="real-change",
                time=at(3600),
            )
        ],
    )
    run_core(data_folder, [first.batch_id, later.batch_id])

    [(line_no, rule, reason)] = rows(data_folder, "SELECT line_no, rule, reason FROM dead_letters")
    assert (line_no, rule) == (2, "clock_skew")
    assert "'time'" in reason and "9999-12-31" in reason and "fix:" in reason
    assert rows(data_folder, "SELECT email FROM golden_customer") == [("ada.king@example.com",)]


def future_event(event_id: str, ahead: timedelta) -> dict:
    return customer_created(
        "C-000001", event_id=event_id, time=datetime.now(UTC).replace(microsecond=0) + ahead
    )


def test_the_clock_skew_window_is_a_setting(tmp_path, monkeypatch):
    """An event an hour ahead of its arrival is refused by the default window (5 minutes) and
    accepted when SYNCFABRIC_MAX_CLOCK_SKEW_SECONDS allows two hours."""
    verdicts = {}
    for window in (None, "7200"):
        if window is None:
            monkeypatch.delenv(MAX_CLOCK_SKEW_ENV, raising=False)
        else:
            monkeypatch.setenv(MAX_CLOCK_SKEW_ENV, window)
        folder = DataFolder(tmp_path / f"window-{window}")
        batch = land(folder, "0001", [future_event("ahead", timedelta(hours=1))])
        run_core(folder, [batch.batch_id])
        verdicts[window] = rows(folder, "SELECT rule, reason FROM dead_letters") or rows(
            folder, "SELECT event_id FROM validated_customer_events"
        )
    [(rule, reason)] = verdicts[None]
    assert rule == "clock_skew"
    assert f"clock skew of {DEFAULT_MAX_CLOCK_SKEW.seconds} s" in reason
    assert MAX_CLOCK_SKEW_ENV in reason and "fix:" in reason
    assert verdicts["7200"] == [("ahead",)]


def test_clock_skew_is_judged_against_the_arrival_not_the_validation_clock(data_folder):
    """Validated later (a resumed run), an event keeps the verdict of its arrival: an event dated
    a day ago that arrived two days ago was a day in the future when it came."""
    batch = land(data_folder, "0001", [future_event("came-early", timedelta(days=-1))])
    with connect(data_folder.warehouse) as con, transaction(con):
        ingest_batch(con, LandingZone(data_folder.landing).locate(batch.batch_id))
        con.execute("UPDATE raw_events SET arrived_at = arrived_at - INTERVAL 2 DAY")
        counts = validate_batch(con, batch.batch_id)
    assert (counts.validated, dict(counts.by_rule)) == (0, {"clock_skew": 1})


@pytest.mark.parametrize(
    "value", ["abc", "-5", "1.5", "1_000", digits_of(0x660, "300"), str(366 * 86_400)]
)
def test_a_bad_clock_skew_setting_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(MAX_CLOCK_SKEW_ENV, value)
    with pytest.raises(SyncfabricError) as raised:
        max_clock_skew()
    assert raised.value.exit_code == EXIT_USAGE
    assert MAX_CLOCK_SKEW_ENV in raised.value.message and "fix:" in raised.value.message


def test_the_clock_skew_setting_defaults_to_five_minutes(monkeypatch):
    monkeypatch.delenv(MAX_CLOCK_SKEW_ENV, raising=False)
    assert max_clock_skew() == DEFAULT_MAX_CLOCK_SKEW == timedelta(minutes=5)
    monkeypatch.setenv(MAX_CLOCK_SKEW_ENV, " 90 ")
    assert max_clock_skew() == timedelta(seconds=90)


def test_a_batch_of_many_failures_without_an_event_id_is_dead_lettered(data_folder):
    """Found by the fuzz suite: the failure reasons were a frame whose types polars inferred from
    its first 100 rows, so 100 failing lines without an id, then one with an id, crashed."""
    no_id = [enveloped(f"x-{n}", id=None) for n in range(100)]
    batch = land(data_folder, "0001", [*no_id, enveloped("has-an-id", type="customer.merged")])
    run_core(data_folder, [batch.batch_id])
    assert rows(
        data_folder, "SELECT rule, count(*) FROM dead_letters GROUP BY ALL ORDER BY ALL"
    ) == [
        ("isin", 1),
        ("not_nullable", 100),
    ]


@pytest.mark.parametrize("file_after_ingest", ["kept", "altered", "removed"])
def test_validation_reads_the_landed_file_only_while_it_holds_the_batch(
    tmp_path, file_after_ingest
):
    """With the landing zone, validation reads the lines from the batch's archived file instead of
    opening each sealed raw line; a file altered or removed since is not read, and the verdicts
    are those of the sealed lines either way."""
    lines = [
        customer_created("C-000001", event_id="a"),
        "{oops",
        b"\xff\xfe not UTF-8",
        bad_customer("b", {"status": "weird"}),
    ]

    def verdicts(folder: DataFolder) -> tuple[list, list]:
        return (
            rows(folder, "SELECT event_id, line_no, entity_key FROM validated_customer_events"),
            rows(folder, "SELECT line_no, rule, reason FROM dead_letters ORDER BY line_no"),
        )

    def validated(folder: DataFolder, use_zone: bool) -> tuple[list, list]:
        batch = land(folder, "0001", lines)
        zone = LandingZone(folder.landing)
        with connect(folder.warehouse) as con, transaction(con):
            ingest_batch(con, batch)
        archived = zone.archive(batch)
        if file_after_ingest == "altered":  # same lengths, another customer
            archived.write_bytes(archived.read_bytes().replace(b"C-000001", b"C-000002"))
        elif file_after_ingest == "removed":
            archived.unlink()
        read_from_file = landed_lines(zone, batch.batch_id) is not None
        assert read_from_file == (file_after_ingest == "kept")
        with connect(folder.warehouse) as con, transaction(con):
            validate_batch(con, batch.batch_id, zone=zone if use_zone else None)
        return verdicts(folder)

    sealed = validated(DataFolder(tmp_path / "sealed"), use_zone=False)
    landed = validated(DataFolder(tmp_path / "landed"), use_zone=True)

    assert landed == sealed
    assert [key for _, _, key in landed[0]] == ["C-000001"]
    assert [(line_no, rule) for line_no, rule, _ in landed[1]] == [
        (2, "json"),
        (3, "utf8"),
        (4, "isin"),
    ]
