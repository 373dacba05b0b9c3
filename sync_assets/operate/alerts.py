"""Alerts: the rules that say something needs a person, evaluated over the warehouse, and the
`alerts` table that remembers which are open.

| kind                  | raised when                                                        | severity |
| --------------------- | ------------------------------------------------------------------ | -------- |
| `run_failed`          | the latest run of a job failed (a fact from Dagster)              | ERROR    |
| `check_failed`        | a check failed at ERROR: a reconciliation comparison of the latest run (from the warehouse), or a business rule (a fact) | ERROR |
| `dead_letters`        | a system's ingest dead letters held exceed `dead_letters_held`    | WARN     |
| `latency`             | events of a system's latest batch took longer than `ingest_latency_s` from their time to ingestion, or attempts of a destination's latest delivery run took longer than `delivery_latency_ms` | WARN |
| `destination_failing` | a destination's last `consecutive_failures` attempts all failed, or as many of its dead letters are held | ERROR |
| `stale`               | a system's last batch landed longer ago than `batch_within_s`, or its last successful snapshot is older than `snapshot_within_s` (a system that never sent a batch, or was never snapshotted, is not judged) | ERROR |
| `bus_lag`             | a system's latest measured NATS JetStream consumer lag (`metrics`, stage `bus`) has more than `bus_pending` messages not acknowledged, or the oldest of them is older than `bus_oldest_s` (aged since the measurement) | WARN |

The limits are per system, from syncfabric.yaml's `alerts:` (`AlertSettings`). An alert names
counts, ids and names only, never a value (PII stays sealed), and up to `correlation_ids` of the
correlation ids involved (late events', corrections', the last change of each record a failed check
found differing; dead letters have none).

Each alert has a key (its kind, subject and what exactly failed): `record` raises an alert whose
key is not open yet, leaves an open one open (its `last_seen_at` moves), and resolves the open
alerts of the kinds evaluated whose condition is gone. Pure logic over a DuckDB connection; the
sensors (sensors/alerts.py) and `syncctl alerts` wire it, sync_assets/operate/notify.py sends it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from sync_assets.operate.metrics import latest_bus_lag, publish_to_ingest
from sync_assets.project.model import Project
from sync_assets.reconcile.comparisons import comparisons, latest_run
from sync_assets.reconcile.policy import verdict
from sync_assets.warehouse.sql import quote

ERROR, WARN = "ERROR", "WARN"

KINDS = (
    "run_failed",
    "check_failed",
    "dead_letters",
    "latency",
    "destination_failing",
    "stale",
    "bus_lag",
)
WAREHOUSE_KINDS = ("dead_letters", "latency", "destination_failing", "stale", "bus_lag")
"""The kinds judged from the warehouse alone; `run_failed` and `check_failed` take facts too."""
RECONCILE_SCOPE, GIVEN_SCOPE = "check_failed/reconcile", "check_failed/given"
"""A failed check is judged from the warehouse (a reconciliation's comparisons) or given as a
fact (a business rule): each resolves only when its own source is judged."""


def scope(key: str) -> str:
    """What judging an alert's key takes: its kind, and for a check where its verdict came from."""
    kind, _, detail = key.split(":", 2)
    return f"{kind}/{detail.split('/', 1)[0]}" if kind == "check_failed" else kind


RUNBOOKS = {
    "run_failed": "failed-runs",
    "check_failed": "reconciliation",
    "dead_letters": "dead-letters",
    "latency": "latency",
    "destination_failing": "destination-outage",
    "stale": "stale-system",
    "bus_lag": "bus-lag",
}
"""Kind -> its runbook (docs/runbooks/<name>.md)."""

FAILED_OUTCOMES = ("transient", "permanent")
"""Delivery attempts' outcomes that are failures (sync_assets/deliver/engine.py); the others
(delivered, replayed, stale, changed, ...) are the destination answering."""


@dataclass(frozen=True)
class FailedRun:
    """A fact from Dagster: the latest run of `job` failed."""

    run_id: str
    job: str
    steps: tuple[str, ...] = ()
    """The steps that failed, by name."""


@dataclass(frozen=True)
class FailedCheck:
    """A fact from Dagster: a check (a business rule, ...) failed at ERROR in its latest run."""

    name: str
    subject: str
    """What it checks: an asset, a system."""
    failing: int = 0
    """Rows breaking it."""
    run_id: str = ""


@dataclass(frozen=True)
class Facts:
    """What the warehouse cannot say. `None`: not known this time (the kind is not judged, its
    open alerts stay open); a list, even empty: the whole truth (the others are resolved)."""

    failed_runs: Sequence[FailedRun] | None = None
    failed_checks: Sequence[FailedCheck] | None = None


@dataclass(frozen=True)
class Alert:
    kind: str
    severity: str
    subject: str
    detail: str
    """What exactly failed within the subject (a job, a check name, a measure): part of the key."""
    summary: str
    counts: dict[str, int] = field(default_factory=dict)
    correlation_ids: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}:{self.detail}"

    @property
    def runbook(self) -> str:
        return RUNBOOKS[self.kind]

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "kind": self.kind,
            "severity": self.severity,
            "subject": self.subject,
            "summary": self.summary,
            "counts": self.counts,
            "correlation_ids": list(self.correlation_ids),
            "runbook": self.runbook,
        }


