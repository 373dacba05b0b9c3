"""The column lineage (catalog/lineage.py) as Dagster metadata: `dagster/column_lineage` on every
asset a lineage edge ends in, and `dagster/column_schema` on those whose columns no other stage
declares (the systems, the validated events, the corrections, the destinations).

Applied once, to the assembled assets (`with_column_lineage` in definitions.py), so the stages'
asset definitions stay as they are and no column is described twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from sync_assets.catalog.lineage import Column, Lineage
from sync_assets.project.model import Project

LINEAGE_KEY = "dagster/column_lineage"
SCHEMA_KEY = "dagster/column_schema"


def column_lineage(lineage: Lineage, asset: str) -> dg.TableColumnLineage | None:
    """Column of `asset` -> the columns it derives from; None when it derives from none."""
    deps = lineage.deps_of(asset)
    if not deps:
        return None
    return dg.TableColumnLineage(
        deps_by_column={
            column: [
                dg.TableColumnDep(
                    asset_key=dg.AssetKey.from_user_string(source.asset),
                    column_name=source.column,
                )
                for source in sources
            ]
            for column, sources in deps.items()
        }
    )


def column_schema(project: Project, lineage: Lineage, asset: str) -> dg.TableSchema | None:
    """The columns of `asset` the lineage names, described from the catalog and the mappings."""
    columns: dict[str, list[Column]] = {}
    for column in lineage.columns_of(asset):
        columns.setdefault(column.column, []).append(column)
    if not columns:
        return None
    return dg.TableSchema(
        columns=[_table_column(project, lineage, name, found) for name, found in columns.items()]
    )


def _table_column(
    project: Project, lineage: Lineage, name: str, columns: list[Column]
) -> dg.TableColumn:
    first = columns[0]
    if first.stage == "system":
        how = {e.source: e.how for e in lineage.edges if e.target.stage == "snapshot"}
        held = "; ".join(f"{c.holds}, {how[c]}" for c in columns)
        return dg.TableColumn(name, "raw", description=f"The system's own column: {held}.")
    if first.stage == "destination":
        how = {e.target: e.how for e in lineage.edges if e.source.stage == "corrections"}
        held = "; ".join(f"{c.holds}, {how[c]}" for c in columns)
        return dg.TableColumn(name, "raw", description=f"Where corrections write {held}.")
    entity_name, _, attribute_name = first.holds.partition(".")
    entity = project.entity(entity_name)
    if attribute_name == entity.key:
        type_, described = "VARCHAR", f"Canonical key ({entity.key_pattern})."
    else:
        attribute = entity.attribute(attribute_name)
        type_, described = attribute.duckdb_type, attribute.described
    if first.stage == "events":
        described += f" In `{first.table}`."
    else:
        described += " The golden value a correction carries (in `values`; sealed when PII)."
    return dg.TableColumn(name, type_, description=described)


def with_column_lineage(
    project: Project, lineage: Lineage, assets: Sequence[dg.AssetsDefinition | dg.AssetSpec]
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """`assets` with their column lineage, and a column schema where they have none."""

    def add(spec: dg.AssetSpec) -> dg.AssetSpec:
        asset = spec.key.to_user_string()
        metadata: dict[str, object] = {}
        found = column_lineage(lineage, asset)
        if found is not None:
            metadata[LINEAGE_KEY] = found
        if SCHEMA_KEY not in spec.metadata:
            schema = column_schema(project, lineage, asset)
            if schema is not None:
                metadata[SCHEMA_KEY] = schema
        return spec.merge_attributes(metadata=metadata) if metadata else spec

    return list(dg.map_asset_specs(add, assets))
