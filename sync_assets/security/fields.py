"""Which stored values are PII, and sealing them: the catalog's `pii: true` attributes.

A PII attribute's value is sealed field by field where the rest of the record stays readable
(validated events' columns, the catalog values in corrections), with the field `<entity>.<attribute>`
as associated data. Where a text's structure is not the catalog's, it is sealed whole:

- a raw line (`raw_events.line`, `dead_letters.payload`) may be malformed JSON, which is why it
  is a dead letter: no parser can be trusted to find its PII fields, so the line is sealed whole
  (its size, arrival, decode error, source and event id stay in their own columns);
- the target's row before a correction (`corrections.previous`) and a compensation's values
  carry the system's raw columns, which the catalog does not all describe.
"""

from __future__ import annotations

import json
from typing import Any

from sync_assets.catalog.entities import Entity
from sync_assets.security.crypto import Sealer

RAW_LINE = "raw_events.line"
DEAD_LETTER_PAYLOAD = "dead_letters.payload"
PREVIOUS = "corrections.previous"
COMPENSATION_ATTRIBUTES = "corrections.attributes"
COMPENSATION_EVENT = "corrections.event"


def field_name(entity: Entity, attribute: str) -> str:
    """The associated data of an attribute's sealed values."""
    return f"{entity.name}.{attribute}"


def seal_values(sealer: Sealer, entity: Entity, values: dict[str, Any]) -> dict[str, Any]:
    """The values with each PII attribute's (not null) sealed, as text."""
    pii = entity.pii_attributes
    return {
        name: sealer.seal(field_name(entity, name), _text(value))
        if name in pii and value is not None
        else value
        for name, value in values.items()
    }


def open_values(sealer: Sealer, entity: Entity, values: dict[str, Any]) -> dict[str, Any]:
    pii = entity.pii_attributes
    return {
        name: sealer.open(field_name(entity, name), value)
        if name in pii and isinstance(value, str)
        else value
        for name, value in values.items()
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


# -- corrections: their JSON columns ---------------------------------------------------------------


def seal_correction(sealer: Sealer, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """A correction row as stored: PII values sealed in `attributes`, `event` and `seen`."""
    if row.get("kind") == "compensation":
        return {
            **row,
            "attributes": sealer.seal(COMPENSATION_ATTRIBUTES, row["attributes"]),
            "event": sealer.seal(COMPENSATION_EVENT, row["event"]),
        }
    sealed = dict(row)
    sealed["attributes"] = _dumps(seal_values(sealer, entity, json.loads(row["attributes"])))
    event = json.loads(row["event"])
    if isinstance(event.get("data"), dict):
        event["data"] = seal_values(sealer, entity, event["data"])
    sealed["event"] = json.dumps(event, separators=(",", ":"))
    if row.get("seen") is not None:
        seen = json.loads(row["seen"])
        if isinstance(seen.get("values"), dict):
            seen["values"] = seal_values(sealer, entity, seen["values"])
        sealed["seen"] = _dumps(seen)
    return sealed


def open_correction(sealer: Sealer, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """A stored correction row with its PII opened (the columns it holds, JSON as text)."""
    opened = dict(row)
    if row.get("kind") == "compensation":
        for column, name in (
            ("attributes", COMPENSATION_ATTRIBUTES),
            ("event", COMPENSATION_EVENT),
        ):
            if row.get(column) is not None:
                opened[column] = sealer.open(name, row[column])
    else:
        if row.get("attributes") is not None:
            opened["attributes"] = _dumps(
                open_values(sealer, entity, json.loads(row["attributes"]))
            )
        if row.get("event") is not None:
            event = json.loads(row["event"])
            if isinstance(event.get("data"), dict):
                event["data"] = open_values(sealer, entity, event["data"])
            opened["event"] = json.dumps(event, separators=(",", ":"))
        if row.get("seen") is not None:
            seen = json.loads(row["seen"])
            if isinstance(seen.get("values"), dict):
                seen["values"] = open_values(sealer, entity, seen["values"])
            opened["seen"] = _dumps(seen)
    if row.get("previous") is not None:
        opened["previous"] = sealer.open(PREVIOUS, row["previous"])
    return opened


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
