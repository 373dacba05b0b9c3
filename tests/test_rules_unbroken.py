"""A rule DuckDB says no row breaks is one great-expectations finds unbroken too.

`unbroken_rules` (sync_assets/catalog/unbroken.py) spares a suite great-expectations when every
rule holds. Here every rule it says holds is run through great-expectations itself (`run_rules`)
over the same rows, on tables drawn from values where pandas and DuckDB could part: NULL, NaN,
-0.0, infinities, non-ASCII digits, decomposed accents, a trailing newline before `$`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import duckdb
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from sync_assets.catalog.expectations import run_rules
from sync_assets.catalog.rules import OPERATORS, Rule
from sync_assets.catalog.unbroken import unbroken_rules
from sync_assets.project import current

CUSTOMER = current().entity("customer")
TEXT = [None, "", "a", "b", "A", "ab", "\u00e9", "e\u0301", "x\n", "x", "3", "\u0663", "C-1", " a"]
NUMBER = [None, 0.0, -0.0, 1.0, 2.5, -3.0, math.nan, math.inf, -math.inf]
TIME = [None, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, 12, tzinfo=UTC)]
BOOLEAN = [None, True, False]
COLUMNS = {  # column -> (DuckDB type, the values drawn)
    "s1": ("VARCHAR", TEXT),
    "s2": ("VARCHAR", TEXT),
    "d1": ("DOUBLE", NUMBER),
    "d2": ("DOUBLE", NUMBER),
    "t1": ("TIMESTAMPTZ", TIME),
    "t2": ("TIMESTAMPTZ", TIME),
    "b1": ("BOOLEAN", BOOLEAN),
    "b2": ("BOOLEAN", BOOLEAN),
}

RULES = [
    Rule("s_unique", "unique", ("s1",)),
    Rule("d_unique", "unique", ("d1",)),
    Rule("t_unique", "unique", ("t1",)),
    Rule("sd_unique", "unique", ("s1", "d1")),
    Rule("ss_unique", "unique", ("s1", "s2")),
    Rule("s_allowed", "allowed", ("s1",), values=("a", "b", "\u00e9", "x")),
    Rule("s_allowed_none", "allowed", ("s2",), values=()),
    *(
        Rule(f"s_format_{i}", "format", ("s1",), pattern=pattern)
        for i, pattern in enumerate(
            ["^[a-z]$", r"^\d$", r"^\D$", "^x$", "a", "^$", r"^\w+$", "[^a]"]
        )
    ),
    Rule("d_range", "range", ("d1",), minimum=0, maximum=2.5),
    Rule("d_at_least", "range", ("d2",), minimum=-3),
    Rule("d_at_most", "range", ("d1",), maximum=0),
    Rule("s_references", "references", ("s1",), entity="customer"),
    *(
        Rule(f"{kind}_{i}", "compare", (f"{kind}1", f"{kind}2"), operator=operator)
        for kind in ("s", "d", "t")
        for i, operator in enumerate(OPERATORS)
    ),
    Rule("b_equal", "compare", ("b1", "b2"), operator="="),
    Rule("b_differ", "compare", ("b1", "b2"), operator="!="),
]
KEYS = ["a", "b", "\u00e9", "x", "C-1"]
"""The referenced golden records' keys."""


