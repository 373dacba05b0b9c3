"""Validation: raw events of one batch become validated events or dead letters, never neither.

Three gates, each naming the line, the field, the rule and the fix when an event fails it:
1. the line: valid UTF-8, within the size limit, one JSON object, no NUL character in its text;
2. the envelope: decoded in DuckDB (no key twice, text fields as JSON strings, a strict RFC 3339
   time no later than the event's arrival plus the allowed clock skew), then checked by the
   envelope's pandera schema;
3. the payload: decoded per (event type, schema version) into values its columns can store (no
   key twice, finite decimals that fit, strict timestamps), checked by that contract's pandera
   schema, then upcast to the entity's current version.
Decoding (JSON types, presence, unknown fields, what a column can hold) runs in DuckDB; the value
rules run in pandera. An event past every gate can be inserted: one poison event is a dead letter,
never a crashed batch.

DuckDB's JSON reader is lenient: it keeps the first of two equal keys, decodes a \\u0000 escape
into a NUL character, and reads NaN, Infinity and 1e400 as numbers; the gates refuse each where
Syncfabric reads it. It also takes trailing commas, and NaN in a field Syncfabric never reads
(an unknown envelope extension): those change nothing stored, and finding them would take a
pattern scan of every line, several times the cost of parsing it, so they pass.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import duckdb
import polars as pl

from sync_assets import ledger
from sync_assets.catalog.contracts import KEY_COLUMN, Contract, build_envelope_schema
from sync_assets.catalog.entities import DECIMAL_DIGITS, DECIMAL_PLACES, Attribute
from sync_assets.catalog.events import ENVELOPE_FIELDS, MAX_EVENT_BYTES, RECONCILER_SOURCE
from sync_assets.crashpoints import crash_point
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.raw import landed_lines
from sync_assets.ingest.signatures import unsigned_lines
from sync_assets.project import current
from sync_assets.project.model import System
from sync_assets.security import fields as pii_fields
from sync_assets.security.fields import DEAD_LETTER_PAYLOAD, RAW_LINE
from sync_assets.security.sql import pii_of
from sync_assets.settings import MAX_CLOCK_SKEW_ENV, max_clock_skew
from sync_assets.warehouse import one, query_frame, quote, registered, scalar, sql_literal
from sync_assets.warehouse.tables import stored_type


@dataclass
class ValidationCounts:
    validated: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    by_entity: Counter[str] = field(default_factory=Counter)
    deprecated: Counter[str] = field(default_factory=Counter)
    """`<entity>_<attribute>` -> validated events still carrying a deprecated field."""

    def add(self, other: ValidationCounts) -> None:
        self.validated += other.validated
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.by_rule.update(other.by_rule)
        self.by_entity.update(other.by_entity)
        self.deprecated.update(other.deprecated)


def _error(rule: str, condition: str, reason: str) -> str:
    """SQL for one decode error: a (rule, reason) struct when `condition` holds, else NULL."""
    error = f"struct_pack(rule := {sql_literal(rule)}, reason := {reason})"
    return f"CASE WHEN {condition} THEN {error} END"


def _errors(errors: list[str]) -> str:
    """SQL for the list of the decode errors that hold; the first one's rule names the failure."""
    return f"list_filter([{', '.join(errors)}], lambda x: x IS NOT NULL)"


def _text(json_value: str) -> str:
    return f"json_extract_string({json_value}, '$')"


def _is_string(json_value: str) -> str:
    """SQL: whether a JSON value (as from_json keeps it: re-serialized, no leading space) is a
    string; a quarter of the cost of json_type, which parses the value again."""
    return f"starts_with({json_value}, '\"')"


def _json_kind(value: str) -> str:
    """SQL for a JSON value's type in JSON's words (DuckDB says VARCHAR, UBIGINT, DOUBLE, ...)."""
    return (
        f"CASE json_type({value}) WHEN 'VARCHAR' THEN 'string' WHEN 'OBJECT' THEN 'object' "
        "WHEN 'ARRAY' THEN 'array' WHEN 'BOOLEAN' THEN 'boolean' WHEN 'NULL' THEN 'null' "
        "ELSE 'number' END"
    )


# -- gate 1: the line -----------------------------------------------------------------------------

# RE2 has no lookbehind: to find a string holding a \u0000 escape, the pattern consumes the line
# from its start, whole strings at a time, so the string it then finds starts outside any other.
_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
_MEMBER = r'(?:"((?:[^"\\]|\\.)*)"\s*:\s*)?'
"""The key of the object member a value belongs to (group 1), when the value is a member's."""
NUL_ESCAPE = rf'^(?:[^"]|{_JSON_STRING})*?{_MEMBER}"(?:[^"\\]|\\.)*?\\u0000'
"""A string holding a \\u0000 escape; `\\\\u0000`, an escaped backslash then u0000, is only text."""

_WHITESPACE = "' ' || chr(9) || chr(10) || chr(13)"


def _nul_member(line: str) -> str:
    """SQL naming where a NUL is: field 'x' when it is in the value of member x, else a key or an
    array element."""
    key = f"nullif(regexp_extract({line}, {sql_literal(NUL_ESCAPE)}, 1), '')"
    return f"coalesce('field ''' || {key} || '''', 'a key or an array element')"


_NUL_AS_ESCAPE = r"replace(line, chr(0), '\u0000')"
"""The line with its raw NUL bytes written as escapes: if that parses, each NUL was inside a
string, and NUL_ESCAPE finds the member it belongs to."""

