"""Running the pipeline headlessly through Dagster, as `syncctl run` does.

The batches pending in the landing zone, and those the ledger says a stopped run left unfinished,
run together as one in-process run over that range of batch partitions (a run per batch, as the
landed-batches sensor asks in the daemon, costs about a second of Dagster bookkeeping each). The
run is recorded in the real Dagster instance under the data folder, so `make ui` shows the same
history.

Opening the instance first recovers from crashes: runs whose process is gone are marked failed
and their pool claims freed (sync_assets/operate/recovery.py), or the next run would wait forever
for a slot. Every run goes through `Pipeline._execute`: tagged as syncctl's with its pid, quiet on
the console (one line per failed step; `-v` shows Dagster's logs), progress on a terminal, and a
step's operator error (a bad URL, a busy warehouse) raised as the SyncfabricError it was.

A reconciliation isolates its systems: a snapshot that fails (a system unreachable, its table
missing) is reported, not raised, and since Dagster runs no step whose upstream failed, the
discrepancies and what follows them run again on their own over the snapshots that were taken.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync_assets.catalog.rules import RULE_CHECK_PREFIX
from sync_assets.crashpoints import crash_point
from sync_assets.errors import EXIT_FAILED, SyncfabricError
from sync_assets.operate import recovery, workers
from sync_assets.operate.console import CONSOLE
from sync_assets.operate.failures import StepFailure, operator_error, step_failures
from sync_assets.operate.lock import is_held_here
from sync_assets.settings import DataFolder

if TYPE_CHECKING:
    from sync_assets.ingest.jetstream import Drained
    from sync_assets.reconcile.snapshot import Skipped


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    severity: str
    """ERROR or WARN: what a failure of this check means."""
    discrepancies: int
    rows_compared: int
    counts: dict[str, int]
    not_checked: str | None = None
    """Why the run could not make this comparison (a snapshot failed); None when it did."""


@dataclass(frozen=True)
class RuleOutcome:
    """One business rule over one table (golden records or a snapshot), as its check judged it."""

    table: str
    name: str
    passed: bool
    severity: str
    broken: int
    rows_checked: int
    rule: str
    """The rule in words."""


@dataclass
class ReconcileReport:
    run_id: str
    """The run whose discrepancies and checks these are."""
    success: bool
    checks: list[CheckOutcome] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    """The systems' entities not compared, and why; the others were."""
    snapshot_failures: list[StepFailure] = field(default_factory=list)
    rules: list[RuleOutcome] = field(default_factory=list)
    """The catalog's business rules over the golden records and each snapshot."""

    @property
    def skipped_exit_code(self) -> int:
        """The exit code a command ends with for the systems not checked: the first failed
        snapshot's (2 for a setting to fix), else 1."""
        codes = [f.exit_code for f in self.snapshot_failures if f.exit_code is not None]
        return codes[0] if codes else EXIT_FAILED

    def failing(self, fail_on: str) -> list[CheckOutcome]:
        """Failed checks at or above `fail_on` ('error' or 'warn')."""
        return [c for c in self.checks if not c.passed and c.severity in _levels(fail_on)]

    def broken_rules(self, fail_on: str) -> list[RuleOutcome]:
        """Business rules broken at or above `fail_on`."""
        return [r for r in self.rules if not r.passed and r.severity in _levels(fail_on)]

    @property
    def discrepancies(self) -> int:
        return sum(c.discrepancies for c in self.checks)


def _levels(fail_on: str) -> set[str]:
    return {"ERROR"} if fail_on == "error" else {"ERROR", "WARN"}


@dataclass
class RunReport:
    batches: list[str] = field(default_factory=list)
    """New batches the run took."""
    resumed: list[str] = field(default_factory=list)
    """Batches an earlier run left unfinished, taken again."""
    failed: list[str] = field(default_factory=list)
    """Batches still unfinished after the run."""
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


BATCHES_TAG = "syncfabric/batches"
"""The batches a run handled, as run tags (the sensor's runs: `syncfabric/batch`, one each)."""
_TAG_LIMIT = 2000


