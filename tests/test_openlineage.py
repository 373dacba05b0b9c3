"""The reconciliation's column lineage sent to OpenLineage (catalog/lineage_events.py), received
by a real HTTP server on loopback; and nothing at all, not even an import, when OPENLINEAGE_URL
is unset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from sync_assets.catalog.lineage_events import emit_reconcile_lineage
from sync_assets.project import current
from sync_assets.reconcile.assets import build_discrepancies, snapshot_asset
from sync_assets.resources import default_resources


class Receiver(ThreadingHTTPServer):
    status = 200
    received: list[tuple[str, dict]]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, json.loads(body)))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch) -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENLINEAGE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("OPENLINEAGE_ENDPOINT", raising=False)
    monkeypatch.delenv("OPENLINEAGE_CONFIG", raising=False)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def outputs(event: dict) -> dict[str, dict]:
    return {o["name"]: o for o in event["outputs"]}


def test_the_reconcile_runs_column_lineage_reaches_the_endpoint(receiver):
    run_id = str(uuid.uuid4())
    assert emit_reconcile_lineage(current(), run_id, "reconcile", with_corrections=True)

    [(path, event)] = receiver.received
    assert path == "/api/v1/lineage"
    assert (event["eventType"], event["run"]["runId"]) == ("COMPLETE", run_id)
    assert event["job"] == {"namespace": "syncfabric://demo", "name": "reconcile", "facets": {}}
    assert {(i["namespace"], i["name"]) for i in event["inputs"]} >= {
        ("syncfabric://demo/systems/billing", "accounts"),
        ("syncfabric://demo/warehouse", "golden_customer"),
    }
    found = outputs(event)
    email = found["snapshot_billing_customer"]["facets"]["columnLineage"]["fields"]["email"]
    assert email["inputFields"] == [
        {
            "namespace": "syncfabric://demo/systems/billing",
            "name": "accounts",
            "field": "billing_email",
            "transformations": [],
        }
    ]
    assert email["transformationDescription"] == "normalized (lower)"
    corrected = found["corrections"]["facets"]["columnLineage"]["fields"]["customer.email"]
    assert [(f["name"], f["field"]) for f in corrected["inputFields"]] == [
        ("golden_customer", "email")
    ]
    assert "@" not in json.dumps(event), "names only, never a value"


def test_the_check_job_writes_no_corrections(receiver):
    emit_reconcile_lineage(current(), str(uuid.uuid4()), "reconcile_check", with_corrections=False)
    [(_, event)] = receiver.received
    assert "corrections" not in outputs(event)
    assert all(name.startswith("snapshot_") for name in outputs(event))


def test_the_discrepancies_send_their_runs_lineage_and_a_refusal_fails_nothing(receiver, landscape):
    project = current()
    assets = [
        *(snapshot_asset(m, project.entity(m.entity)) for m in project.mappings.values()),
        build_discrepancies(project),
    ]
    with dg.DagsterInstance.ephemeral() as instance:
        sent = dg.materialize(assets, instance=instance, resources=default_resources(landscape))
        receiver.status = 400  # refused: a warning, the reconciliation goes on
        refused = dg.materialize(assets, instance=instance, resources=default_resources(landscape))
        logged = [e.user_message for e in instance.all_logs(refused.run_id)]
    assert sent.success and refused.success
    [(_, first), (_, second)] = receiver.received
    assert (first["run"]["runId"], second["run"]["runId"]) == (sent.run_id, refused.run_id)
    assert "corrections" not in outputs(first), "not the reconcile job: no corrections"
    assert "OpenLineage: the run's lineage was not sent (HTTPError)" in logged
    assert not [m for m in logged if "127.0.0.1" in m], "never the endpoint's address"


def test_without_the_variable_nothing_is_sent_and_nothing_imported(tmp_path):
    code = (
        "import sys, uuid\n"
        "from sync_assets.definitions import defs\n"
        "from sync_assets.catalog.lineage_events import emit_reconcile_lineage\n"
        "from sync_assets.project import current\n"
        "assert emit_reconcile_lineage(current(), str(uuid.uuid4()), 'reconcile', "
        "with_corrections=True) is False\n"
        "assert not [m for m in sys.modules if m.startswith('openlineage')]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLINEAGE")}
    env["SYNCFABRIC_HOME"] = str(tmp_path / "syncfabric")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False,
        cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
