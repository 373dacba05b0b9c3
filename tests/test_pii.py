"""PII in the warehouse: sealed where it is stored, masked where it is shown, keys that rotate.

The end-to-end tests run the installed `syncctl` on a small demo with canary values (an e-mail, a
phone and a name no one else holds) and look for them in every table but the golden records and
the snapshots (which keep what reconciliation needs), and in the warehouse file's raw bytes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import duckdb
import pytest
from commands import assert_no_traceback, syncctl
from conftest import at, customer_created, event, land

from sync_assets.errors import SyncfabricError
from sync_assets.security.crypto import Sealer, TamperedToken
from sync_assets.security.fingerprint import fingerprint
from sync_assets.security.keys import (
    FINGERPRINT_ENV,
    KEY_FILE,
    KEYS_ENV,
    UnknownKey,
    keyring,
    parse_keyring,
)
from sync_assets.settings import DataFolder
from sync_assets.warehouse import connect

TAG = secrets.token_hex(4)
CANARY_EMAIL = f"canary.pii.{TAG}@example.com"
CANARY_PHONE = f"+4479{int(TAG, 16) % 10**8:08d}"
CANARY_NAME = f"Canary Pii {TAG}"
DEAD_EMAIL = f"canary.pii.dead.{TAG}@example.com"
DRIFT_EMAIL = f"canary.pii.drift.{TAG}@example.com"
EVENT_CANARIES = (CANARY_EMAIL, CANARY_PHONE, CANARY_NAME, DEAD_EMAIL)
"""Values that only ever travel in events: nowhere in the warehouse file in clear."""


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


K1, K2, FINGERPRINT = new_key(), new_key(), new_key()


def keys_env(*ring: str) -> dict[str, str]:
    return {KEYS_ENV: ",".join(ring), FINGERPRINT_ENV: FINGERPRINT}


ONLY_K1 = keys_env(f"k1:{K1}")
BOTH = keys_env(f"k2:{K2}", f"k1:{K1}")
ONLY_K2 = keys_env(f"k2:{K2}")


def ok(result) -> str:
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A demo with canaries, run once end to end (ingest, validate, apply, reconcile, deliver)
    under key k1."""
    home = tmp_path_factory.mktemp("pii") / "syncfabric"
    ok(syncctl(home, "demo", "--customers", "200", "--orders", "400", **ONLY_K1))
    folder = DataFolder(home)
    created = customer_created(
        "C-990001",
        data={"email": CANARY_EMAIL, "full_name": CANARY_NAME, "phone": CANARY_PHONE},
        time=at(0),
        event_id=f"canary-{TAG}",
    )
    # A later change in the same batch: the golden record never holds the canaries.
    later = {
        "email": f"plain.{TAG}@example.com",
        "full_name": "Plain Name",
        "phone": "+442071838750",
    }
    updated = event("customer.updated", "C-990001", later, time=at(60), event_id=f"plain-{TAG}")
    refused = customer_created(
        "C-990002",
        data={"email": DEAD_EMAIL, "status": "weird"},
        time=at(0),
        event_id=f"dead-{TAG}",
    )
    land(folder, f"canary-{TAG}", [created, updated, refused])
    with sqlite3.connect(folder.system_database("billing")) as billing:
        key = billing.execute(
            "SELECT min(customer_ref) FROM accounts WHERE account_state <> 'CLOSED'"
        ).fetchone()[0]
        billing.execute(
            "UPDATE accounts SET billing_email = ? WHERE customer_ref = ?",
            [DRIFT_EMAIL.upper(), key],
        )
    ran = json.loads(ok(syncctl(home, "run", "--json", **ONLY_K1)))
    assert ran["corrections"]["delivered"] >= 1, ran
    return home


