"""The catalog as documents for the people who read it (`syncctl catalog`): what the project keeps
in sync, which system holds what in which column, the event versions with their change log, the
business rules. Rendered from the same loaded project and change log the pipeline and
`syncctl schema check` read, so it cannot drift: a test keeps `docs/catalog/` equal to the demo's.

Three forms of one text: `catalog_markdown` (one document, printed), `catalog_pages` (an index
and a page per entity, for a docs folder) and `catalog_html` (one static page, no script).
"""

from __future__ import annotations

import html

from sync_assets.catalog.entities import Attribute, Entity
from sync_assets.connectors.mappings import Field, Lookup
from sync_assets.govern.changelog import Signoff
from sync_assets.project.model import Project

INDEX = "README.md"
HTML_PAGE = "catalog.html"
REGENERATE = "syncctl catalog --out DIR"


def catalog_markdown(project: Project, signoffs: list[Signoff] | None = None) -> str:
    """The whole catalog as one Markdown document."""
    lines = _overview(project, link=lambda name: f"[{name}](#{name})")
    for entity in project.entities.values():
        lines += ["", *_entity(project, entity, signoffs or [], level=2)]
    return "\n".join(lines) + "\n"


def catalog_pages(project: Project, signoffs: list[Signoff]) -> dict[str, str]:
    """File name -> Markdown: the index (systems and entities) and one page per entity."""
    pages = {INDEX: "\n".join(_overview(project, link=lambda n: f"[{n}]({n}.md)")) + "\n"}
    for entity in project.entities.values():
        body = _entity(project, entity, signoffs, level=1)
        pages[f"{entity.name}.md"] = "\n".join(body) + f"\n\n[Back to the catalog]({INDEX})\n"
    return pages


def catalog_html(project: Project, signoffs: list[Signoff]) -> str:
    """The whole catalog as one self-contained HTML page (no script, no external file)."""
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = renderer.render(catalog_markdown(project, signoffs))
    # Headings get ids so the index's links (#customer) land on them.
    for entity in project.entities:
        body = body.replace(f"<h2>{entity}</h2>", f'<h2 id="{html.escape(entity)}">{entity}</h2>')
    title = html.escape(f"{project.name}: the catalog")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 80rem; padding: 0 1rem;
       color: #1f2328; line-height: 1.5; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left;
         vertical-align: top; }}
