"""Sending an alert (sync_assets/operate/alerts.py) where a person sees it: the log, and a webhook.

The webhook is `SYNCFABRIC_ALERT_WEBHOOK_URL` (none: the log and the `alerts` table only): a JSON
POST of the alert, retried on a connection error, a 429 or a 5xx with exponential backoff and full
jitter (sync_assets/deliver/retry.py's policy), honouring Retry-After. Its URL may hold a token
(a chat's incoming webhook does), so no message names more of it than its scheme and host.

What is sent is what the table holds: counts, ids and names, never a value.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sync_assets.deliver.retry import RetryPolicy
from sync_assets.errors import SyncfabricError
from sync_assets.operate.alerts import (
    Alert,
    Facts,
    FailedCheck,
    FailedRun,
    OpenAlert,
    Recorded,
    evaluate,
    mark_notified,
    open_alerts,
    record,
)
from sync_assets.operate.runbooks import runbook_url
from sync_assets.project.model import Project
from sync_assets.settings import DataFolder

WEBHOOK_ENV = "SYNCFABRIC_ALERT_WEBHOOK_URL"
LOG = logging.getLogger("syncfabric.alerts")
POLICY = RetryPolicy(base_s=0.2, cap_s=5.0, max_attempts=4)
TIMEOUT_S = 10.0


def payload(alert: Alert, project: str) -> dict[str, object]:
    return {**alert.as_dict(), "project": project, "runbook_url": runbook_url(alert.runbook)}


def log_line(alert: Alert) -> str:
    ids = f"; correlation ids {', '.join(alert.correlation_ids)}" if alert.correlation_ids else ""
    return f"[{alert.severity}] {alert.kind} {alert.subject}: {alert.summary}{ids} (runbook {alert.runbook})"


def webhook_url() -> str | None:
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SyncfabricError(
            f"{WEBHOOK_ENV} is not an http(s) URL (its scheme is {parts.scheme or 'missing'!r}); "
            "set it to the webhook's URL, or unset it to send alerts to the log only"
        )
    return url


def shown(url: str) -> str:
    """What a message may say of the webhook's URL: its scheme and host, the rest masked."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/***"


@dataclass(frozen=True)
class Sent:
    ok: bool
    attempts: int
    error: str | None = None

    @property
    def verdict(self) -> str:
        return "sent" if self.ok else f"failed: {self.error}"


def post(
    url: str,
    body: dict[str, object],
    *,
    policy: RetryPolicy = POLICY,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Sent:
    """POST `body` as JSON to `url`, retrying what may pass; never raises for the webhook's own
    failure (the alert is stored either way), and never names the URL beyond its host."""
    rng = rng or random.Random()
    data = json.dumps(body).encode()
    error = "not sent"
    for attempt in range(1, policy.max_attempts + 1):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        retry_after = None
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                answer.read()
            return Sent(True, attempt)
        except urllib.error.HTTPError as failed:
            error = f"{shown(url)} answered {failed.code}"
            if failed.code != 429 and failed.code < 500:
                return Sent(False, attempt, error)
            retry_after = _seconds(failed.headers.get("Retry-After"))
        except (urllib.error.URLError, OSError) as failed:
            reason = getattr(failed, "reason", failed)
            error = f"{shown(url)} unreachable ({type(reason).__name__})"
        if not policy.exhausted(attempt):
            sleep(policy.delay(attempt, rng, retry_after))
    return Sent(False, policy.max_attempts, f"{error}, after {policy.max_attempts} attempts")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def notify(
    alert: Alert, project: str, *, url: str | None = None, **post_options: object
) -> Sent | None:
    """Log the alert, and POST it to the webhook when there is one; what the webhook said."""
    (LOG.error if alert.severity == "ERROR" else LOG.warning)(log_line(alert))
    if url is None:
        return None
    sent = post(url, payload(alert, project), **post_options)  # type: ignore[arg-type]
    if not sent.ok:
        LOG.error("alert %s not sent to the webhook: %s", alert.key, sent.error)
    return sent


def raise_alerts(
    warehouse: Path,
    project: Project,
    facts: Facts | None = None,
    *,
    now: datetime | None = None,
    **post_options: object,
) -> Recorded:
    """Evaluate the rules now, record what changed, and send each alert raised (`send`)."""
    from sync_assets.warehouse import connect

    now = now or datetime.now(UTC)
    with connect(warehouse) as con:
        found, judged = evaluate(con, project, now, facts or Facts())
    return send(warehouse, project, found, judged, now=now, **post_options)


def send(
    warehouse: Path,
    project: Project,
    found: Sequence[Alert],
    judged: Collection[str] = (),
    *,
    now: datetime | None = None,
    **post_options: object,
) -> Recorded:
    """Record `found` (one short transaction: the ones not open are raised, the open ones of the
    kinds `judged` not found are resolved), then send each alert raised: to the log, and to the
    webhook when `SYNCFABRIC_ALERT_WEBHOOK_URL` names one. Raises the warehouse's refusal (exit
    75) when another process holds it."""
    from sync_assets.warehouse import connect, transaction

    url = webhook_url()
    now = now or datetime.now(UTC)
    with connect(warehouse) as con:
        with transaction(con):
            recorded = record(con, found, judged, now)
        for alert in recorded.raised:
            sent = notify(alert, project.name, url=url, **post_options)
            if sent is not None:
                with transaction(con):
                    mark_notified(con, alert, sent.verdict)
    for key in recorded.resolved:
        LOG.info("resolved: %s", key)
    return recorded


def listed(warehouse: Path) -> list[OpenAlert]:
    """The open alerts, ERROR first (read-only)."""
    from sync_assets.warehouse import connect

    with connect(warehouse, read_only=True) as con:
        return open_alerts(con)


def failed_runs(instance: Any) -> list[FailedRun]:
    """Per job, its latest finished run when it failed: the fact `run_failed` judges."""
    import dagster as dg

    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]),
        limit=500,
    )
    latest: dict[str, Any] = {}
    for run in runs:  # newest first
        latest.setdefault(run.job_name, run)
    return [
        FailedRun(run.run_id, job)
        for job, run in sorted(latest.items())
        if run.status == dg.DagsterRunStatus.FAILURE
    ]


