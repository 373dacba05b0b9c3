"""The delivery loop and its retry policy, without Dagster: backoff with full jitter, Retry-After,
verdicts, the attempt log, and compensation of a change set broken by a dead letter."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb
import pytest
import sqlalchemy as sa

from sync_assets.deliver import outbox
from sync_assets.deliver.corrections import insert_corrections
from sync_assets.deliver.engine import Delivery, Outcome, deliver
from sync_assets.deliver.retry import RetryPolicy
from sync_assets.deliver.sql import SqlDestination
from sync_assets.operate.metrics import percentile
from sync_assets.project import current
from sync_assets.warehouse import create_schema


def test_full_jitter_stays_inside_a_window_that_doubles_up_to_the_cap():
    policy = RetryPolicy(base_s=0.1, cap_s=1.0, max_attempts=6)
    rng = random.Random(1)
    assert [policy.window(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    delays = [policy.delay(4, rng) for _ in range(2000)]
    assert 0 <= min(delays) < 0.05 and 0.75 < max(delays) <= 0.8  # spread over the whole window
    assert policy.delay(1, rng, retry_after=3) == 3  # never sooner than the destination asks
    assert policy.delay(1, rng, retry_after=3600) == policy.retry_after_cap_s
    with pytest.raises(ValueError, match="base_s"):
        RetryPolicy(base_s=2, cap_s=1)


def test_percentiles_by_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile([], 95)) == (50, 95, 0.0)
    assert percentile([7.0], 99) == 7.0


class Scripted:
    """A destination answering from a script per correction (the real ones are tested against
    real databases and the platform service; this one pins the loop's bookkeeping)."""

    name, batch_size = "scripted", 2

    def __init__(self, script: dict[str, list[Outcome]]):
        self.script = script
        self.calls: list[list[str]] = []

    def deliver(self, batch: Sequence[Delivery]) -> list[Outcome]:
        self.calls.append([d.correction_id for d in batch])
        return [self.script[d.correction_id].pop(0) for d in batch]

    def close(self) -> None:
        pass


def delivery(correction_id: str) -> Delivery:
    return Delivery(
        correction_id, f"key-{correction_id}", "customer", "C-000001", "updated", {}, "v1"
    )


class Clock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_each_correction_gets_one_verdict_and_every_attempt_is_logged():
    busy = Outcome("transient", "HTTP 429: slow down", retry_after=2.0)
    script = {
        "a": [Outcome("applied")],
        "b": [Outcome("transient", "HTTP 503"), busy, Outcome("applied", replayed=True)],
        "c": [Outcome("permanent", "HTTP 422: unknown field")],
        "d": [Outcome("transient", "timeout")] * 3,
        "e": [Outcome("superseded", "holds v2")],
    }
    clock = Clock()
    destination = Scripted(script)
    report = deliver(
        [delivery(c) for c in "abcde"],
        destination,
        RetryPolicy(base_s=0.1, cap_s=1.0, max_attempts=3),
        rng=random.Random(3),
        clock=clock,
        sleep=clock.sleep,
    )
    verdicts = {v.correction_id: v for v in report.verdicts}
    assert {c: v.status for c, v in verdicts.items()} == {
        "a": "delivered", "b": "delivered", "c": "dead_lettered", "d": "dead_lettered", "e": "superseded",
    }  # fmt: skip
    assert verdicts["c"].reason == "permanent failure: HTTP 422: unknown field"
    assert verdicts["d"].reason.startswith("gave up after 3 attempts")
    assert verdicts["d"].errors == [f"attempt {n}: timeout" for n in (1, 2, 3)]
    assert [(a.correction_id, a.attempt, a.outcome) for a in report.attempts if a.correction_id == "b"] == [
        ("b", 1, "transient"), ("b", 2, "transient"), ("b", 3, "replayed"),
    ]  # fmt: skip
    assert clock.now >= 2.0, "b's third attempt waited for Retry-After"
    assert all(len(call) <= 2 for call in destination.calls), "batches of batch_size at most"


# -- compensation, on two real SQLite systems ------------------------------------------------------


def system(tmp_path, name: str, table_ddl: str) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / name}.sqlite")
    with engine.begin() as conn:
        conn.execute(sa.text(table_ddl))
    return engine


