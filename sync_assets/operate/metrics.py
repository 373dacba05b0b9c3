"""Metrics per hop, measured from the warehouse's bookkeeping and kept in the `metrics` table.

Each stage measures what it just did and appends one row per (metric, subject) to `metrics`
(declared in sync_assets/warehouse/tables.py), scoped by what was measured:

| stage     | scope             | subject      | metrics                                                   |
| --------- | ----------------- | ------------ | --------------------------------------------------------- |
| ingest    | a batch id        | its system   | landed, applied, duplicates, dead_lettered, conflicts, superseded, latency_p50_s / p95 / max (publish to ingest: event `time` to the batch's raw ingest), events_per_second (landed to applied), apply_seconds |
| ingest    | a batch id        | a rule       | dead_letters (by the rule that refused them)              |
| reconcile | a reconcile run   | a system     | compared, matched, missing, extra, mismatch, divergence   |
| correct   | a reconcile run   | a system     | corrected (corrections emitted to it)                     |
| deliver   | a delivery run    | a destination| attempts, retries, delivered, dead_lettered, success_ratio, latency_p50_ms / p95, dlq_depth |
| bus       | a measurement     | its system   | pending (waiting + unacknowledged), waiting, unacknowledged, oldest_pending_s: its NATS JetStream consumer's lag, after `syncctl run` drained and acknowledged and at each bus sensor tick |

The same figures go into the asset's materialization metadata as numbers (`metadata()`), so the
Dagster UI plots each over time; `syncctl report` draws them from the table. Measuring is
idempotent: a scope already measured is not measured again, so a resumed run adds nothing twice.
Only counts and times: never a value of a record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb

from sync_assets.project import current
from sync_assets.project.model import Project
from sync_assets.warehouse import scalar
from sync_assets.warehouse.sql import quote

if TYPE_CHECKING:
    from sync_assets.ingest.jetstream import Lag


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q / 100 * len(ranked)) - 1))]


@dataclass(frozen=True)
class Metric:
    metric: str
    subject: str
    value: float


def unmeasured_batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Applied batches whose ingest metrics are not recorded yet (this run's, or a stopped one's)."""
    return [
        row[0]
        for row in con.execute(
            """SELECT batch_id FROM batches WHERE state = 'applied'
               AND batch_id NOT IN (SELECT scope FROM metrics WHERE stage = 'ingest')
               ORDER BY applied_at, batch_id"""
        ).fetchall()
    ]


def ingest_metrics(
    con: duckdb.DuckDBPyConnection, batch_id: str, project: Project | None = None
) -> list[Metric]:
    """One applied batch: its counts, its publish-to-ingest latency and how fast it went."""
    row = con.execute(
        """SELECT system, landed, applied, duplicates, dead_lettered,
                  epoch(applied_at) - epoch(landed_at), epoch(applied_at) - epoch(validated_at)
           FROM batches WHERE batch_id = ?""",
        [batch_id],
    ).fetchone()
    if row is None:
        return []
    system, landed, applied, duplicates, dead, took, apply_s = row
    out = [
        Metric("landed", system, landed or 0),
        Metric("applied", system, applied or 0),
        Metric("duplicates", system, duplicates or 0),
        Metric("dead_lettered", system, dead or 0),
        Metric("apply_seconds", system, round(apply_s or 0.0, 3)),
        Metric("events_per_second", system, round((landed or 0) / took, 1) if took else 0.0),
    ]
    conflicts, superseded = con.execute(
        "SELECT coalesce(sum(conflicts), 0), coalesce(sum(superseded), 0) "
        "FROM batch_applications WHERE batch_id = ?",
        [batch_id],
    ).fetchone() or (0, 0)
    out += [Metric("conflicts", system, conflicts), Metric("superseded", system, superseded)]
    # percentiles in DuckDB: a batch of a million events is not fetched into Python
    p50, p95, most = con.execute(
        "SELECT quantile_disc(late_s, 0.5), quantile_disc(late_s, 0.95), max(late_s) "
        f"FROM ({publish_to_ingest(project or current())})",
        {"batch": batch_id},
    ).fetchone() or (None, None, None)
    out += [
        Metric("latency_p50_s", system, round(p50 or 0.0, 3)),
        Metric("latency_p95_s", system, round(p95 or 0.0, 3)),
        Metric("latency_max_s", system, round(most or 0.0, 3)),
    ]
    for rule, count in con.execute(
        "SELECT rule, count(*) FROM dead_letters WHERE batch_id = ? GROUP BY rule ORDER BY rule",
        [batch_id],
    ).fetchall():
        out.append(Metric("dead_letters", rule, count))
    return out