def failed_checks(instance: Any, check_keys: Iterable[Any]) -> list[FailedCheck]:
    """The checks among `check_keys` whose latest evaluation failed at ERROR: the fact
    `check_failed` takes for business rules and the other checks. The reconciliation's own checks
    (on `discrepancies`) are left out: the warehouse's comparisons judge those."""
    import dagster as dg

    keys = [k for k in check_keys if k.asset_key != dg.AssetKey("discrepancies")]
    found = []
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    for key, execution in sorted(latest.items(), key=lambda item: item[0].to_user_string()):
        entry = execution.event
        evaluation = (
            entry.dagster_event.event_specific_data if entry and entry.dagster_event else None
        )
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        if evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        broken = evaluation.metadata.get("unexpected")  # a business rule's rows breaking it
        count = broken.value if broken is not None and isinstance(broken.value, int) else 0
        found.append(FailedCheck(key.name, key.asset_key.to_user_string(), count, execution.run_id))
    return found


@dataclass(frozen=True)
class Evaluation:
    recorded: Recorded
    open: list[OpenAlert]

    @property
    def errors(self) -> int:
        return sum(1 for found in self.open if found.alert.severity == "ERROR")

    def as_dict(self) -> dict[str, object]:
        return {
            "raised": [a.key for a in self.recorded.raised],
            "resolved": self.recorded.resolved,
            "open": [
                {**found.as_dict(), "runbook_url": runbook_url(found.alert.runbook)}
                for found in self.open
            ],
        }

    def lines(self) -> list[str]:
        if not self.open:
            return ["no alert open"]
        return [
            f"{found.alert.severity:<5}  {found.alert.kind}  {found.alert.subject}: "
            f"{found.alert.summary}\n       since {found.raised_at:%Y-%m-%d %H:%M:%S}Z; "
            f"runbook {runbook_url(found.alert.runbook)}"
            for found in self.open
        ]


def evaluate_now(folder: DataFolder, project: Project) -> Evaluation:
    """What `syncctl alerts` does: the facts from the data folder's Dagster instance (each job's
    latest run, each check's latest evaluation), the rules over its warehouse, and what is open."""
    from sync_assets.definitions import build_definitions
    from sync_assets.runner import open_instance

    checks = build_definitions(folder, project).get_repository_def().asset_graph.asset_check_keys
    with open_instance(folder) as instance:
        facts = Facts(
            failed_runs=failed_runs(instance), failed_checks=failed_checks(instance, checks)
        )
    recorded = raise_alerts(folder.warehouse, project, facts)
    return Evaluation(recorded, listed(folder.warehouse))
