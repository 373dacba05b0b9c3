"""The reconciliation diff: system snapshots against the golden records, and against each other.

Every divergence found becomes one row of `discrepancies` (a finding), appended per run (a retried
run replaces its own rows, never another run's):

| kind       | what                                                              |
| ---------- | ----------------------------------------------------------------- |
| missing    | golden record live and in the system's scope; its row is absent or deleted |
| extra      | the system has a live row; the golden record is absent or deleted  |
| mismatch   | both live; an attribute differs (expected = golden, actual = system) |
| divergence | two systems both live; an attribute both hold differs, and no mismatch of either system on that attribute explains it (the golden record has no such live record, or the comparison rules are not transitive) |

One divergence is one finding: when a system's value differs from the golden record, that
mismatch is the finding, and the other systems' differences with it on the same (entity, key,
attribute) are folded into it rather than listed again. Every finding on an attribute carries
`views`: each other system's value for it, where that system holds the record live (a map system
-> value, as text), so the golden value (`expected`), the system's (`actual`) and the others' are
read in one row. A PII attribute's values are stored as keyed fingerprints (`display`). Diff the systems against the golden records before the pairs (`diff_entity`).

and who is right (`resolution`):

| resolution   | meaning                                                                 |
| ------------ | ----------------------------------------------------------------------- |
| missed_event | the system owns it (the attribute, or the lifecycle for missing/extra): an event was missed; its value enters the golden record through a `<entity>.reconciled` event |
| drift        | the system does not own it: correct the system back to the owner's value |
| unowned      | divergence between two systems neither of which owns the attribute; the owner's own diff decides |
| orphan       | extra in a system that does not own the lifecycle, for a record the lifecycle owner does not have: no golden record (or one never made live) and no live row in the lifecycle owner's snapshot. Nobody can say it should not exist: reported and left alone, never deleted |

Only a golden tombstone (the lifecycle owner deleted the record) makes a non-owner's live row
`drift` to delete: an empty or partial golden record is never a reason to delete anything.

For a divergence, `system` is the one to correct and `other_system` the owner, whose value is
`expected` (when unowned, `other_system` is simply the other one). The table is created with the
warehouse (`warehouse.create_schema`). Callers run these inside their own transaction.

Only the snapshots a reconciliation actually took are diffed: a system whose snapshot failed is
left out of every comparison and every view (its old snapshot is not current).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from sync_assets.catalog.entities import Attribute
from sync_assets.connectors.mappings import Mapping, shared_attributes
from sync_assets.project import current
from sync_assets.reconcile.snapshot import current_snapshots, snapshot_table
from sync_assets.security.sql import pii_of
from sync_assets.warehouse import quote, sql_literal
from sync_assets.warehouse.tables import KINDS

NO_VIEWS = "MAP {}::MAP(VARCHAR, VARCHAR)"


@dataclass(frozen=True)
class DiffResult:
    run_id: str
    entity: str
    system: str
    other_system: str | None
    counts: dict[str, int]
    """Discrepancies found, by kind (every kind listed, zeros included)."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Summary:
    run_id: str
    counts: dict[str, int]
    """By kind."""
    by_resolution: dict[str, int]
    sample: list[dict[str, object]]


def diff_system(con: duckdb.DuckDBPyConnection, mapping: Mapping, run_id: str) -> DiffResult:
    """Diff a system's snapshot against the golden records; append what differs."""
    pii_of(con)  # PII values are stored as masks (`display`)
    where, params = comparison_filter(run_id, mapping.entity, mapping.system, None)
    con.execute(f"DELETE FROM discrepancies WHERE {where}", params)
    con.execute(_against_golden(mapping, _lifecycle_snapshot(con, mapping)), {"run_id": run_id})
    return _result(con, run_id, mapping.entity, mapping.system, None)


def diff_entity(
    con: duckdb.DuckDBPyConnection, mappings: Sequence[Mapping], run_id: str
) -> list[DiffResult]:
    """Diff one entity's snapshots taken by this reconciliation: each against the golden records,
    then each pair of them (divergences a mismatch explains folded into it), then every
    finding's views of the other systems. One result per comparison made."""
    if not mappings:
        return []
    results = [diff_system(con, m, run_id) for m in mappings]
    taken = {m.system: m for m in mappings}
    for left, right in current().comparable_pairs(mappings[0].entity):
        if left.system in taken and right.system in taken:
            results.append(diff_systems(con, taken[left.system], taken[right.system], run_id))
    add_views(con, mappings, run_id)
    return results


