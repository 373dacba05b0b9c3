"""Onboarding: `syncctl map` proposes a mapping from a real table (SQLite, PostgreSQL), `syncctl
init` writes a starter project. The commands run as a user runs them; the guessing is also tested
as plain functions on hand-made columns."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import typing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from commands import assert_no_traceback, syncctl
from databases import POSTGRES, postgres_url, require_server
from ruamel.yaml import YAML

from sync_assets.catalog.entities import Attribute, Entity
from sync_assets.connectors.mappings import Rule, Style
from sync_assets.onboard.guess import Column, guess_rule, match_columns, sampled_share, similarity
from sync_assets.onboard.propose import Table, propose, render
from sync_assets.onboard.starter import templates

ROWS = 60


def _yaml(text: str) -> Any:
    """Parsed as YAML 1.2, the project files' dialect: `on: create` has the key 'on' (YAML 1.1,
    PyYAML's, would read it as true)."""
    return YAML(typ="safe", pure=True).load(text)


def _people(i: int) -> dict[str, Any]:
    """Row i of a table with a column of every kind the proposal guesses."""
    return {
        "person_id": i,
        "contact_ref": f"K-{i:06d}",
        "email_address": f"PERSON{i}@EXAMPLE.ORG",
        "mobile": f"+44 7700 900{i:03d}",
        # Day first (days past 12 tell it from month first); 2 values in 60 are not dates.
        "signed_up": "unknown" if i in (7, 8) else f"{i % 28 + 1:02d}/{i % 12 + 1:02d}/2024",
        "renewal": f"{i % 12 + 1:02d}/{i % 12 + 1:02d}/2025",  # reads day first and month first
        "created_at": f"2024-03-{i % 28 + 1:02d} 10:11:12",
        "last_login": 1_700_000_000 + i * 3_600,
        "is_active": i % 2,
        "deleted": "yes" if i % 10 == 0 else "no",
        "balance_cents": i * 125,
        "credit": i * 1.5,
        "lifecycle": ["Active", "Dormant", "Closed"][i % 3],
        "region": ["EU", "NA"][i % 2],
        "first_name": ["Ada", "Grace", "Alan"][i % 3],
        "full_name": f"Person Number{i} Example",
        "handle": f"user_{i}",
    }


PEOPLE_DDL = """CREATE TABLE people (
    person_id INTEGER PRIMARY KEY, contact_ref TEXT, email_address TEXT, mobile TEXT,
    signed_up TEXT, renewal TEXT, created_at DATETIME, last_login INTEGER, is_active INTEGER,
    deleted TEXT, balance_cents INTEGER, credit REAL, lifecycle TEXT, region TEXT,
    first_name TEXT, full_name TEXT, handle TEXT)"""

PERSONAL = ("email_address", "mobile", "full_name", "first_name", "handle")
"""Columns whose sampled values must never be printed."""


def _sqlite_file(path: Path, ddl: str, rows: list[dict[str, Any]]) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute(ddl)
        names = list(rows[0])
        connection.executemany(
            f"INSERT INTO {ddl.split()[2]} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            [tuple(row[n] for n in names) for row in rows],
        )
    connection.close()
    return path


@pytest.fixture
def people_db(tmp_path: Path) -> Path:
    return _sqlite_file(
        tmp_path / "people.sqlite", PEOPLE_DDL, [_people(i) for i in range(1, ROWS + 1)]
    )


def _map(tmp_path: Path, *args: str, **env: str):
    result = syncctl(tmp_path / "home", "map", *args, **env)
    assert_no_traceback(result)
    return result


def _entity_block(text: str, entity: str) -> dict[str, Any]:
    parsed = _yaml(text)
    assert list(parsed) == ["entities"]
    return parsed["entities"][entity]


def _comment_of(text: str, column: str) -> str:
    """The comment on the proposal's line that maps `column`."""
    line = next(
        line for line in text.splitlines() if re.search(rf"\bcolumn: {column}\b|: {column} ", line)
    )
    return line.split("# ", 1)[1] if "# " in line else ""