def _table(rows: list[dict]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    declared = ", ".join(f"{name} {kind}" for name, (kind, _) in COLUMNS.items())
    con.execute(f"CREATE TABLE records (id VARCHAR, {declared})")
    for i, row in enumerate(rows):
        con.execute(
            f"INSERT INTO records VALUES ({', '.join('?' * (len(COLUMNS) + 1))})",
            [f"R-{i}", *(row[name] for name in COLUMNS)],
        )
    con.execute(f"CREATE TABLE {CUSTOMER.golden_table} ({CUSTOMER.key} VARCHAR)")
    con.executemany(f"INSERT INTO {CUSTOMER.golden_table} VALUES (?)", [[k] for k in KEYS])
    return con


def _judged_by_great_expectations(con: duckdb.DuckDBPyConnection, rules: list[Rule]) -> dict:
    frame = con.execute("SELECT * FROM records").df()
    found = run_rules(
        frame, "id", rules, pii=(), mask=str, references={"customer": set(KEYS)}, sample_size=5
    )
    return {r.rule.name: (r.passed, r.unexpected, r.rows_checked, r.samples) for r in found}


rows = st.lists(
    st.fixed_dictionaries({name: st.sampled_from(values) for name, (_, values) in COLUMNS.items()}),
    max_size=6,
)


@given(rows)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_rule_said_unbroken_is_unbroken_for_great_expectations(drawn):
    con = _table(drawn)
    count, held = unbroken_rules(
        con, "(SELECT * FROM records)", RULES, entities={"customer": CUSTOMER}
    )
    assert count == len(drawn)
    if not held:
        return
    said = _judged_by_great_expectations(con, [r for r in RULES if r.name in held])
    assert said == {name: (True, 0, len(drawn), ()) for name in held}


def _rows(*partial: dict) -> list[dict]:
    return [{name: None for name in COLUMNS} | row for row in partial]


@pytest.mark.parametrize(
    ("rule", "holding", "suspect"),
    [
        (Rule("u", "unique", ("d1",)), [{"d1": 0.0}], [{"d1": 0.0}, {"d1": -0.0}]),
        (Rule("u", "unique", ("s1",)), [{"s1": "a"}, {"s1": "b"}], [{"s1": "a"}, {"s1": "a"}]),
        (Rule("u", "unique", ("s1", "s2")), [{"s1": "a"}, {"s1": "a"}], [{"s1": "a", "s2": "b"}] * 2),
        (Rule("in", "allowed", ("s1",), values=("a",)), [{"s1": "a"}, {}], [{"s1": "\u00e1"}]),
        (Rule("f", "format", ("s1",), pattern=r"^\d$"), [{"s1": "3"}], [{"s1": "\u0663"}]),
        (Rule("f", "format", ("s1",), pattern="^a$"), [{"s1": "a"}], [{"s1": "a\n"}]),
        (Rule("f", "format", ("s1",), pattern=r"^\D$"), [{"s1": "a"}], [{"s1": "\u0663"}]),
        (Rule("r", "range", ("d1",), maximum=1.0), [{"d1": 0.5}], [{"d1": math.nan}]),
        (Rule("r", "references", ("s1",), entity="customer"), [{"s1": "a"}], [{"s1": "A"}]),
        (Rule("c", "compare", ("d1", "d2"), operator="<"), [{"d1": -1.0, "d2": 0.0}],
         [{"d1": 0.0, "d2": -0.0}]),
        (Rule("c", "compare", ("d1", "d2"), operator="<"), [{"d1": 1.0}],
         [{"d1": math.nan, "d2": 1.0}]),
        (Rule("c", "compare", ("t1", "t2"), operator=">"), [{"t1": TIME[2], "t2": TIME[1]}],
         [{"t1": TIME[1], "t2": TIME[2]}]),
        (Rule("c", "compare", ("b1", "b2"), operator="!="), [{"b1": True, "b2": False}],
         [{"b1": True, "b2": True}]),
    ],
)  # fmt: skip
def test_a_row_that_may_break_a_rule_sends_it_to_great_expectations(rule, holding, suspect):
    """Each rule is judged unbroken over the holding rows, and left to great-expectations over
    the suspect ones: some break it as pandas sees it, some only might (NaN, RE2 against re)."""
    entities = {"customer": CUSTOMER}
    held = unbroken_rules(_table(_rows(*holding)), "records", [rule], entities=entities)
    assert held == (len(holding), {rule.name})
    left = unbroken_rules(_table(_rows(*suspect)), "records", [rule], entities=entities)
    assert left == (len(suspect), set())


def test_a_column_type_not_judged_goes_to_great_expectations():
    con = duckdb.connect()
    con.execute("CREATE TABLE records (id VARCHAR, s1 BLOB)")
    rule = Rule("u", "unique", ("s1",))
    assert unbroken_rules(con, "records", [rule], entities={}) == (0, set())