def batch_tags(batch_ids: list[str]) -> dict[str, str]:
    """Run tags naming the batches a run takes (the first ones, if they are many) and how many,
    so the run is found from a batch id (`syncctl trace` prints it) and the other way round."""
    shown: list[str] = []
    for batch_id in batch_ids:
        if sum(len(b) + 1 for b in shown) + len(batch_id) > _TAG_LIMIT:
            break
        shown.append(batch_id)
    more = len(batch_ids) - len(shown)
    return {
        BATCHES_TAG: " ".join(shown) + (f" (+{more} more)" if more else ""),
        "syncfabric/batch_count": str(len(batch_ids)),
    }


@dataclass
class DeliveryReport:
    run_id: str
    success: bool
    counts: dict[str, int] = field(default_factory=dict)
    """Corrections by verdict (delivered, duplicate, superseded, dead_lettered, ...), and
    compensations, attempts and retries."""


@dataclass
class AdoptionReport:
    """What adopting a landscape that already exists did (sync_assets/reconcile/adopt.py)."""

    run_id: str | None = None
    """None: nothing to adopt, every entity's golden records hold something."""
    success: bool = True
    entities: list[str] = field(default_factory=list)
    events: dict[str, dict[str, int]] = field(default_factory=dict)
    """Events landed, {owner: {action: count}}."""
    orphans: dict[str, dict[str, int]] = field(default_factory=dict)
    """Live rows only non-owners of the lifecycle hold, left alone: {system: {entity: count}}."""
    not_adopted: dict[str, str] = field(default_factory=dict)
    """Entities left empty for a later run, and why (an owner's snapshot failed)."""
    ingested: RunReport = field(default_factory=RunReport)
    """The ingest of the batches it landed."""

    @property
    def landed(self) -> int:
        return sum(n for actions in self.events.values() for n in actions.values())


def use_data_folder(folder: DataFolder) -> None:
    """Point this process (and Dagster) at the data folder before anything is loaded; the data
    folder belongs to the current project from now on."""
    from sync_assets.project.active import bind

    bind(folder)
    os.environ["SYNCFABRIC_HOME"] = str(folder.root)
    os.environ["DAGSTER_HOME"] = str(folder.prepare_dagster_home())


