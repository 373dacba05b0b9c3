"""Schema compatibility between versions of an event's payload, with Confluent's modes.

A new payload version is judged against the versions before it by asking "can a reader built for
one version read events written with another?". The answer follows Confluent Schema Registry's
Avro rules: a reader field the writer lacks needs a default (an optional field has an implicit
null one); writer fields the reader lacks are ignored; a reader field also matches the writer's
field under one of its `aliases` (a declared rename); a type may only widen (a decimal reader
reads integers) and a reader's enum must allow every value the writer can send.

The modes, as Confluent defines them:
- BACKWARD: consumers on the new version can read events written with the latest previous
  version. Upgrade consumers first. Deleting fields and adding optional ones is allowed.
- BACKWARD_TRANSITIVE (the default): the same, against every previous version, so the new
  version can replay the whole history, not only the last step.
- FORWARD: consumers still on the latest previous version can read events of the new version.
  Upgrade producers first. Adding fields and deleting optional ones is allowed.
- FORWARD_TRANSITIVE: the same, for consumers on any previous version.
- FULL: both BACKWARD and FORWARD with the latest previous version; only optional fields (or
  fields with defaults) may come and go, in either upgrade order.
- FULL_TRANSITIVE: both, with every previous version.
- NONE: no check; every change is accepted, and consumers may break.

Pure logic: no Dagster, no DuckDB, no files. The registry (contracts, change log, `syncctl schema`)
builds on `check`, `describe_changes` and the JSON forms here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

MODES = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)
DEFAULT_MODE = "BACKWARD_TRANSITIVE"
TYPES = ("string", "integer", "decimal", "boolean", "timestamp", "enum")
WIDENINGS = {("integer", "decimal")}
"""(writer type, reader type) pairs a reader converts safely besides identical types."""


@dataclass(frozen=True)
class FieldSchema:
    type: str
    required: bool = False
    """Must be present (and not null) in every event of this version."""
    default: object = None
    """A JSON value a reader uses when the writer's event lacks the field (None: no default)."""
    allowed: tuple[str, ...] = ()
    """The enum's values (type "enum" only)."""
    aliases: tuple[str, ...] = ()
    """Earlier names of this field a reader also accepts (a declared rename)."""

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"unknown field type {self.type!r}; use one of {', '.join(TYPES)}")
        if (self.type == "enum") != bool(self.allowed):
            raise ValueError("an enum field lists its allowed values, and only an enum does")

    def to_json(self) -> dict[str, Any]:
        """Attributes at their default are left out, so that adding one to this class later does
        not change the content hash of every contract already signed off."""
        out: dict[str, Any] = {"type": self.type}
        if self.required:
            out["required"] = True
        if self.default is not None:
            out["default"] = self.default
        if self.allowed:
            out["allowed"] = list(self.allowed)
        if self.aliases:
            out["aliases"] = list(self.aliases)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FieldSchema:
        return cls(
            type=d["type"],
            required=bool(d.get("required", False)),
            default=d.get("default"),
            allowed=tuple(d.get("allowed", ())),
            aliases=tuple(d.get("aliases", ())),
        )

    def describe(self) -> str:
        """In words, e.g. "enum of a, b, required, default 'a'"."""
        words = [f"enum of {', '.join(self.allowed)}" if self.type == "enum" else self.type]
        words.append("required" if self.required else "optional")
        if self.default is not None:
            words.append(f"default {json.dumps(self.default)}")
        if self.aliases:
            words.append(f"also read as {', '.join(self.aliases)}")
        return ", ".join(words)