def test_map_sqlite_guesses_a_rule_per_column_with_its_reason(tmp_path, people_db):
    result = _map(tmp_path, "--system", "source_a", "--table", "people",
                  "--url", f"sqlite:///{people_db}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    block = _entity_block(result.stdout, "people")
    columns = block["columns"]

    assert block["table"] == "people"
    assert block["key"] == ["person_id"]
    assert block["canonical_key"] == "contact_ref"
    assert columns["email_address"] == {
        "column": "email_address",
        "rule": "lower",
        "style": "upper",
    }
    assert columns["mobile"] == {"column": "mobile", "rule": "phone"}
    assert columns["signed_up"] == {
        "column": "signed_up",
        "rule": "timestamp",
        "format": "%d/%m/%Y",
    }
    assert "96% of 60 sampled values look like dd/mm/yyyy" in _comment_of(
        result.stdout, "signed_up"
    )
    assert columns["renewal"]["format"] == "%d/%m/%Y"
    assert "also read as mm/dd/yyyy: check which" in _comment_of(result.stdout, "renewal")
    assert columns["last_login"] == {"column": "last_login", "rule": "epoch"}
    assert columns["is_active"] == {"column": "is_active", "rule": "boolean"}
    assert columns["balance_cents"] == {"column": "balance_cents", "rule": "cents"}
    assert columns["credit"] == {"column": "credit", "rule": "decimal"}
    assert columns["lifecycle"] == {"column": "lifecycle", "rule": "lower", "style": "capitalize"}
    assert '"Active", "Closed", "Dormant"' in _comment_of(result.stdout, "lifecycle")
    assert columns["region"] == {"column": "region", "rule": "upper"}
    assert columns["handle"] == {"column": "handle", "rule": "lower"}
    assert columns["full_name"] == "full_name"  # free text: the rule text, written bare
    assert columns["first_name"] == {"column": "first_name", "rule": "lower", "style": "capitalize"}
    assert "not shown: personal data" in _comment_of(result.stdout, "first_name")
    # The marker and the stamp are not attributes.
    assert block["soft_delete"] == {"column": "deleted", "value": "yes", "live": "no"}
    assert block["stamps"] == [
        {"column": "created_at", "format": "%Y-%m-%d %H:%M:%S", "on": "create"}
    ]
    assert not {"deleted", "created_at", "person_id", "contact_ref"} & set(columns)
    for spec in columns.values():
        if isinstance(spec, dict):
            assert spec["rule"] in typing.get_args(Rule)
            assert spec.get("style", "as_is") in typing.get_args(Style)
    # No sampled personal value is printed, not even one.
    printed = result.stdout + result.stderr
    for i in range(1, ROWS + 1):
        for name in PERSONAL:
            assert str(_people(i)[name]) not in printed, name


def test_map_writes_a_new_file_and_never_overwrites_one(tmp_path, people_db):
    out = tmp_path / "proposal.yaml"
    args = ("--system", "source_a", "--table", "people", "--url", f"sqlite:///{people_db}")
    first = _map(tmp_path, *args, "--out", str(out))
    assert first.returncode == 0, first.stderr
    written = out.read_text()
    assert _entity_block(written, "people")["key"] == ["person_id"]

    again = _map(tmp_path, *args, "--out", str(out))
    assert again.returncode == 2
    assert "exists; not overwriting it" in again.stderr
    assert out.read_text() == written


def test_map_only_reads_the_database(tmp_path, people_db):
    before = hashlib.sha256(people_db.read_bytes()).hexdigest()
    result = _map(tmp_path, "--system", "source_a", "--table", "people",
                  SYNCFABRIC_SOURCE_A_URL=f"sqlite:///{people_db}")  # fmt: skip
    assert result.returncode == 0, result.stderr  # the URL from the system's variable
    assert hashlib.sha256(people_db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in people_db.parent.iterdir()) == ["people.sqlite"]  # no journal


CLIENTS_DDL = """CREATE TABLE clients (
    client_no INTEGER PRIMARY KEY, contact_key TEXT, email_address TEXT, display_name TEXT,
    lifecycle_status TEXT, opted_in TEXT, balance_cents INTEGER, signed_up TEXT,
    phone_number TEXT, legacy_code TEXT)"""


def _client(i: int) -> dict[str, Any]:
    return {
        "client_no": i,
        "contact_key": f"K-{i:06d}",
        "email_address": f"client{i}@example.org",
        "display_name": f"Client Number{i}",
        "lifecycle_status": ["Active", "Inactive", "Closed"][i % 3],
        "opted_in": ["true", "false"][i % 2],
        "balance_cents": i * 100,
        "signed_up": f"{i % 28 + 1:02d}/{i % 12 + 1:02d}/2023",
        "phone_number": f"+33 1 42 68 53 {i:02d}",
        "legacy_code": f"LC{i:04d}",
    }


def test_map_with_the_starter_entity_proposes_a_block_the_project_accepts(tmp_path):
    """From `syncctl init` to a proposed mapping of a real table for the starter's entity,
    matched by name and by type, that `syncctl validate` accepts as the system's file."""
    project = tmp_path / "project"
    home = tmp_path / "home"
    assert syncctl(home, "init", str(project)).returncode == 0
    database = _sqlite_file(
        tmp_path / "clients.sqlite", CLIENTS_DDL, [_client(i) for i in range(1, ROWS + 1)]
    )
    result = syncctl(home, "--project", str(project), "map", "--system", "system_a",
                     "--table", "clients", "--entity", "contact",
                     SYNCFABRIC_SYSTEM_A_URL=f"sqlite:///{database}")  # fmt: skip
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    block = _entity_block(result.stdout, "contact")
    assert block["key"] == ["client_no"]
    assert block["canonical_key"] == "contact_key"
    assert "100% of 60 sampled values match the catalog's key pattern" in result.stdout
    assert block["columns"] == {
        "email": {"column": "email_address", "rule": "lower"},
        "full_name": "display_name",
        "status": {"column": "lifecycle_status", "rule": "lower", "style": "capitalize"},
        "newsletter": {"column": "opted_in", "rule": "boolean"},
        "balance": {"column": "balance_cents", "rule": "cents"},
        "joined_at": {"column": "signed_up", "rule": "timestamp", "format": "%d/%m/%Y"},
    }
    assert "the only column left that fits its type (boolean)" in _comment_of(
        result.stdout, "opted_in"
    )
    assert "not the catalog's words (closed): write a vocabulary" in result.stdout
    # Columns no attribute looks like stay as comments, their values unprinted.
    assert re.search(
        r"^\s+# legacy_code: \{column: legacy_code, rule: upper\}", result.stdout, re.M
    )
    assert re.search(
        r"^\s+# phone_number: \{column: phone_number, rule: phone\}", result.stdout, re.M
    )
    for i in range(1, ROWS + 1):
        for name in ("email_address", "display_name", "phone_number", "legacy_code"):
            assert str(_client(i)[name]) not in result.stdout

    system_file = project / "systems" / "system_a.yaml"
    system_file.write_text("kind: sql\nurl_env: SYNCFABRIC_SYSTEM_A_URL\n" + result.stdout)
    valid = syncctl(home, "--project", str(project), "validate")
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "the files are valid" in valid.stdout


def test_map_against_postgresql_reads_native_types(tmp_path, postgres_engine):
    schema = postgres_engine.url.query["options"].split("search_path=")[1]
    with postgres_engine.begin() as connection:
        connection.execute(sa.text("""
            CREATE TABLE members (
                member_id integer PRIMARY KEY, external_id text, email varchar(120),
                joined date, seen_at timestamptz, updated_at timestamp, verified boolean,
                fee_cents integer, price numeric(10, 2), last_seen_epoch bigint,
                renewed_on text, tier varchar(10), phone varchar(30))"""))  # fmt: skip
        connection.execute(
            sa.text("""
                INSERT INTO members
                SELECT i, 'M-' || i, 'm' || i || '@example.org',
                       date '2024-01-01' + i, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour',
                       timestamp '2024-02-01 08:00' + i * interval '1 day', i % 3 = 0,
                       i * 99, i * 1.25, 1700000000 + i * 60,
                       to_char(date '2024-05-01' + i, 'MM/DD/YYYY'),
                       (ARRAY['GOLD', 'SILVER', 'BRONZE'])[i % 3 + 1],
                       '(555) 010-' || lpad(i::text, 4, '0')
                FROM generate_series(1, 40) AS i""")
        )
    url = postgres_url().render_as_string(hide_password=False)
    result = _map(tmp_path, "--system", "source_pg", "--table", "members", "--schema", schema,
                  "--url", url, "--rows", "30")  # fmt: skip
    assert result.returncode == 0, result.stderr
    block = _entity_block(result.stdout, "members")
    columns = block["columns"]
    assert block["schema"] == schema
    assert block["key"] == ["member_id"]
    assert block["canonical_key"] == "external_id"
    assert "from the first 30 rows of" in result.stdout
    assert columns["joined"] == {"column": "joined", "rule": "timestamp", "format": "%Y-%m-%d"}
    assert "a native DATE column" in _comment_of(result.stdout, "joined")
    assert columns["seen_at"] == {"column": "seen_at", "rule": "timestamp",
                                  "format": "%Y-%m-%d %H:%M:%S"}  # fmt: skip
    assert columns["verified"] == {"column": "verified", "rule": "boolean"}
    assert columns["fee_cents"] == {"column": "fee_cents", "rule": "cents"}
    assert columns["price"] == {"column": "price", "rule": "decimal"}
    assert columns["last_seen_epoch"] == {"column": "last_seen_epoch", "rule": "epoch"}
    assert columns["renewed_on"] == {"column": "renewed_on", "rule": "timestamp",
                                     "format": "%m/%d/%Y"}  # fmt: skip
    assert columns["tier"] == {"column": "tier", "rule": "lower", "style": "upper"}
    assert columns["phone"] == {"column": "phone", "rule": "phone"}
    assert columns["email"] == {"column": "email", "rule": "lower"}
    assert block["stamps"] == [{"column": "updated_at", "format": "%Y-%m-%d %H:%M:%S"}]
    with postgres_engine.connect() as connection:  # the table as it was: read, not written
        assert connection.execute(sa.text("SELECT count(*) FROM members")).scalar() == 40


def test_map_failures_are_a_message_and_exit_2_never_the_password(tmp_path, people_db):
    password = "Secr3t-Passw0rd"
    refused = _map(tmp_path, "--system", "source_a", "--table", "people",
                   "--url", f"postgresql+psycopg://postgres:{password}@127.0.0.1:1/test")  # fmt: skip
    assert refused.returncode == 2
    assert "nothing accepts connections at 127.0.0.1:1" in refused.stderr
    assert "postgres:***@127.0.0.1:1" in refused.stderr

    not_a_url = _map(tmp_path, "--system", "source_a", "--table", "people",
                     "--url", f"nonsense://user:{password}@host/db")  # fmt: skip
    assert not_a_url.returncode == 2
    assert "not a URL Syncfabric can read" in not_a_url.stderr

    missing = _map(tmp_path, "--system", "source_a", "--table", "peple",
                   "--url", f"sqlite:///{people_db}")  # fmt: skip
    assert missing.returncode == 2
    assert "table 'peple' is not in" in missing.stderr
    assert "Tables with similar names: people" in missing.stderr

    no_file = _map(tmp_path, "--system", "source_a", "--table", "people",
                   "--url", f"sqlite:///{tmp_path / 'nowhere.sqlite'}")  # fmt: skip
    assert no_file.returncode == 2
    assert "cannot be opened" in no_file.stderr
    assert not (tmp_path / "nowhere.sqlite").exists()

    no_url = _map(tmp_path, "--system", "source_x", "--table", "people")
    assert no_url.returncode == 2
    assert "pass --url, or set SYNCFABRIC_SOURCE_X_URL" in no_url.stderr

    (tmp_path / "empty").mkdir()
    no_project = _map(tmp_path, "--system", "source_a", "--table", "people", "--entity", "contact",
                      "--url", f"sqlite:///{people_db}", SYNCFABRIC_PROJECT=str(tmp_path / "empty"))  # fmt: skip
    assert no_project.returncode == 2
    assert "no Syncfabric project at" in no_project.stderr

    unknown = _map(tmp_path, "--system", "source_a", "--table", "people", "--entity", "nothing",
                   "--url", f"sqlite:///{people_db}")  # fmt: skip
    assert unknown.returncode == 2
    assert "unknown entity 'nothing'" in unknown.stderr

    for result in (refused, not_a_url, missing, no_file, no_url, no_project, unknown):
        assert result.stdout == ""
        assert password not in result.stderr


@pytest.mark.postgres
def test_map_a_database_that_does_not_exist_hides_the_password(tmp_path):
    require_server(POSTGRES, postgres_url())
    password = "Secr3t-Passw0rd"
    url = postgres_url().set(password=password, database="sf_no_such_database")
    result = _map(tmp_path, "--system", "source_pg", "--table", "members",
                  "--url", url.render_as_string(hide_password=False))  # fmt: skip
    assert result.returncode == 2
    assert "the database does not exist on the server" in result.stderr
    assert password not in result.stderr + result.stdout


# --- the guesses, as plain functions ----------------------------------------------------------


def _column(name: str, values: list[Any], kind: str = "text", declared: str = "TEXT") -> Column:
    return Column(name, kind, declared, tuple(values))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "rule", "fmt"),
    [
        ([f"12/{d:02d}/2024" for d in range(1, 29)], "timestamp", "%m/%d/%Y"),
        ([f"2024-05-{d:02d}T10:00:00Z" for d in range(1, 29)], "timestamp", "%Y-%m-%dT%H:%M:%SZ"),
        ([f"{d:02d}.03.2024 08:15" for d in range(1, 29)], "timestamp", "%d.%m.%Y %H:%M"),
        (["Y", "N", "y", "n"] * 5, "boolean", None),
        (["12.50", "3.99", "100.00", "0.5"] * 5, "decimal", None),
        ([f"0044 20 7946 {n:04d}" for n in range(20)], "phone", None),
        ([f"{1_600_000_000 + n * 86_400}" for n in range(20)], "epoch", None),
        ([], "text", None),
    ],
)
def test_guess_rule_from_values(values, rule, fmt):
    guess = guess_rule(_column("value", values))
    assert (guess.rule, guess.format) == (rule, fmt), guess.why