CRM_DDL = """CREATE TABLE contacts (contact_id TEXT PRIMARY KEY, email_address TEXT NOT NULL,
    display_name TEXT NOT NULL, phone TEXT, country_code TEXT NOT NULL, lifecycle_status TEXT NOT NULL,
    marketing_opt_in INTEGER, plan_name TEXT, created_on TEXT NOT NULL, deleted INTEGER NOT NULL)"""
USERS_DDL = """CREATE TABLE users (id INTEGER PRIMARY KEY, external_id TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL, name TEXT NOT NULL, tier TEXT NOT NULL, state TEXT NOT NULL,
    updated_at INTEGER NOT NULL, CHECK (tier IN ('Standard', 'Priority')))"""


def correction(target: str, action: str, values: dict, n: int) -> dict:
    now = datetime.now(UTC)
    return {
        "correction_id": f"c{n}", "idempotency_key": f"k{n}", "base_key": f"b{n}", "kind": "correction",
        "reconcile_run_id": "run-1", "emitted_at": now, "target": target, "entity": "customer",
        "entity_key": "C-000001", "action": action, "attributes": json.dumps(values),
        "golden_version": "2026-11-25T10:00:00.000000Z|e9", "causation_id": "run-1/x",
        "correlation_id": "corr-1", "compensates": None, "event": "{}", "status": "pending",
    }  # fmt: skip


@pytest.mark.parametrize("policy", ["hold", "compensate"])
def test_a_change_set_broken_by_a_dead_letter_is_held_or_put_back(tmp_path, policy):
    crm = system(tmp_path, "crm", CRM_DDL)
    support = system(tmp_path, "support", USERS_DDL)
    with crm.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO contacts VALUES ('C-000001', 'ada@example.com', 'Ada', NULL, 'gb', "
            "'Active', 1, 'Free', '2026-01-01 00:00:00', 0)"
        ))  # fmt: skip
    destinations = {
        "crm": SqlDestination("crm", crm, {"customer": current().mappings["crm", "customer"]}),
        "support": SqlDestination(
            "support", support, {"customer": current().mappings["support", "customer"]}
        ),
    }
    con = duckdb.connect()
    create_schema(con)
    user = {
        "email": "ada@example.com",
        "full_name": "Ada",
        "status": "active",
        "support_tier": "gold",
    }
    insert_corrections(con, [
        correction("crm", "updated", {"plan": "pro"}, 1),
        correction("support", "created", user, 2),  # 'Gold' breaks the desk's CHECK: permanent
    ])  # fmt: skip

    def run() -> None:
        for name, destination in destinations.items():
            report = deliver(outbox.due(con, name), destination, RetryPolicy(max_attempts=2))
            outbox.record(con, report, "delivery-1")

    run()
    emitted = outbox.compensate(con, {"customer": policy, "order": "hold"})
    run()

    plan = crm.connect().execute(sa.text("SELECT plan_name FROM contacts")).scalar()
    statuses = dict(con.execute("SELECT correction_id, status FROM corrections").fetchall())
    if policy == "hold":
        assert emitted == 0 and plan == "Pro"
        assert statuses == {"c1": "delivered", "c2": "dead_lettered"}
        assert outbox.open_dead_letters(con) == {"support": 1}
        [dead] = outbox.held_dead_letters(con)
        assert "CHECK" in dead["reason"] and dead["destination"] == "support"
    else:
        assert emitted == 1 and plan == "Free", "the CRM was put back as it was"
        assert statuses == {"c1": "rolled_back", "c2": "compensated", "undo-c1": "delivered"}
        assert outbox.open_dead_letters(con) == {}
