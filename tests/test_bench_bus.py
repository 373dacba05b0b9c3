"""The bus benchmark's measure (bench/bus.py): publish-to-apply latency per event, read from the
ledger, over the accepted events of applied batches only."""

from __future__ import annotations

from conftest import at, customer_created, land, run_core

from bench.bus import publish_to_apply
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.raw import ingest_batch
from sync_assets.ingest.validate import validate_batch
from sync_assets.warehouse import connect, transaction


def test_latency_is_each_accepted_event_of_an_applied_batch_from_its_time_to_the_apply(
    data_folder,
):
    first = land(
        data_folder,
        "first",
        [
            customer_created("C-000001", time=at(0)),
            customer_created("C-000002", time=at(10)),
            customer_created("C-000003", time=at(5), data={"status": "dormant"}),  # dead letter
        ],
    )
    second = land(
        data_folder,
        "second",
        [customer_created("C-000004", time=at(40)), customer_created("C-000005", time=at(50))],
    )
    run_core(data_folder, [first.batch_id, second.batch_id])
    pending = land(data_folder, "pending", [customer_created("C-000006", time=at(60))])
    with connect(data_folder.warehouse) as con:
        with transaction(con):  # validated, not applied: not visible in the golden records yet
            ingest_batch(con, LandingZone(data_folder.landing).locate(pending.batch_id))
            validate_batch(con, pending.batch_id)
        for batch, applied in ((first, at(30)), (second, at(100))):
            con.execute(
                "UPDATE batches SET applied_at = ? WHERE batch_id = ?", [applied, batch.batch_id]
            )
        found = publish_to_apply(con)

    # latencies 30, 20 (first) and 60, 50 (second)
    assert (found.events, found.p50_s, found.p95_s, found.max_s) == (4, 30, 60, 60)
    assert found.first_publish == at(0).timestamp()
    assert found.last_apply == at(100).timestamp()
    assert found.events_per_second == 4 / 100


def test_an_empty_warehouse_measures_nothing(data_folder):
    with connect(data_folder.warehouse) as con:
        found = publish_to_apply(con)
    assert (found.events, found.events_per_second) == (0, 0.0)
