"""The alert sensors: a failed run raises its alert at once; every few minutes the rules are
evaluated over the warehouse (sync_assets/operate/alerts.py), raising what is new and resolving
what cleared. What an alert is and where it goes: sync_assets/operate/notify.py.

DuckDB lets one process write the warehouse: while a run holds it, the evaluation skips its tick
(the next one catches up; a failed run is also found again from the instance)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from sync_assets.errors import EXIT_BUSY, SyncfabricError
from sync_assets.operate.alerts import Facts, FailedRun, run_failures
from sync_assets.operate.notify import failed_checks, failed_runs, log_line, raise_alerts, send
from sync_assets.project import current
from sync_assets.warehouse.resource import WarehouseResource

EVERY_S = 120


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Raises a run_failed alert (log, alerts table, webhook) when a run fails.",
)
def alert_on_run_failure(
    context: dg.RunFailureSensorContext, warehouse: WarehouseResource
) -> dg.SkipReason | None:
    run = context.dagster_run
    steps = tuple(sorted({e.step_key for e in context.get_step_failure_events() if e.step_key}))
    failed = FailedRun(run.run_id, run.job_name, steps)
    try:
        recorded = send(Path(warehouse.path), current(), run_failures([failed]))
    except SyncfabricError as error:
        if error.exit_code != EXIT_BUSY:
            raise
        return dg.SkipReason(f"warehouse busy; the next evaluation raises it: {error.message}")
    for alert in recorded.raised:  # the tick's log in the UI, beside the process log
        context.log.error(log_line(alert))
    return None


@dg.sensor(
    name="evaluate_alerts",
    minimum_interval_seconds=EVERY_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the alert rules over the warehouse: raises new alerts, resolves cleared ones.",
)
def evaluate_alerts(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SkipReason:
    checks = context.repository_def.asset_graph.asset_check_keys if context.repository_def else None
    facts = Facts(
        failed_runs=failed_runs(context.instance),
        failed_checks=None if checks is None else failed_checks(context.instance, checks),
    )
    try:
        recorded = raise_alerts(Path(warehouse.path), current(), facts)
    except SyncfabricError as error:
        if error.exit_code != EXIT_BUSY:
            raise
        return dg.SkipReason(
            f"the warehouse is held by another process; next tick: {error.message}"
        )
    for alert in recorded.raised:
        (context.log.error if alert.severity == "ERROR" else context.log.warning)(log_line(alert))
    return dg.SkipReason(
        f"{len(recorded.raised)} raised, {len(recorded.still_open)} still open, "
        f"{len(recorded.resolved)} resolved"
    )
