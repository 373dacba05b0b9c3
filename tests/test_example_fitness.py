"""The second example project, examples/fitness, and a project written by hand, on real servers:
nothing in the code knows their systems, entities, tables or words.

The club's front desk is a PostgreSQL schema and its dues system a MariaDB database, both fresh
for each test (tests/databases.py) and filled by the project's own seed through `syncctl demo`.
There is no event history: the first `syncctl run` adopts the golden records from the owners'
rows, so what a reconciliation reports next is exactly the drift seeded in
examples/fitness/seed/club.py, and none of the rows that differ only in how they are written.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from commands import assert_no_traceback, syncctl
from databases import postgres_url

from sync_assets.security.fingerprint import fingerprint
from sync_assets.security.keys import keyring

FITNESS = Path(__file__).resolve().parents[1] / "examples" / "fitness"

Finding = tuple[str, str, str, str | None]
"""(kind, system, entity key, attribute) of one discrepancy."""

MISMATCHES: dict[tuple[str, str, str], tuple[str, str]] = {
    # (system, key, attribute): (expected: the owner's value, actual: the drifted copy)
    ("dues", "RF00004", "contact_email"): ("eva@lund.example", "eva.lund@oldmail.example"),
    ("dues", "RF00005", "last_name"): ("Adeyemi", "Adeyemi-Cole"),
    ("frontdesk", "SUB-2025-004", "package"): ("offpeak", "anytime"),
    ("frontdesk", "SUB-2025-005", "monthly_fee"): ("39.90", "44.90"),
    ("frontdesk", "SUB-2025-008", "starts_on"): ("2025-06-01T00:00:00Z", "2025-06-02T08:30:00Z"),
}
SEEDED: set[Finding] = {
    ("missing", "dues", "RF00006", None),  # no payer
    ("missing", "dues", "RF00008", None),  # payer closed, member live
    ("extra", "dues", "RF00090", None),  # a payer for no member
    ("missing", "frontdesk", "SUB-2025-007", None),  # no door pass
    ("extra", "frontdesk", "SUB-2024-050", None),  # a pass for an ended subscription
    ("extra", "frontdesk", "SUB-2025-099", None),  # a pass for no subscription
    # each mismatch against the golden record, reported once: its divergence from the owner's
    # copy is one of its views, not a finding of its own
    *(("mismatch", s, k, a) for s, k, a in MISMATCHES),
}
PII = {"first_name", "last_name", "contact_email"}
"""The attributes the club's catalog marks `pii: true`."""
SAME_BUT_WRITTEN_OTHERWISE = {
    ("dues", "RF00002", "contact_email"),  # case
    ("dues", "RF00003", "last_name"),  # spaces
    ("frontdesk", "SUB-2025-001", "starts_on"),  # the time of day of a day-precise date
    ("frontdesk", "SUB-2025-002", "package"),  # the desk's word, in lower case
    ("frontdesk", "SUB-2025-002", "monthly_fee"),  # a tenth of a cent
    ("frontdesk", "SUB-2025-003", "monthly_fee"),  # a cent, within tolerance
    ("frontdesk", "SUB-2025-006", "package"),  # the desk's word, in upper case
    ("frontdesk", "SUB-2025-009", "package"),  # the desk's word, with spaces
    ("dues", "RF00091", None),  # a closed payer of a member who left
}


@dataclass
class Landscape:
    home: Path
    env: dict[str, str]
    frontdesk: sa.Engine
    dues: sa.Engine

    def syncctl(self, project: Path, *args: str):
        return syncctl(self.home, "--project", str(project), *args, **self.env)


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def club(postgres_engine, mariadb_engine, tmp_path) -> Landscape:
    """The club's two systems seeded on the servers, and an empty data folder."""
    landscape = Landscape(
        home=tmp_path / "syncfabric",
        env={
            "FITNESS_FRONTDESK_URL": url_of(postgres_engine),
            "FITNESS_DUES_URL": url_of(mariadb_engine),
        },
        frontdesk=postgres_engine,
        dues=mariadb_engine,
    )
    seeded = landscape.syncctl(FITNESS, "demo")
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    assert "41 rows" in seeded.stdout
    return landscape


def findings(checked) -> list[dict]:
    assert_no_traceback(checked)
    report = json.loads(checked.stdout)
    return [found for check in report["checks"] for found in check["found"]]


def as_set(found: list[dict]) -> set[Finding]:
    return {(f["kind"], f["system"], f["entity_key"], f["attribute"]) for f in found}


def rows(engine: sa.Engine, sql: str) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(sql))]


