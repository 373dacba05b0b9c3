"""Jobs and schedules: what one run does, and when it runs by itself."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import dagster as dg

from sync_assets.ingest.assets import landed_batches
from sync_assets.operate.workers import step_executor
from sync_assets.project import Project

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

INGEST_BATCH_JOB = "ingest_batch"
RECONCILE_JOB = "reconcile"
CHECK_JOB = "reconcile_check"
RECONCILE_CRON_ENV = "SYNCFABRIC_RECONCILE_CRON"


def _golden_rules(project: Project) -> dg.AssetSelection:
    """The business-rule checks over the golden records: run with each reconciliation, beside
    the snapshots' rules, not with every ingest run (great-expectations takes seconds to import,
    and a batch's run should take milliseconds more, not seconds)."""
    return dg.AssetSelection.checks(
        *(
            dg.AssetCheckKey(dg.AssetKey(entity.golden_table), rule.check_name)
            for entity in project.entities.values()
            for rule in entity.rules
        )
    )


def build_jobs(project: Project) -> list[UnresolvedAssetJobDefinition]:
    rules = _golden_rules(project)
    # The reconciliation's steps in `syncctl worker` processes where SYNCFABRIC_CELERY_BROKER_URL
    # names a broker (sync_assets/operate/workers.py); else in the run's own process: the steps
    # that write take turns in the duckdb_writer pool anyway, and a process per step (Dagster's
    # default executor) costs each step its start and imports, seconds apiece.
    spread = step_executor() or dg.in_process_executor
    ingest_batch = dg.define_asset_job(
        INGEST_BATCH_JOB,
        description=(
            "Ingest one landed batch end to end: raw events, validation (validated events and "
            "dead letters), golden records, the batch ledger and their checks (the business "
            "rules aside: the reconciliation runs them)."
        ),
        selection=dg.AssetSelection.groups("ingest", "state") - rules,
        partitions_def=landed_batches,
        tags={"syncfabric/flow": "ingest"},
        # Every step writes the warehouse, one at a time (the duckdb_writer pool): a process per
        # step (Dagster's default) would only add its start and imports, seconds per step.
        executor_def=dg.in_process_executor,
    )
    reconcile = dg.define_asset_job(
        RECONCILE_JOB,
        description=(
            "Snapshot every system, normalize, diff against the golden records and between "
            "systems, run the reconciliation checks and the business rules, and emit corrections "
            "for the drift found (unless a check fails at ERROR). Where an entity's golden "
            "records are empty, it also lands the owners' rows as their events (`adoption`)."
        ),
        selection=dg.AssetSelection.groups("reconcile", "deliver") | rules,
        tags={"syncfabric/flow": "reconcile"},
        executor_def=spread,
    )
    check = dg.define_asset_job(
        CHECK_JOB,
        description=(
            "Read-only reconciliation: snapshot every system, diff against the golden records and "
            "between systems, run the reconciliation checks and the business rules. Neither lands "
            "missed events nor emits corrections (`syncctl check`); the `reconcile` job does."
        ),
        selection=(
            dg.AssetSelection.groups("reconcile")
            - dg.AssetSelection.assets("missed_events", "adoption")
        )
        | rules,
        tags={"syncfabric/flow": "check"},
        executor_def=spread,
    )
    return [ingest_batch, reconcile, check]


def reconcile_schedule(project: Project) -> dg.ScheduleDefinition:
    """The scheduled reconciliation, at the project's cron (`reconcile.schedule` in
    syncfabric.yaml) unless SYNCFABRIC_RECONCILE_CRON overrides it."""
    return dg.ScheduleDefinition(
        name="scheduled_reconciliation",
        job_name=RECONCILE_JOB,
        cron_schedule=os.environ.get(RECONCILE_CRON_ENV) or project.settings.schedule,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Reconciles every system on the project's schedule (`reconcile.schedule` in "
            f"syncfabric.yaml); {RECONCILE_CRON_ENV} overrides it."
        ),
    )