@contextlib.contextmanager
def warehouse(home: Path, env: dict[str, str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """The folder's warehouse, read-only, opened in this process with `env`'s keys."""
    with (
        mock.patch.dict(os.environ, env),
        connect(home / "warehouse.duckdb", read_only=True) as con,
    ):
        yield con


def tables_holding(home: Path, needle: str, env: dict[str, str] = ONLY_K1) -> list[str]:
    """`table.column` of every table but golden records and snapshots holding `needle`
    (case-insensitive), as stored."""
    with warehouse(home, env) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE NOT starts_with(table_name, 'golden_') "
            "AND NOT starts_with(table_name, 'snapshot_') AND NOT internal"
        ).fetchall()
        return [
            f"{table}.{column}"
            for table, column in columns
            if con.execute(
                f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) ILIKE ?',
                [f"%{needle}%"],
            ).fetchone()[0]
        ]


def opened_count(home: Path, sql: str, params: list) -> int:
    with warehouse(home, ONLY_K1) as con:
        return con.execute(sql, params).fetchone()[0]


# -- the warehouse holds no clear PII ---------------------------------------------------------------


@pytest.mark.parametrize(
    "canary", [CANARY_EMAIL, CANARY_PHONE, CANARY_NAME, DEAD_EMAIL, DRIFT_EMAIL]
)
def test_no_table_but_golden_records_and_snapshots_holds_a_canary_in_clear(home, canary):
    assert tables_holding(home, canary) == []


def test_the_warehouse_file_holds_no_event_canary_in_its_bytes(home):
    with warehouse(home, ONLY_K1) as con:
        golden = [
            e for (e,) in con.execute("SELECT email FROM golden_customer LIMIT 20").fetchall()
        ]
    data = (home / "warehouse.duckdb").read_bytes()
    for canary in EVENT_CANARIES:
        assert canary.encode() not in data and canary.lower().encode() not in data, canary
    # The scan can see: golden records' e-mails (kept clear, on purpose) are in the bytes.
    assert golden and all(email.encode() in data for email in golden)


def test_the_canaries_went_through_and_open_with_the_key(home):
    """The positive control: the sealed values are there, and readers with the key see them."""
    raw = opened_count(
        home,
        "SELECT count(*) FROM raw_events WHERE contains(pii_open('raw_events.line', line), ?)",
        [CANARY_EMAIL],
    )
    validated = opened_count(
        home,
        "SELECT count(*) FROM validated_customer_events "
        "WHERE pii_open('customer.phone', phone) = ? AND pii_open('customer.full_name', full_name) = ?",
        [CANARY_PHONE, CANARY_NAME],
    )
    dead = opened_count(
        home,
        "SELECT count(*) FROM dead_letters "
        "WHERE contains(pii_open('dead_letters.payload', payload), ?)",
        [DEAD_EMAIL],
    )
    previous = opened_count(
        home,
        "SELECT count(*) FROM corrections "
        "WHERE previous IS NOT NULL AND contains(pii_open('corrections.previous', previous), ?)",
        [DRIFT_EMAIL.upper()],
    )
    assert (raw, validated, dead, previous) == (1, 1, 1, 1)


def test_every_reader_still_works_on_sealed_values(home, tmp_path):
    copy = tmp_path / "readers"
    shutil.copytree(home, copy)
    summary = json.loads(ok(syncctl(copy, "summary", "--json", **ONLY_K1)))
    assert (
        summary["landed"] == summary["applied"] + summary["duplicates"] + summary["dead_lettered"]
    )
    listed = ok(syncctl(copy, "dead-letters", "--ingest", "--json", **ONLY_K1))
    assert f"dead-{TAG}" in listed and DEAD_EMAIL not in listed
    redriven = syncctl(
        copy, "dead-letters", "--ingest", "--redrive", f"dead-{TAG}", "--json", **ONLY_K1
    )
    ok(redriven)
    landed = [p.read_text() for p in (copy / "landing" / "crm").glob("redrive-*.jsonl")]
    assert len(landed) == 1 and DEAD_EMAIL in landed[0], "the original line is landed again"
    replayed = json.loads(ok(syncctl(copy, "replay", "--json", **ONLY_K1)))
    assert replayed == {"differences": {"customer": 0, "order": 0}}


