"""Checks beside the `corrections` asset: no correction is held in the delivery dead-letter table.

Not blocking: a held dead letter must not stop the next reconciliation, which is what shows
whether the systems still disagree. The failed delivery run is the alert; this check keeps the
state visible in the asset's history until the dead letters are redriven.
"""

import dagster as dg

from sync_assets.deliver.outbox import open_dead_letters
from sync_assets.operate.runbooks import runbook_url
from sync_assets.warehouse import WRITER_POOL
from sync_assets.warehouse.resource import WarehouseResource

RUNBOOK = "docs/runbooks/delivery.md"


@dg.asset_check(
    asset="corrections",
    name="no_dead_letters_held",
    pool=WRITER_POOL,
    description="Every correction was delivered, or its dead letter redriven.",
)
def no_dead_letters_held(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        held = open_dead_letters(con)
    return dg.AssetCheckResult(
        passed=not held,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "held": sum(held.values()),
            **{f"held_for_{system}": n for system, n in sorted(held.items())},
            "runbook": dg.MetadataValue.url(runbook_url(RUNBOOK)),
        },
    )