# Each line is parsed once here (json_valid); whether it is an object shows in its first character,
# and the NUL pattern runs only on the rare lines that hold the text \u0000.
_LINE_GATE = f"""
WITH lines AS (
    SELECT line_no, line, decode_error, size_bytes,
        decode_error IS NULL AND size_bytes <= {MAX_EVENT_BYTES} AND json_valid(line) AS parses
    FROM batch_raw
)
SELECT line_no,
    -- parsed again only for the few lines that fail here: the envelope decode reads the others'
    CASE WHEN decode_error IS NULL AND json_valid(line)
         THEN nullif(json_extract_string(line, '$.id'), '') END AS event_id,
    NULL::VARCHAR AS event_type, NULL::VARCHAR AS contract,
    CASE WHEN decode_error IS NOT NULL THEN 'utf8'
         WHEN size_bytes > {MAX_EVENT_BYTES} THEN 'size'
         WHEN contains(line, chr(0)) THEN 'nul'
         WHEN NOT parses THEN 'json'
         WHEN NOT starts_with(ltrim(line, {_WHITESPACE}), '{{') THEN 'json'
         ELSE 'nul' END AS rule,
    CASE WHEN decode_error IS NOT NULL
            THEN decode_error
                 || '; fix: the producer must write UTF-8'
         WHEN size_bytes > {MAX_EVENT_BYTES}
            THEN 'event is ' || size_bytes || ' bytes, over the '
                 || '{MAX_EVENT_BYTES}-byte limit; fix: send only the fields that changed'
         WHEN contains(line, chr(0))
            THEN CASE WHEN json_valid({_NUL_AS_ESCAPE})
                      THEN {_nul_member(_NUL_AS_ESCAPE)} || ' holds' ELSE 'the line holds' END
                 || ' a raw NUL byte (at character ' || strpos(line, chr(0)) || '), which text '
                 || 'in an event may not hold; fix: remove NUL characters from the text'
         WHEN NOT parses
            THEN 'malformed JSON; fix: write one complete JSON object '
                 || 'per line'
         WHEN NOT starts_with(ltrim(line, {_WHITESPACE}), '{{')
            THEN 'a JSON ' || lower(json_type(line))
                 || ', not an object; fix: write one event object per line'
         ELSE {_nul_member("line")} || ' holds a NUL character (\\u0000), which text in an '
              || 'event may not hold; fix: remove NUL characters from the text' END AS reason
FROM lines
WHERE NOT parses
   OR NOT starts_with(ltrim(line, {_WHITESPACE}), '{{')
   OR (contains(line, '\\u0000') AND regexp_matches(line, {sql_literal(NUL_ESCAPE)}))
"""


def _repeated_keys(keys: str, known: tuple[str, ...]) -> str:
    """SQL: whether a list of JSON keys holds one twice (from_json would keep the first quietly).

    list_unique costs about a microsecond a row; it runs only when the keys are not simply
    distinct known fields, which a few list_contains tell at a tenth of that.
    """
    known_present = " + ".join(f"list_contains({keys}, {sql_literal(k)})::INTEGER" for k in known)
    return f"(len({keys}) > ({known_present or '0'}) AND len({keys}) <> list_unique({keys}))"


def _repeated_keys_named(keys: str) -> str:
    """SQL: the keys that occur more than once, quoted, comma-separated (for failing rows only)."""
    occurrences = f"len(list_filter({keys}, lambda x: x = k))"
    repeated = f"list_filter(list_distinct({keys}), lambda k: {occurrences} > 1)"
    return f"'''' || array_to_string({repeated}, ''', ''') || ''''"


# -- what a column can hold -----------------------------------------------------------------------

