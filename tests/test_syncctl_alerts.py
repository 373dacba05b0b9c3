"""`syncctl alerts` on a demo data folder, as on-call runs it: a run killed half way is marked
failed by `doctor --repair`, raised once as an ERROR (exit 1) to the log and a real webhook, and
resolved by the next run that succeeds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from commands import assert_no_traceback, syncctl
from test_alert_notify import TOKEN, Webhook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("alerts") / "syncfabric"
    built = syncctl(home, "demo", "--customers", "300", "--orders", "1200")
    assert built.returncode == 0, built.stderr
    return home


@pytest.fixture
def home(landed, tmp_path) -> Path:
    copy = tmp_path / "syncfabric"
    shutil.copytree(landed, copy)
    return copy


def open_alerts(home: Path, **env: str) -> tuple[int, dict, str]:
    listed = syncctl(home, "alerts", "--json", **env)
    assert_no_traceback(listed)
    return listed.returncode, json.loads(listed.stdout), listed.stderr


def test_a_failed_run_is_an_error_alert_until_a_run_succeeds(home):
    killed = syncctl(home, "run", SYNCFABRIC_CRASH_AT="after-step-start")
    assert killed.returncode == -9
    assert syncctl(home, "doctor", "--repair").returncode in (0, 1)  # marks the dead run failed

    with Webhook([503]) as webhook:
        code, first, logged = open_alerts(home, SYNCFABRIC_ALERT_WEBHOOK_URL=webhook.url)
        again, second, _ = open_alerts(home, SYNCFABRIC_ALERT_WEBHOOK_URL=webhook.url)

    assert (code, again) == (1, 1)
    [failed] = [a for a in first["open"] if a["kind"] == "run_failed"]
    assert (failed["severity"], failed["subject"], failed["notified"]) == (
        "ERROR",
        "ingest_batch",
        "sent",
    )
    assert failed["runbook_url"].endswith("/docs/runbooks/failed-runs.md")
    assert failed["key"] in first["raised"] and second["raised"] == []
    assert [b["kind"] for b in webhook.bodies] == ["run_failed", "run_failed"]  # 503, then sent
    assert "[ERROR] run_failed ingest_batch: run " in logged and TOKEN not in logged

    assert syncctl(home, "run").returncode == 0
    code, after, _ = open_alerts(home)
    assert failed["key"] in after["resolved"]
    assert code == 0 and all(a["severity"] == "WARN" for a in after["open"])


def test_text_output_names_each_open_alert_and_its_runbook(home):
    assert syncctl(home, "run").returncode == 0
    listed = syncctl(home, "alerts")
    assert listed.returncode == 0, listed.stderr
    # The demo's events are months old when ingested: the publish-to-ingest SLA (1 h) is missed.
    assert "WARN   latency  crm: " in listed.stdout and "runbooks/latency.md" in listed.stdout
