"""Sending alerts: to the log (names and counts only), the alerts table, and a webhook on a real
loopback HTTP server that fails, recovers, or refuses; its URL never shown beyond its host."""

from __future__ import annotations

import http.server
import json
import logging
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest import customer_created, land, rows, run_core
from ports import refused_port

from sync_assets.deliver.retry import RetryPolicy
from sync_assets.errors import SyncfabricError
from sync_assets.operate import notify
from sync_assets.operate.alerts import Alert, Facts, FailedRun
from sync_assets.operate.runbooks import DOCS, runbook_url
from sync_assets.project import current

FAST = {"policy": RetryPolicy(base_s=0.001, cap_s=0.002, max_attempts=4), "rng": random.Random(1)}
TOKEN = "s3cr3t-T0KEN-in-path"
ALERT = Alert("run_failed", "ERROR", "ingest_batch", "ingest_batch", "run r1 of job x failed")


class Webhook:
    """A loopback server answering each POST with the next status of `answers` (then 200),
    keeping the JSON bodies it received."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = list(answers)
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.lock:
                    hook.bodies.append(body)
                    status = hook.answers.pop(0) if hook.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{TOKEN}"

    def __enter__(self) -> Webhook:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook([503, 503]) as running:
        yield running


def test_a_webhook_failing_twice_then_succeeding_gets_the_alert(webhook):
    sent = notify.post(webhook.url, notify.payload(ALERT, "demo"), **FAST)  # type: ignore[arg-type]
    assert (sent.ok, sent.attempts) == (True, 3)
    assert len(webhook.bodies) == 3 and webhook.bodies[0] == webhook.bodies[2]
    body = webhook.bodies[-1]
    assert body["kind"] == "run_failed" and body["project"] == "demo"
    assert body["runbook_url"] == (DOCS / "runbooks" / "failed-runs.md").as_uri()


def test_a_webhook_that_stays_down_is_reported_without_its_url():
    with Webhook([500] * 10) as down:
        sent = notify.post(down.url, {"x": 1}, **FAST)  # type: ignore[arg-type]
    assert not sent.ok and sent.attempts == 4 and len(down.bodies) == 4
    assert TOKEN not in (sent.error or "") and "answered 500, after 4 attempts" in (
        sent.error or ""
    )

    unreachable = f"http://127.0.0.1:{refused_port()}/hooks/{TOKEN}"
    sent = notify.post(unreachable, {"x": 1}, **FAST)  # type: ignore[arg-type]
    assert not sent.ok and TOKEN not in (sent.error or "") and "unreachable" in (sent.error or "")


def test_a_refusal_is_not_retried():
    with Webhook([400]) as refusing:
        sent = notify.post(refusing.url, {"x": 1}, **FAST)  # type: ignore[arg-type]
    assert (sent.ok, sent.attempts, len(refusing.bodies)) == (False, 1, 1)


def test_runbook_urls(monkeypatch):
    monkeypatch.delenv("SYNCFABRIC_DOCS_URL", raising=False)
    assert runbook_url("dead-letters") == (DOCS / "runbooks" / "dead-letters.md").as_uri()
    assert (DOCS / "runbooks" / "dead-letters.md").is_file()
    monkeypatch.setenv("SYNCFABRIC_DOCS_URL", "https://docs.example.com/syncfabric/")
    assert runbook_url("delivery.md") == "https://docs.example.com/syncfabric/runbooks/delivery.md"


def test_a_bad_webhook_url_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(notify.WEBHOOK_ENV, f"ftp://host/{TOKEN}")
    with pytest.raises(SyncfabricError) as refused:
        notify.webhook_url()
    assert notify.WEBHOOK_ENV in refused.value.message and TOKEN not in refused.value.message


def test_new_alerts_go_to_the_log_the_table_and_the_webhook_once(
    data_folder, webhook, monkeypatch, caplog
):
    bad = [customer_created("C-000001", data={"status": "weird", "full_name": "Ada Secret"})]
    run_core(data_folder, [land(data_folder, "b", bad).batch_id])
    monkeypatch.setenv(notify.WEBHOOK_ENV, webhook.url)
    facts = Facts(failed_runs=[FailedRun("run-1", "ingest_batch")])
    caplog.set_level(logging.INFO, "syncfabric.alerts")

    first = notify.raise_alerts(data_folder.warehouse, current(), facts, **FAST)  # type: ignore[arg-type]
    again = notify.raise_alerts(data_folder.warehouse, current(), facts, **FAST)  # type: ignore[arg-type]

    assert [a.kind for a in first.raised] == ["run_failed"] and again.raised == []
    assert [b["kind"] for b in webhook.bodies] == ["run_failed"] * 3  # 503, 503, then 200
    assert rows(data_folder, "SELECT kind, notified FROM alerts") == [("run_failed", "sent")]
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "[ERROR] run_failed ingest_batch: run run-1 of job ingest_batch failed (runbook failed-runs)"
    ]
    assert all("Ada" not in line and TOKEN not in line for line in logged)
    [listed] = notify.listed(data_folder.warehouse)
    assert listed.alert.kind == "run_failed" and listed.notified == "sent"
    assert listed.raised_at <= datetime.now(UTC)