RFC3339 = (
    r"^([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"  # a year from 0001 to 9999
    r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""Strict RFC 3339 with a zone and ASCII digits. DuckDB's cast alone takes years 0000 and 294247,
an offset of +99:99, hour 24, a space for the T and no zone at all; it still judges the day of the
month (no February 30)."""
RFC3339_EXAMPLE = "2026-11-25T08:30:00Z"
_TIME_RANGE = "TIMESTAMPTZ '0001-01-01 00:00:00+00' AND TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'"


def _timestamp(json_value: str) -> str:
    """SQL: the value as a TIMESTAMPTZ if it is a strict RFC 3339 string whose instant also lies in
    the years 0001-9999 in UTC; NULL otherwise."""
    text = _text(json_value)
    return (
        f"CASE WHEN {_is_string(json_value)} "
        f"AND regexp_matches({text}, {sql_literal(RFC3339)}) "
        f"AND TRY_CAST({text} AS TIMESTAMPTZ) BETWEEN {_TIME_RANGE} "
        f"THEN TRY_CAST({text} AS TIMESTAMPTZ) END"
    )


def _timestamp_reason(label: str, shown: str) -> str:
    return (
        sql_literal(
            f"{label} must be an RFC 3339 timestamp with a zone (Z or +HH:MM) in the years "
            "0001-9999, got "
        )
        + f" || {shown} || {sql_literal(f'; fix: send e.g. {RFC3339_EXAMPLE}')}"
    )


# -- gate 2: the envelope -------------------------------------------------------------------------


def _json_struct(fields) -> str:
    """A from_json structure that parses a document once, keeping each field as raw JSON."""
    return "'{" + ", ".join(f'"{name}": "JSON"' for name in fields) + "}'"


_ENVELOPE_HINTS = {
    "specversion": 'set it to "1.0"',
    "id": "give every event a unique, non-empty id",
    "source": "use /systems/<system> for a system's events",
    "type": "use <entity>.created|updated|deleted|reconciled for an entity in the catalog",
    "time": "send an RFC 3339 timestamp with a zone",
    "subject": "put the entity's canonical key in 'subject'",
    "datacontenttype": "set it to application/json",
    "schemaversion": "send the integer schema version the payload follows",
    "correlationid": "pass on the correlation id of the change, or the event id for a new one",
    "causationid": "send the id of the event that caused this one, or null",
    "origin": "name the system the change comes from",
}
_TEXT_FIELDS = tuple(f for f in ENVELOPE_FIELDS if f not in ("time", "schemaversion"))
"""The envelope fields that hold text: json_extract_string would quietly turn a number or an
object there into text, so anything but a JSON string (or null) is refused."""


def _envelope_type_error(name: str) -> str:
    value = f"e.{quote(name)}"
    return _error(
        "envelope",
        f"NOT {_is_string(value)}",
        f"{sql_literal(f'envelope field {name!r} must be a string, got JSON ')} || "
        f"{_json_kind(value)} || "
        f"{sql_literal(f'; fix: {_ENVELOPE_HINTS[name]}, as a JSON string')}",
    )


def _channel_errors(system: System) -> list[str]:
    """The channel's rule (rule `origin`): an event that came through a system's channel speaks for
    that system alone. Its `origin` (whose change, which decides ownership) must be the system,
    and its `source` the system's own, or Syncfabric's reconciler, which lands the events an
    owner missed sending (and adoptions) in that owner's channel."""
    came = f"came through {system.channel}, the channel of {system.name}, which speaks for it alone"
    errors = []
    for name, own, allowed in (
        ("source", system.source, (system.source, RECONCILER_SOURCE)),
        ("origin", system.name, (system.name,)),
    ):
        value = _text(f"e.{name}")
        # The JSON text as from_json re-wrote it is compared first, at a third of the cost of
        # extracting the string; only a value not written plainly is extracted to be sure.
        as_written = ", ".join(sql_literal(json.dumps(a)) for a in allowed)
        condition = (
            f"CAST(e.{name} AS VARCHAR) NOT IN ({as_written}) "
            f"AND {value} NOT IN ({', '.join(map(sql_literal, allowed))})"
        )
        errors.append(
            _error(
                "origin",
                f"{_is_string(f'e.{name}')} AND {condition}",
                sql_literal(f"envelope field {name!r} is '")
                + f" || {value} || "
                + sql_literal(
                    f"', but the event {came}; fix: land it in the channel of the system it "
                    f"names, or set {name} to {own} if it is {system.name}'s change"
                ),
            )
        )
    return errors


def envelope_decode_sql(max_skew: timedelta, system: System) -> str:
    """DuckDB SQL that decodes the envelopes of the lines past the line gate, with decode errors.

    `system` is the one the batch's channel is bound to (the `batches` ledger says which): an
    event speaking for another is refused (rule `origin`, `_channel_errors`).

    An event whose time is later than its line's arrival (`raw_events.arrived_at`) plus `max_skew`
    is refused (rule `clock_skew`): dated in the future, it would win every later write. Judged
    against the arrival, not the clock, so validating the batch again gives the same verdict.
    """
    skew = int(max_skew.total_seconds())
    fields = (*ENVELOPE_FIELDS, "data")
    time_text = _text('e."time"')
    shown_time = (
        f"""CASE WHEN {_is_string('e."time"')} THEN '''' || {time_text} || ''''"""
        f""" ELSE 'JSON ' || {_json_kind('e."time"')} END"""
    )
    arrival = "strftime(arrived_at AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')"
    errors = [
        _error(
            "duplicate_key",
            _repeated_keys("keys", fields),
            f"'envelope field(s) ' || {_repeated_keys_named('keys')} || ' appear more than once; "
            "fix: send each field once'",
        )
    ]
    errors += [_envelope_type_error(name) for name in _TEXT_FIELDS]
    errors += _channel_errors(system)
    errors += [
        _error(
            "envelope",
            "json_type(e.schemaversion) NOT IN ('BIGINT', 'UBIGINT')",
            "'envelope field ''schemaversion'' must be an integer, got JSON ' || "
            f"{_json_kind('e.schemaversion')} || '; fix: send e.g. 2, not \"2\"'",
        ),
        _error(
            "envelope",
            'e."time" IS NOT NULL AND time IS NULL',
            _timestamp_reason("envelope field 'time'", shown_time),
        ),
        _error(
            "clock_skew",
            f"time > arrived_at + INTERVAL {skew} SECOND",
            f"'envelope field ''time'' is ' || {time_text} || ', later than the event''s arrival "
            f"at ' || {arrival} || ' plus the allowed clock skew of {skew} s "
            f"({MAX_CLOCK_SKEW_ENV}); fix: send the time the change happened, from a clock in "
            "sync: an event dated in the future would win every later write'",
        ),
    ]
    return f"""
WITH parsed AS (
    SELECT line_no, arrived_at, from_json(line, {_json_struct(fields)}) AS e,
        json_keys(line) AS keys
    FROM batch_raw
    WHERE line_no NOT IN (SELECT line_no FROM batch_failures)
), timed AS (
    SELECT *, {_timestamp('e."time"')} AS time FROM parsed
)
SELECT line_no, nullif({_text("e.id")}, '') AS event_id,
    {_text("e.specversion")} AS specversion,
    {_text("e.id")} AS id,
    {_text("e.source")} AS source,
    {_text('e."type"')} AS type,
    time,
    {_text("e.subject")} AS subject,
    {_text("e.datacontenttype")} AS datacontenttype,
    CASE WHEN json_type(e.schemaversion) IN ('BIGINT', 'UBIGINT')
         THEN TRY_CAST({_text("e.schemaversion")} AS BIGINT) END AS schemaversion,
    {_text("e.correlationid")} AS correlationid,
    {_text("e.causationid")} AS causationid,
    {_text("e.origin")} AS origin,
    e.data AS data,
    {_errors(errors)} AS decode_errors
FROM timed
"""


# -- gate 3: the payload --------------------------------------------------------------------------

_JSON_TYPES = {
    "string": ("VARCHAR",),
    "enum": ("VARCHAR",),
    "decimal": ("BIGINT", "UBIGINT", "DOUBLE"),
    "timestamp": ("VARCHAR",),
    "boolean": ("BOOLEAN",),
}
_JSON_TYPE_NAMES = {
    "string": "a string",
    "enum": "a string",
    "decimal": "a number",
    "timestamp": "an RFC 3339 timestamp string",
    "boolean": "true or false",
}


def _typed_value(value: str, attribute: Attribute) -> str:
    ok_types = ", ".join(sql_literal(t) for t in _JSON_TYPES[attribute.type])
    cast = {
        "string": _text(value),
        "enum": _text(value),
        "decimal": f"TRY_CAST({_text(value)} AS DOUBLE)",
        "timestamp": _timestamp(value),
        "boolean": f"TRY_CAST({_text(value)} AS BOOLEAN)",
    }[attribute.type]
    return f"CASE WHEN json_type({value}) IN ({ok_types}) THEN {cast} END"


def _shown(value: str, attribute: Attribute) -> str:
    """SQL showing a failing value in a reason; a PII value is withheld."""
    return "'withheld (PII)'" if attribute.pii else f"'''' || {_text(value)} || ''''"


def _decode_errors(
    field_name: str, value: str, attribute: Attribute, contract: Contract
) -> list[str]:
    ok_types = ", ".join(sql_literal(t) for t in _JSON_TYPES[attribute.type])
    expected = _JSON_TYPE_NAMES[attribute.type]
    errors = [
        _error(
            "payload",
            f"json_type({value}) NOT IN ({ok_types})",
            f"{sql_literal(f'field {field_name!r} must be {expected}, got JSON ')} || "
            f"{_json_kind(value)} || {sql_literal(f'; fix: send {expected}')}",
        )
    ]
    if attribute.type == "decimal":
        # The insert casts to the column's type: a value it cannot hold is refused here instead.
        # DuckDB reads NaN and Infinity (not JSON) as numbers, and 1e400 as Infinity.
        limit = f"10^{DECIMAL_DIGITS - DECIMAL_PLACES}"
        unfit = (
            f"json_type({value}) IN ({ok_types}) "
            f"AND TRY_CAST({_typed_value(value, attribute)} AS {attribute.duckdb_type}) IS NULL"
        )
        a_json_number = f"regexp_matches({_text(value)}, '^-?[0-9]')"
        errors += [
            _error(
                "not_finite",
                f"{unfit} AND NOT {a_json_number}",
                f"{sql_literal(f'field {field_name!r} is ')} || {_text(value)} || "
                + sql_literal(
                    ", which is not a JSON number; fix: send a finite number "
                    "(JSON has no NaN or Infinity)"
                ),
            ),
            _error(
                "out_of_range",
                f"{unfit} AND {a_json_number}",
                f"{sql_literal(f'field {field_name!r} is ')} || {_shown(value, attribute)} || "
                + sql_literal(
                    f", which does not fit {attribute.duckdb_type} (a number below {limit} in "
                    f"absolute value once rounded to {DECIMAL_PLACES} places); "
                    f"fix: send a value below {limit}"
                ),
            ),
        ]
    if attribute.type == "timestamp":
        errors.append(
            _error(
                "payload",
                f"json_type({value}) = 'VARCHAR' AND {_typed_value(value, attribute)} IS NULL",
                _timestamp_reason(f"field {field_name!r}", _shown(value, attribute)),
            )
        )
    split = contract.payload.splits.get(field_name)
    if split and attribute.required:
        # Cut short, a split would leave a required part missing once upcast.
        parts = f"len(string_split({_text(value)}, {sql_literal(split.separator)}))"
        errors.append(
            _error(
                "payload",
                f"json_type({value}) = 'VARCHAR' AND {parts} < {len(split.into)}",
                f"{sql_literal(f'field {field_name!r} must hold ' + ', '.join(split.into))} || "
                f"{sql_literal(f' separated by {split.separator!r}, got ')} || "
                f"{_shown(value, attribute)} || "
                f"{sql_literal('; fix: send every part, or the current version')}",
            )
        )
    if attribute.required and contract.action != "created":
        errors.append(
            _error(
                "payload",
                f"list_contains(keys, {sql_literal(field_name)}) AND {value} IS NULL",
                sql_literal(
                    f"field {field_name!r} may not be set to null; "
                    "fix: leave it out to keep the current value"
                ),
            )
        )
    return errors


def payload_decode_sql(contract: Contract) -> str:
    """DuckDB SQL that turns the payloads of one contract into typed columns plus decode errors.

    Each payload is parsed once (`from_json` into a struct of raw JSON values); presence comes from
    its keys, since an explicit null and an absent field both read as NULL from the struct. The
    keys also show a field sent twice, which `from_json` would quietly read as the first.
    """
    known = "[" + ", ".join(sql_literal(f) for f in contract.fields) + "]::VARCHAR[]"
    unknown = f"list_filter(keys, lambda k: NOT list_contains({known}, k))"
    known_present = " + ".join(
        f"list_contains(keys, {sql_literal(f)})::INTEGER" for f in contract.fields
    )
    # Every key a distinct field of the contract: a few cheap list_contains rule out unknown and
    # repeated fields for nearly every payload, before list_unique and the lambdas run.
    only_known = f"len(keys) = ({known_present or '0'})"
    errors = [
        _error(
            "duplicate_key",
            f"NOT {only_known} AND len(keys) <> list_unique(keys)",
            f"'field(s) ' || {_repeated_keys_named('keys')} || ' appear more than once in data; "
            "fix: send each field once'",
        ),
        _error(
            "payload",
            "data IS NOT NULL AND json_type(data) <> 'OBJECT'",
            "'data must be a JSON object; fix: send the payload as an object'",
        ),
        _error(
            "payload",
            f"NOT {only_known} AND len({unknown}) > 0",
            f"'unknown field(s) ' || array_to_string({unknown}, ', ') "
            f"|| {sql_literal('; fix: remove them, or propose a new schema version')}",
        ),
    ]
    columns, present = [], []
    for field_name in contract.fields:
        attribute = contract.payload.attribute(field_name)
        value = f"p.{quote(field_name)}"
        columns.append(f"{_typed_value(value, attribute)} AS {quote(field_name)}")
        errors.extend(_decode_errors(field_name, value, attribute, contract))
        present += [
            f"CASE WHEN list_contains(keys, {sql_literal(field_name)}) THEN {sql_literal(a)} END"
            for a in contract.payload.attributes_of(field_name)
        ]
    set_attributes = (
        "list_filter([" + ", ".join(present) + "]::VARCHAR[], lambda x: x IS NOT NULL)"
        if present
        else "[]::VARCHAR[]"
    )
    if contract.action in ("updated", "reconciled"):
        errors.append(
            _error(
                "payload",
                f"len({set_attributes}) = 0",
                sql_literal(
                    f"{contract.event_type} carries no attribute; "
                    "fix: send at least one changed field"
                ),
            )
        )
    parsed = f"from_json(data, {_json_struct(contract.fields)})" if contract.fields else "NULL"
    field_columns = "".join(f",\n    {c}" for c in columns)
    return f"""
WITH parsed AS (
    SELECT *, {parsed} AS p,
        CASE WHEN json_type(data) = 'OBJECT' THEN json_keys(data) ELSE []::VARCHAR[] END AS keys
    FROM batch_envelopes
    WHERE type = ? AND schemaversion = ?
)
SELECT line_no, id AS event_id, subject AS {KEY_COLUMN}, time, source, origin, correlationid,
    causationid, schemaversion, {set_attributes} AS set_attributes,
    {_errors(errors)} AS decode_errors{field_columns}
FROM parsed
"""


# -- pandera failure cases into reasons -----------------------------------------------------------


def _hint(attribute: Attribute | None, column: str, check: str) -> str:
    if attribute is None:
        return _ENVELOPE_HINTS.get(column, "see the contract")
    if check == "not_nullable":
        return f"send {column!r}; it is required"
    if attribute.allowed:
        return f"use one of {', '.join(attribute.allowed)}"
    if attribute.minimum is not None:
        return f"send a value of at least {attribute.minimum:g}"
    if attribute.pattern:
        return f"send a value matching {attribute.pattern}"
    return attribute.description


_FAILURE_SCHEMA = {
    "line_no": pl.Int64,
    "event_id": pl.String,
    "rule": pl.String,
    "reason": pl.String,
}


def failure_reasons(
    frame: pl.DataFrame, schema, contract: Contract | None, pii: frozenset[str]
) -> pl.DataFrame:
    """Validate `frame` with a pandera schema; return one row per failing line with its reasons.

    Pandera judges only the rows `suspects` finds its checks could fail (none: it is not called),
    so its verdicts and messages are those it gives on the whole frame."""
    found = suspects(frame, schema)
    if found is not None and found.is_empty():
        return _empty_failures()
    return judged(frame if found is None else found, schema, contract, pii)


def judged(
    frame: pl.DataFrame, schema, contract: Contract | None, pii: frozenset[str]
) -> pl.DataFrame:
    """`failure_reasons` by pandera alone, every row of `frame` checked."""
    from pandera.errors import SchemaErrors

    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return _empty_failures()
    if cases.filter(pl.col("index").is_null()).height:
        raise RuntimeError(
            f"{schema.name}: a column-level failure, the decoder and the schema disagree:\n"
            f"{cases.filter(pl.col('index').is_null())}"
        )
    rows = []
    line_nos = frame["line_no"]
    event_ids = frame["event_id"] if "event_id" in frame.columns else frame["id"]
    for index, column, check, value in cases.select(
        "index", "column", "check", "failure_case"
    ).iter_rows():
        attribute = None
        if contract is not None and column in contract.fields:
            attribute = contract.payload.attribute(column)
        attribute_name = contract.fields.get(column, column) if contract else column
        secret = attribute.pii if attribute is not None else attribute_name in pii
        shown = "withheld (PII)" if secret else repr(value)
        rule = check.split("(")[0]
        label = f"field {column!r}" if contract else f"envelope field {column!r}"
        rows.append(
            (
                line_nos[index],
                event_ids[index],
                rule,
                f"{label} failed {check}, got {shown}; fix: {_hint(attribute, column, check)}",
            )
        )
    # Typed, not inferred: polars infers from the first 100 rows, and a batch whose first
    # hundred failing lines have no event id would type the column Null and fail on the next.
    reasons = pl.DataFrame(rows, schema=_FAILURE_SCHEMA, orient="row")
    return reasons.group_by("line_no").agg(
        pl.col("event_id").first(),
        pl.col("rule").first(),
        pl.col("reason").unique(maintain_order=True).str.join("; "),
    )


def _isin(value: pl.Expr, allowed_values) -> pl.Expr:
    return value.is_in(allowed_values)


def _str_contains(value: pl.Expr, pattern) -> pl.Expr:
    return value.str.contains(pattern=getattr(pattern, "pattern", pattern), literal=False)


def _ge(value: pl.Expr, min_value) -> pl.Expr:
    return value.ge(min_value)


def _str_length(value: pl.Expr, min_value=None, max_value=None, exact_value=None) -> pl.Expr:
    length = value.str.len_chars()
    if exact_value is not None:
        return length.eq(exact_value)
    if min_value is None:
        return length.le(max_value)
    return length.ge(min_value) if max_value is None else length.is_between(min_value, max_value)


_CHECKS: dict[str, Callable[..., pl.Expr]] = {
    "isin": _isin,
    "str_contains": _str_contains,
    "greater_than_or_equal_to": _ge,
    "str_length": _str_length,
}
"""The pandera checks `suspects` knows, by name: each the expression pandera's polars backend
evaluates for it (pandera/backends/polars/builtin_checks.py), over the check's own arguments."""


def suspects(frame: pl.DataFrame, schema) -> pl.DataFrame | None:
    """The rows of `frame` that a check of the pandera `schema` could fail: a null where the
    column may not hold one, or a check whose expression is false, nulls passing where the check
    ignores them, as pandera does. One pass of polars over the frame, where pandera runs a query
    per check (about 25 ms a call and 1.6 us a row, most of validation's Python).

    None when it cannot say: the schema has a check or option it does not know, or a column is
    missing or typed otherwise (pandera then judges every row, and names the column's failure).
    """
    if schema.checks or schema.unique or schema.coerce or getattr(schema, "parsers", None):
        return None
    failing = []
    for name, column in schema.columns.items():
        if column.regex or column.coerce or column.unique or getattr(column, "parsers", None):
            return None
        dtype = getattr(column.dtype, "type", None)
        if dtype is None or name not in frame.columns or frame.schema[name] != dtype:
            return None
        value = pl.col(name)
        if not column.nullable:
            failing.append(value.is_null())
        for check in column.checks:
            expression = _CHECKS.get(check.name)
            if expression is None or check.element_wise:
                return None
            passed = expression(value, **check.statistics)
            passed = (passed | passed.is_null()) if check.ignore_na else passed.fill_null(False)
            failing.append(passed.not_())
    if not failing:
        return frame.clear()
    try:
        return frame.filter(pl.any_horizontal(failing))
    except pl.exceptions.PolarsError:  # a pattern polars refuses: pandera says what is wrong
        return None


def _empty_failures() -> pl.DataFrame:
    return pl.DataFrame(schema=_FAILURE_SCHEMA)


def _decode_failures(con: duckdb.DuckDBPyConnection, table: str, prefix: str) -> pl.DataFrame:
    """The lines of a decoded `table` with decode errors: the first error's rule, and every
    error's reason."""
    failed = query_frame(
        con,
        f"SELECT line_no, event_id, decode_errors FROM {quote(table)} WHERE len(decode_errors) > 0",
    )
    reasons = pl.col("decode_errors").list.eval(pl.element().struct.field("reason"))
    return failed.select(
        pl.col("line_no").cast(pl.Int64),
        pl.col("event_id").cast(pl.String),
        pl.col("decode_errors").list.first().struct.field("rule").alias("rule"),
        (pl.lit(prefix) + reasons.list.join("; ")).alias("reason"),
    )


# -- the batch ------------------------------------------------------------------------------------


def validate_batch(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    *,
    max_skew: timedelta | None = None,
    zone: LandingZone | None = None,
) -> ValidationCounts:
    """Route every raw event of the batch to its entity's validated events, the duplicates or the
    dead letters, and move the batch from `raw` to `validated`.

    Runs inside the caller's transaction; a batch already validated is left as it is. `max_skew`
    is how far an event's time may lie after its arrival; by default the setting
    (`sync_assets.settings.max_clock_skew`). With the landing `zone`, the lines are read from the
    batch's file when it still holds the batch, instead of opening every sealed raw line.
    """
    found = con.execute(
        "SELECT state, system FROM batches WHERE batch_id = ?", [batch_id]
    ).fetchall()
    if not found or found[0][0] == "landed":
        raise LookupError(f"batch {batch_id} has no raw events yet: ingest it first")
    state, system_name = found[0]
    if state != "raw":
        return _recorded_counts(con, batch_id)

    pii_of(con)
    _open_lines(con, batch_id, zone)
    con.execute("CREATE OR REPLACE TEMP TABLE batch_failures AS " + _LINE_GATE)
    system = current().systems[system_name]
    # The decoded envelopes stay in DuckDB: only the failing lines' errors and the envelope
    # columns pandera checks go to polars, not the payloads (`data`), which the contracts read
    # from `batch_envelopes` next.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE batch_decoded AS "
        + envelope_decode_sql(max_clock_skew() if max_skew is None else max_skew, system)
    )
    _record_failures(con, _decode_failures(con, "batch_decoded", ""), None)
    decoded = query_frame(
        con,
        "SELECT * EXCLUDE (decode_errors, data) FROM batch_decoded WHERE len(decode_errors) = 0",
    )
    _record_failures(con, failure_reasons(decoded, _envelope_schema(), None, frozenset()), None)
    if system.signing_key_env is not None:
        _record_failures(
            con,
            unsigned_lines(
                # The lines still good: every failure so far is in batch_failures.
                con.execute(
                    "SELECT line_no, line FROM batch_raw "
                    "WHERE line_no NOT IN (SELECT line_no FROM batch_failures)"
                ).fetchall(),
                system,
            ),
            None,
        )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE batch_envelopes AS SELECT * EXCLUDE (decode_errors) "
        "FROM batch_decoded WHERE line_no NOT IN (SELECT line_no FROM batch_failures)"
    )
    con.execute("DROP TABLE batch_decoded")

    _dead_letter_unknown_contracts(con)
    # Each contract's decoded payloads stay in DuckDB, in a temporary table of their own, from
    # decoding to the insert: polars sees only the columns pandera checks.
    valid: list[tuple[Contract, str]] = []
    for event_type, version in con.execute(
        "SELECT DISTINCT type, schemaversion FROM batch_envelopes ORDER BY ALL"
    ).fetchall():
        if (event_type, version) in current().contracts:
            contract = current().contracts[(event_type, version)]
            table = f"batch_contract_{len(valid)}"
            _validate_contract(con, contract, table)
            valid.append((contract, table))

    counts = ValidationCounts()
    counts.duplicates = _deduplicate(con, batch_id, [table for _, table in valid])
    for contract, table in valid:
        accepted = _insert_validated(con, contract, table, batch_id)
        counts.validated += accepted
        counts.by_entity[contract.entity.name] += accepted

    counts.deprecated.update(_deprecated_in_batch(con, batch_id))
    _write_dead_letters(con, batch_id)
    _resolve_dead_letters(con, batch_id)
    for rule, count in con.execute(
        "SELECT rule, count(*) FROM batch_failures GROUP BY rule"
    ).fetchall():
        counts.by_rule[rule] = count
        counts.dead_lettered += count
    ledger.mark_validated(
        con,
        batch_id,
        validated=counts.validated,
        duplicates=counts.duplicates,
        dead_lettered=counts.dead_lettered,
    )
    con.execute(
        "DROP TABLE IF EXISTS batch_raw; DROP TABLE IF EXISTS batch_failures; "
        "DROP TABLE IF EXISTS batch_envelopes; DROP TABLE IF EXISTS batch_valid_ids; "
        + "".join(f"DROP TABLE IF EXISTS {quote(table)}; " for _, table in valid)
    )
    crash_point("mid-validation")
    return counts


