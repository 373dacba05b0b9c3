"""The HTTP destination re-checks each correction against the platform's record just before
writing: a record edited since the reconciliation is not overwritten, one already right is not
written, an edit between the read and the write is caught by the platform (412), and a correction
applied before a crash is recognised by the platform's ledger."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_platform_service import USERS

from examples.demo.seed.platform import PlatformService
from sync_assets.deliver.engine import Delivery
from sync_assets.deliver.http import HttpDestination
from sync_assets.project import current

V1, V2 = "2026-11-25T08:00:00.000000Z|e1", "2026-11-25T09:00:00.000000Z|e2"
USER = {
    "email": "ada@example.com",
    "full_name": "Ada Lovelace",
    "support_tier": "priority",
    "status": "active",
}
SEEN = {"present": True, "deleted": False, "values": USER}
_ids = itertools.count(1)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "support.sqlite"
    with sqlite3.connect(path) as con:
        con.execute(USERS)
    return path


@pytest.fixture
def platform(database: Path) -> Iterator[PlatformService]:
    with PlatformService(database) as running:
        yield running


def desk(platform: PlatformService) -> HttpDestination:
    return HttpDestination(
        "support", platform.url, {"customer": current().mapping("support", "customer")}
    )


def delivery(key: str, action: str, values: dict, version: str = V1, **more) -> Delivery:
    n = next(_ids)
    return Delivery(f"c{n}", f"k{n}", "customer", key, action, values, version, **more)


def deliver(platform: PlatformService, deliveries: list[Delivery]) -> list:
    destination = desk(platform)
    try:
        return destination.deliver(deliveries)
    finally:
        destination.close()


def by_hand(database: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(database) as con:
        con.execute(sql, params)


def users(database: Path) -> dict[str, tuple]:
    with sqlite3.connect(database) as con:
        return {
            row[0]: row[1:] for row in con.execute("SELECT external_id, name, state FROM users")
        }


def applied_keys(database: Path) -> set[str]:
    with sqlite3.connect(database) as con:
        return {key for (key,) in con.execute("SELECT idempotency_key FROM _applications")}


@pytest.fixture
def two_users(platform, database) -> None:
    created = deliver(platform, [delivery(k, "created", USER) for k in ("C-000001", "C-000002")])
    assert [o.status for o in created] == ["applied", "applied"]


def test_a_record_edited_after_the_reconciliation_is_not_overwritten(platform, database, two_users):
    by_hand(database, "UPDATE users SET name = 'Ada King' WHERE external_id = 'C-000001'")
    edited = delivery("C-000001", "updated", {"status": "suspended"}, V2, seen=SEEN)
    untouched = delivery("C-000002", "updated", {"status": "suspended"}, V2, seen=SEEN)

    outcomes = deliver(platform, [edited, untouched])

    assert [o.status for o in outcomes] == ["changed", "applied"]
    assert "full_name" in outcomes[0].error
    assert users(database) == {
        "C-000001": ("Ada King", "enabled"),
        "C-000002": ("Ada Lovelace", "disabled"),
    }
    assert edited.idempotency_key not in applied_keys(database)


def test_a_record_that_already_holds_the_values_is_not_written(platform, database, two_users):
    by_hand(database, "UPDATE users SET state = 'disabled' WHERE external_id = 'C-000001'")
    writes_before = platform.stats()["applied"]
    fixed = delivery("C-000001", "updated", {"status": "inactive"}, V2, seen=SEEN)
    gone = delivery("C-000003", "deleted", {}, V2, seen=SEEN)

    outcomes = deliver(platform, [fixed, gone])

    assert [o.status for o in outcomes] == ["in_sync", "in_sync"]
    assert platform.stats()["applied"] == writes_before, "nothing was written"
    assert not {fixed.idempotency_key, gone.idempotency_key} & applied_keys(database)


def test_an_edit_between_the_read_and_the_write_is_refused_by_the_platform(
    platform, database, two_users
):
    correction = delivery("C-000001", "updated", {"status": "suspended"}, V2, seen=SEEN)
    destination = desk(platform)
    try:
        read = destination._read(correction)  # the record as it is just before the write
        by_hand(database, "UPDATE users SET name = 'Ada King' WHERE external_id = 'C-000001'")
        raced = destination._send(correction, read, None)
        retried = destination.deliver([correction])  # the next attempt reads again
    finally:
        destination.close()

    assert raced.status == "transient" and "HTTP 412" in raced.error
    assert [o.status for o in retried] == ["changed"]
    assert users(database)["C-000001"] == ("Ada King", "enabled")


def test_a_correction_applied_before_a_crash_is_answered_by_the_platforms_ledger(
    platform, database, two_users
):
    correction = delivery("C-000001", "updated", {"full_name": "Ada King"}, V2, seen=SEEN)
    first = deliver(platform, [correction])  # applied; then the run dies before recording it
    again = deliver(platform, [correction])  # the next run: the record reads as changed

    assert [o.status for o in first] == ["applied"]
    assert [(o.status, o.replayed) for o in again] == [("applied", True)]
    assert applied_keys(database) >= {correction.idempotency_key}
    with sqlite3.connect(database) as con:
        assert con.execute(
            "SELECT count(*) FROM _applications WHERE idempotency_key = ?",
            [correction.idempotency_key],
        ).fetchone() == (1,)
