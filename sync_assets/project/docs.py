"""The catalog as a document: what the project keeps in sync, written for the people who read it
(`syncctl catalog`), from the same loaded project the pipeline runs on, so it cannot drift."""

from __future__ import annotations

from sync_assets.catalog.entities import Attribute
from sync_assets.connectors.mappings import Field, Lookup
from sync_assets.project.model import Project


def catalog_markdown(project: Project) -> str:
    lines = [f"# {project.name}: the catalog", ""]
    if project.settings.description:
        lines += [project.settings.description.strip(), ""]
    lines += [
        "## Systems",
        "",
        "| system | kind | URL variable | channel (signing key) | holds | description |",
    ]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for system in project.systems.values():
        holds = ", ".join(
            f"{m.entity} (`{m.table}`)"
            for m in project.mappings.values()
            if m.system == system.name
        )
        variables = f"`{system.url_env}`"
        if system.write_url_env:
            variables += f" (writes: `{system.write_url_env}`)"
        signing = f" (`{system.signing_key_env}`)" if system.signing_key_env else ""
        lines.append(
            f"| {system.name} | {system.kind} | {variables} | `{system.channel}`{signing} "
            f"| {holds} | {_cell(system.description)} |"
        )
    for entity in project.entities.values():
        versions = sorted(v for (e, v) in project.payload_versions if e == entity.name)
        lines += [
            "",
            f"## {entity.name}",
            "",
            entity.description,
            "",
            f"- key: `{entity.key}`, matching `{entity.key_pattern}`",
            f"- created and deleted by: {entity.lifecycle_owner}",
            f"- event schema versions: {', '.join(map(str, versions))} "
            f"(current {project.current_version[entity.name]})",
            f"- when a correction cannot be delivered: {entity.on_undeliverable}",
        ]
        if entity.business_rules:
            lines += ["- business rules:", *(f"  - {rule}" for rule in entity.business_rules)]
        holders = [m for m in project.mappings.values() if m.entity == entity.name]
        header = "| attribute | type | owner | rules | compared | PII | " + " | ".join(
            m.system for m in holders
        )
        lines += ["", header + " | description |", "|" + " --- |" * (7 + len(holders))]
        for attribute in entity.attributes:
            columns = []
            for m in holders:
                found = next((f for f in m.fields if f.attribute == attribute.name), None)
                columns.append(_column(found) if found else "")
            lines.append(
                f"| {attribute.name} | {attribute.type} | {attribute.owner} | "
                f"{_rules(attribute)} | {_compared(attribute)} | {'yes' if attribute.pii else ''} | "
                + " | ".join(columns)
                + f" | {_cell(attribute.description)} |"
            )
    return "\n".join(lines) + "\n"


def _rules(attribute: Attribute) -> str:
    rules = ["required"] if attribute.required else []
    if attribute.allowed:
        rules.append("one of " + ", ".join(attribute.allowed))
    if attribute.pattern:
        rules.append(f"matches `{attribute.pattern}`")
    if attribute.minimum is not None:
        rules.append(f"at least {attribute.minimum:g}")
    return _cell("; ".join(rules))


def _compared(attribute: Attribute) -> str:
    how: list[str] = [] if attribute.compare == "exact" else [attribute.compare]
    if attribute.tolerance:
        how.append(f"± {attribute.tolerance:g}")
    if attribute.timestamp_precision:
        how.append(f"to the {attribute.timestamp_precision}")
    return ", ".join(how) or "exactly"


def _column(field: Field) -> str:
    if isinstance(field.source, Lookup):
        where = f"`{field.source.table}.{field.source.value}`"
    else:
        where = f"`{field.source}`"
    return where if field.rule == "text" else f"{where} ({field.rule})"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