def test_a_share_is_never_rounded_up_to_all():
    assert sampled_share(999, 1_000) == "99% of 1,000 sampled values"
    assert sampled_share(1_000, 1_000) == "100% of 1,000 sampled values"
    assert sampled_share(97, 100) == "97% of 100 sampled values"


@pytest.mark.parametrize(
    ("column", "attribute"),
    [
        ("email_address", "email"),
        ("EmailAddress", "email"),
        ("display_name", "full_name"),
        ("country_code", "country"),
        ("account_state", "status"),
        ("tier", "support_tier"),
        ("tel", "phone"),
        ("placed", "placed_at"),
    ],
)
def test_columns_match_attributes_by_name(column, attribute):
    assert similarity(column, attribute) >= 0.6
    assert match_columns([column, "unrelated_blob"], [attribute, "weight"]) == {attribute: column}


def test_unrelated_names_do_not_match():
    assert match_columns(["created_on", "notes", "acct_no"], ["country", "status", "email"]) == {}


def test_match_by_type_and_render_parse_with_a_hand_made_entity():
    catalog = Entity(
        name="shipment",
        key="shipment_id",
        key_pattern=r"^S[0-9]{4}$",
        lifecycle_owner="source_a",
        description="",
        attributes=(
            Attribute("price", "decimal", owner="source_a", description=""),
            Attribute("dispatched", "timestamp", owner="source_a", description=""),
            Attribute(
                "stage", "enum", owner="source_a", description="", allowed=("packed", "sent")
            ),
        ),
    )
    table = Table(
        name="parcels",
        schema=None,
        columns=(
            _column("id", list(range(1, 31)), "integer", "INTEGER"),
            _column("code", [f"S{n:04d}" for n in range(1, 31)]),
            _column("total_cents", [n * 10 for n in range(1, 31)], "integer", "INTEGER"),
            _column("left_depot", [f"2024-06-{n:02d} 09:30" for n in range(1, 31)]),
            _column("progress", ["PACKED", "SENT", "LOST"] * 10),
        ),
        primary_key=("id",),
        rows=30,
    )
    proposal = propose(table, "source_a", catalog)
    text = render(proposal)
    block = _entity_block(text, "shipment")
    assert block["canonical_key"] == "code"
    assert block["columns"] == {
        "price": {"column": "total_cents", "rule": "cents"},
        "dispatched": {"column": "left_depot", "rule": "timestamp", "format": "%Y-%m-%d %H:%M"},
        "stage": {"column": "progress", "rule": "lower", "style": "upper"},
    }
    assert "not the catalog's words (lost): write a vocabulary" in text
    assert "the only column left that fits its type (decimal)" in text


