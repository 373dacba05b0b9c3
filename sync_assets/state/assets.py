"""State assets: golden records per entity, and the batch ledger that proves nothing was lost."""

import dagster as dg

from sync_assets import ledger
from sync_assets.catalog.entities import Entity
from sync_assets.ledger import golden_states, summarize
from sync_assets.operate import metrics
from sync_assets.project import Project
from sync_assets.state.apply import ApplyCounts, apply_batches
from sync_assets.warehouse import WRITER_POOL
from sync_assets.warehouse.resource import WarehouseResource

OWNERS = ["team:data-platform"]


def column_schema(entity: Entity) -> dg.TableSchema:
    """The golden table's columns as the catalog describes them, for the Dagster catalog."""
    columns = [
        dg.TableColumn(entity.key, "VARCHAR", description=f"Canonical key ({entity.key_pattern})")
    ]
    for attribute in entity.attributes:
        columns.append(
            dg.TableColumn(
                attribute.name,
                attribute.duckdb_type,
                description=attribute.described,
                tags={"owner": attribute.owner, **({"pii": "true"} if attribute.pii else {})},
            )
        )
    columns.append(
        dg.TableColumn(
            "lifecycle_state",
            "VARCHAR",
            description=f"live or deleted (tombstone), set by {entity.lifecycle_owner} only",
        )
    )
    return dg.TableSchema(columns=columns)


def golden_spec(entity: Entity) -> dg.AssetSpec:
    return dg.AssetSpec(
        entity.golden_table,
        deps=["validated_events"],
        kinds={"duckdb"},
        owners=OWNERS,
        tags={"entity": entity.name},
        description=(
            f"The golden record of each {entity.name}: {entity.description} Each attribute holds "
            "the newest value from the system that owns it (event time, then event id); deletes "
            f"are soft (tombstones). Table `{entity.golden_table}`."
        ),
        metadata={"dagster/column_schema": column_schema(entity)},
    )


def build_golden_records(project: Project) -> dg.AssetsDefinition:
    """One golden table per catalog entity, applied together."""

    @dg.multi_asset(
        specs=[golden_spec(entity) for entity in project.entities.values()],
        pool=WRITER_POOL,
        group_name="state",
    )
    def golden_records(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        """Apply every validated batch not yet applied, in one transaction; a batch that cannot be
        applied (its counts would not add up, say) is left validated, its failure recorded, and the
        blocking ledger check fails the run."""
        with warehouse.connect() as con:
            step = ledger.run_step(con, "apply", ledger.in_state(con, "validated"), apply_batches)
            states = golden_states(con)
        applied = step.done
        context.log.info(f"applied {len(applied)} batch(es): {sorted(applied)}")
        for batch_id, error in step.failed.items():
            context.log.error(
                f"batch {batch_id} failed to apply, left validated: {ledger.error_kind(error)} (syncctl doctor tells more)"
            )
        for entity in project.entities.values():
            totals = _totals(entity.name, applied)
            yield dg.MaterializeResult(
                asset_key=entity.golden_table,
                metadata={
                    **states[entity.name],
                    "dagster/row_count": sum(states[entity.name].values()),
                    "applied": totals.applied,
                    "conflicts": totals.conflicts,
                    "superseded": totals.superseded,
                    "batches_applied": len(applied),
                },
            )

    return golden_records


def _totals(entity: str, applied: dict[str, dict[str, ApplyCounts]]) -> ApplyCounts:
    per_batch = [counts[entity] for counts in applied.values()]
    return ApplyCounts(
        applied=sum(c.applied for c in per_batch),
        conflicts=sum(c.conflicts for c in per_batch),
        superseded=sum(c.superseded for c in per_batch),
    )


def build_batch_ledger(project: Project) -> dg.AssetsDefinition:
    """The batch ledger, after every golden table."""

    @dg.asset(
        deps=[entity.golden_table for entity in project.entities.values()],
        pool=WRITER_POOL,
        group_name="state",
        kinds={"duckdb"},
        owners=OWNERS,
        description=(
            "The batch ledger (table `batches`): per landed batch, its state (landed, raw, "
            "validated, applied), events landed, applied, duplicates and dead-lettered, and the "
            "last failure of a batch that stopped. Its check proves every event is accounted for."
        ),
    )
    def batch_ledger(warehouse: WarehouseResource) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            summary = summarize(con)
            measured = []
            for batch_id in metrics.unmeasured_batches(con):
                batch_metrics = metrics.ingest_metrics(con, batch_id, project)
                metrics.record(con, "ingest", batch_id, batch_metrics)
                measured += batch_metrics
        return dg.MaterializeResult(
            metadata={
                **metrics.metadata(measured),  # the batches applied since the last measure
                "batches": summary.batches,
                "landed": summary.landed,
                "applied": summary.applied,
                "duplicates": summary.duplicates,
                "dead_lettered": summary.dead_lettered,
                "pending": summary.pending,
                "unfinished_batches": len(summary.unfinished_batches),
                "failed_batches": len(summary.failed_batches),
                "dead_letters_held": summary.dead_letters_held,
                "conflicts": summary.conflicts,
            }
        )

    return batch_ledger
