"""The corrections sensor: a delivery run whenever a reconciliation leaves corrections pending."""

import dagster as dg

from sync_assets.deliver.ops import DELIVER_JOB


@dg.asset_sensor(
    asset_key=dg.AssetKey("corrections"),
    job_name=DELIVER_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts `deliver_corrections` after `corrections` materializes with work pending.",
)
def pending_corrections_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    materialization = asset_event.asset_materialization
    pending = materialization.metadata.get("pending") if materialization else None
    if pending is None or int(pending.value) == 0:  # type: ignore[arg-type]
        return dg.SkipReason("no corrections pending")
    # One delivery run per materialization of `corrections`, however often the sensor ticks.
    return dg.RunRequest(
        run_key=f"corrections-{asset_event.run_id}-{asset_event.timestamp}",
        tags={"syncfabric/corrections_run": asset_event.run_id},
    )