# --- syncctl init -----------------------------------------------------------------------------


def test_init_writes_a_starter_project_that_parses(tmp_path):
    target = tmp_path / "project"
    result = syncctl(tmp_path / "home", "init", str(target))
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == [
        "catalog/contact.yaml",
        "contracts/contact.yaml",
        "syncfabric.yaml",
        "systems/system_a.yaml",
        "systems/system_b.yaml",
    ]
    assert files == sorted(templates())
    for name in files:
        assert (target / name).read_text() == templates()[name]
        assert _yaml((target / name).read_text()), name
    for step in ("map --system system_a", "validate", "check"):
        assert f"syncctl --project {target} {step}" in result.stdout
    valid = syncctl(tmp_path / "home", "--project", str(target), "validate")
    assert valid.returncode == 0, valid.stdout + valid.stderr  # the project loader accepts it
    assert (
        "1 entities, 2 systems, 2 mappings, 1 schema versions: the files are valid" in valid.stdout
    )


def test_the_starter_project_names_nothing_of_the_demo():
    """Its names are placeholders to rename, not the demo's systems and entities."""
    words: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            words.update(str(k) for k in node)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)
        elif isinstance(node, str):
            words.update(re.findall(r"[a-z_]+", node.lower()))

    for name, text in templates().items():
        words.update(re.findall(r"[a-z_]+", name))
        collect(_yaml(text))
    assert {"contact", "system_a", "system_b"} <= words
    assert not words & {"crm", "billing", "support", "customer", "customers", "order", "orders"}


def test_init_refuses_a_directory_that_is_not_empty(tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    (target / "notes.txt").write_text("ours")
    result = syncctl(tmp_path / "home", "init", str(target))
    assert_no_traceback(result)
    assert result.returncode == 2
    assert "is not empty" in result.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "ours"
