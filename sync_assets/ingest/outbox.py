"""A transactional outbox as an event channel: each range of outbox rows becomes a batch file.

A SQL system that declares `channels: {outbox: {table: <name>}}` writes each event, in the same
transaction as its change, as a row of that table in its own database: `sequence` (identity /
auto-increment), `event` (the CloudEvents JSON) and `created_at`. Syncfabric reads the rows past
a cursor, in sequence order, with plain SELECTs (no lock: the system's writers never wait), and
writes each contiguous range as the batch file `ob-<first>-<last>.jsonl` in the system's landing
folder (`LandingZone.write_batch`), one line per row. From there raw ingest, validation, dead
letters, duplicates (event ids) and replay are the landing zone's, whatever the channel.

The cursor is the last sequence of the `ob-` batches the system already has: in the ledger (any
state) or pending in its landing folder. Nothing else is kept: a range is read again only if its
file was lost before the ledger knew it, and then its events are recorded as duplicates where
they were committed already (at-least-once, deduplicated by event id).

A gap in the sequence is a number taken by a transaction still open (its row appears when it
commits) or by one rolled back (it never appears). `next_range` cannot tell which: a read stops before
a gap until the first row after it is older than the grace period (`OutboxSettings.gap_grace_s`,
by the database's clock), then skips it and says so. An open transaction that commits within the
grace is therefore read; one that commits later is not (its events are reported missing by the
next reconciliation, like any lost event).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from sync_assets.connectors.problems import reading
from sync_assets.connectors.sources import open_source
from sync_assets.ingest.landing import BATCH_SUFFIX, SEPARATOR, LandingZone
from sync_assets.project import Project, current
from sync_assets.settings import OutboxSettings

STEM_PREFIX = "ob"
_STEM = re.compile(rf"{STEM_PREFIX}-([0-9]+)-([0-9]+)")

Known = Callable[[str], Sequence[str]]
"""system -> the file stems of its batches the ledger knows (any state)."""


# -- names ----------------------------------------------------------------------------------------


def batch_stem(first: int, last: int) -> str:
    """The batch file's stem for a range of outbox sequences."""
    return f"{STEM_PREFIX}-{first}-{last}"


def range_of(stem: str) -> tuple[int, int] | None:
    """(first, last) of an outbox batch's stem; None for any other stem."""
    found = _STEM.fullmatch(stem)
    return (int(found[1]), int(found[2])) if found else None


def cursor_of(stems: Iterable[str]) -> int:
    """The last sequence taken: the highest `last` among the outbox stems; 0 with none."""
    return max((r[1] for r in map(range_of, stems) if r), default=0)


# -- the pure decision ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    sequence: int
    age_s: float
    """Seconds since the row was created, by the database's clock."""


@dataclass(frozen=True)
class Take:
    """What to do with the rows read past the cursor."""

    first: int | None = None
    last: int | None = None
    """The contiguous range to land; None: nothing to land now."""
    skipped: tuple[int, int] | None = None
    """The gap (first, last missing sequence) skipped before `first`: older than the grace."""
    waiting: tuple[int, int] | None = None
    """The gap waited for: a transaction may still commit it."""


def next_range(cursor: int, rows: Sequence[Row], grace_s: float) -> Take:
    """Given the cursor (last sequence taken) and the rows past it in sequence order: the
    contiguous range to land next, stopping at the first gap. A gap right after the cursor is
    skipped when the row after it is at least `grace_s` old, else waited for."""
    if not rows:
        return Take()
    skipped = None
    start = rows[0].sequence
    if start != cursor + 1:
        gap = (cursor + 1, start - 1)
        if rows[0].age_s < grace_s:
            return Take(waiting=gap)
        skipped = gap
    last = start
    for row in rows[1:]:
        if row.sequence != last + 1:
            break
        last = row.sequence
    return Take(start, last, skipped)


# -- the database side ----------------------------------------------------------------------------


def outbox_table(name: str, metadata: sa.MetaData | None = None) -> sa.Table:
    """The outbox table as a system creates it (`syncctl grants` prints its DDL)."""
    return sa.Table(
        name,
        metadata or sa.MetaData(),
        sa.Column(
            "sequence",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),  # SQLite: the rowid
            sa.Identity(),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            # MariaDB: TIMESTAMP, kept in UTC whatever the session's time zone (not DATETIME)
            sa.DateTime(timezone=True).with_variant(mysql.TIMESTAMP(), "mysql", "mariadb"),
            nullable=False,
            server_default=sa.func.current_timestamp(),
        ),
    )


