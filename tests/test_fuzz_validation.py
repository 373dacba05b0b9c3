"""Fuzzing the line decoder and the contracts: whatever a batch holds, nothing escapes.

Batches of random bytes, truncated and deeply nested JSON, huge numbers and strings, wrong types,
and valid events mutated (fields dropped, repeated, retyped, set to extreme values) go through the
pure core (ingest, then validate) on a fresh warehouse. For every batch:
- nothing raises, and the ledger adds up: landed = validated + dead_lettered + duplicates;
- every line is validated or dead-lettered, never both (the rest are the recorded duplicates);
- every dead letter has a rule and a reason that names its line and says `fix:`, and no PII value;
- every accepted event is what the line says, stored in its columns' types: strict JSON strings
  for the envelope's text, no key twice, no NUL, strict RFC 3339 times not beyond the clock skew,
  decimals as sent (to the cent), ASCII keys.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import hypothesis.strategies as st
import pytest
from conftest import BASE_TIME, customer_created, event, land
from hypothesis import HealthCheck, given, settings

from sync_assets.catalog.events import MAX_EVENT_BYTES, to_line
from sync_assets.ingest.landing import LandingZone
from sync_assets.ingest.raw import ingest_batch
from sync_assets.ingest.validate import validate_batch
from sync_assets.project import current
from sync_assets.settings import DEFAULT_MAX_CLOCK_SKEW, DataFolder
from sync_assets.warehouse import connect, transaction
from sync_assets.warehouse.tables import opened

PII = "pii\u00b7"
"""Every PII value generated here carries this marker; no dead-letter reason may."""
TEXT_FIELDS = ("specversion", "id", "source", "type", "subject", "correlationid", "origin")
OPTIONAL_TEXT_FIELDS = ("datacontenttype", "causationid")
STRICT_TIME = re.compile(
    r"(?a)^(?!0000)\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)

# -- valid events, then mutations ------------------------------------------------------------------


def ids(position: int) -> st.SearchStrategy[str]:
    """The event id of a batch's line: its own, or now and then the first line's (a duplicate)."""
    return st.sampled_from([f"fz-{position}"] * 9 + ["fz-0"])


pii_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12).map(
    lambda t: PII + t
)


@st.composite
def valid_events(draw, position: int) -> dict[str, Any]:
    """A valid event of one of the common shapes, PII values marked."""
    n = draw(st.integers(1, 999))
    event_id = draw(ids(position))
    kind = draw(
        st.sampled_from(["customer.created", "customer.v1", "customer.updated", "order", "order"])
    )
    time = BASE_TIME - timedelta(seconds=draw(st.integers(0, 10**7)))
    if kind == "customer.created":
        data = {"email": f"{PII}{n}@example.com", "full_name": draw(pii_text), "phone": "+4420718"}
        return customer_created(f"C-{n:06d}", event_id=event_id, time=time, data=data)
    if kind == "customer.v1":
        data = {"email": f"{PII}{n}@example.com", "name": draw(pii_text), "country": "FR"}
        data |= {"status": "active"}
        return event(
            "customer.created", f"C-{n:06d}", data, event_id=event_id, time=time, schema_version=1
        )
    if kind == "customer.updated":
        data = draw(
            st.sampled_from([{"plan": "pro"}, {"marketing_opt_in": True}, {"full_name": PII + "x"}])
        )
        origin = "billing" if "plan" in data else "crm"
        return event(
            "customer.updated", f"C-{n:06d}", data, origin=origin, event_id=event_id, time=time
        )
    data = {
        "customer_id": f"C-{n:06d}",
        "status": "paid",
        "amount": draw(st.integers(0, 10**6)) / 100,
        "currency": "EUR",
        "placed_at": "2026-11-25T08:00:00Z",
    }
    return event(
        "order.created", f"O-{n:07d}", data, origin="billing", event_id=event_id, time=time
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.text(max_size=16),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
"""Any JSON value (floats include NaN and Infinity, which json.dumps writes as such)."""

raw_numbers = st.sampled_from(
    [
        "1e16",
        "-1e16",
        "9999999999999999.99",
        "9999999999999999.995",
        "999999999999999.99",
        "1e400",
        "-1e400",
        "1e-400",
        "NaN",
        "Infinity",
        "-Infinity",
        "nan",
        "-0",
        "0.005",
        "18446744073709551616",
        "123456789012345678901234567890",
    ]
) | st.floats(allow_nan=False, allow_infinity=False).map(repr)
"""Numbers as JSON text, including what JSON has no words for."""

digits = st.sampled_from(["٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "".join(chr(0xFF10 + d) for d in range(10))])
"""Unicode digits that are not ASCII: Arabic-Indic, Devanagari, fullwidth."""

TIME_PARTS = {
    "year": ("2026", ["0000", "0001", "9999", "294247", "1970", "2100", "٢٠٢٦"]),
    "month": ("11", ["00", "13", "02", "1"]),
    "day": ("25", ["00", "30", "31", "32"]),
    "T": ("T", [" ", "t", ""]),
    "hour": ("08", ["23", "24", "99"]),
    "minute": ("30", ["59", "60"]),
    "second": ("00", ["59", "60", "61"]),
    "fraction": (".000000", ["", ".5", ".1234567", "."]),
    "zone": ("Z", ["z", "+00:00", "+23:59", "-24:00", "+99:99", "+0100", "+01", "", " UTC"]),
}


@st.composite
def timestamps(draw) -> str:
    """An RFC 3339 time with zero to two of its parts changed, some out of range."""
    parts = {name: valid for name, (valid, _) in TIME_PARTS.items()}
    for name in draw(st.lists(st.sampled_from(list(TIME_PARTS)), max_size=2, unique=True)):
        parts[name] = draw(st.sampled_from(TIME_PARTS[name][1]))
    p = parts
    text = (
        f"{p['year']}-{p['month']}-{p['day']}{p['T']}{p['hour']}:{p['minute']}:{p['second']}"
        f"{p['fraction']}{p['zone']}"
    )
    if draw(st.sampled_from(["ASCII"] * 9 + ["other digits"])) == "other digits":
        text = text.translate(str.maketrans("0123456789", draw(digits)))
    return text


GUARDED_FIELDS = ("amount", "time", "placed_at", "subject", "customer_id", "phone", "id")
"""The fields whose edges the guards watch: mutated more often than the others."""

future_times = st.datetimes(datetime(2100, 1, 1), datetime(9999, 12, 31)).map(
    lambda moment: moment.isoformat() + "Z"
)


deep_arrays = st.integers(1, 5000).map(lambda depth: f"@raw:{'[' * depth}{']' * depth}@")
"""Arrays nested up to 5000 deep (written verbatim, see mutated_lines)."""


def extremes(name: str, current: Any) -> st.SearchStrategy[Any]:
    """Values at or past the edge of what the field takes."""
    if name == "amount":
        return raw_numbers.map(lambda text: f"@raw:{text}@")  # written verbatim
    if name == "time":
        return timestamps() | future_times
    if name == "placed_at":
        return timestamps()
    if isinstance(current, str):
        return st.one_of(
            digits.map(lambda d: current.translate(str.maketrans("0123456789", d))),
            st.sampled_from([1000, MAX_EVENT_BYTES - 400, MAX_EVENT_BYTES]).map(lambda n: "x" * n),
            json_values,
            deep_arrays,
        )
    return json_values | deep_arrays


@st.composite
def mutated_lines(draw, position: int) -> str | bytes:
    """A valid event, changed in one to three ways, then written as a line (sometimes cut short,
    or with a raw NUL byte)."""
    built = draw(valid_events(position))
    repeats: list[tuple[str, str]] = []  # (object, member) to write a second time
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        data = built.get("data") if isinstance(built.get("data"), dict) else None
        target = data if data and draw(st.booleans()) else built
        guarded = [name for name in GUARDED_FIELDS if name in target]
        name = draw(st.sampled_from(sorted(target) + guarded * 3))
        mutation = draw(
            st.sampled_from(["extreme"] * 4 + ["retype", "drop", "twice", "nul", "extension"])
        )
        if mutation == "extreme":
            target[name] = draw(extremes(name, target[name]))
        elif mutation == "retype":
            target[name] = draw(json_values)
        elif mutation == "drop":
            del target[name]
        elif mutation == "extension":  # an attribute Syncfabric does not read
            target[draw(st.text(max_size=8))] = draw(json_values | deep_arrays)
        elif mutation == "twice":
            value = draw(json_values | st.just(target[name]))
            repeats.append(("data" if target is data else "envelope", json.dumps({name: value})))
        elif mutation == "nul" and isinstance(target[name], str):
            # json.dumps writes "\x00" as the escape \u0000; "\\u0000" is a backslash, then text
            text, at = target[name], draw(st.integers(0, len(target[name])))
            target[name] = text[:at] + draw(st.sampled_from(["\x00", "\\u0000"])) + text[at:]
    line = json.dumps(built, ensure_ascii=draw(st.booleans()), separators=(",", ":"))
    line = re.sub(r'"@raw:(.*?)@"', r"\1", line)  # the values written verbatim
    for where, member in repeats:
        line = with_member(line, '"data":{' if where == "data" else "{", member[1:-1])
    ending = draw(st.sampled_from(["whole"] * 18 + ["truncated", "raw NUL"]))
    if ending == "truncated":
        return line[: draw(st.integers(0, len(line)))]
    if ending == "raw NUL":
        at = draw(st.integers(0, len(line)))
        return line[:at] + "\x00" + line[at:]  # a raw NUL byte
    return line


def with_member(line: str, anchor: str, member: str) -> str:
    """The line with `member` first in the object that `anchor` opens (the envelope if none)."""
    start = line.find(anchor) if anchor in line else line.find("{")
    if start < 0:
        return line
    at = start + len(anchor if anchor in line else "{")
    return line[:at] + member + ("" if line[at : at + 1] == "}" else ",") + line[at:]


nested = st.integers(1, 5000).map(lambda depth: '{"data":' + "[" * depth + "]" * depth + "}")
random_bytes = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" "))


def lines(position: int) -> st.SearchStrategy[str | bytes]:
    return st.one_of(
        mutated_lines(position),
        mutated_lines(position),
        mutated_lines(position),
        valid_events(position).map(to_line),
        random_bytes,
        nested,
        json_values.map(json.dumps),
    )


batches = st.integers(1, 8).flatmap(lambda size: st.tuples(*map(lines, range(size)))).map(list)

# -- the oracle ------------------------------------------------------------------------------------


def strict_json(line: str) -> Any:
    """The line as Python reads it, refusing a key twice (as the decoder must). An attribute
    Syncfabric does not read may nest deeper than Python's default recursion limit."""

    def no_repeats(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"a key twice in an accepted event: {keys}"
        return dict(pairs)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * MAX_EVENT_BYTES))
    try:
        return json.loads(line, object_pairs_hook=no_repeats)
    finally:
        sys.setrecursionlimit(limit)


