"""SQL destinations: corrections written to a system's own tables through SQLAlchemy.

A batch is one transaction. Two bookkeeping tables live beside the system's tables and change in
the same transaction as the rows:

- `syncfabric_versions` (table_name, entity_key, version): the golden version each row was last
  written at. A delivery of an older version is `superseded`: a late or reordered delivery cannot
  roll a row back. The same version is written again: the row drifted again since, or a
  compensation puts back what a correction wrote (and the version held before it).
- `syncfabric_applied` (idempotency_key, ...): one row per correction applied. A key already there
  is a `duplicate`; its primary key makes applying one twice impossible, and is the destination's
  own proof.

Just before writing, in the same transaction, each correction is re-checked against the row as
it is now (`deliver/recheck.py`): a row that already holds the values is not written (`in_sync`),
and a row that changed since the reconciliation saw it is not overwritten (`changed`). The rows
are read `FOR UPDATE` on the servers, so no one can change them between that check and the write
(SQLite takes the database's write lock instead, and a writer in between makes the batch fail
transiently, to be read again).

Creates are dialect-aware upserts (PostgreSQL and SQLite `ON CONFLICT DO UPDATE`, MariaDB/MySQL
`ON DUPLICATE KEY UPDATE`) on the canonical key, so a soft-deleted row is revived in place.
Updates set only the corrected columns. Deletes follow the system: a soft-delete marker, or the
row removed. A batch failing on a constraint is retried one delivery at a time, so one bad row
does not hold back the others. Lost connections, lock timeouts and deadlocks are transient.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from sync_assets.connectors.mappings import Mapping
from sync_assets.connectors.render import UnwritableField, columns_written, render_key
from sync_assets.deliver.engine import Delivery, Outcome
from sync_assets.deliver.recheck import judge

TRANSIENT_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)

ledger = sa.MetaData()
VERSIONS = sa.Table(
    "syncfabric_versions",
    ledger,
    sa.Column("table_name", sa.String(64), primary_key=True),
    sa.Column("entity_key", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(128), nullable=False),
)
APPLIED = sa.Table(
    "syncfabric_applied",
    ledger,
    sa.Column("idempotency_key", sa.String(64), primary_key=True),
    sa.Column("correction_id", sa.String(64), nullable=False),
    sa.Column("entity", sa.String(32), nullable=False),
    sa.Column("entity_key", sa.String(64), nullable=False),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)
LEDGER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    VERSIONS.name: ("SELECT", "INSERT", "DELETE"),
    APPLIED.name: ("SELECT", "INSERT"),
}
"""What a delivery does to the bookkeeping tables (`_held_versions`, `_applied_keys`, `_record`),
and so all a writer role needs there (`syncctl grants`). Change it with the code that uses them."""


class SqlDestination:
    def __init__(
        self, name: str, engine: sa.Engine, mappings: dict[str, Mapping], batch_size: int = 500
    ) -> None:
        self.name = name
        self.engine = engine
        self.mappings = mappings
        """Entity -> how this system stores it."""
        self.batch_size = batch_size
        self._tables: dict[str, sa.Table] = {}
        self._ready = False

    def close(self) -> None:
        self.engine.dispose()

    def deliver(self, batch: Sequence[Delivery]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        for entity_name in dict.fromkeys(d.entity for d in batch):
            group = [d for d in batch if d.entity == entity_name]
            outcomes.update(self._deliver_group(self.mappings[entity_name], group))
        return [outcomes[d.correction_id] for d in batch]

    def _deliver_group(self, mapping: Mapping, group: list[Delivery]) -> dict[str, Outcome]:
        try:
            return self._apply(mapping, group)
        except TRANSIENT_ERRORS as error:
            return {d.correction_id: Outcome("transient", _message(error)) for d in group}
        except (sa.exc.SQLAlchemyError, UnwritableField, ValueError) as error:
            if len(group) == 1:
                return {group[0].correction_id: Outcome("permanent", _message(error))}
            outcomes: dict[str, Outcome] = {}
            for delivery in group:  # isolate the delivery that fails
                outcomes.update(self._deliver_group(mapping, [delivery]))
            return outcomes

    # -- one transaction ---------------------------------------------------------------------------

    def _apply(self, mapping: Mapping, group: list[Delivery]) -> dict[str, Outcome]:
        key_column, _ = render_key(mapping, "")
        self._prepare()
        with self.engine.begin() as conn:
            table = self._table(conn, mapping)
            keys = [d.entity_key for d in group]
            held = _held_versions(conn, mapping.table, keys)
            seen = _applied_keys(conn, [d.idempotency_key for d in group])
            before = _rows(conn, table, key_column, keys)
            judged = judge(mapping, group, before)
            outcomes, writes = {}, []
            for d in group:
                outcome = _screen(d, held, seen, before, judged)
                if outcome is None:
                    writes.append(d)
                    row = before.get(d.entity_key)
                    outcome = Outcome(
                        "applied",
                        previous={"row": _json_row(row), "version": held.get(d.entity_key)},
                    )
                outcomes[d.correction_id] = outcome
            _write(conn, table, mapping, key_column, writes, before)
            _record(conn, mapping, writes)
        return outcomes

    def _prepare(self) -> None:
        """The bookkeeping tables, in a transaction of their own: a batch rolled back on
        PostgreSQL would take their creation with it."""
        if not self._ready:
            with self.engine.begin() as conn:
                ledger.create_all(conn, checkfirst=True)
            self._ready = True

    def _table(self, conn: sa.Connection, mapping: Mapping) -> sa.Table:
        if mapping.entity not in self._tables:
            self._tables[mapping.entity] = sa.Table(
                mapping.table, sa.MetaData(schema=mapping.schema), autoload_with=conn
            )
        return self._tables[mapping.entity]


def _screen(
    d: Delivery,
    held: dict[str, str],
    seen: set[str],
    before: dict[str, dict[str, Any]],
    judged: dict[str, Outcome],
) -> Outcome | None:
    """Why a delivery must not be written, or None when it must: the ledger first (a delivery
    applied before a crash is a duplicate, whatever the row holds now), then the version, then
    the row itself (`judged`: in_sync or changed)."""
    if d.idempotency_key in seen:
        return Outcome("duplicate")
    current = held.get(d.entity_key)
    if d.action == "compensated":  # undo only what is still there: the version it undoes
        if current != d.version:
            return Outcome("superseded", "a newer version was written since; nothing to undo")
        return None
    if current is not None and d.version < current:
        return Outcome("superseded", f"the destination holds the newer version {current}")
    if d.correction_id in judged:
        return judged[d.correction_id]
    if d.action == "updated" and d.entity_key not in before:
        return Outcome("permanent", "no row to update; the next reconciliation will create it")
    return None


def _held_versions(conn: sa.Connection, table_name: str, keys: list[str]) -> dict[str, str]:
    found = conn.execute(
        sa.select(VERSIONS.c.entity_key, VERSIONS.c.version).where(
            VERSIONS.c.table_name == table_name, VERSIONS.c.entity_key.in_(keys)
        )
    )
    return {key: version for key, version in found}


def _applied_keys(conn: sa.Connection, keys: list[str]) -> set[str]:
    found = conn.execute(
        sa.select(APPLIED.c.idempotency_key).where(APPLIED.c.idempotency_key.in_(keys))
    )
    return set(found.scalars())


def _rows(
    conn: sa.Connection, table: sa.Table, key_column: str, keys: list[str]
) -> dict[str, dict[str, Any]]:
    # FOR UPDATE: the rows stay as read until the batch commits (SQLite renders nothing here).
    found = conn.execute(sa.select(table).where(table.c[key_column].in_(keys)).with_for_update())
    # A CHAR key comes back padded with spaces; the catalog's key has none.
    return {str(row[key_column]).strip(): dict(row) for row in found.mappings()}


def _write(
    conn: sa.Connection,
    table: sa.Table,
    mapping: Mapping,
    key_column: str,
    writes: list[Delivery],
    before: dict[str, dict[str, Any]],
) -> None:
    creates: list[dict[str, Any]] = []
    native = _temporal_columns(table)
    for d in writes:
        now = d.emitted_at or datetime.now(UTC)
        key = table.c[key_column] == d.entity_key
        if d.action == "created":
            columns = columns_written(
                mapping, d.action, d.values,
                now=now, creating=d.entity_key not in before, native=native,
            )  # fmt: skip
            creates.append(_coerced(table, {key_column: d.entity_key, **columns}))
        elif d.action == "deleted" and mapping.soft_delete is None:
            conn.execute(table.delete().where(key))
        elif d.action in ("updated", "deleted"):
            columns = columns_written(
                mapping, d.action, d.values, now=now, creating=False, native=native
            )
            conn.execute(table.update().where(key).values(_coerced(table, columns)))
        else:
            _restore(conn, table, key, d.values.get("row"))
    if creates:
        _assign_system_ids(conn, table, mapping, key_column, creates, before)
        _upsert(conn, table, key_column, creates)


def _restore(
    conn: sa.Connection, table: sa.Table, key: sa.ColumnElement, row: dict[str, Any] | None
) -> None:
    """Put a record back as it was before a correction: the row it had, or no row."""
    if row is None:
        conn.execute(table.delete().where(key))
        return
    values = {c: v for c, v in row.items() if c not in table.primary_key.columns}
    conn.execute(table.update().where(key).values(_coerced(table, values)))


def _assign_system_ids(
    conn: sa.Connection,
    table: sa.Table,
    mapping: Mapping,
    key_column: str,
    creates: list[dict[str, Any]],
    before: dict[str, dict[str, Any]],
) -> None:
    """The system's own ids (an account number) for new rows: kept for a revived row, else the
    next free numbers. A real system's API assigns these; its tables are written here."""
    for column in (c for c in mapping.key if c != key_column):
        following = conn.execute(sa.select(sa.func.max(table.c[column]))).scalar() or 0
        for row in creates:
            existing = before.get(row[key_column])
            if existing is not None:
                row[column] = existing[column]
            else:
                following += 1
                row[column] = following