@dataclass(frozen=True)
class VersionSchema:
    version: int
    fields: dict[str, FieldSchema] = field(default_factory=dict)
    """Payload field name -> its schema."""

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "fields": {n: f.to_json() for n, f in self.fields.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VersionSchema:
        fields = {n: FieldSchema.from_json(f) for n, f in d["fields"].items()}
        return cls(version=int(d["version"]), fields=fields)

    def content_hash(self) -> str:
        """sha256 of the canonical JSON (sorted keys, no spaces): the same on every run and
        machine, and different as soon as anything in the version changes."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    """One incompatible change, in words a person can act on."""

    field: str
    old: str
    new: str
    rule: str
    fix: str
    against: int
    """The version the change is incompatible with."""


@dataclass(frozen=True)
class _Mismatch:
    """Why a reader cannot read one field of a writer's events, before it is put in words."""

    field: str
    kind: str  # "missing" | "nullable" | "type" | "enum"
    reader: FieldSchema
    writer: FieldSchema | None
    values: tuple[str, ...] = ()  # the enum values the reader does not allow


def _mismatches(reader: VersionSchema, writer: VersionSchema) -> list[_Mismatch]:
    out = []
    for name, r in reader.fields.items():
        source = next((n for n in (name, *r.aliases) if n in writer.fields), None)
        w = writer.fields[source] if source is not None else None
        needs_value = r.required and r.default is None
        if w is None:
            if needs_value:
                out.append(_Mismatch(name, "missing", r, None))
        elif w.type != r.type and (w.type, r.type) not in WIDENINGS:
            out.append(_Mismatch(name, "type", r, w))
        elif r.type == "enum" and (unknown := tuple(v for v in w.allowed if v not in r.allowed)):
            out.append(_Mismatch(name, "enum", r, w, unknown))
        elif needs_value and not w.required:
            out.append(_Mismatch(name, "nullable", r, w))
    return out


def _detail(m: _Mismatch, reader_label: str, writer_label: str) -> str:
    f = m.field
    if m.kind == "missing":
        return f"field '{f}' is required and has no default, and {writer_label} does not have it"
    if m.kind == "nullable":
        return (
            f"field '{f}' is required and has no default, "
            f"but {writer_label} may leave it out or send null"
        )
    assert m.writer is not None
    if m.kind == "type":
        return f"field '{f}' is {m.writer.type} in {writer_label}, which a {m.reader.type} reader cannot read"
    return f"field '{f}' may carry {', '.join(m.values)} in {writer_label}, which {reader_label} does not allow"


def _fix(m: _Mismatch, new_reads_old: bool, old: VersionSchema, new: VersionSchema) -> str:
    f = m.field
    if new_reads_old:  # the new version is the reader: change how it reads, or give up BACKWARD
        return {
            "missing": f"give '{f}' a default, make it optional, declare its earlier name in "
            "aliases if it was renamed, or choose FORWARD compatibility",
            "nullable": f"give '{f}' a default or keep it optional, or choose FORWARD compatibility",
            "type": f"keep '{f}' as {m.writer.type if m.writer else ''} (only integer -> decimal "
            "widens safely), or add the new type as a field under a new name",
            "enum": f"keep {', '.join(m.values)} in the allowed values of '{f}', "
            "or choose FORWARD compatibility",
        }[m.kind]
    renamed = next((n for n, g in new.fields.items() if f in g.aliases), None)
    if m.kind == "missing" and renamed:
        return (
            f"keep sending '{f}' alongside '{renamed}' until no reader of version "
            f"{old.version} remains, or choose BACKWARD compatibility"
        )
    return {
        "missing": f"keep '{f}' in the new version (deprecate it first, remove it once no reader "
        f"of version {old.version} remains), or choose BACKWARD compatibility",
        "nullable": f"keep '{f}' required in the new version, or choose BACKWARD compatibility",
        "type": f"keep '{f}' as {m.reader.type}, or add the new type as a field under a new name",
        "enum": f"do not add {', '.join(m.values)} to '{f}' while readers of version "
        f"{old.version} remain, or choose BACKWARD compatibility",
    }[m.kind]


def _problems(
    prefix: str,
    reader: VersionSchema,
    writer: VersionSchema,
    new_reads_old: bool,
    labels: tuple[str, str],
) -> list[Problem]:
    """The mismatches of `reader` with `writer` in words; `labels` name (reader, writer)."""
    old, new = (writer, reader) if new_reads_old else (reader, writer)
    problems = []
    for m in _mismatches(reader, writer):
        old_field, new_field = (m.writer, m.reader) if new_reads_old else (m.reader, m.writer)
        problems.append(
            Problem(
                field=m.field,
                old=old_field.describe() if old_field else "absent",
                new=new_field.describe() if new_field else "absent",
                rule=f"{prefix}a reader of {labels[0]} cannot read events of {labels[1]}: "
                + _detail(m, *labels),
                fix=_fix(m, new_reads_old, old, new),
                against=old.version,
            )
        )
    return problems


def reader_problems(reader: VersionSchema, writer: VersionSchema) -> list[Problem]:
    """Can a reader of `reader` read events written with `writer`? [] if it can. `reader` is
    taken as the newer version: `old` describes the writer's field, `new` the reader's."""
    labels = (f"version {reader.version}", f"version {writer.version}")
    return _problems("", reader, writer, True, labels)


def check(mode: str, previous: list[VersionSchema], new: VersionSchema) -> list[Problem]:
    """Every incompatibility of `new` with `previous` (oldest first) under `mode`; [] when the
    new version is compatible. Problems are ordered by the version they concern."""
    if mode not in MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "NONE" or not previous:
        return []
    problems = []
    for old in previous if mode.endswith("_TRANSITIVE") else previous[-1:]:
        old_label, new_label = f"version {old.version}", "the new version"
        if mode.startswith(("BACKWARD", "FULL")):  # the new version reads the old one's events
            problems += _problems(f"{mode}: ", new, old, True, (new_label, old_label))
        if mode.startswith(("FORWARD", "FULL")):  # the old version reads the new one's events
            problems += _problems(f"{mode}: ", old, new, False, (old_label, new_label))
    return problems


def describe_changes(old: VersionSchema, new: VersionSchema) -> list[str]:
    """Every change from `old` to `new` in words, compatible or not, for the change log.

    A new field whose alias names a field `old` has and `new` no longer has is a rename."""
    changes = []
    renamed_from = {}
    for name, f in new.fields.items():
        gone = [a for a in f.aliases if a in old.fields and a not in new.fields]
        if name not in old.fields and gone:
            renamed_from[name] = gone[0]
    for name, f in new.fields.items():
        before_name = name if name in old.fields else renamed_from.get(name)
        if before_name is None:
            changes.append(f"added field '{name}' ({f.describe()})")
            continue
        before = old.fields[before_name]
        if before_name != name:  # a rename: the new alias is the rename itself, not a change
            changes.append(f"renamed field '{before_name}' to '{name}'")
            before = replace(before, aliases=f.aliases)
        if before != f:
            changes.append(f"changed field '{name}' from {before.describe()} to {f.describe()}")
        if before.type == f.type == "enum" and before.allowed != f.allowed:
            added = [v for v in f.allowed if v not in before.allowed]
            removed = [v for v in before.allowed if v not in f.allowed]
            if added:
                changes.append(f"field '{name}' allows new values {', '.join(added)}")
            if removed:
                changes.append(f"field '{name}' no longer allows {', '.join(removed)}")
    for name, f in old.fields.items():
        if name not in new.fields and name not in renamed_from.values():
            changes.append(f"removed field '{name}' ({f.describe()})")
    return changes
