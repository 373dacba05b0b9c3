"""The `deliver_corrections` job: drain the corrections outbox into every destination.

    plan_deliveries ──▶ deliver_to_<system> (one op per system) ──▶ record_deliveries

Planning first closes, unsent, the corrections whose golden record changed since they were
emitted (`stale`). Each destination then re-checks every correction against the record as it is
just before writing (`in_sync`, `changed`: see deliver/recheck.py).

Planning and recording hold the DuckDB writer (pool `duckdb_writer`) for milliseconds; the
deliveries, which wait on networks and retries, hold no DuckDB connection and run in a pool per
destination (`deliver_<system>`, limit 1 in dagster.yaml), so each system gets one stream of
corrections at a time.

The ops hand each other the corrections and the rows they replaced: records' values, PII
included. They stay in memory (`IN_MEMORY`, one process: `in_process_executor`), never
pickled into Dagster's storage, whoever launches the run (syncctl, the UI, the sensor). The
systems are therefore served one after the other, each with its own concurrency (HTTP requests
in flight, SQL batches); a re-execution starts from planning, which reads the outbox again.
"""

import random

import dagster as dg

from sync_assets.connectors.resource import SystemsResource
from sync_assets.crashpoints import crash_point
from sync_assets.deliver import outbox
from sync_assets.deliver.assets import delivered_key
from sync_assets.deliver.destinations import open_destination
from sync_assets.deliver.engine import Delivery, Report, deliver
from sync_assets.deliver.resources import DeliveryResource
from sync_assets.operate import metrics
from sync_assets.operate.runbooks import runbook_url
from sync_assets.project import Project, current
from sync_assets.warehouse import WRITER_POOL, transaction
from sync_assets.warehouse.resource import WarehouseResource

RUNBOOK = "docs/runbooks/delivery.md"
VERDICTS = ("delivered", "duplicate", "superseded", "changed", "in_sync", "dead_lettered")
"""The verdicts a delivery run reports; `stale` ones are closed before any delivery."""


DELIVER_JOB = "deliver_corrections"
IN_MEMORY = "in_memory_io_manager"
"""The resource key of the IO manager that keeps the delivery ops' outputs in memory."""


class PlanConfig(dg.Config):
    redrive: list[str] = []
    """Dead-lettered correction ids to send again."""
    redrive_all: bool = False
    """Send every dead letter again (of `destination` only, if set)."""
    destination: str | None = None


def plan_deliveries_op(systems: tuple[str, ...]) -> dg.OpDefinition:
    """The planning op, with one output per system."""

    @dg.op(
        pool=WRITER_POOL,
        out={
            s: dg.Out(list, description=f"Corrections due for {s}", io_manager_key=IN_MEMORY)
            for s in systems
        },
        description=(
            "Redrives the chosen dead letters, closes the corrections whose golden record changed "
            "since they were emitted (stale), then lists the pending corrections per system."
        ),
    )
    def plan_deliveries(
        context: dg.OpExecutionContext, config: PlanConfig, warehouse: WarehouseResource
    ):
        with warehouse.connect() as con, transaction(con):
            outbox.check_redrive(con, config.redrive, config.destination)
            if config.redrive or config.redrive_all:
                redriven = outbox.redrive(con, config.redrive, config.destination)
                context.log.info(f"redriving {redriven} dead letter(s)")
            stale = outbox.close_stale(con, context.run_id)
            planned = {s: outbox.due(con, s) for s in systems}
        if stale:
            context.log.info(f"closed unsent, their golden record changed since (stale): {stale}")
        for system, deliveries in planned.items():
            yield dg.Output(deliveries, system, metadata={"corrections": len(deliveries)})

    return plan_deliveries


def deliver_op(system: str) -> dg.OpDefinition:
    @dg.op(
        name=f"deliver_to_{system}",
        pool=f"deliver_{system}",
        tags={"system": system},
        out=dg.Out(Report, io_manager_key=IN_MEMORY),
        description=(
            f"Delivers {system}'s corrections with retries (exponential backoff, full jitter) "
            "until each is delivered, a duplicate, superseded or dead-lettered."
        ),
    )
    def _deliver(
        context: dg.OpExecutionContext,
        deliveries: list[Delivery],
        systems: SystemsResource,
        delivery: DeliveryResource,
    ) -> Report:
        report = deliver_to(system, deliveries, systems, delivery)
        if report.count("delivered"):
            crash_point("mid-delivery")  # applied by the system, the verdicts not yet recorded
        counts = {s: report.count(s) for s in VERDICTS}
        context.log.info(f"{system}: {counts} in {len(report.attempts)} attempt(s)")
        return report

    return _deliver


