"""The event envelope: CloudEvents 1.0 with Syncfabric's extensions.

An event on the wire is one JSON object per line:

    {"specversion": "1.0", "id": "crm-000001", "source": "/systems/crm",
     "type": "customer.updated", "time": "2026-11-25T08:30:00.000000Z",
     "subject": "C-000042", "datacontenttype": "application/json",
     "schemaversion": 2, "correlationid": "...", "causationid": null, "origin": "crm",
     "data": {"email": "ada@example.com"}}

`subject` is the entity's canonical key; `data` is the minimal payload, described by the contract
for (`type`, `schemaversion`); `origin` is the system whose change this is, and decides ownership.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

SPECVERSION = "1.0"
ACTIONS: tuple[str, ...] = ("created", "updated", "deleted", "reconciled")
RECONCILER_SOURCE = "/syncfabric/reconciler"
"""The CloudEvents source of events Syncfabric writes itself (missed events, adoption)."""

MAX_EVENT_BYTES = 64 * 1024
"""An event line longer than this is dead-lettered: payloads must stay minimal."""

ENVELOPE_FIELDS: tuple[str, ...] = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "schemaversion",
    "correlationid",
    "causationid",
    "origin",
)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, the one form Syncfabric writes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event(
    *,
    event_type: str,
    subject: str,
    origin: str,
    data: dict[str, Any],
    time: datetime,
    schema_version: int,
    event_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    event_id = event_id or str(uuid.uuid4())
    return {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": source or f"/systems/{origin}",
        "type": event_type,
        "time": format_time(time),
        "subject": subject,
        "datacontenttype": "application/json",
        "schemaversion": schema_version,
        "correlationid": correlation_id or event_id,
        "causationid": causation_id,
        "origin": origin,
        "data": data,
    }


def to_line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


# -- signatures -----------------------------------------------------------------------------------

SIGNATURE = "signature"
"""The CloudEvents extension attribute carrying a signing system's HMAC (docs/security.md)."""


def canonical_json(value: Any) -> str:
    """The JSON Canonicalization Scheme (RFC 8785) of a JSON value: object members sorted by key
    (UTF-16 code units), no whitespace, strings escaped as ECMAScript's JSON.stringify does and
    numbers written as its Number.prototype.toString does. Libraries exist in most languages, so
    a producer signs the same bytes Syncfabric checks.

    Python's json writes the same text for nearly every event (only some numbers and keys beyond
    U+FFFF differ): `_as_python_writes_it` prepares those, and the rare rest takes the slow path,
    a fifth of the speed."""
    try:
        prepared = _as_python_writes_it(value)
    except _SlowPath:
        return _canonical(value)
    return json.dumps(
        prepared, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
    )


class _SlowPath(Exception):
    """A value Python's json would write otherwise than RFC 8785."""


def _as_python_writes_it(value: Any) -> Any:
    """The value with each number json.dumps would write otherwise than ECMAScript (1.0, 2**60)
    replaced by one it writes the same; _SlowPath when there is none (1e-7, NaN) or a key's order
    could differ (a character beyond U+FFFF sorts otherwise in UTF-16)."""
    kind = type(value)
    if kind is dict:
        for key in value:
            if not key.isascii() and max(key) > "\uffff":
                raise _SlowPath
        return {key: _as_python_writes_it(v) for key, v in value.items()}
    if kind is list:
        return [_as_python_writes_it(v) for v in value]
    if kind is int and -(2**53) < value < 2**53:
        return value
    if kind is int or kind is float:
        number = float(value)
        if number.is_integer() and abs(number) < 2**53:  # beyond, ECMAScript rounds the digits
            return int(number)
        if not number.is_integer() and abs(number) >= 1e-6 and "e" not in repr(number):
            return number  # below 1e16 (a fraction), in positional notation in both
        raise _SlowPath
    if kind is str or kind is bool or value is None:
        return value
    raise TypeError(f"{kind.__name__} is not a JSON value")


def _canonical(value: Any) -> str:
    """RFC 8785, written out member by member (see `canonical_json`)."""
    if isinstance(value, dict):
        members = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(f"{_canonical(k)}:{_canonical(v)}" for k, v in members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return _es_number(
            float(value) if isinstance(value, float) or abs(value) >= 2**53 else value
        )
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _es_number(value: int | float) -> str:
    """A number as ECMAScript writes it (Number::toString): the shortest digits that read back as
    the same double, in positional notation from 1e-6 to below 1e21, else as d.ddde+N."""
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("NaN and infinities are not JSON")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")  # repr: the shortest digits
    whole, _, fraction = mantissa.partition(".")
    everything = whole + fraction
    digits = everything.lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(everything) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    shown = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{shown}e{'+' if point - 1 >= 0 else '-'}{abs(point - 1)}"


def sign_event(event: dict[str, Any], key: bytes | str) -> dict[str, Any]:
    """The event with its `signature`: HMAC-SHA256, keyed with the key's UTF-8 bytes, over the
    RFC 8785 canonical JSON (UTF-8) of the event without `signature`, as 64 lowercase hex digits."""
    return {**event, SIGNATURE: event_signature(event, key)}


def event_signature(event: dict[str, Any], key: bytes | str) -> str:
    """The signature an event must carry (see `sign_event`); any `signature` it has is left out."""
    unsigned = {name: value for name, value in event.items() if name != SIGNATURE}
    secret = key.encode("utf-8") if isinstance(key, str) else key
    return hmac.new(secret, canonical_json(unsigned).encode("utf-8"), hashlib.sha256).hexdigest()
