"""The dashboard and the UI, as on-call sees them after a reconciliation that found drift.

A small demo is run, 12 support users drift (more than the ERROR threshold: the check fails),
`syncctl reconcile` reports it and `syncctl report` writes the page. Then: the page holds every
plot with the figures the warehouse holds and no record value; each stage's figures are numbers
in Dagster's metadata (which the UI plots); the report asset links its page; and a real browser
opens the asset graph, the failing check and the report, and sees what a person would.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from browser import chromium_page
from commands import instance_of, syncctl
from webserver import webserver

from sync_assets.jobs import INGEST_BATCH_JOB
from sync_assets.operate.assets import build_report
from sync_assets.project import current
from sync_assets.runner import BATCHES_TAG
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect
from sync_assets.warehouse.resource import WarehouseResource

pytestmark = pytest.mark.slow
DRIFTED = 12
SECTIONS = ["volume", "latency", "reconciliation", "delivery", "dead-letters", "slowest", "lineage"]


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("report") / "syncfabric"
    assert syncctl(home, "demo", "--customers", "300", "--orders", "1200").returncode == 0
    assert syncctl(home, "run").returncode == 0
    with sqlite3.connect(DataFolder(home).system_database("support")) as con:
        con.execute("UPDATE users SET name = name || ' (old)' WHERE id IN "
                    f"(SELECT id FROM users ORDER BY id LIMIT {DRIFTED})")  # fmt: skip
    found = syncctl(home, "reconcile")
    assert found.returncode == 1 and "support_customer_in_sync" in found.stderr + found.stdout
    written = syncctl(home, "report")
    assert written.returncode == 0, written.stderr
    return home


def test_the_report_plots_every_hop_with_the_warehouse_figures_and_no_record_value(drifted):
    page = (drifted / "report.html").read_text()
    for section in SECTIONS:
        assert re.search(f'<section [^>]*id="{section}"', page), section
    assert page.count("<svg") >= 10
    assert "no data yet" not in page.split('id="reconciliation"')[1].split("</section>")[0]
    # The last reconciliation's 12 mismatches in support, as a point of its plot.
    assert re.search(rf"<title>mismatch #\d+ [^<]*: {DRIFTED} records</title>", page)
    with connect(DataFolder(drifted).warehouse, read_only=True) as con:
        landed = con.execute("SELECT sum(landed) FROM batches").fetchone()[0]
        values = [
            v
            for row in con.execute("SELECT email, full_name, phone FROM golden_customer").fetchall()
            for v in row
            if v
        ]
    assert f"landed: <b>{landed:,}</b>" in page
    assert len(values) > 300 and not [v for v in values if v in page]


def test_each_stage_records_its_figures_as_numbers_the_ui_plots(drifted):
    with instance_of(drifted) as instance:

        def latest(key: str) -> dict:
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None and event.asset_materialization is not None
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}

        ledger = latest("batch_ledger")
        discrepancies = latest("discrepancies")
        ingest_runs = instance.get_runs(filters=dg.RunsFilter(job_name=INGEST_BATCH_JOB))
    # The ingest run names the batches it took, so a batch leads to its run in the UI.
    tagged = " ".join(run.tags.get(BATCHES_TAG, "") for run in ingest_runs).split()
    with connect(DataFolder(drifted).warehouse, read_only=True) as con:
        batch_ids = [row[0] for row in con.execute("SELECT batch_id FROM batches").fetchall()]
    assert batch_ids and set(batch_ids) <= set(tagged)
    assert all(isinstance(ledger[f"landed_{s}"], int | float) for s in current().system_names)
    assert ledger["latency_p95_s_crm"] >= ledger["latency_p50_s_crm"] > 0
    assert discrepancies["mismatch_support"] == DRIFTED
    assert discrepancies["matched_support"] == discrepancies["compared_support"] - DRIFTED


def test_the_report_asset_writes_the_page_and_links_it(drifted, tmp_path):
    folder = DataFolder(drifted)
    result = dg.materialize(
        [build_report(current())],
        resources={"warehouse": WarehouseResource(path=str(folder.warehouse))},
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("report")
    link = materialization.metadata["dashboard"].value
    assert link == (drifted / "report.html").resolve().as_uri()
    assert "Reconciliation outcomes per system" in (drifted / "report.html").read_text()


def test_a_browser_shows_the_graph_the_failing_check_and_the_report(drifted, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with webserver(drifted) as ui, chromium_page() as page:
        base = f"http://127.0.0.1:{ui.port}"

        # The reconcile group's graph: the snapshots feed discrepancies, whose checks show 6 of 7.
        page.goto(f"{base}/locations/sync_assets.definitions/asset-groups/reconcile")
        node = page.get_by_text("discrepancies", exact=True).filter(visible=True).first
        node.wait_for()
        assert (
            page.get_by_text("snapshot_support_customer", exact=True).filter(visible=True).count()
        )
        page.get_by_text("6 / 7 Passed").first.wait_for()
        page.screenshot(path=shots / "graph.png")

        # The failing check: its verdict, its counts and its sample, with PII masked.
        page.goto(f"{base}/assets/discrepancies?view=checks")
        page.get_by_text("support_customer_in_sync", exact=True).filter(visible=True).first.click()
        page.get_by_text(f"{DRIFTED} discrepancies in").first.wait_for()
        assert page.get_by_text("Failed", exact=True).filter(visible=True).count()
        sample = page.get_by_text(re.compile(r"^pii:[0-9a-f]{16}$")).filter(visible=True)
        assert sample.count() >= DRIFTED  # expected and actual names, masked
        page.screenshot(path=shots / "failing_check.png", full_page=True)

        # The report, opened from the data folder.
        page.goto((drifted / "report.html").resolve().as_uri())
        page.get_by_role("heading", name="Reconciliation outcomes per system").wait_for()
        for caption in ("Events per batch", "support: records differing per reconciliation",
                        "Publish-to-ingest latency per batch", "Ingest dead letters held, by rule"):  # fmt: skip
            figure = page.locator("figure", has=page.get_by_text(caption, exact=True))
            assert figure.locator("svg").count() == 1, caption
            assert figure.locator("svg circle, svg rect").count() > 0, caption
        # The column lineage, which the open-source UI does not show: email from the CRM onwards.
        lineage = page.locator("#lineage")
        assert lineage.get_by_text("Column lineage of demo").is_visible()
        email = lineage.locator("tr", has=page.get_by_text("email", exact=True)).first
        assert "crm" in email.inner_text() and "support" in email.inner_text()
        page.screenshot(path=shots / "report.png", full_page=True)

    for shot in ("graph", "failing_check", "report"):
        assert (shots / f"{shot}.png").stat().st_size > 10_000


def test_the_report_plots_the_latest_bus_lag_measurements(data_folder):
    from sync_assets.ingest.jetstream import Lag
    from sync_assets.operate import metrics, report

    with connect(data_folder.warehouse) as con:
        for pending in (7, 3, 0):
            metrics.record_bus_lag(con, [Lag("crm", pending, 0, 5.0 if pending else None)], "t")
        page = report.render(con, current())
        latest = report._metric_rows(con, metrics.BUS, ["pending"], latest=2)

    lag = page.split("Bus consumer lag: messages not acknowledged")[1].split("</figure>")[0]
    assert 'data-series="pending crm"' in lag
    assert [(name, value) for _, name, value in latest] == [
        ("pending crm", 3.0),
        ("pending crm", 0.0),
    ]
