"""Reconciliation checks beside the `discrepancies` asset: one per system, one per pair of systems.

Each passes at zero discrepancies, warns below its threshold and errs above it (see
sync_assets/reconcile/policy.py). They are blocking: an ERROR stops whatever runs downstream of the
discrepancies (the corrections). PII values are fingerprinted in the sample shown here.

A comparison the run could not make (a system's snapshot failed) fails its check at WARN, "not
checked" with why: never a pass, and not an ERROR that would stop the corrections of the systems
that were compared.
"""

import dagster as dg

from sync_assets.operate.runbooks import runbook_url
from sync_assets.project import Project, current
from sync_assets.reconcile.comparisons import (
    Comparison,
    check_name,
    comparisons,
    found,
    latest_run,
    not_checked,
    skipped,
)
from sync_assets.reconcile.policy import masked_row, verdict
from sync_assets.warehouse import WRITER_POOL
from sync_assets.warehouse.resource import WarehouseResource
from sync_assets.warehouse.tables import KINDS

RUNBOOK = "docs/runbooks/reconciliation.md"
SAMPLE_SIZE = 20

SAMPLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(name, "string")
        for name in (
            "kind",
            "resolution",
            "system",
            "entity_key",
            "attribute",
            "expected",
            "actual",
            "views",
        )
    ]
)


def _check_specs(project: Project) -> list[dg.AssetCheckSpec]:
    names = [
        (check_name(m.entity, m.system), f"{m.system} against the golden {m.entity} records")
        for m in project.mappings.values()
    ]
    for entity in project.entities.values():
        for left, right in project.comparable_pairs(entity.name):
            first, second = sorted((left.system, right.system))
            names.append(
                (
                    check_name(entity.name, first, second),
                    f"{first} against {second} on the {entity.name} attributes both hold",
                )
            )
    return [
        dg.AssetCheckSpec(name, asset="discrepancies", blocking=True, description=description)
        for name, description in names
    ]


def check_result(comparison: Comparison, sample: list[dict[str, object]]) -> dg.AssetCheckResult:
    thresholds = current().settings.thresholds
    outcome = verdict(comparison.discrepancies, comparison.rows_compared, thresholds)
    records = [
        dg.TableRecord({k: _text(v) for k, v in masked_row(row).items() if k in _SAMPLE_COLUMNS})
        for row in sample
    ]
    return dg.AssetCheckResult(
        check_name=comparison.check_name,
        passed=outcome == "pass",
        severity=dg.AssetCheckSeverity.ERROR if outcome == "error" else dg.AssetCheckSeverity.WARN,
        description=(
            f"{comparison.discrepancies} discrepancies in {comparison.rows_compared} rows "
            f"({outcome}; ERROR above {thresholds.error_above(comparison.rows_compared)})"
        ),
        metadata={
            "discrepancies": comparison.discrepancies,
            "rows_compared": comparison.rows_compared,
            **comparison.counts,
            "sample": dg.MetadataValue.table(records, schema=SAMPLE_SCHEMA),
            "runbook": dg.MetadataValue.url(runbook_url(RUNBOOK)),
        },
    )


def not_checked_result(name: str, reason: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"not checked: {reason}",
        metadata={
            "not_checked": reason,
            "discrepancies": 0,
            "rows_compared": 0,
            **{kind: 0 for kind in KINDS},
            "runbook": dg.MetadataValue.url(runbook_url(RUNBOOK)),
        },
    )


_SAMPLE_COLUMNS = {column.name for column in SAMPLE_SCHEMA.columns}


def _text(value: object) -> str:
    if isinstance(value, dict):  # views: the other systems' values
        return ", ".join(f"{system}={_text(v) or 'NULL'}" for system, v in value.items())
    return "" if value is None else str(value)


def build_reconciliation_checks(project: Project) -> dg.AssetChecksDefinition:
    """One check per system and per pair of systems holding an entity, on `discrepancies`."""

    @dg.multi_asset_check(
        specs=_check_specs(project),
        pool=WRITER_POOL,
        description="Judges the latest reconciliation run, per system and per pair of systems.",
    )
    def reconciliation_checks(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            this_run = context.run.run_id
            here = comparisons(con, this_run) or skipped(con, this_run)
            run_id = this_run if here else latest_run(con)
            if run_id is None:
                raise dg.Failure("no reconciliation has run yet: materialize `discrepancies` first")
            for comparison in comparisons(con, run_id):
                sample = found(con, run_id, comparison, limit=SAMPLE_SIZE)
                yield check_result(comparison, sample)
            for name, reason in not_checked(skipped(con, run_id)).items():
                yield not_checked_result(name, reason)

    return reconciliation_checks
