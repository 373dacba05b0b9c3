"""The outbox sensor: the outbox tables of the systems that declare one, landed as batch files
(sync_assets/ingest/outbox.py holds the logic; this only wires it).

Each tick reads every row past each outbox system's cursor (the last `ob-` batch it has, in the
ledger or pending in its landing folder) and writes each contiguous range as a batch file; the
landed-batches sensor (sensors/ingest.py) requests its ingest run, as of any other landed batch.
No cursor of its own: the ledger and the landing folder are the cursor. Only defined when a
system declares `channels.outbox`.
"""

from __future__ import annotations

import dagster as dg
import duckdb

from sync_assets.connectors.resource import SystemsResource
from sync_assets.errors import SyncfabricError
from sync_assets.ingest import outbox
from sync_assets.ingest.resources import LandingZoneResource
from sync_assets.settings import ingest_interval_seconds
from sync_assets.warehouse.resource import WarehouseResource


@dg.sensor(
    minimum_interval_seconds=ingest_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Lands the rows of each system's transactional outbox table as batch files in its "
        "landing folder, a contiguous range of sequences per file."
    ),
)
def outbox_sensor(
    context: dg.SensorEvaluationContext,
    landing_zone: LandingZoneResource,
    warehouse: WarehouseResource,
    systems: SystemsResource,
) -> dg.SensorResult:
    def known(system: str) -> list[str]:
        with warehouse.connect(read_only=True) as con:
            return outbox.ledger_stems(con, system)

    try:
        drained = outbox.drain(landing_zone.zone(), known, systems.url)
    except (duckdb.IOException, SyncfabricError) as error:  # a writer holds the warehouse
        context.log.info(f"outbox not read this tick: {type(error).__name__}")
        return dg.SensorResult()
    for found in drained.landed:
        context.log.info(f"{found.system}: outbox landed as {found.stem}")
    for system, gaps in drained.skipped.items():
        for gap in gaps:
            context.log.warning(
                f"{system} outbox: {outbox.describe_gap(gap)} skipped (never committed within "
                "the grace period)"
            )
    for system, gap in drained.waiting.items():
        context.log.info(f"{system} outbox: waiting for {outbox.describe_gap(gap)}")
    return dg.SensorResult()
