"""The local no-code platform: a real server on 127.0.0.1, real HTTP, a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.demo.seed.platform import Faults, PlatformService
from sync_assets.connectors.platform_api import PlatformApiError, is_platform_url, read_records

USERS = """CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    tier TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at INTEGER NOT NULL
)"""
RECORDS = "/v1/tables/users/records"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "platform.sqlite"
    con = sqlite3.connect(path)
    con.execute(USERS)
    con.close()
    return path


@pytest.fixture
def service(database: Path) -> Iterator[PlatformService]:
    with PlatformService(database, seed=7) as running:
        yield running


@pytest.fixture
def client(service: PlatformService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=5.0) as http:
        yield http


def user(number: int, **changes: Any) -> dict[str, Any]:
    fields = {
        "email": f"Person.{number}@example.com",
        "name": f"Person {number}",
        "tier": "Standard",
        "state": "enabled",
        "updated_at": 1_700_000_000 + number,
    }
    return {"match": {"external_id": f"C-{number:06d}"}, "op": "upsert", "fields": fields | changes}


def post(client: httpx.Client, key: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(RECORDS, json=body, headers={"Idempotency-Key": key})


def rows(database: Path, sql: str = "SELECT external_id, tier FROM users ORDER BY id") -> list:
    """What the file holds, read beside the running service (WAL lets both in)."""
    con = sqlite3.connect(database)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def applications(database: Path) -> int:
    return rows(database, "SELECT COUNT(*) FROM _applications")[0][0]


def test_upsert_inserts_then_updates_returning_the_previous_row(client, database):
    inserted = post(client, "k1", user(1))
    assert inserted.status_code == 200
    assert inserted.json()["status"] == "applied"
    assert inserted.json()["previous"] is None
    assert inserted.json()["record"]["id"] == 1  # SQLite assigned the INTEGER PRIMARY KEY

    updated = post(client, "k2", user(1, tier="Priority"))
    assert updated.status_code == 200
    assert updated.json()["previous"]["tier"] == "Standard"
    assert updated.json()["record"] == {**inserted.json()["record"], "tier": "Priority"}
    assert rows(database) == [("C-000001", "Priority")]
    assert applications(database) == 2


def test_a_replayed_key_gets_the_stored_answer_and_applies_nothing(client, service, database):
    first = post(client, "same-key", user(1))
    post(client, "other-key", user(1, tier="Priority"))
    replay = post(client, "same-key", user(1))

    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert rows(database) == [("C-000001", "Priority")]  # the replay did not roll tier back
    assert applications(database) == 2
    assert service.stats()["replayed"] == 1


def test_a_key_reused_for_another_request_is_refused(client, database):
    post(client, "k1", user(1))
    reused = post(client, "k1", user(2))
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    assert rows(database) == [("C-000001", "Standard")]


def test_a_write_without_an_idempotency_key_is_refused(client):
    response = client.post(RECORDS, json=user(1))
    assert response.status_code == 400
    assert response.json()["error"] == "missing_idempotency_key"


def test_malformed_bodies_are_400_naming_the_field(client):
    bad_json = client.post(RECORDS, content=b"{not json", headers={"Idempotency-Key": "k"})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"] == "invalid_json"

    bad_op = post(client, "k", {**user(1), "op": "merge"})
    assert bad_op.status_code == 400
    assert bad_op.json()["field"] == "op"

    # 400s are not stored: the same key with a corrected body goes through.
    assert post(client, "k", user(1)).status_code == 200


def test_an_older_version_is_409_and_the_same_or_a_newer_one_applies(client, database):
    assert post(client, "k1", {**user(1), "version": "0002"}).status_code == 200

    stale = post(client, "k2", {**user(1, tier="Priority"), "version": "0001"})
    assert stale.status_code == 409
    assert stale.json() == {**stale.json(), "error": "stale_version", "held_version": "0002"}
    assert rows(database) == [("C-000001", "Standard")]
    # The same version again re-applies the same state (the record drifted since).
    same = post(client, "k3", {**user(1, tier="Priority"), "version": "0002"})
    assert same.status_code == 200
    assert rows(database) == [("C-000001", "Priority")]

    newer = post(client, "k4", {**user(1, tier="Standard"), "version": "0003"})
    assert newer.status_code == 200
    assert rows(database) == [("C-000001", "Standard")]
    # The 409 was stored under its key like any other answer.
    assert post(client, "k2", {**user(1, tier="Priority"), "version": "0001"}).status_code == 409


def test_delete_then_already_absent_and_no_resurrection_by_an_older_version(client, database):
    post(client, "k1", {**user(1), "version": "0001"})
    delete = {"match": {"external_id": "C-000001"}, "op": "delete", "version": "0002"}

    deleted = post(client, "k2", delete)
    assert deleted.status_code == 200
    assert deleted.json()["status"] == "applied"
    assert deleted.json()["previous"]["external_id"] == "C-000001"
    assert deleted.json()["record"] is None
    assert rows(database) == []

    again = post(client, "k3", {**delete, "version": "0003"})
    assert again.json() == {"status": "already_absent", "previous": None, "record": None}
    late_upsert = post(client, "k4", {**user(1), "version": "0001"})
    assert late_upsert.status_code == 409
    assert rows(database) == []
    assert applications(database) == 2  # the insert and the delete; already_absent applies nothing


def test_unknown_fields_and_tables_are_422_naming_them(client):
    field = post(client, "k1", user(1, emial="x@example.com"))
    assert field.status_code == 422
    assert field.json()["error"] == "unknown_field"
    assert field.json()["field"] == "emial"
    assert "fix:" in field.json()["message"]

    for table in ("nope", "_idempotency"):
        response = client.post(
            f"/v1/tables/{table}/records", json=user(1), headers={"Idempotency-Key": table}
        )
        assert response.status_code == 422
        assert response.json()["error"] == "unknown_table"
        assert response.json()["field"] == table
    assert client.get("/v1/tables/nope/records").status_code == 404


def test_a_constraint_failure_is_422_and_applies_nothing(client, database):
    body = user(1)
    del body["fields"]["email"]  # NOT NULL on insert
    response = post(client, "k1", body)
    assert response.status_code == 422
    assert response.json()["error"] == "constraint"
    assert "NOT NULL" in response.json()["message"]
    assert rows(database) == []
    assert applications(database) == 0


def test_a_match_on_several_rows_is_ambiguous(client, database):
    post(client, "k1", user(1))
    post(client, "k2", user(2))
    response = post(client, "k3", {"match": {"tier": "Standard"}, "op": "delete"})
    assert response.status_code == 422
    assert response.json()["error"] == "ambiguous_match"
    assert len(rows(database)) == 2


def test_read_records_pages_through_every_row_once(service, database):
    con = sqlite3.connect(database)
    with con:
        con.executemany(
            "INSERT INTO users (external_id, email, name, tier, state, updated_at)"
            " VALUES (?, ?, ?, 'Standard', 'enabled', ?)",
            [(f"C-{n:06d}", f"p{n}@example.com", f"P {n}", n) for n in range(2500)],
        )
    con.close()

    batches = list(read_records(service.url, "users", page_size=1000))

    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    assert batches[0].schema.names == [
        "id",
        "external_id",
        "email",
        "name",
        "tier",
        "state",
        "updated_at",
    ]
    ids = [i for b in batches for i in b.column("external_id").to_pylist()]
    assert sorted(ids) == [f"C-{n:06d}" for n in range(2500)]
    assert is_platform_url(service.url)
    assert not is_platform_url(f"sqlite:///{database}")


def test_read_records_names_the_url_and_status_on_an_error(service):
    with pytest.raises(PlatformApiError, match=r"/v1/tables/nope/records answered 404"):
        list(read_records(service.url, "nope"))


def test_injected_errors_apply_nothing_until_the_platform_is_healthy(service, client, database):
    service.set_faults(Faults(error_rate=1.0))
    for _ in range(5):
        response = post(client, "k1", user(1))
        assert response.status_code == 503
        assert response.json()["error"] == "injected"
    assert client.get(RECORDS).status_code == 200  # reads are not faulted by default
    assert rows(database) == []

    service.set_faults(Faults())
    assert post(client, "k1", user(1)).status_code == 200  # the 503s were not stored
    assert rows(database) == [("C-000001", "Standard")]
    assert service.stats()["injected_errors"] == 5


def test_rate_limiting_answers_429_with_retry_after(service, client, database):
    service.set_faults(Faults(rate_limit_rate=1.0, retry_after_s=2))
    response = post(client, "k1", user(1))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert rows(database) == []
    assert service.stats()["rate_limited"] == 1


def test_a_response_lost_after_applying_is_answered_from_the_ledger(service, client, database):
    service.set_faults(Faults(drop_after_apply_rate=1.0))
    with pytest.raises(httpx.TransportError):
        post(client, "k1", user(1))
    assert rows(database) == [("C-000001", "Standard")]  # applied, then the answer was lost

    service.set_faults(Faults())
    retry = post(client, "k1", user(1))
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["status"] == "applied"
    stats = service.stats()
    assert stats["dropped_after_apply"] == 1
    assert stats["applications"] == 1
    assert stats["keys_applied_more_than_once"] == 0


def test_a_dropped_request_applies_nothing(service, client, database):
    service.set_faults(Faults(drop_rate=1.0))
    with pytest.raises(httpx.TransportError):
        post(client, "k1", user(1))
    assert rows(database) == []
    assert service.stats()["dropped"] == 1


def test_a_platform_that_is_down_closes_every_connection(service, client):
    service.set_faults(Faults(down=True))
    with pytest.raises(httpx.TransportError):
        client.get(RECORDS)
    with pytest.raises(httpx.TransportError):
        post(client, "k1", user(1))
    assert client.get("/_admin/stats").status_code == 200  # the admin endpoints still answer

    service.set_faults(Faults())
    assert post(client, "k1", user(1)).status_code == 200


def test_faults_can_be_set_over_http(client):
    assert client.put("/_admin/faults", json={"error_rate": 1.0, "error_status": 502}).is_success
    assert post(client, "k1", user(1)).status_code == 502
    invalid = client.put("/_admin/faults", json={"error_rate": 2})
    assert invalid.status_code == 400
    assert "error_rate" in invalid.json()["message"]
    assert client.put("/_admin/faults", json={}).json()["error_rate"] == 0
    assert post(client, "k1", user(1)).status_code == 200
    stats = client.get("/_admin/stats").json()
    assert stats["injected_errors"] == 1
    assert stats["applied"] == 1


def test_a_seeded_platform_fails_the_same_requests_every_run(tmp_path):
    def statuses(run: int) -> list[int]:
        path = tmp_path / f"run{run}.sqlite"
        with sqlite3.connect(path) as con:
            con.execute(USERS)
        con.close()
        with PlatformService(path, seed=42) as service, httpx.Client(base_url=service.url) as http:
            service.set_faults(Faults(error_rate=0.3, rate_limit_rate=0.2))
            return [post(http, f"k{n}", user(n)).status_code for n in range(30)]

    first = statuses(1)
    assert first == statuses(2)
    assert {200, 429, 503} <= set(first)


def test_stop_then_start_serves_again_on_the_same_port_with_the_data(service, client, database):
    post(client, "k1", user(1))
    url = service.url

    service.stop()
    with pytest.raises(httpx.TransportError):
        client.get(RECORDS)

    service.start()
    assert service.url == url
    records = client.get(RECORDS).json()["records"]
    assert [r["external_id"] for r in records] == ["C-000001"]
    assert post(client, "k1", user(1)).headers["Idempotent-Replayed"] == "true"


def test_concurrent_writers_are_each_applied_exactly_once(service, database):
    writers = 50
    start = threading.Barrier(writers)
    limits = httpx.Limits(max_connections=writers)  # one connection per writer, all at once

    with httpx.Client(base_url=service.url, timeout=10.0, limits=limits) as http:

        def write(number: int) -> int:
            start.wait()
            return post(http, f"writer-{number}", user(number)).status_code

        with ThreadPoolExecutor(max_workers=writers) as pool:
            statuses = list(pool.map(write, range(writers)))

    assert statuses == [200] * writers
    assert len(rows(database)) == writers
    stats = service.stats()
    assert stats["applied"] == writers
    assert stats["applications"] == writers
    assert stats["keys_applied_more_than_once"] == 0


# -- conditional writes: a record read with its ETag, written only while it is still so ----------


def read_record(client: httpx.Client, number: int) -> httpx.Response:
    match = json.dumps({"external_id": f"C-{number:06d}"})
    return client.get("/v1/tables/users/record", params={"match": match})


def test_a_record_is_read_with_its_etag_and_a_change_changes_the_tag(client, database):
    post(client, "k1", user(1))
    first = read_record(client, 1)
    post(client, "k2", user(1, tier="Priority"))
    second = read_record(client, 1)

    assert first.status_code == second.status_code == 200
    assert first.json()["record"]["tier"] == "Standard"
    assert first.headers["ETag"] == first.json()["etag"] != second.json()["etag"]
    assert read_record(client, 2).json() == {"record": None, "etag": None}


def test_a_write_conditional_on_a_changed_record_is_refused_and_not_stored(
    client, service, database
):
    post(client, "k1", user(1))
    etag = read_record(client, 1).json()["etag"]
    post(client, "someone-else", user(1, name="Edited By Hand"))

    refused = client.post(
        RECORDS, json=user(1, tier="Priority"), headers={"Idempotency-Key": "k2", "If-Match": etag}
    )
    fresh = read_record(client, 1).json()["etag"]
    again = client.post(
        RECORDS, json=user(1, tier="Priority"), headers={"Idempotency-Key": "k2", "If-Match": fresh}
    )

    assert refused.status_code == 412 and refused.json()["error"] == "precondition_failed"
    assert refused.json()["etag"] == fresh
    assert again.status_code == 200, "a 412 is not stored: the key may be sent again"
    assert rows(database, "SELECT tier FROM users") == [("Priority",)]
    assert service.stats()["precondition_failed"] == 1
    assert applications(database) == 3


def test_a_create_conditional_on_no_record_is_refused_when_one_exists(client, database):
    post(client, "k1", user(1))
    refused = client.post(
        RECORDS,
        json=user(1, tier="Priority"),
        headers={"Idempotency-Key": "k2", "If-None-Match": "*"},
    )
    created = client.post(
        RECORDS, json=user(2), headers={"Idempotency-Key": "k3", "If-None-Match": "*"}
    )
    assert (refused.status_code, created.status_code) == (412, 200)
    assert rows(database) == [("C-000001", "Standard"), ("C-000002", "Standard")]


def test_a_key_applied_already_is_answered_from_the_ledger_whatever_the_precondition(client):
    post(client, "k1", user(1))
    post(client, "someone-else", user(1, name="Edited By Hand"))

    replay = client.post(
        RECORDS, json=user(1), headers={"Idempotency-Key": "k1", "If-Match": '"stale"'}
    )
    stored = client.get("/v1/idempotency/k1")
    never = client.get("/v1/idempotency/never-used")

    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert stored.status_code == 200
    assert (stored.json()["status"], stored.json()["response"]["status"]) == (200, "applied")
    assert never.status_code == 404 and never.json()["error"] == "unknown_key"
