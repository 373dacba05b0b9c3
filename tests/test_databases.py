"""The real-database test helpers (tests/databases.py) against the PostgreSQL and MariaDB servers.

Also records how the two servers differ in ways reconciliation must not mistake for drift:
MariaDB's default collation compares case- and trailing-space-insensitively, its DATETIME keeps
whole seconds and its CHAR drops trailing spaces; PostgreSQL compares exactly, keeps microseconds
and pads CHAR(n).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from databases import (
    MARIADB,
    POSTGRES,
    copy_sqlite_table,
    in_ci,
    mariadb_url,
    postgres_url,
    read_only_engine,
    require_server,
    unreachable_reason,
)
from sqlalchemy.engine import Engine, make_url

TESTS_DIR = Path(__file__).parent
SEEN_TARGETS: dict[str, list[str]] = {"postgresql": [], "mysql": []}


@pytest.fixture(
    params=[
        pytest.param("postgres_engine", marks=pytest.mark.postgres),
        pytest.param("mariadb_engine", marks=pytest.mark.mariadb),
    ]
)
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each test below that takes `engine` runs once per server (fixtures reached through
    `getfixturevalue` are not seen at collection, hence the marks here)."""
    return request.getfixturevalue(request.param)


def current_target(engine: Engine) -> str:
    """The schema (PostgreSQL) or database (MariaDB) the engine works in."""
    query = (
        "SELECT current_schema()" if engine.dialect.name == "postgresql" else "SELECT DATABASE()"
    )
    with engine.connect() as connection:
        return connection.execute(sa.text(query)).scalar_one()


def target_exists(engine: Engine, name: str) -> bool:
    """Whether a schema (PostgreSQL) or database (MariaDB) of that name exists."""
    query = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = :name"
    with engine.connect() as connection:
        return connection.execute(sa.text(query), {"name": name}).scalar_one() == 1


# --- isolation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_its_own_empty_schema_or_database(
    engine: Engine, turn: str, request: pytest.FixtureRequest
) -> None:
    """Both turns create the same table name; whichever runs second sees nothing of the first."""
    dialect = engine.dialect.name
    marker = "postgres" if dialect == "postgresql" else "mariadb"
    assert request.node.get_closest_marker(marker), "the fixture's marker is applied"

    target = current_target(engine)
    assert target.startswith("sf_test_")
    assert sa.inspect(engine).get_table_names() == []
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY, turn TEXT)"))
        connection.execute(sa.text("INSERT INTO probe VALUES (1, :turn)"), {"turn": turn})

    for earlier in SEEN_TARGETS[dialect]:
        assert earlier != target
        assert not target_exists(engine, earlier), f"{earlier} was dropped after its test"
    SEEN_TARGETS[dialect].append(target)