@dataclass
class Pipeline:
    """The Dagster definitions and instance for one data folder, shared by the runs of a command."""

    folder: DataFolder
    defs: Any
    instance: Any
    recovered: recovery.Findings = field(default_factory=recovery.Findings)
    """What opening the instance found dead, and repaired."""
    failures: list[StepFailure] = field(default_factory=list)
    """Every step failure of this command's runs, in order."""
    _refusals_told: set[Path] = field(default_factory=set)

    def ingest_pending(self) -> RunReport:
        """Ingest what landed, and resume every batch a stopped run left unfinished, in one run.

        The landing zone says what is new (what the landed-batches sensor would request with no
        cursor); the ledger says what is unfinished. One run over the range of their partitions
        takes them all (steps skip batches already past them).
        """
        from sync_assets import ledger
        from sync_assets.ingest.assets import LANDED_BATCHES
        from sync_assets.ingest.landing import LandingZone
        from sync_assets.ingest.signatures import require_signing_keys
        from sync_assets.jobs import INGEST_BATCH_JOB
        from sync_assets.project import current
        from sync_assets.warehouse import connect

        # before any run: a batch of a signing system cannot be validated without its key
        require_signing_keys(current())
        drained = self._drain_bus()
        self._drain_outbox()
        scan = LandingZone(self.folder.landing).scan()
        for refusal in scan.refused:
            if refusal.path not in self._refusals_told:
                CONSOLE.notice(f"refused in the landing zone: {refusal}")
                self._refusals_told.add(refusal.path)
        requested = [batch.batch_id for batch in scan.batches]
        with connect(self.folder.warehouse, read_only=True) as con:
            unfinished = ledger.pending_batches(con)
        report = RunReport(
            batches=[b for b in requested if b not in unfinished],
            resumed=unfinished,
        )
        batch_ids = list(dict.fromkeys(requested + unfinished))
        if not batch_ids:
            self._acknowledge_bus(drained)  # ranges that came back, committed before
            return report
        start, end = self._partition_range(LANDED_BATCHES, batch_ids)
        crash_point("after-sensor-request")
        run = self._execute(
            self.defs.resolve_job_def(INGEST_BATCH_JOB),
            tags={
                "dagster/asset_partition_range_start": start,
                "dagster/asset_partition_range_end": end,
                **batch_tags(batch_ids),
            },
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
        report.run_id = run.run_id
        with connect(self.folder.warehouse, read_only=True) as con:
            report.failed = [b for b in ledger.pending_batches(con) if b in batch_ids]
        if not run.success and not report.failed:
            report.failed = batch_ids
        crash_point("before-bus-ack")
        self._acknowledge_bus(drained)
        return report

    def _committed(self, system: str, stems: Sequence[str]) -> set[str]:
        from sync_assets.ingest.jetstream import committed_stems
        from sync_assets.warehouse import connect

        with connect(self.folder.warehouse, read_only=True) as con:
            return committed_stems(con, system, stems)

    def _drain_bus(self) -> Drained | None:
        """With a message bus (SYNCFABRIC_BUS_URL), what waits on it lands as batch files first."""
        from sync_assets.ingest import jetstream
        from sync_assets.ingest.landing import LandingZone
        from sync_assets.settings import BusSettings

        settings = BusSettings.from_env()
        if settings is None:
            return None
        return jetstream.drain(LandingZone(self.folder.landing), self._committed, settings)

    def _drain_outbox(self) -> None:
        """The outbox tables of the systems that declare one land as batch files first."""
        from sync_assets.connectors.sources import configured_url
        from sync_assets.ingest import outbox
        from sync_assets.ingest.landing import LandingZone
        from sync_assets.project import current
        from sync_assets.warehouse import connect

        project = current()
        if not project.outbox_systems:
            return

        def known(system: str) -> list[str]:
            with connect(self.folder.warehouse, read_only=True) as con:
                return outbox.ledger_stems(con, system)

        def url_of(system: str) -> str:
            variable = project.systems[system].url_env
            return configured_url(variable, self.folder.system_database(system))

        drained = outbox.drain(LandingZone(self.folder.landing), known, url_of, project=project)
        for system, gaps in drained.skipped.items():
            for gap in gaps:
                CONSOLE.notice(
                    f"{system} outbox: {outbox.describe_gap(gap)} skipped (never committed "
                    "within the grace period)"
                )

    def _acknowledge_bus(self, drained: Drained | None) -> None:
        """The bus's messages whose batches are committed now are acknowledged; what is left
        behind on the bus then is measured (metrics, stage `bus`: the `bus_lag` alert's)."""
        from sync_assets.ingest import jetstream
        from sync_assets.operate import metrics
        from sync_assets.warehouse import connect

        if drained is None:
            return
        jetstream.acknowledge(drained, self._committed)
        lags = jetstream.lag()
        with connect(self.folder.warehouse) as con:
            metrics.record_bus_lag(con, lags, "run")

    def _partition_range(self, name: str, keys: list[str]) -> tuple[str, str]:
        """Add the keys that are new, and the first and last of them in the partitions' order:
        a range run covers everything between (the steps skip what is done)."""
        from sqlalchemy.exc import IntegrityError

        try:
            self.instance.add_dynamic_partitions(name, keys)
        except IntegrityError:  # the daemon's sensor added one of them at the same moment
            self.instance.add_dynamic_partitions(name, keys)
        position = {key: i for i, key in enumerate(self.instance.get_dynamic_partitions(name))}
        ranked = sorted(keys, key=position.__getitem__)
        return ranked[0], ranked[-1]

    def adopt(self) -> AdoptionReport:
        """Where an entity's golden records are empty, build them from the owners' rows before
        anything is reconciled against them (which would find every row extra and judge nothing):
        fresh snapshots and the `adoption` asset as one run, then the ingest of what it landed.
        Nothing while a batch is unfinished: its events may be what fills them."""
        from sync_assets import ledger
        from sync_assets.reconcile.adopt import empty_golden
        from sync_assets.reconcile.snapshot import SNAPSHOT_PREFIX
        from sync_assets.warehouse import connect

        with connect(self.folder.warehouse, read_only=True) as con:
            if not empty_golden(con) or ledger.pending_batches(con):
                return AdoptionReport()
        adoption = self.defs.resolve_assets_def("adoption")
        job = self.defs.resolve_implicit_global_asset_job_def()
        config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

        def is_snapshot(failure: StepFailure) -> bool:
            return (failure.step or "").startswith(SNAPSHOT_PREFIX)

        run = self._execute(
            job,
            asset_selection=[*adoption.dependency_keys, *adoption.keys],
            run_config=config,
            isolated=is_snapshot,
        )
        if any(is_snapshot(f) for f in step_failures(job.name, run.all_events)):
            # A system that cannot be read: adopt what the snapshots taken allow (the entities
            # it owns nothing of); the reconciliation that follows reports the failure.
            run = self._execute(job, asset_selection=list(adoption.keys), run_config=config)
        report = AdoptionReport(run_id=run.run_id, success=run.success)
        for materialization in run.asset_materializations_for_node("adoption"):
            metadata = {key: value.value for key, value in materialization.metadata.items()}
            report.entities = list(metadata["entities"])
            report.events = dict(metadata["events"])
            report.orphans = dict(metadata["orphans_by_system"])
            report.not_adopted = dict(metadata["not_adopted"])
        if report.landed:
            report.ingested = self.ingest_pending()
        return report

    def reconcile(
        self,
        *,
        emit: bool = True,
        reviewed: int | None = None,
        fresh: Collection[tuple[str, str]] | None = None,
    ) -> ReconcileReport:
        """Fresh snapshots of every system, the diff and the checks, as one run; with `emit`,
        also the owners' missed events and the corrections (each refusing on its own terms:
        pending batches, an ERROR check, a `reviewed` count that does not match), else nothing
        is landed or emitted. `fresh` names the (system, entity) snapshots to take again (the
        others are diffed as last taken); None: all of them.

        A system whose snapshot fails is not checked; the others are: the snapshot's failure is
        reported in `skipped` (not raised), and the diff onwards runs again in a run of its own,
        which is the report's run."""
        import dagster as dg

        from sync_assets.jobs import CHECK_JOB, RECONCILE_JOB
        from sync_assets.project import current
        from sync_assets.reconcile.comparisons import skipped
        from sync_assets.reconcile.snapshot import SNAPSHOT_PREFIX, snapshot_table
        from sync_assets.warehouse import connect

        def is_snapshot(failure: StepFailure) -> bool:
            return (failure.step or "").startswith(SNAPSHOT_PREFIX)

        run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        if emit and reviewed is not None:
            review = {"config": {"i_have_reviewed": reviewed}}
            run_config["ops"] = {"missed_events": review, "corrections": review}
        job = self.defs.resolve_job_def(RECONCILE_JOB if emit else CHECK_JOB)

        def without_snapshots(but: Collection[str] = ()) -> list[dg.AssetKey]:
            """The job's assets but its snapshots, except the snapshot tables named in `but`."""
            return [
                key
                for key in job.asset_layer.executable_asset_keys
                if not key.to_user_string().startswith(SNAPSHOT_PREFIX)
                or key.to_user_string() in but
            ]

        selection = None
        if fresh is not None:
            project = current()
            selection = without_snapshots({snapshot_table(project.mapping(*p)) for p in fresh})
        run = self._execute(
            job, run_config=run_config, isolated=is_snapshot, asset_selection=selection
        )
        failed = [f for f in step_failures(job.name, run.all_events) if is_snapshot(f)]
        if failed:
            run = self._execute(job, run_config=run_config, asset_selection=without_snapshots())
        report = ReconcileReport(run_id=run.run_id, success=run.success, snapshot_failures=failed)
        for evaluation in run.get_asset_check_evaluations():
            if evaluation.asset_key == dg.AssetKey("discrepancies"):
                report.checks.append(_outcome(evaluation))
            elif evaluation.check_name.startswith(RULE_CHECK_PREFIX):
                report.rules.append(_rule_outcome(evaluation))
        with connect(self.folder.warehouse, read_only=True) as con:
            report.skipped = skipped(con, run.run_id)
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
        run = self._execute(
            job,
            asset_selection=[dg.AssetKey("missed_events"), dg.AssetKey("corrections")],
            run_config={
                "ops": {"missed_events": review, "corrections": review},
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
            },
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
        from sync_assets.deliver.ops import DELIVER_JOB
        from sync_assets.warehouse import connect

        with connect(self.folder.warehouse, read_only=True) as con:
            outbox.check_redrive(con, redrive or [], destination)
        planning = {
            "redrive": redrive or [],
            "redrive_all": redrive_all,
            "destination": destination,
        }
        run = self._execute(
            self.defs.resolve_job_def(DELIVER_JOB),
            run_config={
                "ops": {"plan_deliveries": {"config": planning}},
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
            },
        )
        with connect(self.folder.warehouse, read_only=True) as con:
            counts = outbox.delivery_counts(con, run.run_id)
        return DeliveryReport(run.run_id, run.success, counts)

    def redrive_ingest_dead_letters(self, refs: list[str], rule: str | None) -> dict[str, Any]:
        """Land held ingest dead letters again as new batches; what was landed where."""
        from sync_assets.ingest.ops import redrive_ingest_dead_letters

        run = self._execute(
            self.defs.resolve_job_def(redrive_ingest_dead_letters.name),
            run_config={
                "ops": {"redrive_dead_letters": {"config": {"refs": refs, "rule": rule}}},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
        )
        if not run.success:
            raise SyncfabricError(failure_message(run))
        return run.output_for_node("redrive_dead_letters")

    def _execute(
        self,
        job: Any,
        *,
        run_config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        isolated: Callable[[StepFailure], bool] | None = None,
        **options: Any,
    ) -> Any:
        """Run a job in this process, as every syncctl run goes (see the module's docstring).

        Returns Dagster's result (raise_on_error=False: a failed step is in the result); raises
        the SyncfabricError of a step that met an operator's situation, except for the failures
        `isolated` names, which the caller reports itself.
        """
        from dagster._core.utils import make_new_run_id

        config = dict(run_config or {})
        level = CONSOLE.dagster_log_level
        if level is not None:
            config["loggers"] = {"console": {"config": {"log_level": level}}}
        run_id = make_new_run_id()
        watcher = CONSOLE.watch(job.name)
        self.instance.add_event_listener(run_id, watcher)
        self.instance.add_event_listener(run_id, _crash_after_step_start)
        self.instance.add_event_listener(run_id, _PoolWait(job.name, self.instance))
        tags = {**(tags or {}), **recovery.launch_tags()}
        try:
            with sigterm_kept():
                if workers.runs_in_workers(job):
                    result = self._execute_in_workers(job, run_id, config, tags, **options)
                else:
                    result = job.execute_in_process(
                        instance=self.instance,
                        run_id=run_id,
                        run_config=config,
                        tags=tags,
                        raise_on_error=False,
                        **options,
                    )
        except BaseException:
            watcher.finish(None)
            raise
        watcher.finish(result.success)
        failures = step_failures(job.name, result.all_events)
        self.failures.extend(failures)
        if isolated is not None:
            failures = [f for f in failures if not isolated(f)]
        error = operator_error(failures)
        if error is not None:
            raise error
        if not CONSOLE.verbose:
            for failure in failures:
                CONSOLE.notice(failure.line())
            if failures:
                CONSOLE.notice(
                    f"(run {run_id} in the Dagster UI has the whole record; "
                    "syncctl -v prints the tracebacks)"
                )
        return result

    def _execute_in_workers(
        self,
        job: Any,
        run_id: str,
        run_config: dict[str, Any],
        tags: dict[str, str],
        asset_selection: Sequence[Any] | None = None,
    ) -> Any:
        """Run a job whose executor sends its steps to `syncctl worker` processes (with
        SYNCFABRIC_CELERY_BROKER_URL, sync_assets/operate/workers.py): this process orchestrates
        and claims the pools; the workers rebuild the job from the code location's module, as
        the UI's runs do. Refused before any run is made when no worker answers."""
        from dagster._core.definitions.reconstruct import ReconstructableRepository
        from dagster._core.execution.api import execute_run

        workers.require_workers(workers.require_broker())
        recon = ReconstructableRepository.for_module(
            "sync_assets.definitions", "defs", working_directory=os.getcwd()
        ).get_reconstructable_job(job.name)
        run = self.instance.create_run_for_job(
            job_def=recon.get_definition(),
            run_id=run_id,
            run_config=run_config,
            tags=tags,
            job_code_origin=recon.get_python_origin(),
            asset_selection=frozenset(asset_selection) if asset_selection else None,
        )
        with warnings.catch_warnings():
            # dagster_celery registers its task again for every step it sends: harmless, and
            # not the operator's concern
            warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already")
            return execute_run(recon, run, self.instance, raise_on_error=False)

    def pending_corrections(self) -> int:
        from sync_assets.deliver import outbox
        from sync_assets.warehouse import connect

        with connect(self.folder.warehouse, read_only=True) as con:
            return outbox.pending_count(con)


@contextlib.contextmanager
def sigterm_kept() -> Iterator[None]:
    """SIGTERM's handler as it was before a run executed in this process.

    Dagster maps SIGTERM to SIGINT's handler while a run executes, and leaves it so. Where SIGINT
    is ignored (a background job of a script), syncctl would ignore SIGTERM from its first run on,
    and so would every process it started after: `kill` could not stop it, and its rules worker
    could not be terminated."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread sets handlers (Dagster does not either)
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


def failure_message(run: Any) -> str:
    """What a failed run says for itself: each failed step and its message (an operator's
    SyncfabricError in a step is raised by `Pipeline._execute` before this is asked)."""
    failures = step_failures(run.dagster_run.job_name, run.all_events)
    return "; ".join(failure.line() for failure in failures) or f"run {run.run_id} failed"


def _rule_outcome(evaluation: Any) -> RuleOutcome:
    metadata: dict[str, Any] = {key: value.value for key, value in evaluation.metadata.items()}
    return RuleOutcome(
        table=evaluation.asset_key.to_user_string(),
        name=evaluation.check_name.removeprefix(RULE_CHECK_PREFIX),
        passed=evaluation.passed,
        severity=evaluation.severity.value,
        broken=int(metadata["unexpected"]),
        rows_checked=int(metadata["rows_checked"]),
        rule=str(metadata["rule"]),
    )


def _outcome(evaluation: Any) -> CheckOutcome:
    metadata: dict[str, Any] = {key: value.value for key, value in evaluation.metadata.items()}
    return CheckOutcome(
        name=evaluation.check_name,
        passed=evaluation.passed,
        severity=evaluation.severity.value,
        discrepancies=int(metadata["discrepancies"]),
        rows_compared=int(metadata["rows_compared"]),
        counts={k: int(metadata[k]) for k in ("missing", "extra", "mismatch", "divergence")},
        not_checked=metadata.get("not_checked"),
    )


@dataclass
class _PoolWait:
    """Says, once per pool, that a step waits for a pool another run holds, and which run: a
    wait that nothing on the console explained looked like a hang."""

    job: str
    instance: Any
    said: set[str] = field(default_factory=set)

    def __call__(self, entry: Any) -> None:
        event = entry.dagster_event
        message = (event.message or "") if event is not None else ""
        if not message.startswith(recovery.BLOCKED_BY_POOL):
            return
        pool = message.removeprefix(recovery.BLOCKED_BY_POOL).strip()
        if pool in self.said:
            return
        self.said.add(pool)
        holders = recovery.holders(self.instance, pool) or ["another run"]
        CONSOLE.notice(
            f"{self.job}: step {event.step_key} waits for the {pool} pool, held by "
            f"{'; '.join(holders)}. It goes on when that run ends; `syncctl doctor` shows "
            "whether one is stuck."
        )


def _crash_after_step_start(entry: Any) -> None:
    event = entry.dagster_event
    if event is not None and event.event_type_value == "STEP_START":
        crash_point("after-step-start")


@dataclass
class RunOnce:
    """What `syncctl run` did: the batches ingested, the adoption, every reconciliation (the last
    is the confirming one), the delivery run if there was one, and the corrections emitted."""

    ingested: RunReport
    adopted: Any
    reconciliations: list[ReconcileReport]
    delivered: DeliveryReport | None
    emitted: int
    missed_events: int
    """Events the owners missed sending, landed by the reconciliation and absorbed."""
    seconds: float

    @property
    def reconciled(self) -> ReconcileReport:
        return self.reconciliations[-1]


def run_once(folder: DataFolder) -> RunOnce:
    """The pipeline once, as `syncctl run` does it: ingest what landed (resuming what stopped),
    adopt the landscape where golden records are empty, reconcile, absorb the owners' missed
    events (ingest, reconcile again), deliver the corrections, and reconcile again to confirm,
    snapshotting again only what the delivery wrote to and what could not be read (everything,
    if the delivery failed)."""
    started = time.perf_counter()
    delivered = None
    with pipeline(folder) as runs:
        report = runs.ingest_pending()
        adopted = runs.adopt()
        report.batches += adopted.ingested.batches
        report.failed = adopted.ingested.failed or report.failed
        reconciled = runs.reconcile()
        reconciliations = [reconciled]
        emitted = _emitted(folder, reconciled.run_id)
        # The owners' missed events, landed by the reconciliation, enter the golden records
        # first; the systems that do not own those values are corrected after.
        absorbed = runs.ingest_pending() if reconciled.success else RunReport()
        if absorbed.batches or absorbed.resumed:
            report.batches += absorbed.batches
            report.failed = absorbed.failed
            reconciled = runs.reconcile()
            reconciliations.append(reconciled)
            emitted += _emitted(folder, reconciled.run_id)
        if reconciled.success and runs.pending_corrections():
            delivered = runs.deliver()
            # confirmed where it wrote, and tried again where it could not read; the other
            # systems were snapshotted moments ago
            fresh = None
            if delivered.success:
                fresh = _written(folder, delivered.run_id)
                fresh |= {(s.system, s.entity) for s in reconciled.skipped}
            reconciliations.append(runs.reconcile(fresh=fresh))
    return RunOnce(
        ingested=report,
        adopted=adopted,
        reconciliations=reconciliations,
        delivered=delivered,
        emitted=emitted,
        missed_events=_landed(folder, absorbed.batches),
        seconds=time.perf_counter() - started,
    )


def _emitted(folder: DataFolder, reconcile_run: str) -> int:
    from sync_assets.deliver.outbox import emitted_by
    from sync_assets.warehouse import connect

    with connect(folder.warehouse, read_only=True) as con:
        return emitted_by(con, reconcile_run)


def _written(folder: DataFolder, delivery_run: str) -> set[tuple[str, str]]:
    from sync_assets.deliver.outbox import written_by
    from sync_assets.warehouse import connect

    with connect(folder.warehouse, read_only=True) as con:
        return written_by(con, delivery_run)


def _landed(folder: DataFolder, batch_ids: list[str]) -> int:
    from sync_assets.warehouse import connect

    if not batch_ids:
        return 0
    with connect(folder.warehouse, read_only=True) as con:
        found = con.execute(
            "SELECT coalesce(sum(landed), 0) FROM batches WHERE batch_id IN (SELECT unnest(?))",
            [batch_ids],
        ).fetchall()
    return int(found[0][0])


@contextlib.contextmanager
def open_instance(folder: DataFolder) -> Iterator[Any]:
    """The data folder's Dagster instance (runs, event log, pool claims), as it is; on SQLite,
    its event log keeps its connections open for the command (sync_assets/operate/event_log.py)."""
    use_data_folder(folder)
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from sync_assets.operate.event_log import keep_open

    ref = keep_open(InstanceRef.from_dir(os.environ["DAGSTER_HOME"]))
    with dg.DagsterInstance.from_ref(ref) as instance:
        yield instance


def recover(folder: DataFolder, instance: Any) -> recovery.Findings:
    """Mark the runs whose process is gone failed and free the pool claims nobody will give
    back, saying so; what was found."""
    findings = recovery.find(instance, lock_held_here=is_held_here(folder))
    recovery.repair(instance, findings)
    for stuck in findings.stuck_runs:
        CONSOLE.notice(f"marked failed and freed its pool claims: {stuck.describe()}")
    dead = {stuck.facts.run_id for stuck in findings.stuck_runs}
    for stale in findings.stale_claims:
        if stale.claim.run_id not in dead:
            CONSOLE.notice(f"freed a stale pool claim: {stale.describe()}")
    return findings


@contextlib.contextmanager
def pipeline(folder: DataFolder) -> Iterator[Pipeline]:
    """Open the data folder's Dagster instance once (opening it costs about a second), after
    recovering it from any crash."""
    from sync_assets.definitions import build_definitions

    with open_instance(folder) as instance:
        recovered = recover(folder, instance)
        yield Pipeline(folder, build_definitions(folder), instance, recovered)
