"""The same stream of events through the landing folder, NATS JetStream and a PostgreSQL outbox
gives identical golden records, and the same counts: applied, duplicates, dead letters with the
same rules and reasons. Each channel lands in a fresh data folder of its own, then raw ingest,
validation and apply run as the pipeline runs them (tests/conftest.py's `run_core`).

Compared: every column of the golden customers (there is no per-run timestamp in them; PII opened,
each data folder sealing with keys of its own), and of the dead letters all but the batch id, the
line and the reason's `line N: ` (each channel groups the stream in batches of its own: the bus by
SYNCFABRIC_BUS_BATCH_SIZE), the sealed payload (keys of its own) and `dead_lettered_at` (the
run's clock).

A resend of an event id is caught on the bus by the server (`Nats-Msg-Id` within its duplicate
window: `Published.duplicates`), by the warehouse on the other channels (`batches.duplicates`):
counted once either way. Needs NATS (127.0.0.1:4222) and PostgreSQL (127.0.0.1:5432): skipped
without them, failing when `CI` is set (the fixtures' rule)."""

from __future__ import annotations

import sqlalchemy as sa
from conftest import at, customer_created, event, land, rows
from test_jetstream import bus, committed_in, golden, ingest_landed  # noqa: F401
from test_outbox_channel import TABLE, known_in, outbox_project, url_of  # noqa: F401

from sync_assets.catalog.events import to_line
from sync_assets.ingest import jetstream, outbox
from sync_assets.ingest.landing import LandingZone
from sync_assets.settings import DataFolder, OutboxSettings

DEAD_LETTERS = r"""SELECT source, event_id, event_type, contract, rule,
                          regexp_replace(reason, '^line \d+: ', '') AS reason, correlation_id,
                          resolution FROM dead_letters ORDER BY event_id, rule"""
"""The reason without its leading `line N: `: the line within the channel's batch."""
COUNTS = "SELECT sum(landed), sum(applied), sum(duplicates), sum(dead_lettered) FROM batches"


def stream() -> list[dict]:
    """One system's stream: creates, two updates of one key, an update of another, a delete, an
    event its contract refuses, and a resend of an event already sent (same id)."""
    updated = event(
        "customer.updated", "C-910001", {"status": "inactive"}, time=at(60), event_id="s4"
    )
    return [
        customer_created("C-910001", time=at(1), event_id="s1"),
        customer_created("C-910002", time=at(2), event_id="s2"),
        customer_created("C-910003", time=at(3), event_id="s3"),
        updated,
        event("customer.updated", "C-910001", {"status": "suspended"}, time=at(61), event_id="s5"),
        customer_created("C-910004", time=at(4), event_id="s6", data={"status": "weird"}),
        event("customer.updated", "C-910002", {"country": "FR"}, time=at(62), event_id="s7"),
        dict(updated),  # the resend
        event("customer.deleted", "C-910003", time=at(63), event_id="s8"),
    ]


def outcome(folder: DataFolder, dropped_at_channel: int = 0) -> dict[str, object]:
    landed, applied, duplicates, dead = rows(folder, COUNTS)[0]
    return {
        "golden": golden(folder),
        "dead_letters": rows(folder, DEAD_LETTERS),
        "counts": {
            "events": landed + dropped_at_channel,
            "applied": applied,
            "duplicates": duplicates + dropped_at_channel,
            "dead_lettered": dead,
        },
    }


def test_the_same_stream_through_every_channel_gives_identical_golden_records(
    outbox_project,  # noqa: F811  (the demo with crm declaring an outbox table: every channel)
    bus,  # noqa: F811
    postgres_engine,
    tmp_path,
):
    events = stream()

    # (a) the landing folder: one batch file
    files = DataFolder(tmp_path / "files")
    land(files, "stream", events)
    ingest_landed(files)

    # (b) NATS JetStream: published, drained as the run drains it, acknowledged once committed
    on_bus = DataFolder(tmp_path / "bus")
    published = jetstream.publish(events, "crm")
    assert (published.published, published.duplicates) == (8, 1), "the resend dropped by id"
    drained = jetstream.drain(LandingZone(on_bus.landing), committed_in(on_bus))
    ingest_landed(on_bus)
    assert [r.last for r in jetstream.acknowledge(drained, committed_in(on_bus))] == [8]

    # (c) the outbox: each event a row of the system's table on PostgreSQL, drained
    from_outbox = DataFolder(tmp_path / "outbox")
    outbox.outbox_table(TABLE, sa.MetaData()).metadata.create_all(postgres_engine)
    with postgres_engine.begin() as connection:
        for line in [to_line(e) for e in events]:
            connection.execute(sa.insert(outbox.outbox_table(TABLE)).values(event=line))
    landed = outbox.drain(
        LandingZone(from_outbox.landing),
        known_in(from_outbox),
        url_of(postgres_engine),
        OutboxSettings(gap_grace_s=3600),
    ).landed
    assert [(r.first, r.last) for r in landed] == [(1, 9)]
    ingest_landed(from_outbox)

    expected = outcome(files)
    assert expected["counts"] == {"events": 9, "applied": 7, "duplicates": 1, "dead_lettered": 1}
    assert len(expected["golden"]) == 3, "C-910004 refused; C-910003 deleted, kept as a row"
    assert [(r[1], r[4]) for r in expected["dead_letters"]] == [("s6", "isin")]
    [first] = [r for r in expected["golden"] if r[0] == "C-910001"]
    assert "suspended" in first and "inactive" not in first, "the later update of the key wins"
    assert outcome(on_bus, dropped_at_channel=published.duplicates) == expected
    assert outcome(from_outbox) == expected
    assert rows(on_bus, "SELECT count(*) FROM batches")[0][0] == 2, "grouped otherwise: 4 + 4"