def test_the_seeded_club_passes_validate_connect(club):
    validated = club.syncctl(FITNESS, "validate", "--connect", "--json")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    report = json.loads(validated.stdout)
    assert report["project"] == "fitness"
    assert report["systems"] == ["frontdesk", "dues"]
    assert {(p["system"], p["entity"], p["table"], p["rows"]) for p in report["probes"]} == {
        ("frontdesk", "member", "people", 10),
        ("frontdesk", "subscription", "passes", 10),
        ("dues", "member", "payers", 11),
        ("dues", "subscription", "subscriptions", 10),
    }
    assert all(p["problems"] == [] for p in report["probes"])


def test_a_table_missing_on_a_server_fails_validate_connect_naming_it(club):
    with club.dues.begin() as connection:
        connection.execute(sa.text("DROP TABLE payers"))
    validated = club.syncctl(FITNESS, "validate", "--connect")
    assert validated.returncode == 1
    assert_no_traceback(validated)
    assert "table 'payers' does not exist" in validated.stdout
    assert "systems/dues.yaml" in validated.stdout


def test_the_first_run_adopts_the_club_and_check_lists_exactly_the_seeded_drift(club):
    """Needs adoption (issue 9): the first run on empty golden records builds them from the
    owners' rows; rows only a non-owner holds are reported, never deleted."""
    ran = club.syncctl(FITNESS, "run")
    assert_no_traceback(ran)
    assert ran.returncode == 1, ran.stdout + ran.stderr  # drift is left for a person to review
    summary = json.loads(club.syncctl(FITNESS, "summary", "--json").stdout)
    assert summary["golden"] == {"member": 10, "subscription": 9}  # the owners' live rows

    checked = club.syncctl(FITNESS, "check", "--json")
    assert checked.returncode == 1  # the checks fail: every drift waits for a review here
    found = findings(checked)
    reported = {(f["system"], f["entity_key"], f["attribute"]) for f in found}
    assert not reported & SAME_BUT_WRITTEN_OTHERWISE
    assert as_set(found) == SEEDED
    values = {
        (f["system"], f["entity_key"], f["attribute"]): (f["expected"], f["actual"])
        for f in found
        if f["kind"] == "mismatch"
    }
    # PII (member.yaml: the names and the e-mail) as the warehouse stores it: keyed fingerprints
    key = keyring(club.home).fingerprint_key
    assert values == {
        (system, entity_key, attribute): tuple(
            fingerprint(key, v) if attribute in PII else v for v in pair
        )
        for (system, entity_key, attribute), pair in MISMATCHES.items()
    }
    # The owners were adopted as they are: whatever differs elsewhere is the other system's drift,
    # but a row the lifecycle owner never had is no reason to delete anything.
    assert {f["resolution"] for f in found if f["kind"] != "extra"} == {"drift"}
    extra = {f["entity_key"]: f["resolution"] for f in found if f["kind"] == "extra"}
    assert extra.pop("SUB-2024-050") == "drift"  # dues ended it: its pass must go
    assert "drift" not in extra.values()  # RF00090, SUB-2025-099: nobody ever had them

    # Reported, not deleted: the rows only a non-owner holds are still there, as they were.
    assert rows(club.dues, "SELECT closed FROM payers WHERE member_ref = 'RF00090'") == [("N",)]
    assert rows(
        club.frontdesk,
        "SELECT subscription_ref FROM passes WHERE subscription_ref IN "
        "('SUB-2024-050', 'SUB-2025-099') ORDER BY 1",
    ) == [("SUB-2024-050",), ("SUB-2025-099",)]


