"""Jobs and schedules: what one run does, and when it runs by itself."""

import os

import dagster as dg

from sync_assets.ingest.assets import landed_batches
from sync_assets.project import Project

INGEST_BATCH_JOB = "ingest_batch"
RECONCILE_JOB = "reconcile"
CHECK_JOB = "reconcile_check"
RECONCILE_CRON_ENV = "SYNCFABRIC_RECONCILE_CRON"

ingest_batch_job = dg.define_asset_job(
    INGEST_BATCH_JOB,
    description=(
        "Ingest one landed batch end to end: raw events, validation (validated events and dead "
        "letters), golden records, the batch ledger and their checks."
    ),
    selection=dg.AssetSelection.groups("ingest", "state"),
    partitions_def=landed_batches,
    tags={"syncfabric/flow": "ingest"},
)

reconcile_job = dg.define_asset_job(
    RECONCILE_JOB,
    description=(
        "Snapshot every system, normalize, diff against the golden records and between systems, "
        "run the reconciliation checks, and emit corrections for the drift found (unless a check "
        "fails at ERROR). Where an entity's golden records are empty, it also lands the owners' "
        "rows as their events (`adoption`)."
    ),
    selection=dg.AssetSelection.groups("reconcile", "deliver"),
    tags={"syncfabric/flow": "reconcile"},
)

check_job = dg.define_asset_job(
    CHECK_JOB,
    description=(
        "Read-only reconciliation: snapshot every system, diff against the golden records and "
        "between systems, and run the reconciliation checks. Neither lands missed events nor "
        "emits corrections (`syncctl check`); the `reconcile` job does."
    ),
    selection=dg.AssetSelection.groups("reconcile")
    - dg.AssetSelection.assets("missed_events", "adoption"),
    tags={"syncfabric/flow": "check"},
)


def reconcile_schedule(project: Project) -> dg.ScheduleDefinition:
    """The scheduled reconciliation, at the project's cron (`reconcile.schedule` in
    syncfabric.yaml) unless SYNCFABRIC_RECONCILE_CRON overrides it."""
    return dg.ScheduleDefinition(
        name="scheduled_reconciliation",
        job=reconcile_job,
        cron_schedule=os.environ.get(RECONCILE_CRON_ENV) or project.settings.schedule,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Reconciles every system on the project's schedule (`reconcile.schedule` in "
            f"syncfabric.yaml); {RECONCILE_CRON_ENV} overrides it."
        ),
    )