_AGE = {
    "postgresql": "EXTRACT(EPOCH FROM (clock_timestamp() - created_at))",
    "mysql": "TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)) / 1000000.0",
    "mariadb": "TIMESTAMPDIFF(MICROSECOND, created_at, NOW(6)) / 1000000.0",
    "sqlite": "(julianday('now') - julianday(created_at)) * 86400.0",
}
"""A row's age in seconds, by the database's own clock (no clock of ours is compared with it)."""


def read_rows(
    connection: sa.Connection, table: str, cursor: int, limit: int
) -> list[tuple[Row, str]]:
    """Up to `limit` rows past `cursor`, in sequence order, each with its event as one line."""
    outbox = outbox_table(table)
    age = sa.literal_column(_AGE[connection.dialect.name], sa.Float)
    query = (
        sa.select(outbox.c.sequence, outbox.c.event, age)
        .where(outbox.c.sequence > cursor)
        .order_by(outbox.c.sequence)
        .limit(limit)
    )
    return [
        (Row(int(seq), float(age_s or 0.0)), _line(event))
        for seq, event, age_s in connection.execute(query)
    ]


def _line(event: Any) -> str:
    """The event as one line: a JSON column may come back parsed, a TEXT one pretty-printed."""
    if isinstance(event, bytes):
        event = event.decode("utf-8")
    if not isinstance(event, str):
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return event.replace("\r", " ").replace("\n", " ")


# -- the warehouse side ---------------------------------------------------------------------------


def ledger_stems(con: duckdb.DuckDBPyConnection, system: str) -> list[str]:
    """The stems of the system's outbox batches the ledger knows, in any state."""
    prefix = f"{system}{SEPARATOR}{STEM_PREFIX}-"
    rows = con.execute(
        "SELECT batch_id FROM batches WHERE system = ? AND starts_with(batch_id, ?)",
        [system, prefix],
    ).fetchall()
    rests = [row[0][len(system) + len(SEPARATOR) :] for row in rows]
    return [rest.rpartition("@")[0] or rest for rest in rests]


# -- what callers use -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Landed:
    system: str
    first: int
    last: int

    @property
    def stem(self) -> str:
        return batch_stem(self.first, self.last)


@dataclass
class Drained:
    landed: list[Landed] = field(default_factory=list)
    skipped: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """System -> the gaps skipped (older than the grace: rolled-back transactions)."""
    waiting: dict[str, tuple[int, int]] = field(default_factory=dict)
    """System -> the gap its read stopped at (a transaction that may still commit)."""


def pending_stems(zone: LandingZone, system: str) -> list[str]:
    folder = zone.system_folder(system)
    if not folder.is_dir():
        return []
    return [p.name[: -len(BATCH_SUFFIX)] for p in folder.glob(f"{STEM_PREFIX}-*{BATCH_SUFFIX}")]


def drain(
    zone: LandingZone,
    known: Known,
    url_of: Callable[[str], str],
    settings: OutboxSettings | None = None,
    project: Project | None = None,
) -> Drained:
    """Land every outbox row past each outbox system's cursor as batch files (`syncctl run`, the
    outbox sensor), a contiguous range per file, up to the first gap still within the grace."""
    settings, project = settings or OutboxSettings.from_env(), project or current()
    drained = Drained()
    for system in project.outbox_systems:
        assert system.outbox is not None
        url = url_of(system.name)
        cursor = cursor_of([*known(system.name), *pending_stems(zone, system.name)])
        with reading(system.name, url):
            engine = open_source(url)
            try:
                with engine.connect() as connection:
                    while True:
                        rows = read_rows(connection, system.outbox, cursor, settings.batch_size)
                        connection.rollback()  # a fresh snapshot for the next read
                        step = next_range(cursor, [row for row, _ in rows], settings.gap_grace_s)
                        if step.skipped:
                            drained.skipped.setdefault(system.name, []).append(step.skipped)
                        if step.waiting:
                            drained.waiting[system.name] = step.waiting
                        if step.first is None or step.last is None:
                            break
                        lines = [line for row, line in rows if step.first <= row.sequence]
                        lines = lines[: step.last - step.first + 1]
                        zone.write_batch(system.name, batch_stem(step.first, step.last), lines)
                        drained.landed.append(Landed(system.name, step.first, step.last))
                        cursor = step.last
            finally:
                engine.dispose()
    return drained


def describe_gap(gap: tuple[int, int]) -> str:
    first, last = gap
    return f"sequence {first}" if first == last else f"sequences {first}-{last}"