# ---- the rules -----------------------------------------------------------------------------------


def evaluate(
    con: duckdb.DuckDBPyConnection, project: Project, now: datetime, facts: Facts = Facts()
) -> tuple[list[Alert], set[str]]:
    """Every alert whose condition holds now, and the kinds judged (see `Facts`)."""
    found: list[Alert] = []
    judged = {*WAREHOUSE_KINDS, RECONCILE_SCOPE}
    if facts.failed_runs is not None:
        found += run_failures(facts.failed_runs)
        judged.add("run_failed")
    found += reconciliation_failures(con, project)
    if facts.failed_checks is not None:
        found += check_failures(facts.failed_checks)
        judged.add(GIVEN_SCOPE)
    found += dead_letters_held(con, project)
    found += ingest_latency(con, project) + delivery_latency(con, project)
    found += failing_destinations(con, project)
    found += stale_systems(con, project, now)
    found += bus_lag(con, project, now)
    return found, judged


def run_failures(failed: Iterable[FailedRun]) -> list[Alert]:
    return [
        Alert(
            "run_failed",
            ERROR,
            run.job,
            run.job,
            f"run {run.run_id} of job {run.job} failed"
            + (f" at {', '.join(run.steps)}" if run.steps else ""),
            {"failed_steps": len(run.steps)},
        )
        for run in failed
    ]


def reconciliation_failures(con: duckdb.DuckDBPyConnection, project: Project) -> list[Alert]:
    """The reconciliation checks of the latest run failing at ERROR (judged by the project's
    thresholds, as checks/reconcile.py does)."""
    found = []
    run_id = latest_run(con)
    ids = project.settings.alerts.correlation_ids
    for comparison in comparisons(con, run_id) if run_id else []:
        if (
            verdict(comparison.discrepancies, comparison.rows_compared, project.settings.thresholds)
            != "error"
        ):
            continue
        # The records found differing, by the correlation id of their last change (the
        # corrections, when emitted, carry the same one): an ERROR check blocks the corrections.
        entity = project.entity(comparison.entity)
        correlation = _ids(
            con,
            f"SELECT DISTINCT g.last_correlation_id FROM discrepancies d "
            f"JOIN {quote(entity.golden_table)} g ON g.{quote(entity.key)} = d.entity_key "
            "WHERE d.run_id = ? AND d.entity = ? AND d.system IN (?, ?) ORDER BY 1 LIMIT ?",
            [
                run_id,
                comparison.entity,
                comparison.system,
                comparison.other_system or comparison.system,
                ids,
            ],
        )
        found.append(
            Alert(
                "check_failed",
                ERROR,
                comparison.system,
                f"reconcile/{comparison.check_name}",
                f"check {comparison.check_name} failed at ERROR in reconciliation {run_id}: "
                f"{comparison.discrepancies} discrepancies in {comparison.rows_compared} rows",
                {
                    "discrepancies": comparison.discrepancies,
                    "rows_compared": comparison.rows_compared,
                    **comparison.counts,
                },
                correlation,
            )
        )
    return found


def check_failures(facts: Iterable[FailedCheck]) -> list[Alert]:
    """The failed checks given (business rules, ...)."""
    found = []
    for check in facts:
        found.append(
            Alert(
                "check_failed",
                ERROR,
                check.subject,
                f"given/{check.name}",
                f"check {check.name} on {check.subject} failed at ERROR"
                + (f" in run {check.run_id}" if check.run_id else "")
                + f": {check.failing} rows break it",
                {"failing": check.failing},
            )
        )
    return found