def deliver_to(
    system: str, deliveries: list[Delivery], systems: SystemsResource, delivery: DeliveryResource
) -> Report:
    if not deliveries:
        return Report(system)
    settings = delivery.settings(system)
    destination = open_destination(system, systems.write_url(system), settings)
    try:
        return deliver(deliveries, destination, settings.policy, rng=random.Random())
    finally:
        destination.close()


@dg.op(
    pool=WRITER_POOL,
    description=(
        "Records every attempt and verdict, dead-letters what failed, emits compensations where "
        "the entity's policy says so, and fails the run while dead letters are held (the alert)."
    ),
)
def record_deliveries(
    context: dg.OpExecutionContext,
    reports: list[Report],
    warehouse: WarehouseResource,
    systems: SystemsResource,
    delivery: DeliveryResource,
) -> dg.Output[dict]:
    with warehouse.connect() as con, transaction(con):
        for report in reports:
            outbox.record(con, report, context.run_id)
        compensations = outbox.compensate(con, delivery.policies())
        crash_point("mid-record")  # verdicts written, not committed: the run must deliver again
    if compensations:
        reports = reports + _deliver_compensations(context, warehouse, systems, delivery)
    with warehouse.connect() as con:
        held = outbox.open_dead_letters(con)
        measured = metrics.delivery_metrics(con, context.run_id)
        metrics.record(con, "deliver", context.run_id, measured)
    for event in delivered_events(reports):
        context.log_event(event)
    totals: dict[str, float] = {
        status: sum(r.count(status) for r in reports) for status in VERDICTS
    }
    latencies = [a.latency_ms for r in reports for a in r.attempts]
    totals["attempts"] = len(latencies)
    totals["latency_p50_ms"] = round(metrics.percentile(latencies, 50), 1)
    totals["latency_p95_ms"] = round(metrics.percentile(latencies, 95), 1)
    totals["compensations_emitted"] = compensations
    totals |= metrics.metadata(measured)  # per destination
    if held:
        raise dg.Failure(
            f"dead letters held, by destination: {held}; see {RUNBOOK} to redrive them",
            metadata={
                **totals,
                "held": str(held),
                "runbook": dg.MetadataValue.url(runbook_url(RUNBOOK)),
            },
        )
    return dg.Output(totals, metadata=totals)


def delivered_events(
    reports: list[Report],
) -> list[dg.AssetMaterialization | dg.AssetObservation]:
    """What each destination of the run received, for its `delivered/<system>` asset: a
    materialization when corrections were written to it, an observation when none was (all
    duplicates, superseded, in sync or dead-lettered). Counts only, never values."""
    by_system: dict[str, dict[str, int]] = {}
    for report in reports:
        if not report.verdicts:
            continue
        counts = by_system.setdefault(report.destination, dict.fromkeys(VERDICTS, 0))
        for status in VERDICTS:
            counts[status] += report.count(status)
    events: list[dg.AssetMaterialization | dg.AssetObservation] = []
    for system, counts in by_system.items():
        kind = dg.AssetMaterialization if counts["delivered"] else dg.AssetObservation
        events.append(kind(asset_key=delivered_key(system), metadata=dict(counts)))
    return events


def _deliver_compensations(
    context: dg.OpExecutionContext,
    warehouse: WarehouseResource,
    systems: SystemsResource,
    delivery: DeliveryResource,
) -> list[Report]:
    """Deliver the compensations just emitted, in this run: few, and they must not wait."""
    with warehouse.connect() as con:
        due = {
            s: [d for d in outbox.due(con, s) if d.action == "compensated"]
            for s in current().system_names
        }
    reports = [deliver_to(system, found, systems, delivery) for system, found in due.items()]
    with warehouse.connect() as con, transaction(con):
        for report in reports:
            outbox.record(con, report, context.run_id)
    return reports


def build_deliver_corrections(project: Project) -> dg.JobDefinition:
    """The delivery job: plan, one delivery op per system (in parallel), record."""
    systems = project.system_names
    plan_deliveries = plan_deliveries_op(systems)
    deliver_ops = {system: deliver_op(system) for system in systems}

    @dg.job(
        name=DELIVER_JOB,
        description=(
            "Delivers pending corrections to every system (SQL upserts or HTTP), with retries, a "
            "dead-letter table, redrive (config of plan_deliveries) and compensation."
        ),
        tags={"syncfabric/flow": "deliver"},
        executor_def=dg.in_process_executor,
    )
    def deliver_corrections() -> None:
        planned = plan_deliveries()
        reports = [deliver_ops[system](getattr(planned, system)) for system in systems]
        record_deliveries(reports)

    return deliver_corrections