def _upsert(
    conn: sa.Connection, table: sa.Table, key_column: str, rows: list[dict[str, Any]]
) -> None:
    """Insert rows, or update them where the key exists: one statement for the dialect."""
    names = list(rows[0])
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
        update = {c: insert.excluded[c] for c in names if c != key_column}
        statement = insert.on_conflict_do_update(index_elements=[key_column], set_=update)
    elif dialect in ("mysql", "mariadb"):
        insert = mysql.insert(table)
        update = {c: insert.inserted[c] for c in names if c != key_column}
        statement = insert.on_duplicate_key_update(update)
    else:
        raise ValueError(f"no upsert for the {dialect} dialect")
    conn.execute(statement, rows)


def _record(conn: sa.Connection, mapping: Mapping, writes: list[Delivery]) -> None:
    if not writes:
        return
    now = datetime.now(UTC)
    # The last write of a key wins; a compensation puts back the version held before.
    versions = {d.entity_key: _version_after(d) for d in writes}
    conn.execute(
        VERSIONS.delete().where(
            VERSIONS.c.table_name == mapping.table, VERSIONS.c.entity_key.in_(list(versions))
        )
    )
    held = [
        {"table_name": mapping.table, "entity_key": key, "version": version}
        for key, version in versions.items()
        if version is not None
    ]
    if held:
        conn.execute(VERSIONS.insert(), held)
    conn.execute(
        APPLIED.insert(),
        [
            {
                "idempotency_key": d.idempotency_key,
                "correction_id": d.correction_id,
                "entity": mapping.entity,
                "entity_key": d.entity_key,
                "version": d.version,
                "applied_at": now,
            }
            for d in writes
        ],
    )


