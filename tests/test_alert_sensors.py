"""The alert sensors through Dagster: a failed run raises its alert, the evaluation raises and
resolves, and a warehouse held by another process (a running job) skips the tick."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg
import pytest
from conftest import customer_created, land, rows, run_core

from sensors.alerts import alert_on_run_failure, evaluate_alerts
from sync_assets.resources import default_resources


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@dg.op
def breaks() -> None:
    raise RuntimeError("boom")


@dg.job
def fragile() -> None:
    breaks()


@dg.op
def holds() -> None:
    pass


@dg.job(name="fragile")
def mended() -> None:
    holds()


def failure_context(instance, run_id: str, resources) -> dg.RunFailureSensorContext:
    run = instance.get_run_by_id(run_id)
    [failure] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        resources=resources,
    ).for_run_failure()


def test_a_failed_run_raises_one_alert_and_a_later_success_resolves_it(data_folder, instance):
    resources = default_resources(data_folder)
    failed = fragile.execute_in_process(instance=instance, raise_on_error=False)
    assert not failed.success

    alert_on_run_failure(failure_context(instance, failed.run_id, resources))
    assert rows(data_folder, "SELECT kind, subject, summary, resolved_at FROM alerts") == [
        ("run_failed", "fragile", f"run {failed.run_id} of job fragile failed at breaks", None)
    ]
    # The evaluation finds the same failure in the instance: still open, not raised again.
    evaluate_alerts(dg.build_sensor_context(instance=instance, resources=resources))
    assert rows(data_folder, "SELECT count(*), count(resolved_at) FROM alerts") == [(1, 0)]

    assert mended.execute_in_process(instance=instance).success
    evaluate_alerts(dg.build_sensor_context(instance=instance, resources=resources))
    assert rows(data_folder, "SELECT count(*), count(resolved_at) FROM alerts") == [(1, 1)]


HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
"""


def test_the_evaluation_skips_while_another_process_holds_the_warehouse(data_folder, instance):
    bad = [customer_created(f"C-{i:06d}", data={"status": "weird"}) for i in range(1, 120)]
    run_core(data_folder, [land(data_folder, "bad", bad).batch_id])
    resources = default_resources(data_folder)
    failed = fragile.execute_in_process(instance=instance, raise_on_error=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_folder.warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        skipped = evaluate_alerts(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(skipped, dg.SkipReason)
        assert "held by another process" in (skipped.skip_message or "")
        busy = alert_on_run_failure(failure_context(instance, failed.run_id, resources))
        assert isinstance(busy, dg.SkipReason) and "the next evaluation raises it" in str(
            busy.skip_message
        )
    finally:
        holder.communicate("")
    ticked = evaluate_alerts(dg.build_sensor_context(instance=instance, resources=resources))
    assert "2 raised" in (ticked.skip_message or "")  # the failed run too: nothing is lost
    assert sorted(rows(data_folder, "SELECT kind, subject FROM alerts")) == [
        ("dead_letters", "crm"),
        ("run_failed", "fragile"),
    ]


@dg.asset
def ledger_table() -> int:
    return 1


@dg.asset_check(asset=ledger_table)
def rule_total_positive() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata={"unexpected": 4}
    )


@dg.asset_check(asset=ledger_table)
def rule_only_a_warning() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)


def test_a_check_failing_at_error_is_a_fact_the_evaluation_raises(data_folder, instance):
    defs = dg.Definitions(
        assets=[ledger_table],
        asset_checks=[rule_total_positive, rule_only_a_warning],
        sensors=[evaluate_alerts],
        resources=default_resources(data_folder),
    )
    done = dg.materialize(
        [ledger_table, rule_total_positive, rule_only_a_warning], instance=instance
    )
    context = dg.build_sensor_context(
        instance=instance, definitions=defs, resources=default_resources(data_folder)
    )
    evaluate_alerts(context)
    assert rows(data_folder, "SELECT kind, subject, summary FROM alerts") == [
        (
            "check_failed",
            "ledger_table",
            f"check rule_total_positive on ledger_table failed at ERROR in run {done.run_id}: "
            "4 rows break it",
        )
    ]
