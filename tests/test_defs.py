"""The Dagster definitions of each example project under examples/: every asset, check, job,
schedule and system resource is derived from the project, and nothing of another project shows.

The definitions are built for a project passed in while the tests' current project stays the
demo (tests/conftest.py), so a definition that read the current project instead of the one it is
given would show the demo's names in another example's definitions.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from sync_assets.catalog.expectations import snapshot_rules
from sync_assets.connectors.resource import system_url
from sync_assets.connectors.sources import sqlite_url
from sync_assets.definitions import build_definitions
from sync_assets.jobs import RECONCILE_CRON_ENV
from sync_assets.project import Project, load_project
from sync_assets.reconcile.comparisons import check_name
from sync_assets.settings import DataFolder

EXAMPLES = sorted(
    p.parent for p in (Path(__file__).parents[1] / "examples").glob("*/syncfabric.yaml")
)
STAGES = {
    "raw_events", "validated_events", "dead_letters", "batch_ledger", "discrepancies",
    "missed_events", "adoption", "corrections", "report",
}  # fmt: skip
"""The assets every project has, whatever its landscape."""


def test_there_are_at_least_two_examples():
    assert {p.name for p in EXAMPLES} >= {"demo", "fitness"}


@pytest.fixture(params=EXAMPLES, ids=lambda path: path.name)
def project(request) -> Project:
    return load_project(request.param)


@pytest.fixture
def folder(tmp_path) -> DataFolder:
    return DataFolder(tmp_path / "syncfabric")


@pytest.fixture
def repository(project, folder, monkeypatch) -> dg.RepositoryDefinition:
    for system in project.systems.values():
        monkeypatch.delenv(system.url_env, raising=False)
    monkeypatch.delenv(RECONCILE_CRON_ENV, raising=False)
    return build_definitions(folder, project=project).get_repository_def()


def _destinations(project: Project) -> set[str]:
    """The systems that keep a column of an attribute they do not own, which corrections write."""
    return {
        system
        for (system, entity), mapping in project.mappings.items()
        for field in mapping.fields
        if project.entity(entity).owner_of(field.attribute) != system
        and isinstance(field.source, str)
    }


def test_the_assets_are_the_projects_systems_entities_and_mappings(project, repository):
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert _destinations(project), "each example corrects at least one system"
    assert keys == STAGES | {
        *(f"system_{system}" for system in project.systems),
        *(f"delivered/{system}" for system in _destinations(project)),
        *(f"golden_{entity}" for entity in project.entities),
        *(f"snapshot_{system}_{entity}" for system, entity in project.mappings),
        *(f"registry/{event_type.replace('.', '_')}" for event_type in project.event_types),
    }


def test_the_registry_shows_each_event_types_versions_and_sign_offs(project, repository):
    for event_type in project.event_types:
        key = dg.AssetKey(["registry", event_type.replace(".", "_")])
        metadata = repository.asset_graph.get(key).metadata
        assert metadata["compatibility"] == "BACKWARD_TRANSITIVE"
        assert metadata["status"] == "approved"
        columns = {c.name for c in metadata["dagster/column_schema"].columns}
        if not event_type.endswith(".deleted"):
            assert columns == set(project.entity(event_type.split(".")[0]).attribute_names)
        assert "| data-platform |" in metadata["change_log"].value


def test_the_checks_judge_each_mapping_each_pair_and_each_entity(project, repository):
    checks = {
        (c.asset_key.to_user_string(), c.name) for c in repository.asset_graph.asset_check_keys
    }
    pairs = {
        (left.entity, left.system, right.system)
        for entity in project.entities
        for left, right in project.comparable_pairs(entity)
    }
    assert pairs, "each example compares at least one pair of systems"
    assert checks == {
        ("batch_ledger", "every_event_accounted_for"),
        ("batch_ledger", "dead_letter_rate"),
        ("corrections", "no_dead_letters_held"),
        *(("discrepancies", check_name(entity, system)) for system, entity in project.mappings),
        *(("discrepancies", check_name(*pair)) for pair in pairs),
        *((f"golden_{entity}", "live_records_complete") for entity in project.entities),
        *(
            (f"golden_{name}", f"rule_{rule.name}")
            for name, entity in project.entities.items()
            for rule in entity.rules
        ),
        *(
            (f"snapshot_{system}_{entity}", f"rule_{rule.name}")
            for (system, entity), mapping in project.mappings.items()
            for rule in snapshot_rules(project.entity(entity), mapping)
        ),
    }


def test_the_jobs_deliver_to_each_system_in_its_own_pool(project, repository):
    jobs = {job.name: job for job in repository.get_all_jobs() if not job.name.startswith("__")}
    assert set(jobs) == {
        "ingest_batch", "reconcile", "reconcile_check", "deliver_corrections",
        "redrive_ingest_dead_letters",
    }  # fmt: skip
    deliver = {node.name: node for node in jobs["deliver_corrections"].graph.node_defs}
    assert set(deliver) == {"plan_deliveries", "record_deliveries"} | {
        f"deliver_to_{system}" for system in project.systems
    }
    for system in project.systems:
        assert deliver[f"deliver_to_{system}"].pool == f"deliver_{system}"
    snapshots = {node.name for node in jobs["reconcile_check"].graph.node_defs}
    assert {f"snapshot_{s}_{e}" for s, e in project.mappings} <= snapshots


def test_the_schedule_runs_at_the_projects_cron(project, repository):
    [schedule] = repository.schedule_defs
    assert schedule.name == "scheduled_reconciliation"
    assert schedule.cron_schedule == project.settings.schedule


def test_one_system_url_per_system_from_its_variable_else_its_sqlite_file(
    project, folder, monkeypatch
):
    first, *others = project.systems.values()
    monkeypatch.setenv(first.url_env, "postgresql+psycopg://somewhere/else")
    for system in others:
        monkeypatch.delenv(system.url_env, raising=False)
    urls = {name: system_url(folder, name, project) for name in project.system_names}
    assert isinstance(urls[first.name], dg.EnvVar) and urls[first.name] == first.url_env
    for system in others:
        assert urls[system.name] == sqlite_url(folder.system_database(system.name))


@pytest.mark.parametrize(
    ("resource", "setting"),
    [
        ("warehouse", {"path": "/tmp/elsewhere.duckdb"}),
        ("landing_zone", {"root": "/tmp/elsewhere"}),
        ("systems", {"urls": {"crm": "postgresql+psycopg://attacker@evil/crm"}}),
        ("systems", {"write_urls": {"crm": "postgresql+psycopg://attacker@evil/crm"}}),
        ("delivery", {"compensation": {"customer": "compensate"}}),
    ],
)
def test_a_runs_config_cannot_replace_a_resources_settings(project, folder, resource, setting):
    """What the launchpad or GraphQL's launchRun would send to redirect reads and deliveries."""
    repository = build_definitions(folder, project=project).get_repository_def()
    for job in repository.get_all_jobs():
        if resource not in job.resource_defs:
            continue
        with pytest.raises(dg.DagsterInvalidConfigError, match="unexpected config entry"):
            dg.validate_run_config(job, {"resources": {resource: {"config": setting}}})