def dead_letters_held(con: duckdb.DuckDBPyConnection, project: Project) -> list[Alert]:
    held = dict(
        con.execute(
            "SELECT b.system, count(*) FROM dead_letters d JOIN batches b USING (batch_id) "
            "WHERE d.resolution IS NULL GROUP BY b.system"
        ).fetchall()
    )
    found = []
    for system in project.system_names:
        limit = project.settings.alerts.limits(system).dead_letters_held
        count = int(held.get(system, 0))
        if count > limit:
            by_rule = dict(
                con.execute(
                    "SELECT d.rule, count(*) FROM dead_letters d JOIN batches b USING (batch_id) "
                    "WHERE d.resolution IS NULL AND b.system = ? GROUP BY d.rule ORDER BY d.rule",
                    [system],
                ).fetchall()
            )
            found.append(
                Alert(
                    "dead_letters",
                    WARN,
                    system,
                    "held",
                    f"{count} ingest dead letters from {system} are held, more than {limit}; "
                    f"by rule: {', '.join(f'{r} {n}' for r, n in by_rule.items())}",
                    {"held": count, "limit": limit, **{f"rule:{r}": n for r, n in by_rule.items()}},
                )
            )
    return found


def ingest_latency(con: duckdb.DuckDBPyConnection, project: Project) -> list[Alert]:
    """Per system, the events of its latest ingested batch later than the SLA: from their own
    time to the batch's ingestion."""
    found = []
    for system in project.system_names:
        latest = con.execute(
            "SELECT batch_id, ingested_at FROM batches WHERE system = ? AND ingested_at IS NOT "
            "NULL AND state IN ('validated', 'applied') ORDER BY ingested_at DESC, batch_id DESC "
            "LIMIT 1",
            [system],
        ).fetchone()
        if latest is None:
            continue
        batch_id, _ = latest
        sla = project.settings.alerts.limits(system).ingest_latency_s
        late = f"FROM ({publish_to_ingest(project)}) WHERE late_s > $sla"
        count, worst = con.execute(
            f"SELECT count(*), max(late_s) {late}", {"batch": batch_id, "sla": sla}
        ).fetchone() or (0, None)
        if not count:
            continue
        correlation = _ids(
            con,
            f"SELECT correlation_id {late} ORDER BY late_s DESC, correlation_id LIMIT $n",
            {"batch": batch_id, "sla": sla, "n": project.settings.alerts.correlation_ids},
        )
        found.append(
            Alert(
                "latency",
                WARN,
                system,
                "ingest",
                f"{count} events of {system}'s latest batch {batch_id} took longer than "
                f"{sla:g} s from their time to ingestion (the slowest {worst:.0f} s)",
                {"late_events": int(count), "worst_s": int(worst), "sla_s": int(sla)},
                correlation,
            )
        )
    return found


def delivery_latency(con: duckdb.DuckDBPyConnection, project: Project) -> list[Alert]:
    """Per destination, the attempts of its latest delivery run slower than the SLA."""
    found = []
    for system in project.system_names:
        latest = con.execute(
            "SELECT delivery_run FROM delivery_attempts WHERE destination = ? "
            "ORDER BY started_at DESC LIMIT 1",
            [system],
        ).fetchone()
        if latest is None:
            continue
        sla = project.settings.alerts.limits(system).delivery_latency_ms
        slow = "FROM delivery_attempts a JOIN corrections c USING (correction_id) WHERE a.destination = $d AND a.delivery_run = $run AND a.latency_ms > $sla"
        params = {"d": system, "run": latest[0], "sla": sla}
        count, worst = con.execute(
            f"SELECT count(*), max(a.latency_ms) {slow}", params
        ).fetchone() or (0, None)
        if not count:
            continue
        correlation = _ids(
            con,
            f"SELECT DISTINCT c.correlation_id {slow} ORDER BY 1 LIMIT $n",
            {**params, "n": project.settings.alerts.correlation_ids},
        )
        found.append(
            Alert(
                "latency",
                WARN,
                system,
                "delivery",
                f"{count} delivery attempts to {system} in run {latest[0]} took longer than "
                f"{sla:g} ms (the slowest {worst:.0f} ms)",
                {"slow_attempts": int(count), "worst_ms": int(worst), "sla_ms": int(sla)},
                correlation,
            )
        )
    return found


