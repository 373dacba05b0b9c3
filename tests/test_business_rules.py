"""Business rules from the catalog: checked by the loader, run as a great-expectations suite (real
great_expectations, real DuckDB), and reported by asset checks with masked samples."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from commands import assert_no_traceback, syncctl
from conftest import DEMO_PROJECT, customer_created, event, land

from checks.rules import golden_rule_checks, snapshot_rule_checks
from sync_assets.catalog import expectations
from sync_assets.catalog.expectations import run_rules, snapshot_rules
from sync_assets.catalog.rules import Rule
from sync_assets.govern.docs import catalog_markdown
from sync_assets.ingest.assets import build_raw_events, landed_batches, validate_events
from sync_assets.project import ProjectError, current, load_project
from sync_assets.reconcile.assets import snapshot_asset
from sync_assets.resources import default_resources
from sync_assets.security.fingerprint import fingerprint
from sync_assets.security.keys import keyring
from sync_assets.state.assets import build_batch_ledger, build_golden_records

PROJECT = current()
KEY = b"k" * 32


def mask(value: object) -> str:
    return fingerprint(KEY, value)


# -- the suite: each kind catches its seeded violation, and clean data passes ----------------------

CLEAN = pd.DataFrame(
    {
        "id": ["R-1", "R-2", "R-3", "R-4"],
        "email": ["a@x.io", "b@x.io", "c@x.io", None],
        "region": ["eu", "eu", "us", "us"],
        "seat": ["1", "2", "1", "2"],
        "status": ["open", "closed", "open", None],
        "code": ["AB", "CD", "EF", None],
        "total": [10.0, 0.0, 99.5, None],
        "parent": ["P-1", "P-2", "P-1", None],
        "low": [1.0, 2.0, 3.0, None],
        "high": [2.0, 2.0, 9.0, 1.0],
    }
)

RULES = {
    "unique": Rule("email_unique", "unique", ("email",), severity="error"),
    "compound": Rule("seat_unique", "unique", ("region", "seat")),
    "allowed": Rule("status_known", "allowed", ("status",), values=("open", "closed")),
    "format": Rule("code_format", "format", ("code",), pattern="^[A-Z]{2}$"),
    "range": Rule("total_plausible", "range", ("total",), minimum=0, maximum=100),
    "references": Rule("parent_exists", "references", ("parent",), entity="parent"),
    "compare": Rule("low_le_high", "compare", ("low", "high"), operator="<="),
}
PARENTS = {"parent": {"P-1", "P-2"}}

SEEDED = {  # kind -> (column, row index, the value that breaks the rule, rows that break it)
    "unique": ("email", 1, "a@x.io", {"R-1", "R-2"}),
    "compound": ("seat", 2, "2", {"R-3", "R-4"}),  # us/2 twice
    "allowed": ("status", 0, "archived", {"R-1"}),
    "format": ("code", 2, "ef", {"R-3"}),
    "range": ("total", 1, -5.0, {"R-2"}),
    "references": ("parent", 0, "P-9", {"R-1"}),
    "compare": ("low", 1, 3.0, {"R-2"}),
}


def run(frame: pd.DataFrame, rules=None):
    return run_rules(
        frame,
        "id",
        list(RULES.values()) if rules is None else rules,
        pii={"email"},
        mask=mask,
        references=PARENTS,
    )


def test_clean_data_passes_every_rule_kind():
    results = run(CLEAN)
    assert [r.rule.name for r in results] == [r.name for r in RULES.values()]
    assert all(r.passed for r in results), [(r.rule.name, r.unexpected) for r in results]
    assert all(r.unexpected == 0 and r.rows_checked == 4 and not r.samples for r in results)


@pytest.mark.parametrize("kind", list(SEEDED))
def test_a_seeded_violation_of_each_kind_is_caught_with_its_rows(kind):
    column, row, value, broken = SEEDED[kind]
    frame = CLEAN.copy()
    frame.loc[row, column] = value

    results = {r.rule.name: r for r in run(frame)}

    caught = results[RULES[kind].name]
    assert not caught.passed
    assert caught.unexpected == len(broken)
    assert {s.key for s in caught.samples} == broken
    others = [r for name, r in results.items() if name != RULES[kind].name]
    assert all(r.passed for r in others), [r.rule.name for r in others if not r.passed]


@pytest.mark.parametrize(
    ("operator", "broken"),
    [
        ("<", {"R-2"}),  # 2 < 2 fails
        ("<=", set()),
        (">", {"R-1", "R-2", "R-3"}),
        (">=", {"R-1", "R-3"}),
        ("=", {"R-1", "R-3"}),
        ("!=", {"R-2"}),
    ],
)
def test_compare_with_each_operator_passes_rows_with_a_null_side(operator, broken):
    rule = Rule("low_vs_high", "compare", ("low", "high"), operator=operator)
    [result] = run(CLEAN, [rule])
    assert {s.key for s in result.samples} == broken  # R-4 (low NULL) never breaks it
    assert result.passed == (not broken)


def test_samples_show_pii_masked_and_other_values_as_they_are():
    frame = CLEAN.copy()
    frame.loc[1, "email"] = "a@x.io"
    frame.loc[0, "status"] = "archived"

    results = {r.rule.name: r for r in run(frame)}

    emails = [s.values["email"] for s in results["email_unique"].samples]
    assert emails == [mask("a@x.io"), mask("a@x.io")]
    assert "a@x.io" not in repr(results)
    [sample] = results["status_known"].samples
    assert sample.values == {"status": "archived"}


def test_a_rule_great_expectations_cannot_run_is_an_error_not_a_silent_failure():
    broken = Rule("unknown_column", "allowed", ("nowhere",), values=("a",))
    with pytest.raises(RuntimeError, match=r"could not run rule 'unknown_column': .*nowhere"):
        run(CLEAN, [broken])
    secret = Rule("secret", "compare", ("email", "total"), operator="<")  # text < number
    with pytest.raises(RuntimeError) as raised:
        run(CLEAN, [secret])
    assert str(raised.value) == "great-expectations could not run rule 'secret'"  # reads PII


def test_the_suite_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(CLEAN)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def warmed_up(monkeypatch):
    """The suites run in the process `warm_up` starts, for this test only."""
    monkeypatch.setattr(expectations, "_worker", None)
    expectations.warm_up()
    worker = expectations._worker
    assert worker is not None
    yield worker
    expectations._stop_worker()


def test_a_warmed_up_worker_gives_the_same_results_and_errors(warmed_up):
    """What the commands do (syncctl run, check, reconcile): the suite runs in another process,
    the samples are masked here; every result and every refusal is as in-process."""
    frame = CLEAN.copy()
    for column, row, value, _ in SEEDED.values():
        frame.loc[row, column] = value

    results = run(frame)

    # It ran there, at the lowest priority: the command's own work comes first.
    assert os.getpriority(os.PRIO_PROCESS, warmed_up.process.pid) == 19
    assert [(r.rule.name, r.passed, r.unexpected, r.rows_checked) for r in results] == [
        ("email_unique", False, 2, 4),
        ("seat_unique", False, 2, 4),
        ("status_known", False, 1, 4),
        ("code_format", False, 1, 4),
        ("total_plausible", False, 1, 4),
        ("parent_exists", False, 1, 4),
        ("low_le_high", False, 1, 4),
    ]
    emails = [s.values["email"] for s in results[0].samples]
    assert emails == [mask("a@x.io"), mask("a@x.io")]
    assert {s.key for s in results[5].samples} == {"R-1"}
    secret = Rule("secret", "compare", ("email", "total"), operator="<")
    with pytest.raises(RuntimeError) as raised:
        run(CLEAN, [secret])
    assert str(raised.value) == "great-expectations could not run rule 'secret'"


def test_a_worker_that_died_is_replaced_by_running_here(warmed_up):
    """Killed (out of memory, by an operator), the worker's suite runs in the command instead."""
    warmed_up.process.kill()
    warmed_up.process.join()

    results = run(CLEAN)

    assert all(r.passed for r in results) and len(results) == len(RULES)
    assert expectations._worker is None


