"""The Dagster webserver (what `make ui` serves) loads the code location and shows the lineage."""

import json
from collections.abc import Iterator

import pytest
from webserver import Webserver, webserver

pytestmark = pytest.mark.slow

ASSET_QUERY = """
{ assetNodes { assetKey { path } groupName kinds
    dependencyKeys { path } assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[Webserver]:
    home = tmp_path_factory.mktemp("ui") / "syncfabric"
    # A credentialed URL must reach the resource through EnvVar, never as a visible value.
    crm = "postgresql+psycopg://crm:s3cret@127.0.0.1:1/crm"
    with webserver(home, SYNCFABRIC_CRM_URL=crm) as server:
        yield server


def test_the_ui_shows_every_asset_in_its_group_with_lineage(ui):
    nodes = {tuple(n["assetKey"]["path"]): n for n in ui.graphql(ASSET_QUERY)["assetNodes"]}

    groups = {"/".join(key): node["groupName"] for key, node in nodes.items()}
    registry = {name for name in groups if name.startswith("registry/")}
    assert registry == {
        f"registry/{entity}_{action}"
        for entity in ("customer", "order")
        for action in ("created", "updated", "deleted", "reconciled")
    }
    assert {groups.pop(name) for name in registry} == {"registry"}
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
        "report": "observe",
        "delivered/crm": "deliver",
        "delivered/billing": "deliver",
        "delivered/support": "deliver",
    }
    upstream = {
        "/".join(key): {"/".join(d["path"]) for d in n["dependencyKeys"]}
        for key, n in nodes.items()
    }
    assert upstream["raw_events"] == {"system_crm", "system_billing", "system_support"}
    assert upstream["validated_events"] == {"raw_events"}
    assert upstream["golden_customer"] == {"validated_events"}
    assert upstream["batch_ledger"] == {"golden_customer", "golden_order"}
    assert upstream["snapshot_crm_customer"] == {"system_crm"}
    assert {"golden_customer", "snapshot_support_customer"} <= upstream["discrepancies"]
    assert upstream["corrections"] == upstream["missed_events"] == {"discrepancies"}
    assert upstream["report"] == {"batch_ledger", "discrepancies", "corrections"}
    assert upstream["adoption"] == {name for name in groups if name.startswith("snapshot_")}
    assert upstream["delivered/billing"] == {"corrections"}, "the graph goes on past the outbox"
    assert "duckdb" in nodes[("raw_events",)]["kinds"]


def test_the_checks_that_must_stop_work_are_blocking(ui):
    nodes = {tuple(n["assetKey"]["path"]): n for n in ui.graphql(ASSET_QUERY)["assetNodes"]}

    def checks(asset):
        return {c["name"]: c["blocking"] for c in nodes[(asset,)]["assetChecksOrError"]["checks"]}

    assert checks("batch_ledger") == {"every_event_accounted_for": True, "dead_letter_rate": False}
    reconciliation = checks("discrepancies")
    assert len(reconciliation) == 7 and all(reconciliation.values())


def test_the_delivery_job_is_there_with_an_op_per_system(ui):
    found = ui.graphql(
        '{ pipelineOrError(params: {repositoryLocationName: "sync_assets.definitions", '
        'repositoryName: "__repository__", pipelineName: "deliver_corrections"}) '
        "{ ... on Pipeline { solids { name } } } }",
    )
    ops = {s["name"] for s in found["pipelineOrError"]["solids"]}
    assert ops == {
        "plan_deliveries", "deliver_to_crm", "deliver_to_billing", "deliver_to_support",
        "record_deliveries",
    }  # fmt: skip


def test_system_urls_are_not_exposed_through_the_ui(ui):
    resources = ui.graphql(
        "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { "
        "... on RepositoryLocation { repositories { allTopLevelResourceDetails { name "
        "configFields { name } configuredValues { key value type } } } } } } } } }",
    )
    [location] = resources["workspaceOrError"]["locationEntries"]
    [repository] = location["locationOrLoadError"]["repositories"]
    systems = next(r for r in repository["allTopLevelResourceDetails"] if r["name"] == "systems")
    assert systems["configuredValues"] == []  # locked: no value a run could replace
    assert "s3cret" not in json.dumps(resources)


@pytest.mark.parametrize(
    ("resource", "setting"),
    [
        ("warehouse", {"path": "/tmp/elsewhere.duckdb"}),
        ("landing_zone", {"root": "/tmp/elsewhere"}),
        ("systems", {"urls": {"crm": "postgresql+psycopg://attacker@evil.example/crm"}}),
    ],
)
def test_a_run_that_redirects_a_resource_is_refused(ui, resource, setting):
    """What anyone who reaches the UI could send to redirect reads and deliveries."""
    answer = ui.launch("reconcile_check", {"resources": {resource: {"config": setting}}})
    assert answer["__typename"] == "RunConfigValidationInvalid", answer
    assert any("unexpected config entry" in e["message"].lower() for e in answer["errors"])


@pytest.fixture(scope="module")
def read_only_ui(tmp_path_factory) -> Iterator[Webserver]:
    """What `make ui-read-only` serves to analysts."""
    with webserver(tmp_path_factory.mktemp("ro") / "syncfabric", "--read-only") as server:
        yield server


def test_the_read_only_ui_shows_lineage_and_refuses_to_launch(read_only_ui):
    nodes = read_only_ui.graphql(ASSET_QUERY)["assetNodes"]
    assert {"raw_events", "discrepancies"} <= {n["assetKey"]["path"][0] for n in nodes}
    answer = read_only_ui.launch("reconcile_check")
    assert answer["__typename"] == "UnauthorizedError", answer
    runs = read_only_ui.graphql("{ runsOrError { ... on Runs { results { runId } } } }")
    assert runs["runsOrError"]["results"] == []


def test_the_ui_serves_each_columns_lineage(ui):
    """The stock UI does not draw it yet, but its GraphQL serves it to whatever does."""
    query = """
    { assetNodeOrError(assetKey: {path: ["golden_customer"]}) { ... on AssetNode {
        metadataEntries { label ... on TableColumnLineageMetadataEntry {
          lineage { columnName columnDeps { assetKey { path } columnName } } } } } } }
    """
    entries = ui.graphql(query)["assetNodeOrError"]["metadataEntries"]
    [lineage] = [e["lineage"] for e in entries if e["label"] == "dagster/column_lineage"]
    deps = {c["columnName"]: c["columnDeps"] for c in lineage}
    assert deps["email"] == [
        {"assetKey": {"path": ["validated_events"]}, "columnName": "customer.email"}
    ]
