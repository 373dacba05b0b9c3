"""Column lineage (sync_assets/catalog/lineage.py), derived from the project alone: from each
system's column through the snapshots and the events to the golden record, the corrections and
the systems corrected. No Dagster here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sync_assets.catalog.lineage import Column, build_lineage, select
from sync_assets.errors import EXIT_USAGE, SyncfabricError
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
