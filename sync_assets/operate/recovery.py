"""Runs whose process is gone, and pool claims nobody will give back.

A run killed mid-way (SIGKILL, OOM, a power cut) stays STARTED or NOT_STARTED in Dagster's
instance forever, and keeps its claim on the `duckdb_writer` pool: every later run then waits for a
slot that never frees, saying nothing on the console. Dagster's daemon frees the claims of
*finished* runs (run_monitoring in dagster.yaml), but its default run launcher cannot tell that a
run's worker died, and `syncctl` runs no daemon at all. So whoever opens the instance to run
something asks here first:

- a run launched by syncctl (tag `syncfabric/launched_by=syncctl`) is dead when this process
  holds the data folder's lock and the run is not finished: no other syncctl can be running it.
  Without the lock, its process (tag `syncfabric/pid`) must be gone.
- any other run (the UI, the daemon) is dead when its worker process is gone: the pid on its
  RUN_START event, a process that must have started no later than the run (a pid can be reused).
- a pool claim is stale when its run is finished, unknown, or dead.

Dead runs are marked failed (the UI shows why) and their claims freed. Pids are only meaningful
on one machine: the UI's run workers and syncctl must share the host (and its pid namespace), as
they do when both use the same data folder on a local disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync_assets.operate.processes import is_same_process

LAUNCHED_BY_TAG = "syncfabric/launched_by"
PID_TAG = "syncfabric/pid"
SYNCCTL = "syncctl"


def launch_tags() -> dict[str, str]:
    """The tags of every run syncctl starts: who launched it, and from which process."""
    return {LAUNCHED_BY_TAG: SYNCCTL, PID_TAG: str(os.getpid())}


@dataclass(frozen=True)
class RunFacts:
    """What recovery needs to know about an unfinished run, read from the instance."""

    run_id: str
    job_name: str
    status: str
    launched_by_syncctl: bool
    pid: int | None
    """The process running it: the syncctl pid tag, or the pid on its RUN_START event."""
    started: datetime | None
    """When it started, or was created if it never started."""


@dataclass(frozen=True)
class StuckRun:
    facts: RunFacts
    why: str

    def describe(self) -> str:
        f = self.facts
        started = f"{f.started:%Y-%m-%d %H:%M:%S} UTC" if f.started else "an unknown time"
        return f"run {f.run_id} ({f.job_name}, {f.status}, started {started}): {self.why}"

    def as_dict(self) -> dict[str, object]:
        f = self.facts
        return {
            "run_id": f.run_id,
            "job": f.job_name,
            "status": f.status,
            "started": f.started.isoformat() if f.started else None,
            "launched_by": SYNCCTL if f.launched_by_syncctl else "dagster",
            "pid": f.pid,
            "why": self.why,
        }


@dataclass(frozen=True)
class Claim:
    """A run's hold on a concurrency pool: a slot it holds, or a step queued for one."""

    pool: str
    run_id: str
    step_key: str | None
    queued: bool


@dataclass(frozen=True)
class StaleClaim:
    claim: Claim
    why: str

    def describe(self) -> str:
        c = self.claim
        what = "a queued step" if c.queued else "a slot"
        return f"pool {c.pool}: {what} of run {c.run_id} (step {c.step_key or '?'}): {self.why}"

    def as_dict(self) -> dict[str, object]:
        c = self.claim
        return {
            "pool": c.pool,
            "run_id": c.run_id,
            "step": c.step_key,
            "queued": c.queued,
            "why": self.why,
        }


@dataclass
class Findings:
    stuck_runs: list[StuckRun] = field(default_factory=list)
    stale_claims: list[StaleClaim] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.stuck_runs and not self.stale_claims


def why_dead(
    run: RunFacts,
    *,
    lock_held_here: bool,
    alive: Callable[[int, datetime | None], bool] = is_same_process,
) -> str | None:
    """Why this unfinished run can no longer be running, or None if it may still be."""
    if run.pid == os.getpid():
        return None  # this very process runs it
    if run.launched_by_syncctl and lock_held_here:
        return "launched by syncctl, which is not running in this data folder any more"
    if run.pid is None:
        return None  # not started by a worker we can see; the daemon's run monitoring times it out
    if not alive(run.pid, run.started):
        return f"its process (pid {run.pid}) is gone"
    return None