WARM_AND_WAIT = """
import sys, time
from sync_assets.catalog import expectations
expectations.warm_up()
print(expectations._worker.process.pid, flush=True)
if sys.stdin.read() == "exit":
    sys.exit(0)
"""


def _warmed_up_command(*, sigterm_ignored: bool = False) -> tuple[subprocess.Popen[str], int]:
    """A command that has started its rules worker and waits on stdin; and the worker's pid.

    `sigterm_ignored`: the command starts with SIGTERM ignored, as Dagster leaves a process whose
    SIGINT is ignored (a background job of a script: Dagster maps SIGTERM to SIGINT's handler),
    and its worker inherits that."""

    def ignore_sigterm() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    command = subprocess.Popen(
        [sys.executable, "-c", WARM_AND_WAIT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, preexec_fn=ignore_sigterm if sigterm_ignored else None,
    )  # fmt: skip
    assert command.stdout is not None
    return command, int(command.stdout.readline())


def test_the_worker_leaves_when_its_command_is_killed():
    """A command killed (SIGKILL: no clean-up runs) must not leave its rules worker waiting for
    work forever."""
    command, worker = _warmed_up_command()
    assert Path(f"/proc/{worker}").exists()
    command.kill()
    command.wait()
    deadline = time.monotonic() + 30
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(worker), "the worker outlived its command"


@pytest.mark.parametrize("sigterm_ignored", [False, True], ids=["sigterm", "sigterm-ignored"])
def test_a_command_that_ends_does_not_wait_for_a_worker_it_never_used(sigterm_ignored):
    """A check whose suites were all remembered ends while great-expectations may still be
    importing: the worker is stopped with it, not waited for, nor left behind, even where it
    ignores SIGTERM (it was terminated, then joined, forever)."""
    command, worker = _warmed_up_command(sigterm_ignored=sigterm_ignored)
    try:
        command.communicate("exit", timeout=60)
    except subprocess.TimeoutExpired:
        command.kill()
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the command waited for its worker instead of ending")
    assert command.returncode == 0
    assert not _running(worker), "the worker outlived its command"


SUITE_IN_THE_WORKER = """
import pandas as pd
from sync_assets.catalog import expectations
from sync_assets.catalog.rules import Rule

if __name__ == "__main__":
    expectations.warm_up()
    frame = pd.DataFrame({"id": ["R-1", "R-2"], "status": ["open", "lost"]})
    rule = Rule("status_known", "allowed", ("status",), values=("open",))
    [found] = expectations.run_rules(frame, "id", [rule], pii=(), mask=str)
    print(found.unexpected)
"""


def test_a_command_whose_suites_ran_in_the_worker_ends_with_nothing_on_stderr(tmp_path):
    """The worker is killed as the command ends: nothing of it (tqdm's lock, a semaphore) may be
    left for multiprocessing to report as leaked on the command's stderr."""
    script = tmp_path / "command.py"  # spawn runs the main module again: it must be a file
    script.write_text(SUITE_IN_THE_WORKER)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "1\n", "")


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child its parent has not reaped)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