# -- keyed fingerprints -----------------------------------------------------------------------------


def test_masks_of_a_run_cannot_be_matched_by_hashing_candidates_without_the_key(home):
    with warehouse(home, ONLY_K1) as con:
        masks = {
            value
            for row in con.execute(
                "SELECT expected, actual, map_values(views) FROM discrepancies "
                "WHERE attribute IN ('email', 'full_name', 'phone')"
            ).fetchall()
            for value in [row[0], row[1], *(row[2] or [])]
            if value is not None
        }
    assert masks and all(m.startswith("pii:") and len(m) == 20 for m in masks)
    candidates = [DRIFT_EMAIL, DRIFT_EMAIL.upper(), CANARY_EMAIL, f"plain.{TAG}@example.com"]
    candidates += [f"user{i}@example.com" for i in range(200)]
    guesses = set()
    for candidate in candidates:
        for digest in (
            hashlib.sha256(candidate.encode()).hexdigest(),
            hashlib.sha1(candidate.encode()).hexdigest(),
            hashlib.md5(candidate.encode()).hexdigest(),
            hmac.new(b"", candidate.encode(), hashlib.sha256).hexdigest(),
        ):
            guesses |= {f"pii:{digest[:8]}", f"pii:{digest[:16]}"}
    assert not masks & guesses
    # With the key, the same candidates do give the masks: the drifted e-mail is among them.
    keyed = {fingerprint(base64.b64decode(FINGERPRINT), c.lower()) for c in candidates}
    assert masks & keyed


def test_a_fingerprint_is_stable_and_depends_on_the_key():
    key, other = secrets.token_bytes(32), secrets.token_bytes(32)
    assert fingerprint(key, "a@example.com") == fingerprint(key, "a@example.com")
    assert fingerprint(key, "a@example.com") != fingerprint(key, "b@example.com")
    assert fingerprint(key, "a@example.com") != fingerprint(other, "a@example.com")


# -- sealing ----------------------------------------------------------------------------------------


def ring(*entries: str):
    return parse_keyring(",".join(entries), FINGERPRINT, "the test")


def test_a_tampered_token_is_refused():
    sealer = Sealer(ring(f"k1:{K1}"))
    token = sealer.seal("customer.email", CANARY_EMAIL)
    assert token.startswith("enc:k1:") and CANARY_EMAIL not in token
    assert sealer.open("customer.email", token) == CANARY_EMAIL
    head, payload = token.rsplit(":", 1)
    flipped = payload[:20] + ("A" if payload[20] != "A" else "B") + payload[21:]
    for bad in (f"{head}:{flipped}", token[:-8], token + "AAAA"):
        with pytest.raises(TamperedToken) as refused:
            sealer.open("customer.email", bad)
        assert "customer.email" in refused.value.message and K1 not in refused.value.message
    with pytest.raises(TamperedToken):  # moved to another field: refused, not read
        sealer.open("customer.full_name", token)


def test_a_tampered_token_in_the_warehouse_is_a_clear_error(tmp_path):
    with connect(tmp_path / "warehouse.duckdb") as con:
        token = con.execute("SELECT pii_seal('customer.email', ?)", [CANARY_EMAIL]).fetchone()[0]
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(TamperedToken), connect(tmp_path / "warehouse.duckdb") as con:
        con.execute("SELECT pii_open('customer.email', ?)", [tampered]).fetchall()


def test_equal_values_seal_to_different_tokens():
    sealer = Sealer(ring(f"k1:{K1}"))
    assert sealer.seal("customer.email", "a@b.io") != sealer.seal("customer.email", "a@b.io")


def test_an_unknown_key_id_names_it_and_the_fix_never_a_key():
    old = Sealer(ring(f"k1:{K1}")).seal("customer.email", CANARY_EMAIL)
    with pytest.raises(UnknownKey) as unknown:
        Sealer(ring(f"k2:{K2}")).open("customer.email", old)
    message = unknown.value.message
    assert "'k1'" in message and "add the old key back" in message and KEYS_ENV in message
    assert K1 not in message and K2 not in message


