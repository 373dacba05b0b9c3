"""The schema registry in Dagster: one asset per event type (subject), in the `registry` group,
whose metadata shows its compatibility mode, versions, status against the change log, the
current version's fields as the column schema, and the sign-offs that concern it.

The assets are declarations (`AssetSpec`): the contracts are files the team edits and signs off
with `syncctl schema`, not something Dagster materializes. Built once when the code location
loads, from the same project and change log `syncctl schema check` reads.
"""

from __future__ import annotations

import dagster as dg

from sync_assets.govern import changelog, registry
from sync_assets.project.model import Project

OWNERS = ["team:data-platform"]


def subject_key(subject: str) -> dg.AssetKey:
    return dg.AssetKey(["registry", subject.replace(".", "_")])


def registry_assets(project: Project) -> list[dg.AssetSpec]:
    signoffs = changelog.read(project.root)
    specs = []
    for verdict in registry.judge(project, signoffs):
        subject = verdict.subject
        current = subject.versions[subject.current]
        entity = project.entity(subject.entity)
        columns = [
            dg.TableColumn(
                name,
                f.type,
                description=entity.attribute(name).described,
                constraints=dg.TableColumnConstraints(nullable=not f.required),
            )
            for name, f in current.fields.items()
        ]
        history = [
            f"| {s.at:%Y-%m-%d %H:%M} | {s.by} | {s.note} | "
            f"{'; '.join(s.subjects[subject.name].changes) or 'unchanged'} |"
            for s in signoffs
            if subject.name in s.subjects
        ]
        specs.append(
            dg.AssetSpec(
                subject_key(subject.name),
                group_name="registry",
                kinds={"yaml"},
                owners=OWNERS,
                tags={"entity": subject.entity},
                description=(
                    f"The event type {subject.name}: its schema versions in "
                    f"contracts/{subject.entity}.yaml, held to {subject.compatibility} "
                    "compatibility and signed off in contracts/changelog.yaml "
                    "(`syncctl schema check`, `syncctl schema approve`)."
                ),
                metadata={
                    "compatibility": subject.compatibility,
                    "current_version": subject.current,
                    "versions": ", ".join(
                        f"{v} (retired)" if v in subject.retired else str(v)
                        for v in sorted(subject.versions)
                    ),
                    "status": verdict.status,
                    "content_hash": subject.hash[:16],
                    "approvers": ", ".join(subject.approvers) or "anyone",
                    "change_log": dg.MetadataValue.md(
                        "| when (UTC) | by | note | changes |\n| --- | --- | --- | --- |\n"
                        + "\n".join(history)
                        if history
                        else "No sign-off yet: run `syncctl schema approve`."
                    ),
                    "dagster/column_schema": dg.TableSchema(columns=columns),
                },
            )
        )
    return specs
