"""The `redrive_ingest_dead_letters` job: send held ingest dead letters through the pipeline again.

Run it from the UI (Launchpad: name event ids or `<batch>:<line>` in `refs`, or a `rule`) or with
`syncctl dead-letters --ingest --redrive ...`. It lands the original lines as a new batch per
system (see sync_assets/ingest/redrive.py); the landed-batches sensor or `syncctl run` ingests it.
"""

import dagster as dg

from sync_assets.ingest.redrive import choose, redrive
from sync_assets.ingest.resources import LandingZoneResource
from sync_assets.operate.runbooks import runbook_url
from sync_assets.warehouse import WRITER_POOL, transaction
from sync_assets.warehouse.resource import WarehouseResource

RUNBOOK = "docs/runbooks/dead-letters.md"


class RedriveConfig(dg.Config):
    refs: list[str] = []
    """Event ids, or `<batch id>:<line>`, of held dead letters."""
    rule: str | None = None
    """Every held dead letter of this rule (with `refs`: only those of this rule)."""


@dg.op(
    pool=WRITER_POOL,
    description=(
        "Lands the original lines of the chosen held ingest dead letters as a new batch per "
        "system, and marks them redriven by it."
    ),
)
def redrive_dead_letters(
    context: dg.OpExecutionContext,
    config: RedriveConfig,
    warehouse: WarehouseResource,
    landing_zone: LandingZoneResource,
) -> dg.Output[dict]:
    with warehouse.connect() as con, transaction(con):
        letters = choose(con, config.refs, config.rule)
        result = redrive(con, landing_zone.zone(), letters)
    context.log.info(f"redrove {result.events} dead letter(s) into {result.batches}")
    summary = {"events": result.events, "batches": result.batches}
    return dg.Output(
        summary,
        metadata={
            "events": result.events,
            "batches": dg.MetadataValue.json(result.batches),
            "runbook": dg.MetadataValue.url(runbook_url(RUNBOOK)),
        },
    )


@dg.job(
    description="Sends held ingest dead letters through validation again, once what refused "
    "them is fixed.",
    tags={"syncfabric/flow": "ingest"},
)
def redrive_ingest_dead_letters() -> None:
    redrive_dead_letters()
