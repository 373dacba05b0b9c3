"""Reconciliation assets: a normalized snapshot per (system, entity), and the discrepancies.

The source systems themselves appear as external assets, so the lineage reads from each system
through its snapshot to the discrepancies, beside the event path (system -> raw events -> golden).

A system that cannot be read (unreachable, its table missing) fails its own snapshot, with the
operator's message, and records the failed attempt; the discrepancies then diff only the
snapshots whose latest attempt was taken, and say which systems were not checked and why. Dagster
does not run a step whose upstream step failed in the same run, so after a failed snapshot
`syncctl` runs the discrepancies (and what follows them) in a run of their own (runner.py).
"""

import time

import dagster as dg

from sync_assets import telemetry
from sync_assets.catalog.entities import Entity
from sync_assets.connectors.mappings import Lookup, Mapping, raw_name
from sync_assets.connectors.resource import SystemsResource
from sync_assets.deliver.assets import ReviewConfig
from sync_assets.deliver.corrections import require_complete_golden
from sync_assets.deliver.gate import UI_CONFIRM, enforce
from sync_assets.errors import SyncfabricError
from sync_assets.govern.lineage_events import emit_reconcile_lineage
from sync_assets.ingest.resources import LandingZoneResource
from sync_assets.jobs import RECONCILE_JOB
from sync_assets.operate import metrics
from sync_assets.operate.runbooks import runbook_url
from sync_assets.project import Project, System
from sync_assets.reconcile.adopt import land_adoption
from sync_assets.reconcile.comparisons import latest_run, record, record_skipped, rows_in
from sync_assets.reconcile.diff import diff_entity
from sync_assets.reconcile.missed import land_missed_events
from sync_assets.reconcile.snapshot import (
    current_snapshots,
    load_snapshot,
    record_attempt,
    snapshot_table,
)
from sync_assets.warehouse import WRITER_POOL, quote, scalar, transaction
from sync_assets.warehouse.resource import WarehouseResource

OWNERS = ["team:data-platform"]
RUNBOOK = "docs/runbooks/reconciliation.md"


def source_system(system: System) -> dg.AssetSpec:
    return dg.AssetSpec(
        f"system_{system.name}",
        group_name="sources",
        kinds={system.kind},
        owners=OWNERS,
        description=(
            f"The {system.name} system itself: {system.description} Its URL is in "
            f"{system.url_env} (the SQLite file systems/{system.name}.sqlite in the data folder "
            "when that is not set). It lands change events and is snapshotted for reconciliation."
        ),
    )


def snapshot_asset(mapping: Mapping, entity: Entity) -> dg.AssetsDefinition:
    columns = [
        dg.TableColumn(entity.key, "VARCHAR", description=f"Canonical key ({entity.key_pattern})")
    ]
    for field in mapping.fields:
        attribute = entity.attribute(field.attribute)
        source = raw_name(field.source)
        if not isinstance(field.source, Lookup):
            source = f"{mapping.table}.{source}"
        columns.append(
            dg.TableColumn(
                attribute.name,
                attribute.duckdb_type,
                description=f"{attribute.described} From {source} ({field.rule}).",
            )
        )

    @dg.asset(
        name=snapshot_table(mapping),
        deps=[f"system_{mapping.system}"],
        pool=WRITER_POOL,
        group_name="reconcile",
        kinds={"duckdb"},
        owners=OWNERS,
        tags={"system": mapping.system, "entity": mapping.entity},
        description=(
            f"{mapping.system}'s {mapping.entity} records ({mapping.table}), normalized to the "
            f"catalog's canonical form: {mapping.description} Read read-only, in chunks."
        ),
        metadata={"dagster/column_schema": dg.TableSchema(columns=columns)},
    )
    def _snapshot(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, systems: SystemsResource
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        try:
            with systems.rows(mapping) as batches, warehouse.connect() as con, transaction(con):
                rows = load_snapshot(con, mapping, batches)
                deleted = scalar(
                    con, f"SELECT count(*) FROM {quote(snapshot_table(mapping))} WHERE is_deleted"
                )
                record_attempt(con, mapping, context.run_id, rows=rows)
        except Exception as error:
            _record_failure(warehouse, mapping, context.run_id, error)
            raise
        context.log.info(f"{mapping.name}: {rows} rows snapshotted")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "deleted_rows": deleted,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )

    return _snapshot


