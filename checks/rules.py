"""Business-rule checks: the catalog's structured rules over the golden records and each snapshot.

Each entity's rules (catalog/<entity>.yaml `business_rules:`, sync_assets/catalog/rules.py) run as
one great-expectations suite per asset: over the live golden records (beside `golden_<entity>`)
and over each system's snapshot of the entity (beside `snapshot_<system>_<entity>`), where only
the rules whose attributes that system holds apply. Every rule is a check of its own,
`rule_<name>`, failing with the severity the catalog gives it.

Not blocking, at either severity. Like the golden records' completeness check, a broken rule
describes the data, not a step that went wrong: it must show, at the catalog's severity, in the
asset's history and the UI, but it must not stop the ledger after the golden records, nor the
reconciliation after a snapshot, which is what finds and corrects the systems' drift. The blocking
checks are those whose failure makes the next step wrong (counts that do not add up, mass drift).

The metadata carries, per rule, the rows checked, the rows that broke it and a sample of them:
their keys and the values the rule read, PII as the warehouse's keyed fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dagster as dg

from sync_assets.catalog.entities import Entity
from sync_assets.catalog.expectations import (
    LIVE_GOLDEN,
    LIVE_SNAPSHOT,
    RuleResult,
    check_records,
    snapshot_rules,
)
from sync_assets.catalog.rules import Rule
from sync_assets.connectors.mappings import Mapping
from sync_assets.project import Project
from sync_assets.reconcile.snapshot import snapshot_table
from sync_assets.warehouse import WRITER_POOL, scalar
from sync_assets.warehouse.resource import WarehouseResource

CATALOG_DOC = "docs/project.md"


def _specs(asset: str, rules: Sequence[Rule], records: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            rule.check_name,
            asset=asset,
            blocking=False,
            description=(
                f"Business rule {rule.name} ({rule.severity}) over {records}: {rule.describe()}."
                + (f" {rule.description}" if rule.description else "")
            ),
        )
        for rule in rules
    ]


def _result(entity: Entity, found: RuleResult) -> dg.AssetCheckResult:
    rule = found.rule
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, "string") for name in (entity.key, *rule.attributes)]
    )
    records = [
        dg.TableRecord(
            {entity.key: sample.key or "", **{k: v or "" for k, v in sample.values.items()}}
        )
        for sample in found.samples
    ]
    return dg.AssetCheckResult(
        check_name=rule.check_name,
        passed=found.passed,
        severity=(
            dg.AssetCheckSeverity.ERROR if rule.severity == "error" else dg.AssetCheckSeverity.WARN
        ),
        description=f"{found.unexpected} of {found.rows_checked} rows break: {rule.describe()}",
        metadata={
            "unexpected": found.unexpected,
            "rows_checked": found.rows_checked,
            "rule": rule.describe(),
            "sample": dg.MetadataValue.table(records, schema=schema),
            "catalog": dg.MetadataValue.path(CATALOG_DOC),
        },
    )


def _results(entity: Entity, found: list[RuleResult]) -> Iterator[dg.AssetCheckResult]:
    for result in found:
        yield _result(entity, result)


def golden_rule_checks(project: Project) -> list[dg.AssetChecksDefinition]:
    """Per entity with structured rules: its rules over its live golden records."""
    return [_golden(project, entity) for entity in project.entities.values() if entity.rules]


def _golden(project: Project, entity: Entity) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        name=f"{entity.golden_table}_business_rules",
        specs=_specs(entity.golden_table, entity.rules, f"the live golden {entity.name} records"),
        pool=WRITER_POOL,
        can_subset=False,
        description=f"The catalog's business rules over the live golden {entity.name} records.",
    )
    def _check(warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
        with warehouse.connect() as con:
            found = check_records(
                con,
                entity,
                entity.golden_table,
                entity.rules,
                live=LIVE_GOLDEN,
                entities=project.entities,
            )
        yield from _results(entity, found)

    return _check


def snapshot_rule_checks(project: Project) -> list[dg.AssetChecksDefinition]:
    """Per snapshot: the rules of its entity whose attributes the system holds."""
    return [
        _snapshot(project, mapping)
        for mapping in project.mappings.values()
        if snapshot_rules(project.entity(mapping.entity), mapping)
    ]


def _snapshot(project: Project, mapping: Mapping) -> dg.AssetChecksDefinition:
    entity = project.entity(mapping.entity)
    rules = snapshot_rules(entity, mapping)
    table = snapshot_table(mapping)

    @dg.multi_asset_check(
        name=f"{table}_business_rules",
        specs=_specs(table, rules, f"{mapping.system}'s {entity.name} records"),
        pool=WRITER_POOL,
        can_subset=False,
        description=(
            f"The catalog's business rules over {mapping.system}'s {entity.name} records, those "
            "whose attributes it holds."
        ),
    )
    def _check(warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
        with warehouse.connect() as con:
            exists = scalar(
                con,
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
                [table],
            )
            if not exists:
                raise dg.Failure(
                    f"no snapshot of {mapping.system}'s {entity.name} records yet: "
                    f"materialize {table} first"
                )
            found = check_records(
                con, entity, table, rules, live=LIVE_SNAPSHOT, entities=project.entities
            )
        yield from _results(entity, found)

    return _check
