"""The schema registry: every change to an event schema is judged against what was signed off
(`syncctl schema check`), signed with a name and a note (`syncctl schema approve`), and events of
retired or unknown versions are dead letters naming the supported ones. Older versions' events are
upcast (renames, defaults) and applied like the current version's."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from commands import assert_no_traceback, syncctl
from conftest import DEMO_PROJECT, at, event, land, rows, run_core

from sync_assets.catalog import compatibility
from sync_assets.govern import changelog, deprecation, registry
from sync_assets.govern.docs import catalog_pages
from sync_assets.project import ProjectError, load_project
from sync_assets.project.active import PROJECT_ENV
from sync_assets.warehouse import connect


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the demo project, change log included, to change."""
    copy = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT, copy, ignore=shutil.ignore_patterns("seed", "__*"))
    (copy / "syncfabric.yaml").write_text(
        (copy / "syncfabric.yaml").read_text().replace("seed: seed", "")
    )
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def schema(project: Path, *args: str) -> tuple[int, str]:
    result = syncctl(project / "home", "--project", str(project), "schema", *args)
    assert_no_traceback(result)
    return result.returncode, result.stdout + result.stderr


def verdicts(project: Path) -> dict[str, registry.Verdict]:
    loaded = load_project(project)
    return {v.subject.name: v for v in registry.judge(loaded, changelog.read(project))}


# A compatible change, made the way the check asks: a new optional attribute, absent from the
# versions already approved, carried by a new version 3.
NEW_ATTRIBUTE = """  support_tier:"""
LANGUAGE = """  preferred_language:
    type: enum
    owner: crm
    allowed: [en, de, fr]
    description: The language the customer is written to in.
  support_tier:"""


def add_language(project: Path, *, pin_old_versions: bool = True) -> None:
    edit(project / "catalog" / "customer.yaml", NEW_ATTRIBUTE, LANGUAGE)
    contract = project / "contracts" / "customer.yaml"
    if pin_old_versions:
        edit(
            contract, "absent: [marketing_opt_in]", "absent: [marketing_opt_in, preferred_language]"
        )
        edit(contract, "  - version: 2\n", "  - version: 2\n    absent: [preferred_language]\n")
    contract.write_text(contract.read_text() + "  - version: 3\n")


def test_the_demo_contracts_are_signed_off():
    found = verdicts(DEMO_PROJECT)
    assert sorted(found) == sorted(
        f"{e}.{a}" for e in ("customer", "order") for a in ("created", "updated", "deleted", "reconciled")
    )  # fmt: skip
    assert {v.status for v in found.values()} == {"approved"}
    assert found["customer.created"].subject.compatibility == "BACKWARD_TRANSITIVE"