def test_a_second_engine_from_the_url_lands_in_the_same_place(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE here (id INTEGER)"))
    other = sa.create_engine(engine.url)
    try:
        assert current_target(other) == current_target(engine)
        assert sa.inspect(other).get_table_names() == ["here"]
    finally:
        other.dispose()


# --- copying the demo systems' tables -----------------------------------------------------------


@pytest.fixture(scope="session")
def demo_systems(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's source systems (crm, billing, support SQLite files), built once per session."""
    home = tmp_path_factory.mktemp("demo") / "syncfabric"
    syncctl = Path(sys.executable).with_name("syncctl")
    subprocess.run(
        [str(syncctl), "demo", "--customers", "300", "--orders", "1000"],
        env={**os.environ, "SYNCFABRIC_HOME": str(home)},
        check=True,
        capture_output=True,
    )
    return home / "systems"


def sqlite_rows(path: Path, table: str, key: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()


def server_rows(engine: Engine, table: str, key: str) -> list[tuple]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY {key}"))
        ]


def column_types(engine: Engine, table: str) -> dict[str, tuple]:
    """Per column: data type, character length, numeric precision and scale, datetime precision."""
    here = "current_schema()" if engine.dialect.name == "postgresql" else "DATABASE()"
    query = (
        "SELECT column_name, data_type, character_maximum_length, numeric_precision,"
        " numeric_scale, datetime_precision FROM information_schema.columns"
        f" WHERE table_schema = {here} AND table_name = :table"
    )
    with engine.connect() as connection:
        return {
            name: (kind.lower(), *rest)
            for name, kind, *rest in connection.execute(sa.text(query), {"table": table})
        }


def test_copy_contacts_round_trips_with_server_types(engine: Engine, demo_systems: Path) -> None:
    source = demo_systems / "crm.sqlite"
    copy_sqlite_table(source, "contacts", engine)

    expected = sqlite_rows(source, "contacts", "contact_id")
    copied = server_rows(engine, "contacts", "contact_id")
    assert len(copied) == len(expected) == 300
    created_on = 8  # ISO text in SQLite -> a timestamp column on the server
    for before, after in zip(expected, copied, strict=True):
        assert after[created_on] == datetime.fromisoformat(before[created_on])
        assert after[:created_on] + after[created_on + 1 :] == (
            before[:created_on] + before[created_on + 1 :]
        )

    types = column_types(engine, "contacts")
    if engine.dialect.name == "postgresql":
        assert types["display_name"][:2] == ("text", None)
        assert types["created_on"][0] == "timestamp without time zone"
        assert types["created_on"][-1] == 6
        assert types["deleted"][0] == "integer"
    else:
        assert types["display_name"][:2] == ("varchar", 255)
        assert types["created_on"][0] == "datetime"
        assert types["created_on"][-1] == 0
        assert types["deleted"][0] == "int"


def test_copy_orders_with_amounts_day_first_times_and_char_codes(
    engine: Engine, demo_systems: Path
) -> None:
    source = demo_systems / "billing.sqlite"
    copy_sqlite_table(
        source,
        "orders",
        engine,
        column_types={
            "total_cents": ("decimal(12,2)", lambda cents: Decimal(cents) / 100),
            "placed": "timestamp",  # the billing system writes dd/mm/yyyy HH:MM
            "currency": "char(3)",
        },
    )
    copy_sqlite_table(source, "accounts", engine)

    with engine.connect() as connection:
        count, total, latest = connection.execute(
            sa.text("SELECT count(*), sum(total_cents), max(placed) FROM orders")
        ).one()
        accounts = connection.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one()
    with sqlite3.connect(source) as connection:
        want_count, want_cents, want_accounts = connection.execute(
            "SELECT count(*), sum(total_cents), (SELECT count(*) FROM accounts) FROM orders"
        ).fetchone()
    assert count == want_count == 1000
    assert accounts == want_accounts > 0
    assert total == Decimal(want_cents) / 100
    assert isinstance(latest, datetime)
    types = column_types(engine, "orders")
    assert types["total_cents"][0] in ("numeric", "decimal")
    assert types["total_cents"][2:4] == (12, 2)
    assert types["currency"][:2] in (("character", 3), ("char", 3))

    first = server_rows(engine, "orders", "order_number")[0]
    raw = sqlite_rows(source, "orders", "order_number")[0]
    placed = datetime.strptime(raw[5], "%d/%m/%Y %H:%M")
    assert first[5] == placed
    assert first[3] == Decimal(raw[3]) / 100
    assert first[4] == raw[4] + " " * (3 - len(raw[4]))  # 3-letter codes: no padding either way


def test_copy_handles_100k_rows(engine: Engine, tmp_path: Path) -> None:
    source = tmp_path / "big.sqlite"
    with sqlite3.connect(source) as connection:
        connection.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, email TEXT NOT NULL, amount REAL,"
            " at TEXT NOT NULL)"
        )
        connection.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?)",
            (
                (i, f"user{i}@Example.com", i / 100, f"2026-10-{1 + i % 28:02d} 12:{i % 60:02d}:00")
                for i in range(100_000)
            ),
        )
    copy_sqlite_table(source, "events", engine, column_types={"amount": "decimal"})
    with engine.connect() as connection:
        count, total, zero = connection.execute(
            sa.text("SELECT count(*), sum(amount), min(id) FROM events")
        ).one()
    assert (count, zero) == (100_000, 0)  # id 0 kept: no AUTO_INCREMENT on MariaDB
    assert total == Decimal(sum(range(100_000))) / 100


# --- server differences that reconciliation must expect ----------------------------------------


