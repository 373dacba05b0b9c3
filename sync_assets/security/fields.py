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
from collections.abc import Callable
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


WHOLE = (("attributes", COMPENSATION_ATTRIBUTES), ("event", COMPENSATION_EVENT))
"""A compensation's columns, sealed whole: they hold the target's raw columns."""


def seal_correction(sealer: Sealer, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """A correction row as stored: PII values sealed in `attributes`, `event` and `seen`, and the
    row it replaced (`previous`) sealed whole."""
    if row.get("kind") == "compensation":
        sealed = {**row, **{c: sealer.seal(n, row[c]) for c, n in WHOLE if row.get(c) is not None}}
    else:
        sealed = _each_catalog_json(row, lambda values: seal_values(sealer, entity, values))
    if row.get("previous") is not None:
        sealed["previous"] = sealer.seal(PREVIOUS, row["previous"])
    return sealed


def open_correction(sealer: Sealer, entity: Entity, row: dict[str, Any]) -> dict[str, Any]:
    """A stored correction row with its PII opened (the columns it holds, JSON as text)."""
    if row.get("kind") == "compensation":
        opened = {**row, **{c: sealer.open(n, row[c]) for c, n in WHOLE if row.get(c) is not None}}
    else:
        opened = _each_catalog_json(row, lambda values: open_values(sealer, entity, values))
    if row.get("previous") is not None:
        opened["previous"] = sealer.open(PREVIOUS, row["previous"])
    return opened


def _each_catalog_json(
    row: dict[str, Any], convert: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """The row with `convert` applied to the catalog values its JSON columns hold: the
    `attributes` to set, the event's `data`, and the values the reconciliation `seen`."""
    converted = dict(row)
    if row.get("attributes") is not None:
        converted["attributes"] = _dumps(convert(json.loads(row["attributes"])))
    if row.get("event") is not None:
        event = json.loads(row["event"])
        if isinstance(event.get("data"), dict):
            event["data"] = convert(event["data"])
        converted["event"] = json.dumps(event, separators=(",", ":"))
    if row.get("seen") is not None:
        seen = json.loads(row["seen"])
        if isinstance(seen.get("values"), dict):
            seen["values"] = convert(seen["values"])
        converted["seen"] = _dumps(seen)
    return converted


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
