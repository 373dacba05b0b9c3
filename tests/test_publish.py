"""Producers that validate before they publish (sync_assets/ingest/publish.py, `syncctl publish`):
a refusal gives exactly the reason the dead letter would, nothing refused is sent, and what is
published lands and is applied by `syncctl run`."""

from __future__ import annotations

import http.server
import json
import shutil
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from commands import assert_no_traceback, syncctl
from conftest import at, customer_created, land, rows, run_core
from test_channels import KEY_ENV, SIGNING, signing_project

from sync_assets.catalog.events import to_line
from sync_assets.ingest.publish import (
    PublishRefused,
    Refused,
    check,
    envelope,
    publish,
    read_event_lines,
)
from sync_assets.project import current
from sync_assets.settings import DataFolder

CUSTOMER = {
    "email": "ada@example.com",
    "full_name": "Ada Lovelace",
    "country": "GB",
    "status": "active",
}


def created(key: str = "C-000001", **changes: Any) -> dict[str, Any]:
    """A customer.created from the CRM, built by the producer API, with `changes` to its data
    (a value of None leaves the field out)."""
    data = {**CUSTOMER, **changes}
    data = {name: value for name, value in data.items() if value is not None}
    return envelope("customer", "created", key, data, system="crm", time=at())


INVALID = {
    "bad enum value": created(status="gone"),
    "missing required field": created(full_name=None),
    "wrong type": created(country=44),
    "unknown field": created(shoe_size=42),
    "bad key pattern": created("C-12"),
    "PII format": created(email="not-an-address"),
}


def dead_letters_of(folder: DataFolder, lines: list[dict[str, Any] | str]) -> list[tuple]:
    """(line, event id, rule, reason) of the dead letters the lines get, landed directly as one
    batch in the CRM's channel and ingested."""
    batch = land(folder, "direct", lines, system="crm")
    run_core(folder, [batch.batch_id])
    return rows(
        folder,
        "SELECT line_no, event_id, rule, reason FROM dead_letters WHERE batch_id = ? "
        "ORDER BY line_no",
        [batch.batch_id],
    )


def landed_files(folder: DataFolder) -> list[Path]:
    """Every file under the landing folder, temporary ones included."""
    return sorted(p for p in folder.landing.rglob("*") if p.is_file())


# ---- the refusal is the dead letter ---------------------------------------------------------------


@pytest.mark.parametrize("case", INVALID)
def test_a_refusal_gives_exactly_the_dead_letters_reason(case, data_folder):
    event = INVALID[case]

    refused = check([event], "crm")

    [(line_no, event_id, rule, reason)] = dead_letters_of(data_folder, [event])
    assert refused == [Refused(line_no, event_id, rule, reason)]
    assert refused[0].event_id == event["id"]
    assert refused[0].reason.startswith("line 1: ")


def test_each_event_of_a_call_is_refused_as_its_line_of_the_batch_would_be(data_folder):
    events: list[dict[str, Any] | str] = [created("C-000100"), *INVALID.values(), "{not json"]

    refused = check(events, "crm")

    direct = dead_letters_of(data_folder, events)
    assert [(r.line, r.event_id, r.rule, r.reason) for r in refused] == direct
    assert [r.line for r in refused] == list(range(2, len(events) + 1))  # the first one is valid
    assert refused[-1].rule == "json"


def test_pii_is_withheld_from_a_refusal():
    [refused] = check([created(email="ada at example")], "crm")

    assert "withheld (PII)" in refused.reason
    assert "ada at example" not in refused.reason


def test_an_event_speaking_for_another_system_is_refused_in_this_ones_channel():
    event = envelope("customer", "updated", "C-000001", {"plan": "pro"}, system="billing")

    assert check([event], "billing") == []
    [refused] = check([event], "crm")
    assert refused.rule == "origin"


def test_the_same_id_twice_in_one_call_is_refused():
    first, second = created("C-000001"), created("C-000002")
    second["id"] = first["id"]

    [refused] = check([first, second], "crm")

    assert (refused.line, refused.event_id, refused.rule) == (2, first["id"], "duplicate_id")
    assert "line 1" in refused.reason