def publish_to_ingest(project: Project) -> str:
    """SQL: (correlation_id, late_s) of each accepted event of the batch `$batch`: the seconds
    from the event's own `time` (its publication) to its batch's raw ingest. The latency metrics
    and the latency alert (operate/alerts.py) both read it."""
    return " UNION ALL ".join(
        "SELECT e.correlation_id, epoch(b.ingested_at) - epoch(e.event_time) AS late_s "
        f"FROM {quote(entity.events_table)} e JOIN batches b USING (batch_id) "
        "WHERE e.batch_id = $batch"
        for entity in project.entities.values()
    )


def reconcile_metrics(con: duckdb.DuckDBPyConnection, run_id: str) -> list[Metric]:
    """One reconciliation's outcome per system: compared against the golden records."""
    out = []
    for system, compared, missing, extra, mismatch, divergence, differing in con.execute(
        """SELECT c.system, c.rows_compared, c.missing, c.extra, c.mismatch, c.divergence,
                  (SELECT count(DISTINCT entity_key) FROM discrepancies d
                   WHERE d.run_id = c.run_id AND d.system = c.system AND d.entity = c.entity)
           FROM reconcile_comparisons c WHERE run_id = ? AND other_system IS NULL
           ORDER BY c.system, c.entity""",
        [run_id],
    ).fetchall():
        out += [
            Metric("compared", system, compared),
            Metric("matched", system, max(compared - differing, 0)),
            Metric("missing", system, missing),
            Metric("extra", system, extra),
            Metric("mismatch", system, mismatch),
            Metric("divergence", system, divergence),
        ]
    return _summed(out)


def delivery_metrics(con: duckdb.DuckDBPyConnection, delivery_run: str) -> list[Metric]:
    """One delivery run per destination: attempts, retries, outcomes, latency, DLQ depth."""
    out = []
    for destination, attempts, corrections, delivered, latencies in con.execute(
        """SELECT a.destination, count(*), count(DISTINCT a.correction_id),
                  count(DISTINCT a.correction_id) FILTER (WHERE c.status = 'delivered'),
                  list(a.latency_ms)
           FROM delivery_attempts a JOIN corrections c USING (correction_id)
           WHERE a.delivery_run = ? GROUP BY a.destination ORDER BY a.destination""",
        [delivery_run],
    ).fetchall():
        dead = scalar(
            con,
            "SELECT count(*) FROM corrections WHERE target = ? AND status = 'dead_lettered' "
            "AND delivery_run = ?",
            [destination, delivery_run],
        )
        out += [
            Metric("attempts", destination, attempts),
            Metric("retries", destination, attempts - corrections),
            Metric("delivered", destination, delivered),
            Metric("dead_lettered", destination, dead),
            Metric("success_ratio", destination, round(delivered / corrections, 4)),
            Metric("latency_p50_ms", destination, round(percentile(latencies, 50), 1)),
            Metric("latency_p95_ms", destination, round(percentile(latencies, 95), 1)),
        ]
    delivered_to = {m.subject for m in out}
    for destination, depth in con.execute(
        "SELECT target, count(*) FILTER (WHERE status = 'dead_lettered') FROM corrections "
        "GROUP BY target ORDER BY target"
    ).fetchall():
        if depth or destination in delivered_to:  # 0 too for this run's: the line falls to 0
            out.append(Metric("dlq_depth", destination, depth))
    return out


BUS = "bus"
"""The stage of the bus consumers' lag."""


