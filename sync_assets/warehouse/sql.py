"""Writing SQL for DuckDB by hand: identifiers quoted, literals escaped."""

from __future__ import annotations


def quote(identifier: str) -> str:
    """Quote an identifier for DuckDB; catalog names are trusted, but quote them all the same."""
    return '"' + identifier.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_list(values: list[str]) -> str:
    return ", ".join(sql_literal(value) for value in values)