def test_mariadb_default_collation_is_case_insensitive(
    mariadb_engine: Engine, demo_systems: Path
) -> None:
    copy_sqlite_table(demo_systems / "billing.sqlite", "accounts", mariadb_engine)
    with mariadb_engine.connect() as connection:
        assert connection.execute(sa.text("SELECT 'A' = 'a'")).scalar_one() == 1
        assert connection.execute(sa.text("SELECT 'a ' = 'a'")).scalar_one() == 1  # PAD SPACE
        email = connection.execute(
            sa.text("SELECT billing_email FROM accounts ORDER BY acct_no LIMIT 1")
        ).scalar_one()
        assert email == email.upper()  # stored as the billing system wrote it...
        matches = connection.execute(
            sa.text("SELECT count(*) FROM accounts WHERE billing_email = :email"),
            {"email": email.lower()},
        ).scalar_one()
        assert matches == 1  # ...yet equal to its lower-case form
        collation = connection.execute(
            sa.text(
                "SELECT collation_name FROM information_schema.columns"
                " WHERE table_schema = DATABASE() AND table_name = 'accounts'"
                " AND column_name = 'billing_email'"
            )
        ).scalar_one()
    assert collation.endswith("_ci")


def test_postgres_compares_text_exactly(postgres_engine: Engine) -> None:
    with postgres_engine.connect() as connection:
        assert connection.execute(sa.text("SELECT 'A' = 'a'")).scalar_one() is False
        assert connection.execute(sa.text("SELECT 'a '::text = 'a'")).scalar_one() is False


def test_char_and_fractional_seconds_differ_between_servers(engine: Engine, tmp_path: Path) -> None:
    source = tmp_path / "codes.sqlite"
    with sqlite3.connect(source) as connection:
        connection.execute(
            "CREATE TABLE codes (id INTEGER PRIMARY KEY, code TEXT, note TEXT, at TEXT)"
        )
        connection.execute(
            "INSERT INTO codes VALUES (1, 'gb', 'trailing  ', '2026-10-01 12:00:00.654321')"
        )
    copy_sqlite_table(source, "codes", engine, column_types={"code": "char(3)"})
    (_, code, note, at) = server_rows(engine, "codes", "id")[0]
    assert note == "trailing  "  # VARCHAR / TEXT keep trailing spaces on both
    if engine.dialect.name == "postgresql":
        assert code == "gb "  # CHAR(n) pads
        assert at == datetime(2026, 10, 1, 12, 0, 0, 654321)  # TIMESTAMP(6)
    else:
        assert code == "gb"  # CHAR drops trailing spaces on read
        assert at.microsecond == 0  # DATETIME: whole seconds (MariaDB truncates)
        assert at.replace(second=0) == datetime(2026, 10, 1, 12, 0)


# --- read-only sessions -------------------------------------------------------------------------


