"""The landing zone: what is a batch, what is refused, and archive names that never collide."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from conftest import customer_created, land, rows

from sync_assets.catalog.events import to_line
from sync_assets.ingest.assets import build_raw_events, landed_batches
from sync_assets.ingest.landing import LandingZone, read_batch
from sync_assets.ingest.raw import BatchChanged, ingest_batch
from sync_assets.project import current
from sync_assets.resources import default_resources
from sync_assets.warehouse import connect, transaction

PROJECT = current()
raw_events = build_raw_events(PROJECT)


def reasons(zone: LandingZone) -> dict[str, str]:
    return {refusal.path.name: refusal.reason for refusal in zone.scan().refused}


def test_a_symlink_in_a_landing_folder_is_refused_and_never_read(data_folder, tmp_path):
    secret = tmp_path / "outside.jsonl"
    secret.write_text(to_line(customer_created()) + "\n")
    good = land(data_folder, "0001", [customer_created("C-000002")])
    link = data_folder.landing / "crm" / "0002.jsonl"
    link.symlink_to(secret)
    (data_folder.landing / "crm" / "passwd.jsonl").symlink_to("/etc/passwd")
    zone = LandingZone(data_folder.landing)

    scan = zone.scan()

    assert [b.batch_id for b in scan.batches] == [good.batch_id]
    assert "symbolic link" in reasons(zone)["0002.jsonl"]
    assert "symbolic link" in reasons(zone)["passwd.jsonl"]
    with pytest.raises(OSError):
        read_batch(link)  # even a link swapped in after the scan is not followed


def test_folders_other_files_and_unknown_systems_are_refused_with_a_reason(data_folder):
    land(data_folder, "0001", [customer_created()])
    crm = data_folder.landing / "crm"
    (crm / "nested").mkdir()
    (crm / "notes.txt").write_text("hello")
    (crm / "bad name.jsonl").write_text("{}\n")
    (crm / "a...b.jsonl").write_text("{}\n")
    (crm / ".landing-123.tmp").write_text("half a batch")  # a write in progress: silent
    (data_folder.landing / "erp").mkdir()
    (data_folder.landing / "erp" / "0001.jsonl").write_text("{}\n")
    (data_folder.landing / "stray.jsonl").write_text("{}\n")
    zone = LandingZone(data_folder.landing)

    refused = reasons(zone)

    assert set(refused) == {
        "nested",
        "notes.txt",
        "bad name.jsonl",
        "a...b.jsonl",
        "erp",
        "stray.jsonl",
    }
    assert "folder" in refused["nested"]
    assert "not a .jsonl" in refused["notes.txt"]
    assert "cannot name a batch" in refused["bad name.jsonl"]
    assert "catalog system" in refused["erp"]
    assert len(zone.scan().batches) == 1


def test_the_raw_events_asset_counts_refused_entries_and_ingests_the_rest(data_folder):
    batch = land(data_folder, "0001", [customer_created()])
    (data_folder.landing / "crm" / "link.jsonl").symlink_to("/etc/passwd")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(landed_batches.name, [batch.batch_id])
        result = dg.materialize(
            [raw_events],
            partition_key=batch.batch_id,
            instance=instance,
            resources=default_resources(data_folder),
        )
    [materialization] = result.asset_materializations_for_node("raw_events")
    assert materialization.metadata["refused_entries"].value == 1
    assert materialization.metadata["landed"].value == 1
    assert rows(
        data_folder,
        "SELECT count(*) FROM raw_events WHERE pii_open('raw_events.line', line) LIKE 'root:%'",
    ) == [(0,)]
    assert (data_folder.landing / "crm" / "link.jsonl").is_symlink(), "left where it was"


def test_a_file_replaced_after_the_scan_is_not_ingested_under_the_old_id(data_folder):
    batch = land(data_folder, "0001", [customer_created()])
    replacement = data_folder.landing / "crm" / "new.tmp"
    replacement.write_text(to_line(customer_created("C-000009")) + "\n")
    os.replace(replacement, batch.path)

    with (
        pytest.raises(BatchChanged, match="another batch"),
        connect(data_folder.warehouse) as con,
        transaction(con),
    ):
        ingest_batch(con, batch)

    [rescanned] = LandingZone(data_folder.landing).scan().batches
    assert rescanned.batch_id != batch.batch_id


def test_archived_batches_keep_their_content_digest_in_the_name(data_folder):
    zone = LandingZone(data_folder.landing)
    batch = land(data_folder, "0001", [customer_created()])

    archived = zone.archive(batch)

    stem = batch.batch_id.split("__", 1)[1]
    assert archived == data_folder.landing / "crm" / "archive" / f"{stem}.jsonl"
    assert zone.locate(batch.batch_id).path == archived
    assert zone.scan().batches == []
