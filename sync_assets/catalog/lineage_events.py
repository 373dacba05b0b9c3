"""The reconciliation's column lineage as an OpenLineage RunEvent, sent where OPENLINEAGE_URL
points (the `openlineage-python` client: OPENLINEAGE_ENDPOINT and OPENLINEAGE_API_KEY too).

Off unless OPENLINEAGE_URL is set: `emit_reconcile_lineage` then returns before importing the
client, so a run without it pays nothing. The event names the Dagster run (its id is the run's),
reads the systems' tables and the golden records, and writes the snapshots (and, in the
`reconcile` job, the corrections), each output with a column lineage facet built from
catalog/lineage.py. Names and columns only: never a value, never a system's URL.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sync_assets.catalog.lineage import Column, Lineage, build_lineage
from sync_assets.project.model import Project

if TYPE_CHECKING:
    from openlineage.client.event_v2 import RunEvent

URL_ENV = "OPENLINEAGE_URL"
PRODUCER = "https://github.com/syncfabric/syncfabric"


def namespace(project: Project, column: Column) -> str:
    """A system's tables in the system's namespace, the warehouse's in the warehouse's."""
    if column.stage in ("system", "destination"):
        return f"syncfabric://{project.name}/systems/{column.system}"
    return f"syncfabric://{project.name}/warehouse"


def field_name(column: Column) -> str:
    """The column's name in its dataset: a system's `table.column` is `column` in `table`."""
    if column.stage in ("system", "destination"):
        return column.column.split(".", 1)[1]
    return column.column


def reconcile_run_event(
    project: Project,
    run_id: str,
    job_name: str,
    *,
    with_corrections: bool,
    lineage: Lineage | None = None,
    at: datetime | None = None,
) -> RunEvent:
    """The COMPLETE event of a reconciliation run: what it read and wrote, column by column."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import column_lineage_dataset, schema_dataset

    lineage = lineage or build_lineage(project)
    stages = {("system", "snapshot")}
    if with_corrections:
        stages.add(("golden", "corrections"))
    edges = [e for e in lineage.edges if (e.source.stage, e.target.stage) in stages]

    inputs: dict[tuple[str, str], dict[str, None]] = {}
    outputs: dict[tuple[str, str], dict[str, list[Column]]] = {}
    for edge in edges:
        source, target = edge.source, edge.target
        inputs.setdefault((namespace(project, source), source.table), {})[field_name(source)] = None
        fields = outputs.setdefault((namespace(project, target), target.table), {})
        fields.setdefault(field_name(target), []).append(source)

    def schema(names: list[str]) -> schema_dataset.SchemaDatasetFacet:
        return schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=n) for n in names]
        )

    def how(target: str, source: Column) -> str:
        found = {e.how for e in edges if e.source == source and field_name(e.target) == target}
        return "; ".join(sorted(found))

    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=(at or datetime.now(UTC)).isoformat(),
        run=Run(runId=run_id),
        job=Job(namespace=f"syncfabric://{project.name}", name=job_name),
        producer=PRODUCER,
        inputs=[
            InputDataset(namespace=ns, name=name, facets={"schema": schema(list(fields))})
            for (ns, name), fields in inputs.items()
        ],
        outputs=[
            OutputDataset(
                namespace=ns,
                name=name,
                facets={
                    "schema": schema(list(fields)),
                    "columnLineage": column_lineage_dataset.ColumnLineageDatasetFacet(
                        fields={
                            target: column_lineage_dataset.Fields(
                                inputFields=[
                                    column_lineage_dataset.InputField(
                                        namespace=namespace(project, s),
                                        name=s.table,
                                        field=field_name(s),
                                    )
                                    for s in sources
                                ],
                                transformationDescription="; ".join(
                                    how(target, s) for s in sources
                                ),
                            )
                            for target, sources in fields.items()
                        }
                    ),
                },
            )
            for (ns, name), fields in outputs.items()
        ],
    )


def emit_reconcile_lineage(
    project: Project, run_id: str, job_name: str, *, with_corrections: bool
) -> bool:
    """Send the run's lineage if OPENLINEAGE_URL is set (True), else nothing, importing nothing
    (False). Raises what the client raises when the endpoint refuses it or cannot be reached:
    the caller logs it without failing the run."""
    if not os.environ.get(URL_ENV):
        return False
    from openlineage.client import OpenLineageClient

    event = reconcile_run_event(project, run_id, job_name, with_corrections=with_corrections)
    OpenLineageClient().emit(event)
    return True
