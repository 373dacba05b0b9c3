"""Running the pipeline headlessly through Dagster, as `syncctl run` does.

The landed-batches sensor is evaluated once against the real Dagster instance under the data
folder; the batches it requests run together as one in-process run over that range of batch
partitions (a run per batch costs about a second of Dagster bookkeeping, and the demo must stay
well under 30 s). The run is recorded in the instance, so `make ui` shows the same history.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sync_assets.settings import DataFolder


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    severity: str
    """ERROR or WARN: what a failure of this check means."""
    discrepancies: int
    rows_compared: int
    counts: dict[str, int]


@dataclass
class ReconcileReport:
    run_id: str
    success: bool
    checks: list[CheckOutcome] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    """Why a step refused to go on (its `dg.Failure`): batches pending, a review that does not
    match; each message once."""

    def failing(self, fail_on: str) -> list[CheckOutcome]:
        """Failed checks at or above `fail_on` ('error' or 'warn')."""
        levels = {"ERROR"} if fail_on == "error" else {"ERROR", "WARN"}
        return [c for c in self.checks if not c.passed and c.severity in levels]

    @property
    def discrepancies(self) -> int:
        return sum(c.discrepancies for c in self.checks)


@dataclass
class RunReport:
    batches: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class DeliveryReport:
    run_id: str
    success: bool
    counts: dict[str, int] = field(default_factory=dict)
    """Corrections by verdict (delivered, duplicate, superseded, dead_lettered, ...), and
    compensations, attempts and retries."""


def use_data_folder(folder: DataFolder) -> None:
    """Point this process (and Dagster) at the data folder before anything is loaded."""
    os.environ["SYNCFABRIC_HOME"] = str(folder.root)
    os.environ["DAGSTER_HOME"] = str(folder.prepare_dagster_home())


@dataclass
class Pipeline:
    """The Dagster definitions and instance for one data folder, shared by the runs of a command."""

    folder: DataFolder
    defs: Any
    instance: Any

    def ingest_pending(self) -> RunReport:
        """Ask the landed-batches sensor what is new, and ingest all of it in one range run."""
        import dagster as dg

        from sensors.ingest import landed_batches_sensor
        from sync_assets.ingest.assets import LANDED_BATCHES
        from sync_assets.jobs import INGEST_BATCH_JOB
        from sync_assets.resources import default_resources

        context = dg.build_sensor_context(
            instance=self.instance, resources=default_resources(self.folder)
        )
        result = landed_batches_sensor(context)
        assert isinstance(result, dg.SensorResult)
        batch_ids = [str(request.partition_key) for request in result.run_requests or []]
        report = RunReport()
        if not batch_ids:
            return report
        self.instance.add_dynamic_partitions(LANDED_BATCHES, batch_ids)
        run = self.defs.resolve_job_def(INGEST_BATCH_JOB).execute_in_process(
            instance=self.instance,
            tags={
                "dagster/asset_partition_range_start": batch_ids[0],
                "dagster/asset_partition_range_end": batch_ids[-1],
                "syncfabric/launched_by": "syncctl",
            },
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            raise_on_error=False,
        )
        report.batches = batch_ids
        if not run.success:
            report.failed = batch_ids
        return report

    def reconcile(self, *, emit: bool = True, reviewed: int | None = None) -> ReconcileReport:
        """Fresh snapshots of every system, the diff and the checks, as one run; with `emit`,
        also the owners' missed events and the corrections (each refusing on its own terms:
        pending batches, an ERROR check, a `reviewed` count that does not match), else nothing
        is landed or emitted."""
        import dagster as dg

        from sync_assets.jobs import CHECK_JOB, RECONCILE_JOB

        run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        if emit and reviewed is not None:
            review = {"config": {"i_have_reviewed": reviewed}}
            run_config["ops"] = {"missed_events": review, "corrections": review}
        run = self.defs.resolve_job_def(RECONCILE_JOB if emit else CHECK_JOB).execute_in_process(
            instance=self.instance,
            tags={"syncfabric/launched_by": "syncctl"},
            run_config=run_config,
            raise_on_error=False,
        )
        report = ReconcileReport(run_id=run.run_id, success=run.success)
        for evaluation in run.get_asset_check_evaluations():
            if evaluation.asset_key == dg.AssetKey("discrepancies"):
                report.checks.append(_outcome(evaluation))
        for event in run.get_step_failure_events():
            refused = event.step_failure_data.user_failure_data
            if refused is not None and refused.description not in report.refusals:
                report.refusals.append(refused.description or "")
        return report

    def emit_corrections(self, reviewed: int | None = None, confirm: str = "") -> bool:
        """Materialize `missed_events` and `corrections` from the latest reconciliation by hand:
        past a failing check, which stops the automatic path, when `reviewed` names the number
        of corrections exactly.

        Raises `SyncfabricError` without launching anything while batches are pending, when no
        reconciliation ran, or when the review gate refuses (`confirm`: how the caller passes the
        number, with `{n}`); the assets check the same again when they run.
        """
        import dagster as dg

        from sync_assets.deliver.corrections import require_complete_golden
        from sync_assets.deliver.gate import UI_CONFIRM, enforce
        from sync_assets.errors import SyncfabricError
        from sync_assets.reconcile.comparisons import latest_run
        from sync_assets.warehouse import connect

        with connect(self.folder.warehouse, read_only=True) as con:
            require_complete_golden(con)
            run_id = latest_run(con)
            if run_id is None:
                raise SyncfabricError("no reconciliation has run yet: run syncctl reconcile first")
            enforce(con, run_id, reviewed, confirm or UI_CONFIRM)
        review = {"config": {"i_have_reviewed": reviewed}}
        job = self.defs.resolve_implicit_global_asset_job_def()
        run = job.execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey("missed_events"), dg.AssetKey("corrections")],
            tags={"syncfabric/launched_by": "syncctl"},
            run_config={
                "ops": {"missed_events": review, "corrections": review},
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
            },
            raise_on_error=False,
        )
        return run.success

    def deliver(
        self,
        *,
        redrive: list[str] | None = None,
        redrive_all: bool = False,
        destination: str | None = None,
    ) -> DeliveryReport:
        """Drain the corrections outbox into every system (redriving dead letters if asked).

        Raises `SyncfabricError` before any delivery for an unknown destination or a redrive id
        that names no dead letter.
        """
        from sync_assets.deliver import outbox
        from sync_assets.warehouse import connect

        with connect(self.folder.warehouse, read_only=True) as con:
            outbox.check_redrive(con, redrive or [], destination)
        plan = {"redrive": redrive or [], "redrive_all": redrive_all, "destination": destination}
        run = self.defs.resolve_job_def("deliver_corrections").execute_in_process(
            instance=self.instance,
            run_config={
                "ops": {"plan_deliveries": {"config": plan}},
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
            },
            tags={"syncfabric/launched_by": "syncctl"},
            raise_on_error=False,
        )
        with connect(self.folder.warehouse, read_only=True) as con:
            counts = outbox.delivery_counts(con, run.run_id)
        return DeliveryReport(run.run_id, run.success, counts)

    def pending_corrections(self) -> int:
        from sync_assets.deliver import outbox
        from sync_assets.warehouse import connect

        with connect(self.folder.warehouse, read_only=True) as con:
            return outbox.pending_count(con)


def _outcome(evaluation: Any) -> CheckOutcome:
    metadata: dict[str, Any] = {key: value.value for key, value in evaluation.metadata.items()}
    return CheckOutcome(
        name=evaluation.check_name,
        passed=evaluation.passed,
        severity=evaluation.severity.value,
        discrepancies=int(metadata["discrepancies"]),
        rows_compared=int(metadata["rows_compared"]),
        counts={k: int(metadata[k]) for k in ("missing", "extra", "mismatch", "divergence")},
    )


@contextlib.contextmanager
def pipeline(folder: DataFolder) -> Iterator[Pipeline]:
    """Open the data folder's Dagster instance once (opening it costs about a second)."""
    use_data_folder(folder)
    import dagster as dg

    from sync_assets.definitions import build_definitions

    with dg.DagsterInstance.get() as instance:
        yield Pipeline(folder, build_definitions(folder), instance)