def failing_destinations(con: duckdb.DuckDBPyConnection, project: Project) -> list[Alert]:
    """A destination whose last N attempts all failed, or with N dead letters held."""
    failed = ", ".join(f"'{outcome}'" for outcome in FAILED_OUTCOMES)
    found = []
    ids = project.settings.alerts.correlation_ids
    for system in project.system_names:
        n = project.settings.alerts.limits(system).consecutive_failures
        last = con.execute(
            f"SELECT a.outcome IN ({failed}), c.correlation_id FROM delivery_attempts a "
            "JOIN corrections c USING (correction_id) WHERE a.destination = ? "
            "ORDER BY a.started_at DESC, a.attempt DESC LIMIT ?",
            [system, n],
        ).fetchall()
        in_a_row = len(last) if len(last) == n and all(f for f, _ in last) else 0
        held = con.execute(
            "SELECT c.correlation_id FROM delivery_dead_letters d JOIN corrections c "
            "USING (correction_id) WHERE d.destination = ? AND d.redriven_at IS NULL "
            "ORDER BY d.dead_lettered_at, c.correlation_id",
            [system],
        ).fetchall()
        if not in_a_row and len(held) < n:
            continue
        correlation = tuple(dict.fromkeys(c for _, c in last if in_a_row))
        correlation = tuple(dict.fromkeys((*correlation, *(c for (c,) in held))))[:ids]
        why = []
        if in_a_row:
            why.append(f"its last {in_a_row} delivery attempts failed")
        if len(held) >= n:
            why.append(f"{len(held)} of its corrections are held as dead letters")
        found.append(
            Alert(
                "destination_failing",
                ERROR,
                system,
                "delivery",
                f"destination {system} is failing: {' and '.join(why)} (limit {n})",
                {"failed_in_a_row": in_a_row, "dead_letters_held": len(held), "limit": n},
                correlation,
            )
        )
    return found


def stale_systems(con: duckdb.DuckDBPyConnection, project: Project, now: datetime) -> list[Alert]:
    found = []
    batches = dict(
        con.execute("SELECT system, max(landed_at) FROM batches GROUP BY system").fetchall()
    )
    snapshots = {
        system: (oldest, failed)
        for system, oldest, failed in con.execute(
            "SELECT system, min(attempted_at) FILTER (WHERE error IS NULL), "
            "min(attempted_at) FILTER (WHERE error IS NOT NULL) FROM snapshot_attempts "
            "GROUP BY system"
        ).fetchall()
    }
    for system in project.system_names:
        limits = project.settings.alerts.limits(system)
        batch = batches.get(system)
        if batch is not None and (now - batch).total_seconds() > limits.batch_within_s:
            age = (now - batch).total_seconds()
            found.append(
                Alert(
                    "stale",
                    ERROR,
                    system,
                    "batch",
                    f"{system} is stale: its last batch landed {age:.0f} s ago "
                    f"({batch.isoformat()}), longer than {limits.batch_within_s:g} s",
                    {"age_s": int(age), "within_s": int(limits.batch_within_s)},
                )
            )
        if system not in snapshots:
            continue
        # One row per entity: its latest attempt. The stalest entity speaks for the system; one
        # whose latest attempt failed has no successful snapshot known since then.
        taken, failed = snapshots[system]
        within = limits.snapshot_within_s
        if failed is not None:
            why, age = f"its latest snapshot of an entity failed ({failed.isoformat()})", -1.0
        elif taken is not None and (now - taken).total_seconds() > within:
            age = (now - taken).total_seconds()
            why = f"its oldest entity snapshot was taken {age:.0f} s ago ({taken.isoformat()})"
        else:
            continue
        found.append(
            Alert(
                "stale",
                ERROR,
                system,
                "snapshot",
                f"{system} is stale: {why}; no successful snapshot within {within:g} s",
                {"age_s": int(age), "within_s": int(within)},
            )
        )
    return found