def _record_failure(
    warehouse: WarehouseResource, mapping: Mapping, run_id: str, error: Exception
) -> None:
    """Record a failed snapshot, so no diff reads the old one as current. The operator's message
    (which names the system, the setting and the fix) is kept; any other error only by its class:
    a driver's text may quote the system's values."""
    if isinstance(error, dg.Failure) and error.description:
        why = error.description
    else:
        why = f"the snapshot failed with {type(error).__name__} (syncctl -v or the run's log says where)"
    try:
        with warehouse.connect() as con:
            record_attempt(con, mapping, run_id, error=why)
    except Exception:  # the warehouse itself is the problem: the snapshot's own error says it
        pass


def build_discrepancies(project: Project) -> dg.AssetsDefinition:
    """`discrepancies`, downstream of every snapshot and golden record of the project."""
    mappings = list(project.mappings.values())

    @dg.asset(
        deps=[
            *(snapshot_table(mapping) for mapping in mappings),
            *(entity.golden_table for entity in project.entities.values()),
        ],
        pool=WRITER_POOL,
        group_name="reconcile",
        kinds={"duckdb"},
        owners=OWNERS,
        description=(
            "Every divergence, once: a system against the golden records (missing, extra, "
            "mismatch, with the other systems' values of the attribute as its views) or, where no "
            "mismatch explains it, two systems against each other (divergence); with who is "
            "right: missed_event (the owner's value must enter the golden record) or drift (the "
            "system must be corrected). Table `discrepancies`, appended per run."
        ),
        metadata={"runbook": dg.MetadataValue.url(runbook_url(RUNBOOK))},
    )
    def discrepancies(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        run_id = context.run_id
        totals: dict[str, int] = {}
        with (
            telemetry.span("syncfabric.reconcile", {"syncfabric.run_id": run_id}) as span,
            warehouse.connect() as con,
            transaction(con),
        ):
            current, skipped = current_snapshots(con, mappings)
            record_skipped(con, run_id, skipped)
            results = []
            for entity in project.entities.values():
                taken = {m.system: m for m in current if m.entity == entity.name}
                for result in diff_entity(con, list(taken.values()), run_id):
                    compared = [taken[s] for s in (result.system, result.other_system) if s]
                    record(con, run_id, result, rows_in(con, *compared))
                    results.append(result)
            outcome = metrics.reconcile_metrics(con, run_id)
            metrics.record(con, "reconcile", run_id, outcome)
            span.set_attributes(
                {f"syncfabric.{k}": v for k, v in metrics.metadata(outcome).items()}
            )
        for result in results:
            for kind, count in result.counts.items():
                totals[kind] = totals.get(kind, 0) + count
        for s in skipped:
            context.log.warning(f"not checked: {s.system}'s {s.entity} records: {s.reason}")
        _send_lineage(context, project)
        return dg.MaterializeResult(
            metadata={
                **metrics.metadata(outcome),
                "discrepancies": sum(totals.values()),
                **totals,
                "run_id": run_id,
                "snapshots_compared": ", ".join(sorted({m.name for m in current})) or "none",
                "snapshots_skipped": len(skipped),
                **(
                    {
                        "skipped": dg.MetadataValue.json(
                            {f"{s.system}_{s.entity}": s.reason for s in skipped}
                        )
                    }
                    if skipped
                    else {}
                ),
            }
        )

    return discrepancies


def _send_lineage(context: dg.AssetExecutionContext, project: Project) -> None:
    """The run's column lineage to OpenLineage, if OPENLINEAGE_URL is set; a failure to send is
    a warning (named by its class: the error's text may hold the endpoint's address)."""
    job = context.job_name
    try:
        emit_reconcile_lineage(project, context.run_id, job, with_corrections=job == RECONCILE_JOB)
    except Exception as error:
        context.log.warning(f"OpenLineage: the run's lineage was not sent ({type(error).__name__})")


@dg.asset(
    deps=["discrepancies"],
    pool=WRITER_POOL,
    group_name="reconcile",
    kinds={"duckdb"},
    owners=OWNERS,
    description=(
        "Lands, in each owner's landing folder, the events it missed sending: a `reconciled` "
        "event for an owned attribute that differs from the golden record, a `created` or "
        "`deleted` one for the lifecycle. The landed-batches sensor ingests them like any batch. "
        "Like `corrections`: nothing while a batch is not applied (the diff read incomplete "
        "golden records), and past an ERROR check only with `i_have_reviewed`."
    ),
    metadata={"runbook": dg.MetadataValue.url(runbook_url(RUNBOOK))},
)
def missed_events(
    context: dg.AssetExecutionContext,
    config: ReviewConfig,
    warehouse: WarehouseResource,
    landing_zone: LandingZoneResource,
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        run_id = latest_run(con)
        try:
            require_complete_golden(con)
            if run_id is not None:
                enforce(con, run_id, config.i_have_reviewed, UI_CONFIRM)
        except SyncfabricError as refused:
            raise dg.Failure(
                refused.message, metadata={"runbook": dg.MetadataValue.url(runbook_url(RUNBOOK))}
            ) from None
        landed = land_missed_events(con, landing_zone.zone(), run_id) if run_id else {}
    if landed:
        context.log.info(f"landed missed events by system: {landed}")
    return dg.MaterializeResult(
        metadata={
            "landed": sum(landed.values()),
            **{f"landed_for_{s}": n for s, n in landed.items()},
        }
    )


def build_adoption(project: Project) -> dg.AssetsDefinition:
    """`adoption`, downstream of every snapshot of the project."""

    @dg.asset(
        deps=[snapshot_table(mapping) for mapping in project.mappings.values()],
        pool=WRITER_POOL,
        group_name="reconcile",
        kinds={"duckdb"},
        owners=OWNERS,
        description=(
            "Adopts a landscape that already exists: for an entity whose golden records are empty "
            "(no event for it was ever applied), lands the owners' current rows as their events (a "
            "`created` or `deleted` from the lifecycle owner, a `reconciled` from each attribute's "
            "owner), for the landed-batches sensor to ingest like any batch; rows only non-owners "
            "of the lifecycle hold are counted as orphans and left alone. Nothing once the golden "
            "records hold anything, or while a batch is not applied. `syncctl run` adopts before "
            "it reconciles."
        ),
        metadata={"runbook": dg.MetadataValue.url(runbook_url(RUNBOOK))},
    )
    def adoption(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        landing_zone: LandingZoneResource,
    ) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            adopted = land_adoption(con, landing_zone.zone(), context.run_id)
        if adopted.waiting_for:
            context.log.info(f"adoption waits for {len(adopted.waiting_for)} batch(es) not applied")
        for name, why in adopted.not_adopted.items():
            context.log.warning(f"{name} not adopted yet: {why}")
        if adopted.entities:
            context.log.info(
                f"adopted {', '.join(adopted.entities)}: {adopted.landed} events landed; orphans "
                f"left alone: {sum(adopted.orphans.values())}"
            )
        plain = adopted.as_dict()
        return dg.MaterializeResult(
            metadata={
                "entities": dg.MetadataValue.json(adopted.entities),
                "landed": adopted.landed,
                "events": dg.MetadataValue.json(plain["events"]),
                "orphans": sum(adopted.orphans.values()),
                "orphans_by_system": dg.MetadataValue.json(plain["orphans"]),
                "batches": dg.MetadataValue.json(adopted.batches),
                "waiting_for_batches": len(adopted.waiting_for),
                "not_adopted": dg.MetadataValue.json(adopted.not_adopted),
            }
        )

    return adoption
