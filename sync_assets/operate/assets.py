"""The dashboard as an asset: the HTML report, rebuilt on demand, linked from its metadata."""

from pathlib import Path

import dagster as dg

from sync_assets.operate.report import REPORT_FILE, write_report
from sync_assets.project import Project
from sync_assets.warehouse import WRITER_POOL
from sync_assets.warehouse.resource import WarehouseResource

OWNERS = ["team:data-platform"]


def build_report(project: Project) -> dg.AssetsDefinition:
    @dg.asset(
        name="report",
        deps=["batch_ledger", "discrepancies", "corrections"],
        pool=WRITER_POOL,  # reads the warehouse: not while another process writes it
        group_name="observe",
        kinds={"html"},
        owners=OWNERS,
        description=(
            "The dashboard (`syncctl report`): one self-contained HTML page in the data folder "
            "with event volume and failure ratio, publish-to-ingest latency, reconciliation "
            "outcomes per system, delivery success and latency, dead letters held and the slowest "
            "hops, over time, from the `metrics` table. No record values. Materialize it to "
            "refresh the page; its metadata links to it."
        ),
    )
    def report(warehouse: WarehouseResource) -> dg.MaterializeResult:
        path = Path(warehouse.path).parent / REPORT_FILE
        with warehouse.connect(read_only=True) as con:
            write_report(con, project, path)
        return dg.MaterializeResult(
            metadata={
                "dashboard": dg.MetadataValue.url(path.resolve().as_uri()),
                "size_bytes": path.stat().st_size,
            }
        )

    return report
