"""How a system stores a catalog entity, as the pipeline reads it.

One `Mapping` per (system, entity) says where the rows are, which column holds the canonical key,
which canonical attribute each column holds and how its values are normalized, how a deleted
record shows, and which golden records the system is expected to hold at all. The mappings are
data the team owns: `systems/<system>.yaml` in the project folder (`sync_assets/project/`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Rule = Literal[
    "text",  # trimmed; empty means NULL
    "lower",  # trimmed, lower case
    "upper",  # trimmed, upper case
    "phone",  # '+44 7700 900123' -> '+447700900123' (E.164)
    "cents",  # integer cents -> decimal amount
    "decimal",  # a decimal amount as it is
    "boolean",  # 1/0, true/false, yes/no
    "epoch",  # epoch seconds -> UTC timestamp
    "timestamp",  # text in `format` (strptime), in UTC -> UTC timestamp
    "vocabulary",  # the system's words -> catalog values, see Field.vocabulary
]

Style = Literal["as_is", "lower", "upper", "capitalize"]
"""How a system writes text it receives: a correction is written the way the system writes it."""


@dataclass(frozen=True)
class Lookup:
    """A value found in another table of the same system (a cross-reference)."""

    table: str
    on: dict[str, str]
    """Column here -> column there; several pairs for a composite key."""
    value: str
    """The column there that holds the value wanted."""


@dataclass(frozen=True)
class Field:
    attribute: str
    """The catalog attribute, or the entity's key."""
    source: str | Lookup
    """The column holding it, or a lookup through another table."""
    rule: Rule = "text"
    format: str | None = None
    """strptime format of a `timestamp` column, e.g. '%d/%m/%Y %H:%M'."""
    vocabulary: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    """System word (any case) -> catalog value. A word standing for several catalog values (a
    lossy vocabulary) maps to all of them, and matches any of them when compared."""
    style: Style | None = None
    """How the system writes the text; None: as the rule reads it (lower, upper, else as is)."""


@dataclass(frozen=True)
class SoftDelete:
    """The system keeps a deleted record's row and marks it: `column` holds `value`."""

    column: str
    value: str
    """Compared as text, ignoring case."""
    live: str | None = None
    """What the column holds while the record lives, when no field writes it (e.g. '0')."""


@dataclass(frozen=True)
class Stamp:
    """A column the system fills itself (a creation date, a last-change time), which a write
    made by Syncfabric must fill the same way: `format` is a strftime format or 'epoch'."""

    column: str
    format: str
    on: Literal["create", "write"] = "write"


@dataclass(frozen=True)
class Mapping:
    system: str
    entity: str
    table: str
    key: tuple[str, ...]
    """The system's own primary key column(s)."""
    canonical_key: Field
    fields: tuple[Field, ...]
    soft_delete: SoftDelete | None
    """None: the system hard-deletes, a deleted record's row is gone."""
    scope: tuple[str, ...] = ()
    """Golden attributes a live record must have (not NULL) for the system to hold it."""
    stamps: tuple[Stamp, ...] = ()
    schema: str | None = None
    description: str = ""

    @property
    def name(self) -> str:
        return f"{self.system}_{self.entity}"

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(f.attribute for f in self.fields)

    def field_for(self, attribute: str) -> Field:
        return next(f for f in self.fields if f.attribute == attribute)


def raw_name(source: str | Lookup) -> str:
    """The name a source's values carry in the raw rows streamed from the system."""
    if isinstance(source, Lookup):
        return f"{source.table}.{source.value}"
    return source


def raw_columns(mapping: Mapping) -> tuple[str, ...]:
    """Every raw column a mapping reads: its keys, its fields and its delete marker."""
    names = [*mapping.key, raw_name(mapping.canonical_key.source)]
    names += [raw_name(f.source) for f in mapping.fields]
    if mapping.soft_delete:
        names.append(mapping.soft_delete.column)
    return tuple(dict.fromkeys(names))


def shared_attributes(left: Mapping, right: Mapping) -> tuple[str, ...]:
    return tuple(a for a in left.attributes if a in right.attributes)


def needed_columns(mapping: Mapping) -> dict[str, set[str]]:
    """Table -> every column the mapping names there: what a snapshot reads (keys, fields, the
    delete marker, and the columns its lookups read in other tables) and the stamps a delivery
    writes. `validate --connect` checks they exist; `syncctl grants` lets the reader read them."""
    needed: dict[str, set[str]] = {mapping.table: set(mapping.key)}
    main = needed[mapping.table]
    sources = [mapping.canonical_key.source, *(f.source for f in mapping.fields)]
    for source in sources:
        if isinstance(source, Lookup):
            main.update(source.on)
            needed.setdefault(source.table, set()).update({*source.on.values(), source.value})
        else:
            main.add(source)
    if mapping.soft_delete:
        main.add(mapping.soft_delete.column)
    main.update(stamp.column for stamp in mapping.stamps)
    return needed