def test_a_signing_systems_events_are_signed_and_checked(data_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCFABRIC_PROJECT", str(signing_project(tmp_path, SIGNING)))
    monkeypatch.setenv(KEY_ENV, "s3cret-crm-key")
    assert current().systems["crm"].signing_key_env == KEY_ENV
    signed = created("C-000001")
    changed = created("C-000002")
    changed["data"]["status"] = "inactive"  # after signing

    assert "signature" in signed and check([signed], "crm") == []
    refused = check([signed, changed], "crm")

    direct = dead_letters_of(data_folder, [signed, changed])
    assert [(r.line, r.event_id, r.rule, r.reason) for r in refused] == direct
    assert [(r.line, r.rule) for r in refused] == [(2, "signature")]
    assert "s3cret-crm-key" not in refused[0].reason


# ---- publishing: all or nothing -------------------------------------------------------------------


def test_a_valid_call_lands_one_batch_that_ingest_applies(data_folder):
    events = [created("C-000001"), created("C-000002", email="grace@example.com")]

    published = publish(events, "crm", folder=data_folder)

    [batch_file] = landed_files(data_folder)
    assert batch_file.parent == data_folder.landing / "crm"
    assert read_event_lines(batch_file) == [to_line(e) for e in events]
    assert published.event_ids == [e["id"] for e in events]
    assert published.channel == "landing"
    result = run_core(data_folder, [published.batch_id])[published.batch_id]
    assert result["validation"].validated == 2 and result["validation"].dead_lettered == 0
    assert rows(data_folder, "SELECT customer_id FROM golden_customer ORDER BY 1") == [
        ("C-000001",),
        ("C-000002",),
    ]


def test_one_invalid_event_refuses_the_whole_call_and_nothing_is_written(data_folder):
    events = [created("C-000001"), INVALID["bad enum value"], created("C-000003")]

    with pytest.raises(PublishRefused) as refusal:
        publish(events, "crm", folder=data_folder)

    assert [r.line for r in refusal.value.refused] == [2]
    assert refusal.value.exit_code == 1
    assert refusal.value.refused[0].reason in refusal.value.message
    assert not data_folder.landing.exists()


def test_a_channel_is_anything_that_sends_a_batch():
    class Memory:
        name = "memory"

        def __init__(self) -> None:
            self.sent: list[tuple[str, list[str]]] = []

        def send(self, system: str, lines) -> str:
            self.sent.append((system, list(lines)))
            return f"memory-{len(self.sent)}"

    memory = Memory()
    event = created()

    published = publish([event], "crm", channel=memory)

    assert memory.sent == [("crm", [to_line(event)])]
    assert (published.channel, published.batch_id) == ("memory", "memory-1")


# ---- a webhook handler ----------------------------------------------------------------------------


@pytest.fixture
def webhook(data_folder) -> Iterator[str]:
    """A no-code tool's webhook on loopback: it turns the tool's record into a customer event of
    the CRM with the producer API, 202 when published, 422 with the refusals."""

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            record = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            event = envelope(
                "customer",
                record["action"],
                record["customer_id"],
                record["fields"],
                system="crm",
                correlation_id=self.headers.get("X-Correlation-Id"),
            )
            try:
                published = publish([event], "crm", folder=data_folder)
            except PublishRefused as refusal:
                status, body = 422, {"refused": [r.as_dict() for r in refusal.refused]}
            else:
                status, body = 202, published.as_dict()
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:  # no request lines on the test's output
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def post(url: str, record: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(record).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_webhook_handler_publishes_valid_records_and_answers_refusals(webhook, data_folder):
    refused_status, refused = post(
        webhook, {"action": "created", "customer_id": "C-000042", "fields": {"email": "x"}}
    )
    assert refused_status == 422
    assert {r["rule"] for r in refused["refused"]} <= {"not_nullable", "str_contains"}
    assert not data_folder.landing.exists()

    status, published = post(
        webhook,
        {"action": "created", "customer_id": "C-000042", "fields": CUSTOMER},
        **{"X-Correlation-Id": "order-form-7"},
    )
    assert status == 202, published
    run_core(data_folder, [published["batch_id"]])
    assert rows(
        data_folder,
        "SELECT event_id, correlation_id FROM validated_customer_events WHERE entity_key = ?",
        ["C-000042"],
    ) == [(published["event_ids"][0], "order-form-7")]


# ---- syncctl publish ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    """A small demo landscape, landed and not yet run."""
    home = tmp_path_factory.mktemp("publish") / "syncfabric"
    built = syncctl(home, "demo", "--customers", "20", "--orders", "40")
    assert built.returncode == 0, built.stderr
    return home


@pytest.fixture
def home(demo_home, tmp_path) -> Path:
    copy = tmp_path / "syncfabric"
    shutil.copytree(demo_home, copy)
    return copy


@pytest.mark.slow
def test_syncctl_publish_lands_an_event_that_syncctl_run_applies(home):
    # The change happened in the CRM (a no-code tool's form wrote it), which publishes it.
    with sqlite3.connect(home / "systems" / "crm.sqlite") as crm:
        crm.execute("UPDATE contacts SET lifecycle_status = 'Suspended' WHERE contact_id = ?", ["C-000001"])  # fmt: skip

    published = syncctl(
        home, "publish", "--json", "--system", "crm", "--entity", "customer",
        "--action", "updated", "--key", "C-000001", "--data", '{"status": "suspended"}',
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    landed = json.loads(published.stdout)
    assert landed["system"] == "crm" and len(landed["event_ids"]) == 1

    ran = syncctl(home, "run", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert landed["batch_id"] in json.loads(ran.stdout)["runs"]
    folder = DataFolder(home)
    assert rows(folder, "SELECT status FROM golden_customer WHERE customer_id = 'C-000001'") == [
        ("suspended",)
    ]
    assert rows(
        folder,
        "SELECT event_id FROM validated_customer_events WHERE batch_id = ?",
        [landed["batch_id"]],
    ) == [(landed["event_ids"][0],)]


@pytest.mark.slow
def test_syncctl_publish_refuses_with_the_reason_and_exit_1(home):
    before = landed_files(DataFolder(home))

    refused = syncctl(
        home, "publish", "--system", "crm", "--entity", "customer", "--action", "updated",
        "--key", "C-000001", "--data", '{"status": "gone"}',
    )  # fmt: skip
    as_json = syncctl(
        home, "publish", "--json", "--system", "crm", "--entity", "customer",
        "--action", "updated", "--key", "C-000001", "--data", '{"status": "gone"}',
    )  # fmt: skip

    for result in (refused, as_json):
        assert result.returncode == 1, result.stderr
        assert_no_traceback(result)
    [reason] = [r["reason"] for r in json.loads(as_json.stdout)["refused"]]
    assert reason.startswith("line 1: customer.updated/v2 field 'status' failed isin(")
    assert reason in refused.stderr and "nothing published" in refused.stderr
    assert landed_files(DataFolder(home)) == before


@pytest.mark.slow
def test_syncctl_publish_a_file_refuses_by_its_line_numbers(home, tmp_path):
    events = tmp_path / "events.jsonl"
    lines = [to_line(created("C-000501")), to_line(INVALID["wrong type"])]
    events.write_text("\n".join(lines) + "\n")
    before = landed_files(DataFolder(home))

    refused = syncctl(home, "publish", "--json", "--system", "crm", "--file", str(events))
    unknown = syncctl(home, "publish", "--system", "nowhere", "--file", str(events))
    usage = syncctl(home, "publish", "--system", "crm", "--entity", "customer")

    assert refused.returncode == 1, refused.stderr
    assert json.loads(refused.stdout)["refused"] == [r.as_dict() for r in check(lines, "crm")]
    assert json.loads(refused.stdout)["refused"][0]["line"] == 2
    assert (unknown.returncode, usage.returncode) == (2, 2)
    assert "unknown system 'nowhere'" in unknown.stderr
    for result in (refused, unknown, usage):
        assert_no_traceback(result)
    assert landed_files(DataFolder(home)) == before

    events.write_text(lines[0] + "\n")
    published = syncctl(home, "publish", "--system", "crm", "--file", str(events))
    assert published.returncode == 0, published.stderr
    assert "published 1 event(s) of crm" in published.stdout
    assert len(landed_files(DataFolder(home))) == len(before) + 1


def test_customer_created_of_the_fixtures_passes_the_producer_check():
    """The producer check and the tests' own valid event agree."""
    assert check([customer_created()], "crm") == []


def test_checks_from_many_threads_each_get_their_own_verdict():
    """A webhook server's threads share the process's scratch warehouse, one check at a time."""
    from concurrent.futures import ThreadPoolExecutor

    calls = [[created(f"C-{n:06d}")] if n % 2 else [INVALID["wrong type"]] for n in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = list(pool.map(lambda events: check(events, "crm"), calls))

    for events, verdict in zip(calls, verdicts, strict=True):
        assert [r.event_id for r in verdict] == (
            [] if events[0] is not INVALID["wrong type"] else [events[0]["id"]]
        )