def _open_lines(con: duckdb.DuckDBPyConnection, batch_id: str, zone: LandingZone | None) -> None:
    """The batch's raw events with their lines in clear, in the temporary table `batch_raw`
    (memory, gone with the transaction's end): from the landed file when it still holds the batch
    and agrees line by line in number and size, else by opening each sealed line."""
    lines = None if zone is None else landed_lines(zone, batch_id)
    if lines is not None:
        with registered(con, "batch_landed", lines) as landed_table:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE batch_raw AS "
                f"SELECT r.* REPLACE (l.line AS line) FROM raw_events AS r JOIN {landed_table} AS l "
                "ON l.line_no = r.line_no AND strlen(l.line) = r.size_bytes WHERE r.batch_id = ?",
                [batch_id],
            )
        landed = scalar(con, "SELECT landed FROM batches WHERE batch_id = ?", [batch_id])
        if scalar(con, "SELECT count(*) FROM batch_raw") == landed == lines.num_rows:
            return
    con.execute(
        "CREATE OR REPLACE TEMP TABLE batch_raw AS "
        "SELECT * REPLACE (pii_open(?, line) AS line) FROM raw_events WHERE batch_id = ?",
        [RAW_LINE, batch_id],
    )


def _deduplicate(con: duckdb.DuckDBPyConnection, batch_id: str, tables: list[str]) -> int:
    """Record the valid events whose (source, id) was accepted before, in an earlier batch or
    earlier in this one, as duplicates of that first copy; how many.

    CloudEvents makes (source, id) an event's identity. Only valid events count: an invalid copy
    is a dead letter and never hides a later valid one, and an event of one system never makes
    another system's event with the same id a duplicate.
    """
    ids = [f"SELECT line_no, source, event_id FROM ({_valid_rows(table)})" for table in tables] or [
        "SELECT NULL::BIGINT AS line_no, NULL::VARCHAR AS source, NULL::VARCHAR AS event_id "
        "WHERE false"
    ]
    con.execute("CREATE OR REPLACE TEMP TABLE batch_valid_ids AS " + " UNION ALL ".join(ids))
    con.execute(
        """
        INSERT INTO duplicate_events
        WITH firsts AS (
            SELECT *, min(line_no) OVER (PARTITION BY source, event_id) AS first_line
            FROM batch_valid_ids
        ), earlier AS (
            SELECT source, event_id, min({'batch_id': batch_id, 'line_no': line_no}) AS first
            FROM accepted_events
            WHERE (source, event_id) IN (SELECT (source, event_id) FROM batch_valid_ids)
            GROUP BY ALL
        )
        SELECT $batch_id, f.line_no, f.source, f.event_id,
               coalesce(e.first.batch_id, $batch_id), coalesce(e.first.line_no, f.first_line),
               now()
        FROM firsts f LEFT JOIN earlier e USING (source, event_id)
        WHERE e.first IS NOT NULL OR f.line_no > f.first_line
        """,
        {"batch_id": batch_id},
    )
    return scalar(con, "SELECT count(*) FROM duplicate_events WHERE batch_id = ?", [batch_id])