def test_the_fitness_example_is_the_club(folder):
    project = load_project(Path(__file__).parents[1] / "examples" / "fitness")
    repository = build_definitions(folder, project=project).get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert {"system_frontdesk", "system_dues", "golden_member", "golden_subscription"} <= keys
    assert "snapshot_frontdesk_subscription" in keys
    checks = {c.name for c in repository.asset_graph.asset_check_keys}
    assert {"dues_vs_frontdesk_member_in_sync", "dues_vs_frontdesk_subscription_in_sync"} <= checks
    assert repository.schedule_defs[0].cron_schedule == "30 5 * * *"


def _names(repository: dg.RepositoryDefinition) -> str:
    """Every name the definitions give: assets, checks, jobs, ops, schedules, sensors, and the
    keys of every job's default config (the systems' URLs by system included)."""
    graph = repository.asset_graph
    names = [key.to_user_string() for key in graph.get_all_asset_keys()]
    names += [check.name for check in graph.asset_check_keys]
    for job in repository.get_all_jobs():
        names += [job.name, *(node.name for node in job.graph.node_defs)]
        names.append(str(job.run_config_schema.config_type.fields))  # type: ignore[attr-defined]
    names += [d.name for d in [*repository.schedule_defs, *repository.sensor_defs]]
    return "\n".join(names)


def _words(repository: dg.RepositoryDefinition) -> str:
    """Every description and metadata the definitions show."""
    graph = repository.asset_graph
    words = []
    for key in graph.get_all_asset_keys():
        words += [graph.get(key).description or "", str(graph.get(key).metadata)]
    words += [graph.get(check).description or "" for check in graph.asset_check_keys]
    for job in repository.get_all_jobs():
        words += [job.description or "", *(node.description or "" for node in job.graph.node_defs)]
    words += [d.description or "" for d in [*repository.schedule_defs, *repository.sensor_defs]]
    return "\n".join(words)