def test_reviewed_corrections_reach_both_servers_and_leave_rows_already_right_alone(club):
    """Needs adoption, as above. After a person reviews the drift, the corrections are written
    to PostgreSQL and MariaDB the way each system writes its values, and the next check finds
    only the rows nobody owns, left alone; rows that only looked different are never written."""
    assert club.syncctl(FITNESS, "run").returncode == 1
    refused = club.syncctl(FITNESS, "reconcile")
    assert refused.returncode == 1
    count = re.search(r"--i-have-reviewed (\d+)", refused.stdout + refused.stderr)
    assert count, refused.stdout + refused.stderr
    emitted = club.syncctl(FITNESS, "reconcile", "--i-have-reviewed", count.group(1))
    assert emitted.returncode == 0, emitted.stdout + emitted.stderr
    delivered = club.syncctl(FITNESS, "deliver")
    assert delivered.returncode == 0, delivered.stdout + delivered.stderr

    left = as_set(findings(club.syncctl(FITNESS, "check", "--json")))
    assert left == {  # the rows only a non-owner ever held, still reported, still there
        ("extra", "dues", "RF00090", None),
        ("extra", "frontdesk", "SUB-2025-099", None),
    }
    assert rows(club.dues, "SELECT closed FROM payers WHERE member_ref = 'RF00090'") == [("N",)]
    assert rows(
        club.frontdesk,
        "SELECT subscription_ref FROM passes WHERE subscription_ref IN "
        "('SUB-2024-050', 'SUB-2025-099') ORDER BY 1",
    ) == [("SUB-2025-099",)]  # the pass of the subscription dues ended is gone
    assert rows(
        club.dues, "SELECT member_ref, holder_surname, receipt_email, closed FROM payers "
        "WHERE member_ref IN ('RF00002', 'RF00003', 'RF00004', 'RF00005', 'RF00006', 'RF00008') "
        "ORDER BY 1",
    ) == [
        ("RF00002", "de Vries", "Bram.DeVries@Example.COM", "N"),  # only the case differed
        ("RF00003", "  van  der Berg ", "daan.vdberg@example.com", "N"),  # only spaces
        ("RF00004", "Lund", "eva@lund.example", "N"),
        ("RF00005", "Adeyemi", "femi.adeyemi@example.com", "N"),
        ("RF00006", "Holm", "gus.holm@example.com", "N"),  # created
        ("RF00008", "Petrov", "ivo.petrov@example.com", "N"),  # reopened
    ]  # fmt: skip
    assert rows(
        club.frontdesk,
        "SELECT subscription_ref, member_ref, package_label, fee_shown, valid_from::date "
        "FROM passes WHERE subscription_ref IN ('SUB-2025-002', 'SUB-2025-004', "
        "'SUB-2025-005', 'SUB-2025-007', 'SUB-2025-008') ORDER BY 1",
    ) == [
        ("SUB-2025-002", "RF00002", "anytime", Decimal("39.904"), _day("2025-02-01")),  # as it was
        ("SUB-2025-004", "RF00004", "Off-peak", Decimal("29.900"), _day("2025-03-15")),  # the desk's word
        ("SUB-2025-005", "RF00005", "Anytime", Decimal("39.900"), _day("2025-04-01")),
        ("SUB-2025-007", "RF00008", "Off-peak", Decimal("29.900"), _day("2025-05-01")),  # created
        ("SUB-2025-008", "RF00010", "All clubs", Decimal("54.500"), _day("2025-06-01")),
    ]  # fmt: skip


def _day(text: str) -> date:
    return date.fromisoformat(text)


# -- a project written by hand, for two tables Syncfabric never saw --------------------------------

SCHOOL_SETTINGS = """\
name: school
systems: [registry, courses]
reconcile:
  error_floor: 0
"""
SCHOOL_STUDENT = """\
key: student_no
key_pattern: "^st-[0-9]{4}$"
lifecycle_owner: registry
description: A student of the language school.
attributes:
  student_name:
    type: string
    owner: registry
    required: true
    compare: whitespace
    pii: true
    description: As on the enrolment form.
  email_address:
    type: string
    owner: registry
    compare: casefold
    pii: true
    description: Where the school writes to.
  level:
    type: enum
    owner: courses
    allowed: [a1, a2, b1, b2]
    description: The CEFR level of the course the student attends.
  fee:
    type: decimal
    owner: courses
    minimum: 0
    tolerance: 0.05
    description: "Per term, in euros."
"""
SCHOOL_REGISTRY = """\
kind: sql
url_env: SCHOOL_REGISTRY_URL
entities:
  student:
    table: people
    schema: {schema}
    key: [pid]
    canonical_key: student_code
    columns:
      student_name: name_text
      email_address: {{column: mail, rule: lower}}
      level:
        column: cefr
        rule: vocabulary
        vocabulary: {{Beginner: a1, Elementary: a2, Intermediate: b1, Upper intermediate: b2}}
      fee: {{column: fee_quoted, rule: decimal}}
"""
SCHOOL_COURSES = """\
kind: sql
url_env: SCHOOL_COURSES_URL
entities:
  student:
    table: subscriptions
    key: [sub_id]
    canonical_key: student
    columns:
      student_name: holder
      email_address: email_copy
      level: {column: level_code, rule: lower}
      fee: {column: fee_eur, rule: decimal}
    soft_delete: {column: status, value: cancelled}
"""
PEOPLE_SQL = """
CREATE TABLE people (
    pid integer PRIMARY KEY, student_code varchar(8) NOT NULL, name_text text NOT NULL,
    mail text, cefr text, fee_quoted numeric(10, 3));
INSERT INTO people VALUES
    (1, 'st-0001', 'Mia Roth', 'mia@school.example', 'Intermediate', 120.004),
    (2, 'st-0002', 'Noah Klein', 'noah@school.example', 'beginner', 95),
    (3, 'st-0003', 'Olga Weiss', 'olga@school.example', NULL, NULL),
    (4, 'st-0004', 'Pia Lang', 'pia@school.example', 'Elementary', 140),
    (5, 'st-0005', 'Ravi Shah', 'ravi@school.example', 'Upper intermediate', 139.97),
    (6, 'st-0006', 'Sara Cho', 'sara@school.example', 'Intermediate', 150);
"""
SUBSCRIPTIONS_SQL = """
CREATE TABLE subscriptions (
    sub_id int PRIMARY KEY, student varchar(8) NOT NULL, holder varchar(80),
    email_copy varchar(120), level_code varchar(4), fee_eur decimal(10, 4), status varchar(10));
INSERT INTO subscriptions VALUES
    (11, 'st-0001', ' Mia  Roth', 'MIA@School.Example', 'B1', 120.0000, 'active'),
    (12, 'st-0002', 'Noah Klein', 'noah.k@old.example', 'A1', 95.0000, 'active'),
    (14, 'st-0004', 'Pia Lang', 'pia@school.example', 'B2', 140.0000, 'active'),
    (15, 'st-0005', 'Ravi Shah', 'ravi@school.example', 'b2', 140.0000, 'active'),
    (16, 'st-0006', 'Sara Cho', 'sara@school.example', 'B1', 120.0000, 'active'),
    (98, 'st-0098', 'Uma Berg', 'uma@school.example', 'A2', 99.0000, 'cancelled'),
    (99, 'st-0099', 'Tom Ek', 'tom@school.example', 'A2', 99.0000, 'active');
"""


