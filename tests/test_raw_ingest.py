"""Raw ingest: idempotent per batch, deduplicated by event id, all or nothing."""

from __future__ import annotations

import duckdb
import pytest
from conftest import customer_created, event, land, rows, run_core

from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.raw import RawCounts, ingest_batch
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

    assert first == RawCounts(landed=3, duplicates=1)
    assert first.kept == 2
    assert second == RawCounts(landed=3, duplicates=1, already_ingested=True)
    assert snapshot(data_folder) == before
    assert len(before["raw_events"]) == 2


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


def test_a_batch_relanded_under_the_same_name_is_not_ingested_again(data_folder):
    batch = land(data_folder, "0001", [customer_created(event_id="a")])
    ingest(data_folder, batch)
    before = snapshot(data_folder)
    land(data_folder, "0001", [customer_created(event_id="b"), customer_created(event_id="c")])

    again = ingest(data_folder, LandingZone(data_folder.landing).locate(batch.batch_id))

    assert again == RawCounts(landed=1, duplicates=0, already_ingested=True)
    assert snapshot(data_folder) == before


def test_duplicate_event_ids_point_at_their_first_occurrence(data_folder):
    first = land(
        data_folder,
        "0001",
        [
            customer_created("C-000001", event_id="A"),
            customer_created("C-000002", event_id="B"),
            customer_created("C-000001", event_id="A"),  # repeated within the batch
        ],
    )
    second = land(
        data_folder,
        "0002",
        [
            customer_created("C-000003", event_id="C"),
            customer_created("C-000001", event_id="A"),  # repeated across batches
            # Same id, different content: still the same event, the first one landed wins.
            customer_created("C-000002", event_id="B", data={"email": "other@example.com"}),
            customer_created("C-000001", event_id="A"),
            customer_created("C-000003", event_id="C"),  # repeated within the second batch
        ],
    )

    results = run_core(data_folder, [first.batch_id, second.batch_id])

    assert results[first.batch_id]["raw"] == RawCounts(landed=3, duplicates=1)
    assert results[second.batch_id]["raw"] == RawCounts(landed=5, duplicates=4)
    b1, b2 = first.batch_id, second.batch_id
    assert rows(
        data_folder,
        "SELECT batch_id, line_no, event_id, first_batch_id, first_line_no "
        "FROM duplicate_events ORDER BY batch_id, line_no",
    ) == [
        (b1, 3, "A", b1, 1),
        (b2, 2, "A", b1, 1),
        (b2, 3, "B", b1, 2),
        (b2, 4, "A", b1, 1),
        (b2, 5, "C", b2, 1),
    ]
    assert rows(data_folder, "SELECT batch_id, line_no, event_id FROM raw_events ORDER BY ALL") == [
        (b1, 1, "A"),
        (b1, 2, "B"),
        (b2, 1, "C"),
    ]
    assert rows(data_folder, "SELECT duplicates FROM batches ORDER BY batch_id") == [(1,), (4,)]
    assert rows(
        data_folder, "SELECT email FROM golden_customer WHERE customer_id = 'C-000002'"
    ) == [("ada@example.com",)]


def test_a_dead_lettered_event_id_still_counts_as_seen(data_folder):
    """Dedup is by id, before validation: a fixed re-send needs a new id (see dead_letters)."""
    first = land(data_folder, "0001", [customer_created(event_id="A", data={"status": "x"})])
    second = land(data_folder, "0002", [customer_created(event_id="A")])

    run_core(data_folder, [first.batch_id, second.batch_id])

    assert rows(data_folder, "SELECT event_id, batch_id FROM dead_letters") == [
        ("A", first.batch_id)
    ]
    assert rows(data_folder, "SELECT first_batch_id, first_line_no FROM duplicate_events") == [
        (first.batch_id, 1)
    ]
    assert rows(data_folder, "SELECT count(*) FROM golden_customer") == [(0,)]


def test_lines_without_an_event_id_are_never_duplicates(data_folder):
    batch = land(
        data_folder,
        "0001",
        ["{oops", "{oops", b"\xff\xfe", customer_created(id=""), customer_created(id=None)],
    )
    counts = ingest(data_folder, batch)

    assert counts == RawCounts(landed=5, duplicates=0)
    assert rows(
        data_folder, "SELECT line_no, event_id, decode_error IS NOT NULL FROM raw_events ORDER BY 1"
    ) == [(1, None, False), (2, None, False), (3, None, True), (4, None, False), (5, None, False)]


def test_an_empty_batch_is_ingested_with_zero_counts(data_folder):
    batch = land(data_folder, "0001", [])
    result = run_core(data_folder, [batch.batch_id])[batch.batch_id]

    assert result["raw"] == RawCounts(landed=0, duplicates=0)
    assert rows(
        data_folder, "SELECT landed, duplicates, validated, dead_lettered, applied FROM batches"
    ) == [(0, 0, 0, 0, 0)]


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
        assert ingest_batch(con, batch) == RawCounts(landed=2, duplicates=1)
        raise RuntimeError("crash after ingest")

    assert snapshot(data_folder) == empty
    # Nothing was recorded, so the batch is ingested for real the next time.
    assert ingest(data_folder, batch) == RawCounts(landed=2, duplicates=1)


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
    land(data_folder, "0000", [customer_created(event_id="A")])
    run_core(data_folder, ["crm__0000"])
    before = snapshot(data_folder)
    # duplicate_events and raw_events rows are written before the batch is recorded.
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
    assert ingest(data_folder, batch) == RawCounts(landed=2, duplicates=1)


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
