"""Checks beside the golden records: a live record has every attribute the catalog requires."""

import dagster as dg

from sync_assets.catalog.entities import Entity
from sync_assets.operate.runbooks import runbook_url
from sync_assets.project import Project
from sync_assets.warehouse import WRITER_POOL, quote, scalar
from sync_assets.warehouse.resource import WarehouseResource

RUNBOOK = "docs/runbooks/incomplete-golden-records.md"


def required_attributes_check(entity: Entity) -> dg.AssetChecksDefinition:
    required = [a.name for a in entity.attributes if a.required]

    @dg.asset_check(
        asset=entity.golden_table,
        name="live_records_complete",
        pool=WRITER_POOL,
        description=(
            f"Every live {entity.name} has its required attributes ({', '.join(required)}); a "
            "gap means a create event was lost or dead-lettered."
        ),
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        missing = " OR ".join(f"{quote(name)} IS NULL" for name in required)
        with warehouse.connect() as con:
            incomplete = scalar(
                con,
                f"SELECT count(*) FROM {quote(entity.golden_table)} "
                f"WHERE lifecycle_state = 'live' AND ({missing})",
            )
        return dg.AssetCheckResult(
            passed=incomplete == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "incomplete_live_records": incomplete,
                "runbook": dg.MetadataValue.url(runbook_url(RUNBOOK)),
            },
        )

    return _check


def golden_checks(project: Project) -> list[dg.AssetChecksDefinition]:
    return [required_attributes_check(entity) for entity in project.entities.values()]