th {{ background: #f6f8fa; }}
code {{ background: #f6f8fa; padding: 0.1rem 0.3rem; border-radius: 4px; }}
h2 {{ border-bottom: 1px solid #d0d7de; padding-bottom: 0.3rem; margin-top: 2.5rem; }}
</style>
</head>
<body>
{body}</body>
</html>
"""


def _overview(project: Project, link) -> list[str]:
    lines = [f"# {project.name}: the catalog", ""]
    if project.settings.description:
        lines += [project.settings.description.strip(), ""]
    lines += [
        f"Generated from the project's files and `contracts/changelog.yaml` (`{REGENERATE}`); "
        "edit those, not this.",
        "",
        "## Entities",
        "",
        "| entity | key | created and deleted by | read by | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for entity in project.entities.values():
        lines.append(
            f"| {link(entity.name)} | `{entity.key}` | {entity.lifecycle_owner} | "
            f"{', '.join(entity.consumers)} | {_cell(entity.description)} |"
        )
    lines += [
        "",
        "## Systems",
        "",
        "| system | kind | URL variable | channel (signing key) | holds | description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
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
    return lines


def _entity(project: Project, entity: Entity, signoffs: list[Signoff], level: int) -> list[str]:
    h, hh = "#" * level, "#" * (level + 1)
    policy = project.contract_policies[entity.name]
    lines = [
        f"{h} {entity.name}",
        "",
        entity.description,
        "",
        f"- key: `{entity.key}`, matching `{entity.key_pattern}`",
        f"- created and deleted by: {entity.lifecycle_owner}",
        f"- read by: {', '.join(entity.consumers) or 'nobody listed'}",
        f"- when a correction cannot be delivered: {entity.on_undeliverable}",
    ]
    if entity.business_rules or entity.rules:
        lines += ["- business rules:", *(f"  - {rule}" for rule in entity.business_rules)]
        lines += [
            f"  - `{rule.name}` ({rule.severity}, checked): {rule.describe()}"
            + (f". {_cell(rule.description)}" if rule.description else "")
            for rule in entity.rules
        ]
    holders = [m for m in project.mappings.values() if m.entity == entity.name]
    header = "| attribute | type | owner | rules | compared | PII | " + " | ".join(
        m.system for m in holders
    )
    lines += [
        "",
        f"{hh} Attributes, and the column each system keeps them in",
        "",
        header + " | description |",
        "|" + " --- |" * (7 + len(holders)),
    ]
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
    lines += ["", *_versions(project, entity, hh)]
    if policy.deprecated:
        lines += ["", f"{hh} Deprecated", ""]
        for d in policy.deprecated:
            ends = f", accepted until {d.after}" if d.after else ""
            removal = f"removed in version {d.removal_version}" if d.removal_version else ""
            note = f": {d.note}" if d.note else ""
            lines.append(f"- `{d.attribute}`: {removal or 'deprecated'}{ends}{note}")
    lines += ["", *_changelog(entity, signoffs, hh)]
    return lines


def _versions(project: Project, entity: Entity, hh: str) -> list[str]:
    policy = project.contract_policies[entity.name]
    modes = sorted(set(policy.compatibility.values()))
    if len(modes) == 1:
        compat = f"{modes[0]} for every event type"
    else:
        compat = ", ".join(f"{a}: {m}" for a, m in policy.compatibility.items())
    approvals = (
        f"; a change is signed by each of {', '.join(policy.approvers)}"
        if policy.approvers
        else "; a change needs one sign-off"
    )
    lines = [
        f"{hh} Event versions",
        "",
        f"Compatibility: {compat}{approvals} (`syncctl schema check`). "
        f"Current version: {project.current_version[entity.name]}.",
        "",
        "| version | how its events read in the current form |",
        "| --- | --- |",
    ]
    for payload in project.versions_of(entity.name):
        how = [
            f"`{f}` is {a}" for f, a in payload.fields.items() if f != a and f not in payload.splits
        ]
        how += [
            f"`{f}` is {', '.join(s.into)} joined by {s.separator!r}"
            for f, s in payload.splits.items()
        ]
        absent = [a for a in entity.attribute_names if a not in payload.carried]
        if absent:
            how.append("lacks " + ", ".join(absent))
        how += [
            f"{a}: {_rules(o)}" for a, o in payload.overrides.items() if a not in payload.splits
        ]
        how += [f"older created events take {a} = `{v}`" for a, v in payload.defaults.items()]
        if payload.retired:
            how.append("**retired**: its events are dead letters")
        lines.append(f"| {payload.version} | {_cell('; '.join(how) or 'as the catalog says')} |")
    return lines


def _changelog(entity: Entity, signoffs: list[Signoff], hh: str) -> list[str]:
    lines = [f"{hh} Change log", ""]
    rows = []
    for signoff in signoffs:
        mine = {n: s for n, s in signoff.subjects.items() if n.split(".")[0] == entity.name}
        if not mine:
            continue
        by_changes: dict[tuple[str, ...], list[str]] = {}
        for name, signed in mine.items():
            by_changes.setdefault(signed.changes, []).append(name.split(".", 1)[1])
        what = "; ".join(
            f"{', '.join(actions)}: {'; '.join(changes) or 'signed again'}"
            for changes, actions in by_changes.items()
        )
        rows.append(
            f"| {signoff.at:%Y-%m-%d %H:%M} | {_cell(signoff.by)} | {_cell(signoff.note)} "
            f"| {_cell(what)} |"
        )
    if not rows:
        return [*lines, "No sign-off yet (`syncctl schema approve`)."]
    return [*lines, "| when (UTC) | by | note | changes |", "| --- | --- | --- | --- |", *rows]


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
