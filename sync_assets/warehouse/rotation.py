"""Where sealed PII is stored, how much of it each key holds, and re-sealing it under the current key.

`syncctl keys` reports `status`; `syncctl keys rotate` runs `rotate`. Rotating goes through each
place in pages of `batch_size` rows by its natural key, each page in its own short transaction:
the old key stays in the keyring meanwhile, so readers open old and new tokens alike throughout,
and a crash leaves every page either re-sealed or not. Values already under the current key are
left as they are, so running it again re-seals nothing. A clear value in a sealed column (a
warehouse written before sealing) is sealed on the way; corrections written before sealing keep
their JSON as it was (they are delivered or superseded by the next reconciliation).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb

from sync_assets.project import current
from sync_assets.security.crypto import PREFIX, TOKEN_KEY_IDS, Sealer, key_id_of
from sync_assets.security.fields import (
    DEAD_LETTER_PAYLOAD,
    RAW_LINE,
    field_name,
    open_correction,
    seal_correction,
)
from sync_assets.security.sql import pii_of
from sync_assets.warehouse import quote, registered, sql_literal, transaction

Kind = Literal["value", "correction"]


@dataclass(frozen=True)
class Place:
    """A column holding sealed PII: a token per value, or a correction's JSON columns."""

    table: str
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    kind: Kind
    field: str = ""
    """The associated data of a `value` column's tokens."""

    @property
    def name(self) -> str:
        return f"{self.table}.{','.join(self.columns)}"


CORRECTION_COLUMNS = ("attributes", "event", "seen", "previous")


def places() -> list[Place]:
    """Every place of the current project's warehouse that holds sealed PII."""
    found = [
        Place("raw_events", ("line",), ("batch_id", "line_no"), "value", RAW_LINE),
        Place("dead_letters", ("payload",), ("batch_id", "line_no"), "value", DEAD_LETTER_PAYLOAD),
    ]
    for entity in current().entities.values():
        for attribute in entity.attributes:
            if attribute.pii:
                found.append(
                    Place(
                        entity.events_table,
                        (attribute.name,),
                        ("batch_id", "line_no"),
                        "value",
                        field_name(entity, attribute.name),
                    )
                )
    found.append(Place("corrections", CORRECTION_COLUMNS, ("correction_id",), "correction"))
    return found


@dataclass
class Status:
    origin: str
    current_id: str
    ring: list[str]
    by_key: dict[str, Counter[str]] = field(default_factory=dict)
    """Per place: tokens per key id, and `clear` for values not sealed yet."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "keys_from": self.origin,
            "current_key_id": self.current_id,
            "keyring": self.ring,
            "tokens": {place: dict(counts) for place, counts in self.by_key.items()},
        }


def status(con: duckdb.DuckDBPyConnection) -> Status:
    """Key ids in use and how many tokens each seals, per place; never a key."""
    ring = pii_of(con).keyring
    result = Status(ring.origin, ring.current_id, ring.ids)
    for place in places():
        counts: Counter[str] = Counter()
        for column in place.columns:
            c = quote(column)
            found = con.execute(
                f"""SELECT kid, count(*) FROM (
                        SELECT unnest(regexp_extract_all({c}, {sql_literal(TOKEN_KEY_IDS)}, 1)) AS kid
                        FROM {quote(place.table)}) GROUP BY kid"""
            ).fetchall()
            counts.update(dict(found))
            if place.kind == "value":
                [(clear,)] = con.execute(
                    f"SELECT count(*) FROM {quote(place.table)} "
                    f"WHERE {c} IS NOT NULL AND NOT starts_with({c}, {sql_literal(PREFIX)})"
                ).fetchall()
                if clear:
                    counts["clear"] += clear
        result.by_key[place.name] = counts
    return result


def rotate(con: duckdb.DuckDBPyConnection, batch_size: int = 5000) -> dict[str, int]:
    """Re-seal every token not under the current key (and seal clear values); how many values,
    per place. Each page of `batch_size` rows commits on its own."""
    sealer = pii_of(con).sealer
    return {place.name: _rotate_place(con, sealer, place, batch_size) for place in places()}


def _stale(sealer: Sealer, value: str | None) -> bool:
    if value is None:
        return False
    if not value.startswith(PREFIX):
        return True
    return key_id_of(value) != sealer.keyring.current_id


def _stale_json(sealer: Sealer, value: str | None) -> bool:
    if value is None:
        return False
    if value.startswith(PREFIX):
        return _stale(sealer, value)
    return any(kid != sealer.keyring.current_id for kid in _TOKEN_IDS.findall(value))


def _rotate_place(
    con: duckdb.DuckDBPyConnection, sealer: Sealer, place: Place, batch_size: int
) -> int:
    keys = ", ".join(quote(k) for k in place.keys)
    columns = ", ".join(quote(c) for c in place.columns)
    extra = ", entity, kind" if place.kind == "correction" else ""
    after = "true"
    last: tuple | None = None
    resealed = 0
    while True:
        params: list[Any] = []
        if last is not None:
            after = f"({keys}) > ({', '.join('?' for _ in place.keys)})"
            params = list(last)
        with transaction(con):
            rows = con.execute(
                f"SELECT {keys}, {columns}{extra} FROM {quote(place.table)} "
                f"WHERE {after} ORDER BY {keys} LIMIT {int(batch_size)}",
                params,
            ).fetchall()
            if not rows:
                return resealed
            last = rows[-1][: len(place.keys)]
            updates = _resealed_rows(sealer, place, rows)
            if updates:
                _update(con, place, updates)
                resealed += (
                    len(updates)
                    if place.kind == "value"
                    else sum(_changed_values(u) for u in updates)
                )


def _resealed_rows(sealer: Sealer, place: Place, rows: list[tuple]) -> list[dict[str, Any]]:
    n = len(place.keys)
    updates = []
    for row in rows:
        key, values = row[:n], row[n : n + len(place.columns)]
        if place.kind == "value":
            (value,) = values
            if _stale(sealer, value):
                updates.append(
                    {
                        **dict(zip(place.keys, key, strict=True)),
                        place.columns[0]: sealer.reseal(place.field, value),
                    }
                )
            continue
        stored = dict(zip(place.columns, values, strict=True))
        stale = [c for c in place.columns if c != "previous" and _stale_json(sealer, stored[c])]
        if _stale(sealer, stored["previous"]):
            stale.append("previous")
        if not stale:
            continue
        entity_name, kind = row[n + len(place.columns) :]
        entity = current().entity(entity_name)
        opened = open_correction(sealer, entity, {**stored, "kind": kind})
        sealed = seal_correction(sealer, entity, {**opened, "kind": kind})
        updates.append(
            {
                **dict(zip(place.keys, key, strict=True)),
                **{c: sealed.get(c) for c in place.columns},
                "_changed": len(stale),
            }
        )
    return updates


def _changed_values(update: dict[str, Any]) -> int:
    return int(update["_changed"])


def _update(con: duckdb.DuckDBPyConnection, place: Place, updates: list[dict[str, Any]]) -> None:
    names = [*place.keys, *place.columns]
    frame = {name: [u[name] for u in updates] for name in names}
    with registered(con, "resealed_frame", frame) as name:
        assignments = ", ".join(f"{quote(c)} = r.{quote(c)}" for c in place.columns)
        match = " AND ".join(f"t.{quote(k)} = r.{quote(k)}" for k in place.keys)
        con.execute(f"UPDATE {quote(place.table)} t SET {assignments} FROM {name} r WHERE {match}")


_TOKEN_IDS = re.compile(TOKEN_KEY_IDS)
