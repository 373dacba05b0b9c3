"""Alerts: each rule fires on its fault, seeded in a real data folder (batches landed and run through
ingest, or the rows a delivery or a reconciliation records), and stays silent without it; the
alerts table raises a condition once and resolves it when it clears; the settings' `alerts:`."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from conftest import DEMO_PROJECT, customer_created, land, rows, run_core

from sync_assets.errors import SyncfabricError
from sync_assets.operate import alerts
from sync_assets.operate.alerts import Facts, FailedCheck, FailedRun
from sync_assets.project import current
from sync_assets.project.load import load_project
from sync_assets.project.model import AlertLimits, AlertSettings
from sync_assets.warehouse import connect, transaction

NOW = datetime.now(UTC)


def project_with(**limits: object):
    """The demo project with these alert limits for every system."""
    project = current()
    settings = AlertSettings(defaults=AlertLimits(**limits))  # type: ignore[arg-type]
    return dataclasses.replace(
        project, settings=dataclasses.replace(project.settings, alerts=settings)
    )


def evaluated(folder, project=None, now=NOW, facts: Facts | None = None) -> list[alerts.Alert]:
    with connect(folder.warehouse) as con:
        found, _ = alerts.evaluate(con, project or current(), now, facts or Facts())
    return found


def kinds(found) -> list[tuple[str, str, str]]:
    return sorted((a.kind, a.subject, a.detail) for a in found)


def fresh(n: int, *, late_s: float = 10) -> list[dict]:
    """n valid customers from the CRM, dated `late_s` seconds before now."""
    return [
        customer_created(f"C-{i:06d}", time=NOW - timedelta(seconds=late_s))
        for i in range(1, n + 1)
    ]


def test_a_healthy_folder_raises_nothing(data_folder):
    run_core(data_folder, [land(data_folder, "ok", fresh(3)).batch_id])
    assert evaluated(data_folder) == []


def test_dead_letters_held_past_the_limit(data_folder):
    bad = [customer_created(f"C-{i:06d}", data={"status": "weird"}) for i in range(1, 4)]
    run_core(data_folder, [land(data_folder, "bad", [*fresh(1), *bad]).batch_id])

    assert evaluated(data_folder, project_with(dead_letters_held=3)) == []
    [alert] = evaluated(data_folder, project_with(dead_letters_held=2))
    assert (alert.kind, alert.severity, alert.subject) == ("dead_letters", "WARN", "crm")
    assert alert.counts["held"] == 3 and alert.counts["limit"] == 2
    assert alert.correlation_ids == ()  # dead letters have none
    assert "weird" not in alert.summary  # counts and rules, never values


def test_ingest_latency_past_its_sla(data_folder):
    late = [customer_created(f"C-{i:06d}", time=NOW - timedelta(hours=3)) for i in range(1, 8)]
    run_core(data_folder, [land(data_folder, "late", [*late, *fresh(1)]).batch_id])

    [alert] = evaluated(data_folder, project_with(ingest_latency_s=3600))
    assert (alert.kind, alert.subject, alert.detail) == ("latency", "crm", "ingest")
    assert alert.counts["late_events"] == 7
    held = {c for (c,) in rows(data_folder, "SELECT correlation_id FROM validated_customer_events")}
    assert len(alert.correlation_ids) == 5 and set(alert.correlation_ids) <= held
    assert evaluated(data_folder, project_with(ingest_latency_s=4 * 3600)) == []


def test_a_stale_system_and_a_fresh_one(data_folder):
    run_core(data_folder, [land(data_folder, "ok", fresh(1)).batch_id])
    [(landed,)] = rows(data_folder, "SELECT landed_at FROM batches")

    assert evaluated(data_folder, now=landed + timedelta(hours=23)) == []
    [alert] = evaluated(data_folder, now=landed + timedelta(hours=25))
    assert (alert.kind, alert.severity, alert.subject, alert.detail) == (
        "stale",
        "ERROR",
        "crm",
        "batch",
    )
    # The other systems never sent a batch: not judged (a new landscape is not stale).


def snapshot(folder, system: str, at: datetime, error: str | None = None) -> None:
    with connect(folder.warehouse) as con:
        con.execute(
            "INSERT OR REPLACE INTO snapshot_attempts VALUES (?, 'customer', 'r1', ?, ?, ?)",
            [system, at, None if error else 10, error],
        )


def test_a_system_not_snapshotted_within_its_sla(data_folder):
    snapshot(data_folder, "billing", NOW - timedelta(minutes=30))
    assert evaluated(data_folder) == []
    snapshot(data_folder, "billing", NOW - timedelta(hours=3))
    assert kinds(evaluated(data_folder)) == [("stale", "billing", "snapshot")]
    snapshot(data_folder, "billing", NOW - timedelta(minutes=10), error="unreachable")
    [alert] = evaluated(data_folder)  # the latest attempt failed: no good snapshot known since
    assert "latest snapshot of an entity failed" in alert.summary


def correction(con, n: int, target: str) -> str:
    cid = f"corr-{target}-{n}"
    con.execute(
        "INSERT INTO corrections (correction_id, idempotency_key, base_key, kind, reconcile_run_id, "
        "emitted_at, target, entity, entity_key, action, attributes, golden_version, causation_id, "
        "correlation_id, event, status) VALUES (?, ?, ?, 'correction', 'rec-1', ?, ?, 'customer', "
        "?, 'updated', '{}', 'v', 'cause', ?, '{}', 'pending')",
        [cid, f"k-{cid}", f"b-{cid}", NOW, target, f"C-{n:06d}", f"cor-{target}-{n}"],
    )
    return cid


def attempts(folder, target: str, outcomes: list[str], latency_ms: float = 20) -> None:
    """What a delivery run records: one attempt per correction, in order."""
    with connect(folder.warehouse) as con:
        start = con.execute("SELECT count(*) FROM corrections").fetchone()[0]  # type: ignore[index]
        for i, outcome in enumerate(outcomes):
            cid = correction(con, start + i, target)
            con.execute(
                "INSERT INTO delivery_attempts VALUES (?, 1, ?, 'run-1', ?, ?, ?, ?)",
                [
                    cid,
                    target,
                    NOW - timedelta(seconds=len(outcomes) - i),
                    latency_ms,
                    outcome,
                    None if outcome == "applied" else "HTTP 503",
                ],
            )


def test_a_destination_failing_in_a_row(data_folder):
    attempts(data_folder, "support", ["applied", "transient", "transient"])
    assert evaluated(data_folder) == []
    attempts(data_folder, "support", ["transient"])
    [alert] = evaluated(data_folder)
    assert (alert.kind, alert.severity, alert.subject) == (
        "destination_failing",
        "ERROR",
        "support",
    )
    assert alert.counts["failed_in_a_row"] == 3
    assert alert.correlation_ids == ("cor-support-3", "cor-support-2", "cor-support-1")
    attempts(data_folder, "support", ["applied"])
    assert evaluated(data_folder) == []


def test_a_destination_with_its_dead_letters_held(data_folder):
    with connect(data_folder.warehouse) as con:
        for n in range(3):
            cid = correction(con, n, "billing")
            con.execute(
                "INSERT INTO delivery_dead_letters VALUES (?, 'billing', 'permanent', ['HTTP 400'], "
                "1, ?, ?, 0)",
                [cid, NOW, NOW if n == 0 else None],
            )
    assert evaluated(data_folder) == []  # one of the three was redriven
    with connect(data_folder.warehouse) as con:
        con.execute("UPDATE delivery_dead_letters SET redriven_at = NULL")
    [alert] = evaluated(data_folder)
    assert alert.kind == "destination_failing" and alert.counts["dead_letters_held"] == 3


def test_delivery_latency_past_its_sla(data_folder):
    attempts(data_folder, "billing", ["applied", "applied"], latency_ms=50)
    assert evaluated(data_folder) == []
    assert kinds(evaluated(data_folder, project_with(delivery_latency_ms=40))) == [
        ("latency", "billing", "delivery")
    ]


def comparison(folder, discrepancies: int, rows_compared: int = 100) -> None:
    with connect(folder.warehouse) as con:
        con.execute(
            "INSERT INTO reconcile_comparisons VALUES ('rec-1', ?, 'customer__billing', "
            "'customer', 'billing', NULL, ?, ?, 0, 0, 0)",
            [NOW, rows_compared, discrepancies],
        )
        con.execute(
            "INSERT INTO golden_customer (customer_id, last_version, last_event_id, "
            "last_correlation_id) VALUES ('C-000001', 'v', 'e1', 'cor-golden-1')"
        )
        con.execute(
            "INSERT INTO discrepancies (run_id, detected_at, kind, resolution, system, entity, "
            "entity_key) VALUES ('rec-1', ?, 'missing', 'drift', 'billing', 'customer', 'C-000001')",
            [NOW],
        )


def test_a_reconciliation_check_failing_at_error(data_folder):
    comparison(data_folder, discrepancies=5)  # WARN: at most 10
    assert evaluated(data_folder) == []
    with connect(data_folder.warehouse) as con:
        con.execute("UPDATE reconcile_comparisons SET missing = 40")
    [alert] = evaluated(data_folder)
    assert (alert.kind, alert.subject, alert.detail) == (
        "check_failed",
        "billing",
        "reconcile/customer__billing",
    )
    assert alert.counts["discrepancies"] == 40
    assert alert.correlation_ids == ("cor-golden-1",)


def test_failed_checks_and_runs_given_as_facts(data_folder):
    facts = Facts(
        failed_runs=[FailedRun("run-9", "reconcile", ("snapshot_crm_customer",))],
        failed_checks=[FailedCheck("rule_positive_total", "golden_order", 4, "run-9")],
    )
    found = evaluated(data_folder, facts=facts)
    assert kinds(found) == [
        ("check_failed", "golden_order", "given/rule_positive_total"),
        ("run_failed", "reconcile", "reconcile"),
    ]
    assert all(a.severity == "ERROR" for a in found)
    assert evaluated(data_folder, facts=Facts(failed_runs=[], failed_checks=[])) == []


def test_a_consumer_behind_on_the_bus_by_its_latest_measurement(data_folder):
    from sync_assets.ingest.jetstream import Lag
    from sync_assets.operate import metrics

    def measure(*lags: Lag) -> None:
        with connect(data_folder.warehouse) as con:
            metrics.record_bus_lag(con, lags, "test")

    assert evaluated(data_folder, project_with(bus_pending=0)) == [], "never measured: no bus"
    measure(Lag("crm", 40, 10, 90.0), Lag("billing", 0, 0, None))
    assert evaluated(data_folder) == [], "within the default limits"
    [alert] = evaluated(data_folder, project_with(bus_pending=49))
    assert (alert.kind, alert.severity, alert.subject, alert.detail) == (
        "bus_lag",
        "WARN",
        "crm",
        "bus",
    )
    assert alert.counts["pending"] == 50 and alert.counts["limit_pending"] == 49
    assert alert.runbook == "bus-lag"
    assert evaluated(data_folder, project_with(bus_pending=50, bus_oldest_s=100)) == []
    later = datetime.now(UTC) + timedelta(seconds=30)  # nothing measured since: it has aged
    [aged] = evaluated(data_folder, project_with(bus_pending=50, bus_oldest_s=100), now=later)
    assert aged.counts["oldest_s"] >= 119 and "stored" in aged.summary

    measure(Lag("crm", 0, 0, None))  # caught up: the latest measurement speaks
    assert evaluated(data_folder, project_with(bus_pending=0, bus_oldest_s=1), now=later) == []
    measured = "SELECT count(DISTINCT scope) FROM metrics WHERE stage = 'bus'"
    assert rows(data_folder, measured) == [(2,)]
    measure(Lag("crm", 0, 0, None), Lag("billing", 0, 0, None))
    assert rows(data_folder, measured) == [(2,)], "idle, and idle at the last measurement"


def test_an_open_condition_is_raised_once_and_resolved_when_it_clears(data_folder):
    def tick(facts: Facts) -> alerts.Recorded:
        with connect(data_folder.warehouse) as con, transaction(con):
            found, judged = alerts.evaluate(con, current(), NOW, facts)
            return alerts.record(con, found, judged, NOW)

    failed = Facts(failed_runs=[FailedRun("run-1", "ingest_batch")])
    assert [a.kind for a in tick(failed).raised] == ["run_failed"]
    again = tick(failed)
    assert again.raised == [] and [a.kind for a in again.still_open] == ["run_failed"]
    assert tick(Facts()).resolved == []  # runs not known this time: left open
    assert tick(Facts(failed_runs=[])).resolved == ["run_failed:ingest_batch:ingest_batch"]
    assert [a.kind for a in tick(failed).raised] == ["run_failed"]  # raised anew
    assert rows(data_folder, "SELECT count(*), count(resolved_at) FROM alerts") == [(2, 1)]


def test_alert_settings_from_syncfabric_yaml(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT, root)
    settings = root / "syncfabric.yaml"
    text = settings.read_text()
    settings.write_text(
        text + "alerts:\n  dead_letters_held: 7\n  correlation_ids: 2\n"
        "  systems:\n    support: {consecutive_failures: 5}\n"
    )
    loaded = load_project(root).settings.alerts
    assert loaded.correlation_ids == 2
    assert loaded.limits("crm") == AlertLimits(dead_letters_held=7)
    assert loaded.limits("support") == AlertLimits(dead_letters_held=7, consecutive_failures=5)

    settings.write_text(text + "alerts:\n  ingest_latency_s: -1\n")
    with pytest.raises(SyncfabricError) as refused:
        load_project(root)
    assert "alerts.ingest_latency_s: Input should be greater than 0" in str(refused.value)
    settings.write_text(text + "alerts:\n  systems:\n    nowhere: {batch_within_s: 60}\n")
    with pytest.raises(SyncfabricError) as refused:
        load_project(root)
    assert "alert limits for 'nowhere', which is no system of the project" in str(refused.value)
