"""Validation: raw events of one batch become validated events or dead letters, never neither.

Three gates, each naming the line, the field, the rule and the fix when an event fails it:
1. the line: valid UTF-8, within the size limit, a JSON object;
2. the envelope: decoded in DuckDB, then checked by the envelope's pandera schema;
3. the payload: decoded per (event type, schema version), checked by that contract's pandera schema,
   then upcast to the entity's current version.
Decoding (JSON types, presence, unknown fields) runs in DuckDB; the value rules run in pandera.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import duckdb
import polars as pl

from sync_assets import ledger
from sync_assets.catalog.contracts import (
    CONTRACTS,
    KEY_COLUMN,
    Contract,
    build_envelope_schema,
)
from sync_assets.catalog.entities import Attribute
from sync_assets.catalog.events import ENVELOPE_FIELDS, MAX_EVENT_BYTES
from sync_assets.crashpoints import crash_point
from sync_assets.warehouse import one, query_frame, quote, sql_literal

TIMEZONE_SUFFIX = r"(Z|[+-]\d\d:?\d\d)$"


@dataclass
class ValidationCounts:
    validated: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    by_entity: Counter[str] = field(default_factory=Counter)

    def add(self, other: ValidationCounts) -> None:
        self.validated += other.validated
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.by_rule.update(other.by_rule)
        self.by_entity.update(other.by_entity)


# -- gate 1: the line -----------------------------------------------------------------------------

_LINE_GATE = f"""
SELECT line_no, event_id, NULL::VARCHAR AS event_type, NULL::VARCHAR AS contract,
    CASE WHEN decode_error IS NOT NULL THEN 'utf8'
         WHEN size_bytes > {MAX_EVENT_BYTES} THEN 'size'
         ELSE 'json' END AS rule,
    CASE WHEN decode_error IS NOT NULL
            THEN decode_error
                 || '; fix: the producer must write UTF-8'
         WHEN size_bytes > {MAX_EVENT_BYTES}
            THEN 'event is ' || size_bytes || ' bytes, over the '
                 || '{MAX_EVENT_BYTES}-byte limit; fix: send only the fields that changed'
         WHEN NOT json_valid(line)
            THEN 'malformed JSON; fix: write one complete JSON object '
                 || 'per line'
         ELSE 'a JSON ' || lower(json_type(line))
              || ', not an object; fix: write one event object per line' END AS reason
FROM batch_raw
WHERE decode_error IS NOT NULL OR size_bytes > {MAX_EVENT_BYTES}
   OR NOT json_valid(line) OR json_type(line) <> 'OBJECT'
"""

# -- gate 2: the envelope -------------------------------------------------------------------------


def _json_struct(fields) -> str:
    """A from_json structure that parses a document once, keeping each field as raw JSON."""
    return "'{" + ", ".join(f'"{name}": "JSON"' for name in fields) + "}'"


def _text(json_value: str) -> str:
    return f"json_extract_string({json_value}, '$')"


_ENVELOPE_DECODE = f"""
WITH parsed AS (
    SELECT line_no, event_id, from_json(line, {_json_struct((*ENVELOPE_FIELDS, "data"))}) AS e
    FROM batch_raw
    WHERE line_no NOT IN (SELECT line_no FROM batch_failures)
)
SELECT line_no, event_id,
    {_text("e.specversion")} AS specversion,
    {_text("e.id")} AS id,
    {_text("e.source")} AS source,
    {_text('e."type"')} AS type,
    TRY_CAST({_text('e."time"')} AS TIMESTAMPTZ) AS time,
    {_text("e.subject")} AS subject,
    {_text("e.datacontenttype")} AS datacontenttype,
    CASE WHEN json_type(e.schemaversion) IN ('BIGINT', 'UBIGINT')
         THEN TRY_CAST({_text("e.schemaversion")} AS BIGINT) END AS schemaversion,
    {_text("e.correlationid")} AS correlationid,
    {_text("e.causationid")} AS causationid,
    {_text("e.origin")} AS origin,
    e.data AS data,
    list_filter([
        CASE WHEN json_type(e.id) <> 'VARCHAR'
             THEN 'envelope field ''id'' must be a string, got ' || json_type(e.id)
                  || '; fix: send the event id as a string' END,
        CASE WHEN json_type(e.subject) <> 'VARCHAR'
             THEN 'envelope field ''subject'' must be a string key, got '
                  || json_type(e.subject) || '; fix: send the canonical key as a string' END,
        CASE WHEN json_type(e.schemaversion) NOT IN ('BIGINT', 'UBIGINT')
             THEN 'envelope field ''schemaversion'' must be an integer, got '
                  || json_type(e.schemaversion) || '; fix: send e.g. 2, not "2"' END,
        CASE WHEN e."time" IS NOT NULL AND (
                TRY_CAST({_text('e."time"')} AS TIMESTAMPTZ) IS NULL
                OR NOT regexp_matches({_text('e."time"')}, '{TIMEZONE_SUFFIX}'))
             THEN 'envelope field ''time'' must be an RFC 3339 timestamp with a zone; '
                  || 'fix: send e.g. 2026-11-25T08:30:00Z' END,
        CASE WHEN starts_with({_text("e.source")}, '/systems/')
                  AND {_text("e.source")} <> '/systems/' || coalesce({_text("e.origin")}, '')
             THEN 'envelope field ''origin'' must name the system in ''source'' ('
                  || {_text("e.source")} || '); fix: set origin to that system' END
    ], lambda x: x IS NOT NULL) AS decode_errors