def diff_systems(
    con: duckdb.DuckDBPyConnection, left: Mapping, right: Mapping, run_id: str
) -> DiffResult:
    """Diff two systems' snapshots on the attributes both hold, for keys live in both; a
    difference already found as a mismatch of either system in this run is not listed again
    (diff each system first)."""
    if left.entity != right.entity:
        raise ValueError(f"{left.name} and {right.name} hold different entities")
    pii_of(con)
    where, params = comparison_filter(run_id, left.entity, left.system, right.system)
    con.execute(f"DELETE FROM discrepancies WHERE {where}", params)
    if shared_attributes(left, right):
        con.execute(_between(left, right), {"run_id": run_id})
    pair = sorted([left.system, right.system])
    return _result(con, run_id, left.entity, pair[0], pair[1])


def add_views(con: duckdb.DuckDBPyConnection, mappings: Sequence[Mapping], run_id: str) -> None:
    """Fill each finding's `views` of one entity in a run: the value every other of these
    systems holds for the attribute, where its record is live. One statement per (system,
    attribute) that some finding of another system needs, so a clean run costs nothing."""
    if not mappings:
        return
    entity_name = mappings[0].entity
    catalog = current().entity(entity_name)
    pii_of(con)
    needed = con.execute(
        "SELECT DISTINCT system, attribute FROM discrepancies "
        "WHERE run_id = ? AND entity = ? AND attribute IS NOT NULL",
        [run_id, entity_name],
    ).fetchall()
    for m in mappings:
        for name in m.attributes:
            if not any(a == name and s != m.system for s, a in needed):
                continue
            value = display(catalog.attribute(name), f"s.{quote(name)}")
            con.execute(
                f"""UPDATE discrepancies d
                SET views = map_concat(coalesce(d.views, {NO_VIEWS}), MAP {{$system: {value}}})
                FROM {quote(snapshot_table(m))} s
                WHERE d.run_id = $run_id AND d.entity = $entity AND d.attribute = $attribute
                  AND d.system <> $system AND s.{quote(catalog.key)} = d.entity_key
                  AND NOT s.is_deleted""",
                {"run_id": run_id, "entity": entity_name, "attribute": name, "system": m.system},
            )


def summarize(con: duckdb.DuckDBPyConnection, run_id: str, sample_size: int = 20) -> Summary:
    """Counts by kind and by resolution of one run's discrepancies, and a sample of them."""
    where = "FROM discrepancies WHERE run_id = $run_id"
    by_kind = con.execute(f"SELECT kind, count(*) {where} GROUP BY kind", {"run_id": run_id})
    counts = {kind: 0 for kind in KINDS} | dict(by_kind.fetchall())
    by_resolution = con.execute(
        f"SELECT resolution, count(*) {where} GROUP BY resolution ORDER BY resolution",
        {"run_id": run_id},
    ).fetchall()
    sample = con.execute(
        f"SELECT * {where} ORDER BY kind, system, entity, entity_key, attribute LIMIT $n",
        {"run_id": run_id, "n": sample_size},
    )
    names = [d[0] for d in sample.description]
    rows = [dict(zip(names, row, strict=True)) for row in sample.fetchall()]
    return Summary(run_id, counts, dict(by_resolution), rows)


@dataclass(frozen=True)
class RecordToFix:
    """A record one system holds differently from the golden record, and how."""

    system: str
    entity: str
    entity_key: str
    missing: bool
    extra: bool
    attributes: list[str]
    """The attributes that differ (for a mismatch)."""


def records_to_fix(
    con: duckdb.DuckDBPyConnection, run_id: str, resolution: str
) -> list[RecordToFix]:
    """A run's discrepancies against the golden records with this resolution, per record."""
    found = con.execute(
        """
        SELECT system, entity, entity_key,
               bool_or(kind = 'missing'),
               bool_or(kind = 'extra'),
               coalesce(list(attribute ORDER BY attribute) FILTER (WHERE kind = 'mismatch'), [])
        FROM discrepancies
        WHERE run_id = $run_id AND other_system IS NULL AND resolution = $resolution
        GROUP BY ALL ORDER BY ALL""",
        {"run_id": run_id, "resolution": resolution},
    ).fetchall()
    return [RecordToFix(*row) for row in found]