def _valid_rows(table: str) -> str:
    """SQL: the rows of a contract's decoded payloads that passed every gate so far."""
    return (
        f"SELECT * EXCLUDE (decode_errors) FROM {quote(table)} WHERE len(decode_errors) = 0 "
        "AND line_no NOT IN (SELECT line_no FROM batch_failures)"
    )


def _record_failures(
    con: duckdb.DuckDBPyConnection, failures: pl.DataFrame, contract: Contract | None
) -> None:
    if failures.is_empty():
        return
    frame = failures.select(
        pl.col("line_no").cast(pl.Int64),
        pl.col("event_id").cast(pl.String),
        pl.lit(contract.event_type if contract else None, dtype=pl.String).alias("event_type"),
        pl.lit(contract.name if contract else None, dtype=pl.String).alias("contract"),
        pl.col("rule"),
        pl.col("reason"),
    )
    con.register("failures_frame", frame)
    con.execute("INSERT INTO batch_failures SELECT * FROM failures_frame")
    con.unregister("failures_frame")


def _dead_letter_unknown_contracts(con: duckdb.DuckDBPyConnection) -> None:
    """An event of a version the registry does not know, or has retired, is a dead letter naming
    the versions its type supports; the batch goes on."""
    project = current()
    known = ", ".join(f"({sql_literal(t)}, {int(v)})" for (t, v) in project.contracts)
    supported = []
    for event_type in project.event_types:
        entity = event_type.split(".")[0]
        versions = [p.version for p in project.versions_of(entity) if not p.retired]
        retired = [p.version for p in project.versions_of(entity) if p.retired]
        words = ", ".join(map(str, versions)) + f" (current {project.current_version[entity]})"
        supported.append(
            f"({sql_literal(event_type)}, {sql_literal(words)}, "
            f"{project.current_version[entity]}, {sql_literal(entity)}, "
            f"[{', '.join(map(str, retired))}]::BIGINT[])"
        )
    con.execute(
        f"""
        INSERT INTO batch_failures
        SELECT line_no, event_id, type, NULL, 'contract',
               CASE WHEN list_contains(s.retired, schemaversion)
                    THEN type || ' schema version ' || schemaversion || ' is retired'
                    ELSE 'no contract for ' || type || ' schema version ' || schemaversion END
               || '; supported versions: ' || s.supported || '; fix: '
               || CASE WHEN list_contains(s.retired, schemaversion)
                       THEN 'upgrade the producer to schema version ' || s.current
                       ELSE 'send a supported version, or register version ' || schemaversion
                            || ' in contracts/' || s.entity || '.yaml first' END
        FROM batch_envelopes
        JOIN (VALUES {", ".join(supported)}) AS s(type, supported, current, entity, retired)
            USING (type)
        WHERE (type, schemaversion) NOT IN (SELECT * FROM (VALUES {known}))
        """
    )


