"""Raw ingest: every line kept, idempotent per batch (named by its content), all or nothing."""

from __future__ import annotations

import duckdb
import hypothesis.strategies as st
import pytest
from conftest import customer_created, event, land, rows, run_core
from hypothesis import given, settings

from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.raw import RawCounts, _decode_line_by_line, ingest_batch, read_lines
from sync_assets.state import apply as apply_module
from sync_assets.warehouse import connect, transaction

TABLES = (
    "batches",
    "raw_events",
    "duplicate_events",
    "dead_letters",
    "validated_customer_events",
    "golden_customer",
    "batch_applications",
    "ownership_conflicts",
)


def snapshot(folder) -> dict[str, list[tuple]]:
    """Every row of every ledger table, in a stable order."""
    return {table: rows(folder, f"SELECT * FROM {table} ORDER BY ALL") for table in TABLES}


def split_one_by_one(data: bytes) -> list[tuple[str, str | None]]:
    """What a batch's lines are, split in Python (a last newline ends the file, it starts no
    line) and decoded one by one as raw ingest decodes a batch that is not all UTF-8."""
    if data.endswith(b"\n"):
        data = data[:-1]
    lines, errors = _decode_line_by_line(data.split(b"\n") if data else [])
    return list(zip(lines, errors, strict=True))


# bytes a line file is made of: newlines, carriage returns, ASCII, multi-byte UTF-8, and bytes
# that are never UTF-8 or only part of a character
_PIECES = st.sampled_from([b"\n", b"\r", b"\r\n", b"{}", b"a", b" ", "\u00eb".encode(), "\u20ac".encode(),
                           b"\xff", b"\xc3", b"\x00"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40).map(b"".join))
def test_a_batch_is_read_as_its_lines_split_one_by_one(data):
    table = read_lines(data)
    assert list(zip(table["line"].to_pylist(), table["decode_error"].to_pylist(), strict=True)) == (
        split_one_by_one(data)
    )
    assert table["line_no"].to_pylist() == list(range(1, table.num_rows + 1))


def ingest(folder, batch) -> RawCounts:
    with connect(folder.warehouse) as con, transaction(con):
        return ingest_batch(con, batch)


def test_ingesting_a_batch_twice_changes_nothing(data_folder):
    batch = land(
        data_folder,
        "0001",
        [customer_created("C-000001", event_id="a"), "{oops", customer_created(event_id="a")],
    )
    first = ingest(data_folder, batch)
    before = snapshot(data_folder)

    second = ingest(data_folder, batch)

    assert first == RawCounts(landed=3)
    assert second == RawCounts(landed=3, already_ingested=True)
    assert snapshot(data_folder) == before
    assert len(before["raw_events"]) == 3, "every line is kept, repeats included"
    assert rows(data_folder, "SELECT state FROM batches") == [("raw",)]


def test_running_the_whole_core_twice_on_a_batch_changes_nothing(data_folder):
    batch = land(
        data_folder,
        "0001",
        [
            customer_created("C-000001", event_id="a"),
            event("customer.updated", "C-000001", {"plan": "pro"}, event_id="b"),  # conflict
            "{oops",
        ],
    )
    run_core(data_folder, [batch.batch_id])
    before = snapshot(data_folder)

    again = run_core(data_folder, [batch.batch_id])[batch.batch_id]

    assert again["raw"].already_ingested
    assert (again["validation"].validated, again["validation"].dead_lettered) == (2, 1)
    assert again["applied"] == {}  # nothing left to apply
    assert snapshot(data_folder) == before


def test_a_batch_relanded_under_the_same_name_with_other_content_is_another_batch(data_folder):
    zone = LandingZone(data_folder.landing)
    first = land(data_folder, "0001", [customer_created(event_id="a")])
    run_core(data_folder, [first.batch_id])
    zone.archive(first)
    second = land(
        data_folder,
        "0001",
        [customer_created(event_id="b"), customer_created("C-000002", event_id="c")],
    )

    run_core(data_folder, [second.batch_id])
    zone.archive(second)

    assert first.batch_id != second.batch_id
    assert first.batch_id.startswith("crm__0001@") and second.batch_id.startswith("crm__0001@")
    assert rows(data_folder, "SELECT batch_id, landed, state FROM batches ORDER BY landed") == [
        (first.batch_id, 1, "applied"),
        (second.batch_id, 2, "applied"),
    ]
    archived = sorted(p.name for p in (data_folder.landing / "crm" / "archive").iterdir())
    assert archived == sorted(f"{b.batch_id.split('__', 1)[1]}.jsonl" for b in (first, second)), (
        "both files kept, neither overwrote the other"
    )
    assert zone.locate(first.batch_id).path.read_text().count("\n") == 1