def comparison_filter(
    run_id: str, entity_name: str, system: str, other: str | None
) -> tuple[str, dict[str, object]]:
    """The WHERE clause (and its parameters) of one comparison's rows in a run: a system against
    the golden records (`other` None), or the divergences of a pair of systems, either order."""
    params: dict[str, object] = {"run_id": run_id, "entity": entity_name, "system": system}
    pair = "other_system IS NULL AND system = $system"
    if other is not None:
        params["other"] = other
        pair = "kind = 'divergence' AND [system, other_system] IN ([$system, $other], [$other, $system])"
    return f"run_id = $run_id AND entity = $entity AND {pair}", params


def _result(
    con: duckdb.DuckDBPyConnection, run_id: str, entity_name: str, system: str, other: str | None
) -> DiffResult:
    where, params = comparison_filter(run_id, entity_name, system, other)
    found = con.execute(
        f"SELECT kind, count(*) FROM discrepancies WHERE {where} GROUP BY kind", params
    ).fetchall()
    return DiffResult(run_id, entity_name, system, other, {kind: 0 for kind in KINDS} | dict(found))


# -- the SQL of each comparison --------------------------------------------------------------------
#
# A comparison is one join of its two tables (a snapshot and the golden records, or two
# snapshots) and one INSERT: each joined row where anything differs gives the list of the
# findings it makes (by number: one per kind, or per attribute, that differs), unnested into one
# discrepancy row each. The conditions run on every row; the values of a finding are worked out
# only for the rows that make it.


@dataclass(frozen=True)
class _Finding:
    """What one condition on a joined row makes: a discrepancy, each field SQL over the row (the
    tables' aliases name their rows); `kind`, `system`, `attribute`, `other` are names."""

    condition: str
    kind: str
    resolution: str
    system: str
    key: str
    attribute: str | None
    expected: str
    actual: str
    other: str | None = None


def _insert(
    entity_name: str,
    findings: Sequence[_Finding],
    joined: str,
    rows: dict[str, Sequence[str]],
    resolution: str = "resolution",
    keep: str = "true",
) -> str:
    """The INSERT of one comparison's discrepancies, in the column order of the table, from
    `joined` (a FROM clause): `rows` names, by table alias, the columns the findings read (the
    rest are not even read). `resolution` and `keep` (which findings are kept) are SQL over the
    findings' columns. The views of a finding on an attribute start empty (`add_views` fills
    them)."""

    def by_finding(values: Sequence[str]) -> str:
        if len(set(values)) == 1:
            return values[0]
        return f"CASE finding {' '.join(f'WHEN {n} THEN {v}' for n, v in enumerate(values))} END"

    def name(value: str | None) -> str:
        return "NULL::VARCHAR" if value is None else sql_literal(value)

    fields = {
        "kind": [sql_literal(f.kind) for f in findings],
        "resolution": [f.resolution for f in findings],
        "system": [sql_literal(f.system) for f in findings],
        "entity_key": [f.key for f in findings],
        "attribute": [name(f.attribute) for f in findings],
        "expected": [f.expected for f in findings],
        "actual": [f.actual for f in findings],
        "other_system": [name(f.other) for f in findings],
    }
    made = ", ".join(f"CASE WHEN {f.condition} THEN {n} END" for n, f in enumerate(findings))
    # each table's row as a struct of what is read: the same SQL (`s.email`) in both queries
    read = ", ".join(
        "{" + ", ".join(f"{sql_literal(c)}: {alias}.{quote(c)}" for c in columns) + f"}} AS {alias}"
        for alias, columns in rows.items()
    )
    return f"""INSERT INTO discrepancies
SELECT $run_id, now(), kind, {resolution}, system, {sql_literal(entity_name)}, entity_key,
       attribute, expected, actual, other_system,
       CASE WHEN attribute IS NOT NULL THEN {NO_VIEWS} END
FROM (
    SELECT {", ".join(f"{by_finding(values)} AS {column}" for column, values in fields.items())}
    FROM (
        SELECT unnest(list_filter([{made}], lambda n: n IS NOT NULL)) AS finding, {read}
        FROM {joined}
        WHERE {" OR ".join(f"({f.condition})" for f in findings)}
    ) differing
) findings
WHERE {keep}"""


