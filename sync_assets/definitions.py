"""The code location: assembles the assets, checks, sensors, schedules and resources of each stage
for the project (`--project`, SYNCFABRIC_PROJECT, else the current directory)."""

import dagster as dg

from checks.deliver import no_dead_letters_held
from checks.ingest import dead_letter_rate, every_event_accounted_for
from checks.reconcile import build_reconciliation_checks
from checks.rules import golden_rule_checks, snapshot_rule_checks
from checks.state import golden_checks
from sensors.alerts import alert_on_run_failure, evaluate_alerts
from sensors.bus import bus_sensor
from sensors.deliver import pending_corrections_sensor
from sensors.ingest import landed_batches_sensor
from sensors.outbox import outbox_sensor
from sync_assets.deliver.assets import corrections, delivered_spec
from sync_assets.deliver.ops import build_deliver_corrections
from sync_assets.govern.assets import registry_assets
from sync_assets.govern.lineage import build_lineage
from sync_assets.govern.lineage_metadata import with_column_lineage
from sync_assets.ingest.assets import build_raw_events, validate_events
from sync_assets.ingest.ops import redrive_ingest_dead_letters
from sync_assets.jobs import build_jobs, reconcile_schedule
from sync_assets.operate.assets import build_report
from sync_assets.project import Project, current
from sync_assets.reconcile.assets import (
    build_adoption,
    build_discrepancies,
    missed_events,
    snapshot_asset,
    source_system,
)
from sync_assets.resources import default_resources
from sync_assets.settings import BusSettings, DataFolder
from sync_assets.state.assets import build_batch_ledger, build_golden_records


def build_definitions(
    folder: DataFolder | None = None, project: Project | None = None
) -> dg.Definitions:
    project = project or current()
    lineage = build_lineage(project)
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = [
        *(source_system(system) for system in project.systems.values()),
        build_raw_events(project),
        validate_events,
        build_golden_records(project),
        build_batch_ledger(project),
        *(snapshot_asset(m, project.entity(m.entity)) for m in project.mappings.values()),
        build_discrepancies(project),
        missed_events,
        build_adoption(project),
        corrections,
        *(delivered_spec(project.systems[system]) for system in lineage.destinations()),
        *registry_assets(project),
        build_report(project),
    ]
    return dg.Definitions(
        assets=with_column_lineage(project, lineage, assets),
        asset_checks=[
            every_event_accounted_for,
            dead_letter_rate,
            *golden_checks(project),
            *golden_rule_checks(project),
            *snapshot_rule_checks(project),
            build_reconciliation_checks(project),
            no_dead_letters_held,
        ],
        jobs=[
            *build_jobs(project),
            build_deliver_corrections(project),
            redrive_ingest_dead_letters,
        ],
        schedules=[reconcile_schedule(project)],
        sensors=[
            landed_batches_sensor,
            pending_corrections_sensor,
            alert_on_run_failure,
            evaluate_alerts,
            # the message bus, beside the landing folders, where SYNCFABRIC_BUS_URL names one
            *([bus_sensor] if BusSettings.from_env() else []),
            # the outbox tables, where a system declares one (channels.outbox)
            *([outbox_sensor] if project.outbox_systems else []),
        ],
        resources=default_resources(folder, project),
    )


defs = build_definitions()