def _validate_contract(con: duckdb.DuckDBPyConnection, contract: Contract, table: str) -> None:
    """Decode the contract's payloads into `table` and record the lines that fail its gates."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {quote(table)} AS {payload_decode_sql(contract)}",
        [contract.event_type, contract.version],
    )
    _record_failures(con, _decode_failures(con, table, f"{contract.name}: "), contract)
    # The columns the schema checks (it is not strict), and the line and event id of a failure.
    checked = ", ".join(quote(c) for c in ("line_no", "event_id", KEY_COLUMN, *contract.fields))
    candidates = query_frame(
        con, f"SELECT {checked} FROM {quote(table)} WHERE len(decode_errors) = 0"
    )
    failures = failure_reasons(
        candidates, contract.schema, contract, contract.entity.pii_attributes
    )
    failures = failures.with_columns(
        (pl.lit(f"{contract.name} ") + pl.col("reason")).alias("reason")
    )
    _record_failures(con, failures, contract)


def _insert_validated(
    con: duckdb.DuckDBPyConnection, contract: Contract, table: str, batch_id: str
) -> int:
    """Insert the contract's valid events, upcast to the entity's current version, that are not
    duplicates; how many."""
    entity = contract.entity
    renames = contract.upcast_renames()
    columns = [
        renames.get(name, name)
        for name, *_ in con.execute(f"SELECT * FROM {quote(table)} LIMIT 0").description
    ]
    # A created event of an older version takes the defaults later versions declare for what it
    # lacks (an update's missing field means 'unchanged', so it takes none).
    defaults = current().upcast_defaults(contract.payload) if contract.action == "created" else {}
    parts = {}  # attribute -> SQL cutting its part out of a split field
    for field_name, split in contract.payload.splits.items():
        cut = f"string_split({quote(field_name)}, {sql_literal(split.separator)})"
        last = len(split.into)
        for i, part in enumerate(split.into, 1):
            parts[part] = (
                f"{cut}[{i}]"
                if i < last
                else f"nullif(array_to_string({cut}[{last}:], {sql_literal(split.separator)}), '')"
            )
    attributes = []
    for attribute in entity.attributes:
        column_type = stored_type(attribute)
        if attribute.name in columns:
            value = quote(attribute.name)
        elif attribute.name in parts:
            value = parts[attribute.name]
        elif attribute.name in defaults:
            value = sql_literal(str(defaults[attribute.name]))
        else:
            attributes.append(f"NULL::{column_type}")
            continue
        if attribute.pii:
            value = f"CAST(CAST({value} AS {attribute.duckdb_type}) AS VARCHAR)"
            field = sql_literal(pii_fields.field_name(entity, attribute.name))
            attributes.append(f"pii_seal({field}, {value})")
        else:
            attributes.append(f"CAST({value} AS {attribute.duckdb_type})")
    set_attributes = "set_attributes"
    if defaults:
        defaulted = ", ".join(sql_literal(a) for a in defaults)
        set_attributes = f"list_concat(set_attributes, [{defaulted}])"
    renamed = ", ".join(f"{quote(f)} AS {quote(a)}" for f, a in renames.items())
    return scalar(
        con,
        f"""
        INSERT INTO {quote(entity.events_table)}
        SELECT event_id, ?, line_no, ?, {KEY_COLUMN}, time,
               strftime(time AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') || '|' || event_id,
               origin, source, correlationid, causationid, schemaversion, {set_attributes},
               {", ".join(attributes)}
        FROM (SELECT *{f" RENAME ({renamed})" if renamed else ""} FROM ({_valid_rows(table)}))
        WHERE line_no NOT IN (SELECT line_no FROM duplicate_events WHERE batch_id = ?)
        ORDER BY line_no
        """,
        [batch_id, contract.action, batch_id],
    )


def _write_dead_letters(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """Every gate's failures, each reason prefixed with the line it concerns."""
    con.execute(
        f"""
        INSERT INTO dead_letters (batch_id, line_no, source, event_id, event_type, contract, rule,
                                  reason, payload, dead_lettered_at, correlation_id)
        SELECT ?, f.line_no, {_envelope_text("source")},
               f.event_id, f.event_type, f.contract, f.rule,
               'line ' || f.line_no || ': ' || f.reason, pii_seal(?, r.line), now(),
               {_envelope_text("correlationid")}
        FROM batch_failures f JOIN batch_raw r USING (line_no)
        """,
        [batch_id, DEAD_LETTER_PAYLOAD],
    )


def _envelope_text(field: str) -> str:
    """SQL: a dead-lettered line's envelope field `field` when the line is JSON and the field is
    text, else NULL (a line may be anything: that is why it was refused)."""
    path = sql_literal(f"$.{field}")
    return (
        f"CASE WHEN r.decode_error IS NULL AND json_valid(r.line) "
        f"AND json_type(r.line, {path}) = 'VARCHAR' THEN json_extract_string(r.line, {path}) END"
    )


def _resolve_dead_letters(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """A held dead letter whose event this batch accepted (a producer re-sent it, fixed, with the
    same source and id) is resolved: the event is in, nothing waits for a redrive any more."""
    con.execute(
        """
        UPDATE dead_letters d
        SET resolution = 'accepted_copy', resolved_by = $batch_id || ':' || v.line_no,
            resolved_at = now()
        FROM (SELECT * FROM batch_valid_ids ANTI JOIN duplicate_events repeated
                  ON repeated.batch_id = $batch_id AND repeated.line_no = batch_valid_ids.line_no) v
        WHERE d.resolution IS NULL AND d.source = v.source AND d.event_id = v.event_id
        """,
        {"batch_id": batch_id},
    )


def _recorded_counts(con: duckdb.DuckDBPyConnection, batch_id: str) -> ValidationCounts:
    counts = ValidationCounts()
    for rule, count in con.execute(
        "SELECT rule, count(*) FROM dead_letters WHERE batch_id = ? GROUP BY rule", [batch_id]
    ).fetchall():
        counts.by_rule[rule] = count
        counts.dead_lettered += count
    counts.validated, counts.duplicates = one(
        con, "SELECT validated, duplicates FROM batches WHERE batch_id = ?", [batch_id]
    )
    return counts


def _envelope_schema():
    """The envelope's schema for the current project (built once per project by the cache)."""
    project = current()
    return build_envelope_schema(project.sources, project.event_types, project.system_names)


def _deprecated_in_batch(con: duckdb.DuckDBPyConnection, batch_id: str) -> dict[str, int]:
    """`<entity>_<attribute>` -> how many of the batch's validated events carry a deprecated
    field: the warning metric while the window runs."""
    counts = {}
    project = current()
    for entity, policy in project.contract_policies.items():
        table = project.entity(entity).events_table
        for d in policy.deprecated:
            n = scalar(
                con,
                f"SELECT count(*) FROM {quote(table)} "
                "WHERE batch_id = ? AND list_contains(set_attributes, ?)",
                [batch_id, d.attribute],
            )
            if n:
                counts[f"{entity}_{d.attribute}"] = n
    return counts
