"""The landed-batches sensor: one run per batch, never twice, never skipped, never stranded.

The cursor holds the batches already requested that are still pending in the landing zone (a batch
leaves the landing zone once ingested, so the cursor stays small). Each run request carries the
batch id as its run key, so even a cursor lost between the request and its update (a crash, a
restart) cannot start a batch twice: Dagster drops a run key it has seen.

A run can stop half way (a killed process, a failed step). When no ingest run is queued or in
progress and batches are still unfinished (a requested file still pending, or a batch the ledger
has not seen applied), the sensor asks for a resume run. Its run key names the last ingest run,
so a lost cursor cannot resume twice after the same stop, and each later stop gets its own.
After three resume runs in a row have failed, it stops and says so: a person must look.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import dagster as dg
import duckdb

from sync_assets import ledger
from sync_assets.errors import SyncfabricError
from sync_assets.ingest.assets import landed_batches
from sync_assets.ingest.resources import LandingZoneResource
from sync_assets.jobs import INGEST_BATCH_JOB
from sync_assets.settings import ingest_interval_seconds
from sync_assets.warehouse.resource import WarehouseResource

RESUME_TAG = "syncfabric/resume"
RESUME_LIMIT = 3
"""Consecutive failed resume runs after which the sensor stops resuming by itself."""
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def given_up(latest_runs: Sequence[dg.DagsterRun]) -> bool:
    """Whether the latest ingest runs are all resume runs that failed: whatever stops the batches
    does so every time (a bug, a batch too large to hold), and resuming every tick would only
    add a failed run every 30 s. A person takes it from there; any other run resets the count."""
    return len(latest_runs) == RESUME_LIMIT and all(
        run.tags.get(RESUME_TAG) == "true" and run.status == dg.DagsterRunStatus.FAILURE
        for run in latest_runs
    )


def plan_batches(pending: list[str], cursor: str | None) -> tuple[list[str], str]:
    """Which pending batches to request now, and the cursor to store afterwards."""
    requested = set(json.loads(cursor)["requested"]) if cursor else set()
    new = [batch_id for batch_id in pending if batch_id not in requested]
    still_pending = sorted(requested.intersection(pending) | set(new))
    return new, json.dumps({"requested": still_pending})


def plan_resume(
    stalled_files: dict[str, str], unfinished: list[str], last_run_id: str | None
) -> list[tuple[str, str]]:
    """(run key, partition) of the resume runs: one per requested file still pending after its
    run ended (`stalled_files`: batch -> that run; its raw ingest needs its own partition), else
    one for the batches the ledger left unfinished (any of their partitions will do: validation
    and apply take every batch waiting for them)."""
    runs = [(f"resume:{batch_id}:after:{run}", batch_id) for batch_id, run in stalled_files.items()]
    rest = [batch_id for batch_id in unfinished if batch_id not in stalled_files]
    if rest and not runs:
        runs.append((f"resume:ledger:after:{last_run_id or 'none'}", rest[0]))
    return runs


@dg.sensor(
    job_name=INGEST_BATCH_JOB,
    minimum_interval_seconds=ingest_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests one ingest run per batch landed under landing/<system>/, and a resume run when "
        "an earlier run stopped with batches unfinished."
    ),
)
def landed_batches_sensor(
    context: dg.SensorEvaluationContext,
    landing_zone: LandingZoneResource,
    warehouse: WarehouseResource,
) -> dg.SensorResult:
    scan = landing_zone.zone().scan()
    for refusal in scan.refused:
        context.log.warning(f"refused in the landing zone: {refusal}")
    pending = [batch.batch_id for batch in scan.batches]
    previous = set(json.loads(context.cursor)["requested"]) if context.cursor else set()
    new, cursor = plan_batches(pending, context.cursor)
    if new:
        context.log.info(f"{len(new)} new batch(es): {new}")
    requests = [
        dg.RunRequest(run_key=batch_id, partition_key=batch_id, tags={"syncfabric/batch": batch_id})
        for batch_id in new
    ]
    requests += _resume_requests(context, warehouse, [b for b in pending if b in previous])
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[landed_batches.build_add_request(new)] if new else [],
        cursor=cursor,
    )


def _resume_requests(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, requested: list[str]
) -> list[dg.RunRequest]:
    instance = context.instance
    if instance.get_runs(
        filters=dg.RunsFilter(job_name=INGEST_BATCH_JOB, statuses=ACTIVE), limit=1
    ):
        return []  # a run in flight takes every unfinished batch when it gets there
    try:
        with warehouse.connect(read_only=True) as con:
            unfinished = ledger.pending_batches(con)
    except (duckdb.IOException, SyncfabricError) as error:  # a writer holds it: next tick
        context.log.info(f"ledger not readable now, resume check skipped: {type(error).__name__}")
        return []
    latest = instance.get_runs(filters=dg.RunsFilter(job_name=INGEST_BATCH_JOB), limit=RESUME_LIMIT)
    if given_up(latest):
        context.log.warning(
            f"the last {RESUME_LIMIT} resume runs failed: not resuming again by itself; "
            "syncctl doctor says what stops the batches (docs/runbooks/counts-do-not-add-up.md)"
        )
        return []
    stalled = {}
    for batch_id in requested:  # its run ended, and the file is still here
        ended = instance.get_runs(
            filters=dg.RunsFilter(job_name=INGEST_BATCH_JOB, tags={"dagster/partition": batch_id}),
            limit=1,
        )
        if ended:
            stalled[batch_id] = ended[0].run_id
    planned = plan_resume(stalled, unfinished, latest[0].run_id if latest else None)
    if planned:
        context.log.warning(f"resuming unfinished batches: {[p for _, p in planned]}")
    return [
        dg.RunRequest(run_key=run_key, partition_key=partition, tags={RESUME_TAG: "true"})
        for run_key, partition in planned
    ]