@pytest.mark.parametrize(
    "keys", ["k1", "k1:notbase64!", f"k1:{base64.b64encode(b'short').decode()}", f"k1:{K1},k1:{K2}"]
)
def test_a_bad_keyring_is_refused_without_showing_a_key(keys):
    with pytest.raises(SyncfabricError) as refused:
        parse_keyring(keys, FINGERPRINT, "the test")
    assert K1 not in refused.value.message and K2 not in refused.value.message


def test_without_the_variables_the_keys_are_generated_once_into_the_data_folder(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(KEYS_ENV, raising=False)
    monkeypatch.delenv(FINGERPRINT_ENV, raising=False)
    first = keyring(tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in first.origin and K1 not in repr(first)
    from sync_assets.security import keys as keys_module

    keys_module._CACHE.clear()
    assert keyring(tmp_path).keys == first.keys, "read back, not generated again"
    monkeypatch.setenv(KEYS_ENV, f"k9:{K1}")
    with pytest.raises(SyncfabricError, match=FINGERPRINT_ENV):
        keyring(tmp_path)  # one variable without the other is a mistake, not a fallback


# -- rotation ---------------------------------------------------------------------------------------


def key_status(home: Path, env: dict[str, str]) -> dict:
    return json.loads(ok(syncctl(home, "keys", "--json", **env)))


def test_rotation_keeps_every_event_readable_and_a_removed_key_is_a_clear_error(home, tmp_path):
    copy = tmp_path / "rotate"
    shutil.copytree(home, copy)
    before = key_status(copy, BOTH)
    assert before["current_key_id"] == "k2" and before["keyring"] == ["k2", "k1"]
    assert before["tokens"]["raw_events.line"].keys() == {"k1"}
    assert K1 not in json.dumps(before) and K2 not in json.dumps(before)

    # k1 removed before rotating: its tokens cannot be opened, and the error says how to fix it.
    refused = syncctl(copy, "replay", **ONLY_K2)
    assert_no_traceback(refused)
    assert refused.returncode == 2
    assert "'k1'" in refused.stderr and "add the old key back" in refused.stderr
    assert K1 not in refused.stderr + refused.stdout and K2 not in refused.stderr

    # New events under k2 beside the old ones under k1: both readable.
    folder = DataFolder(copy)
    land(folder, f"k2-{TAG}", [customer_created("C-990003", time=at(120), event_id=f"k2-{TAG}")])
    ok(syncctl(copy, "run", "--json", **BOTH))
    mixed = key_status(copy, BOTH)["tokens"]["raw_events.line"]
    assert mixed["k1"] > 0 and mixed["k2"] > 0
    assert json.loads(ok(syncctl(copy, "replay", "--json", **BOTH)))["differences"] == {
        "customer": 0,
        "order": 0,
    }

    rotated = json.loads(
        ok(syncctl(copy, "keys", "rotate", "--batch-size", "97", "--json", **BOTH))
    )
    assert rotated["resealed"]["raw_events.line"] == mixed["k1"]
    assert all(count > 0 for count in rotated["resealed"].values()), rotated
    after = key_status(copy, BOTH)["tokens"]
    assert all(set(counts) <= {"k2"} for counts in after.values()), after
    again = json.loads(ok(syncctl(copy, "keys", "rotate", "--json", **BOTH)))
    assert set(again["resealed"].values()) == {0}, "idempotent"

    # k1 removed after rotating: everything still reads.
    assert json.loads(ok(syncctl(copy, "replay", "--json", **ONLY_K2)))["differences"] == {
        "customer": 0,
        "order": 0,
    }
    ok(syncctl(copy, "dead-letters", "--ingest", "--json", **ONLY_K2))
    ok(syncctl(copy, "summary", **ONLY_K2))
    assert tables_holding(copy, CANARY_EMAIL, ONLY_K2) == []