# -- the loader: rules are checked against the catalog ----------------------------------------------


@pytest.fixture
def project(tmp_path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(DEMO_PROJECT, copy, ignore=shutil.ignore_patterns("seed", "__*"))
    (copy / "syncfabric.yaml").write_text(
        (copy / "syncfabric.yaml").read_text().replace("seed: seed", "")
    )
    return copy


def with_rule(project: Path, rule: str) -> Path:
    """The order catalog with one more rule (YAML, indented as a list item)."""
    catalog = project / "catalog" / "order.yaml"
    text = catalog.read_text()
    marker = "business_rules:"
    head, tail = text.split(marker, 1)
    first_line, rest = tail.split("\n", 1)
    catalog.write_text(f"{head}{marker}{first_line}\n{rule}\n{rest}")
    return catalog


def problems(root: Path) -> list[str]:
    with pytest.raises(ProjectError) as raised:
        load_project(root)
    return [str(p) for p in raised.value.problems]


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_demo_catalog_loads_its_rules_beside_its_sentences():
    customer = PROJECT.entity("customer")
    assert customer.business_rules[0].startswith("Every customer has exactly one e-mail")
    rules = {r.name: r for r in customer.rules}
    assert rules["email_unique"] == Rule(
        "email_unique",
        "unique",
        ("email",),
        severity="error",
        description=rules["email_unique"].description,
    )
    order = {r.name: r for r in PROJECT.entity("order").rules}
    assert order["customer_exists"].entity == "customer"
    assert (order["amount_plausible"].minimum, order["amount_plausible"].maximum) == (0, 10000)


@pytest.mark.parametrize(
    ("rule", "field", "said", "fix"),
    [
        (
            "  - {name: r, kind: range, attribute: amout, min: 0}",
            "attribute",
            "order has no attribute 'amout'",
            "use one of: customer_id, status, amount",
        ),
        (
            "  - {name: r, kind: references, attribute: customer_id, entity: client}",
            "entity",
            "'client' is no entity of the catalog",
            "use one of: customer, order, or add catalog/client.yaml",
        ),
        (
            "  - {name: r, kind: format, attribute: status, pattern: '^[a-z'}",
            "pattern",
            "not a valid regular expression",
            "correct the regular expression",
        ),
        (
            "  - {name: r, kind: format, attribute: status, pattern: '^\\d+$'}",
            "pattern",
            "write [0-9]",
            "correct the regular expression",
        ),
        (
            "  - {name: r, kind: between, attribute: amount}",
            "kind",
            "'between' is not allowed",
            "use 'unique', 'allowed', 'format', 'range', 'references' or 'compare'",
        ),
        (
            "  - {name: r, kind: range, attribute: amount, min: 0, values: [a]}",
            "values",
            "is not a field of a rule of kind range",
            "remove it; a rule of kind range takes attribute, min, max",
        ),
        (
            "  - {name: r, kind: range, attribute: status, max: 5}",
            "attribute",
            "a range rule reads numbers, and status is a enum",
            "name a decimal attribute",
        ),
        (
            "  - {name: r, kind: compare, left: amount, operator: '<', right: placed_at}",
            "right",
            "amount is a decimal and placed_at a timestamp: they do not compare",
            "compare two text, two decimal or two timestamp attributes",
        ),
        (
            "  - {name: r, kind: unique, attributes: [status, curency]}",
            "attributes.1",
            "order has no attribute 'curency'",
            "use one of:",
        ),
    ],
)
def test_a_wrong_rule_is_named_with_file_line_field_and_fix(project, rule, field, said, fix):
    catalog = with_rule(project, rule)
    [found] = problems(project)
    assert found.startswith(f"catalog/order.yaml:{line_of(catalog, rule.strip())}: ")
    assert f" business_rules.0.{field}: " in found
    assert said in found
    assert f"fix: {fix}" in found


def test_a_rule_missing_a_field_of_its_kind(project):
    with_rule(project, "  - {name: r, kind: allowed, attribute: status}")
    [found] = problems(project)
    assert "business_rules.0: a rule of kind allowed needs values:; fix: add values:" in found


def test_a_rule_name_declared_twice(project):
    catalog = with_rule(project, "  - {name: status_known, kind: unique, attributes: [status]}")
    [found] = problems(project)
    second = [
        i for i, line in enumerate(catalog.read_text().splitlines(), 1) if "status_known" in line
    ][1]
    assert found.startswith(f"catalog/order.yaml:{second}: ")
    assert "a rule 'status_known' is declared twice; fix: name each rule once" in found


def test_a_sentence_is_documentation_and_any_other_item_is_refused(project):
    with_rule(project, "  - Orders are never negative.\n  - 3")
    [found] = problems(project)
    assert "business_rules.1: " in found


# -- the asset checks --------------------------------------------------------------------------------

raw_events = build_raw_events(PROJECT)
golden_records = build_golden_records(PROJECT)
batch_ledger = build_batch_ledger(PROJECT)
GOLDEN_RULES = golden_rule_checks(PROJECT)


def evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def test_golden_record_rules_run_at_the_catalogs_severity(data_folder):
    shared = "ada@example.com"
    batch = land(
        data_folder,
        "0001",
        [
            customer_created("C-000001", data={"email": shared}),
            customer_created("C-000002", data={"email": shared}),
            customer_created("C-000003", data={"email": "grace@example.com"}),
        ],
    )
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(landed_batches.name, [batch.batch_id])
        result = dg.materialize(
            [raw_events, validate_events, golden_records, batch_ledger, *GOLDEN_RULES],
            partition_key=batch.batch_id,
            instance=instance,
            resources=default_resources(data_folder),
        )

    assert result.success  # not blocking: a broken rule shows, the batch still completes
    checks = evaluations(result)
    unique = checks["golden_customer", "rule_email_unique"]
    assert not unique.passed
    assert unique.severity == dg.AssetCheckSeverity.ERROR
    assert unique.metadata["unexpected"].value == 2
    assert unique.metadata["rows_checked"].value == 3
    records = unique.metadata["sample"].value.records
    assert sorted(r.data["customer_id"] for r in records) == ["C-000001", "C-000002"]
    expected = fingerprint(keyring(data_folder.root).fingerprint_key, shared)
    assert {r.data["email"] for r in records} == {expected}
    assert "ada@" not in str(unique.metadata) and "grace@" not in str(checks)
    assert checks["golden_customer", "rule_status_known"].passed
    phone = checks["golden_customer", "rule_phone_e164"]  # no phone given: NULL passes
    assert phone.passed and phone.severity == dg.AssetCheckSeverity.WARN
    assert checks["golden_order", "rule_customer_exists"].passed  # no order yet
    assert checks["golden_order", "rule_customer_exists"].metadata["rows_checked"].value == 0


def test_an_order_of_an_unknown_customer_breaks_its_reference(data_folder):
    known = land(data_folder, "0001", [customer_created("C-000001")])
    order = {
        "customer_id": "C-000009",
        "status": "paid",
        "amount": 12.5,
        "currency": "EUR",
        "placed_at": "2026-11-25T08:30:00Z",
    }
    orders = land(
        data_folder,
        "0002",
        [
            event("order.created", "O-0000001", order, origin="billing"),
            event(
                "order.created",
                "O-0000002",
                {**order, "customer_id": "C-000001", "amount": 25000},
                origin="billing",
            ),
        ],
    )
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(landed_batches.name, [known.batch_id, orders.batch_id])
        for batch in (known, orders):
            result = dg.materialize(
                [raw_events, validate_events, golden_records, batch_ledger, *GOLDEN_RULES],
                partition_key=batch.batch_id,
                instance=instance,
                resources=default_resources(data_folder),
            )

    checks = evaluations(result)
    reference = checks["golden_order", "rule_customer_exists"]
    assert not reference.passed and reference.severity == dg.AssetCheckSeverity.ERROR
    [record] = reference.metadata["sample"].value.records
    assert record.data == {"order_id": "O-0000001", "customer_id": "C-000009"}
    plausible = checks["golden_order", "rule_amount_plausible"]
    assert not plausible.passed and plausible.severity == dg.AssetCheckSeverity.WARN
    assert plausible.metadata["unexpected"].value == 1


# -- outcomes remembered: a suite runs again only when what it reads changed -----------------------


def _golden(con, table: str, rows: list[dict]) -> None:
    con.execute(f"DELETE FROM {table}")
    for row in rows:
        names = [*row, "lifecycle_state", "last_version", "last_event_id", "last_correlation_id"]
        values = [*row.values(), "live", "v", "e", "c"]
        con.execute(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(values))})",
            values,
        )


