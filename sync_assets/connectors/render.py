"""Writing to a system: catalog values turned into the system's own columns and conventions.

The inverse of the normalization in `reconcile/snapshot.py`. `render_values` gives the raw column
values the system would have written itself (its case, date format, cents, vocabulary), so a row
written by a correction reads back, normalized, as the catalog values it was given; a test
round-trips every mapping through both directions.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from collections.abc import Mapping as MappingType
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sync_assets.catalog.entities import Attribute
from sync_assets.connectors.mappings import Field, Lookup, Mapping
from sync_assets.project import current


class UnwritableField(ValueError):
    """The mapping cannot write this attribute (it is looked up through another table)."""


def render_values(mapping: Mapping, values: MappingType[str, Any]) -> dict[str, Any]:
    """Canonical attribute values (as JSON gives them) -> the system's raw column values."""
    catalog = current().entity(mapping.entity)
    row: dict[str, Any] = {}
    for name, value in values.items():
        f = mapping.field_for(name)
        if isinstance(f.source, Lookup):
            raise UnwritableField(
                f"{mapping.name}.{name} is read through {f.source.table}; it cannot be written"
            )
        row[f.source] = render_field(f, catalog.attribute(name), value)
    return row


def columns_written(
    mapping: Mapping,
    action: str,
    values: MappingType[str, Any],
    *,
    now: datetime,
    creating: bool,
    native: Collection[str] = (),
) -> dict[str, Any]:
    """The system's raw columns a `created`, `updated` or (soft-)`deleted` record is written
    with: the values rendered, the lifecycle marker (live on a create, deleted on a delete) and
    the stamps the system puts on its own writes."""
    columns = render_values(mapping, values)
    if action in ("created", "deleted"):
        columns |= lifecycle_values(mapping, deleted=action == "deleted")
    return columns | stamp_values(mapping, creating=creating, now=now, native=native)


def render_key(mapping: Mapping, key: str) -> tuple[str, str]:
    """The column holding the canonical key, and the key as the system writes it."""
    source = mapping.canonical_key.source
    if isinstance(source, Lookup):
        raise UnwritableField(f"{mapping.name}: its key is looked up; records cannot be matched")
    return source, key


def lifecycle_values(mapping: Mapping, *, deleted: bool) -> dict[str, Any]:
    """The soft-delete marker for a deleted record, or its live value where no field writes it."""
    marker = mapping.soft_delete
    if marker is None:
        return {}
    if deleted:
        return {marker.column: marker.value}
    return {} if marker.live is None else {marker.column: marker.live}


def stamp_values(
    mapping: Mapping, *, creating: bool, now: datetime, native: Collection[str] = ()
) -> dict[str, Any]:
    """The columns the system stamps itself on a write (and on a create); a column in `native`
    (a DATE or TIMESTAMP column of a database) takes the moment itself, not text."""
    stamps: dict[str, Any] = {}
    for stamp in mapping.stamps:
        if stamp.on == "create" and not creating:
            continue
        if stamp.column in native:
            stamps[stamp.column] = now
        elif stamp.format == "epoch":
            stamps[stamp.column] = int(now.timestamp())
        else:
            stamps[stamp.column] = now.strftime(stamp.format)
    return stamps


def render_field(f: Field, attribute: Attribute, value: Any) -> Any:
    if value is None:
        return None
    match f.rule:
        case "cents":
            return int((Decimal(str(value)) * 100).to_integral_value())
        case "decimal":
            return str(Decimal(str(value)))
        case "boolean":
            return int(_boolean(value))
        case "epoch":
            return int(_timestamp(value).timestamp())
        case "timestamp":
            assert f.format, f"{f.attribute}: a timestamp rule needs a format"
            return _timestamp(value).strftime(f.format)
        case "vocabulary":
            return _word_for(f, str(value))
    return _styled(str(value), f.style or _style_of_rule(f))


def _style_of_rule(f: Field) -> str:
    return f.rule if f.rule in ("lower", "upper") else "as_is"


def _styled(text: str, style: str) -> str:
    match style:
        case "lower":
            return text.lower()
        case "upper":
            return text.upper()
        case "capitalize":
            return text.capitalize()
    return text


def _word_for(f: Field, value: str) -> str:
    """The system word for a catalog value; a lossy word stands for several values."""
    for word, meaning in f.vocabulary.items():
        if value == meaning or (not isinstance(meaning, str) and value in meaning):
            return word
    raise UnwritableField(f"{f.attribute}: the system has no word for {value!r}")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "t", "yes", "y")


def _timestamp(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_json(values: MappingType[str, Any]) -> str:
    """Catalog values as JSON: decimals as exact strings, timestamps in ISO 8601 UTC."""
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _timestamp(value).isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