def bus_metrics(lags: Iterable[Lag]) -> list[Metric]:
    """Each system's consumer lag (sync_assets/ingest/jetstream.py's `Lag`) as figures; the age is
    0 when nothing is pending, so the line falls to 0 once the consumer has caught up."""
    out = []
    for lag in lags:
        out += [
            Metric("pending", lag.system, lag.pending),
            Metric("waiting", lag.system, lag.waiting),
            Metric("unacknowledged", lag.system, lag.unacknowledged),
            Metric("oldest_pending_s", lag.system, round(lag.oldest_age_s or 0.0, 3)),
        ]
    return out


def record_bus_lag(con: duckdb.DuckDBPyConnection, lags: Iterable[Lag], origin: str) -> str | None:
    """One measurement of the bus consumers' lag, by `origin` (`run`, `sensor`): its scope; None
    when nothing is pending and nothing was at the last measurement of each system (a sensor
    ticking every 30 s on an idle bus adds no rows)."""
    lags = list(lags)
    latest = latest_bus_lag(con)
    if all(not lag.pending and lag.system in latest and not latest[lag.system].pending
           for lag in lags):  # fmt: skip
        return None
    scope = f"{origin}-{uuid.uuid4().hex[:12]}"
    record(con, BUS, scope, bus_metrics(lags))
    return scope


@dataclass(frozen=True)
class BusLag:
    """A system's latest measured consumer lag."""

    measured_at: datetime
    pending: int
    oldest_pending_s: float

    def oldest_at(self, now: datetime) -> float:
        """The oldest pending message's age now: what was pending then has aged since, unless
        something acknowledged it (a later measurement says so)."""
        if not self.pending:
            return 0.0
        return self.oldest_pending_s + max(0.0, (now - self.measured_at).total_seconds())


def latest_bus_lag(con: duckdb.DuckDBPyConnection) -> dict[str, BusLag]:
    """System -> its latest bus lag measurement (none for a system never measured)."""
    found = {}
    for system, measured_at, pending, oldest in con.execute(
        """WITH latest AS (SELECT subject, arg_max(scope, measured_at) AS scope FROM metrics
                           WHERE stage = ? GROUP BY subject)
           SELECT m.subject, max(m.measured_at),
                  coalesce(max(m.value) FILTER (WHERE m.metric = 'pending'), 0),
                  coalesce(max(m.value) FILTER (WHERE m.metric = 'oldest_pending_s'), 0)
           FROM metrics m JOIN latest l USING (subject, scope) WHERE m.stage = ?
           GROUP BY m.subject ORDER BY m.subject""",
        [BUS, BUS],
    ).fetchall():
        found[system] = BusLag(measured_at, int(pending), float(oldest))
    return found


def record(
    con: duckdb.DuckDBPyConnection, stage: str, scope: str, metrics: Iterable[Metric]
) -> None:
    """Append a measurement; a scope measured already is left as it was."""
    rows = [(stage, scope, m.metric, m.subject, float(m.value)) for m in metrics]
    if not rows or scalar(
        con, "SELECT count(*) FROM metrics WHERE stage = ? AND scope = ?", [stage, scope]
    ):
        return
    con.executemany(
        "INSERT INTO metrics (measured_at, stage, scope, metric, subject, value) "
        "VALUES (now(), ?, ?, ?, ?, ?)",
        rows,
    )


def metadata(metrics: Iterable[Metric]) -> dict[str, float]:
    """Materialization metadata: one number per metric and subject, which the UI plots."""
    return {f"{m.metric}_{m.subject}": float(m.value) for m in _summed(list(metrics))}


RATES = ("_s", "_ms", "_ratio", "_per_second", "_depth")
"""Metrics that are not counts: over several scopes, the worst (largest) one is kept."""


def _summed(metrics: list[Metric]) -> list[Metric]:
    """Counts of the same metric and subject added up (a system holding two entities, several
    batches); of a latency, a ratio or a depth, the largest."""
    totals: dict[tuple[str, str], float] = {}
    for m in metrics:
        key = (m.metric, m.subject)
        if key not in totals:
            totals[key] = m.value
        elif m.metric.endswith(RATES):
            totals[key] = max(totals[key], m.value)
        else:
            totals[key] += m.value
    return [Metric(metric, subject, value) for (metric, subject), value in totals.items()]