def why_stale(run_status: str | None, dead_run_ids: set[str], run_id: str) -> str | None:
    """Why a pool claim of this run is stale, or None if its run still needs it."""
    if run_status is None:
        return "no such run in the instance"
    if run_id in dead_run_ids:
        return "its run's process is gone"
    if run_status in FINISHED:
        return f"its run has finished ({run_status})"
    return None


UNFINISHED = ("NOT_STARTED", "STARTING", "STARTED", "CANCELING")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


# ---- reading and repairing a Dagster instance -----------------------------------------------


def find(instance: Any, *, lock_held_here: bool) -> Findings:
    """The runs that are dead but not marked so, and the pool claims nobody will free."""
    findings = Findings()
    for facts in unfinished_runs(instance):
        why = why_dead(facts, lock_held_here=lock_held_here)
        if why:
            findings.stuck_runs.append(StuckRun(facts, why))
    dead = {stuck.facts.run_id for stuck in findings.stuck_runs}
    claims = pool_claims(instance)
    statuses = _statuses(instance, {claim.run_id for claim in claims})
    for claim in claims:
        why = why_stale(statuses.get(claim.run_id), dead, claim.run_id)
        if why:
            findings.stale_claims.append(StaleClaim(claim, why))
    return findings


def repair(instance: Any, findings: Findings) -> None:
    """Mark the dead runs failed and free every stale claim."""
    for stuck in findings.stuck_runs:
        run = instance.get_run_by_id(stuck.facts.run_id)
        if run is not None and not run.is_finished:
            instance.report_run_failed(
                run, f"Marked failed by syncctl: {stuck.why}. Its pool claims were freed."
            )
    for run_id in {s.facts.run_id for s in findings.stuck_runs} | {
        s.claim.run_id for s in findings.stale_claims
    }:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


BLOCKED_BY_POOL = "Step blocked by limit for pool "
"""How Dagster's engine event says a step waits for a pool slot."""


def holders(instance: Any, pool: str) -> list[str]:
    """The runs holding slots of `pool`, each as 'run <id> (<job>, <status>, launched by ...)'."""
    claimed = [c for c in pool_claims(instance) if c.pool == pool and not c.queued]
    described = []
    for run_id in dict.fromkeys(c.run_id for c in claimed):
        run = instance.get_run_by_id(run_id)
        if run is None:
            described.append(f"run {run_id} (unknown to the instance)")
            continue
        who = SYNCCTL if run.tags.get(LAUNCHED_BY_TAG) == SYNCCTL else "the UI or the daemon"
        described.append(f"run {run_id} ({run.job_name}, {run.status.value}, launched by {who})")
    return described


def unfinished_runs(instance: Any) -> list[RunFacts]:
    import dagster as dg

    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus(s) for s in UNFINISHED])
    )
    facts = []
    for record in records:
        run = record.dagster_run
        syncctl = run.tags.get(LAUNCHED_BY_TAG) == SYNCCTL
        pid = _int(run.tags.get(PID_TAG)) if syncctl else None
        if pid is None:
            pid = _run_start_pid(instance, run.run_id)
        started = record.start_time or record.create_timestamp.timestamp()
        facts.append(
            RunFacts(
                run_id=run.run_id,
                job_name=run.job_name,
                status=run.status.value,
                launched_by_syncctl=syncctl,
                pid=pid,
                started=_utc(started),
            )
        )
    return facts


def pool_claims(instance: Any) -> list[Claim]:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    claims = []
    for pool, info in storage.get_concurrency_infos(sorted(storage.get_concurrency_keys())).items():
        for slot in info.claimed_slots:
            claims.append(Claim(pool, slot.run_id, slot.step_key, queued=False))
        for step in info.pending_steps:
            if step.assigned_timestamp is None:  # an assigned pending step also holds a slot
                claims.append(Claim(pool, step.run_id, step.step_key, queued=True))
    return claims


def _statuses(instance: Any, run_ids: set[str]) -> dict[str, str]:
    import dagster as dg

    if not run_ids:
        return {}
    runs = instance.get_runs(filters=dg.RunsFilter(run_ids=sorted(run_ids)))
    return {run.run_id: run.status.value for run in runs}


def _run_start_pid(instance: Any, run_id: str) -> int | None:
    import dagster as dg

    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
    ).records
    event = records[0].event_log_entry.dagster_event if records else None
    return event.pid if event is not None else None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _utc(timestamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None