def bus_lag(con: duckdb.DuckDBPyConnection, project: Project, now: datetime) -> list[Alert]:
    """Per system, its consumer on the bus behind: by its latest lag measurement, more messages
    not acknowledged than `bus_pending`, or the oldest stored longer ago than `bus_oldest_s`. A
    system never measured (no bus) is not judged."""
    found = []
    for system, lag in latest_bus_lag(con).items():
        if system not in project.systems:
            continue
        limits = project.settings.alerts.limits(system)
        age = lag.oldest_at(now)
        why = []
        if lag.pending > limits.bus_pending:
            why.append(f"{lag.pending} messages not acknowledged, more than {limits.bus_pending}")
        if lag.pending and age > limits.bus_oldest_s:
            why.append(f"the oldest stored {age:.0f} s ago, longer than {limits.bus_oldest_s:g} s")
        if not why:
            continue
        found.append(
            Alert(
                "bus_lag",
                WARN,
                system,
                "bus",
                f"{system}'s consumer on the bus is behind: {' and '.join(why)} "
                f"(measured {lag.measured_at.isoformat()})",
                {
                    "pending": lag.pending,
                    "oldest_s": int(age),
                    "limit_pending": limits.bus_pending,
                    "limit_oldest_s": int(limits.bus_oldest_s),
                },
            )
        )
    return found


def _ids(con: duckdb.DuckDBPyConnection, sql: str, params: object) -> tuple[str, ...]:
    return tuple(row[0] for row in con.execute(sql, params).fetchall())  # type: ignore[arg-type]


# ---- the alerts table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    raised: list[Alert]
    """New: their condition was not open."""
    still_open: list[Alert]
    resolved: list[str]
    """The keys of the alerts whose condition is gone."""


def record(
    con: duckdb.DuckDBPyConnection,
    found: Sequence[Alert],
    judged: Collection[str],
    now: datetime,
) -> Recorded:
    """Raise the alerts not open yet, keep the open ones, resolve the open ones of the kinds
    judged that were not found again. Run it in a transaction."""
    open_keys = {
        key
        for (key,) in con.execute(
            "SELECT alert_key FROM alerts WHERE resolved_at IS NULL"
        ).fetchall()
    }
    found_now = {alert.key: alert for alert in found}  # one per key
    raised = [a for k, a in found_now.items() if k not in open_keys]
    still = [a for k, a in found_now.items() if k in open_keys]
    for alert in raised:
        con.execute(
            "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            [
                uuid.uuid4().hex,
                alert.key,
                alert.kind,
                alert.severity,
                alert.subject,
                alert.summary,
                json.dumps(alert.counts, sort_keys=True),
                list(alert.correlation_ids),
                alert.runbook,
                now,
                now,
            ],
        )
    if still:
        con.execute(
            "UPDATE alerts SET last_seen_at = ? WHERE resolved_at IS NULL AND list_contains(?, alert_key)",
            [now, [a.key for a in still]],
        )
    resolved = sorted(key for key in open_keys - set(found_now) if scope(key) in set(judged))
    if resolved:
        con.execute(
            "UPDATE alerts SET resolved_at = ? WHERE resolved_at IS NULL AND list_contains(?, alert_key)",
            [now, resolved],
        )
    return Recorded(raised, still, resolved)


def mark_notified(con: duckdb.DuckDBPyConnection, alert: Alert, verdict: str) -> None:
    con.execute(
        "UPDATE alerts SET notified = ? WHERE alert_key = ? AND resolved_at IS NULL",
        [verdict, alert.key],
    )


@dataclass(frozen=True)
class OpenAlert:
    alert: Alert
    raised_at: datetime
    last_seen_at: datetime
    notified: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            **self.alert.as_dict(),
            "raised_at": self.raised_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "notified": self.notified,
        }


def open_alerts(con: duckdb.DuckDBPyConnection) -> list[OpenAlert]:
    rows = con.execute(
        "SELECT alert_key, kind, severity, subject, summary, counts, correlation_ids, raised_at, "
        "last_seen_at, notified FROM alerts WHERE resolved_at IS NULL "
        "ORDER BY severity = 'ERROR' DESC, raised_at, alert_key"
    ).fetchall()
    return [
        OpenAlert(
            Alert(
                kind,
                severity,
                subject,
                key.split(":", 2)[2],
                summary,
                json.loads(counts),
                tuple(correlation),
            ),
            raised_at,
            last_seen,
            notified,
        )
        for key, kind, severity, subject, summary, counts, correlation, raised_at, last_seen, notified in rows
    ]
