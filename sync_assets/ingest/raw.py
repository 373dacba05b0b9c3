"""Raw ingest: one landed batch into the append-only `raw_events` table, deduplicated by event id.

Every line of the file is landed. A line whose event id was seen before (earlier in the batch or
in any earlier batch) is recorded in `duplicate_events` and goes no further; every other line,
parseable or not, is kept verbatim in `raw_events` for validation to judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from sync_assets.ingest.landing import Batch
from sync_assets.warehouse import scalar


@dataclass(frozen=True)
class RawCounts:
    landed: int
    duplicates: int
    already_ingested: bool = False

    @property
    def kept(self) -> int:
        return self.landed - self.duplicates


def read_lines(path: Path) -> pa.Table:
    """The batch's lines as (line_no, line, decode_error); invalid UTF-8 is kept, and marked."""
    data = path.read_bytes()
    if data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        return pa.table({"line_no": [], "line": [], "decode_error": []}, schema=_LINES_SCHEMA)
    raw_lines = data.split(b"\n")
    try:
        # Arrow checks the UTF-8 of every line in C: 5 times faster than decoding in Python.
        lines = pa.array(raw_lines, pa.binary()).cast(pa.string())
        errors = pa.nulls(len(raw_lines), pa.string())
    except pa.ArrowInvalid:
        decoded, messages = _decode_line_by_line(raw_lines)
        lines, errors = pa.array(decoded, pa.string()), pa.array(messages, pa.string())
    return pa.table(
        {
            "line_no": pa.array(range(1, len(raw_lines) + 1), pa.int64()),
            "line": lines,
            "decode_error": errors,
        },
        schema=_LINES_SCHEMA,
    )


_LINES_SCHEMA = pa.schema(
    [("line_no", pa.int64()), ("line", pa.string()), ("decode_error", pa.string())]
)


def _decode_line_by_line(raw_lines: list[bytes]) -> tuple[list[str], list[str | None]]:
    lines: list[str] = []
    errors: list[str | None] = []
    for raw in raw_lines:
        try:
            lines.append(raw.decode("utf-8"))
            errors.append(None)
        except UnicodeDecodeError as exc:
            lines.append(raw.decode("utf-8", errors="backslashreplace"))
            errors.append(f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at offset {exc.start}")
    return lines, errors


def ingest_batch(con: duckdb.DuckDBPyConnection, batch: Batch) -> RawCounts:
    """Land one batch in `raw_events`; a batch already ingested is left as it is."""
    existing = con.execute(
        "SELECT landed, duplicates FROM batches WHERE batch_id = ?", [batch.batch_id]
    ).fetchone()
    if existing:
        return RawCounts(landed=existing[0], duplicates=existing[1], already_ingested=True)

    lines = read_lines(batch.path)
    con.register("batch_lines", lines)
    # Classify on (line_no, event_id) only; the lines themselves are read once, by the insert.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE batch_classified AS
        WITH ids AS (
            SELECT line_no,
                   CASE WHEN decode_error IS NULL AND json_valid(line)
                        THEN nullif(json_extract_string(line, '$.id'), '') END AS event_id
            FROM batch_lines
        ), firsts AS (
            SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY line_no) AS nth,
                   min(line_no) OVER (PARTITION BY event_id) AS first_line
            FROM ids
        )
        SELECT f.*, r.batch_id AS earlier_batch, r.line_no AS earlier_line,
               f.event_id IS NOT NULL AND (r.batch_id IS NOT NULL OR f.nth > 1) AS duplicate
        FROM firsts f
        LEFT JOIN raw_events r ON f.event_id IS NOT NULL AND r.event_id = f.event_id
        """
    )
    con.execute(
        """
        INSERT INTO duplicate_events
        SELECT ?, line_no, event_id,
               coalesce(earlier_batch, ?), coalesce(earlier_line, first_line), now()
        FROM batch_classified WHERE duplicate
        """,
        [batch.batch_id, batch.batch_id],
    )
    con.execute(
        """
        INSERT INTO raw_events
        SELECT ?, l.line_no, c.event_id, now(), strlen(l.line), l.decode_error, l.line
        FROM batch_lines l JOIN batch_classified c USING (line_no)
        WHERE NOT c.duplicate
        """,
        [batch.batch_id],
    )
    landed = lines.num_rows
    duplicates = scalar(
        con, "SELECT count(*) FROM duplicate_events WHERE batch_id = ?", [batch.batch_id]
    )
    con.execute(
        """
        INSERT INTO batches (batch_id, system, file_name, landed, duplicates, ingested_at)
        VALUES (?, ?, ?, ?, ?, now())
        """,
        [batch.batch_id, batch.system, batch.file_name, landed, duplicates],
    )
    # Cleaned up on success only: after an error the transaction is aborted, and any statement
    # here would replace the real error with "transaction is aborted".
    con.unregister("batch_lines")
    con.execute("DROP TABLE batch_classified")
    return RawCounts(landed=landed, duplicates=duplicates)