def _version_after(d: Delivery) -> str | None:
    return d.values.get("version") if d.action == "compensated" else d.version


# -- values ----------------------------------------------------------------------------------------


def _temporal_columns(table: sa.Table) -> set[str]:
    """Columns of a DATE or TIMESTAMP type: a stamp goes in as a moment, not as text."""
    found = set()
    for column in table.columns:
        try:
            if column.type.python_type in (date, datetime):
                found.add(column.name)
        except NotImplementedError:
            continue
    return found


def _coerced(table: sa.Table, values: dict[str, Any]) -> dict[str, Any]:
    """Values in the Python types of the table's columns (a '1' for an INTEGER column, say):
    servers, unlike SQLite, refuse text for numbers. Unknown columns are refused by name."""
    coerced = {}
    for name, value in values.items():
        if name not in table.c:
            raise ValueError(f"{table.name} has no column {name!r}; fix the mapping")
        coerced[name] = _coerce(table.c[name].type, value)
    return coerced


def _coerce(column_type: sa.types.TypeEngine, value: Any) -> Any:
    if value is None:
        return None
    try:
        python_type = column_type.python_type
    except NotImplementedError:
        return value
    if python_type is bool:
        return str(value).strip().lower() in ("1", "true", "t", "yes", "y")
    if python_type is int:
        return int(value)
    if python_type is Decimal:
        return Decimal(str(value))
    if python_type is float:
        return float(value)
    if python_type is datetime and not isinstance(value, datetime):
        return datetime.fromisoformat(str(value))
    if python_type is date and isinstance(value, datetime):
        return value.date()
    if python_type is date and not isinstance(value, date):
        return date.fromisoformat(str(value))
    if python_type is str:
        return str(value)
    return value


def _json_row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row as JSON can hold it (decimals and times as text), for a later compensation."""
    if row is None:
        return None
    return json.loads(json.dumps(row, default=str))


def _message(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return f"{type(original).__name__}: {text[0] if text else ''}"