def _owns_lifecycle(mapping: Mapping) -> bool:
    return current().entity(mapping.entity).lifecycle_owner == mapping.system


def _against_golden(mapping: Mapping, lifecycle: Mapping | None) -> str:
    """The INSERT of a system's discrepancies against the golden records, from one FULL OUTER
    JOIN of its snapshot `s` and the golden records `g`:

    - missing: the golden record live and in the system's scope, its row absent or deleted;
    - extra: a live row, the golden record absent or not live. `lifecycle`: the lifecycle
      owner's snapshot, if taken; a row it holds live is not an orphan (the owner's missed event
      brings it into the golden record);
    - mismatch: both live, per attribute of the mapping that differs.
    """
    catalog = current().entity(mapping.entity)
    golden, snapshot = quote(catalog.golden_table), quote(snapshot_table(mapping))
    key = quote(catalog.key)
    live = "g.lifecycle_state = 'live'"
    scope = "".join(f" AND g.{quote(name)} IS NOT NULL" for name in mapping.scope)
    owner = _owns_lifecycle(mapping)
    findings = [
        _Finding(
            condition=f"{live}{scope} AND (s.{key} IS NULL OR s.is_deleted)",
            kind="missing",
            resolution=sql_literal("missed_event" if owner else "drift"),
            system=mapping.system,
            key=f"g.{key}",
            attribute=None,
            expected="'live'",
            actual=f"CASE WHEN s.{key} IS NULL THEN 'absent' ELSE 'deleted' END",
        ),
        _Finding(
            condition="NOT s.is_deleted AND g.lifecycle_state IS DISTINCT FROM 'live'",
            kind="extra",
            # not the owner: drift when the golden record was deleted, else decided below
            resolution="'missed_event'"
            if owner
            else "CASE WHEN g.lifecycle_state = 'deleted' THEN 'drift' END",
            system=mapping.system,
            key=f"s.{key}",
            attribute=None,
            expected="coalesce(g.lifecycle_state, 'absent')",
            actual="'live'",
        ),
    ]
    for name in mapping.attributes:
        attribute = catalog.attribute(name)
        g, s = f"g.{quote(name)}", f"s.{quote(name)}"
        findings.append(
            _Finding(
                condition=f"{live} AND NOT s.is_deleted AND NOT {equal(attribute, g, s)}",
                kind="mismatch",
                resolution=sql_literal(
                    "missed_event" if attribute.owner == mapping.system else "drift"
                ),
                system=mapping.system,
                key=f"g.{key}",
                attribute=name,
                expected=display(attribute, g),
                actual=display(attribute, s),
            )
        )
    held = "false"
    if lifecycle is not None:
        held = (
            f"entity_key IN (SELECT {key} FROM {quote(snapshot_table(lifecycle))} "
            "WHERE NOT is_deleted)"
        )
    return _insert(
        mapping.entity,
        findings,
        f"{golden} g FULL OUTER JOIN {snapshot} s ON s.{key} = g.{key}",
        {
            "g": [catalog.key, "lifecycle_state", *mapping.attributes],
            "s": [catalog.key, *mapping.attributes],
        },
        resolution=f"coalesce(resolution, CASE WHEN {held} THEN 'drift' ELSE 'orphan' END)",
    )


def _lifecycle_snapshot(con: duckdb.DuckDBPyConnection, mapping: Mapping) -> Mapping | None:
    """The lifecycle owner's mapping of the entity, when its latest snapshot was taken."""
    lifecycle = current().entity(mapping.entity).lifecycle_owner
    owner = current().mappings.get((lifecycle, mapping.entity))
    if owner is None or owner.system == mapping.system:
        return None
    taken, _ = current_snapshots(con, [owner])
    return owner if taken else None


