"""Ingest dead letters: held until redriven or re-sent fixed; a redrive goes the way of any batch."""

from __future__ import annotations

import dagster as dg
import pytest
from conftest import customer_created, land, rows, run_core

from sync_assets.catalog.contracts import Contract, PayloadVersion
from sync_assets.errors import SyncfabricError
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.ops import redrive_ingest_dead_letters
from sync_assets.ingest.redrive import choose, held, redrive
from sync_assets.project import current
from sync_assets.resources import default_resources
from sync_assets.warehouse import connect, transaction


def redrive_now(folder, refs=(), rule=None):
    with connect(folder.warehouse) as con, transaction(con):
        return redrive(con, LandingZone(folder.landing), choose(con, list(refs), rule))


def test_a_dead_letter_redriven_after_its_contract_is_registered_is_applied(
    data_folder, monkeypatch
):
    batch = land(
        data_folder,
        "0001",
        [customer_created(event_id="new-1", schema_version=3), customer_created("C-000002")],
    )
    run_core(data_folder, [batch.batch_id])
    with connect(data_folder.warehouse, read_only=True) as con:
        [letter] = held(con)
    assert (letter.event_id, letter.rule) == ("new-1", "contract")

    # The fix: version 3 of the customer payload is registered (here, as a team would in code).
    customer = current().entity("customer")
    v3 = PayloadVersion(customer, 3, dict(current().payload_versions[("customer", 2)].fields))
    monkeypatch.setitem(current().contracts, ("customer.created", 3), Contract(v3, "created"))
    redriven = redrive_now(data_folder, ["new-1"])
    redrive_batch = LandingZone(data_folder.landing).locate(redriven.batches["crm"])
    run_core(data_folder, [redrive_batch.batch_id])

    assert redriven.events == 1 and redrive_batch.path.name.startswith("redrive-")
    assert rows(data_folder, "SELECT resolution, resolved_by FROM dead_letters") == [
        ("redriven", redrive_batch.batch_id)
    ]
    assert rows(
        data_folder, "SELECT batch_id, state, landed, validated FROM batches ORDER BY landed_at"
    ) == [(batch.batch_id, "applied", 2, 1), (redrive_batch.batch_id, "applied", 1, 1)]
    assert rows(data_folder, "SELECT count(*) FROM golden_customer") == [(2,)]
    with connect(data_folder.warehouse, read_only=True) as con:
        assert held(con) == []


def test_a_redriven_line_refused_again_is_a_new_held_dead_letter(data_folder):
    batch = land(data_folder, "0001", [customer_created(data={"status": "weird"})])
    run_core(data_folder, [batch.batch_id])

    again = LandingZone(data_folder.landing).locate(
        redrive_now(data_folder, rule="isin").batches["crm"]
    )
    run_core(data_folder, [again.batch_id])

    assert rows(
        data_folder, "SELECT batch_id, resolution FROM dead_letters ORDER BY dead_lettered_at"
    ) == [(batch.batch_id, "redriven"), (again.batch_id, None)]
    with connect(data_folder.warehouse, read_only=True) as con:
        assert [d.batch_id for d in held(con)] == [again.batch_id]


def test_unknown_and_resolved_references_are_errors_that_say_so(data_folder):
    batch = land(data_folder, "0001", [customer_created(event_id="x", data={"status": "weird"})])
    run_core(data_folder, [batch.batch_id])
    redrive_now(data_folder, [f"{batch.batch_id}:1"])

    with pytest.raises(SyncfabricError, match="nope \\(no such dead letter\\)"):
        redrive_now(data_folder, ["nope"])
    with pytest.raises(SyncfabricError, match="x \\(already redriven by crm__redrive-"):
        redrive_now(data_folder, ["x"])
    with pytest.raises(SyncfabricError, match="no dead letter of rule 'size' is held"):
        redrive_now(data_folder, rule="size")


def test_lines_that_were_not_utf8_cannot_be_redriven(data_folder):
    batch = land(data_folder, "0001", [b"\xff\xfe not utf-8"])
    run_core(data_folder, [batch.batch_id])

    with pytest.raises(SyncfabricError, match="not UTF-8"):
        redrive_now(data_folder, rule="utf8")
    assert [b.batch_id for b in LandingZone(data_folder.landing).scan().batches] == [
        batch.batch_id
    ], "no redrive batch landed"


def test_the_redrive_job_runs_from_dagster_and_fails_with_the_reason(data_folder):
    batch = land(data_folder, "0001", [customer_created(data={"status": "weird"})])
    run_core(data_folder, [batch.batch_id])
    job = redrive_ingest_dead_letters
    resources = default_resources(data_folder)

    with dg.instance_for_test() as instance:
        done = job.execute_in_process(
            instance=instance,
            resources=resources,
            run_config={"ops": {"redrive_dead_letters": {"config": {"rule": "isin"}}}},
        )
        refused = job.execute_in_process(
            instance=instance,
            resources=resources,
            run_config={"ops": {"redrive_dead_letters": {"config": {"refs": ["nope"]}}}},
            raise_on_error=False,
        )

    assert done.output_for_node("redrive_dead_letters")["events"] == 1
    assert not refused.success
