"""Ingest assets: a landed batch becomes raw events, then validated events and dead letters.

Both are partitioned by batch (a dynamic partition per landed file). The sensor runs one batch per
run; a backfill or `syncctl run` hands several batches to one run (single-run backfill policy),
and each step commits all of them at once (a commit costs a sync to disk). Re-running a batch
changes nothing: both steps are recorded in the batch ledger and skipped when already done.
"""

import warnings

import dagster as dg

from sync_assets.catalog.entities import SYSTEMS
from sync_assets.ingest.raw import ingest_batch
from sync_assets.ingest.validate import ValidationCounts, validate_batch
from sync_assets.resources import LandingZoneResource, WarehouseResource
from sync_assets.warehouse import WRITER_POOL, transaction

# The single-run backfill policy is marked beta; it has been stable for these assets.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")

LANDED_BATCHES = "landed_batches"
landed_batches = dg.DynamicPartitionsDefinition(name=LANDED_BATCHES)

OWNERS = ["team:data-platform"]
RUNBOOK = "docs/runbooks/dead-letters.md"


@dg.asset(
    partitions_def=landed_batches,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[f"system_{system}" for system in SYSTEMS],
    pool=WRITER_POOL,
    group_name="ingest",
    kinds={"duckdb"},
    owners=OWNERS,
    description=(
        "Every line of a landed batch, append-only, deduplicated by event id (repeats are kept "
        "in `duplicate_events`), with its batch and arrival time. Table `raw_events`."
    ),
)
def raw_events(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    landing_zone: LandingZoneResource,
) -> dg.MaterializeResult:
    zone = landing_zone.zone()
    batches = [zone.locate(batch_id) for batch_id in context.partition_keys]
    landed = duplicates = 0
    with warehouse.connect() as con, transaction(con):
        for batch in batches:
            counts = ingest_batch(con, batch)
            if counts.already_ingested:
                context.log.info(f"batch {batch.batch_id} was already ingested; nothing changed")
            landed += counts.landed
            duplicates += counts.duplicates
    for batch in batches:  # only once their events are committed
        zone.archive(batch)
    return dg.MaterializeResult(
        metadata={
            "batches": len(context.partition_keys),
            "landed": landed,
            "duplicates": duplicates,
            "kept": landed - duplicates,
        }
    )


@dg.multi_asset(
    partitions_def=landed_batches,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WRITER_POOL,
    group_name="ingest",
    specs=[
        dg.AssetSpec(
            "validated_events",
            deps=[raw_events],
            kinds={"duckdb", "pandera"},
            owners=OWNERS,
            description=(
                "Events that passed the envelope and their (type, schema version) contract, "
                "upcast to the current version, one table per entity "
                "(`validated_customer_events`, `validated_order_events`): the event log."
            ),
        ),
        dg.AssetSpec(
            "dead_letters",
            deps=[raw_events],
            kinds={"duckdb"},
            owners=OWNERS,
            description=(
                "Events that failed validation: batch, line, event id, the contract, the rule and "
                "a reason naming the field and the fix, and the original payload. Table "
                "`dead_letters`."
            ),
            metadata={"runbook": dg.MetadataValue.path(RUNBOOK)},
        ),
    ],
)
def validate_events(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    counts = ValidationCounts()
    with warehouse.connect() as con, transaction(con):
        for batch_id in context.partition_keys:
            batch_counts = validate_batch(con, batch_id)
            if batch_counts.dead_lettered:
                context.log.warning(
                    f"batch {batch_id}: {batch_counts.dead_lettered} dead letters by rule "
                    f"{dict(batch_counts.by_rule)}; see {RUNBOOK}"
                )
            counts.add(batch_counts)
    yield dg.MaterializeResult(
        asset_key="validated_events",
        metadata={
            "validated": counts.validated,
            **{f"validated_{entity}": n for entity, n in sorted(counts.by_entity.items())},
        },
    )
    yield dg.MaterializeResult(
        asset_key="dead_letters",
        metadata={
            "dead_lettered": counts.dead_lettered,
            **{f"rule_{rule}": n for rule, n in sorted(counts.by_rule.items())},
        },
    )
