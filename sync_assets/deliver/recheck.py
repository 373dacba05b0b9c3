"""Re-checking a correction against the target's record just before it is written.

A reconciliation sees a system at one moment; its corrections are written later. Whatever changed
in between must not be undone by them. Each correction keeps what the reconciliation saw of the
target's record (`Delivery.seen`: present or not, deleted or not, its values in catalog form).
Just before writing, the destination reads the record as it is now, and `judge` decides:

| the record now                            | verdict | written                                  |
| ----------------------------------------- | ------- | ---------------------------------------- |
| already holds the values to set           | in_sync | no: nothing to do                        |
| differs from what the reconciliation saw  | changed | no: someone edited it; the next reconciliation decides |
| as the reconciliation saw it              | (none)  | yes                                      |

The record read now is normalized exactly as a snapshot is (`reconcile/snapshot.load_snapshot`,
in a DuckDB of its own, in memory) and compared by the catalog's rules (`reconcile/diff.equal`),
so case, spacing, number types, date formats and lossy vocabularies (the support desk's
`disabled` is inactive or suspended) never read as a change. Attributes read through another table
(a lookup) cannot be read from the record itself and are not compared.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingType
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from sync_assets.connectors.mappings import Lookup, Mapping, raw_columns
from sync_assets.connectors.sources import to_batch
from sync_assets.deliver.engine import Delivery, Outcome
from sync_assets.project import current
from sync_assets.reconcile.diff import equal
from sync_assets.reconcile.snapshot import load_snapshot, snapshot_table
from sync_assets.warehouse import quote, registered

CHECKED = ("created", "updated", "deleted")
"""Actions re-checked; a compensation has its own guard (the version it undoes)."""


def judge(
    mapping: Mapping, deliveries: Sequence[Delivery], rows: MappingType[str, dict[str, Any]]
) -> dict[str, Outcome]:
    """The deliveries that must not be written, by correction id, with why.

    `rows` holds the target's raw rows as they are now, by canonical key (no entry: no row);
    deliveries without `seen` are not judged.
    """
    checked = [d for d in deliveries if d.seen is not None and d.action in CHECKED]
    if not checked:
        return {}
    comparable = comparable_attributes(mapping)
    current = [rows[key] for key in dict.fromkeys(d.entity_key for d in checked) if key in rows]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # as the warehouse: timestamps read the same
    try:
        names = raw_columns(mapping)
        batch = to_batch(names, [[row.get(name) for name in names] for row in current])
        load_snapshot(con, mapping, [batch])
        # A cursor of its own: load_snapshot leaves its last (count) result open on `con`.
        found = _compare(con.cursor(), mapping, checked, comparable)
    finally:
        con.close()
    verdicts = {}
    for d in checked:
        outcome = _verdict(mapping, d, found[d.correction_id], comparable)
        if outcome is not None:
            verdicts[d.correction_id] = outcome
    return verdicts


def comparable_attributes(mapping: Mapping) -> list[str]:
    """The attributes read from the record's own columns."""
    return [f.attribute for f in mapping.fields if not isinstance(f.source, Lookup)]


def _compare(
    con: duckdb.DuckDBPyConnection,
    mapping: Mapping,
    checked: list[Delivery],
    comparable: list[str],
) -> dict[str, dict[str, Any]]:
    """Per correction: whether the record is present and deleted now, and per attribute whether
    it equals what the reconciliation saw (`seen.<a>`) and the value to set (`want.<a>`)."""
    catalog = current().entity(mapping.entity)
    key = quote(catalog.key)
    frame: dict[str, list[Any]] = {
        "correction_id": [d.correction_id for d in checked],
        "entity_key": [d.entity_key for d in checked],
    }
    for name in comparable:
        frame[f"seen.{name}"] = [_text((d.seen or {}).get("values", {}).get(name)) for d in checked]
        frame[f"want.{name}"] = [_text(d.values.get(name)) for d in checked]
    text = {name: pa.array(values, pa.string()) for name, values in frame.items()}
    columns = []
    for name in comparable:
        attribute = catalog.attribute(name)
        now = f"c.{quote(name)}"
        for side in ("seen", "want"):
            given = f"TRY_CAST(j.{quote(f'{side}.{name}')} AS {attribute.duckdb_type})"
            columns.append(f"{equal(attribute, given, now)} AS {quote(f'{side}.{name}')}")
    with registered(con, "recheck_frame", text) as name:
        result = con.execute(
            f"""SELECT j.correction_id, c.{key} IS NOT NULL AS present,
                       coalesce(c.is_deleted, false) AS deleted{"".join(", " + c for c in columns)}
                FROM {name} j LEFT JOIN {quote(snapshot_table(mapping))} c ON c.{key} = j.entity_key"""
        )
        names = [d[0] for d in result.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in result.fetchall()}


def _verdict(
    mapping: Mapping, d: Delivery, now: dict[str, Any], comparable: list[str]
) -> Outcome | None:
    seen = d.seen or {}
    present, deleted = bool(now["present"]), bool(now["deleted"])
    if _holds(d, present, deleted, now, comparable):
        return Outcome("in_sync", f"{mapping.system} already holds this; nothing written")
    later = "after the reconciliation saw it; not overwritten, the next reconciliation decides"
    if present != bool(seen.get("present")):
        return Outcome("changed", f"the record was {'created' if present else 'removed'} {later}")
    if present and deleted != bool(seen.get("deleted")):
        return Outcome("changed", f"the record was {'deleted' if deleted else 'revived'} {later}")
    differing = [a for a in comparable if a in seen.get("values", {}) and not now[f"seen.{a}"]]
    if present and differing:
        return Outcome("changed", f"{', '.join(differing)} changed in the record {later}")
    return None


def _holds(
    d: Delivery, present: bool, deleted: bool, now: dict[str, Any], comparable: list[str]
) -> bool:
    """Whether the record already is what the correction would make it."""
    if d.action == "deleted":
        return not present or deleted
    if not present or deleted:
        return False
    return all(name in comparable and now[f"want.{name}"] for name in d.values)


def _text(value: Any) -> str | None:
    """A catalog value (as JSON gives it) as text DuckDB casts back to the attribute's type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