def _shows(text: str, name: str) -> bool:
    return re.search(rf"(?<![a-z]){name}(?![a-z])", text, re.IGNORECASE) is not None


def _landscape(path: Path) -> set[str]:
    found = load_project(path)
    return {*found.systems, *found.entities}


def test_no_other_examples_system_or_entity_is_named_in_an_examples_definitions(
    project, repository
):
    others = {n for path in EXAMPLES if path != project.root for n in _landscape(path)}
    others -= {*project.systems, *project.entities}
    names = _names(repository)
    assert not {n for n in others if _shows(names, n)}


def test_the_demos_systems_and_entities_are_nowhere_in_another_examples_definitions(
    project, repository
):
    if project.root.name == "demo":
        pytest.skip("the demo itself")
    demo = _landscape(Path(__file__).parents[1] / "examples" / "demo")
    shown = _names(repository) + _words(repository)
    assert not {name for name in demo if _shows(shown, name)}


def test_snapshots_describe_each_column_from_the_catalog_and_the_mapping(project, repository):
    for (system, entity_name), mapping in project.mappings.items():
        key = dg.AssetKey(f"snapshot_{system}_{entity_name}")
        schema = repository.asset_graph.get(key).metadata["dagster/column_schema"]
        described = {c.name: c.description for c in schema.columns}
        entity = project.entity(entity_name)
        assert set(described) == {entity.key, *mapping.attributes}
        for field in mapping.fields:
            assert described[field.attribute].startswith(
                entity.attribute(field.attribute).description
            )
            assert f"({field.rule})." in described[field.attribute]


def test_business_rules_run_with_the_reconciliation_not_with_each_batch(project, repository):
    def rule_checks(job: str) -> set[str]:
        keys = repository.get_job(job).asset_layer.asset_graph.asset_check_keys
        return {k.to_user_string() for k in keys if k.name.startswith("rule_")}

    golden = {
        f"{entity.golden_table}:{rule.check_name}"
        for entity in project.entities.values()
        for rule in entity.rules
    }
    assert golden, "each example declares rules"
    assert rule_checks("ingest_batch") == set()
    assert golden <= rule_checks("reconcile") and golden <= rule_checks("reconcile_check")


def test_the_column_lineage_runs_from_the_systems_to_the_destinations(project, repository):
    """Dagster's column lineage: one snapshot, one golden record, the corrections and one
    destination, each column deriving from the stage before (catalog/lineage.py)."""
    graph = repository.asset_graph

    def metadata(key: str) -> dict:
        return graph.get(dg.AssetKey.from_user_string(key)).metadata

    def deps(key: str) -> dict[str, set[tuple[str, str]]]:
        lineage = metadata(key)["dagster/column_lineage"]
        return {
            column: {(d.asset_key.to_user_string(), d.column_name) for d in found}
            for column, found in lineage.deps_by_column.items()
        }

    def schema(key: str) -> set[str]:
        return {c.name for c in metadata(key)["dagster/column_schema"].columns}

    (system, entity_name), mapping = next(iter(project.mappings.items()))
    entity = project.entity(entity_name)
    snapshot = deps(f"snapshot_{system}_{entity_name}")
    assert (
        set(snapshot)
        == {entity.key, *mapping.attributes}
        <= schema(f"snapshot_{system}_{entity_name}")
    )
    for field in mapping.fields:
        assert snapshot[field.attribute] == {
            (f"system_{system}", f"{mapping.table}.{field.source}")
        }
        assert f"{mapping.table}.{field.source}" in schema(f"system_{system}")

    golden = deps(entity.golden_table)
    assert set(golden) == {entity.key, *entity.attribute_names} <= schema(entity.golden_table)
    for name in entity.attribute_names:
        assert golden[name] == {("validated_events", f"{entity_name}.{name}")}
        assert f"{entity_name}.{name}" in schema("validated_events")

    corrections = deps("corrections")
    assert set(corrections) == schema("corrections")
    corrected = {
        (e, f.attribute)
        for (s, e), m in project.mappings.items()
        for f in m.fields
        if project.entity(e).owner_of(f.attribute) != s and isinstance(f.source, str)
    }
    assert corrections == {f"{e}.{a}": {(f"golden_{e}", a)} for e, a in corrected}

    target = sorted(_destinations(project))[0]
    delivered = deps(f"delivered/{target}")
    assert delivered and set(delivered) == schema(f"delivered/{target}")
    for found in delivered.values():
        [(asset, column)] = found
        assert asset == "corrections" and column in corrections
    assert graph.get(dg.AssetKey(["delivered", target])).parent_keys == {dg.AssetKey("corrections")}
