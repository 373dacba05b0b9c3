"""`syncctl trace`: one change followed through every hop, from the warehouse's bookkeeping.

A drifted record's correction is traced from the owner's event to the next reconciliation that
confirms it; a refused event shows as a dead letter with its rule; a delivery through a failing
platform shows each attempt; `--record` names who set each attribute, and no value is printed.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from commands import assert_no_traceback, syncctl
from conftest import customer_created, land, run_core

from examples.demo.seed.platform import Faults, PlatformService
from sync_assets.operate.trace import trace_change, trace_record
from sync_assets.project import current
from sync_assets.runner import pipeline
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect

FLOW = ["published", "landed", "ingested", "validated", "applied", "discrepancy", "correction",
        "delivery", "delivered", "confirmed"]  # fmt: skip


def drift_support_names(folder: DataFolder, count: int) -> None:
    """Give `count` support users a stale name."""
    with sqlite3.connect(folder.system_database("support")) as con:
        con.execute(
            f"UPDATE users SET name = name || ' (old)' WHERE id IN "
            f"(SELECT id FROM users ORDER BY id LIMIT {count})"
        )


def corrections_to(folder: DataFolder, target: str) -> list[tuple]:
    with connect(folder.warehouse, read_only=True) as con:
        return con.execute(
            "SELECT correlation_id, correction_id, attempts, status FROM corrections "
            "WHERE target = ? ORDER BY attempts DESC, entity_key",
            [target],
        ).fetchall()


def in_order(hops: list[str], expected: list[str]) -> bool:
    """`expected` appears in `hops` as a subsequence."""
    remaining = iter(hops)
    return all(any(h == name for h in remaining) for name in expected)


def test_a_corrected_change_is_traced_from_its_event_to_the_confirming_reconciliation(landscape):
    drift_support_names(landscape, 3)
    with pipeline(landscape) as runs:
        assert runs.reconcile().checks  # emits the corrections
        assert runs.deliver().success
        assert runs.reconcile().success  # the next reconciliation confirms

    correlation_id, _, _, status = corrections_to(landscape, "support")[0]
    assert status == "delivered"
    with connect(landscape.warehouse, read_only=True) as con:
        timeline = trace_change(con, current(), correlation_id)
    names = [hop.hop for hop in timeline.hops]
    assert in_order(names, FLOW), names
    assert all(seconds is None or seconds >= 0 for seconds in timeline.durations()[1:])
    confirmed = next(hop for hop in timeline.hops if hop.hop == "confirmed")
    assert "support" in confirmed.detail and confirmed.ids["correction_id"]
    applied = next(hop for hop in timeline.hops if hop.hop == "applied")
    assert "current: " in applied.detail  # which attributes of the event are the golden values

    # The same through the command, as JSON, in the order of the flow.
    result = syncctl(landscape.root, "trace", correlation_id, "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert [h["hop"] for h in printed["hops"]] == names
    assert printed["hops"][0]["since_previous_seconds"] is None
    assert printed["total_seconds"] == pytest.approx(timeline.total_seconds)


def test_a_refused_event_is_traced_as_a_dead_letter_with_its_rule_then_its_accepted_resend(
    data_folder,
):
    bad = customer_created("C-000042", data={"status": "dormant"}, correlationid="chg-42")
    land(data_folder, "bad", [bad])
    fixed = customer_created("C-000042", correlationid="chg-42", event_id=bad["id"])
    fixed["source"] = bad["source"]
    land(data_folder, "fixed", [fixed])
    from sync_assets.ingest.landing import LandingZone

    run_core(data_folder, [b.batch_id for b in LandingZone(data_folder.landing).pending()])

    with connect(data_folder.warehouse, read_only=True) as con:
        timeline = trace_change(con, current(), "chg-42")
    names = [hop.hop for hop in timeline.hops]
    assert in_order(names, ["dead-lettered", "validated", "applied"]), names
    dead = next(hop for hop in timeline.hops if hop.hop == "dead-lettered")
    assert "rule isin" in dead.detail and "status" in dead.detail
    assert "resolved: accepted_copy" in dead.detail


def test_a_delivery_retried_through_a_failing_platform_shows_each_attempt(landscape, monkeypatch):
    drift_support_names(landscape, 12)
    with PlatformService(landscape.system_database("support"), seed=3) as platform:
        monkeypatch.setenv("SYNCFABRIC_SUPPORT_URL", platform.url)
        with pipeline(landscape) as runs:
            runs.reconcile()  # 12 of ~170 drifted fails at ERROR: emitted once reviewed
            assert runs.emit_corrections(reviewed=12)
            platform.set_faults(Faults(error_rate=0.5))
            runs.deliver()
    retried = [c for c in corrections_to(landscape, "support") if c[2] > 1 and c[3] == "delivered"]
    assert retried, "a 50% error rate retries some of 12 deliveries"
    correlation_id, correction_id, attempts, _ = retried[0]
    with connect(landscape.warehouse, read_only=True) as con:
        timeline = trace_change(con, current(), correlation_id)
    deliveries = [
        hop
        for hop in timeline.hops
        if hop.hop == "delivery" and hop.ids["correction_id"] == correction_id
    ]
    assert [hop.detail.split(":")[0] for hop in deliveries] == [
        f"attempt {n} to support" for n in range(1, attempts + 1)
    ]
    assert all("transient" in hop.detail for hop in deliveries[:-1])
    assert "delivered" in [hop.hop for hop in timeline.hops]


def test_a_record_history_names_who_set_each_attribute_and_prints_no_value(landscape):
    drift_support_names(landscape, 1)
    with pipeline(landscape) as runs:
        runs.reconcile()
        runs.deliver()
    with connect(landscape.warehouse, read_only=True) as con:
        (key,) = con.execute("SELECT entity_key FROM corrections").fetchone()
    with connect(landscape.warehouse, read_only=True) as con:
        entity = current().entity("customer")
        email = con.execute(
            f"SELECT email FROM {entity.golden_table} WHERE {entity.key} = ?", [key]
        ).fetchone()
        history = trace_record(con, current(), f"customer:{key}")
    setters = {s.attribute: s for s in history.setters}
    assert setters["email"].origin == "crm" and setters["email"].event_id
    assert [h.hop for h in history.timeline.hops].count("correction") == 1

    result = syncctl(landscape.root, "trace", "--record", f"customer:{key}")
    assert result.returncode == 0, result.stderr
    assert "email" in result.stdout and "crm event" in result.stdout
    if email and email[0]:
        assert email[0] not in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["no-such-change"], "no event, dead letter or correction carries"),
        (["--record", "invoice:1"], "is not <entity>:<key>"),
        ([], "give a CORRELATION_ID or --record"),
    ],
)
def test_trace_refuses_what_it_cannot_find_with_a_message(landscape, args, says):
    result = syncctl(landscape.root, "trace", *args)
    assert result.returncode == 2 and says in result.stderr
    assert_no_traceback(result)