def test_the_same_content_landed_again_under_its_name_is_the_same_batch(data_folder):
    lines = [customer_created(event_id="a")]
    first = land(data_folder, "0001", lines)
    ingest(data_folder, first)
    LandingZone(data_folder.landing).archive(first)
    again = land(data_folder, "0001", lines)

    assert again.batch_id == first.batch_id
    assert ingest(data_folder, again) == RawCounts(landed=1, already_ingested=True)


def test_an_empty_batch_is_ingested_with_zero_counts(data_folder):
    batch = land(data_folder, "0001", [])
    result = run_core(data_folder, [batch.batch_id])[batch.batch_id]

    assert result["raw"] == RawCounts(landed=0)
    assert rows(
        data_folder,
        "SELECT landed, duplicates, validated, dead_lettered, applied, state FROM batches",
    ) == [(0, 0, 0, 0, 0, "applied")]


def test_an_error_inside_the_transaction_leaves_no_rows(data_folder):
    batch = land(
        data_folder, "0001", [customer_created(event_id="A"), customer_created(event_id="A")]
    )
    empty = snapshot(data_folder)

    with (
        pytest.raises(RuntimeError, match="crash"),
        connect(data_folder.warehouse) as con,
        transaction(con),
    ):
        assert ingest_batch(con, batch) == RawCounts(landed=2)
        raise RuntimeError("crash after ingest")

    assert snapshot(data_folder) == empty
    # Nothing was recorded, so the batch is ingested for real the next time.
    assert ingest(data_folder, batch) == RawCounts(landed=2)


class FailingConnection:
    """Delegates to a DuckDB connection, but the statement matching `fail_on` fails in DuckDB."""

    def __init__(self, con, fail_on: str):
        self._con = con
        self._fail_on = fail_on

    def execute(self, sql, *args, **kwargs):
        if self._fail_on in sql:
            return self._con.execute(f"SELECT error('injected failure on {self._fail_on}')")
        return self._con.execute(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_a_failure_half_way_through_ingest_leaves_no_rows(data_folder):
    first = land(data_folder, "0000", [customer_created(event_id="A")])
    run_core(data_folder, [first.batch_id])
    before = snapshot(data_folder)
    # raw_events rows are written before the batch is recorded.
    batch = land(
        data_folder, "0001", [customer_created(event_id="A"), customer_created(event_id="B")]
    )

    with (
        pytest.raises(duckdb.Error),
        connect(data_folder.warehouse) as con,
        transaction(con),
    ):
        ingest_batch(FailingConnection(con, "INSERT INTO batches"), batch)

    assert snapshot(data_folder) == before
    assert ingest(data_folder, batch) == RawCounts(landed=2)


def test_a_failure_inside_ingest_surfaces_its_own_error(data_folder):
    """The cleanup after a failed statement must not hide the failure behind another error."""
    batch = land(data_folder, "0001", [customer_created(event_id="A")])

    with (
        pytest.raises(duckdb.Error) as raised,
        connect(data_folder.warehouse) as con,
        transaction(con),
    ):
        ingest_batch(FailingConnection(con, "INSERT INTO batches"), batch)

    assert "injected failure on INSERT INTO batches" in str(raised.value)


def test_a_failure_while_applying_rolls_back_ingest_and_validation(data_folder, monkeypatch):
    batch = land(data_folder, "0001", [customer_created(event_id="A"), "{oops"])
    empty = snapshot(data_folder)

    def crash(*args, **kwargs):
        raise RuntimeError("crash while applying")

    monkeypatch.setattr(apply_module, "apply_events", crash)
    with pytest.raises(RuntimeError, match="crash while applying"):
        run_core(data_folder, [batch.batch_id])

    assert snapshot(data_folder) == empty
    monkeypatch.undo()
    result = run_core(data_folder, [batch.batch_id])[batch.batch_id]
    assert not result["raw"].already_ingested
    assert rows(data_folder, "SELECT customer_id, lifecycle_state FROM golden_customer") == [
        ("C-000001", "live")
    ]