def _checked(con, entity: str, *, remember: bool = True):
    found = expectations.check_records(
        con,
        PROJECT.entity(entity),
        PROJECT.entity(entity).golden_table,
        PROJECT.entity(entity).rules,
        live=expectations.LIVE_GOLDEN,
        entities=PROJECT.entities,
        remember=remember,
    )
    return {r.rule.name: (r.passed, r.unexpected, r.rows_checked, r.samples) for r in found}


def _remembered(con, table: str) -> list[tuple]:
    return con.execute(
        "SELECT suite, ran_at FROM rule_outcomes WHERE records = ?", [table]
    ).fetchall()


def test_a_suite_over_unchanged_rows_is_remembered_and_any_change_runs_it_again(data_folder):
    from sync_assets.warehouse import connect

    customers = [
        {"customer_id": "C-1", "email": "ada@example.com", "status": "active"},
        {"customer_id": "C-2", "email": "grace@example.com", "status": "gone"},
    ]
    with connect(data_folder.warehouse) as con:
        _golden(con, "golden_customer", customers)
        first = _checked(con, "customer")
        assert first["status_known"][:3] == (False, 1, 2)
        [kept] = _remembered(con, "golden_customer")

        # The same rows again: the outcome is read back, the suite not run (nothing rewritten).
        assert _checked(con, "customer") == first
        assert _remembered(con, "golden_customer") == [kept]

        # One value changed, one PII value changed, a row deleted: each is a new suite run.
        for changed in (
            [customers[0], {**customers[1], "status": "active"}],
            [{**customers[0], "email": "grace@example.com"}, customers[1]],
            [customers[0]],
        ):
            _golden(con, "golden_customer", changed)
            again = _checked(con, "customer")
            assert again == _checked(con, "customer", remember=False)
            [now] = _remembered(con, "golden_customer")
            assert now[0] != kept[0]
            kept = now
        assert again["status_known"][:3] == (True, 0, 1)


