"""A transactional outbox as an event channel (sync_assets/ingest/outbox.py): the pure range and
gap decision, and on real PostgreSQL and MariaDB servers (tests/databases.py) events written in
the same transaction as a change ingested and applied, a transaction that commits late waited
for, a rolled-back sequence skipped after the grace, and a crash between the file and the commit
absorbed (nothing applied twice).

Two real connections interleave the writers' transactions: no sleep anywhere."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import customer_created, rows, run_core

from sync_assets.catalog.events import to_line
from sync_assets.errors import SyncfabricError
from sync_assets.ingest import outbox
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.outbox import Row, Take
from sync_assets.project.active import PROJECT_ENV
from sync_assets.project.load import load_project
from sync_assets.settings import DataFolder, OutboxSettings
from sync_assets.warehouse import connect

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo"
TABLE = "syncfabric_outbox"
WAIT = OutboxSettings(gap_grace_s=3600)
"""A grace no test outlives: a gap is always waited for."""
SKIP = OutboxSettings(gap_grace_s=0)
"""No grace: a gap is skipped at once."""


# -- the pure decision ----------------------------------------------------------------------------


def _rows(*sequences: int, age: float = 0.0) -> list[Row]:
    return [Row(s, age) for s in sequences]


def test_a_contiguous_run_past_the_cursor_is_taken_up_to_the_first_gap():
    assert outbox.next_range(4, _rows(5, 6, 7, 9, 10), grace_s=60) == Take(5, 7)
    assert outbox.next_range(0, _rows(1), grace_s=60) == Take(1, 1)
    assert outbox.next_range(7, [], grace_s=60) == Take()


def test_a_gap_after_the_cursor_is_waited_for_within_the_grace_then_skipped():
    assert outbox.next_range(4, _rows(7, 8, age=59.9), grace_s=60) == Take(waiting=(5, 6))
    assert outbox.next_range(4, _rows(7, 8, age=60), grace_s=60) == Take(7, 8, skipped=(5, 6))
    assert outbox.next_range(4, _rows(6, 8, age=0), grace_s=0) == Take(6, 6, skipped=(5, 5))


def test_the_cursor_is_the_last_sequence_of_the_outbox_batches():
    assert outbox.batch_stem(3, 9) == "ob-3-9"
    assert outbox.range_of("ob-3-9") == (3, 9)
    assert outbox.range_of("js-3-9") is None
    assert outbox.cursor_of(["ob-1-4", "ob-10-12", "js-1-99", "batch-7"]) == 12
    assert outbox.cursor_of([]) == 0


def test_outbox_settings_from_the_environment(monkeypatch):
    monkeypatch.delenv("SYNCFABRIC_OUTBOX_GAP_GRACE_SECONDS", raising=False)
    assert OutboxSettings.from_env().gap_grace_s == 60
    monkeypatch.setenv("SYNCFABRIC_OUTBOX_GAP_GRACE_SECONDS", "0")
    assert OutboxSettings.from_env().gap_grace_s == 0
    monkeypatch.setenv("SYNCFABRIC_OUTBOX_GAP_GRACE_SECONDS", "-1")
    with pytest.raises(SyncfabricError, match="SYNCFABRIC_OUTBOX_GAP_GRACE_SECONDS"):
        OutboxSettings.from_env()


# -- the project ----------------------------------------------------------------------------------


def _project_copy(tmp_path: Path, system: str, channels: str) -> Path:
    root = tmp_path / "project"
    shutil.copytree(DEMO, root)
    path = root / "systems" / f"{system}.yaml"
    path.write_text(path.read_text() + f"channels: {channels}\n")
    return root


@pytest.fixture
def outbox_project(tmp_path, monkeypatch) -> Path:
    """The demo, its CRM declaring an outbox table, as the current project."""
    root = _project_copy(tmp_path, "crm", f"{{outbox: {{table: {TABLE}}}}}")
    monkeypatch.setenv(PROJECT_ENV, str(root))
    return root


def test_a_system_declares_its_outbox_table(outbox_project):
    project = load_project(outbox_project)
    assert project.systems["crm"].outbox == TABLE
    assert [s.name for s in project.outbox_systems] == ["crm"]
    assert project.systems["billing"].outbox is None


def test_an_outbox_on_a_system_without_a_database_is_refused(tmp_path):
    root = _project_copy(tmp_path, "crm", "{outbox: {table: syncfabric_outbox}}")
    crm = root / "systems" / "crm.yaml"
    crm.write_text(crm.read_text().replace("kind: sql", "kind: http"))
    with pytest.raises(SyncfabricError) as raised:
        load_project(root)
    assert "channels.outbox" in str(raised.value)
    assert "kind http" in str(raised.value)


def test_the_sensor_is_defined_only_with_an_outbox(outbox_project, monkeypatch):
    from sync_assets.definitions import build_definitions

    with_outbox = {s.name for s in build_definitions().sensors}
    monkeypatch.setenv(PROJECT_ENV, str(DEMO))
    without = {s.name for s in build_definitions().sensors}
    assert with_outbox - without == {"outbox_sensor"}


# -- against the servers --------------------------------------------------------------------------


@pytest.fixture(params=["postgres", "mariadb"])
def system_db(request, outbox_project) -> Iterator[sa.Engine]:
    """A fresh database on the server holding the outbox table and a table the change goes to."""
    engine: sa.Engine = request.getfixturevalue(f"{request.param}_engine")
    metadata = sa.MetaData()
    outbox.outbox_table(TABLE, metadata)
    sa.Table("contacts", metadata, sa.Column("contact_id", sa.String(20), primary_key=True))
    metadata.create_all(engine)
    yield engine


def url_of(engine: sa.Engine):
    url = engine.url.render_as_string(hide_password=False)
    return lambda _system: url


def known_in(folder: DataFolder):
    def known(system):
        with connect(folder.warehouse, read_only=True) as con:
            return outbox.ledger_stems(con, system)

    return known


def change(connection: sa.Connection, n: int) -> None:
    """The system's change and its event, in the caller's transaction."""
    subject = f"C-90000{n}"
    connection.execute(sa.text("INSERT INTO contacts (contact_id) VALUES (:id)"), {"id": subject})
    line = to_line(customer_created(subject, event_id=f"ob-e{n}"))
    connection.execute(sa.insert(outbox.outbox_table(TABLE)).values(event=line))


def drain(folder: DataFolder, engine: sa.Engine, settings: OutboxSettings) -> outbox.Drained:
    return outbox.drain(LandingZone(folder.landing), known_in(folder), url_of(engine), settings)


def ingest_landed(folder: DataFolder, *, archive: bool = True) -> None:
    zone = LandingZone(folder.landing)
    pending = zone.pending()
    run_core(folder, [b.batch_id for b in pending])
    if archive:
        for batch in pending:
            zone.archive(batch)


def pending_names(folder: DataFolder) -> list[str]:
    return sorted(b.path.name for b in LandingZone(folder.landing).pending())


COUNTS = "SELECT sum(landed), sum(applied), sum(duplicates) FROM batches"


def golden_count(folder: DataFolder) -> int:
    from sync_assets.project import current

    table = current().entity("customer").golden_table
    return rows(folder, f"SELECT count(*) FROM {table}")[0][0]


def test_events_written_with_their_change_are_ingested_and_applied(system_db, data_folder):
    for n in (1, 2, 3):
        with system_db.begin() as connection:
            change(connection, n)

    drained = drain(data_folder, system_db, WAIT)
    assert [(r.first, r.last) for r in drained.landed] == [(1, 3)]
    assert pending_names(data_folder) == ["ob-1-3.jsonl"]
    ingest_landed(data_folder)

    assert rows(data_folder, COUNTS) == [(3, 3, 0)]
    assert golden_count(data_folder) == 3
    assert drain(data_folder, system_db, WAIT).landed == [], "the ledger is the cursor"


def test_a_producer_publishes_checked_events_as_outbox_rows(system_db, data_folder):
    """A producer beside the system (a webhook handler) publishes to its outbox: the checked lines
    become rows in one transaction, and a refused call inserts nothing."""
    from conftest import event

    from sync_assets.ingest.publish import OutboxChannel, PublishRefused, publish

    channel = OutboxChannel(url_of(system_db))
    good = [customer_created(f"C-90000{n}", event_id=f"pub-{n}") for n in (1, 2)]
    published = publish(good, "crm", channel=channel)
    with pytest.raises(PublishRefused) as refused:
        invalid = event("customer.updated", "C-900001", {"status": "gone"}, event_id="pub-bad")
        publish([customer_created("C-900003", event_id="pub-3"), invalid], "crm", channel=channel)

    assert (published.channel, published.batch_id) == ("outbox", f"{TABLE}:1-2")
    assert [r.line for r in refused.value.refused] == [2]
    table = outbox.outbox_table(TABLE)
    with system_db.connect() as connection:
        stored = connection.execute(sa.select(table.c.event).order_by(table.c.sequence)).all()
    assert [line for (line,) in stored] == [to_line(e) for e in good], "the refused call: no row"
    drain(data_folder, system_db, WAIT)
    ingest_landed(data_folder)
    assert rows(data_folder, COUNTS) == [(2, 2, 0)]
    assert golden_count(data_folder) == 2


def test_publishing_to_a_system_without_an_outbox_says_how_to_declare_one(outbox_project):
    from sync_assets.ingest.publish import OutboxChannel

    channel = OutboxChannel(lambda _system: "sqlite://")
    with pytest.raises(SyncfabricError) as raised:
        channel.send("billing", ["{}"])
    assert raised.value.exit_code == 2
    assert "declares no outbox table" in raised.value.message
    assert "systems/billing.yaml" in raised.value.message


def test_a_transaction_that_commits_late_is_waited_for_not_skipped(system_db, data_folder):
    with system_db.connect() as late, system_db.connect() as early:
        late.begin()
        change(late, 1)  # takes sequence 1, still open
        with early.begin():
            change(early, 2)  # takes sequence 2, committed
        stopped = drain(data_folder, system_db, WAIT)
        late.commit()
    taken = drain(data_folder, system_db, WAIT)
    ingest_landed(data_folder)

    assert stopped.landed == [] and stopped.waiting == {"crm": (1, 1)}
    assert [(r.first, r.last) for r in taken.landed] == [(1, 2)]
    assert taken.skipped == {} and taken.waiting == {}
    assert rows(data_folder, COUNTS) == [(2, 2, 0)]


def test_a_rolled_back_sequence_is_skipped_after_the_grace(system_db, data_folder):
    with system_db.connect() as connection:
        connection.begin()
        change(connection, 1)  # takes sequence 1, never committed
        connection.rollback()
    with system_db.begin() as connection:
        change(connection, 2)

    waited = drain(data_folder, system_db, WAIT)
    skipped = drain(data_folder, system_db, SKIP)
    ingest_landed(data_folder)

    assert waited.landed == [] and waited.waiting == {"crm": (1, 1)}
    assert skipped.skipped == {"crm": [(1, 1)]}
    assert [(r.first, r.last) for r in skipped.landed] == [(2, 2)]
    assert rows(data_folder, COUNTS) == [(1, 1, 0)]


def test_a_crash_between_the_file_and_the_commit_applies_nothing_twice(system_db, data_folder):
    for n in (1, 2, 3):
        with system_db.begin() as connection:
            change(connection, n)
    drain(data_folder, system_db, WAIT)  # ob-1-3 written; the process "dies" before its ingest
    for n in (4, 5):
        with system_db.begin() as connection:
            change(connection, n)

    again = drain(data_folder, system_db, WAIT)
    assert [(r.first, r.last) for r in again.landed] == [(4, 5)], "the pending file is the cursor"
    ingest_landed(data_folder, archive=False)  # committed; "dies" before archiving the files
    assert drain(data_folder, system_db, WAIT).landed == []
    ingest_landed(data_folder)  # the same batches: already committed, nothing applied again
    assert rows(data_folder, COUNTS) == [(5, 5, 0)]

    # the same rows read again in another grouping (a file lost before the ledger knew it):
    # their event ids are known, they are recorded as duplicates and applied nowhere
    lines = [to_line(customer_created(f"C-90000{n}", event_id=f"ob-e{n}")) for n in range(1, 6)]
    LandingZone(data_folder.landing).write_batch("crm", outbox.batch_stem(1, 5), lines)
    ingest_landed(data_folder)
    assert rows(data_folder, COUNTS) == [(10, 5, 5)]
    assert golden_count(data_folder) == 5


def test_the_sensor_lands_the_outbox(system_db, data_folder, monkeypatch):
    from dagster import build_sensor_context

    from sensors.outbox import outbox_sensor
    from sync_assets.connectors.resource import SystemsResource
    from sync_assets.ingest.resources import LandingZoneResource
    from sync_assets.warehouse.resource import WarehouseResource

    with system_db.begin() as connection:
        change(connection, 1)
    resources = {
        "landing_zone": LandingZoneResource(root=str(data_folder.landing)),
        "warehouse": WarehouseResource(path=str(data_folder.warehouse)),
        "systems": SystemsResource(urls={"crm": url_of(system_db)("crm")}),
    }
    with build_sensor_context(resources=resources) as context:
        result = outbox_sensor(context)

    assert pending_names(data_folder) == ["ob-1-1.jsonl"]
    assert result.run_requests == [], "the landed-batches sensor requests the file's run"


def test_the_run_drains_the_outbox_before_the_landing_zone(
    outbox_project, postgres_engine, tmp_path, monkeypatch, capsys
):
    """`syncctl run`'s ingest (Pipeline.ingest_pending) lands the outbox, then ingests it, and
    tells the operator of a gap it skipped."""
    from sync_assets.runner import pipeline

    metadata = sa.MetaData()
    outbox.outbox_table(TABLE, metadata)
    sa.Table("contacts", metadata, sa.Column("contact_id", sa.String(20), primary_key=True))
    metadata.create_all(postgres_engine)
    with postgres_engine.connect() as connection:
        connection.begin()
        change(connection, 9)  # sequence 1, rolled back
        connection.rollback()
    for n in (1, 2):
        with postgres_engine.begin() as connection:
            change(connection, n)
    monkeypatch.setenv("SYNCFABRIC_CRM_URL", url_of(postgres_engine)("crm"))
    monkeypatch.setenv("SYNCFABRIC_OUTBOX_GAP_GRACE_SECONDS", "0")
    folder = DataFolder(tmp_path / "home")
    folder.landing.mkdir(parents=True)

    with pipeline(folder) as runs:
        report = runs.ingest_pending()
        again = runs.ingest_pending()

    assert report.run_id is not None and report.failed == []
    assert [b.split("@")[0] for b in report.batches] == ["crm__ob-2-3"]
    assert again.batches == [], "the ledger is the cursor: nothing read twice"
    assert rows(folder, COUNTS) == [(2, 2, 0)]
    assert "crm outbox: sequence 1 skipped" in capsys.readouterr().err


def test_grants_create_the_outbox_table_and_let_the_reader_read_it(outbox_project):
    from sync_assets.connectors.grants import Roles, grants_script
    from sync_assets.project import current

    script = grants_script(current(), "crm", "postgresql", Roles("r", "w"))
    assert "CREATE TABLE IF NOT EXISTS public.syncfabric_outbox" in script
    assert (
        'GRANT SELECT ("sequence", "event", "created_at") ON "public"."syncfabric_outbox" TO "r";'
        in script
    )
    assert "syncfabric_outbox" not in grants_script(
        current(), "billing", "postgresql", Roles("r", "w")
    )


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_the_granted_ddl_makes_a_table_the_outbox_reads(request, server, outbox_project):
    from sync_assets.connectors import grants
    from sync_assets.project import current

    engine: sa.Engine = request.getfixturevalue(f"{server}_engine")
    (ddl,) = [
        s for s in grants._outbox_ddl(current(), "crm", engine.dialect, None) if "CREATE" in s
    ]
    with engine.begin() as connection:
        connection.execute(sa.text(ddl.rstrip(";")))
        for line in ('{"id": "a"}', '{"id": "b"}'):
            connection.execute(sa.insert(outbox.outbox_table(TABLE)).values(event=line))
    with engine.connect() as connection:
        found = outbox.read_rows(connection, TABLE, 0, 10)
    assert [(row.sequence, line) for row, line in found] == [(1, '{"id": "a"}'), (2, '{"id": "b"}')]
    assert all(0 <= row.age_s < 3600 for row, _ in found)
