"""Jobs and schedules: what one run does, and when it runs by itself."""

import os

import dagster as dg

from sync_assets.ingest.assets import landed_batches

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
        "fails at ERROR)."
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
    selection=dg.AssetSelection.groups("reconcile") - dg.AssetSelection.assets("missed_events"),
    tags={"syncfabric/flow": "check"},
)

reconcile_schedule = dg.ScheduleDefinition(
    name="hourly_reconciliation",
    job=reconcile_job,
    cron_schedule=os.environ.get(RECONCILE_CRON_ENV, "0 * * * *"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"Reconciles every system hourly; set {RECONCILE_CRON_ENV} to change the cron.",
)