def test_a_command_warms_up_great_expectations_unless_the_rules_held_last_time(
    data_folder, monkeypatch
):
    """syncctl run, check and reconcile start the worker only where a suite may need it: nothing
    remembered yet, or a rule that broke when the suites last ran."""
    from sync_assets.warehouse import connect

    monkeypatch.setattr(expectations, "_worker", None)

    def warmed_up() -> bool:
        expectations.warm_up_unless_rules_held(data_folder.warehouse)
        started = expectations._worker is not None
        expectations._stop_worker()
        return started

    assert warmed_up()  # nothing remembered yet
    customers = [{"customer_id": "C-1", "email": "ada@example.com", "status": "active"}]
    with connect(data_folder.warehouse) as con:
        _golden(con, "golden_customer", customers)
        assert all(passed for passed, *_ in _checked(con, "customer").values())
    assert not warmed_up()  # every rule held
    with connect(data_folder.warehouse) as con:
        _golden(con, "golden_customer", [*customers, {**customers[0], "customer_id": "C-2"}])
        assert _checked(con, "customer")["email_unique"][:2] == (False, 2)
    assert warmed_up()  # a rule broke


def test_a_remembered_reference_is_run_again_once_the_referenced_keys_change(data_folder):
    from sync_assets.warehouse import connect

    order = {
        "order_id": "O-1",
        "customer_id": "C-9",
        "status": "paid",
        "amount": 12.5,
        "currency": "EUR",
    }
    with connect(data_folder.warehouse) as con:
        _golden(con, "golden_order", [order])
        assert _checked(con, "order")["customer_exists"][:2] == (False, 1)
        _golden(con, "golden_customer", [{"customer_id": "C-9", "status": "active"}])
        assert _checked(con, "order")["customer_exists"][:2] == (True, 0)


