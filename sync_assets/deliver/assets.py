"""The `corrections` asset: the latest reconciliation's drift, as correction events to deliver.

Downstream of `discrepancies`, so a reconciliation check failing at ERROR (too much drift to be
plausible: a broken mapping, a system restored from an old backup) stops automatic corrections;
an operator who has looked materializes `corrections` by hand (`syncctl deliver --emit`).
"""

import dagster as dg

from sync_assets.deliver.corrections import emit_corrections
from sync_assets.reconcile.comparisons import latest_run
from sync_assets.resources import WarehouseResource
from sync_assets.warehouse import WRITER_POOL, scalar, transaction

OWNERS = ["team:data-platform"]
RUNBOOK = "docs/runbooks/delivery.md"


@dg.asset(
    deps=["discrepancies"],
    pool=WRITER_POOL,
    group_name="deliver",
    kinds={"duckdb"},
    owners=OWNERS,
    description=(
        "One correction event per drifted (system, entity, key) of the latest reconciliation: the "
        "golden values the system holds but does not own, the golden version, an idempotency key, "
        "the causing discrepancies and the correlation id. Table `corrections`, an outbox the "
        "`deliver_corrections` job drains."
    ),
    metadata={"runbook": dg.MetadataValue.path(RUNBOOK)},
)
def corrections(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    with warehouse.connect() as con, transaction(con):
        run_id = latest_run(con)
        if run_id is None:
            raise dg.Failure("no reconciliation has run yet: materialize `discrepancies` first")
        emitted = emit_corrections(con, run_id)
        pending = scalar(con, "SELECT count(*) FROM corrections WHERE status = 'pending'")
    context.log.info(
        f"{emitted.emitted} correction(s) emitted {emitted.by_target}; {emitted.already_open} "
        f"already open; {pending} pending delivery"
    )
    return dg.MaterializeResult(
        metadata={
            "emitted": emitted.emitted,
            "already_open": emitted.already_open,
            "pending": pending,
            "reconcile_run_id": run_id,
            **{f"emitted_to_{target}": n for target, n in sorted(emitted.by_target.items())},
        }
    )
