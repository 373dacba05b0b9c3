"""Pandera judges only the rows its checks could fail: the same reasons as judging every row.

`failure_reasons` first finds the suspects in one pass of polars (`suspects`), then hands only
those to pandera. Every contract of the demo and the envelope are checked here against pandera
alone (`judged`), on frames drawn from values each check passes and fails, nulls, NaN, empty and
non-ASCII text included.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from sync_assets.catalog.contracts import KEY_COLUMN
from sync_assets.ingest.validate import _envelope_schema, failure_reasons, judged, suspects
from sync_assets.project import current

TEXT = [None, "", " ", "x", "C-000001", "C-12345", "C-١٢٣٤٥٦", "O-000001", "a@b.io", "a@b",
        "+447700900123", "+44 7700", "GB", "gb", "Zoë", "active", "ACTIVE", "suspended", "free",
        "pro", "priority", "1.0", "/systems/crm", "customer.updated", "crm", "application/json"]  # fmt: skip
POOLS: dict[object, list] = {
    pl.String: TEXT,
    pl.Float64: [None, -1.0, 0.0, 0.5, 12.25, math.nan, math.inf],
    pl.Int64: [None, 0, 1, 2],
    pl.Boolean: [None, True, False],
    pl.Datetime: [None, datetime(2026, 1, 1, tzinfo=UTC)],
}


def schemas() -> list[tuple[str, object, object]]:
    """(name, pandera schema, contract or None) of every demo contract and of the envelope."""
    found = [(c.name, c.schema, c) for c in current().contracts.values()]
    return [*found, ("envelope", _envelope_schema(), None)]


def frame_for(schema, draw) -> pl.DataFrame:
    """Rows of the schema's columns, each value drawn from its type's pool, with a line number
    and an event id, as validation hands them to pandera."""
    rows = draw(st.integers(min_value=0, max_value=25))
    columns: dict[str, pl.Series] = {
        "line_no": pl.Series(range(1, rows + 1), dtype=pl.Int64),
        "event_id": pl.Series([f"e{i}" for i in range(rows)], dtype=pl.String),
    }
    for name, column in schema.columns.items():
        dtype = column.dtype.type
        pool = POOLS[dtype.base_type()]
        values = draw(st.lists(st.sampled_from(pool), min_size=rows, max_size=rows))
        columns[name] = pl.Series(name, values, dtype=dtype)
    return pl.DataFrame(columns)


def reasons(found: pl.DataFrame) -> list[tuple]:
    return sorted(found.iter_rows())


@pytest.mark.parametrize("name", [name for name, _, _ in schemas()])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_pandera_on_the_suspects_gives_the_reasons_of_pandera_on_every_row(name, data):
    [(schema, contract)] = [(s, c) for n, s, c in schemas() if n == name]
    frame = frame_for(schema, data.draw)
    pii = contract.entity.pii_attributes if contract is not None else frozenset()
    assert reasons(failure_reasons(frame, schema, contract, pii)) == reasons(
        judged(frame, schema, contract, pii)
    )


def test_a_clean_frame_is_not_handed_to_pandera():
    contract = current().contracts[("customer.updated", 1)]
    frame = pl.DataFrame(
        {"line_no": [1], "event_id": ["e1"], KEY_COLUMN: ["C-000001"]}
        | {field: [None] for field in contract.fields},
        schema_overrides={f: contract.schema.columns[f].dtype.type for f in contract.fields},
    )
    assert suspects(frame, contract.schema).is_empty()


def test_a_column_typed_otherwise_is_judged_by_pandera_whole():
    contract = current().contracts[("customer.updated", 1)]
    frame = pl.DataFrame({"line_no": [1], "event_id": ["e1"], KEY_COLUMN: [1]})
    assert suspects(frame, contract.schema) is None