def test_an_outcome_is_not_reused_for_other_rules_or_when_asked_not_to(data_folder):
    from sync_assets.warehouse import connect

    entity = PROJECT.entity("customer")
    with connect(data_folder.warehouse) as con:
        _golden(con, "golden_customer", [{"customer_id": "C-1", "status": "gone"}])
        _checked(con, "customer", remember=False)
        assert _remembered(con, "golden_customer") == []  # not asked: nothing kept
        _checked(con, "customer")
        [kept] = _remembered(con, "golden_customer")
        only = [r for r in entity.rules if r.name == "status_known"]
        found = expectations.check_records(
            con, entity, "golden_customer", only, live=expectations.LIVE_GOLDEN, entities={}
        )
        assert [r.rule.name for r in found] == ["status_known"]
        assert _remembered(con, "golden_customer")[0][0] != kept[0]


def crm(folder, sql: str) -> None:
    with sqlite3.connect(folder.system_database("crm")) as con:
        con.execute(sql)


def test_snapshot_rules_hold_each_system_to_the_rules_of_what_it_holds(landscape):
    crm(
        landscape,
        "UPDATE contacts SET email_address = (SELECT email_address FROM contacts "
        "WHERE deleted = 0 ORDER BY contact_id LIMIT 1), country_code = 'G1', "
        "lifecycle_status = 'Archived' WHERE contact_id = (SELECT contact_id FROM contacts "
        "WHERE deleted = 0 ORDER BY contact_id LIMIT 1 OFFSET 1)",
    )
    with sqlite3.connect(landscape.system_database("crm")) as con:
        [(first, second, email)] = con.execute(
            "SELECT min(contact_id), max(contact_id), min(email_address) FROM (SELECT * FROM "
            "contacts WHERE deleted = 0 ORDER BY contact_id LIMIT 2)"
        ).fetchall()
    snapshots = [snapshot_asset(m, PROJECT.entity(m.entity)) for m in PROJECT.mappings.values()]
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [*snapshots, *snapshot_rule_checks(PROJECT)],
            instance=instance,
            resources=default_resources(landscape),
        )

    assert result.success
    checks = evaluations(result)
    crm_checks = {
        name: e for (asset, name), e in checks.items() if asset.startswith("snapshot_crm")
    }
    assert set(crm_checks) == {
        "rule_email_unique",
        "rule_status_known",
        "rule_country_code",
        "rule_phone_e164",
    }
    unique = crm_checks["rule_email_unique"]
    assert not unique.passed and unique.metadata["unexpected"].value == 2
    keys = sorted(r.data["customer_id"] for r in unique.metadata["sample"].value.records)
    assert keys == sorted([first, second])
    country = crm_checks["rule_country_code"]
    [record] = country.metadata["sample"].value.records
    assert record.data == {"customer_id": second, "country": "G1"}
    status = crm_checks["rule_status_known"]
    assert not status.passed and status.metadata["unexpected"].value == 1
    assert email.lower() not in str(checks)  # the shared address, masked wherever it shows
    # support holds the status through a lossy word ('disabled' is inactive or suspended): allowed
    assert checks["snapshot_support_customer", "rule_status_known"].passed
    # billing holds no phone, so its snapshot is not held to the phone rule
    billing = {name for (asset, name) in checks if asset == "snapshot_billing_customer"}
    assert "rule_phone_e164" not in billing and "rule_email_unique" in billing
    assert all(e.passed for (asset, _), e in checks.items() if not asset.startswith("snapshot_crm"))


