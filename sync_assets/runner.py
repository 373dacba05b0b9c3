"""Running the pipeline headlessly through Dagster, as `syncctl run` does.

The landed-batches sensor is evaluated once against the real Dagster instance under the data
folder; the batches it requests run together as one in-process run over that range of batch
partitions (a run per batch costs about a second of Dagster bookkeeping, and the demo must stay
well under 30 s). The run is recorded in the instance, so `make ui` shows the same history.
"""

from __future__ import annotations

import os
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

    def failing(self, fail_on: str) -> list[CheckOutcome]:
        """Failed checks at or above `fail_on` ('error' or 'warn')."""
        levels = {"ERROR"} if fail_on == "error" else {"ERROR", "WARN"}
        return [c for c in self.checks if not c.passed and c.severity in levels]


@dataclass
class RunReport:
    batches: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def use_data_folder(folder: DataFolder) -> None:
    """Point this process (and Dagster) at the data folder before anything is loaded."""
    os.environ["SYNCFABRIC_HOME"] = str(folder.root)
    os.environ["DAGSTER_HOME"] = str(folder.prepare_dagster_home())


def run_pending_batches(folder: DataFolder) -> RunReport:
    import dagster as dg

    from sensors.ingest import landed_batches_sensor
    from sync_assets.definitions import build_definitions
    from sync_assets.ingest.assets import LANDED_BATCHES
    from sync_assets.jobs import INGEST_BATCH_JOB
    from sync_assets.resources import default_resources

    use_data_folder(folder)
    defs = build_definitions(folder)
    resources = default_resources(folder)
    report = RunReport()
    with dg.DagsterInstance.get() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = landed_batches_sensor(context)
        assert isinstance(result, dg.SensorResult)
        batch_ids = [str(request.partition_key) for request in result.run_requests or []]
        if batch_ids:
            instance.add_dynamic_partitions(LANDED_BATCHES, batch_ids)
        if not batch_ids:
            return report
        run = defs.resolve_job_def(INGEST_BATCH_JOB).execute_in_process(
            instance=instance,
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


def run_reconciliation(folder: DataFolder) -> ReconcileReport:
    """Fresh snapshots of every system, the diff and the checks, as one in-process Dagster run."""
    import dagster as dg

    from sync_assets.definitions import build_definitions
    from sync_assets.jobs import RECONCILE_JOB

    use_data_folder(folder)
    defs = build_definitions(folder)
    with dg.DagsterInstance.get() as instance:
        run = defs.resolve_job_def(RECONCILE_JOB).execute_in_process(
            instance=instance,
            tags={"syncfabric/launched_by": "syncctl"},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
    report = ReconcileReport(run_id=run.run_id, success=run.success)
    for evaluation in run.get_asset_check_evaluations():
        if evaluation.asset_key != dg.AssetKey("discrepancies"):
            continue
        metadata: dict[str, Any] = {key: value.value for key, value in evaluation.metadata.items()}
        report.checks.append(
            CheckOutcome(
                name=evaluation.check_name,
                passed=evaluation.passed,
                severity=evaluation.severity.value,
                discrepancies=int(metadata["discrepancies"]),
                rows_compared=int(metadata["rows_compared"]),
                counts={
                    k: int(metadata[k]) for k in ("missing", "extra", "mismatch", "divergence")
                },
            )
        )
    return report
