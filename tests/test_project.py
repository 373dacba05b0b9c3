"""The project folder: loaded into the same landscape the code used to hard-wire, and every
mistake a team can make in its files named with the file, the line, the field and the fix."""

from __future__ import annotations

import io
import re
import shutil
import tokenize
from pathlib import Path

import dagster as dg
import pytest
from commands import assert_no_traceback, syncctl
from conftest import DEMO_PROJECT

from sync_assets.project import ProjectError, load_project
from sync_assets.resources import default_resources
from sync_assets.settings import DataFolder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the demo project to break."""
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


def problems(root: Path) -> list[str]:
    with pytest.raises(ProjectError) as raised:
        load_project(root)
    return [str(p) for p in raised.value.problems]


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_demo_project_loads_with_its_systems_entities_and_versions():
    demo = load_project(DEMO_PROJECT)
    assert demo.system_names == ("crm", "billing", "support")
    assert list(demo.entities) == ["customer", "order"]
    assert sorted(demo.payload_versions) == [("customer", 1), ("customer", 2), ("order", 1)]
    assert demo.payload_versions["customer", 1].fields["name"] == "full_name"
    assert "marketing_opt_in" not in demo.payload_versions["customer", 1].fields.values()
    assert demo.current_version == {"customer": 2, "order": 1}
    support = demo.mapping("support", "customer").field_for("status")
    assert support.vocabulary == {"enabled": "active", "disabled": ("inactive", "suspended")}
    assert demo.systems["crm"].url_env == "SYNCFABRIC_CRM_URL"


def test_an_unknown_attribute_in_a_mapping_names_file_line_field_and_fix(project):
    crm = project / "systems" / "crm.yaml"
    edit(
        crm, "      phone: {column: phone, rule: phone}", "      fone: {column: phone, rule: phone}"
    )
    [found] = problems(project)
    assert found.startswith(f"systems/crm.yaml:{line_of(crm, 'fone:')}: ")
    assert "entities.customer.columns.fone: customer has no attribute 'fone'" in found
    assert "fix: use one of: email, full_name, phone" in found


def test_an_owner_that_is_no_system(project):
    catalog = project / "catalog" / "customer.yaml"
    edit(catalog, "    owner: billing\n", "    owner: bill\n")
    [found] = problems(project)
    assert found.startswith(f"catalog/customer.yaml:{line_of(catalog, 'owner: bill')}: ")
    assert "attributes.plan.owner: 'bill' is no system of the project" in found
    assert "fix: use one of: billing, crm, support, or add systems/bill.yaml" in found


def test_a_vocabulary_that_misses_an_allowed_value(project):
    support = project / "systems" / "support.yaml"
    edit(support, "disabled: [inactive, suspended]", "disabled: inactive")
    [found] = problems(project)
    assert found.startswith("systems/support.yaml:")
    assert "columns.status.vocabulary: no word of the system stands for suspended" in found


def test_a_vocabulary_word_for_a_value_the_catalog_does_not_allow(project):
    support = project / "systems" / "support.yaml"
    edit(support, "enabled: active", "enabled: activ")
    found = problems(project)
    assert any("vocabulary.enabled: 'activ' is not an allowed status" in p for p in found)


def test_a_key_written_twice_is_an_error_not_the_last_one_silently(project):
    crm = project / "systems" / "crm.yaml"
    edit(
        crm,
        "      full_name: display_name\n",
        "      full_name: display_name\n      full_name: name\n",
    )
    [found] = problems(project)
    first, second = (
        i for i, line in enumerate(crm.read_text().splitlines(), 1) if "full_name:" in line
    )
    assert found.startswith(f"systems/crm.yaml:{second}: ")
    assert f"'full_name' is written twice (first on line {first})" in found


@pytest.mark.parametrize(
    ("pattern", "said"),
    [("^C-[0-9{6}$", "not a valid regular expression"), ("^C-\\\\d{6}$", "write [0-9]")],
)
def test_a_bad_regular_expression(project, pattern, said):
    catalog = project / "catalog" / "customer.yaml"
    edit(catalog, 'key_pattern: "^C-[0-9]{6}$"', f'key_pattern: "{pattern}"')
    [found] = problems(project)
    assert found.startswith(
        f"catalog/customer.yaml:{line_of(catalog, 'key_pattern')}: key_pattern: "
    )
    assert said in found


def test_a_missing_or_malformed_url_variable(project):
    crm = project / "systems" / "crm.yaml"
    edit(crm, "url_env: SYNCFABRIC_CRM_URL\n", "")
    billing = project / "systems" / "billing.yaml"
    edit(billing, "url_env: SYNCFABRIC_BILLING_URL", "url_env: billing-url")
    found = problems(project)
    assert "systems/crm.yaml:3: url_env: is required and missing" in "\n".join(found)
    assert any(
        p.startswith("systems/billing.yaml:2: url_env: 'billing-url' is not a valid environment")
        for p in found
    )


HOSTILE_NAMES = {
    "a statement after a semicolon": '"accounts; DROP TABLE accounts"',
    "a double quote": "'acc\"ounts'",
    "a backtick": '"acc`ounts"',
    "a single quote": '"acc\'ounts"',
    "a comment marker": '"accounts -- x"',
    "a block comment": '"accounts/*x*/"',
    "a NUL": '"acc\\0ounts"',
    "a tab": '"acc\\tounts"',
    "a line break": '"acc\\nounts"',
    "a leading space": '" accounts"',
    "a trailing space": '"accounts "',
    "two spaces": '"acc  ounts"',
    "a non-breaking space": '"acc\\u00a0ounts"',
    "a leading digit": '"1accounts"',
    "64 characters": "a" * 64,
}


@pytest.mark.parametrize("hostile", list(HOSTILE_NAMES.values()), ids=list(HOSTILE_NAMES))
@pytest.mark.parametrize("where", ["table", "column", "key", "schema"])
def test_a_hostile_table_or_column_name_is_refused_naming_file_line_field_and_fix(
    project, hostile, where
):
    billing = project / "systems" / "billing.yaml"
    if where == "table":
        edit(billing, "    table: accounts", f"    table: {hostile}")
        field, text = "entities.customer.table", "    table: "
    elif where == "column":
        edit(billing, "{column: billing_email,", f"{{column: {hostile},")
        field, text = "entities.customer.columns.email.column", "      email: "
    elif where == "key":
        edit(billing, "    key: [acct_no]", f"    key: [{hostile}]")
        field, text = "entities.customer.key.0", "    key: ["
    else:
        edit(billing, "    table: accounts", f"    table: accounts\n    schema: {hostile}")
        field, text = "entities.customer.schema", "    schema: "
    found = [p for p in problems(project) if p.startswith("systems/billing.yaml:")]
    assert len(found) == 1, found
    line = line_of(billing, text)
    assert found[0].startswith(f"systems/billing.yaml:{line}: {field}: "), found[0]
    assert "; fix: name it with letters, digits and _" in found[0]


def test_odd_but_allowed_names_load_as_written(project):
    billing = project / "systems" / "billing.yaml"
    edit(billing, "    table: accounts", "    table: Client Accounts\n    schema: Billing_2")
    edit(billing, "{column: billing_email,", "{column: Billing Email 2,")
    loaded = load_project(project).mapping("billing", "customer")
    assert (loaded.table, loaded.schema) == ("Client Accounts", "Billing_2")
    assert loaded.field_for("email").source == "Billing Email 2"


def test_validate_refuses_a_hostile_name_without_a_traceback(project, tmp_path):
    billing = project / "systems" / "billing.yaml"
    edit(billing, "    table: accounts", '    table: "accounts; DROP TABLE accounts"')
    done = syncctl(tmp_path / "home", "--project", str(project), "validate")
    assert done.returncode == 2
    assert_no_traceback(done)
    line = line_of(billing, "    table: ")
    assert (
        f"systems/billing.yaml:{line}: entities.customer.table: 'accounts; DROP TABLE accounts' "
        "is not an allowed table, schema or column name; fix: " in done.stderr
    )


def test_a_writer_url_variable_must_end_in_url(project):
    crm = project / "systems" / "crm.yaml"
    edit(
        crm,
        "url_env: SYNCFABRIC_CRM_URL\n",
        "url_env: SYNCFABRIC_CRM_URL\nwrite_url_env: CRM_WRITER\n",
    )
    [found] = problems(project)
    assert found.startswith(
        f"systems/crm.yaml:{line_of(crm, 'write_url_env')}: write_url_env: 'CRM_WRITER' is not a "
        "URL variable's name; fix: use upper case letters, digits and _, ending in _URL"
    )


def test_unknown_fields_and_wrong_words_are_named(project):
    catalog = project / "catalog" / "order.yaml"
    edit(catalog, "    tolerance: 0.01", "    tolerence: 0.01")
    edit(catalog, "type: timestamp", "type: datetime")
    found = "\n".join(problems(project))
    assert "attributes.amount.tolerence: is not a field Syncfabric knows" in found
    assert (
        "attributes.placed_at.type: 'datetime' is not allowed; fix: use 'string', 'enum'" in found
    )


def test_every_problem_is_reported_at_once_and_the_cli_prints_them_without_traceback(
    project, tmp_path
):
    edit(project / "catalog" / "customer.yaml", "    owner: billing\n", "    owner: bill\n")
    edit(
        project / "systems" / "crm.yaml", "      full_name: display_name", "      nom: display_name"
    )
    done = syncctl(tmp_path / "home", "--project", str(project), "validate")
    assert done.returncode == 2
    assert_no_traceback(done)
    assert f"the Syncfabric project at {project} has 2 problems:" in done.stderr
    assert "catalog/customer.yaml:" in done.stderr and "systems/crm.yaml:" in done.stderr


def test_no_project_folder_says_how_to_make_one(tmp_path):
    done = syncctl(tmp_path / "home", "--project", str(tmp_path), "validate")
    assert done.returncode == 2
    assert_no_traceback(done)
    assert f"no Syncfabric project at {tmp_path}: it has no syncfabric.yaml" in done.stderr
    assert "syncctl init" in done.stderr


def test_validate_connect_names_a_missing_table_and_column(project, tmp_path):
    import sqlite3

    home = tmp_path / "home"
    (home / "systems").mkdir(parents=True)
    for system, ddl in {
        "crm": "CREATE TABLE contacts (contact_id INTEGER PRIMARY KEY, email_address TEXT)",
        "billing": "CREATE TABLE unrelated (x INTEGER)",
        "support": "CREATE TABLE users (id INTEGER PRIMARY KEY, external_id TEXT, email TEXT, "
        "name TEXT, tier TEXT, state TEXT, updated_at INTEGER)",
    }.items():
        with sqlite3.connect(home / "systems" / f"{system}.sqlite") as con:
            con.execute(ddl)
    done = syncctl(home, "--project", str(project), "validate", "--connect")
    assert done.returncode == 1, done.stdout + done.stderr
    assert_no_traceback(done)
    assert "contacts.display_name does not exist" in done.stdout
    assert "table 'accounts' does not exist" in done.stdout
    assert re.search(r"support\s+customer\s+users\s+0 rows\s+ok", done.stdout)


# -- nothing in the code knows the demo by name ------------------------------------------------

DEMO_NAMES = re.compile(
    r"\b(crm|billing|support|customers?|orders?|contacts|accounts|users|customer_id|order_id|"
    r"acct_no|plan|support_tier)\b",
    re.IGNORECASE,
)
CODE = ("sync_assets", "sensors", "checks")


def _code_names(path: Path) -> list[tuple[int, str]]:
    """Names and string literals (docstrings and comments aside) naming a demo system, entity,
    table or attribute."""
    found = []
    previous = tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        docstring = token.type == tokenize.STRING and previous in (
            tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT
        )  # fmt: skip
        if token.type in (tokenize.NAME, tokenize.STRING) and not docstring:
            text = token.string
            if token.type == tokenize.STRING:
                text = re.sub(r"\b(in|sort|the)\s+order\b|\border by\b", "", text, flags=re.I)
            found += [(token.start[0], m.group(0)) for m in DEMO_NAMES.finditer(text)]
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return found


def test_no_demo_system_or_entity_name_in_the_code():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for folder in CODE
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, name in _code_names(path)
    ]
    assert offenders == []


def test_the_name_scan_finds_a_demo_name_in_code(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""A docstring about the crm."""\nSYSTEM = "billing"  # the crm\n')
    assert _code_names(sample) == [(2, "billing")]


