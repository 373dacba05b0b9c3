"""Jobs: what one run does."""

import dagster as dg

from sync_assets.ingest.assets import landed_batches

INGEST_BATCH_JOB = "ingest_batch"

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
