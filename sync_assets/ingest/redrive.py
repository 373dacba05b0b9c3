"""Ingest dead letters: which are held, and sending them through validation again once fixed.

A dead letter is held until one of two things resolves it:
- `accepted_copy`: a later valid event with the same (source, id) was accepted (the producer
  re-sent it, fixed; see validate.py);
- `redriven`: an operator sent its original line through the pipeline again, after fixing what
  refused it (a contract version registered, a vocabulary extended, a clock set right).

A redrive lands the original lines as a new batch in the landing folder of the system that sent
them (`redrive-<time>`), so they take the same path as any batch: raw events, the contracts,
deduplication, the golden records. The dead letters point at that batch (`resolved_by`), and the
batch ledger holds it like any other. If a line is refused again, it is a new dead letter of the
redrive batch, held in its turn.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.ingest.landing import LandingZone
from sync_assets.security.fields import DEAD_LETTER_PAYLOAD
from sync_assets.security.sql import pii_of
from sync_assets.warehouse import registered

NOT_REDRIVABLE = {
    "utf8": "its bytes were not UTF-8 and were not kept as sent; ask the producer to send it again"
}
"""Rules whose payload cannot be sent again as it came."""


@dataclass(frozen=True)
class HeldDeadLetter:
    batch_id: str
    line_no: int
    system: str
    source: str | None
    event_id: str | None
    rule: str
    reason: str
    dead_lettered_at: datetime

    @property
    def ref(self) -> str:
        """`<batch id>:<line>`, which names exactly one dead letter."""
        return f"{self.batch_id}:{self.line_no}"


def held(con: duckdb.DuckDBPyConnection, rule: str | None = None) -> list[HeldDeadLetter]:
    """Dead letters neither redriven nor resolved by a later valid copy, oldest first."""
    rows = con.execute(
        """SELECT d.batch_id, d.line_no, b.system, d.source, d.event_id, d.rule, d.reason,
                  d.dead_lettered_at
           FROM dead_letters d JOIN batches b USING (batch_id)
           WHERE d.resolution IS NULL AND ($rule IS NULL OR d.rule = $rule)
           ORDER BY d.dead_lettered_at, d.batch_id, d.line_no""",
        {"rule": rule},
    ).fetchall()
    return [HeldDeadLetter(*row) for row in rows]


def choose(
    con: duckdb.DuckDBPyConnection, refs: list[str], rule: str | None
) -> list[HeldDeadLetter]:
    """The held dead letters named by event id or `<batch>:<line>`, or all of a rule. A name that
    matches no held dead letter is an error naming it, and what it matched instead, if anything."""
    if not refs and rule is None:
        raise SyncfabricError(
            "name the dead letters to redrive: event ids, <batch>:<line>, or a rule"
        )
    candidates = held(con, rule)
    if not refs:
        if not candidates:
            raise SyncfabricError(f"no dead letter of rule {rule!r} is held", exit_code=EXIT_USAGE)
        return candidates
    chosen = [d for d in candidates if d.ref in refs or d.event_id in refs]
    matched = {d.ref for d in chosen} | {d.event_id for d in chosen}
    unknown = [ref for ref in refs if ref not in matched]
    if unknown:
        raise SyncfabricError(
            "not held as ingest dead letters: "
            + "; ".join(f"{ref} ({_whereabouts(con, ref)})" for ref in unknown)
        )
    return chosen


def _whereabouts(con: duckdb.DuckDBPyConnection, ref: str) -> str:
    batch_id, _, line = ref.rpartition(":")
    found = con.execute(
        """SELECT resolution, resolved_by FROM dead_letters
           WHERE event_id = $ref OR (batch_id = $batch AND CAST(line_no AS VARCHAR) = $line)
           LIMIT 1""",
        {"ref": ref, "batch": batch_id, "line": line},
    ).fetchone()
    if found is None:
        return "no such dead letter"
    resolution, by = found
    return f"already {resolution} by {by}"


@dataclass
class Redriven:
    events: int = 0
    batches: dict[str, str] = field(default_factory=dict)
    """System -> the batch its lines were landed in."""


def redrive(
    con: duckdb.DuckDBPyConnection, zone: LandingZone, letters: list[HeldDeadLetter]
) -> Redriven:
    """Land the original lines of these dead letters as one batch per system, then mark them
    redriven by it. The files come first: a crash in between lands lines that are validated
    again (and resolve their dead letters if accepted); the other order could lose them."""
    refused = [d for d in letters if d.rule in NOT_REDRIVABLE]
    if refused:
        raise SyncfabricError(
            "cannot redrive " + "; ".join(f"{d.ref}: {NOT_REDRIVABLE[d.rule]}" for d in refused)
        )
    keys: dict[str, list[Any]] = {
        "batch_id": [d.batch_id for d in letters],
        "line_no": [d.line_no for d in letters],
    }
    with registered(con, "chosen_frame", keys) as frame:
        found = con.execute(
            f"SELECT batch_id, line_no, payload FROM dead_letters JOIN {frame} USING (batch_id, line_no)"
        ).fetchall()
    sealer = pii_of(con).sealer  # the payloads are sealed (fields.py); the landed file is clear
    found = [(b, n, sealer.open(DEAD_LETTER_PAYLOAD, payload)) for b, n, payload in found]
    payloads = {(batch_id, line_no): payload for batch_id, line_no, payload in found}
    by_system: dict[str, list[HeldDeadLetter]] = defaultdict(list)
    for letter in letters:
        by_system[letter.system].append(letter)
    result = Redriven()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    for system, group in sorted(by_system.items()):
        batch = zone.write_batch(
            system, f"redrive-{stamp}", (payloads[(d.batch_id, d.line_no)] for d in group)
        )
        result.batches[system] = batch.batch_id
        result.events += len(group)
        marks: dict[str, list[Any]] = {
            "batch_id": [d.batch_id for d in group],
            "line_no": [d.line_no for d in group],
            "resolved_by": [batch.batch_id] * len(group),
        }
        with registered(con, "redriven_frame", marks) as frame:
            con.execute(
                f"""UPDATE dead_letters SET resolution = 'redriven',
                        resolved_by = m.resolved_by, resolved_at = now()
                    FROM {frame} m
                    WHERE dead_letters.batch_id = m.batch_id AND dead_letters.line_no = m.line_no"""
            )
    return result
