"""Secrets never leave the process: the one redaction layer (sync_assets/security/redact.py), on
texts, on exception chains, and through a Dagster step into the run's stored events."""

from __future__ import annotations

import dagster as dg
import pytest

from sync_assets.connectors.problems import PlatformApiError
from sync_assets.errors import SyncfabricError
from sync_assets.operate.failures import as_step_failure
from sync_assets.security.redact import RedactedError, redact_error, redact_text

CANARY = "canary-s3cret-7f1e"


@pytest.fixture
def secrets(monkeypatch):
    monkeypatch.setenv(
        "SYNCFABRIC_CRM_URL", f"https://svc:{CANARY}@127.0.0.1:9/app?token=tok-{CANARY}"
    )
    monkeypatch.setenv("CRM_SIGNING_KEY", f"key-{CANARY}")
    monkeypatch.setenv("SYNCFABRIC_PII_KEYS", f"k2:new-{CANARY},k1:old-{CANARY}")
    monkeypatch.setenv("SYNCFABRIC_PROJECT", "/not/a/secret/path")


def test_urls_are_shown_without_their_secrets():
    assert redact_text("postgresql+psycopg://sync:s3cret@db:5433/crm") == (
        "postgresql+psycopg://sync:***@db:5433/crm"
    )
    shown = redact_text("https://api.example.com/app?token=s3cret&page=1")
    assert "s3cret" not in shown and "page=1" in shown
    assert "s3cret" not in redact_text("mysql+pymysql://u:s3cret@[not a url")
    # A password the driver echoes alone, from the URL it was given on the command line.
    assert redact_text("auth failed for s3cretpw", url="postgresql://u:s3cretpw@h/db") == (
        "auth failed for ***"
    )


def test_every_secret_of_the_environment_is_masked_wherever_it_shows(secrets):
    text = f"failed with {CANARY}, signed by key-{CANARY}, token tok-{CANARY}, old-{CANARY}"
    assert CANARY not in redact_text(text)
    assert "/not/a/secret/path" in redact_text("project at /not/a/secret/path")


def test_an_error_chain_is_redacted_in_place_keeping_its_types(secrets):
    try:
        try:
            raise PlatformApiError(f"GET https://svc:{CANARY}@127.0.0.1:9/x answered 500")
        except PlatformApiError as error:
            raise SyncfabricError(f"cannot read the crm system: {CANARY}") from error
    except SyncfabricError as raised:
        error = raised
        clean = redact_error(error)
    assert clean is error and isinstance(clean.__cause__, PlatformApiError)
    assert CANARY not in clean.message and CANARY not in str(clean.__cause__)


def test_an_error_whose_text_is_not_its_arguments_is_replaced(secrets):
    class Opaque(Exception):
        def __str__(self) -> str:
            return f"connect to {CANARY} refused"

    clean = redact_error(Opaque())
    assert isinstance(clean, RedactedError) and str(clean) == "Opaque: connect to *** refused"


def test_a_steps_error_reaches_dagsters_event_log_redacted(secrets):
    """What the UI, GraphQL's logsForRun and the debug download show of a failed step."""

    @dg.asset
    def reads_a_system() -> None:
        with as_step_failure():
            try:
                raise PlatformApiError(f"GET https://svc:{CANARY}@127.0.0.1:9/x answered 500")
            except PlatformApiError as error:
                raise ValueError(f"reading with key-{CANARY} failed") from error

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([reads_a_system], instance=instance, raise_on_error=False)
        assert not result.success
        stored = repr(instance.all_logs(result.run_id))
    assert "answered 500" in stored and "reading with *** failed" in stored
    assert CANARY not in stored
