"""The column lineage for people: a text tree (`syncctl lineage`), plain JSON, and an HTML section
(`syncctl lineage --html`, and for any report that embeds it). All three read the one lineage
catalog/lineage.py derives from the project; nothing here decides what flows where.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from sync_assets.catalog.lineage import AttributeLineage, Node, build_lineage, select
from sync_assets.project.model import Project


def lineage_json(project: Project, found: Sequence[AttributeLineage]) -> dict[str, object]:
    return {"project": project.name, "attributes": [a.as_dict() for a in found]}


def lineage_text(found: Sequence[AttributeLineage]) -> str:
    """Each attribute's upstream, downstream and compared columns as trees, one after the other."""
    blocks = []
    for attribute in found:
        marks = [f"owned by {attribute.owner}"]
        if attribute.is_key:
            marks.insert(0, "key")
        if attribute.pii:
            marks.append("PII")
        lines = [f"{attribute.name} ({', '.join(marks)})"]
        lines += ["  upstream", f"    {attribute.golden.label}", *_tree(attribute.upstream, "    ")]
        lines += ["  downstream", f"    {attribute.golden.label}"]
        lines += _tree(attribute.downstream, "    ") or ["    (nothing: no system is corrected)"]
        if attribute.compared:
            lines += ["  compared with it by reconciliation", *_tree(attribute.compared, "    ")]
        lines += [f"  note: {note}" for note in attribute.notes]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _tree(nodes: Sequence[Node], prefix: str) -> list[str]:
    lines: list[str] = []
    width = max((len(n.column.label) for n in nodes), default=0)
    for i, node in enumerate(nodes):
        last = i == len(nodes) - 1
        lines.append(
            f"{prefix}{'└── ' if last else '├── '}{node.column.label:<{width}}  {node.how}"
        )
        lines += _tree(node.children, prefix + ("    " if last else "│   "))
    return lines


STYLE = """
.sf-lineage { font-family: system-ui, sans-serif; color: #1f2328; line-height: 1.45; }
.sf-lineage table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
.sf-lineage th, .sf-lineage td { border: 1px solid #d0d7de; padding: 0.3rem 0.5rem;
  text-align: left; vertical-align: top; }
.sf-lineage th { background: #f6f8fa; }
.sf-lineage ul { margin: 0; padding-left: 1rem; }
.sf-lineage li { margin: 0.1rem 0; }
.sf-lineage code { background: #f6f8fa; padding: 0 0.2rem; border-radius: 3px; }
.sf-lineage .how { color: #57606a; font-size: 0.8rem; }
.sf-lineage .note { color: #9a6700; font-size: 0.8rem; }
.sf-lineage .pii { color: #cf222e; font-size: 0.75rem; font-weight: 600; }
.sf-lineage td.flow::before { content: "\\2192\\00a0"; color: #8c959f; }
"""

HEADINGS = (
    "attribute",
    "the owner's column",
    "events",
    "golden record",
    "corrections",
    "written to",
    "compared with it",
)


def render_lineage_html(project: Project, target: str | None = None) -> str:
    """One self-contained HTML section (its style inline, no script, no external file): per
    entity, a table of its key and attributes, each row the columns one attribute flows through,
    left to right. `target` narrows it as `syncctl lineage` does (`entity`, `entity.attribute`)."""
    found = select(build_lineage(project), project, target)
    parts = [
        '<section class="sf-lineage" id="lineage">',
        f"<style>{STYLE}</style>",
        f"<h2>Column lineage of {_e(project.name)}</h2>",
        "<p>Each row follows one attribute: from the column of the system that owns it, through "
        "the validated events, into the golden record; then, as corrections, into the columns of "
        "the systems that keep it without owning it. Reconciliation compares every system's "
        "column with the golden record.</p>",
    ]
    for entity in dict.fromkeys(a.entity for a in found):
        parts.append(f'<h3 id="lineage-{_e(entity)}">{_e(entity)}</h3>')
        parts.append("<table><thead><tr>")
        parts += [f"<th>{_e(h)}</th>" for h in HEADINGS]
        parts.append("</tr></thead><tbody>")
        parts += [_row(a) for a in found if a.entity == entity]
        parts.append("</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts) + "\n"


def lineage_page(project: Project, target: str | None = None) -> str:
    """The section as a page of its own (`syncctl lineage --html PATH`)."""
    title = _e(f"{project.name}: column lineage")
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}'
        '</title>\n</head>\n<body style="margin: 2rem auto; max-width: 90rem; padding: 0 1rem">\n'
        f"{render_lineage_html(project, target)}</body>\n</html>\n"
    )


def _row(attribute: AttributeLineage) -> str:
    events = attribute.upstream[0]
    owner_columns = [n for n in events.children if n.column.stage == "system"]
    snapshots = [n for n in events.children if n.column.stage == "snapshot"]
    corrections = [n for n in attribute.downstream if n.column.stage == "corrections"]
    targets = [child for node in corrections for child in node.children]
    name = f"<code>{_e(attribute.attribute)}</code>"
    if attribute.is_key:
        name += " (key)"
    if attribute.pii:
        name += ' <span class="pii">PII</span>'
    name += f"<br>owned by {_e(attribute.owner)}"
    name += "".join(f'<div class="note">{_e(note)}</div>' for note in attribute.notes)
    cells = [
        name,
        _list(owner_columns + snapshots, nested=True),
        _list([events]),
        _list([Node(attribute.golden, "")]),
        _list(corrections),
        _list(targets),
        _list(attribute.compared, nested=True),
    ]
    tds = [f"<td>{cells[0]}</td>"]
    tds += [f'<td class="flow">{cell}</td>' if cell else "<td></td>" for cell in cells[1:]]
    return f"<tr>{''.join(tds)}</tr>"


def _list(nodes: Iterable[Node], *, nested: bool = False) -> str:
    items = []
    for node in nodes:
        item = f"<code>{_e(node.column.label)}</code>"
        if node.how:
            item += f' <span class="how">{_e(node.how)}</span>'
        if nested and node.children:
            item += _list(node.children, nested=True)
        items.append(f"<li>{item}</li>")
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _e(text: str) -> str:
    return html.escape(text, quote=True)
