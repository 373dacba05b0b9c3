"""Which business rules no record breaks, told in DuckDB before great-expectations is asked.

Most suites find nothing: the rules hold. Yet a suite costs a command great-expectations' import,
seconds of CPU, then a pandas copy of the rows. `unbroken_rules` judges every rule of a suite in
one DuckDB statement over the rows `check_records` would hand the suite, and says which rules no
row breaks; `check_records` runs great-expectations only over the others, and a suite whose rules
all hold does not start it at all.

The judgement is conservative, never a second opinion: a rule is said unbroken only when no row
could break it as great-expectations judges it. Where the two could differ, a row is a suspect
(NaN, which pandas reads as missing and DuckDB as a number, counts as a value here), and a suspect
sends the rule to great-expectations, whose outcome stands as before. A rule of a column type not
judged here, or whose statement fails, goes to great-expectations too.

| rule          | no row breaks it when (NULLs pass, as in the suite)                       |
| ------------- | ------------------------------------------------------------------------- |
| unique        | the values (or combinations, none part NULL) are as many as the distinct ones |
| allowed       | every value is in the list                                                |
| format        | every distinct value matches, by DuckDB's RE2 and by Python's `re` (`search`) |
| range         | every value lies within the bounds                                        |
| references    | every value is a key of the referenced entity's golden records            |
| compare       | every row with both sides set holds the comparison                        |

DuckDB, like pandas, takes -0.0 for 0.0; it orders NaN above every number, where pandas reads it
as missing, so a NaN is at worst a suspect (above a maximum, say). A rule said unbroken has the
outcome great-expectations reports for a rule that holds: passed, no row unexpected, every row
checked (NULLs too), no sample. tests/test_rules_unbroken.py holds this to great-expectations
over generated tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import duckdb

from sync_assets.catalog.entities import Entity
from sync_assets.catalog.rules import Rule
from sync_assets.warehouse.sql import quote, sql_literal

_FAMILIES = {
    "VARCHAR": "text",
    "DOUBLE": "number",
    "FLOAT": "number",
    "BIGINT": "number",
    "INTEGER": "number",
    "SMALLINT": "number",
    "TINYINT": "number",
    "TIMESTAMP WITH TIME ZONE": "time",
    "TIMESTAMP": "time",
    "BOOLEAN": "boolean",
}
"""Column types judged here, by the family their values compare within; any other is not."""

_NOT = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "=": "<>", "!=": "="}
"""A compare rule's operator -> the SQL comparison of a row that breaks it (both sides set)."""


def unbroken_rules(
    con: duckdb.DuckDBPyConnection,
    source: str,
    rules: Sequence[Rule],
    *,
    entities: Mapping[str, Entity],
) -> tuple[int, set[str]]:
    """The rows of `source` (SQL: a parenthesized query of the suite's rows, as check_records
    hands them to great-expectations) and the names of the `rules` none of them breaks."""
    types = _types(con, source)
    judged: dict[str, str] = {}
    for rule in rules:
        sql = _broken_sql(con, rule, types, entities)
        if sql is not None:
            judged[rule.name] = sql
    aggregates = ["count(*)", *(f"({sql}) > 0" for sql in judged.values())]
    try:
        rows, *broken = con.execute(f"SELECT {', '.join(aggregates)} FROM {source}").fetchall()[0]
    except duckdb.Error:  # a statement DuckDB refuses: great-expectations judges every rule
        rows = con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0]
        return rows, set()
    held = {name for name, any_broken in zip(judged, broken, strict=True) if not any_broken}
    for rule in rules:
        if rule.name in held and rule.kind == "format" and not _all_match(con, source, rule):
            held.discard(rule.name)
    return rows, held


def _types(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    """Each column of `source` -> its DuckDB type, as DuckDB names it ('VARCHAR')."""
    relation = con.sql(f"SELECT * FROM {source}")
    return {name: str(t) for name, t in zip(relation.columns, relation.types, strict=True)}


def _broken_sql(
    con: duckdb.DuckDBPyConnection,
    rule: Rule,
    types: Mapping[str, str],
    entities: Mapping[str, Entity],
) -> str | None:
    """SQL counting the rows that might break `rule`; None: not judged here."""
    families = [_FAMILIES.get(types.get(a, "")) for a in rule.attributes]
    if None in families:
        return None
    columns = [quote(a) for a in rule.attributes]
    a = columns[0]
    if rule.kind == "unique":
        every_part = " AND ".join(f"{c} IS NOT NULL" for c in columns)
        return (
            f"count(*) FILTER (WHERE {every_part}) "
            f"- count(DISTINCT row({', '.join(columns)})) FILTER (WHERE {every_part})"
        )
    if rule.kind == "allowed" and families == ["text"]:
        values = ", ".join(sql_literal(v) for v in rule.values)
        allowed = f"list_contains([{values}]::VARCHAR[], {a})"
        return f"count(*) FILTER (WHERE {a} IS NOT NULL AND NOT {allowed})"
    if rule.kind == "format" and families == ["text"] and _compiles(con, rule.pattern):
        pattern = sql_literal(str(rule.pattern))
        return f"count(*) FILTER (WHERE {a} IS NOT NULL AND NOT regexp_matches({a}, {pattern}))"
    if rule.kind == "range" and families == ["number"]:
        if rule.minimum is None and rule.maximum is None:
            return None
        outside = []
        if rule.minimum is not None:
            outside.append(f"{a} < {float(rule.minimum)!r}")
        if rule.maximum is not None:
            outside.append(f"{a} > {float(rule.maximum)!r}")
        return f"count(*) FILTER (WHERE {a} IS NOT NULL AND ({' OR '.join(outside)}))"
    if rule.kind == "references" and families == ["text"] and rule.entity in entities:
        other = entities[str(rule.entity)]
        key = quote(other.key)
        keys = f"SELECT {key} FROM {quote(other.golden_table)} WHERE {key} IS NOT NULL"
        if list(_types(con, f"({keys})").values()) != ["VARCHAR"]:
            return None
        return f"count(*) FILTER (WHERE {a} IS NOT NULL AND {a} NOT IN ({keys}))"
    if rule.kind == "compare" and len(set(families)) == 1 and rule.operator in _NOT:
        if families[0] == "boolean" and rule.operator not in ("=", "!="):
            return None
        b = columns[1]
        broken = f"{a} {_NOT[rule.operator]} {b}"
        return f"count(*) FILTER (WHERE {a} IS NOT NULL AND {b} IS NOT NULL AND {broken})"
    return None


def _compiles(con: duckdb.DuckDBPyConnection, pattern: str | None) -> bool:
    """Whether both RE2 (DuckDB) and Python's `re` take the pattern."""
    if pattern is None:
        return False
    try:
        re.compile(pattern)
        con.execute("SELECT regexp_matches('', ?)", [pattern]).fetchall()
    except (re.error, duckdb.Error):
        return False
    return True


def _all_match(con: duckdb.DuckDBPyConnection, source: str, rule: Rule) -> bool:
    """Whether Python's `re` finds the pattern in every distinct value (pandas' `str.contains`
    searches with it), besides RE2, which already did."""
    search = re.compile(str(rule.pattern)).search
    column = quote(rule.attribute)
    found = con.execute(f"SELECT DISTINCT {column} FROM {source} WHERE {column} IS NOT NULL")
    return all(search(value) for (value,) in found.fetchall())
