"""Least privilege on real servers: the SQL `syncctl grants` prints, run by an administrator in a
fresh PostgreSQL schema / MariaDB database, gives a reader that can snapshot and nothing more, and
a writer that can deliver (the bookkeeping tables included) and nothing more. The mapped table
and its columns have odd but allowed names (spaces, mixed case): quoting holds on both servers.
Every refusal asserted here is the server's own, not Syncfabric's read-only session."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa
from conftest import DEMO_PROJECT

from sync_assets.connectors.grants import Roles, grants_script
from sync_assets.connectors.mappings import Mapping
from sync_assets.connectors.probe import probe_system
from sync_assets.connectors.resource import SystemsResource
from sync_assets.deliver.destinations import DestinationSettings, open_destination
from sync_assets.deliver.engine import Delivery
from sync_assets.project import Project, current
from sync_assets.project.active import PROJECT_ENV
from sync_assets.reconcile.snapshot import load_snapshot

SUPPORT = """\
kind: sql
url_env: SYNCFABRIC_SUPPORT_URL
write_url_env: SYNCFABRIC_SUPPORT_WRITE_URL
entities:
  customer:
    table: Help Desk Users
    key: [Id]
    canonical_key: External Id
    columns:
      email: {column: Email Address, rule: lower}
      full_name: name
      support_tier: {column: Tier, rule: lower, style: capitalize}
      status:
        column: state
        rule: vocabulary
        vocabulary:
          enabled: active
          disabled: [inactive, suspended]
    scope: [support_tier]
    stamps:
      - {column: updated_at, format: epoch}
"""

tables = sa.MetaData()
USERS = sa.Table(
    "Help Desk Users",
    tables,
    sa.Column("Id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("External Id", sa.String(16), nullable=False, unique=True),
    sa.Column("Email Address", sa.String(200)),
    sa.Column("name", sa.String(200)),
    sa.Column("Tier", sa.String(20)),
    sa.Column("state", sa.String(20)),
    sa.Column("updated_at", sa.Integer),
    sa.Column("Private Notes", sa.String(200)),
)
OUTSIDE = sa.Table("Payroll", tables, sa.Column("amount", sa.Integer))
"""A table of the system the project does not map: neither role may touch it."""
V1, V2 = "2026-11-25T08:00:00.000000Z|e1", "2026-11-25T09:00:00.000000Z|e2"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    """The demo project with a support desk whose table and columns have odd names."""
    copy = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT, copy, ignore=shutil.ignore_patterns("seed", "__*"))
    settings = copy / "syncfabric.yaml"
    settings.write_text(settings.read_text().replace("seed: seed", ""))
    (copy / "systems" / "support.yaml").write_text(SUPPORT)
    monkeypatch.setenv(PROJECT_ENV, str(Path(copy).resolve()))
    return current()


@dataclasses.dataclass
class Landscape:
    admin: sa.Engine
    mapping: Mapping
    reader_url: str
    writer_url: str


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def landscape(request, project) -> Iterator[Landscape]:
    """The grants applied as an administrator in a fresh schema (database), two rows in the
    mapped table; the roles are unique to the test and dropped after it."""
    admin: sa.Engine = request.getfixturevalue(f"{request.param}_engine")
    on_postgres = admin.dialect.name == "postgresql"
    with admin.connect() as conn:
        schema = conn.execute(sa.text("SELECT current_schema()" if on_postgres else "SELECT database()")).scalar_one()  # fmt: skip
    tables.create_all(admin)
    with admin.begin() as conn:
        conn.execute(USERS.insert(), [
            {"Id": 1, "External Id": "C-000001", "Email Address": "Ada@Example.com", "name": "Ada",
             "Tier": "gold", "state": "enabled", "updated_at": 0, "Private Notes": "secret"},
            {"Id": 2, "External Id": "C-000002", "Email Address": "bob@example.com", "name": "Bob",
             "Tier": "silver", "state": "disabled", "updated_at": 0, "Private Notes": "secret"},
        ])  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    roles = Roles(f"sf_reader_{tag}", f"sf_writer_{tag}")
    script = grants_script(
        project, "support", "postgresql" if on_postgres else "mysql", roles, schema
    )
    try:
        _run_as_administrator(admin, script, roles)
        yield Landscape(
            admin,
            project.mapping("support", "customer"),
            admin.url.set(username=roles.reader).render_as_string(hide_password=False),
            admin.url.set(username=roles.writer).render_as_string(hide_password=False),
        )
    finally:
        with admin.begin() as conn:
            for role in (roles.reader, roles.writer):
                if on_postgres:
                    exists = sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :r")
                    if conn.execute(exists, {"r": role}).scalar_one():
                        conn.execute(sa.text(f'DROP OWNED BY "{role}"'))  # its grants, here
                        conn.execute(sa.text(f'DROP ROLE "{role}"'))
                else:
                    conn.execute(sa.text(f"DROP USER IF EXISTS '{role}'@'%'"))


def _run_as_administrator(admin: sa.Engine, script: str, roles: Roles) -> None:
    """As psql or the mysql client would: PostgreSQL takes the script whole; MariaDB statement by
    statement, then the logins are unlocked as the script's last comment says (no password:
    these are test servers)."""
    raw = admin.raw_connection()
    driver: Any = raw.driver_connection
    try:
        if admin.dialect.name == "postgresql":
            driver.autocommit = True
            with driver.cursor() as cursor:
                cursor.execute(script)
            return
        driver.autocommit(True)
        body = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
        statements = [s.strip() for s in body.split(";\n") if s.strip()]
        statements += [f"ALTER USER '{r}'@'%' ACCOUNT UNLOCK" for r in (roles.reader, roles.writer)]
        with driver.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement.removesuffix(";"))
    finally:
        raw.close()


def refused(url: str, *statements: sa.Executable | str) -> list[str]:
    """The server's refusal of each statement, run as the role of `url` (a plain session); in a
    text statement, {users} is the mapped table's name as the server quotes it."""
    engine = sa.create_engine(url)
    users = engine.dialect.identifier_preparer.format_table(USERS)
    said = []
    try:
        for statement in statements:
            if isinstance(statement, str):
                statement = sa.text(statement.format(users=users))
            with pytest.raises(sa.exc.DBAPIError) as raised, engine.begin() as conn:
                conn.execute(statement)
            said.append(str(raised.value.orig).lower())
    finally:
        engine.dispose()
    return said