def _run_sql(engine: sa.Engine, script: str) -> None:
    with engine.begin() as connection:
        for statement in filter(str.strip, script.split(";")):
            connection.execute(sa.text(statement))


def test_a_hand_written_project_reconciles_two_new_tables_with_no_code_change(
    postgres_engine, mariadb_engine, tmp_path
):
    """A team's own project, written from scratch: a `people` table in a PostgreSQL schema (named
    by the mapping's `schema:`) and a `subscriptions` table in MariaDB, with their own names,
    key format, vocabulary and delete marker. `syncctl validate` accepts it and, from an empty
    data folder, `run` then `check --json` report exactly the drift seeded (needs adoption)."""
    _run_sql(postgres_engine, PEOPLE_SQL)
    _run_sql(mariadb_engine, SUBSCRIPTIONS_SQL)
    schema = postgres_engine.url.query["options"].removeprefix("-csearch_path=")
    project = tmp_path / "school"
    for name, text in {
        "syncfabric.yaml": SCHOOL_SETTINGS,
        "catalog/student.yaml": SCHOOL_STUDENT,
        "systems/registry.yaml": SCHOOL_REGISTRY.format(schema=schema),
        "systems/courses.yaml": SCHOOL_COURSES,
    }.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text))
    home = tmp_path / "data"
    (home / "landing").mkdir(parents=True)  # a data folder: an empty landing zone, no events
    env = {  # the registry's URL names no schema: the mapping does
        "SCHOOL_REGISTRY_URL": postgres_url().render_as_string(hide_password=False),
        "SCHOOL_COURSES_URL": url_of(mariadb_engine),
    }

    def school(*args: str):
        return syncctl(home, "--project", str(project), *args, **env)

    validated = school("validate", "--connect", "--json")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    report = json.loads(validated.stdout)
    assert report["mappings"] == ["registry.student", "courses.student"]
    assert [(p["table"], p["rows"], p["problems"]) for p in report["probes"]] == [
        ("people", 6, []),
        ("subscriptions", 7, []),
    ]

    ran = school("run")
    assert_no_traceback(ran)
    assert ran.returncode == 1, ran.stdout + ran.stderr  # drift is left for a person to review
    assert json.loads(school("summary", "--json").stdout)["golden"] == {"student": 6}
    found = findings(school("check", "--json"))
    drifted = {
        ("courses", "st-0002", "email_address"),
        ("registry", "st-0004", "level"),
        ("registry", "st-0006", "fee"),
    }
    assert as_set(found) == {
        ("missing", "courses", "st-0003", None),
        ("extra", "courses", "st-0099", None),
        *(("mismatch", s, k, a) for s, k, a in drifted),
    }
    # st-0001 (case, spaces, the registry's word), st-0002's 'beginner', st-0005 (3 cents,
    # within tolerance, 'b2' in lower case) and the cancelled st-0098 are not reported.
    assert not {f["entity_key"] for f in found} & {"st-0001", "st-0005", "st-0098"}
    assert {f["attribute"] for f in found if f["entity_key"] == "st-0002"} == {"email_address"}
