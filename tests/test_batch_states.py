"""Batches as a state machine: whatever stops a run, the next one resumes, and nothing hides."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from conftest import customer_created, land, rows

from sensors.ingest import landed_batches_sensor, plan_resume
from sync_assets import ledger
from sync_assets.ingest import validate as validate_module
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.raw import ingest_batch
from sync_assets.jobs import INGEST_BATCH_JOB
from sync_assets.ledger import summarize
from sync_assets.resources import default_resources
from sync_assets.warehouse import connect, transaction


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def ingest_job(folder):
    from sync_assets.definitions import build_definitions

    return build_definitions(folder).resolve_job_def(INGEST_BATCH_JOB)


def run_ingest(folder, instance, batch_id: str) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("landed_batches", [batch_id])
    return ingest_job(folder).execute_in_process(
        instance=instance, partition_key=batch_id, raise_on_error=False
    )


def states(folder) -> dict[str, str]:
    return dict(rows(folder, "SELECT batch_id, state FROM batches"))


def test_a_batch_that_fails_validation_does_not_hold_back_the_others(
    data_folder, instance, monkeypatch
):
    good = land(data_folder, "0001", [customer_created("C-000001")])
    bad = land(data_folder, "0002", [customer_created("C-000002")])
    with (
        connect(data_folder.warehouse) as con,
        transaction(con),
    ):  # both raw, as a crash leaves them
        for batch in (good, bad):
            ingest_batch(con, batch)
    real = validate_module.validate_batch

    def validate(con, batch_id, **options):
        if batch_id == bad.batch_id:
            raise RuntimeError("a bug meets this batch")
        return real(con, batch_id, **options)

    monkeypatch.setattr(validate_module, "validate_batch", validate)
    monkeypatch.setattr("sync_assets.ingest.assets.validate_batch", validate)
    third = land(data_folder, "0003", [customer_created("C-000003")])

    failed = run_ingest(data_folder, instance, third.batch_id)

    assert not failed.success, "the blocking ledger check fails the run"
    assert states(data_folder) == {
        good.batch_id: "applied",
        bad.batch_id: "raw",
        third.batch_id: "applied",
    }
    [(failures, step, error)] = rows(
        data_folder, "SELECT failures, failed_step, last_error FROM batches WHERE failures > 0"
    )
    assert (failures, step, error) == (1, "validation", "RuntimeError: a bug meets this batch")
    with connect(data_folder.warehouse, read_only=True) as con:
        summary = summarize(con)
    assert not summary.balanced
    assert (summary.pending, summary.unfinished_batches) == (1, (bad.batch_id,))

    monkeypatch.undo()
    fourth = land(data_folder, "0004", [customer_created("C-000004")])
    resumed = run_ingest(data_folder, instance, fourth.batch_id)

    assert resumed.success
    assert set(states(data_folder).values()) == {"applied"}
    assert rows(data_folder, "SELECT count(*) FROM golden_customer") == [(4,)]
    with connect(data_folder.warehouse, read_only=True) as con:
        assert summarize(con).balanced


def test_a_batch_left_validated_is_applied_by_the_next_run(data_folder, instance):
    stopped = land(data_folder, "0001", [customer_created("C-000001")])
    with connect(data_folder.warehouse) as con, transaction(con):
        ingest_batch(con, stopped)
        validate_module.validate_batch(con, stopped.batch_id)
    LandingZone(data_folder.landing).archive(stopped)
    assert states(data_folder) == {stopped.batch_id: "validated"}
    with connect(data_folder.warehouse, read_only=True) as con:
        assert not summarize(con).balanced, "pending never adds up"

    later = land(data_folder, "0002", [customer_created("C-000002")])
    assert run_ingest(data_folder, instance, later.batch_id).success

    assert set(states(data_folder).values()) == {"applied"}


def test_a_step_that_fails_for_every_batch_records_each_failure(data_folder, monkeypatch):
    batches = [land(data_folder, f"000{n}", [customer_created(f"C-00000{n}")]) for n in (1, 2)]

    def broken(con, batch_id):
        raise ValueError(f"cannot read {batch_id}")

    with connect(data_folder.warehouse) as con:
        result = ledger.run_step(
            con,
            "raw ingest",
            [b.batch_id for b in batches],
            lambda c, ids: {i: broken(c, i) for i in ids},
        )
    assert result.done == {}
    assert set(result.failed) == {b.batch_id for b in batches}


def test_plan_resume_is_deterministic_and_names_the_run_it_follows():
    first = plan_resume({"crm__1@a": "run-1"}, ["crm__1@a", "billing__2@b"], "run-1")
    again = plan_resume({"crm__1@a": "run-1"}, ["crm__1@a", "billing__2@b"], "run-1")

    assert first == again == [("resume:crm__1@a:after:run-1", "crm__1@a")]
    assert plan_resume({}, ["billing__2@b"], "run-7") == [
        ("resume:ledger:after:run-7", "billing__2@b")
    ]
    assert plan_resume({}, [], "run-7") == []


def test_the_sensor_resumes_a_batch_whose_run_stopped(data_folder, instance):
    batch = land(data_folder, "0001", [customer_created()])
    resources = default_resources(data_folder)
    first = landed_batches_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.run_key for r in first.run_requests] == [batch.batch_id]
    # The run it asked for starts, and dies before ingesting anything.
    run = instance.create_run_for_job(
        ingest_job(data_folder), tags={"dagster/partition": batch.batch_id}
    )
    instance.report_run_failed(run)

    after = landed_batches_sensor(
        dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources)
    )
    lost_cursor_again = landed_batches_sensor(
        dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources)
    )

    assert [(r.run_key, r.partition_key) for r in after.run_requests] == [
        (f"resume:{batch.batch_id}:after:{run.run_id}", batch.batch_id)
    ]
    assert [r.run_key for r in lost_cursor_again.run_requests] == [
        r.run_key for r in after.run_requests
    ], "the same stop is resumed under the same run key: Dagster runs it once"
    assert json.loads(after.cursor)["requested"] == [batch.batch_id]


def test_the_sensor_does_not_resume_while_an_ingest_run_is_in_flight(data_folder, instance):
    batch = land(data_folder, "0001", [customer_created()])
    resources = default_resources(data_folder)
    first = landed_batches_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    run = instance.create_run_for_job(
        ingest_job(data_folder), tags={"dagster/partition": batch.batch_id}
    )
    instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name
        ),
    )

    after = landed_batches_sensor(
        dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources)
    )

    assert after.run_requests == []


def test_the_sensor_resumes_batches_the_ledger_left_unfinished(data_folder, instance):
    stopped = land(data_folder, "0001", [customer_created()])
    with connect(data_folder.warehouse) as con, transaction(con):
        ingest_batch(con, stopped)
    LandingZone(data_folder.landing).archive(stopped)

    result = landed_batches_sensor(
        dg.build_sensor_context(instance=instance, resources=default_resources(data_folder))
    )

    assert [(r.run_key, r.partition_key) for r in result.run_requests] == [
        ("resume:ledger:after:none", stopped.batch_id)
    ]


def test_the_sensor_stops_resuming_after_three_failed_resume_runs_in_a_row(data_folder, instance):
    stopped = land(data_folder, "0001", [customer_created()])
    with connect(data_folder.warehouse) as con, transaction(con):
        ingest_batch(con, stopped)
    LandingZone(data_folder.landing).archive(stopped)
    resources = default_resources(data_folder)
    job = ingest_job(data_folder)

    def evaluate():
        return landed_batches_sensor(
            dg.build_sensor_context(instance=instance, resources=resources)
        )

    answers = []
    for _ in range(3):  # each resume run dies the same way
        [request] = evaluate().run_requests
        answers.append(request.run_key)
        run = instance.create_run_for_job(job, tags=request.tags)
        instance.report_run_failed(run)

    assert len(set(answers)) == 3, "each stop was resumed under its own key"
    assert evaluate().run_requests == [], "after three failed resumes in a row, a person looks"
    instance.report_run_failed(instance.create_run_for_job(job))  # any other run resets it
    assert len(evaluate().run_requests) == 1
