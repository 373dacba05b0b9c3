"""Ingest assets: a landed batch becomes raw events, then validated events and dead letters.

Both are partitioned by batch (a dynamic partition per landed file). The sensor runs one batch per
run; a backfill or `syncctl run` hands several batches to one run (single-run backfill policy),
and each step commits all of them at once (a commit costs a sync to disk). Re-running a batch
changes nothing: each step moves a batch forward in the ledger (sync_assets/ledger.py) and skips
batches already past it.

Whatever stopped a run, the next one resumes: `raw_events` ingests its own batches still
`landed`, and `validated_events` validates every batch left `raw`, its run's or not (the golden
records apply every batch left `validated`). A batch whose step fails is left where it was with
the error recorded; the others go on.
"""

import warnings

import dagster as dg
import duckdb

from sync_assets import ledger
from sync_assets.crashpoints import crash_point
from sync_assets.ingest.landing import Batch, LandingZone
from sync_assets.ingest.raw import ingest_batch
from sync_assets.ingest.resources import LandingZoneResource
from sync_assets.ingest.validate import ValidationCounts, validate_batch
from sync_assets.operate.runbooks import runbook_url
from sync_assets.project import Project
from sync_assets.warehouse import WRITER_POOL, transaction
from sync_assets.warehouse.resource import WarehouseResource

# The single-run backfill policy is marked beta; it has been stable for these assets.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")

LANDED_BATCHES = "landed_batches"
landed_batches = dg.DynamicPartitionsDefinition(name=LANDED_BATCHES)

OWNERS = ["team:data-platform"]
RUNBOOK = "docs/runbooks/dead-letters.md"


def build_raw_events(project: Project) -> dg.AssetsDefinition:
    """`raw_events`, downstream of the project's systems (their events land here)."""

    @dg.asset(
        partitions_def=landed_batches,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[f"system_{system}" for system in project.system_names],
        pool=WRITER_POOL,
        group_name="ingest",
        kinds={"duckdb"},
        owners=OWNERS,
        description=(
            "Every line of a landed batch, append-only, verbatim, with its batch and arrival time. "
            "Table `raw_events`; the batch moves from `landed` to `raw` in the ledger (`batches`)."
        ),
    )
    def raw_events(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        landing_zone: LandingZoneResource,
    ) -> dg.MaterializeResult:
        zone = landing_zone.zone()
        scan = zone.scan()
        for refusal in scan.refused:
            context.log.warning(f"refused in the landing zone: {refusal}")
        with warehouse.connect() as con:
            batches, vanished = _batches_to_ingest(con, zone, context.partition_keys)
            for batch_id in vanished:
                context.log.warning(f"batch {batch_id}: its file is gone; nothing to ingest")
            with transaction(con):
                ledger.mark_landed(con, batches.values())
            step = ledger.run_step(
                con,
                "raw ingest",
                list(batches),
                lambda con, ids: {i: ingest_batch(con, batches[i]) for i in ids},
            )
        crash_point("after-raw-commit")
        for batch_id in step.done:  # only once their events are committed
            zone.archive(batches[batch_id])
        for batch_id, error in step.failed.items():
            context.log.error(
                f"batch {batch_id} failed raw ingest, left landed: {ledger.error_kind(error)} (syncctl doctor tells more)"
            )
        return dg.MaterializeResult(
            metadata={
                "batches": len(step.done),
                "landed": sum(counts.landed for counts in step.done.values()),
                "failed_batches": len(step.failed),
                "vanished_batches": len(vanished),
                "refused_entries": len(scan.refused),
            }
        )

    return raw_events


def _batches_to_ingest(
    con: duckdb.DuckDBPyConnection, zone: LandingZone, partition_keys: list[str]
) -> tuple[dict[str, Batch], list[str]]:
    """The run's batches still to ingest (a range may hold batches done long ago: skipped at
    once), and those whose file is gone, which are forgotten if they never got past `landed`."""
    states = ledger.state_of(con, list(partition_keys))
    batches: dict[str, Batch] = {}
    vanished = []
    for batch_id in partition_keys:
        if states.get(batch_id, "landed") != "landed":
            continue
        try:
            batches[batch_id] = zone.locate(batch_id)
        except FileNotFoundError:
            vanished.append(batch_id)
    if vanished:
        with transaction(con):
            for batch_id in vanished:
                ledger.forget_landed(con, batch_id)
    return batches, vanished


@dg.multi_asset(
    partitions_def=landed_batches,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WRITER_POOL,
    group_name="ingest",
    specs=[
        dg.AssetSpec(
            "validated_events",
            deps=["raw_events"],
            kinds={"duckdb", "pandera"},
            owners=OWNERS,
            description=(
                "Events that passed the envelope and their (type, schema version) contract, "
                "upcast to the current version, one table per entity "
                "(`validated_<entity>_events`): the event log."
            ),
        ),
        dg.AssetSpec(
            "dead_letters",
            deps=["raw_events"],
            kinds={"duckdb"},
            owners=OWNERS,
            description=(
                "Events that failed validation: batch, line, event id, the contract, the rule and "
                "a reason naming the field and the fix, and the original payload. Table "
                "`dead_letters`."
            ),
            metadata={"runbook": dg.MetadataValue.url(runbook_url(RUNBOOK))},
        ),
    ],
)
def validate_events(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    landing_zone: LandingZoneResource,
):
    """Validates every batch in the `raw` state, the run's own and any a stopped run left."""
    counts = ValidationCounts()
    zone = landing_zone.zone()
    with warehouse.connect() as con:
        waiting = ledger.in_state(con, "raw")
        step = ledger.run_step(
            con,
            "validation",
            waiting,
            lambda con, ids: {i: validate_batch(con, i, zone=zone) for i in ids},
        )
    resumed = sorted(set(step.done) - set(context.partition_keys))
    if resumed:
        context.log.info(f"resumed {len(resumed)} batch(es) a stopped run left raw: {resumed}")
    for batch_id, batch_counts in step.done.items():
        if batch_counts.dead_lettered:
            context.log.warning(
                f"batch {batch_id}: {batch_counts.dead_lettered} dead letters by rule "
                f"{dict(batch_counts.by_rule)}; see {RUNBOOK}"
            )
        if batch_counts.deprecated:
            context.log.warning(
                f"batch {batch_id}: events still carry deprecated fields "
                f"{dict(batch_counts.deprecated)}; `syncctl schema check` says until when"
            )
        counts.add(batch_counts)
    for batch_id, error in step.failed.items():
        context.log.error(
            f"batch {batch_id} failed validation, left raw: {ledger.error_kind(error)} (syncctl doctor tells more)"
        )
    yield dg.MaterializeResult(
        asset_key="validated_events",
        metadata={
            "batches": len(step.done),
            "resumed_batches": len(resumed),
            "failed_batches": len(step.failed),
            "validated": counts.validated,
            "duplicates": counts.duplicates,
            **{f"validated_{entity}": n for entity, n in sorted(counts.by_entity.items())},
            **{f"deprecated_{field}": n for field, n in sorted(counts.deprecated.items())},
        },
    )
    yield dg.MaterializeResult(
        asset_key="dead_letters",
        metadata={
            "dead_lettered": counts.dead_lettered,
            **{f"rule_{rule}": n for rule, n in sorted(counts.by_rule.items())},
        },
    )
