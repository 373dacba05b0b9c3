"""The landed-batches sensor: one run per batch, never twice, never skipped.

The cursor holds the batches already requested that are still pending in the landing zone (a batch
leaves the landing zone once ingested, so the cursor stays small). Each run request carries the
batch id as its run key, so even a cursor lost between the request and its update (a crash, a
restart) cannot start a batch twice: Dagster drops a run key it has seen.
"""

import json

import dagster as dg

from sync_assets.ingest.assets import landed_batches
from sync_assets.jobs import ingest_batch_job
from sync_assets.resources import LandingZoneResource


def plan_batches(pending: list[str], cursor: str | None) -> tuple[list[str], str]:
    """Which pending batches to request now, and the cursor to store afterwards."""
    requested = set(json.loads(cursor)["requested"]) if cursor else set()
    new = [batch_id for batch_id in pending if batch_id not in requested]
    still_pending = sorted(requested.intersection(pending) | set(new))
    return new, json.dumps({"requested": still_pending})


@dg.sensor(
    job=ingest_batch_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests one ingest run per batch landed under landing/<system>/.",
)
def landed_batches_sensor(
    context: dg.SensorEvaluationContext, landing_zone: LandingZoneResource
) -> dg.SensorResult:
    pending = [batch.batch_id for batch in landing_zone.zone().pending()]
    new, cursor = plan_batches(pending, context.cursor)
    if new:
        context.log.info(f"{len(new)} new batch(es): {new}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=batch_id, partition_key=batch_id, tags={"syncfabric/batch": batch_id}
            )
            for batch_id in new
        ],
        dynamic_partitions_requests=[landed_batches.build_add_request(new)] if new else [],
        cursor=cursor,
    )