def test_read_only_session_rejects_writes(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (id INTEGER)"))
    statement = (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
        if engine.dialect.name == "postgresql"
        else "SET SESSION TRANSACTION READ ONLY"
    )
    with engine.connect() as connection:
        connection.execute(sa.text(statement))
        connection.commit()  # applies from the next transaction on
        assert connection.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 0
        with pytest.raises(sa.exc.DBAPIError) as raised:
            connection.execute(sa.text("INSERT INTO t VALUES (1)"))
        connection.rollback()
    assert_read_only_error(engine, raised.value)


def test_read_only_engine_rejects_writes(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (id INTEGER)"))
        connection.execute(sa.text("INSERT INTO t VALUES (1)"))
    reader = read_only_engine(engine.url)
    try:
        with reader.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 1
            with pytest.raises(sa.exc.DBAPIError) as raised:
                connection.execute(sa.text("DELETE FROM t"))
        assert_read_only_error(engine, raised.value)
        # Still read-only on the pooled connection, after the pool's rollback:
        with reader.connect() as connection, pytest.raises(sa.exc.DBAPIError):
            connection.execute(sa.text("INSERT INTO t VALUES (2)"))
    finally:
        reader.dispose()
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 1


def assert_read_only_error(engine: Engine, error: sa.exc.DBAPIError) -> None:
    if engine.dialect.name == "postgresql":
        assert error.orig.sqlstate == "25006"  # read_only_sql_transaction
    else:
        assert error.orig.args[0] == 1792  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION


# --- where the servers are, and what happens when they are not there ---------------------------

UNREACHABLE = {
    "postgres": make_url("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=3"),
    "mariadb": make_url("mysql+pymysql://root@127.0.0.1:1/test?connect_timeout=3"),
}


@pytest.mark.parametrize("which", ["postgres", "mariadb"])
def test_unreachable_server_skips_on_a_developer_machine(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = POSTGRES if which == "postgres" else MARIADB
    monkeypatch.delenv("CI", raising=False)
    assert unreachable_reason(UNREACHABLE[which]) is not None
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_server(server, UNREACHABLE[which])
    message = str(skipped.value)
    assert f"{server.label} not reachable at " in message
    assert "127.0.0.1:1" in message
    assert f"start it or set {server.env_var}" in message


@pytest.mark.parametrize("which", ["postgres", "mariadb"])
@pytest.mark.parametrize("ci", ["true", "1"])
def test_unreachable_server_fails_in_ci(
    which: str, ci: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = POSTGRES if which == "postgres" else MARIADB
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception) as failed:
        require_server(server, UNREACHABLE[which])
    assert f"{server.label} not reachable at " in str(failed.value)
    assert ".ci/services.sh" in str(failed.value)


def test_reachable_servers_neither_skip_nor_fail(
    postgres_engine: Engine, mariadb_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    for server, url in ((POSTGRES, postgres_url()), (MARIADB, mariadb_url())):
        assert unreachable_reason(url) is None
        require_server(server, url)


def test_ci_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in [
        ("true", True),
        ("1", True),
        ("false", False),
        ("0", False),
        ("", False),
    ]:
        monkeypatch.setenv("CI", value)
        assert in_ci() is expected
    monkeypatch.delenv("CI")
    assert in_ci() is False


def test_urls_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POSTGRES.env_var, raising=False)
    monkeypatch.delenv(MARIADB.env_var, raising=False)
    assert postgres_url().render_as_string() == (
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?connect_timeout=3"
    )
    assert mariadb_url().render_as_string() == (
        "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4&connect_timeout=3"
    )
    monkeypatch.setenv(POSTGRES.env_var, "postgresql://u:secret@db.example:6543/other")
    monkeypatch.setenv(MARIADB.env_var, "mariadb://u@db.example/other?connect_timeout=9")
    assert postgres_url().drivername == "postgresql+psycopg"
    assert postgres_url().port == 6543
    assert mariadb_url().drivername == "mariadb+pymysql"
    assert mariadb_url().query["connect_timeout"] == "9"


def test_password_is_hidden_in_the_skip_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    url = make_url("postgresql+psycopg://u:hunter2@127.0.0.1:1/test")
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_server(POSTGRES, url)
    assert "hunter2" not in str(skipped.value)


@pytest.mark.parametrize(("ci", "outcome"), [(None, "skipped"), ("true", "errors")])
def test_fixtures_skip_or_fail_in_a_real_pytest_run(
    ci: str | None, outcome: str, tmp_path: Path
) -> None:
    """End to end: a test using the fixtures against unreachable servers, with and without CI."""
    (tmp_path / "conftest.py").write_text(
        "from databases import mariadb_engine, postgres_engine  # noqa: F401\n"
    )
    (tmp_path / "test_probe.py").write_text(
        textwrap.dedent(
            """
            def test_pg(postgres_engine):
                pass

            def test_maria(mariadb_engine):
                pass
            """
        )
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CI", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")
    }
    env.update(
        PYTHONPATH=str(TESTS_DIR),
        SYNCFABRIC_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:1/test",
        SYNCFABRIC_TEST_MARIADB_URL="mysql://root@127.0.0.1:1/test",
    )
    if ci:
        env["CI"] = ci
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = result.stdout.strip().splitlines()[-1]
    assert f"2 {outcome}" in summary, result.stdout
    if ci:
        assert result.returncode == 1
        assert "CI must run these tests" in result.stdout
    else:
        assert result.returncode == 0
        assert "PostgreSQL not reachable at postgresql+psycopg://postgres@127.0.0.1:1/test" in (
            result.stdout
        )