def test_snapshot_rules_widen_allowed_by_the_systems_lossy_words():
    support = PROJECT.mapping("support", "customer")
    [status] = [
        r for r in snapshot_rules(PROJECT.entity("customer"), support) if r.kind == "allowed"
    ]
    assert status.values == ("active", "inactive", "suspended", "inactive|suspended")


def test_the_catalog_document_lists_the_rules_beside_the_sentences():
    text = catalog_markdown(PROJECT)
    assert "  - Every order belongs to a customer we know" in text
    assert (
        "  - `customer_exists` (error, checked): customer_id is the key of a customer golden "
        "record." in text
    )
    assert "  - `amount_plausible` (warn, checked): 0 <= amount <= 10000." in text


def test_syncctl_check_reports_the_rules_and_fails_on_one_broken_at_error(tmp_path):
    home = tmp_path / "home"
    built = syncctl(home, "demo", "--customers", "30", "--orders", "60", "--drift", "0")
    assert built.returncode == 0, built.stderr
    assert syncctl(home, "run").returncode == 0

    clean = syncctl(home, "check", "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    rules = {(r["table"], r["rule"]): r for r in json.loads(clean.stdout)["business_rules"]}
    assert rules["golden_customer", "email_unique"]["passed"]
    assert rules["snapshot_crm_customer", "email_unique"]["rows_checked"] > 0

    # Someone types a colleague's address into the CRM: its snapshot breaks email_unique (ERROR).
    with sqlite3.connect(home / "systems" / "crm.sqlite") as con:
        con.execute(
            "UPDATE contacts SET email_address = (SELECT min(email_address) FROM contacts) "
            "WHERE rowid = (SELECT max(rowid) FROM contacts)"
        )
    broken = syncctl(home, "check")
    assert_no_traceback(broken)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    [line] = [x for x in broken.stdout.splitlines() if x.startswith("snapshot_crm_customer:email_unique")]  # fmt: skip
    assert "FAILED (ERROR)" in line and "rows break the rule: email unique" in line
    assert line.split()[3] == "2"  # both records sharing the address
    assert "1 business rule(s) broken at error level or above" in broken.stderr
