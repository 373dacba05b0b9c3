"""Column lineage (sync_assets/catalog/lineage.py), derived from the project alone: from each
system's column through the snapshots and the events to the golden record, the corrections and
the systems corrected. No Dagster here."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest
from commands import assert_no_traceback, syncctl

from sync_assets.catalog.lineage import Column, build_lineage, select
from sync_assets.connectors.mappings import Lookup, raw_name
from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.govern.lineage_docs import render_lineage_html
from sync_assets.project import Project, load_project

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.fixture(scope="module")
def demo() -> Project:
    return load_project(EXAMPLES / "demo")


@pytest.fixture(scope="module")
def fitness() -> Project:
    return load_project(EXAMPLES / "fitness")


def labels(nodes) -> set[str]:
    return {column.label for node in nodes for column in node.columns()}


def test_an_attributes_upstream_is_its_owners_column_through_the_events(demo):
    email = build_lineage(demo).attributes["customer", "email"]
    assert (email.owner, email.pii, email.mapped_by) == ("crm", True, ("crm", "billing", "support"))
    [events] = email.upstream
    assert events.column == Column(
        "events", "validated_events", "customer.email", "validated_customer_events",
        holds="customer.email",
    )  # fmt: skip
    assert {child.column.label for child in events.children} == {
        "crm contacts.email_address",  # the owner's change events
        "snapshot_crm_customer.email",  # and what reconciliation lands from its snapshot
    }
    # Only the owner feeds the golden record: no other system's column is upstream.
    assert labels(email.upstream) == {
        "validated_customer_events.email",
        "crm contacts.email_address",
        "snapshot_crm_customer.email",
    }


def test_an_attributes_downstream_is_every_other_systems_column_through_the_corrections(demo):
    email = build_lineage(demo).attributes["customer", "email"]
    [corrections] = email.downstream
    assert corrections.column.asset == "corrections"
    assert corrections.column.column == "customer.email"
    assert {(c.column.asset, c.column.column, c.how) for c in corrections.children} == {
        ("delivered/billing", "accounts.billing_email", "written back (upper)"),
        ("delivered/support", "users.email", "written back"),
    }
    assert labels(email.compared) == {
        "snapshot_billing_customer.email", "billing accounts.billing_email",
        "snapshot_support_customer.email", "support users.email",
    }  # fmt: skip


def test_an_attribute_owned_by_a_system_that_is_not_the_lifecycle_owner(demo):
    plan = build_lineage(demo).attributes["customer", "plan"]
    assert labels(plan.upstream) >= {"billing accounts.plan", "snapshot_billing_customer.plan"}
    [corrections] = plan.downstream
    assert [c.column.label for c in corrections.children] == ["crm contacts.plan_name"]


def test_an_attribute_only_its_owner_keeps_has_nothing_downstream(demo):
    lineage = build_lineage(demo)
    opt_in = lineage.attributes["customer", "marketing_opt_in"]
    assert opt_in.downstream == () and opt_in.compared == ()
    assert opt_in.notes == ("no system but its owner crm keeps it: nothing to correct",)


def test_a_column_read_through_a_lookup_is_named_in_its_own_table(demo):
    """The order's customer is read through billing's accounts table."""
    customer = build_lineage(demo).attributes["order", "customer_id"]
    assert "billing accounts.customer_ref" in labels(customer.upstream)


def test_the_key_comes_from_each_systems_key_column(demo):
    key = build_lineage(demo).attributes["customer", "customer_id"]
    assert key.is_key and key.owner == "crm" and key.downstream == ()
    assert "crm contacts.contact_id" in labels(key.upstream)
    assert "support users.external_id" in labels(key.compared)


def test_each_assets_column_deps(demo):
    lineage = build_lineage(demo)
    assert [c.label for c in lineage.deps_of("snapshot_billing_customer")["email"]] == [
        "billing accounts.billing_email"
    ]
    assert [c.column for c in lineage.deps_of("golden_customer")["email"]] == ["customer.email"]
    assert [c.asset for c in lineage.deps_of("corrections")["customer.email"]] == [
        "golden_customer"
    ]
    assert set(lineage.deps_of("delivered/crm")) == {"contacts.plan_name"}
    assert lineage.destinations() == ["crm", "billing", "support"]


def test_the_fitness_club(fitness):
    lineage = build_lineage(fitness)
    email = lineage.attributes["member", "contact_email"]
    assert "frontdesk people.email" in labels(email.upstream)
    [corrections] = email.downstream
    assert [c.column.label for c in corrections.children] == ["dues payers.receipt_email"]
    fee = lineage.attributes["subscription", "monthly_fee"]
    assert "dues subscriptions.monthly_fee" in labels(fee.upstream)
    assert [c.column.label for c in fee.downstream[0].children] == ["frontdesk passes.fee_shown"]
    assert lineage.attributes["subscription", "debit"].downstream == ()
    assert lineage.destinations() == ["frontdesk", "dues"]
    shown = " ".join(c.label for c in lineage.columns())
    assert "crm" not in shown and "customer" not in shown


def test_an_attribute_no_system_maps_says_so(tmp_path):
    project = tmp_path / "demo"
    shutil.copytree(EXAMPLES / "demo", project, ignore=shutil.ignore_patterns("__pycache__"))
    crm = project / "systems" / "crm.yaml"
    crm.write_text(
        "".join(
            line
            for line in crm.read_text().splitlines(keepends=True)
            if "marketing_opt_in" not in line
        )
    )
    opt_in = build_lineage(load_project(project)).attributes["customer", "marketing_opt_in"]
    assert opt_in.unmapped and opt_in.downstream == () and opt_in.compared == ()
    assert [node.column.label for node in opt_in.upstream] == [
        "validated_customer_events.marketing_opt_in"
    ]
    assert opt_in.notes == (
        "no system maps customer.marketing_opt_in: it lives in the golden record only, "
        "from crm's events",
    )


@pytest.mark.parametrize(
    ("target", "count"), [(None, 15), ("customer", 9), ("order", 6), ("customer.email", 1)]
)
def test_select_by_entity_or_attribute(demo, target, count):
    assert len(select(build_lineage(demo), demo, target)) == count


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("client", "unknown entity 'client'; the catalog has customer, order"),
        ("customer.mail", "customer has no attribute 'mail'; it has customer_id, email,"),
    ],
)
def test_an_unknown_name_names_the_known_ones(demo, target, message):
    with pytest.raises(SyncfabricError) as raised:
        select(build_lineage(demo), demo, target)
    assert raised.value.message.startswith(message)
    assert raised.value.exit_code == EXIT_USAGE


# What people read: `syncctl lineage` (text, JSON, HTML) and the HTML section a report embeds.


def mapped_columns(project: Project) -> set[str]:
    """Every column a system keeps for the catalog, as the lineage names it to people."""
    return {
        f"{system} {raw_name(field.source) if isinstance(field.source, Lookup) else f'{m.table}.{field.source}'}"
        for (system, _), m in project.mappings.items()
        for field in (m.canonical_key, *m.fields)
    }


def test_syncctl_lineage_of_an_attribute_prints_its_upstream_and_downstream(tmp_path):
    result = syncctl(tmp_path, "lineage", "customer.email")
    assert result.returncode == 0, result.stderr
    upstream, downstream = result.stdout.split("\n  downstream\n")
    assert upstream.startswith("customer.email (owned by crm, PII)\n  upstream\n")
    assert "└── validated_customer_events.email" in upstream
    assert "crm contacts.email_address" in upstream and "billing" not in upstream
    assert "└── corrections customer.email" in downstream
    assert "billing accounts.billing_email  written back (upper)" in downstream
    assert "support users.email" in downstream


def test_syncctl_lineage_of_an_entity_as_json(tmp_path):
    result = syncctl(tmp_path, "lineage", "customer", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    names = [a["attribute"] for a in found["attributes"]]
    assert names == [
        "customer_id",
        *load_project(EXAMPLES / "demo").entity("customer").attribute_names,
    ]
    plan = next(a for a in found["attributes"] if a["attribute"] == "plan")
    [corrections] = plan["downstream"]
    assert [c["label"] for c in corrections["children"]] == ["crm contacts.plan_name"]


def test_syncctl_lineage_of_another_project(tmp_path):
    result = syncctl(
        tmp_path, "--project", str(EXAMPLES / "fitness"), "lineage", "member.contact_email"
    )
    assert result.returncode == 0, result.stderr
    assert "frontdesk people.email" in result.stdout
    assert "dues payers.receipt_email" in result.stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("client.email", "unknown entity 'client'; the catalog has customer, order\n"),
        ("order.total", "order has no attribute 'total'; it has order_id, customer_id, status,"),
    ],
)
def test_syncctl_lineage_of_an_unknown_name_names_the_known_ones(tmp_path, target, message):
    result = syncctl(tmp_path, "lineage", target)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.startswith(message) and result.stdout == ""
    assert_no_traceback(result)


@pytest.mark.parametrize("example", ["demo", "fitness"])
def test_the_lineage_page_shows_every_mapped_column(example):
    project = load_project(EXAMPLES / example)
    page = render_lineage_html(project)
    assert page.startswith('<section class="sf-lineage"') and page.endswith("</section>\n")
    for column in mapped_columns(project):
        assert f"<code>{html.escape(column)}</code>" in page, column
    for entity in project.entities.values():
        for name in entity.attribute_names:
            assert f"<code>{entity.golden_table}.{name}</code>" in page
    assert "<script" not in page and "<link" not in page and "src=" not in page


def test_syncctl_lineage_writes_the_page(tmp_path):
    path = tmp_path / "lineage.html"
    result = syncctl(tmp_path, "lineage", "--html", str(path))
    assert result.returncode == 0, result.stderr
    assert f"written to {path}" in result.stdout
    page = path.read_text(encoding="utf-8")
    assert (
        page.startswith("<!DOCTYPE html>")
        and render_lineage_html(load_project(EXAMPLES / "demo")) in page
    )
