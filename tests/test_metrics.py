"""Metrics per hop (sync_assets/operate/metrics.py): they add up with the bookkeeping they come
from, are measured once per scope, and carry counts and times only."""

from __future__ import annotations

import sqlite3

from conftest import customer_created, land, run_core

from examples.demo.seed.platform import Faults, PlatformService
from sync_assets.ingest.landing import LandingZone
from sync_assets.operate import metrics
from sync_assets.runner import pipeline
from sync_assets.warehouse import connect


def by_metric(found: list[metrics.Metric]) -> dict[tuple[str, str], float]:
    return {(m.metric, m.subject): m.value for m in found}


def test_ingest_metrics_add_up_with_each_batch_and_are_recorded_once(data_folder):
    good = [customer_created(f"C-{n:06d}", event_id=f"crm-{n}") for n in range(1, 6)]
    bad = [
        customer_created("C-000007", data={"status": "dormant"}),
        customer_created("C-000008", data={"country": "Britain"}),
    ]
    land(data_folder, "first", good)
    land(data_folder, "second", [*good[:2], *bad, "{not json"])
    run_core(data_folder, [b.batch_id for b in LandingZone(data_folder.landing).pending()])

    with connect(data_folder.warehouse) as con:
        batches = metrics.unmeasured_batches(con)
        assert len(batches) == 2
        measured = {}
        for batch_id in batches:
            found = metrics.ingest_metrics(con, batch_id)
            measured[batch_id] = len(found)
            metrics.record(con, "ingest", batch_id, found)
            metrics.record(con, "ingest", batch_id, found)  # a resumed run measures nothing twice
            figures = by_metric(found)
            landed, applied, duplicates, dead = (
                figures[(name, "crm")]
                for name in ("landed", "applied", "duplicates", "dead_lettered")
            )
            ledger = con.execute(
                "SELECT landed, applied, duplicates, dead_lettered FROM batches WHERE batch_id = ?",
                [batch_id],
            ).fetchone()
            assert (landed, applied, duplicates, dead) == ledger
            assert landed == applied + duplicates + dead
            by_rule = sum(m.value for m in found if m.metric == "dead_letters")
            assert by_rule == dead
            p50, p95, most = (figures[(f"latency_{p}_s", "crm")] for p in ("p50", "p95", "max"))
            if applied:  # the events' time is BASE_TIME, well before their ingest
                assert 0 < p50 <= p95 <= most
        assert metrics.unmeasured_batches(con) == []
        recorded = con.execute(
            "SELECT scope, count(*) FROM metrics WHERE stage = 'ingest' GROUP BY scope"
        ).fetchall()
    assert {scope for scope, _ in recorded} == set(batches)
    assert dict(recorded) == measured  # one row per figure, however often recorded


def test_reconcile_and_delivery_metrics_match_what_was_found_and_delivered(landscape, monkeypatch):
    with sqlite3.connect(landscape.system_database("support")) as con:
        con.execute("UPDATE users SET name = name || ' (old)' WHERE id IN "
                    "(SELECT id FROM users ORDER BY id LIMIT 12)")  # fmt: skip
    with PlatformService(landscape.system_database("support"), seed=3) as platform:
        monkeypatch.setenv("SYNCFABRIC_SUPPORT_URL", platform.url)
        with pipeline(landscape) as runs:
            found = runs.reconcile()
            assert runs.emit_corrections(reviewed=12)
            platform.set_faults(Faults(error_rate=0.5))
            delivered = runs.deliver()

    with connect(landscape.warehouse, read_only=True) as con:
        reconciled = by_metric(metrics.reconcile_metrics(con, found.run_id))
        compared = con.execute(
            "SELECT system, sum(rows_compared), sum(mismatch) FROM reconcile_comparisons "
            "WHERE run_id = ? AND other_system IS NULL GROUP BY system",
            [found.run_id],
        ).fetchall()
        recorded = by_metric(
            [
                metrics.Metric(*row)
                for row in con.execute(
                    "SELECT metric, subject, value FROM metrics WHERE stage = 'deliver'"
                ).fetchall()
            ]
        )
        corrected = dict(
            con.execute(
                "SELECT subject, value FROM metrics WHERE stage = 'correct' AND scope = ?",
                [found.run_id],
            ).fetchall()
        )
        attempts = con.execute(
            "SELECT count(*), count(DISTINCT correction_id) FROM delivery_attempts "
            "WHERE destination = 'support'"
        ).fetchone()
    for system, rows, mismatch in compared:
        assert reconciled[("compared", system)] == rows
        assert reconciled[("mismatch", system)] == mismatch
    assert reconciled[("mismatch", "support")] == 12
    assert reconciled[("matched", "support")] == reconciled[("compared", "support")] - 12
    assert corrected == {"crm": 0, "billing": 0, "support": 12}

    # What the delivery run recorded is what its attempts say.
    assert recorded[("attempts", "support")] == attempts[0]
    assert recorded[("retries", "support")] == attempts[0] - attempts[1] > 0
    assert recorded[("delivered", "support")] + recorded[("dead_lettered", "support")] == 12
    assert recorded[("delivered", "support")] == delivered.counts["delivered"]
    assert 0 < recorded[("success_ratio", "support")] <= 1
    assert recorded[("dlq_depth", "support")] == recorded[("dead_lettered", "support")]
