"""Channel authority and signatures: an event that came through a system's channel speaks for that
system alone (rule `origin`), and a signing system's events carry a valid HMAC (rule `signature`).
Every line is still accounted for: applied, a duplicate, or a dead letter naming the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DEMO_PROJECT, customer_created, event, land, rows, run_core

from sync_assets.catalog.events import canonical_json, event_signature, sign_event
from sync_assets.errors import SyncfabricError
from sync_assets.ingest.landing import LandingZone
from sync_assets.project import current
from sync_assets.project.load import ProjectError, load_project

KEY_ENV = "SYNCFABRIC_TEST_CRM_SIGNING_KEY"


def batch_counts(folder, batch_id: str) -> tuple:
    return rows(
        folder,
        "SELECT landed, validated, duplicates, dead_lettered, applied FROM batches "
        "WHERE batch_id = ?",
        [batch_id],
    )[0]


def test_crm_event_in_billing_channel_is_a_dead_letter_not_applied(data_folder):
    crm = customer_created("C-000001", event_id="crm-speaks")
    # the attacker's variant: a crm-looking event whose origin alone is changed
    forged_origin = event("customer.updated", "C-000001", {"email": "x@evil.example"})
    forged_origin |= {"id": "forged-origin", "source": "/systems/billing"}
    plan = event("customer.updated", "C-000001", {"plan": "pro"}, origin="billing")
    batch = land(data_folder, "0001", [crm, forged_origin, plan], system="billing")
    run_core(data_folder, [batch.batch_id])

    letters = rows(
        data_folder,
        "SELECT line_no, event_id, rule, reason FROM dead_letters WHERE batch_id = ? ORDER BY 1",
        [batch.batch_id],
    )
    assert [(line, event_id, rule) for line, event_id, rule, _ in letters] == [
        (1, "crm-speaks", "origin"),
        (2, "forged-origin", "origin"),
    ]
    first, second = letters[0][3], letters[1][3]
    assert "'source'" in first and "landing/billing/" in first and "fix:" in first
    assert "'origin'" in second and "'crm'" in second and "set origin to billing" in second
    # only billing's plan reached the golden record: neither crm's creation nor its email
    assert rows(data_folder, "SELECT email, plan FROM golden_customer") == [(None, "pro")]
    # landed = validated + duplicates + dead-lettered; only billing's own event is validated
    assert batch_counts(data_folder, batch.batch_id) == (3, 1, 0, 2, 1)


def test_the_same_event_through_its_own_channel_is_applied(data_folder):
    batch = land(data_folder, "0001", [customer_created("C-000001", event_id="crm-speaks")])
    assert batch.system == "crm"
    run_core(data_folder, [batch.batch_id])
    assert batch_counts(data_folder, batch.batch_id) == (1, 1, 0, 0, 1)
    assert rows(data_folder, "SELECT customer_id FROM golden_customer") == [("C-000001",)]


def signing_project(tmp_path: Path, crm_extra: str) -> Path:
    """A copy of the demo project whose crm file ends with `crm_extra`."""
    root = tmp_path / "project"
    for path in DEMO_PROJECT.rglob("*.yaml"):
        target = root / path.relative_to(DEMO_PROJECT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (root / "seed").mkdir()
    (root / "seed" / "__init__.py").write_text("")
    crm = root / "systems" / "crm.yaml"
    crm.write_text(crm.read_text() + crm_extra)
    return root


@pytest.fixture
def signing_crm(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCFABRIC_PROJECT", str(signing_project(tmp_path, SIGNING)))
    monkeypatch.setenv(KEY_ENV, "s3cret-crm-key")
    assert current().systems["crm"].signing_key_env == KEY_ENV
    return "s3cret-crm-key"


SIGNING = f"signing: {{key_env: {KEY_ENV}}}\n"


def test_signed_system_refuses_unsigned_and_wrongly_signed_events(data_folder, signing_crm):
    good = sign_event(customer_created("C-000001", event_id="signed"), signing_crm)
    unsigned = customer_created("C-000002", event_id="unsigned")
    wrong_key = sign_event(customer_created("C-000003", event_id="other-key"), "not-the-key")
    tampered = sign_event(customer_created("C-000004", event_id="tampered"), signing_crm)
    tampered["data"]["email"] = "changed@example.com"
    batch = land(data_folder, "0001", [good, unsigned, wrong_key, tampered])
    run_core(data_folder, [batch.batch_id])

    letters = rows(
        data_folder,
        "SELECT event_id, rule, reason FROM dead_letters WHERE batch_id = ? ORDER BY line_no",
        [batch.batch_id],
    )
    assert [(e, rule) for e, rule, _ in letters] == [
        ("unsigned", "signature"),
        ("other-key", "signature"),
        ("tampered", "signature"),
    ]
    assert "missing" in letters[0][2] and "fix: sign each event" in letters[0][2]
    assert "does not match" in letters[1][2] and KEY_ENV in letters[1][2]
    assert all(signing_crm not in reason for _, _, reason in letters), "the key is never shown"
    assert rows(data_folder, "SELECT customer_id FROM golden_customer") == [("C-000001",)]
    assert batch_counts(data_folder, batch.batch_id) == (4, 1, 0, 3, 1)


def test_signing_key_variable_missing_is_a_clear_error(data_folder, signing_crm, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    batch = land(data_folder, "0001", [customer_created("C-000001")])
    with pytest.raises(SyncfabricError, match=f"{KEY_ENV} is not set.*fix: set {KEY_ENV}"):
        run_core(data_folder, [batch.batch_id])


def test_unsigned_systems_are_not_asked_for_signatures(data_folder, signing_crm):
    plan = event("customer.updated", "C-000001", {"plan": "pro"}, origin="billing")
    batch = land(data_folder, "0001", [plan])
    run_core(data_folder, [batch.batch_id])
    assert batch_counts(data_folder, batch.batch_id) == (1, 1, 0, 0, 1)


def test_signature_is_hmac_sha256_over_rfc8785_without_the_signature():
    """The documented recipe, spelled out: a producer in another language can follow it."""
    import hashlib
    import hmac

    built = {"b": 1.0, "a": {"y": [1e21, 1e-7, 0.5], "x": "é\n"}, "signature": "old"}
    assert canonical_json({k: v for k, v in built.items() if k != "signature"}) == (
        '{"a":{"x":"é\\n","y":[1e+21,1e-7,0.5]},"b":1}'
    )
    expected = hmac.new(
        b"k", b'{"a":{"x":"\xc3\xa9\\n","y":[1e+21,1e-7,0.5]},"b":1}', hashlib.sha256
    ).hexdigest()
    assert event_signature(built, "k") == expected
    # docs/security.md shows this digest, for a producer to check its own implementation
    assert expected == "5e30ea5cfe1be56f38c742666cf393b585a18600bc424f2201b3543739b3430a"
    assert sign_event(built, "k")["signature"] == expected
    assert json.loads(json.dumps(sign_event(built, "k")))["signature"] == expected


def test_a_landing_folder_bound_to_two_systems_is_a_project_problem(tmp_path):
    root = signing_project(tmp_path, "channels: {landing: billing}\n")
    with pytest.raises(ProjectError) as raised:
        load_project(root)
    [problem] = raised.value.problems
    lines = (root / "systems" / "crm.yaml").read_text().splitlines()
    assert (problem.file, problem.field) == ("systems/crm.yaml", "channels.landing")
    assert lines[problem.line - 1] == "channels: {landing: billing}"
    assert "landing/billing/ is also the channel of billing" in problem.message
    assert "fix: name a folder no other system uses" in str(problem)


def test_a_signing_key_variable_must_end_in_key(tmp_path):
    """Redaction masks the values of variables named *_KEY: a key elsewhere could show."""
    root = signing_project(tmp_path, "signing: {key_env: CRM_SIGNING}\n")
    with pytest.raises(ProjectError) as raised:
        load_project(root)
    [problem] = raised.value.problems
    assert (problem.file, problem.field) == ("systems/crm.yaml", "signing.key_env")
    assert "ending in _KEY" in problem.fix


def test_a_system_may_name_its_own_landing_folder(tmp_path, monkeypatch, data_folder):
    monkeypatch.setenv(
        "SYNCFABRIC_PROJECT", str(signing_project(tmp_path, "channels: {landing: sales}\n"))
    )
    assert current().landing_systems == {"sales": "crm", "billing": "billing", "support": "support"}
    batch = land(data_folder, "0001", [customer_created("C-000001")])
    assert batch.path.parent == data_folder.landing / "sales"
    assert [b.system for b in LandingZone(data_folder.landing).pending()] == ["crm"]
    intruder = event("customer.updated", "C-000001", {"plan": "pro"}, origin="billing")
    wrong = land(data_folder, "0002", [intruder], system="crm")
    run_core(data_folder, [batch.batch_id, wrong.batch_id])
    [(rule, reason)] = rows(data_folder, "SELECT rule, reason FROM dead_letters")
    assert rule == "origin" and "came through landing/sales/, the channel of crm" in reason
    (data_folder.landing / "crm").mkdir()
    refused = LandingZone(data_folder.landing).scan().refused
    assert [r.path.name for r in refused] == ["crm"], "an unbound folder is no channel"


def test_a_redriven_event_goes_back_through_its_original_channel(data_folder, signing_crm):
    """A redrive re-lands the line as it came, in the channel it came through: an event refused
    for speaking for another system is refused again, and a signed line keeps its signature (the
    redrive never signs; a forged line is not laundered)."""
    from sync_assets.ingest.redrive import choose, redrive
    from sync_assets.warehouse import connect, transaction

    intruder = customer_created("C-000001", event_id="intruder")
    signed_but_late = sign_event(  # signed, but its schema version is unknown: a contract letter
        customer_created("C-000002", event_id="signed-v9", schema_version=9), signing_crm
    )
    in_billing = land(data_folder, "0001", [intruder], system="billing")
    in_crm = land(data_folder, "0001", [signed_but_late])
    run_core(data_folder, [in_billing.batch_id, in_crm.batch_id])
    with connect(data_folder.warehouse) as con, transaction(con):
        redriven = redrive(
            con, LandingZone(data_folder.landing), choose(con, ["intruder", "signed-v9"], None)
        )
    assert sorted(redriven.batches) == ["billing", "crm"]
    run_core(data_folder, list(redriven.batches.values()))

    again = rows(
        data_folder,
        "SELECT b.system, d.event_id, d.rule FROM dead_letters d JOIN batches b USING (batch_id) "
        "WHERE d.resolution IS NULL ORDER BY ALL",
    )
    # the intruder stays refused by its channel; the signed line passes the signature check
    # again (its contract is still unknown, so it is held for that, not for its signature)
    assert again == [("billing", "intruder", "origin"), ("crm", "signed-v9", "contract")]
    assert rows(data_folder, "SELECT count(*) FROM golden_customer") == [(0,)]


def test_reconciler_events_in_a_signing_channel_are_signed_and_never_a_way_around(
    data_folder, signing_crm
):
    """Missed events and adoptions come from the reconciler in the owner's channel: signed with
    the owner's key by `sign_lines` they are applied; unsigned, the reconciler's source is no way
    around the signature."""
    from sync_assets.catalog.events import RECONCILER_SOURCE
    from sync_assets.ingest.signatures import sign_lines

    missed = customer_created("C-000001", event_id="reconciler-1", source=RECONCILER_SOURCE)
    posing = customer_created("C-000002", event_id="reconciler-2", source=RECONCILER_SOURCE)
    batch = land(data_folder, "0001", [*sign_lines(current().systems["crm"], [missed]), posing])
    run_core(data_folder, [batch.batch_id])
    assert rows(data_folder, "SELECT event_id, rule FROM dead_letters") == [
        ("reconciler-2", "signature")
    ]
    assert rows(data_folder, "SELECT customer_id FROM golden_customer") == [("C-000001",)]


def test_lines_that_cannot_be_canonical_are_refused_not_let_through(data_folder, signing_crm):
    """NaN in an extension, a trailing comma, a non-ASCII signature: each a dead letter with rule
    signature, never a crash of the batch and never an event let through unsigned."""
    nan = sign_event(customer_created("C-000001", event_id="nan"), signing_crm)
    nan_line = json.dumps(nan | {"extra": float("nan")}, separators=(",", ":"))
    comma = json.dumps(sign_event(customer_created("C-000002", event_id="comma"), signing_crm))
    comma_line = comma[:-1] + ",}"
    odd = customer_created("C-000003", event_id="odd") | {"signature": "é" * 64}
    batch = land(data_folder, "0001", [nan_line, comma_line, odd], system="crm")
    run_core(data_folder, [batch.batch_id])
    letters = rows(data_folder, "SELECT line_no, rule, reason FROM dead_letters ORDER BY 1")
    assert [(line, rule) for line, rule, _ in letters] == [
        (1, "signature"),
        (2, "signature"),
        (3, "signature"),
    ]
    assert "NaN or Infinity" in letters[0][2] and "strict JSON" in letters[1][2]
    assert batch_counts(data_folder, batch.batch_id) == (3, 0, 0, 3, 0)


def test_demo_seed_signs_a_signing_systems_events_as_its_producer_would(
    tmp_path, monkeypatch, signing_crm
):
    """The same demo with the CRM signing: the same dead letters by rule as without, none for a
    signature or a channel (its deliberately bad lines stay bad for their own reason)."""
    from examples.demo.seed.landscape import build_demo_landscape
    from sync_assets.settings import DataFolder

    def dead_letters_by_rule(folder: DataFolder) -> list[tuple]:
        build_demo_landscape(folder, customers=200, orders=400)
        run_core(folder, [b.batch_id for b in LandingZone(folder.landing).pending()])
        return rows(folder, "SELECT rule, count(*) FROM dead_letters GROUP BY 1 ORDER BY 1")

    signed = dead_letters_by_rule(DataFolder(tmp_path / "signed"))
    crm_batch = next((tmp_path / "signed" / "landing" / "crm").glob("*.jsonl"))
    assert b'"signature":"' in crm_batch.read_bytes()
    monkeypatch.setenv("SYNCFABRIC_PROJECT", str(DEMO_PROJECT))
    assert dead_letters_by_rule(DataFolder(tmp_path / "plain")) == signed
    assert not {"origin", "signature"} & {rule for rule, _ in signed}


@pytest.mark.parametrize(
    ("number", "written"),
    [  # RFC 8785's own examples (appendix B), and the edges of Python's fast path
        (1e30, "1e+30"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (1e-27, "1e-27"),
        (333333333.33333329, "333333333.3333333"),
        (-0.0, "0"),
        (9007199254740992, "9007199254740992"),
        (2**60, "1152921504606847000"),
        (295147905179352830000.0, "295147905179352830000"),
        (1e21, "1e+21"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (12.0, "12"),
        (5e-324, "5e-324"),
    ],
)
def test_canonical_numbers_are_written_as_ecmascript_writes_them(number, written):
    from sync_assets.catalog.events import _canonical

    assert canonical_json({"n": number}) == _canonical({"n": number}) == f'{{"n":{written}}}'


def test_canonical_keys_sort_by_utf16_code_units():
    # U+1F600 is a surrogate pair (D83D DE00), before U+FB01 in UTF-16, after it in code points
    assert canonical_json({"\ufb01": 1, "\U0001f600": 2, "a": 3}) == '{"a":3,"😀":2,"ﬁ":1}'


def test_a_run_refuses_to_start_without_a_signing_key(signing_crm, monkeypatch):
    """`syncctl run` checks first (sync_assets/runner.py): no batch is left half done for it."""
    from sync_assets.ingest.signatures import require_signing_keys

    require_signing_keys(current())  # set: nothing to say
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(SyncfabricError) as raised:
        require_signing_keys(current())
    assert KEY_ENV in raised.value.message and raised.value.exit_code == 2