def denied(message: str) -> bool:
    """PostgreSQL's and MariaDB's words for a missing privilege."""
    return any(
        words in message for words in ("permission denied", "must be owner", "command denied")
    )


def delivery(n: int, key: str, action: str, values: dict, version: str = V1) -> Delivery:
    return Delivery(f"c{n}", f"k{n}", "customer", key, action, values, version)


def test_a_snapshot_reads_through_the_reader_role(landscape):
    systems = SystemsResource(urls={"support": landscape.reader_url})
    with systems.rows(landscape.mapping) as batches:
        loaded = duckdb.connect()
        assert load_snapshot(loaded, landscape.mapping, batches) == 2
    emails = loaded.execute(
        "SELECT customer_id, email, status FROM snapshot_support_customer ORDER BY 1"
    ).fetchall()
    assert emails == [("C-000001", "ada@example.com", "active"), ("C-000002", "bob@example.com", "inactive|suspended")]  # fmt: skip

    probes = probe_system("support", landscape.reader_url, [landscape.mapping])
    assert [(p.ok, p.rows, p.problems) for p in probes] == [(True, 2, [])]


def test_the_probe_names_a_missing_column_and_table_through_the_reader(landscape):
    mapping = landscape.mapping
    missing_column = dataclasses.replace(
        mapping,
        fields=(*mapping.fields[:1], dataclasses.replace(mapping.fields[1], source="Nick Name")),
    )
    missing_table = dataclasses.replace(mapping, table="Help Desk Agents")
    [column, table] = probe_system("support", landscape.reader_url, [missing_column, missing_table])
    assert len(column.problems) == 1 and column.problems[0].startswith(
        "Help Desk Users.Nick Name does not exist"
    )
    assert table.problems and table.problems[0].startswith(
        "table 'Help Desk Agents' does not exist"
    )


def test_the_reader_can_write_nothing_nor_read_an_unmapped_column(landscape):
    said = refused(
        landscape.reader_url,
        USERS.insert().values({"Id": 3, "External Id": "C-000003"}),
        USERS.update().values({"name": "Eve"}),
        USERS.delete(),
        sa.select(USERS.c["Private Notes"]),
        sa.select(OUTSIDE.c.amount),
        "CREATE TABLE sneaky (x INTEGER)",
    )
    assert all(denied(message) for message in said), said


def test_a_delivery_writes_through_the_writer_role_with_its_bookkeeping(landscape):
    systems = SystemsResource(
        urls={"support": landscape.reader_url}, write_urls={"support": landscape.writer_url}
    )
    destination = open_destination("support", systems.write_url("support"), DestinationSettings())
    try:
        created = {"email": "Cy@Example.com", "full_name": "Cy", "support_tier": "gold", "status": "active"}  # fmt: skip
        assert [o.status for o in destination.deliver([delivery(1, "C-000003", "created", created)])] == ["applied"]  # fmt: skip
        again = destination.deliver([
            delivery(2, "C-000001", "updated", {"email": "ada@new.example.com"}, V2),
            delivery(3, "C-000002", "deleted", {}, V2),
            delivery(1, "C-000003", "created", created),  # the same correction: a duplicate
        ])  # fmt: skip
        assert [o.status for o in again] == ["applied", "applied", "duplicate"]
    finally:
        destination.close()
    with landscape.admin.connect() as conn:
        found = {r["External Id"]: r for r in conn.execute(sa.select(USERS)).mappings()}
        applied = conn.execute(sa.text("SELECT count(*) FROM syncfabric_applied")).scalar_one()
        versions = dict(conn.execute(sa.text("SELECT entity_key, version FROM syncfabric_versions")).all())  # fmt: skip
    assert sorted(found) == ["C-000001", "C-000003"]  # the support desk hard-deletes
    assert found["C-000001"]["Email Address"] == "ada@new.example.com"
    assert found["C-000001"]["Private Notes"] == "secret"  # only the corrected column is written
    assert found["C-000003"]["Email Address"] == "cy@example.com" and found["C-000003"]["Id"] == 3
    assert found["C-000003"]["Tier"] == "Gold" and found["C-000003"]["state"] == "enabled"
    assert applied == 3
    assert versions == {"C-000003": V1, "C-000001": V2, "C-000002": V2}


def test_the_writer_cannot_touch_another_table_nor_change_the_schema(landscape):
    said = refused(
        landscape.writer_url,
        OUTSIDE.insert().values(amount=1),
        sa.select(OUTSIDE.c.amount),
        "CREATE TABLE sneaky (x INTEGER)",
        "ALTER TABLE {users} ADD COLUMN sneaky INTEGER",
        "DROP TABLE {users}",
        "DELETE FROM syncfabric_applied",
    )
    assert all(denied(message) for message in said), said
