"""The message-bus sensor: NATS JetStream's messages into the landing zone, acknowledged once
committed (sync_assets/ingest/jetstream.py holds the logic; this only wires it).

Each tick, per system: the range landed at an earlier tick is acknowledged once its batch is
committed; with none in flight, up to a batch of messages is fetched and written as a batch file
in the system's landing folder. The landed-batches sensor (sensors/ingest.py) requests the
ingest run of that file, as of any other landed batch: one home for "a run per batch". The
cursor holds the range in flight per system; a lost cursor only delays an acknowledgement until
the messages come back (ack_wait), when their batch is found committed. Each tick records
each system's consumer lag in the `metrics` table (stage `bus`), which the `bus_lag` alert
judges. Only defined when SYNCFABRIC_BUS_URL is set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import dagster as dg
import duckdb

from sync_assets.errors import SyncfabricError
from sync_assets.ingest import jetstream
from sync_assets.ingest.resources import LandingZoneResource
from sync_assets.operate import metrics
from sync_assets.settings import ingest_interval_seconds
from sync_assets.warehouse.resource import WarehouseResource


def read_cursor(cursor: str | None) -> dict[str, jetstream.Range]:
    if not cursor:
        return {}
    return {system: jetstream.Range.from_dict(r) for system, r in json.loads(cursor).items()}


def write_cursor(in_flight: dict[str, jetstream.Range]) -> str:
    return json.dumps({system: r.as_dict() for system, r in sorted(in_flight.items())})


@dg.sensor(
    minimum_interval_seconds=ingest_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Lands the messages of NATS JetStream (SYNCFABRIC_BUS_URL) as batch files in each "
        "system's landing folder, and acknowledges them once their batch is committed."
    ),
)
def bus_sensor(
    context: dg.SensorEvaluationContext,
    landing_zone: LandingZoneResource,
    warehouse: WarehouseResource,
) -> dg.SensorResult:
    def committed(system: str, stems: Sequence[str]) -> set[str]:
        with warehouse.connect(read_only=True) as con:
            return jetstream.committed_stems(con, system, stems)

    try:
        tick = jetstream.advance(landing_zone.zone(), committed, read_cursor(context.cursor))
    except (duckdb.IOException, SyncfabricError) as error:  # a writer holds the warehouse
        context.log.info(f"bus not read this tick: {type(error).__name__}")
        return dg.SensorResult(cursor=context.cursor)
    for found in tick.landed:
        context.log.info(f"{found.system}: {found.count} message(s) landed as {found.stem}")
    for found in tick.acked:
        context.log.info(f"{found.system}: acknowledged through sequence {found.last}")
    for lag in tick.lag:
        if lag.waiting or lag.unacknowledged:
            age = "" if lag.oldest_age_s is None else f", oldest {lag.oldest_age_s:.0f} s"
            context.log.info(
                f"{lag.system} lag: {lag.waiting} waiting, {lag.unacknowledged} unacknowledged{age}"
            )
    try:  # the lag, for the bus_lag alert and the report
        with warehouse.connect() as con:
            metrics.record_bus_lag(con, tick.lag, "sensor")
    except (duckdb.IOException, SyncfabricError) as error:  # a run holds the warehouse
        context.log.info(f"bus lag not recorded this tick: {type(error).__name__}")
    return dg.SensorResult(cursor=write_cursor(tick.in_flight))
