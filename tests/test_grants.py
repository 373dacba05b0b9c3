"""`syncctl grants` without a server: what the script grants, derived from the project's files,
and the clear refusals (SQLite, a platform, a hostile role name). The script is run against real
servers in test_grants_servers.py; the writer URL's way to a delivery is checked here."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
from commands import assert_no_traceback, syncctl
from conftest import DEMO_PROJECT

from sync_assets.connectors.grants import Roles, grants_script, reader_columns, writer_tables
from sync_assets.connectors.resource import SystemsResource, system_write_urls
from sync_assets.errors import SyncfabricError
from sync_assets.govern.docs import catalog_markdown
from sync_assets.project import current, load_project

ROLES = Roles("r", "w")


def grants_of(script: str, role: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("GRANT") and f"TO {role}" in line]  # fmt: skip


def test_the_reader_selects_exactly_the_mapped_columns_and_the_writer_deletes_only_where_it_must():
    project = current()
    billing = grants_script(project, "billing", "mysql", ROLES, "billing_db")
    reader = grants_of(billing, "'r'@'%'")
    assert reader == [
        "GRANT SELECT (`account_state`, `acct_no`, `billing_email`, `country`, `customer_ref`, "
        "`plan`, `updated`) ON `billing_db`.`accounts` TO 'r'@'%';",
        "GRANT SELECT (`acct_no`, `currency`, `order_number`, `placed`, `state`, `total_cents`, "
        "`voided`) ON `billing_db`.`orders` TO 'r'@'%';",
    ]
    # soft deletes and `hold`: a delivery never removes a row there
    assert grants_of(billing, "'w'@'%'") == [
        "GRANT SELECT, INSERT, UPDATE ON `billing_db`.`accounts` TO 'w'@'%';",
        "GRANT SELECT, INSERT, UPDATE ON `billing_db`.`orders` TO 'w'@'%';",
        "GRANT SELECT, INSERT, DELETE ON `billing_db`.`syncfabric_versions` TO 'w'@'%';",
        "GRANT SELECT, INSERT ON `billing_db`.`syncfabric_applied` TO 'w'@'%';",
    ]
    support = grants_script(project, "support", "postgresql", ROLES)
    # the support desk hard-deletes: DELETE on its table, and nothing more than that anywhere
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."users" TO "w";' in support
    assert not re.search(r"\bALL\b|CREATE ON|SUPERUSER|GRANT OPTION", support)
    assert "CREATE TABLE IF NOT EXISTS public.syncfabric_versions" in support
    assert 'ALTER ROLE "w" SET search_path TO "public";' in support


def demo_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT, copy, ignore=shutil.ignore_patterns("seed", "__*"))
    settings = copy / "syncfabric.yaml"
    settings.write_text(settings.read_text().replace("seed: seed", ""))
    return copy


def test_compensation_needs_delete(tmp_path):
    copy = demo_copy(tmp_path)
    catalog = copy / "catalog" / "order.yaml"
    assert "on_undeliverable" not in catalog.read_text()
    catalog.write_text(catalog.read_text() + "on_undeliverable: compensate\n")
    project = load_project(copy)
    billing = [m for m in project.mappings.values() if m.system == "billing"]
    writer = writer_tables(project, billing)
    # undoing a create removes the row, soft deletes or not
    assert writer[None, "orders"] == ["SELECT", "INSERT", "UPDATE", "DELETE"]
    assert writer[None, "accounts"] == ["SELECT", "INSERT", "UPDATE"]
    assert set(reader_columns(billing)) == {(None, "accounts"), (None, "orders")}


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


def test_a_sqlite_system_has_no_roles_and_says_so(home):
    done = syncctl(home, "--project", str(DEMO_PROJECT), "grants", "--system", "support")
    assert done.returncode == 2 and done.stdout == ""
    assert_no_traceback(done)
    assert "SQLite has no roles or grants" in done.stderr
    assert "SYNCFABRIC_SUPPORT_URL is not set" in done.stderr
    done = syncctl(
        home, "--project", str(DEMO_PROJECT), "grants", "--system", "support",
        SYNCFABRIC_SUPPORT_URL=f"sqlite:///{home}/support.sqlite",
    )  # fmt: skip
    assert done.returncode == 2 and "SQLite has no roles or grants" in done.stderr
    done = syncctl(
        home, "--project", str(DEMO_PROJECT), "grants", "--system", "support",
        "--dialect", "postgresql", SYNCFABRIC_SUPPORT_URL=f"sqlite:///{home}/support.sqlite",
    )  # fmt: skip
    assert done.returncode == 0 and 'ON "public"."users" TO "syncfabric_support_writer";' in done.stdout  # fmt: skip


def test_the_dialect_and_database_come_from_the_systems_url(home):
    done = syncctl(
        home, "--project", str(DEMO_PROJECT), "grants", "--system", "billing",
        SYNCFABRIC_BILLING_URL="mysql+pymysql://someone:s3cret@db.example/billing_prod",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "CREATE USER IF NOT EXISTS 'syncfabric_billing_reader'@'%' ACCOUNT LOCK;" in done.stdout
    assert "ON `billing_prod`.`accounts` TO 'syncfabric_billing_writer'@'%';" in done.stdout
    assert "s3cret" not in done.stdout
    done = syncctl(
        home, "--project", str(DEMO_PROJECT), "grants", "--system", "crm", "--reader", "crm_ro",
        SYNCFABRIC_CRM_URL="postgresql+psycopg://someone@db.example/crm",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 'ON "public"."contacts" TO "crm_ro";' in done.stdout


def test_a_platform_or_a_hostile_role_name_is_refused_clearly(home):
    done = syncctl(
        home, "--project", str(DEMO_PROJECT), "grants", "--system", "support",
        SYNCFABRIC_SUPPORT_URL="https://platform.example/api",
    )  # fmt: skip
    assert done.returncode == 2 and "no SQL roles" in done.stderr
    assert_no_traceback(done)
    for option, value in [("--reader", 'x"; DROP ROLE postgres; --'), ("--writer", "Writer")]:
        done = syncctl(
            home, "--project", str(DEMO_PROJECT), "grants", "--system", "crm",
            "--dialect", "postgresql", option, value,
        )  # fmt: skip
        assert done.returncode == 2 and done.stdout == ""
        assert_no_traceback(done)
        assert f"{option} {value!r} is not a role name" in done.stderr
    done = syncctl(home, "--project", str(DEMO_PROJECT), "grants", "--system", "nowhere")
    assert done.returncode == 2 and "the project has no system 'nowhere'" in done.stderr


def test_refusals_are_syncfabric_errors():
    with pytest.raises(SyncfabricError, match="same role"):
        grants_script(current(), "crm", "postgresql", Roles("r", "r"))
    with pytest.raises(SyncfabricError, match="--schema"):
        grants_script(current(), "crm", "postgresql", ROLES, 'public"; --')


def test_deliveries_take_the_writer_url_and_snapshots_the_readers(monkeypatch, tmp_path):
    copy = demo_copy(tmp_path)
    crm = copy / "systems" / "crm.yaml"
    crm.write_text(crm.read_text().replace(
        "url_env: SYNCFABRIC_CRM_URL\n", "url_env: SYNCFABRIC_CRM_URL\nwrite_url_env: CRM_WRITE_URL\n"
    ))  # fmt: skip
    project = load_project(copy)
    assert project.systems["crm"].writer_env == "CRM_WRITE_URL"
    assert "| `SYNCFABRIC_CRM_URL` (writes: `CRM_WRITE_URL`) |" in catalog_markdown(project)
    assert project.systems["billing"].writer_env == "SYNCFABRIC_BILLING_URL"
    monkeypatch.delenv("SYNCFABRIC_CRM_URL", raising=False)
    monkeypatch.delenv("CRM_WRITE_URL", raising=False)
    assert system_write_urls(project) == {}  # the embedded SQLite file: read and written alike
    monkeypatch.setenv("SYNCFABRIC_CRM_URL", "postgresql+psycopg://reader@db/crm")
    with pytest.raises(
        SyncfabricError, match="CRM_WRITE_URL is not set while SYNCFABRIC_CRM_URL is"
    ):
        system_write_urls(project)  # never a delivery through the read-only role
    monkeypatch.setenv("CRM_WRITE_URL", "postgresql+psycopg://writer@db/crm")
    assert system_write_urls(project) == {"crm": dg.EnvVar("CRM_WRITE_URL")}
    systems = SystemsResource(
        urls={"crm": dg.EnvVar("SYNCFABRIC_CRM_URL"), "billing": "sqlite://"},  # type: ignore[dict-item]
        write_urls=system_write_urls(project),  # type: ignore[arg-type]
    )

    @dg.asset
    def urls(systems: SystemsResource) -> dict[str, str]:
        return {
            "read": systems.url("crm"),
            "write": systems.write_url("crm"),
            "billing": systems.write_url("billing"),
        }

    result = dg.materialize([urls], resources={"systems": systems})
    assert result.output_for_node("urls") == {
        "read": "postgresql+psycopg://reader@db/crm",
        "write": "postgresql+psycopg://writer@db/crm",
        "billing": "sqlite://",
    }
