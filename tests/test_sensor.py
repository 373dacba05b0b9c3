"""The landed-batches sensor: a run per new batch, none for a batch already requested."""

import json

import dagster as dg
import pytest
from conftest import customer_created, event, land

from sensors.ingest import landed_batches_sensor, plan_batches
from sync_assets.ingest.landing import LandingZone
from sync_assets.resources import default_resources


def evaluate(folder, cursor=None) -> dg.SensorResult:
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=default_resources(folder)
        )
        result = landed_batches_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_a_new_batch_gets_one_run_keyed_by_its_batch_id(data_folder):
    batch = land(data_folder, "0001", [customer_created()])

    result = evaluate(data_folder)

    assert batch.batch_id.startswith("crm__0001@")
    assert [(r.run_key, r.partition_key) for r in result.run_requests] == [
        (batch.batch_id, batch.batch_id)
    ]
    [partition_request] = result.dynamic_partitions_requests
    assert list(partition_request.partition_keys) == [batch.batch_id]


def test_the_same_batch_again_gets_no_run(data_folder):
    land(data_folder, "0001", [customer_created()])
    first = evaluate(data_folder)

    second = evaluate(data_folder, cursor=first.cursor)

    assert second.run_requests == []
    assert second.dynamic_partitions_requests == []


def test_cursor_survives_a_restart_and_only_new_batches_run(data_folder):
    land(data_folder, "0001", [customer_created()])
    stored_cursor = evaluate(data_folder).cursor  # what Dagster persists between ticks
    billing = event("customer.updated", "C-000002", {"plan": "pro"}, origin="billing")
    second = land(data_folder, "0002", [billing])
    assert second.system == "billing"

    after_restart = evaluate(data_folder, cursor=stored_cursor)

    assert [r.run_key for r in after_restart.run_requests] == [second.batch_id]


def test_cursor_forgets_batches_once_ingested(data_folder):
    batch = land(data_folder, "0001", [customer_created()])
    cursor = evaluate(data_folder).cursor
    LandingZone(data_folder.landing).archive(batch)

    result = evaluate(data_folder, cursor=cursor)

    assert result.run_requests == []
    assert json.loads(result.cursor)["requested"] == []


def test_a_lost_cursor_requests_again_under_the_same_run_key():
    # A crash between the run request and the cursor update: Dagster drops the repeated run key.
    first, _ = plan_batches(["crm__0001"], None)
    again, _ = plan_batches(["crm__0001"], None)
    assert first == again == ["crm__0001"]


@pytest.mark.parametrize("cursor", [None, json.dumps({"requested": ["crm__0009"]})])
def test_plan_batches_never_skips_a_pending_batch(cursor):
    new, stored = plan_batches(["crm__0001", "crm__0002"], cursor)
    assert new == ["crm__0001", "crm__0002"]
    assert json.loads(stored)["requested"] == ["crm__0001", "crm__0002"]


def test_the_corrections_sensor_starts_a_delivery_only_when_corrections_are_pending(data_folder):
    from sensors.deliver import pending_corrections_sensor
    from sync_assets.definitions import build_definitions

    defs = build_definitions(data_folder)
    with dg.instance_for_test() as instance:

        def evaluate_after(pending: int, cursor: str | None):
            instance.report_runless_asset_event(
                dg.AssetMaterialization("corrections", metadata={"pending": pending})
            )
            context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor)
            [answer] = list(pending_corrections_sensor(context))
            return answer, context.cursor

        nothing, cursor = evaluate_after(0, None)
        work, cursor = evaluate_after(12, cursor)
        again, _ = evaluate_after(12, cursor)  # a new materialization: a new run

    assert isinstance(nothing, dg.SkipReason)
    assert isinstance(work, dg.RunRequest) and isinstance(again, dg.RunRequest)
    assert work.run_key != again.run_key