def strings_in(value: Any) -> list[str]:
    """Every string in a JSON value, keys included (without recursion: values may nest deep)."""
    found, pending = [], [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


def check_accepted(line: str, row: dict[str, Any], arrived_at: datetime) -> None:
    """An accepted event is what its line says, in its columns' types."""
    envelope = strict_json(line)
    assert all("\x00" not in s for s in strings_in(envelope)), "NUL in an accepted event"
    for name in TEXT_FIELDS:
        assert isinstance(envelope[name], str), (name, envelope[name])
    for name in OPTIONAL_TEXT_FIELDS:
        assert envelope.get(name) is None or isinstance(envelope[name], str), (name, envelope)
    assert row["event_id"] == envelope["id"] and row["entity_key"] == envelope["subject"]
    assert envelope["subject"].isascii()
    assert STRICT_TIME.match(envelope["time"]), envelope["time"]
    assert row["event_time"] == datetime.fromisoformat(envelope["time"])
    assert row["event_time"] <= arrived_at + DEFAULT_MAX_CLOCK_SKEW
    contract = current().contracts[(envelope["type"], envelope["schemaversion"])]
    for field_name, value in (envelope.get("data") or {}).items():
        attribute = contract.entity.attribute(contract.fields[field_name])
        stored = row[attribute.name]
        if value is None:
            assert stored is None
        elif attribute.type == "decimal":
            assert isinstance(stored, Decimal) and math.isfinite(value)
            assert math.isclose(float(stored), value, rel_tol=1e-15, abs_tol=0.005 + 1e-9)
        elif attribute.type == "timestamp":
            assert STRICT_TIME.match(value) and stored == datetime.fromisoformat(value)
        else:
            assert stored == value and type(stored) is type(value)
        if isinstance(value, str) and attribute.pattern and "[0-9]" in attribute.pattern:
            assert all(c in "0123456789" for c in value if c.isdigit()), value


def lines_in_file(lines: list[str | bytes]) -> int:
    """How many lines raw ingest reads from the file `land` writes (a lone empty line: none)."""
    return 0 if lines in ([""], [b""]) else len(lines)


def check_batch(
    con: duckdb.DuckDBPyConnection, batch_id: str, landed_lines: list[str | bytes]
) -> None:
    def rows(sql: str) -> list[tuple]:
        return con.execute(sql, [batch_id]).fetchall()

    [(landed, validated, duplicates, dead_lettered)] = rows(
        "SELECT landed, validated, duplicates, dead_lettered FROM batches WHERE batch_id = ?"
    )
    assert landed == lines_in_file(landed_lines) == validated + duplicates + dead_lettered

    letters = rows("SELECT line_no, rule, reason FROM dead_letters WHERE batch_id = ?")
    assert len(letters) == dead_lettered
    for line_no, rule, reason in letters:
        assert rule and reason.startswith(f"line {line_no}: ") and "fix:" in reason, reason
        assert PII not in reason, reason

    accepted: dict[int, dict[str, Any]] = {}
    for entity in current().entities.values():
        cursor = con.execute(  # PII opened, as apply reads it (stored sealed)
            f"SELECT {opened(entity)} FROM {entity.events_table} WHERE batch_id = ?", [batch_id]
        )
        columns = [d[0] for d in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(columns, values, strict=True))
            accepted[row["line_no"]] = row
    assert len(accepted) == validated
    assert not set(accepted) & {line_no for line_no, _, _ in letters}

    arrivals = dict(rows("SELECT line_no, arrived_at FROM raw_events WHERE batch_id = ?"))
    for line_no, row in accepted.items():
        line = landed_lines[line_no - 1]
        assert isinstance(line, str)
        check_accepted(line, row, arrivals[line_no])


@pytest.fixture(scope="module")
def empty_warehouse(tmp_path_factory) -> Path:
    """A warehouse with its tables and nothing else, copied for each example: creating the
    tables takes longer than validating a small batch."""
    folder = DataFolder(tmp_path_factory.mktemp("empty"))
    with connect(folder.warehouse):
        pass
    return folder.warehouse


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(batch=batches)
def test_every_line_is_accepted_as_sent_or_dead_lettered_with_a_reason(
    tmp_path_factory, empty_warehouse, batch
):
    """Ingest then validate, as run_core does, on a fresh warehouse per batch: a file per
    channel, each line in the channel of the system its source names."""
    folder = DataFolder(tmp_path_factory.mktemp("fuzz"))
    folder.root.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_warehouse, folder.warehouse)
    by_channel: dict[str, list[str | bytes]] = {}
    for line in batch:
        by_channel.setdefault(channel_of(line), []).append(line)
    for system, lines_ in by_channel.items():
        landed = land(folder, "0001", lines_, system=system)
        with connect(folder.warehouse) as con:
            with transaction(con):
                ingest_batch(con, LandingZone(folder.landing).locate(landed.batch_id))
                validate_batch(con, landed.batch_id, max_skew=DEFAULT_MAX_CLOCK_SKEW)
            check_batch(con, landed.batch_id, lines_)


def channel_of(line: str | bytes) -> str:
    """The system the line's source names (its channel), crm's for a line naming none."""
    try:
        source = json.loads(line).get("source")
    except (ValueError, AttributeError, RecursionError):
        return "crm"
    system = source.removeprefix("/systems/") if isinstance(source, str) else None
    return system if system in current().system_names else "crm"
