"""The Dagster assets on a temp data folder, through `materialize()`."""

import dagster as dg
import pytest
from conftest import at, customer_created, event, land, rows

from checks.ingest import dead_letter_rate, every_event_accounted_for
from sync_assets.ingest.assets import build_raw_events, landed_batches, validate_events
from sync_assets.project import current
from sync_assets.resources import default_resources
from sync_assets.state.apply import replay
from sync_assets.state.assets import build_batch_ledger, build_golden_records
from sync_assets.warehouse import connect, transaction

PROJECT = current()
raw_events = build_raw_events(PROJECT)
golden_records = build_golden_records(PROJECT)
batch_ledger = build_batch_ledger(PROJECT)

ASSETS = [raw_events, validate_events, golden_records, batch_ledger]
CHECKS = [every_event_accounted_for, dead_letter_rate]


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def materialize_batch(folder, instance, batch_id, *, raise_on_error=True):
    instance.add_dynamic_partitions(landed_batches.name, [batch_id])
    return dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=batch_id,
        instance=instance,
        resources=default_resources(folder),
        raise_on_error=raise_on_error,
    )


def metadata(result, asset_key: str) -> dict:
    [materialization] = [
        m for m in result.get_asset_materialization_events() if m.asset_key.path == [asset_key]
    ]
    return {k: v.value for k, v in materialization.materialization.metadata.items()}


def golden_state(folder):
    return rows(folder, "SELECT * FROM golden_customer ORDER BY customer_id")


def test_a_batch_materializes_into_golden_records_with_counts(data_folder, instance):
    batch = land(
        data_folder,
        "0001",
        [
            customer_created("C-000001"),
            customer_created("C-000002", data={"email": "grace@example.com"}),
            "{broken",
        ],
    )

    result = materialize_batch(data_folder, instance, batch.batch_id)

    assert result.success
    assert metadata(result, "raw_events")["landed"] == 3
    assert metadata(result, "validated_events")["validated"] == 2
    assert metadata(result, "dead_letters")["dead_lettered"] == 1
    assert metadata(result, "golden_customer")["live"] == 2
    ledger = metadata(result, "batch_ledger")
    assert (ledger["landed"], ledger["applied"], ledger["dead_lettered"]) == (3, 2, 1)
    [check] = [
        c
        for c in result.get_asset_check_evaluations()
        if c.check_name == "every_event_accounted_for"
    ]
    assert check.passed


def test_running_the_same_batch_twice_doubles_nothing(data_folder, instance):
    batch = land(data_folder, "0001", [customer_created("C-000001"), customer_created("C-000002")])
    materialize_batch(data_folder, instance, batch.batch_id)
    before = golden_state(data_folder), rows(data_folder, "SELECT * FROM batches")

    again = materialize_batch(data_folder, instance, batch.batch_id)

    assert again.success
    assert (golden_state(data_folder), rows(data_folder, "SELECT * FROM batches")) == before
    assert rows(data_folder, "SELECT count(*) FROM raw_events") == [(2,)]


def test_replay_of_the_log_rebuilds_the_incremental_state(data_folder, instance):
    first = land(data_folder, "0001", [customer_created("C-000001")])
    materialize_batch(data_folder, instance, first.batch_id)
    second = land(
        data_folder,
        "0002",
        [
            event("customer.updated", "C-000001", {"status": "suspended"}, time=at(60)),
            event("customer.deleted", "C-000001", time=at(10)),  # older than the update
        ],
    )
    plan = land(  # billing's, in billing's channel
        data_folder,
        "0002",
        [event("customer.updated", "C-000001", {"plan": "pro"}, origin="billing", time=at(30))],
    )
    materialize_batch(data_folder, instance, second.batch_id)
    materialize_batch(data_folder, instance, plan.batch_id)
    incremental = golden_state(data_folder)

    with connect(data_folder.warehouse) as con, transaction(con):
        differences = replay(con)

    assert differences == {"customer": 0, "order": 0}
    assert golden_state(data_folder) == incremental
    [(status, plan, lifecycle)] = rows(
        data_folder, "SELECT status, plan, lifecycle_state FROM golden_customer"
    )
    assert (status, plan, lifecycle) == ("suspended", "pro", "deleted")


def test_counts_that_do_not_add_up_fail_the_run_loudly(data_folder, instance):
    batch = land(data_folder, "0001", [customer_created("C-000001")])
    instance.add_dynamic_partitions(landed_batches.name, [batch.batch_id])
    resources = default_resources(data_folder)
    dg.materialize(
        [raw_events, validate_events],
        partition_key=batch.batch_id,
        instance=instance,
        resources=resources,
    )
    with connect(data_folder.warehouse) as con:
        con.execute("UPDATE batches SET landed = landed + 1")  # an event gone missing

    result = dg.materialize(
        [golden_records, batch_ledger, every_event_accounted_for],
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )

    assert not result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "stopped on a failed step" in (evaluation.description or "")
    assert rows(data_folder, "SELECT count(*) FROM golden_customer") == [(0,)]
    [(state, step, error)] = rows(data_folder, "SELECT state, failed_step, last_error FROM batches")
    assert (state, step) == ("validated", "apply")
    assert "landed <> applied + duplicates + dead_lettered" in error


def test_several_batches_run_together_in_one_range_run(data_folder, instance):
    ids = [
        land(data_folder, "0001", [customer_created("C-000001")]).batch_id,
        land(data_folder, "0002", [customer_created("C-000002")]).batch_id,
    ]
    instance.add_dynamic_partitions(landed_batches.name, ids)

    result = dg.materialize(
        [*ASSETS, *CHECKS],
        instance=instance,
        resources=default_resources(data_folder),
        tags={
            "dagster/asset_partition_range_start": ids[0],
            "dagster/asset_partition_range_end": ids[1],
        },
    )

    assert result.success
    assert metadata_partitions(result, "raw_events") == set(ids)
    assert rows(data_folder, "SELECT count(*) FROM golden_customer") == [(2,)]


def metadata_partitions(result, asset_key):
    return {
        m.partition
        for m in result.get_asset_materialization_events()
        if m.asset_key.path == [asset_key]
    }
