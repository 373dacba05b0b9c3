"""Signed systems: each event of a system with a signing key must carry its HMAC (rule `signature`).

A system's file may name the environment variable holding its key (`signing: {key_env: ...}`).
Then every event arriving through its channel must carry `signature`: HMAC-SHA256 of the event's
canonical JSON without `signature` (`sync_assets.catalog.events.sign_event`, docs/security.md).
Write access to a landing folder is then not enough to speak for the system: the key is needed.

The check is one pass in Python over the lines of the batch that passed the envelope gate, and
only for systems that sign; the others pay nothing. Syncfabric's own events for a signing system
(missed events, adoptions) are signed with the same key when landed (`sign_lines`); a redrive
re-lands the producer's original line untouched, so its signature is checked again, never made.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable
from typing import Any

import polars as pl

from sync_assets.catalog.events import SIGNATURE, event_signature, sign_event, to_line
from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.project.model import Project, System

_FIX = "sign each event as docs/security.md says (sign_event in sync_assets/catalog/events.py)"
_NOT_STRICT = (
    "the line is not strict JSON (a trailing comma, say), so its canonical form, which the "
    f"signature covers, cannot be made; fix: write strict JSON, then {_FIX}"
)


def signing_key(system: System) -> bytes | None:
    """The system's signing key, None when it does not sign; a SyncfabricError naming the variable
    (never its value) when the project says it signs and the variable is not set."""
    if system.signing_key_env is None:
        return None
    key = os.environ.get(system.signing_key_env, "")
    if not key:
        raise SyncfabricError(
            f"{system.signing_key_env} is not set, and systems/{system.name}.yaml says "
            f"{system.name}'s events are signed with the key it holds; fix: set "
            f"{system.signing_key_env} to {system.name}'s signing key, or remove signing: from "
            "its file",
            exit_code=EXIT_USAGE,
        )
    return key.encode("utf-8")


def require_signing_keys(project: Project) -> None:
    """Every signing system's key is set, or the SyncfabricError naming the first variable that
    is not (before a run: not a batch left unfinished for it)."""
    for system in project.systems.values():
        signing_key(system)


def unsigned_lines(lines: Iterable[tuple[int, str]], system: System) -> pl.DataFrame:
    """The (line_no, line) pairs whose event lacks a valid signature from `system`, as failures
    (line_no, event_id, rule, reason). The lines are known to be JSON objects (past the envelope
    gate)."""
    key = signing_key(system)
    assert key is not None, "only a signing system's lines are checked"
    rows = []
    for line_no, line in lines:
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):  # DuckDB also takes a trailing comma; JSON does not
            rows.append((line_no, None, "signature", _NOT_STRICT))
            continue
        given = event.get(SIGNATURE)
        try:
            expected = event_signature(event, key)
        except ValueError:  # NaN or Infinity: never signed, and not left to pass unsigned
            expected = None
        if expected is None:
            reason = (
                "the event holds NaN or Infinity, which its canonical form (RFC 8785) cannot "
                f"carry, so it cannot be signed; fix: send finite numbers, then {_FIX}"
            )
        elif not isinstance(given, str):
            reason = (
                f"envelope field {SIGNATURE!r} is missing, and {system.name}'s events must be "
                f"signed (systems/{system.name}.yaml signing:); fix: {_FIX}"
            )
        elif not hmac.compare_digest(given.encode("utf-8"), expected.encode("ascii")):
            reason = (
                f"envelope field {SIGNATURE!r} does not match the event signed with "
                f"{system.name}'s key ({system.signing_key_env}): changed after signing, or "
                f"signed with another key; fix: {_FIX}"
            )
        else:
            continue
        rows.append((line_no, event.get("id"), "signature", reason))
    return pl.DataFrame(
        rows,
        schema={"line_no": pl.Int64, "event_id": pl.String, "rule": pl.String, "reason": pl.String},
        orient="row",
    )


def sign_lines(system: System, events: Iterable[dict[str, Any]]) -> list[str]:
    """Event lines for Syncfabric to land in `system`'s channel, signed when the system signs."""
    key = signing_key(system)
    return [to_line(event if key is None else sign_event(event, key)) for event in events]
