"""Compatibility modes: each kind of schema change against every mode, with the verdict
Confluent's Avro rules give; transitive against non-transitive checks; the words of a problem;
the JSON forms and content hash the change log relies on; the change summary."""

from __future__ import annotations

import hashlib
import re

import pytest

from sync_assets.catalog.compatibility import (
    DEFAULT_MODE,
    MODES,
    FieldSchema,
    VersionSchema,
    check,
    describe_changes,
    reader_problems,
)

ID = FieldSchema("string", required=True)
STRING = FieldSchema("string")
BOOLEAN = FieldSchema("boolean")


def v(version: int, **fields: FieldSchema) -> VersionSchema:
    return VersionSchema(version, {"id": ID, **fields})


BACKWARDS = {"BACKWARD", "BACKWARD_TRANSITIVE", "NONE"}
FORWARDS = {"FORWARD", "FORWARD_TRANSITIVE", "NONE"}
ALL = set(MODES)
ONLY_NONE = {"NONE"}

# change -> (version 1, version 2, the modes that accept version 2 after version 1).
# BACKWARD: version 2 reads version 1's events; FORWARD: version 1 reads version 2's; FULL: both.
CHANGES = {
    "add optional field": (v(1), v(2, note=STRING), ALL),
    "add required field (no default)": (
        v(1),
        v(2, note=FieldSchema("string", required=True)),
        FORWARDS,
    ),
    "add required field with default": (
        v(1),
        v(2, note=FieldSchema("string", required=True, default="")),
        ALL,
    ),
    "remove required field": (v(1, name=FieldSchema("string", required=True)), v(2), BACKWARDS),
    "remove optional field (with default)": (
        v(1, note=FieldSchema("string", default="")),
        v(2),
        ALL,
    ),
    "rename declared with alias": (
        v(1, name=FieldSchema("string", required=True)),
        v(2, full_name=FieldSchema("string", required=True, aliases=("name",))),
        BACKWARDS,
    ),
    "rename without alias": (
        v(1, name=FieldSchema("string", required=True)),
        v(2, full_name=FieldSchema("string", required=True)),
        ONLY_NONE,
    ),
    "widen integer->decimal": (
        v(1, amount=FieldSchema("integer", required=True)),
        v(2, amount=FieldSchema("decimal", required=True)),
        BACKWARDS,
    ),
    "narrow decimal->integer": (
        v(1, amount=FieldSchema("decimal", required=True)),
        v(2, amount=FieldSchema("integer", required=True)),
        FORWARDS,
    ),
    "add enum value": (
        v(1, status=FieldSchema("enum", allowed=("active", "closed"))),
        v(2, status=FieldSchema("enum", allowed=("active", "closed", "paused"))),
        BACKWARDS,
    ),
    "remove enum value": (
        v(1, status=FieldSchema("enum", allowed=("active", "closed", "paused"))),
        v(2, status=FieldSchema("enum", allowed=("active", "closed"))),
        FORWARDS,
    ),
    "change type string->boolean": (
        v(1, flag=FieldSchema("string", required=True)),
        v(2, flag=FieldSchema("boolean", required=True)),
        ONLY_NONE,
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("change", CHANGES)
def test_change_against_mode(change: str, mode: str) -> None:
    old, new, accepted = CHANGES[change]
    problems = check(mode, [old], new)
    assert (not problems) == (mode in accepted), problems
    assert all(p.against == 1 and p.rule.startswith(f"{mode}: ") for p in problems)


def test_the_default_mode_is_backward_transitive_and_unknown_modes_are_refused() -> None:
    assert DEFAULT_MODE == "BACKWARD_TRANSITIVE"
    message = "unknown compatibility mode 'backwards'; choose one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE"
    with pytest.raises(ValueError, match=re.escape(message)):
        check("backwards", [v(1)], v(2))
    assert check("FULL_TRANSITIVE", [], v(1)) == []  # a first version has nothing to break


# x is a string, then removed (it was optional), then re-added as a boolean: each step is
# compatible with the one before, but version 3 cannot read version 1's x, nor version 1 its x.
HISTORY = [v(1, x=STRING), v(2), v(3, x=BOOLEAN)]


@pytest.mark.parametrize(
    ("mode", "transitive"),
    [
        ("BACKWARD", "BACKWARD_TRANSITIVE"),
        ("FORWARD", "FORWARD_TRANSITIVE"),
        ("FULL", "FULL_TRANSITIVE"),
    ],
)
def test_transitive_modes_check_every_earlier_version(mode: str, transitive: str) -> None:
    assert check(mode, HISTORY[:2], HISTORY[2]) == []
    problems = check(transitive, HISTORY[:2], HISTORY[2])
    assert problems, f"{transitive} must refuse x changing from string to boolean"
    assert {p.against for p in problems} == {1}
    assert {p.field for p in problems} == {"x"}
    assert all("version 1" in p.rule for p in problems)
    expected_directions = 2 if mode == "FULL" else 1
    assert len(problems) == expected_directions


def test_a_problem_names_the_field_old_new_rule_and_fix() -> None:
    old, new, _ = CHANGES["add required field (no default)"]
    [problem] = check("BACKWARD", [old], new)
    assert problem.field == "note"
    assert (problem.old, problem.new) == ("absent", "string, required")
    assert problem.rule == (
        "BACKWARD: a reader of the new version cannot read events of version 1: "
        "field 'note' is required and has no default, and version 1 does not have it"
    )
    assert "give 'note' a default" in problem.fix and "FORWARD" in problem.fix

    old, new, _ = CHANGES["add enum value"]
    [problem] = check("FORWARD", [old], new)
    assert (problem.old, problem.new) == (
        "enum of active, closed, optional",
        "enum of active, closed, paused, optional",
    )
    assert "a reader of version 1 cannot read events of the new version" in problem.rule
    assert "'status' may carry paused" in problem.rule
    assert "paused" in problem.fix and "BACKWARD" in problem.fix

    old, new, _ = CHANGES["rename declared with alias"]
    [problem] = check("FULL", [old], new)
    assert (problem.field, problem.old, problem.new) == ("name", "string, required", "absent")
    assert "keep sending 'name' alongside 'full_name'" in problem.fix

    old, new, _ = CHANGES["narrow decimal->integer"]
    [problem] = check("BACKWARD_TRANSITIVE", [old], new)
    assert (problem.old, problem.new) == ("decimal, required", "integer, required")
    assert "'amount' is decimal in version 1, which a integer reader cannot read" in problem.rule
    assert "keep 'amount' as decimal" in problem.fix


def test_a_required_field_may_not_read_one_that_was_optional() -> None:
    """Events of the old version may lack x, so a reader requiring it without default fails."""
    old, new = v(1, x=STRING), v(2, x=FieldSchema("string", required=True))
    [problem] = check("BACKWARD", [old], new)
    assert "may leave it out or send null" in problem.rule
    assert check("FORWARD", [old], new) == []
    assert check("BACKWARD", [old], v(2, x=FieldSchema("string", required=True, default="-"))) == []


def test_reader_problems_compares_one_reader_with_one_writer() -> None:
    old, new, _ = CHANGES["widen integer->decimal"]
    assert reader_problems(new, old) == []
    [problem] = reader_problems(old, new)
    assert problem.against == 2
    assert problem.rule.startswith("a reader of version 1 cannot read events of version 2")


def test_json_round_trip_and_content_hash() -> None:
    schema = VersionSchema(
        3,
        {
            "id": ID,
            "status": FieldSchema(
                "enum", required=True, default="active", allowed=("active", "closed")
            ),
            "full_name": FieldSchema("string", aliases=("name",)),
            "amount": FieldSchema("decimal", default=0),
        },
    )
    assert VersionSchema.from_json(schema.to_json()) == schema
    assert schema.to_json()["fields"]["full_name"] == {"type": "string", "aliases": ["name"]}
    digest = schema.content_hash()
    assert len(digest) == 64
    assert VersionSchema.from_json(schema.to_json()).content_hash() == digest
    # The hash of the canonical JSON written out by hand: it must not move between runs,
    # machines or Python versions, nor with the order the fields were declared in.
    canonical = b'{"fields":{"id":{"required":true,"type":"string"}},"version":1}'
    assert v(1).content_hash() == hashlib.sha256(canonical).hexdigest()
    reordered = VersionSchema(3, dict(reversed(schema.fields.items())))
    assert reordered.content_hash() == digest
    changed = VersionSchema(3, {**schema.fields, "amount": FieldSchema("decimal", default=1)})
    assert changed.content_hash() != digest
    assert VersionSchema(4, schema.fields).content_hash() != digest


def test_field_schema_refuses_what_it_cannot_mean() -> None:
    with pytest.raises(ValueError, match="unknown field type 'float'"):
        FieldSchema("float")
    with pytest.raises(ValueError, match="enum"):
        FieldSchema("enum")
    with pytest.raises(ValueError, match="enum"):
        FieldSchema("string", allowed=("a",))


def test_describe_changes_lists_each_change() -> None:
    old = v(
        1,
        name=FieldSchema("string", required=True),
        amount=FieldSchema("integer"),
        status=FieldSchema("enum", allowed=("active", "closed")),
        legacy=STRING,
    )
    new = v(
        2,
        full_name=FieldSchema("string", required=True, aliases=("name",)),
        amount=FieldSchema("decimal", default=0),
        status=FieldSchema("enum", allowed=("active", "paused")),
        note=FieldSchema("string", required=True, default=""),
    )
    assert describe_changes(old, new) == [
        "renamed field 'name' to 'full_name'",
        "changed field 'amount' from integer, optional to decimal, optional, default 0",
        "changed field 'status' from enum of active, closed, optional to enum of active, paused, optional",
        "field 'status' allows new values paused",
        "field 'status' no longer allows closed",
        "added field 'note' (string, required, default \"\")",
        "removed field 'legacy' (string, optional)",
    ]
    assert describe_changes(old, old) == []