def test_the_catalog_document_comes_from_the_project(project, tmp_path):
    edit(project / "catalog" / "order.yaml", "Where the order is in its life.", "Its stage.")
    done = syncctl(tmp_path / "home", "--project", str(project), "catalog")
    assert done.returncode == 0, done.stderr
    assert (
        "| crm | sql | `SYNCFABRIC_CRM_URL` | `landing/crm/` | customer (`contacts`) |"
        in done.stdout
    )
    assert "| status | enum | billing | required; one of pending, paid, shipped" in done.stdout
    assert "| Its stage. |" in done.stdout
    assert "`state` (vocabulary)" in done.stdout  # support's column for the customer status


def test_a_data_folder_belongs_to_one_project(project, tmp_path):
    import os
    import subprocess

    from commands import SYNCCTL

    home = tmp_path / "home"
    built = syncctl(home, "demo", "--customers", "30", "--orders", "60", "--drift", "0")
    assert built.returncode == 0, built.stderr
    assert (home / "project").read_text().strip() == str(DEMO_PROJECT)

    other = syncctl(home, "--project", str(project), "summary")
    assert other.returncode == 2
    assert_no_traceback(other)
    assert f"the data folder {home} belongs to the project at {DEMO_PROJECT}, not" in other.stderr

    # Neither --project nor SYNCFABRIC_PROJECT, and no syncfabric.yaml here: the folder's own.
    env = {k: v for k, v in os.environ.items() if k != "SYNCFABRIC_PROJECT"}
    done = subprocess.run(
        [SYNCCTL, "validate"], env={**env, "SYNCFABRIC_HOME": str(home)}, cwd=tmp_path,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"project demo at {DEMO_PROJECT}" in done.stdout


def test_delivery_settings_come_from_the_systems_file(project, tmp_path):
    """Retries and batches are the project's, not a run's config (which cannot set them)."""
    crm = project / "systems" / "crm.yaml"
    edit(
        crm,
        "url_env: SYNCFABRIC_CRM_URL\n",
        "url_env: SYNCFABRIC_CRM_URL\ndelivery:\n  max_attempts: 2\n  batch_size: 50\n",
    )
    loaded = load_project(project)
    resources = default_resources(DataFolder(tmp_path / "data"), loaded)
    with dg.build_resources({"delivery": resources["delivery"]}) as built:
        crm_settings = built.delivery.settings("crm")
        billing_settings = built.delivery.settings("billing")
    assert (crm_settings.policy.max_attempts, crm_settings.batch_size) == (2, 50)
    assert (billing_settings.policy.max_attempts, billing_settings.batch_size) == (6, 500)


def test_a_delivery_setting_out_of_range_is_named(project):
    crm = project / "systems" / "crm.yaml"
    edit(
        crm,
        "url_env: SYNCFABRIC_CRM_URL\n",
        "url_env: SYNCFABRIC_CRM_URL\ndelivery:\n  max_attempts: 0\n",
    )
    [found] = problems(project)
    assert found.startswith(
        f"systems/crm.yaml:{line_of(crm, 'max_attempts')}: delivery.max_attempts"
    )