def _between(left: Mapping, right: Mapping) -> str:
    """The INSERT of the divergences of two systems, from one join of their snapshots (`a`,
    `b`) on the keys live in both: per attribute both hold that differs, the owner's value is
    the expected one (when neither owns it, `left`'s), unless a mismatch of either system this
    run already has that (key, attribute)."""
    catalog = current().entity(left.entity)
    key = quote(catalog.key)
    tables = {left.system: "a", right.system: "b"}
    findings = []
    for name in shared_attributes(left, right):
        attribute = catalog.attribute(name)
        owner, other = (right, left) if attribute.owner == right.system else (left, right)
        resolution = "drift" if attribute.owner == owner.system else "unowned"
        expected, actual = (f"{tables[m.system]}.{quote(name)}" for m in (owner, other))
        findings.append(
            _Finding(
                condition=f"NOT {equal(attribute, expected, actual)}",
                kind="divergence",
                resolution=sql_literal(resolution),
                system=other.system,
                key=f"a.{key}",
                attribute=name,
                expected=display(attribute, expected),
                actual=display(attribute, actual),
                other=owner.system,
            )
        )
    explained = f"""EXISTS (SELECT 1 FROM discrepancies m
    WHERE m.run_id = $run_id AND m.kind = 'mismatch' AND m.entity = {sql_literal(left.entity)}
      AND m.entity_key = findings.entity_key AND m.attribute = findings.attribute
      AND m.system IN ({sql_literal(left.system)}, {sql_literal(right.system)}))"""
    return _insert(
        left.entity,
        findings,
        f"""{quote(snapshot_table(left))} a JOIN {quote(snapshot_table(right))} b
        ON b.{key} = a.{key} AND NOT a.is_deleted AND NOT b.is_deleted""",
        {alias: [catalog.key, *shared_attributes(left, right)] for alias in ("a", "b")},
        keep=f"NOT {explained}",
    )


# -- comparing values ------------------------------------------------------------------------------


def equal(attribute: Attribute, left: str, right: str) -> str:
    """SQL true when two values of the attribute agree under the catalog's comparison rules.

    Identical values are settled first, so the costlier rule (regular expressions, lists) runs
    only on the few rows that differ: it halved the diff of a million rows.
    """
    return f"(CASE WHEN {left} IS NOT DISTINCT FROM {right} THEN true ELSE {_by_rule(attribute, left, right)} END)"


def _by_rule(attribute: Attribute, left: str, right: str) -> str:
    if attribute.type == "decimal":
        both_null = f"({left} IS NULL AND {right} IS NULL)"
        return f"({both_null} OR coalesce(abs({left} - {right}) <= {attribute.tolerance!r}, false))"
    if attribute.type == "timestamp":
        if attribute.timestamp_precision:
            unit = sql_literal(attribute.timestamp_precision)
            left = f"date_trunc({unit}, timezone('UTC', {left}))"
            right = f"date_trunc({unit}, timezone('UTC', {right}))"
        return f"({left} IS NOT DISTINCT FROM {right})"
    if attribute.type == "boolean":
        return f"({left} IS NOT DISTINCT FROM {right})"
    left, right = comparable_text(attribute, left), comparable_text(attribute, right)
    if attribute.type == "enum":
        # A lossy vocabulary gives 'inactive|suspended': equal when any value is shared.
        shared = f"list_has_any(string_split({left}, '|'), string_split({right}, '|'))"
        return f"(({left} IS NULL AND {right} IS NULL) OR coalesce({shared}, false))"
    return f"({left} IS NOT DISTINCT FROM {right})"


def comparable_text(attribute: Attribute, value: str) -> str:
    """Text as compared: NULL and '' alike; per the catalog, spaces and case ignored."""
    if attribute.compare == "exact":
        return f"NULLIF({value}, '')"
    spaced = f"NULLIF(regexp_replace(trim({value}), '\\s+', ' ', 'g'), '')"
    return f"lower({spaced})" if attribute.compare == "casefold" else spaced


def display(attribute: Attribute, value: str) -> str:
    """A value as text for the discrepancies table; timestamps in UTC, ISO 8601; a PII value as
    its keyed fingerprint (sync_assets/security/fingerprint.py).

    Nothing reads a PII value back from the discrepancies (missed events read the snapshot,
    corrections the golden record): what people see there only has to tell whether two values
    are the same, which the fingerprint does without showing either.
    """
    if attribute.type == "timestamp":
        text = f"strftime(timezone('UTC', {value}), '%Y-%m-%dT%H:%M:%SZ')"
    else:
        text = f"CAST({value} AS VARCHAR)"
    return f"pii_mask({text})" if attribute.pii else text