def test_check_passes_on_the_demo_and_prints_json(project):
    code, out = schema(project, "check", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    customer = next(s for s in report["subjects"] if s["subject"] == "customer.created")
    assert customer["versions"] == [1, 2] and customer["current"] == 2
    assert customer["hash"] == customer["approved_hash"]


def test_a_catalog_edit_that_changes_an_approved_version_fails_the_check(project):
    add_language(project, pin_old_versions=False)

    code, out = schema(project, "check")

    assert code == 1
    assert "customer.created: BACKWARD_TRANSITIVE, versions 1, 2, 3: CHANGED" in out
    assert "version 2 changed after its sign-off" in out
    assert "preferred_language" in out and "overrides" in out
    assert "order.created: BACKWARD_TRANSITIVE, versions 1: approved" in out


def test_an_unapproved_compatible_change_fails_until_it_is_signed(project):
    add_language(project)

    code, out = schema(project, "check")
    assert code == 1
    assert "customer.updated: BACKWARD_TRANSITIVE, versions 1, 2, 3: UNAPPROVED" in out
    assert "change: version 3 added" in out and "waiting for a sign-off" in out

    code, out = schema(project, "approve", "--by", "ana", "--note", "language for e-mails")
    assert code == 0, out
    assert "signed customer.created (version 3 added)" in out
    assert "signed order.created" not in out  # unchanged subjects are not signed again
    code, out = schema(project, "check")
    assert code == 0, out

    [*_, last] = changelog.read(project)
    assert (last.by, last.note) == ("ana", "language for e-mails")
    signed = last.subjects["customer.created"]
    assert sorted(signed.versions) == [1, 2, 3]
    assert "preferred_language" in signed.versions[3].fields
    assert signed.hash == verdicts(project)["customer.created"].subject.hash
    code, out = schema(project, "approve", "--by", "ana", "--note", "again")
    assert (code, out.strip()) == (
        0,
        "nothing to sign: every event type's contract is approved, or signed by you",
    )


def test_an_incompatible_version_fails_the_check_and_cannot_be_approved(project):
    # Version 3 stops accepting 'enterprise', which versions 1 and 2 still send (pinned).
    edit(
        project / "catalog" / "customer.yaml",
        "allowed: [free, starter, pro, enterprise]",
        "allowed: [free, starter, pro]",
    )
    contract = project / "contracts" / "customer.yaml"
    pin = "    overrides: {plan: {allowed: [free, starter, pro, enterprise]}}\n"
    edit(contract, "  - version: 1\n", "  - version: 1\n" + pin)
    edit(contract, "  - version: 2\n", "  - version: 2\n" + pin)
    contract.write_text(contract.read_text() + "  - version: 3\n")

    code, out = schema(project, "check")
    assert code == 1
    assert "customer.created: BACKWARD_TRANSITIVE, versions 1, 2, 3: INCOMPATIBLE" in out
    assert "plan" in out and "enterprise" in out
    assert "rule broken:" in out and "what to do:" in out

    before = (project / changelog.CHANGELOG).read_text()
    code, out = schema(project, "approve", "--by", "ana", "--note", "drop enterprise")
    assert code == 1
    assert "cannot approve: customer.created" in out
    assert (project / changelog.CHANGELOG).read_text() == before


def test_with_approvals_required_every_consumer_signs(project):
    edit(
        project / "catalog" / "customer.yaml",
        "consumers: [billing, support, analytics]",
        "consumers: [billing_team, analytics]",
    )
    edit(
        project / "contracts" / "customer.yaml", "versions:", "approvals_required: true\nversions:"
    )
    add_language(project)

    code, out = schema(project, "approve", "--by", "mallory", "--note", "me too")
    assert code == 1 and "'mallory' may not sign" in out and "billing_team" in out

    code, out = schema(project, "approve", "--by", "billing_team", "--note", "fine for billing")
    assert code == 0 and "still waiting for analytics" in out
    code, out = schema(project, "check")
    assert code == 1 and "waiting for a sign-off from analytics" in out

    code, out = schema(project, "approve", "--by", "analytics", "--note", "fine for reports")
    assert code == 0, out
    code, out = schema(project, "check")
    assert code == 0, out


def test_a_broken_change_log_is_named_with_the_fix(project):
    (project / changelog.CHANGELOG).write_text("- at: yesterday\n")
    code, out = schema(project, "check")
    assert code == 2
    assert "changelog.yaml: entry 1" in out and "restore the file" in out


@pytest.mark.parametrize(
    ("contract", "message"),
    [
        (
            "versions:\n  - version: 1\n    defaults: {plan: gold}\n",
            "the default 'gold' is not one of free, starter, pro, enterprise",
        ),
        (
            "versions:\n  - version: 1\n    absent: [plan]\n    defaults: {plan: pro}\n",
            "version 1 does not carry 'plan'",
        ),
        (
            "versions:\n  - version: 1\n    retired: true\n",
            "the current (last) version cannot be retired",
        ),
        ("approvals_required: true\nversions:\n  - version: 1\n", "lists no consumers"),
        (
            "versions:\n  - version: 1\n    split: {who: {into: [full_name, plan]}}\n  - version: 2\n",
            "'plan' is not a string attribute",
        ),
        (
            "versions:\n  - version: 1\n    split: {email: {into: [full_name, nick]}}\n  - version: 2\n",
            "customer has no attribute 'nick'",
        ),
        ("compatibility: SIDEWAYS\nversions:\n  - version: 1\n", "compatibility"),
    ],
)
def test_contract_mistakes_are_named(project, contract, message):
    edit(project / "catalog" / "customer.yaml", "consumers: [billing, support, analytics]", "")
    (project / "contracts" / "customer.yaml").write_text(contract)
    with pytest.raises(ProjectError) as raised:
        load_project(project)
    assert message in str(raised.value)


# -- at run time --------------------------------------------------------------------------------


@pytest.fixture
def three_versions(project, monkeypatch) -> Path:
    """Customer version 3 adds a required preferred_language (default 'en' for older created
    events); version 2 declares marketing_opt_in's default (false) for version 1's."""
    add_language(project)
    edit(
        project / "catalog" / "customer.yaml",
        "allowed: [en, de, fr]",
        "allowed: [en, de, fr]\n    required: true",
    )
    contract = project / "contracts" / "customer.yaml"
    edit(contract, "  - version: 3\n", "  - version: 3\n    defaults: {preferred_language: en}\n")
    edit(
        contract,
        "    absent: [preferred_language]\n",
        "    absent: [preferred_language]\n    defaults: {marketing_opt_in: false}\n",
    )
    monkeypatch.setenv(PROJECT_ENV, str(project))
    return project


CUSTOMER = {"email": "ada@example.com", "country": "GB", "status": "active"}


def test_events_of_every_version_are_upcast_and_applied_alike(three_versions, data_folder):
    v1 = event("customer.created", "C-000001", {**CUSTOMER, "name": "Ada"}, schema_version=1)
    v2 = event(
        "customer.created",
        "C-000002",
        {**CUSTOMER, "full_name": "Ada", "marketing_opt_in": False},
        schema_version=2,
    )
    v3 = event(
        "customer.created",
        "C-000003",
        {**CUSTOMER, "full_name": "Ada", "marketing_opt_in": False, "preferred_language": "en"},
        schema_version=3,
    )
    batch = land(data_folder, "0001", [v1, v2, v3])
    [result] = run_core(data_folder, [batch.batch_id]).values()
    assert result["validation"].validated == 3, rows(data_folder, "SELECT reason FROM dead_letters")

    golden = rows(
        data_folder,
        "SELECT customer_id, full_name, email, country, status, marketing_opt_in, "
        "preferred_language FROM golden_customer ORDER BY customer_id",
    )
    assert [r[1:] for r in golden] == [("Ada", "ada@example.com", "GB", "active", False, "en")] * 3

    # An update of version 1 changes what it names and leaves the rest: no default applies.
    rename = event(
        "customer.updated", "C-000003", {"name": "Ada King"}, schema_version=1, time=at(60)
    )
    later = land(data_folder, "0002", [rename])
    run_core(data_folder, [later.batch_id])
    assert rows(
        data_folder,
        "SELECT full_name, marketing_opt_in, preferred_language FROM golden_customer "
        "WHERE customer_id = 'C-000003'",
    ) == [("Ada King", False, "en")]


def test_events_of_a_retired_or_unknown_version_are_dead_letters_naming_the_supported(
    project, monkeypatch, data_folder
):
    edit(
        project / "contracts" / "customer.yaml",
        "  - version: 1\n",
        "  - version: 1\n    retired: true\n",
    )
    monkeypatch.setenv(PROJECT_ENV, str(project))
    old = event("customer.created", "C-000001", {**CUSTOMER, "name": "Ada"}, schema_version=1)
    future = event("customer.updated", "C-000001", {"status": "inactive"}, schema_version=7)
    batch = land(data_folder, "0001", [old, future])

    run_core(data_folder, [batch.batch_id])

    assert rows(data_folder, "SELECT line_no, rule, reason FROM dead_letters ORDER BY line_no") == [
        (
            1,
            "contract",
            "line 1: customer.created schema version 1 is retired; supported versions: 2 "
            "(current 2); fix: upgrade the producer to schema version 2",
        ),
        (
            2,
            "contract",
            "line 2: no contract for customer.updated schema version 7; supported versions: 2 "
            "(current 2); fix: send a supported version, or register version 7 in "
            "contracts/customer.yaml first",
        ),
    ]


# -- deprecation windows ------------------------------------------------------------------------


def deprecate_phone(project: Path, after: str) -> None:
    edit(
        project / "contracts" / "customer.yaml",
        "versions:",
        f"deprecated:\n  phone: {{removal_version: 3, after: {after}, note: ask support}}\nversions:",
    )


def test_a_deprecated_field_is_counted_while_its_window_runs(project, monkeypatch, data_folder):
    deprecate_phone(project, "2999-12-31")
    monkeypatch.setenv(PROJECT_ENV, str(project))
    with_phone = event(
        "customer.created", "C-000001", {**CUSTOMER, "full_name": "Ada", "phone": "+442071838750"}
    )
    without = event("customer.created", "C-000002", {**CUSTOMER, "full_name": "Bo"})
    batch = land(data_folder, "0001", [with_phone, without])

    [result] = run_core(data_folder, [batch.batch_id]).values()

    assert result["validation"].validated == 2
    assert result["validation"].deprecated == {"customer_phone": 1}
    code, out = schema(project, "check")
    assert code == 0, out
    assert "customer.phone: deprecated (removed in version 3, window ends 2999-12-31): ask support; still accepted" in out  # fmt: skip


def test_an_expired_deprecation_fails_while_a_mapping_reads_or_a_producer_sends_it(
    project, monkeypatch, data_folder
):
    deprecate_phone(project, "2026-01-31")
    monkeypatch.setenv(PROJECT_ENV, str(project))
    loaded = load_project(project)

    [verdict] = deprecation.judge(loaded, date(2026, 2, 1), None)
    assert (verdict.status, verdict.readers, verdict.ok) == ("expired_in_use", ("crm",), False)
    assert "the crm mapping" in verdict.text and "extend the window" in verdict.text
    [verdict] = deprecation.judge(loaded, date(2026, 1, 31), None)
    assert verdict.status == "in_window"  # the window's last day still counts

    sent = event(
        "customer.created",
        "C-000001",
        {**CUSTOMER, "full_name": "Ada", "phone": "+442071838750"},
        time=datetime(2026, 2, 1, 9, tzinfo=UTC),
    )
    older = event(
        "customer.created",
        "C-000002",
        {**CUSTOMER, "full_name": "Bo", "phone": "+442071838751"},
        time=datetime(2026, 1, 31, 23, tzinfo=UTC),
    )
    run_core(data_folder, [land(data_folder, "0001", [sent, older]).batch_id])
    with connect(data_folder.warehouse, read_only=True) as con:
        senders = deprecation.still_sent(con, loaded)
    assert senders == {("customer", "phone"): {"crm": 1}}

    unmapped = dataclasses.replace(
        loaded, mappings={k: m for k, m in loaded.mappings.items() if k != ("crm", "customer")}
    )
    [verdict] = deprecation.judge(unmapped, date(2026, 12, 1), senders)
    assert verdict.status == "expired_in_use" and "crm (1 events since 2026-01-31)" in verdict.text
    [verdict] = deprecation.judge(unmapped, date(2026, 12, 1), {})
    assert (
        verdict.status == "expired_unused"
        and "remove it from the catalog in version 3" in verdict.text
    )


def test_check_fails_on_an_expired_deprecation_still_mapped(project):
    deprecate_phone(project, "2026-01-31")
    code, out = schema(project, "check", "--json")
    assert code == 1
    [found] = json.loads(out)["deprecations"]
    assert (found["attribute"], found["status"], found["readers"]) == (
        "phone",
        "expired_in_use",
        ["crm"],
    )


# -- a split: one field of an older version holds two of today's attributes ---------------------


@pytest.fixture
def club(tmp_path, monkeypatch) -> Path:
    """The fitness example, whose member version 1 sent the whole name in one field."""
    copy = tmp_path / "club"
    shutil.copytree(DEMO_PROJECT.parent / "fitness", copy, ignore=shutil.ignore_patterns("seed", "__*"))  # fmt: skip
    edit(copy / "syncfabric.yaml", "seed: seed", "")
    (copy / "contracts" / "member.yaml").write_text(
        "versions:\n"
        "  - version: 1\n"
        "    split: {name: {into: [first_name, last_name]}}\n"
        "    absent: [joined_on]\n"
        "  - version: 2\n"
        "    renamed: {surname: last_name}\n"
        "    absent: [joined_on]\n"
        "  - version: 3\n"
    )
    monkeypatch.setenv(PROJECT_ENV, str(copy))
    return copy


def member(key: str, version: int, **names: str) -> dict:
    data = {"home_club": "riverside", **names}
    return event("member.created", key, data, origin="frontdesk", schema_version=version)


def test_a_split_field_is_cut_into_its_attributes_and_applied_like_today(club, data_folder):
    batch = land(
        data_folder,
        "0001",
        [
            member("RF00001", 1, name="Ada King"),
            member("RF00002", 2, first_name="Ada", surname="King"),
            member("RF00003", 3, first_name="Ada", last_name="King"),
            member("RF00004", 1, name="Bram van der Berg"),  # the last part takes the rest
            member("RF00005", 1, name="Cher"),  # a required part missing
        ],
    )
    run_core(data_folder, [batch.batch_id])

    assert rows(
        data_folder, "SELECT member_id, first_name, last_name FROM golden_member ORDER BY 1"
    ) == [
        ("RF00001", "Ada", "King"),
        ("RF00002", "Ada", "King"),
        ("RF00003", "Ada", "King"),
        ("RF00004", "Bram", "van der Berg"),
    ]
    assert rows(data_folder, "SELECT rule, reason FROM dead_letters") == [
        (
            "payload",
            "line 5: member.created/v1: field 'name' must hold first_name, last_name separated by "
            "' ', got withheld (PII); fix: send every part, or the current version",
        )
    ]
    assert rows(
        data_folder,
        "SELECT list_sort(set_attributes) FROM validated_member_events WHERE entity_key = 'RF00001'",
    ) == [(["first_name", "home_club", "last_name"],)]


def test_a_declared_split_is_compatible_backward_and_documented(club):
    loaded = load_project(club)
    [created] = [s for s in registry.subjects(loaded) if s.name == "member.created"]
    v1, v2, v3 = (created.versions[v] for v in (1, 2, 3))
    assert compatibility.check("BACKWARD_TRANSITIVE", [v1, v2], v3) == []
    assert v3.fields["first_name"].aliases == ("name",)
    assert v1.fields["name"].required and "first_name" not in v1.fields
    page = catalog_pages(loaded, [])["member.md"]
    assert "| 1 | `name` is first_name, last_name joined by ' '; lacks joined_on |" in page
