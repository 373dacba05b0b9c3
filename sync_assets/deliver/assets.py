"""The `corrections` asset: the latest reconciliation's drift, as correction events to deliver.

Downstream of `discrepancies`, whose checks are blocking: a reconciliation check failing at ERROR
(too much drift to be plausible: a broken mapping, a system restored from an old backup) stops
automatic corrections. Materialized by hand past such a check, it emits only with the run config
`i_have_reviewed` naming exactly the number of corrections (sync_assets/deliver/gate.py). Whoever
launches it, it emits nothing while a landed batch is not applied: golden records missing events
would make every system look drifted.
"""

import dagster as dg

from sync_assets.deliver.corrections import emit_corrections, require_complete_golden
from sync_assets.deliver.gate import UI_CONFIRM, enforce
from sync_assets.errors import SyncfabricError
from sync_assets.govern.lineage import destination_asset
from sync_assets.operate import metrics
from sync_assets.operate.runbooks import runbook_url
from sync_assets.project import System, current
from sync_assets.reconcile.comparisons import latest_run
from sync_assets.warehouse import WRITER_POOL, scalar, transaction
from sync_assets.warehouse.resource import WarehouseResource

OWNERS = ["team:data-platform"]
RUNBOOK = "docs/runbooks/delivery.md"


class ReviewConfig(dg.Config):
    i_have_reviewed: int | None = None
    """Past a reconciliation check failing at ERROR: the number of corrections reviewed, which
    must be exactly the number that would be emitted (`syncctl check --json` lists them)."""


@dg.asset(
    deps=["discrepancies"],
    pool=WRITER_POOL,
    group_name="deliver",
    kinds={"duckdb"},
    owners=OWNERS,
    description=(
        "One correction event per drifted (system, entity, key) of the latest reconciliation: the "
        "golden values the system holds but does not own, the golden version, an idempotency key, "
        "the causing discrepancies, the correlation id and what the reconciliation saw of the "
        "record. Table `corrections`, an outbox the `deliver_corrections` job drains. Emits "
        "nothing while a batch is not applied; withholds records with an owner's missed event; "
        "past an ERROR check, needs `i_have_reviewed` naming the count."
    ),
    metadata={"runbook": dg.MetadataValue.url(runbook_url(RUNBOOK))},
)
def corrections(
    context: dg.AssetExecutionContext, config: ReviewConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    with warehouse.connect() as con, transaction(con):
        run_id = latest_run(con)
        if run_id is None:
            raise dg.Failure("no reconciliation has run yet: materialize `discrepancies` first")
        try:
            require_complete_golden(con)
            enforce(con, run_id, config.i_have_reviewed, UI_CONFIRM)
            emitted = emit_corrections(con, run_id)
        except SyncfabricError as refused:
            raise dg.Failure(
                refused.message,
                metadata={
                    "reconcile_run_id": run_id,
                    "runbook": dg.MetadataValue.url(runbook_url(RUNBOOK)),
                },
            ) from None
        pending = scalar(con, "SELECT count(*) FROM corrections WHERE status = 'pending'")
        corrected = [
            metrics.Metric("corrected", system, emitted.by_target.get(system, 0))
            for system in current().system_names
        ]
        metrics.record(con, "correct", run_id, corrected)
    context.log.info(
        f"{emitted.emitted} correction(s) emitted {emitted.by_target}; {emitted.already_open} "
        f"already open; {emitted.withheld} withheld until their owner's missed event is "
        f"absorbed; {pending} pending delivery"
    )
    return dg.MaterializeResult(
        metadata={
            "emitted": emitted.emitted,
            "already_open": emitted.already_open,
            "withheld": emitted.withheld,
            "pending": pending,
            "reconcile_run_id": run_id,
            **{f"emitted_to_{target}": n for target, n in sorted(emitted.by_target.items())},
        }
    )


def delivered_key(system: str) -> dg.AssetKey:
    return dg.AssetKey.from_user_string(destination_asset(system))


def delivered_spec(system: System) -> dg.AssetSpec:
    """A system as a destination of corrections (`delivered/<system>`), so the asset graph goes
    on past the outbox. External: the `deliver_corrections` job writes to the system and reports
    it (a materialization when it wrote, an observation when it only checked)."""
    return dg.AssetSpec(
        delivered_key(system.name),
        deps=["corrections"],
        group_name="deliver",
        kinds={system.kind},
        owners=OWNERS,
        tags={"system": system.name},
        description=(
            f"The {system.name} system as corrections reach it: the columns it keeps of attributes "
            "it does not own, written back by the `deliver_corrections` job (SQL upserts or HTTP). "
            "Each delivery run that sends it corrections reports here how many were delivered, "
            "duplicates, superseded, changed since, already in sync or dead-lettered."
        ),
        metadata={"runbook": dg.MetadataValue.url(runbook_url(RUNBOOK))},
    )
