"""Canaries: secrets in every variable the project reads, PII in the systems' rows, and a hunt
for them everywhere they must never show, through the installed `syncctl` and the real webserver.

The PII keys (from the environment, as in production) are canaries. The CRM's URL carries a
canary password and token, and answers 500 to every read (a fault, as a broken platform would):
its errors quote the URL. Billing holds customers whose emails are PII
canaries (billing does not own emails), so their corrections carry them as the rows they replace.
`syncctl reconcile` and `syncctl check` run on the command line; then, through GraphQL, the
read-only check and the delivery run as the UI launches them (run workers, a fresh process each).
No canary may show in the commands' output, GraphQL's logsForRun or capturedLogs, the debug
download, the webserver's log, or any file of the Dagster instance (run storage, event logs,
compute logs, op outputs); no secret canary in any file of the data folder.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import assert_no_traceback, syncctl
from webserver import Webserver, webserver

pytestmark = pytest.mark.slow

TOKEN = secrets.token_hex(6)
KEYS = {
    "SYNCFABRIC_PII_KEYS": f"k1:{base64.b64encode(secrets.token_bytes(32)).decode()}",
    "SYNCFABRIC_PII_FINGERPRINT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
}
"""The PII keys, from the environment as in production: canaries too."""
SECRET_CANARIES = [
    f"pw-{TOKEN}",
    f"tok-{TOKEN}",
    KEYS["SYNCFABRIC_PII_KEYS"].partition(":")[2],
    KEYS["SYNCFABRIC_PII_FINGERPRINT_KEY"],
]
PII_CANARIES = [f"canary.pii.{TOKEN}.{n}@example.com" for n in range(2)]


class _Broken(http.server.BaseHTTPRequestHandler):
    """A platform that answers every read with a 500."""

    def do_GET(self) -> None:
        body = b'{"error": "internal"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def broken_platform() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def landscape(tmp_path_factory, broken_platform) -> tuple[Path, dict[str, str]]:
    """A small demo, in sync, then billing's copy of two emails replaced by PII canaries; the data
    folder and the environment with the canary secrets."""
    home = tmp_path_factory.mktemp("canaries") / "syncfabric"
    built = syncctl(home, "demo", "--customers", "300", "--orders", "600", "--drift", "0", **KEYS)
    assert built.returncode == 0, built.stderr
    ran = syncctl(home, "run", **KEYS)
    assert ran.returncode == 0, ran.stderr[-3000:]
    with sqlite3.connect(home / "systems" / "billing.sqlite") as billing:
        refs = [
            ref
            for (ref,) in billing.execute(
                "SELECT customer_ref FROM accounts WHERE account_state <> 'CLOSED' ORDER BY 1 LIMIT 2"
            )
        ]
        for ref, email in zip(refs, PII_CANARIES, strict=True):
            billing.execute(
                "UPDATE accounts SET billing_email = ? WHERE customer_ref = ?", [email.upper(), ref]
            )
    env = {
        **KEYS,
        "SYNCFABRIC_CRM_URL": (
            f"http://svc:{SECRET_CANARIES[0]}@127.0.0.1:{broken_platform}/?token={SECRET_CANARIES[1]}"
        ),
    }
    return home, env


def assert_clean(where: str, text: str, canaries: list[str]) -> None:
    lowered = text.lower()
    found = [c for c in canaries if c.lower() in lowered]
    assert not found, f"{found} in {where}"


def files_holding(root: Path, canaries: list[str], skip: tuple[Path, ...] = ()) -> list[str]:
    """The files under `root` (gzip ones opened) holding a canary, in any case."""
    holding = []
    needles = [c.lower().encode() for c in canaries]
    for path in root.rglob("*"):
        if not path.is_file() or any(path.is_relative_to(s) for s in skip):
            continue
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        if any(n in data.lower() for n in needles):
            holding.append(str(path.relative_to(root)))
    return holding


@pytest.fixture(scope="module")
def commands(landscape) -> dict[str, str]:
    """What `syncctl reconcile` and `syncctl check` print with the CRM broken."""
    home, env = landscape
    printed = {}
    for command in ("reconcile", "check"):
        result = syncctl(home, command, **env)
        assert result.returncode != 0  # the CRM could not be read: said, with the exit code
        assert_no_traceback(result)
        assert "SYNCFABRIC_CRM_URL" in result.stdout + result.stderr
        printed[command] = result.stdout + result.stderr
    return printed


@pytest.fixture(scope="module")
def ui_runs(landscape, commands) -> Iterator[tuple[Webserver, list[str]]]:
    """The check and the delivery, launched through GraphQL as the UI does, finished."""
    home, env = landscape
    with webserver(home, daemon=True, **env) as server:
        run_ids = []
        for job in ("reconcile_check", "deliver_corrections"):
            answer = server.launch(job)
            assert answer["__typename"] == "LaunchRunSuccess", answer
            run_ids.append(answer["run"]["runId"])
        statuses = [server.wait_for_run(run_id) for run_id in run_ids]
        assert statuses[0] == "FAILURE"  # the CRM answers 500
        assert statuses[1] == "SUCCESS", server.log.read_text()[-3000:]
        yield server, run_ids


ALL = SECRET_CANARIES + PII_CANARIES


def test_the_commands_say_what_failed_without_a_secret(commands):
    for command, printed in commands.items():
        assert_clean(f"syncctl {command}", printed, ALL)
        assert "***" in printed  # the URL is shown, its password masked


def test_the_delivery_corrected_the_canaries_in_billing(landscape, ui_runs):
    home, _ = landscape
    with sqlite3.connect(home / "systems" / "billing.sqlite") as billing:
        emails = {e.lower() for (e,) in billing.execute("SELECT billing_email FROM accounts")}
    assert not emails & set(PII_CANARIES)  # delivered: the canaries were really carried


def test_graphql_logs_and_captured_logs_hold_no_canary(ui_runs):
    server, run_ids = ui_runs
    for run_id in run_ids:
        events = server.graphql(
            """query($id: ID!) { logsForRun(runId: $id) { __typename
                ... on EventConnection { events { __typename
                    ... on MessageEvent { message }
                    ... on ExecutionStepFailureEvent { error { message stack causes { message stack } } }
                    ... on RunFailureEvent { pipelineFailureError: error { message stack } }
                    ... on MaterializationEvent { metadataEntries { label description
                        ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString } } }
                    ... on ObservationEvent { metadataEntries { label
                        ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString } } }
                    ... on StepExpectationResultEvent { expectationResult { description } }
                    ... on LogsCapturedEvent { fileKey stepKeys }
                } } } }""",
            {"id": run_id},
        )["logsForRun"]
        assert events["__typename"] == "EventConnection"
        assert_clean(f"logsForRun {run_id}", repr(events), ALL)
        file_keys = {
            e["fileKey"] for e in events["events"] if e["__typename"] == "LogsCapturedEvent"
        }
        assert file_keys  # the run's steps captured their output
        for file_key in file_keys:
            captured = server.graphql(
                "query($key: [String!]!) { capturedLogs(logKey: $key) { stdout stderr } }",
                {"key": [run_id, "compute_logs", file_key]},
            )["capturedLogs"]
            assert_clean(f"capturedLogs {file_key}", repr(captured), ALL)


def test_asset_check_metadata_in_the_ui_holds_no_canary(ui_runs):
    server, _ = ui_runs
    found = server.graphql(
        """{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks {
            name executionForLatestMaterialization { evaluation { description metadataEntries {
                label ... on TextMetadataEntry { text } ... on JsonMetadataEntry { jsonString }
                ... on MarkdownMetadataEntry { mdStr } } } } } } } } }"""
    )
    assert_clean("asset check metadata", repr(found), ALL)


def test_the_debug_download_holds_no_canary(ui_runs):
    server, run_ids = ui_runs
    for run_id in run_ids:
        download = server.get(f"/download_debug/{run_id}")
        assert_clean(f"debug download {run_id}", gzip.decompress(download).decode(), ALL)


def test_the_webserver_log_holds_no_canary(ui_runs):
    server, _ = ui_runs
    log = server.log.read_text()
    assert "answered 500" in log or "cannot read the crm system" in log  # the failure is there
    assert_clean("the webserver's log", log, ALL)


def test_no_file_of_the_dagster_instance_holds_a_canary(landscape, ui_runs):
    home, _ = landscape
    assert files_holding(home / "dagster", ALL) == []


def test_no_file_of_the_data_folder_holds_a_secret(landscape, ui_runs):
    home, _ = landscape
    assert files_holding(home, SECRET_CANARIES) == []
