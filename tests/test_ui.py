"""The Dagster webserver (what `make ui` serves) loads the code location and shows the lineage."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DAGSTER_WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))

ASSET_QUERY = """
{ assetNodes { assetKey { path } groupName kinds
    dependencyKeys { path } assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def wait_until_serving(port: int, server: subprocess.Popen, limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"webserver exited: {server.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return
        except OSError:
            time.sleep(0.25)  # polling a server that is still starting, bounded by the deadline
    raise AssertionError(f"webserver not serving on {port} after {limit_s} s")


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui") / "syncfabric"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(Path("dagster.yaml").read_text())
    port = free_port()
    env = {
        **os.environ,
        "SYNCFABRIC_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        # A credentialed URL must reach the resource through EnvVar, never as a visible value.
        "SYNCFABRIC_CRM_URL": "postgresql+psycopg://crm:s3cret@127.0.0.1:1/crm",
    }
    server = subprocess.Popen(
        [DAGSTER_WEBSERVER, "-h", "127.0.0.1", "-p", str(port), "-m", "sync_assets.definitions"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_serving(port, server)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_ui_shows_every_asset_in_its_group_with_lineage(webserver):
    nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(webserver, ASSET_QUERY)["assetNodes"]}

    groups = {key[0]: node["groupName"] for key, node in nodes.items()}
    assert groups == {
        "system_crm": "sources",
        "system_billing": "sources",
        "system_support": "sources",
        "raw_events": "ingest",
        "validated_events": "ingest",
        "dead_letters": "ingest",
        "golden_customer": "state",
        "golden_order": "state",
        "batch_ledger": "state",
        "snapshot_crm_customer": "reconcile",
        "snapshot_billing_customer": "reconcile",
        "snapshot_billing_order": "reconcile",
        "snapshot_support_customer": "reconcile",
        "discrepancies": "reconcile",
        "missed_events": "reconcile",
        "adoption": "reconcile",
        "corrections": "deliver",
    }
    upstream = {key[0]: {d["path"][0] for d in n["dependencyKeys"]} for key, n in nodes.items()}
    assert upstream["raw_events"] == {"system_crm", "system_billing", "system_support"}
    assert upstream["validated_events"] == {"raw_events"}
    assert upstream["golden_customer"] == {"validated_events"}
    assert upstream["batch_ledger"] == {"golden_customer", "golden_order"}
    assert upstream["snapshot_crm_customer"] == {"system_crm"}
    assert {"golden_customer", "snapshot_support_customer"} <= upstream["discrepancies"]
    assert upstream["corrections"] == upstream["missed_events"] == {"discrepancies"}
    assert upstream["adoption"] == {name for name in groups if name.startswith("snapshot_")}
    assert "duckdb" in nodes[("raw_events",)]["kinds"]


def test_the_checks_that_must_stop_work_are_blocking(webserver):
    nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(webserver, ASSET_QUERY)["assetNodes"]}

    def checks(asset):
        return {c["name"]: c["blocking"] for c in nodes[(asset,)]["assetChecksOrError"]["checks"]}

    assert checks("batch_ledger") == {"every_event_accounted_for": True, "dead_letter_rate": False}
    reconciliation = checks("discrepancies")
    assert len(reconciliation) == 7 and all(reconciliation.values())


def test_the_delivery_job_is_there_with_an_op_per_system(webserver):
    found = graphql(
        webserver,
        '{ pipelineOrError(params: {repositoryLocationName: "sync_assets.definitions", '
        'repositoryName: "__repository__", pipelineName: "deliver_corrections"}) '
        "{ ... on Pipeline { solids { name } } } }",
    )
    ops = {s["name"] for s in found["pipelineOrError"]["solids"]}
    assert ops == {
        "plan_deliveries", "deliver_to_crm", "deliver_to_billing", "deliver_to_support",
        "record_deliveries",
    }  # fmt: skip


def test_system_urls_are_not_exposed_through_the_ui(webserver):
    resources = graphql(
        webserver,
        "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { "
        "... on RepositoryLocation { repositories { allTopLevelResourceDetails { name "
        "configFields { name } configuredValues { key value type } } } } } } } } }",
    )
    [location] = resources["workspaceOrError"]["locationEntries"]
    [repository] = location["locationOrLoadError"]["repositories"]
    systems = next(r for r in repository["allTopLevelResourceDetails"] if r["name"] == "systems")
    assert {f["name"] for f in systems["configFields"]} == {"urls"}
    values = {v["key"]: v for v in systems["configuredValues"]}
    assert json.loads(values["urls"]["value"])["crm"] == {"env": "SYNCFABRIC_CRM_URL"}
    assert "s3cret" not in json.dumps(resources)
