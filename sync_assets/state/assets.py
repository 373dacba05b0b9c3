"""State assets: golden records per entity, and the batch ledger that proves nothing was lost."""

import dagster as dg

from sync_assets.catalog.entities import ENTITIES, Entity
from sync_assets.ledger import golden_states, summarize, unbalanced_batches
from sync_assets.resources import WarehouseResource
from sync_assets.state.apply import ApplyCounts, apply_pending_batches
from sync_assets.warehouse import WRITER_POOL, transaction

OWNERS = ["team:data-platform"]


def column_schema(entity: Entity) -> dg.TableSchema:
    """The golden table's columns as the catalog describes them, for the Dagster catalog."""
    columns = [
        dg.TableColumn(entity.key, "VARCHAR", description=f"Canonical key ({entity.key_pattern})")
    ]
    for attribute in entity.attributes:
        pii = " PII." if attribute.pii else ""
        columns.append(
            dg.TableColumn(
                attribute.name,
                attribute.duckdb_type,
                description=f"{attribute.description} Owned by {attribute.owner}.{pii}",
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


@dg.multi_asset(
    specs=[golden_spec(entity) for entity in ENTITIES.values()],
    pool=WRITER_POOL,
    group_name="state",
)
def golden_records(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Apply every validated batch not yet applied, in one transaction, and check the ledger."""
    with warehouse.connect() as con, transaction(con):
        applied = apply_pending_batches(con)
        broken = unbalanced_batches(con)
        if broken:
            raise dg.Failure(
                description="events lost or double-counted: landed <> applied + duplicates + "
                "dead_lettered",
                metadata={"batches": dg.MetadataValue.json([list(row) for row in broken])},
            )
        states = golden_states(con)
    context.log.info(f"applied {len(applied)} batch(es): {sorted(applied)}")
    for entity in ENTITIES.values():
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


def _totals(entity: str, applied: dict[str, dict[str, ApplyCounts]]) -> ApplyCounts:
    per_batch = [counts[entity] for counts in applied.values()]
    return ApplyCounts(
        applied=sum(c.applied for c in per_batch),
        conflicts=sum(c.conflicts for c in per_batch),
        superseded=sum(c.superseded for c in per_batch),
    )


@dg.asset(
    deps=[entity.golden_table for entity in ENTITIES.values()],
    pool=WRITER_POOL,
    group_name="state",
    kinds={"duckdb"},
    owners=OWNERS,
    description=(
        "The batch ledger (table `batches`): per landed batch, events landed, applied, "
        "duplicates and dead-lettered. Its check proves every event is accounted for."
    ),
)
def batch_ledger(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        summary = summarize(con)
    return dg.MaterializeResult(
        metadata={
            "batches": summary.batches,
            "landed": summary.landed,
            "applied": summary.applied,
            "duplicates": summary.duplicates,
            "dead_lettered": summary.dead_lettered,
            "pending": summary.pending,
            "conflicts": summary.conflicts,
        }
    )
