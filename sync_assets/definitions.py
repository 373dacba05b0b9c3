"""The code location: assembles the assets, checks, sensors, schedules and resources of each stage."""

import dagster as dg

from checks.deliver import no_dead_letters_held
from checks.ingest import dead_letter_rate, every_event_accounted_for
from checks.reconcile import reconciliation_checks
from checks.state import golden_checks
from sensors.deliver import pending_corrections_sensor
from sensors.ingest import landed_batches_sensor
from sync_assets.deliver.assets import corrections
from sync_assets.deliver.ops import deliver_corrections
from sync_assets.ingest.assets import raw_events, validate_events
from sync_assets.ingest.ops import redrive_ingest_dead_letters
from sync_assets.jobs import check_job, ingest_batch_job, reconcile_job, reconcile_schedule
from sync_assets.reconcile.assets import (
    discrepancies,
    missed_events,
    snapshot_assets,
    source_systems,
)
from sync_assets.resources import default_resources
from sync_assets.settings import DataFolder
from sync_assets.state.assets import batch_ledger, golden_records


def build_definitions(folder: DataFolder | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[
            *source_systems,
            raw_events,
            validate_events,
            golden_records,
            batch_ledger,
            *snapshot_assets,
            discrepancies,
            missed_events,
            corrections,
        ],
        asset_checks=[
            every_event_accounted_for,
            dead_letter_rate,
            *golden_checks,
            reconciliation_checks,
            no_dead_letters_held,
        ],
        jobs=[
            ingest_batch_job,
            reconcile_job,
            check_job,
            deliver_corrections,
            redrive_ingest_dead_letters,
        ],
        schedules=[reconcile_schedule],
        sensors=[landed_batches_sensor, pending_corrections_sensor],
        resources=default_resources(folder),
    )


defs = build_definitions()