FROM parsed
"""

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
    "origin": "name the system the change comes from",
}


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
        "timestamp": f"TRY_CAST({_text(value)} AS TIMESTAMPTZ)",
        "boolean": f"TRY_CAST({_text(value)} AS BOOLEAN)",
    }[attribute.type]
    return f"CASE WHEN json_type({value}) IN ({ok_types}) THEN {cast} END"


def _decode_errors(
    field_name: str, value: str, attribute: Attribute, contract: Contract
) -> list[str]:
    ok_types = ", ".join(sql_literal(t) for t in _JSON_TYPES[attribute.type])
    expected = _JSON_TYPE_NAMES[attribute.type]
    errors = [
        f"CASE WHEN json_type({value}) NOT IN ({ok_types}) THEN "
        f"{sql_literal(f'field {field_name!r} must be {expected}, got JSON ')} || "
        f"lower(json_type({value})) || {sql_literal(f'; fix: send {expected}')} END"
    ]
    if attribute.type == "timestamp":
        errors.append(
            f"CASE WHEN json_type({value}) = 'VARCHAR' AND ({_typed_value(value, attribute)} IS NULL "
            f"OR NOT regexp_matches({_text(value)}, '{TIMEZONE_SUFFIX}')) "
            f"THEN {sql_literal(f'field {field_name!r} is not an RFC 3339 timestamp with a zone; fix: send e.g. 2026-11-25T08:30:00Z')} END"
        )
    if attribute.required and contract.action != "created":
        errors.append(
            f"CASE WHEN list_contains(keys, {sql_literal(field_name)}) AND {value} IS NULL THEN "
            f"{sql_literal(f'field {field_name!r} may not be set to null; fix: leave it out to keep the current value')} END"
        )
    return errors


def payload_decode_sql(contract: Contract) -> str:
    """DuckDB SQL that turns the payloads of one contract into typed columns plus decode errors.

    Each payload is parsed once (`from_json` into a struct of raw JSON values); presence comes from
    its keys, since an explicit null and an absent field both read as NULL from the struct.
    """
    known = "[" + ", ".join(sql_literal(f) for f in contract.fields) + "]::VARCHAR[]"
    unknown = f"list_filter(keys, lambda k: NOT list_contains({known}, k))"
    errors = [
        "CASE WHEN data IS NOT NULL AND json_type(data) <> 'OBJECT' THEN "
        "'data must be a JSON object; fix: send the payload as an object' END",
        f"CASE WHEN len({unknown}) > 0 THEN 'unknown field(s) ' || array_to_string({unknown}, ', ') "
        f"|| {sql_literal('; fix: remove them, or propose a new schema version')} END",
    ]
    columns, present = [], []
    for field_name, attribute_name in contract.fields.items():
        attribute = contract.entity.attribute(attribute_name)
        value = f"p.{quote(field_name)}"
        columns.append(f"{_typed_value(value, attribute)} AS {quote(field_name)}")
        errors.extend(_decode_errors(field_name, value, attribute, contract))
        present.append(
            f"CASE WHEN list_contains(keys, {sql_literal(field_name)}) "
            f"THEN {sql_literal(attribute_name)} END"
        )
    set_attributes = (
        "list_filter([" + ", ".join(present) + "]::VARCHAR[], lambda x: x IS NOT NULL)"
        if present
        else "[]::VARCHAR[]"
    )
    if contract.action in ("updated", "reconciled"):
        errors.append(
            f"CASE WHEN len({set_attributes}) = 0 THEN "
            f"{sql_literal(f'{contract.event_type} carries no attribute; fix: send at least one changed field')} END"
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
    list_filter([{", ".join(errors)}], lambda x: x IS NOT NULL) AS decode_errors{field_columns}
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


def failure_reasons(
    frame: pl.DataFrame, schema, contract: Contract | None, pii: frozenset[str]
) -> pl.DataFrame:
    """Validate `frame` with a pandera schema; return one row per failing line with its reasons."""
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
            attribute = contract.entity.attribute(contract.fields[column])
        attribute_name = contract.fields.get(column, column) if contract else column
        shown = "withheld (PII)" if attribute_name in pii else repr(value)
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
    reasons = pl.DataFrame(
        rows, schema=["line_no", "event_id", "rule", "reason"], orient="row"
    ).with_columns(pl.col("line_no").cast(pl.Int64))
    return reasons.group_by("line_no").agg(
        pl.col("event_id").first(),
        pl.col("rule").first(),
        pl.col("reason").unique(maintain_order=True).str.join("; "),
    )


def _empty_failures() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"line_no": pl.Int64, "event_id": pl.String, "rule": pl.String, "reason": pl.String}
    )


def _decode_failures(frame: pl.DataFrame, rule: str, prefix: str) -> pl.DataFrame:
    failed = frame.filter(pl.col("decode_errors").list.len() > 0)
    return failed.select(
        pl.col("line_no").cast(pl.Int64),
        pl.col("event_id").cast(pl.String),
        pl.lit(rule).alias("rule"),
        (pl.lit(prefix) + pl.col("decode_errors").list.join("; ")).alias("reason"),
    )


# -- the batch ------------------------------------------------------------------------------------


def validate_batch(con: duckdb.DuckDBPyConnection, batch_id: str) -> ValidationCounts:
    """Route every raw event of the batch to its entity's validated events, the duplicates or the
    dead letters, and move the batch from `raw` to `validated`.

    Runs inside the caller's transaction; a batch already validated is left as it is.
    """
    state = con.execute("SELECT state FROM batches WHERE batch_id = ?", [batch_id]).fetchone()
    if state is None or state[0] == "landed":
        raise LookupError(f"batch {batch_id} has no raw events yet: ingest it first")
    if state[0] != "raw":
        return _recorded_counts(con, batch_id)

    con.execute(
        """CREATE OR REPLACE TEMP TABLE batch_raw AS
            SELECT *, CASE WHEN decode_error IS NULL AND json_valid(line)
                           THEN nullif(json_extract_string(line, '$.id'), '') END AS event_id
            FROM raw_events WHERE batch_id = ?""",
        [batch_id],
    )
    con.execute("CREATE OR REPLACE TEMP TABLE batch_failures AS " + _LINE_GATE)
    envelopes = query_frame(con, _ENVELOPE_DECODE)
    _record_failures(con, _decode_failures(envelopes, "envelope", ""), None)
    decoded = envelopes.filter(pl.col("decode_errors").list.len() == 0)
    envelope_failures = failure_reasons(
        decoded.drop("decode_errors", "data"), build_envelope_schema(), None, frozenset()
    )
    _record_failures(con, envelope_failures, None)
    good = decoded.join(envelope_failures.select("line_no"), on="line_no", how="anti")
    con.register("batch_envelopes_frame", good)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE batch_envelopes AS SELECT * FROM batch_envelopes_frame"
    )
    con.unregister("batch_envelopes_frame")

    _dead_letter_unknown_contracts(con)
    valid: list[tuple[Contract, pl.DataFrame]] = []
    for event_type, version in con.execute(
        "SELECT DISTINCT type, schemaversion FROM batch_envelopes ORDER BY ALL"
    ).fetchall():
        if (event_type, version) in CONTRACTS:
            contract = CONTRACTS[(event_type, version)]
            valid.append((contract, _validate_contract(con, contract)))

    counts = ValidationCounts()
    repeated = _deduplicate(con, batch_id, valid)
    counts.duplicates = repeated.height
    for contract, frame in valid:
        accepted = frame.join(repeated, on="line_no", how="anti")
        _insert_validated(con, contract, accepted, batch_id)
        counts.validated += accepted.height
        counts.by_entity[contract.entity.name] += accepted.height

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
        "DROP TABLE IF EXISTS batch_envelopes; DROP TABLE IF EXISTS batch_valid_ids"
    )
    crash_point("mid-validation")
    return counts


def _deduplicate(
    con: duckdb.DuckDBPyConnection, batch_id: str, valid: list[tuple[Contract, pl.DataFrame]]
) -> pl.DataFrame:
    """Record the valid events whose (source, id) was accepted before, in an earlier batch or
    earlier in this one, as duplicates of that first copy; their line numbers.

    CloudEvents makes (source, id) an event's identity. Only valid events count: an invalid copy
    is a dead letter and never hides a later valid one, and an event of one system never makes
    another system's event with the same id a duplicate.
    """
    empty = pl.DataFrame(schema={"line_no": pl.Int64, "source": pl.String, "event_id": pl.String})
    ids = [frame.select("line_no", "source", "event_id") for _, frame in valid]
    con.register("valid_ids_frame", pl.concat([empty, *ids]))
    con.execute("CREATE OR REPLACE TEMP TABLE batch_valid_ids AS SELECT * FROM valid_ids_frame")
    con.unregister("valid_ids_frame")
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
    return query_frame(
        con, "SELECT line_no FROM duplicate_events WHERE batch_id = ?", [batch_id]
    ).with_columns(pl.col("line_no").cast(pl.Int64))


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
    known = ", ".join(f"('{t}', {v})" for (t, v) in CONTRACTS)
    con.execute(
        f"""
        INSERT INTO batch_failures
        SELECT line_no, event_id, type, NULL, 'contract',
               'no contract for ' || type || ' schema version ' || schemaversion
               || '; fix: send a version the catalog knows, or register the new version first'
        FROM batch_envelopes
        WHERE (type, schemaversion) NOT IN (SELECT * FROM (VALUES {known}))
        """
    )


def _validate_contract(con: duckdb.DuckDBPyConnection, contract: Contract) -> pl.DataFrame:
    decoded = query_frame(
        con, payload_decode_sql(contract), [contract.event_type, contract.version]
    )
    _record_failures(con, _decode_failures(decoded, "payload", f"{contract.name}: "), contract)
    candidates = decoded.filter(pl.col("decode_errors").list.len() == 0)
    failures = failure_reasons(
        candidates.drop("decode_errors"), contract.schema, contract, contract.entity.pii_attributes
    )
    failures = failures.with_columns(
        (pl.lit(f"{contract.name} ") + pl.col("reason")).alias("reason")
    )
    _record_failures(con, failures, contract)
    return candidates.join(failures.select("line_no"), on="line_no", how="anti")


def _insert_validated(
    con: duckdb.DuckDBPyConnection, contract: Contract, valid: pl.DataFrame, batch_id: str
) -> None:
    if valid.is_empty():
        return
    entity = contract.entity
    frame = valid.rename(contract.upcast_renames())
    con.register("valid_frame", frame)
    attributes = []
    for attribute in entity.attributes:
        if attribute.name in frame.columns:
            attributes.append(f"CAST({quote(attribute.name)} AS {attribute.duckdb_type})")
        else:
            attributes.append(f"NULL::{attribute.duckdb_type}")
    con.execute(
        f"""
        INSERT INTO {quote(entity.events_table)}
        SELECT event_id, ?, line_no, ?, {KEY_COLUMN}, time,
               strftime(time AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') || '|' || event_id,
               origin, source, correlationid, causationid, schemaversion, set_attributes,
               {", ".join(attributes)}
        FROM valid_frame
        """,
        [batch_id, contract.action],
    )
    con.unregister("valid_frame")


def _write_dead_letters(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """Every gate's failures, each reason prefixed with the line it concerns."""
    con.execute(
        """
        INSERT INTO dead_letters (batch_id, line_no, source, event_id, event_type, contract, rule,
                                  reason, payload, dead_lettered_at)
        SELECT ?, f.line_no,
               CASE WHEN r.decode_error IS NULL AND json_valid(r.line)
                         AND json_type(r.line, '$.source') = 'VARCHAR'
                    THEN json_extract_string(r.line, '$.source') END,
               f.event_id, f.event_type, f.contract, f.rule,
               'line ' || f.line_no || ': ' || f.reason, r.line, now()
        FROM batch_failures f JOIN batch_raw r USING (line_no)
        """,
        [batch_id],
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
