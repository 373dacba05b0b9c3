"""A small local service that behaves like a no-code platform (think Airtable or Softr).

Tests and the demo need an HTTP destination that is honest about the hard parts of delivering
to one: every write carries an idempotency key, so a retried request is answered from a ledger
instead of being applied twice; a write may carry a version, so a late or reordered delivery
cannot roll a record back; and the service can be told to fail (errors, rate limits, dropped
connections, latency, being down) to prove that a sender copes.

Standard library only: `http.server` in a background thread over ONE SQLite file, which holds
the platform's tables (the demo support desk's `users`, say) and the service's own bookkeeping
tables, whose names start with `_`. One lock guards the one connection, so writes are serialized
and a read never sees another request's half-done transaction.

HTTP contract (JSON bodies, errors as `{"error": <code>, "message": "... fix: ...", ...}`):

- `GET  /v1/tables/{table}/records?cursor=<rowid>&limit=<1..10000>` -> 200
  `{"records": [{column: value}], "next_cursor": <rowid> | null}`
- `POST /v1/tables/{table}/records` with an `Idempotency-Key` header and
  `{"match": {...}, "op": "upsert" | "delete", "fields": {...}, "version": <str> | null}` -> 200
  `{"status": "applied" | "already_absent", "previous": <row> | null, "record": <row> | null}`
- `GET  /v1/tables/{table}/record?match=<JSON object>` -> 200 `{"record": <row> | null,
  "etag": <str> | null}`, with an `ETag` header when a row matches: the one row a write's `match`
  would name, and its entity tag (a hash of the whole row: any change to it changes the tag).
- `GET  /v1/idempotency/{key}` -> 200 `{"key", "status", "response"}`: the answer stored for a
  key, as a replay would give it; 404 `unknown_key` for a key never used.
- `PUT  /_admin/faults` (a `Faults` as JSON), `GET /_admin/stats`: never faulted.

Conditional writes: a POST may carry `If-Match: <etag>` (apply only while the matched row still
has this tag) or `If-None-Match: *` (apply only while no row matches). Otherwise the answer is 412
`precondition_failed` with the row's current `etag`, nothing is applied, and nothing is stored
under the key: the client reads the row again, decides, and may send the key again. The ledger
comes first: a key applied already is answered from it, whatever the precondition says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
MAX_BODY_BYTES = 1 << 20
RECORDS_PATH = re.compile(r"^/v1/tables/([^/]+)/records$")
RECORD_PATH = re.compile(r"^/v1/tables/([^/]+)/record$")
LEDGER_PATH = re.compile(r"^/v1/idempotency/([^/]+)$")

BOOKKEEPING = (
    """CREATE TABLE IF NOT EXISTS _idempotency (
        key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, status INTEGER NOT NULL,
        response TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS _versions (
        tbl TEXT NOT NULL, match TEXT NOT NULL, version TEXT NOT NULL, PRIMARY KEY (tbl, match))""",
    """CREATE TABLE IF NOT EXISTS _applications (
        idempotency_key TEXT NOT NULL, tbl TEXT NOT NULL, match TEXT NOT NULL, op TEXT NOT NULL,
        applied_at TEXT NOT NULL)""",
)

COUNTERS = (
    "requests",
    "reads",
    "applied",
    "already_absent",
    "replayed",
    "stale",
    "precondition_failed",
    "rejected",
    "injected_errors",
    "rate_limited",
    "dropped",
    "dropped_after_apply",
    "server_errors",
)


# -- faults ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """How the platform misbehaves; the defaults are a healthy platform.

    Faults apply to the `/v1/` endpoints only, and to writes only unless `on_reads`. The three
    pre-apply rates are bands of one random draw, so each is exactly its fraction of requests.
    """

    error_rate: float = 0.0
    error_status: int = 503
    rate_limit_rate: float = 0.0
    retry_after_s: int = 1
    latency_ms: tuple[int, int] = (0, 0)
    drop_rate: float = 0.0
    drop_after_apply_rate: float = 0.0
    down: bool = False
    on_reads: bool = False

    def __post_init__(self) -> None:
        for name in ("error_rate", "rate_limit_rate", "drop_rate", "drop_after_apply_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1, not {value!r}")
        if self.error_rate + self.rate_limit_rate + self.drop_rate > 1:
            raise ValueError("error_rate + rate_limit_rate + drop_rate must not exceed 1")
        if not _is_int(self.error_status) or not 400 <= self.error_status <= 599:
            raise ValueError(
                f"error_status must be an HTTP error status, not {self.error_status!r}"
            )
        if not _is_int(self.retry_after_s) or self.retry_after_s < 0:
            raise ValueError(
                f"retry_after_s must be whole seconds >= 0, not {self.retry_after_s!r}"
            )
        low, high = self.latency_ms
        if not (_is_int(low) and _is_int(high) and 0 <= low <= high):
            raise ValueError(
                f"latency_ms must be [low, high] with 0 <= low <= high, not {low, high}"
            )

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        """Faults from `PUT /_admin/faults`; fields left out take their (healthy) defaults."""
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object of Faults fields")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown fault field(s) {unknown}; known: {list(cls().as_json())}")
        latency = data.get("latency_ms", (0, 0))
        if not isinstance(latency, list | tuple) or len(latency) != 2:
            raise ValueError("latency_ms must be [low, high] in milliseconds")
        return cls(**{**data, "latency_ms": (latency[0], latency[1])})

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "latency_ms": list(self.latency_ms)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- replies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, and the stats counter it adds to (none for admin answers)."""

    status: int
    body: dict[str, Any]
    outcome: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Refused(Exception):
    """Ends a request early with `reply` (a 4xx the client must fix)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.body.get("error"))
        self.reply = reply


def refusal(status: int, error: str, message: str, **details: Any) -> Refused:
    outcome = "stale" if status == 409 else "rejected"
    return Refused(Reply(status, {"error": error, **details, "message": message}, outcome))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- write requests -------------------------------------------------------------------------------

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class WriteRequest:
    match: dict[str, Scalar]
    op: str
    fields: dict[str, Scalar]
    version: str | None


def parse_write(body: Any) -> WriteRequest:
    """The write's shape, checked before anything is looked up (400s are not stored)."""
    if not isinstance(body, dict):
        raise _bad_body("body", "the body must be a JSON object")
    unknown = sorted(set(body) - {"match", "op", "fields", "version"})
    if unknown:
        raise _bad_body(
            unknown[0], f"unknown key(s) {unknown}; fix: send match, op, fields, version"
        )
    op = body.get("op")
    if op not in ("upsert", "delete"):
        raise _bad_body("op", f"op must be 'upsert' or 'delete', not {op!r}")
    match = _columns_object(body, "match")
    if not match:
        raise _bad_body("match", "match must name at least one column; fix: match on a key")
    fields = _columns_object(body, "fields")
    if op == "delete" and fields:
        raise _bad_body("fields", "a delete takes no fields; fix: leave fields out or empty")
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        raise _bad_body("version", "version must be a sortable string or null")
    return WriteRequest(match, op, fields, version)


def _columns_object(body: dict[str, Any], key: str) -> dict[str, Scalar]:
    value = body.get(key, {})
    if not isinstance(value, dict):
        raise _bad_body(key, f"{key} must be a JSON object of column: value")
    for column, item in value.items():
        if isinstance(item, dict | list):
            raise _bad_body(
                f"{key}.{column}", f"{key}.{column} must be a scalar (text, number, null)"
            )
    return value


def _bad_body(name: str, message: str) -> Refused:
    return refusal(400, "invalid_body", message, field=name)


@dataclass(frozen=True)
class Precondition:
    """What a conditional write requires of the row its `match` names (RFC 9110 section 13)."""

    if_match: str | None = None
    """The row must exist and have this entity tag ('*': any row)."""
    if_none_match: bool = False
    """No row may match (`If-None-Match: *`)."""

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> Precondition:
        if_none_match = headers.get("if-none-match", "").strip()
        if if_none_match not in ("", "*"):
            raise refusal(
                400,
                "invalid_precondition",
                "If-None-Match takes only '*' here; fix: send If-Match with the record's ETag",
                field="If-None-Match",
            )
        if_match = headers.get("if-match", "").strip() or None
        return cls(if_match, if_none_match == "*")

    def check(self, row: dict[str, Any] | None) -> None:
        """Raise `PreconditionFailed` unless the row (None: no row) is as required."""
        etag = None if row is None else record_etag(row)
        if self.if_none_match and row is not None:
            failed = "a record matches already"
        elif self.if_match is not None and row is None:
            failed = "no record matches any more"
        elif self.if_match not in (None, "*", etag):
            failed = "the record changed since it was read"
        else:
            return
        raise PreconditionFailed(
            Reply(
                412,
                {
                    "error": "precondition_failed",
                    "etag": etag,
                    "message": f"{failed}; nothing was applied; fix: read the record again "
                    "(GET .../record?match=...) and decide",
                },
                "precondition_failed",
            )
        )


class PreconditionFailed(Refused):
    """A 412: not stored under the key, since the same key may succeed once the row is read
    again."""


def record_etag(row: dict[str, Any]) -> str:
    """A row's entity tag: a hash of all of its columns, quoted as HTTP wants it."""
    digest = hashlib.sha256(_canonical(row).encode()).hexdigest()[:32]
    return f'"{digest}"'


# -- the store ------------------------------------------------------------------------------------


def open_database(path: Path | str) -> sqlite3.Connection:
    """The platform's SQLite file in WAL mode: readers elsewhere are not blocked by writes.

    synchronous = NORMAL: a commit survives the process crashing, and a power loss can only drop
    the latest commits whole (ledger and change together), never split them; FULL would cost an
    fsync per write (about 50 ms on a plain disk).
    """
    con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.execute("PRAGMA foreign_keys = ON")
    for ddl in BOOKKEEPING:
        con.execute(ddl)
    return con


def database_counts(con: sqlite3.Connection) -> dict[str, int]:
    """`keys_applied_more_than_once` must stay 0: the proof that no change was applied twice."""
    applications = con.execute("SELECT COUNT(*) FROM _applications").fetchone()[0]
    repeated = con.execute(
        "SELECT COUNT(*) FROM (SELECT idempotency_key FROM _applications"
        " GROUP BY idempotency_key HAVING COUNT(*) > 1)"
    ).fetchone()[0]
    return {"applications": applications, "keys_applied_more_than_once": repeated}


class Store:
    """The platform's tables and its bookkeeping, behind one connection and one lock."""

    def __init__(self, path: Path | str) -> None:
        self._con = open_database(path)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def read_page(self, table: str, cursor: int | None, limit: int) -> Reply:
        """Rows after rowid `cursor`, in rowid order; one row more than asked says if more follow."""
        where, params = ("WHERE rowid > ?", [cursor]) if cursor is not None else ("", [])
        with self._lock:
            self._columns(table, missing_status=404)
            result = self._con.execute(
                f"SELECT rowid, * FROM {_quote(table)} {where} ORDER BY rowid LIMIT ?",
                [*params, limit + 1],
            )
            names = [d[0] for d in result.description[1:]]
            rows = result.fetchall()
        page = rows[:limit]
        next_cursor = page[-1][0] if len(rows) > limit else None
        records = [dict(zip(names, row[1:], strict=True)) for row in page]
        return Reply(200, {"records": records, "next_cursor": next_cursor}, "reads")

    def read_record(self, table: str, match: dict[str, Scalar]) -> Reply:
        """The one row `match` names, and its entity tag for a conditional write."""
        with self._lock:
            columns = self._columns(table, missing_status=404)
            self._known_columns(table, columns, match)
            found = self._matching_row(table, match)
        row = None if found is None else found[1]
        etag = None if row is None else record_etag(row)
        return Reply(200, {"record": row, "etag": etag}, "reads", {"ETag": etag} if etag else {})

    def ledger_entry(self, key: str) -> Reply:
        """The answer stored for an idempotency key: did a change under it happen?"""
        with self._lock:
            held = self._con.execute(
                "SELECT status, response FROM _idempotency WHERE key = ?", [key]
            ).fetchone()
        if held is None:
            return refusal(
                404, "unknown_key", "no write was ever applied or refused under this key"
            ).reply
        status, response = held
        body = {"key": key, "status": status, "response": json.loads(response)}
        return Reply(200, body, "replayed")

    def write(
        self, key: str, table: str, body: Any, precondition: Precondition | None = None
    ) -> Reply:
        """Ledger, precondition, version, row and application: one transaction, so all of it
        or none."""
        request = parse_write(body)
        request_hash = hashlib.sha256(
            _canonical({"table": table, "body": body}).encode()
        ).hexdigest()
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                reply = self._write_once(
                    key, request_hash, table, request, precondition or Precondition()
                )
                self._con.execute("COMMIT")
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise
        return reply

    def _write_once(
        self,
        key: str,
        request_hash: str,
        table: str,
        request: WriteRequest,
        precondition: Precondition,
    ) -> Reply:
        held = self._con.execute(
            "SELECT request_hash, status, response FROM _idempotency WHERE key = ?", [key]
        ).fetchone()
        if held is not None:
            return _replay(held, request_hash)
        try:
            reply = self._change(key, table, request, precondition)
        except PreconditionFailed:
            raise  # not stored: the key may be sent again once the row was read anew
        except Refused as refused:
            reply = refused.reply
        self._con.execute(
            "INSERT INTO _idempotency (key, request_hash, status, response, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [key, request_hash, reply.status, json.dumps(reply.body), _now()],
        )
        return reply

    def _change(
        self, key: str, table: str, request: WriteRequest, precondition: Precondition
    ) -> Reply:
        columns = self._columns(table, missing_status=422)
        self._known_columns(table, columns, {**request.match, **request.fields})
        match_key = _canonical(request.match)
        previous = self._matching_row(table, request.match)
        precondition.check(None if previous is None else previous[1])
        self._guard_version(table, match_key, request.version)
        if request.op == "delete":
            status, record = self._delete(table, previous)
        else:
            status, record = "applied", self._upsert(table, request, previous)
        if request.version is not None:
            self._con.execute(
                "INSERT OR REPLACE INTO _versions (tbl, match, version) VALUES (?, ?, ?)",
                [table, match_key, request.version],
            )
        if status == "applied":
            self._con.execute(
                "INSERT INTO _applications (idempotency_key, tbl, match, op, applied_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [key, table, match_key, request.op, _now()],
            )
        previous_row = None if previous is None else previous[1]
        return Reply(200, {"status": status, "previous": previous_row, "record": record}, status)

    def _columns(self, table: str, *, missing_status: int) -> list[str]:
        """The table's columns: the allow-list for names that end up in SQL."""
        hidden = table.startswith(("_", "sqlite_"))
        found = self._con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
        ).fetchone()
        if hidden or found is None:
            raise refusal(
                missing_status,
                "unknown_table",
                f"there is no table {table!r}; fix: name one of {self._tables()}",
                field=table,
            )
        return [
            row[0] for row in self._con.execute("SELECT name FROM pragma_table_info(?)", [table])
        ]

    @staticmethod
    def _known_columns(table: str, columns: list[str], named: dict[str, Scalar]) -> None:
        for name in named:
            if name not in columns:
                raise refusal(
                    422,
                    "unknown_field",
                    f"{table} has no column {name!r}; fix: use one of {columns}",
                    field=name,
                )

    def _tables(self) -> list[str]:
        rows = self._con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            " ORDER BY name"
        )
        return [row[0] for row in rows]

    def _guard_version(self, table: str, match_key: str, version: str | None) -> None:
        """A write older than the one applied last must not roll the record back. One as old is
        let through: it re-applies the same state (a record drifted again, or a compensation),
        and the idempotency key, not the version, keeps a change from being applied twice."""
        if version is None:
            return
        held = self._con.execute(
            "SELECT version FROM _versions WHERE tbl = ? AND match = ?", [table, match_key]
        ).fetchone()
        if held is not None and version < held[0]:
            raise refusal(
                409,
                "stale_version",
                f"version {version!r} is older than the held {held[0]!r}; fix: nothing, a "
                "newer change was applied already",
                held_version=held[0],
            )

    def _matching_row(
        self, table: str, match: dict[str, Scalar]
    ) -> tuple[int, dict[str, Any]] | None:
        """The one row `match` names, as (rowid, row); None if none; 422 if several."""
        conditions = " AND ".join(
            f"{_quote(c)} IS NULL" if v is None else f"{_quote(c)} = ?" for c, v in match.items()
        )
        values = [v for v in match.values() if v is not None]
        result = self._con.execute(
            f"SELECT rowid, * FROM {_quote(table)} WHERE {conditions} LIMIT 2", values
        )
        names = [d[0] for d in result.description[1:]]
        rows = result.fetchall()
        if len(rows) > 1:
            raise refusal(
                422,
                "ambiguous_match",
                f"match names more than one row of {table}; fix: match on a unique key",
                field="match",
            )
        return (rows[0][0], dict(zip(names, rows[0][1:], strict=True))) if rows else None

    def _upsert(
        self, table: str, request: WriteRequest, previous: tuple[int, dict[str, Any]] | None
    ) -> dict[str, Any]:
        if previous is None:
            values = {**request.match, **request.fields}
            names = ", ".join(map(_quote, values))
            marks = ", ".join("?" for _ in values)
            sql = f"INSERT INTO {_quote(table)} ({names}) VALUES ({marks}) RETURNING *"
            return self._changed_row(sql, list(values.values()))
        if not request.fields:
            return previous[1]
        assignments = ", ".join(f"{_quote(c)} = ?" for c in request.fields)
        sql = f"UPDATE {_quote(table)} SET {assignments} WHERE rowid = ? RETURNING *"
        return self._changed_row(sql, [*request.fields.values(), previous[0]])

    def _delete(
        self, table: str, previous: tuple[int, dict[str, Any]] | None
    ) -> tuple[str, dict[str, Any] | None]:
        if previous is None:
            return "already_absent", None
        self._con.execute(f"DELETE FROM {_quote(table)} WHERE rowid = ?", [previous[0]])
        return "applied", None

    def _changed_row(self, sql: str, params: list[Any]) -> dict[str, Any]:
        """Run one INSERT/UPDATE ... RETURNING *; a constraint failure undoes that statement only
        (SQLite's default ABORT), so the 422 can still be stored in the same transaction."""
        try:
            result = self._con.execute(sql, params)
            row = result.fetchone()
        except sqlite3.IntegrityError as exc:
            raise refusal(
                422,
                "constraint",
                f"{exc}; fix: send values the table's constraints accept",
            ) from exc
        return dict(zip([d[0] for d in result.description], row, strict=True))


def _replay(held: tuple[str, int, str], request_hash: str) -> Reply:
    stored_hash, status, response = held
    if stored_hash != request_hash:
        raise refusal(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request; fix: use a new key per change",
            field="Idempotency-Key",
        )
    return Reply(status, json.loads(response), "replayed", {"Idempotent-Replayed": "true"})


# -- the service ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class PlatformService:
    """The platform on 127.0.0.1, in a background thread; `stop()` then `start()` keeps the port."""

    def __init__(
        self,
        database: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
    ) -> None:
        self.database = Path(database)
        self._host = host
        self._port = port
        self._faults = Faults()
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self.traceparents: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    def __enter__(self) -> PlatformService:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._port == 0:
            raise RuntimeError("the port is chosen by start(); start the service first")
        return f"http://{self._host}:{self._port}"

    def start(self) -> PlatformService:
        """Serve in a background thread; after a stop(), on the port it had."""
        if self._server is not None:
            raise RuntimeError(f"already serving on {self.url}")
        self._store = Store(self.database)
        try:
            server = _Server((self._host, self._port), self)
        except OSError:
            self._store.close()
            raise
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"platform-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open (keep-alive) connections, join every thread, close the file."""
        server, thread, store = self._server, self._thread, self._store
        if server is None or thread is None or store is None:
            return
        server.shutdown()
        server.cut_connections()
        server.server_close()
        thread.join()
        store.close()
        self._server = self._thread = self._store = None

    def set_faults(self, faults: Faults) -> None:
        self._faults = faults

    def stats(self) -> dict[str, int]:
        """Request counters since construction, and the ledger's counts from the database."""
        with self._counts_lock:
            counts = {name: self._counts[name] for name in COUNTERS}
        con = open_database(self.database)
        try:
            return {**counts, **database_counts(con)}
        finally:
            con.close()

    def _count(self, outcome: str | None) -> None:
        if outcome is not None:
            with self._counts_lock:
                self._counts[outcome] += 1

    def _respond(self, request: Request) -> Reply | None:
        """The answer to one request; None means: close the connection without answering."""
        if not request.path.startswith("/v1/"):
            return self._admin(request)
        self._count("requests")
        if request.method == "POST" and "traceparent" in request.headers:
            with self._counts_lock:  # W3C trace context a traced client sent with a write
                self.traceparents.append(request.headers["traceparent"])
        faults = self._faults
        if faults.down:  # a platform that is down is down for reads too
            self._count("dropped")
            return None
        if request.method != "GET" or faults.on_reads:
            return self._faulted(faults, request)
        return self._answered(self._api(request))

    def _faulted(self, faults: Faults, request: Request) -> Reply | None:
        """Latency, then at most one pre-apply fault (never stored: a retry can succeed), then
        the request itself, whose answer may be lost after it was applied."""
        low, high = faults.latency_ms
        if high:
            with self._random_lock:
                delay = self._random.uniform(low, high)
            time.sleep(delay / 1000)
        draw = (
            self._uniform() if faults.drop_rate + faults.error_rate + faults.rate_limit_rate else 1
        )
        if draw < faults.drop_rate:
            self._count("dropped")
            return None
        injected = _injected(faults, draw - faults.drop_rate)
        if injected is not None:
            return self._answered(injected)
        reply = self._answered(self._api(request))
        if faults.drop_after_apply_rate and self._uniform() < faults.drop_after_apply_rate:
            self._count("dropped_after_apply")
            return None
        return reply

    def _answered(self, reply: Reply) -> Reply:
        self._count(reply.outcome)
        return reply

    def _uniform(self) -> float:
        with self._random_lock:
            return self._random.random()

    def _api(self, request: Request) -> Reply:
        store = self._store
        assert store is not None, "requests are only served between start() and stop()"
        one_record = RECORD_PATH.match(request.path)
        ledger = LEDGER_PATH.match(request.path)
        found = RECORDS_PATH.match(request.path)
        try:
            if request.method == "GET" and one_record is not None:
                match = _match_parameter(request.query)
                return store.read_record(unquote(one_record.group(1)), match)
            if request.method == "GET" and ledger is not None:
                return store.ledger_entry(unquote(ledger.group(1)))
            if found is None or request.method not in ("GET", "POST"):
                raise refusal(404, "not_found", f"no endpoint {request.method} {request.path}")
            table = unquote(found.group(1))
            if request.method == "GET":
                cursor, limit = _page_parameters(request.query)
                return store.read_page(table, cursor, limit)
            key = request.headers.get("idempotency-key", "").strip()
            if not key:
                raise refusal(
                    400,
                    "missing_idempotency_key",
                    "every write needs an Idempotency-Key header; fix: send one key per change, "
                    "the same key on each retry",
                )
            precondition = Precondition.from_headers(request.headers)
            return store.write(key, table, _json_body(request.body), precondition)
        except Refused as refused:
            return refused.reply

    def _admin(self, request: Request) -> Reply:
        if request.method == "GET" and request.path == "/_admin/stats":
            return Reply(200, self.stats())
        if request.method == "PUT" and request.path == "/_admin/faults":
            try:
                faults = Faults.from_json(_json_body(request.body))
            except Refused as refused:
                return refused.reply
            except (TypeError, ValueError) as exc:
                return refusal(400, "invalid_faults", str(exc)).reply
            self.set_faults(faults)
            return Reply(200, faults.as_json())
        return refusal(404, "not_found", f"no endpoint {request.method} {request.path}").reply


def _injected(faults: Faults, draw: float) -> Reply | None:
    """An injected error or rate limit when `draw` falls in its band, else None."""
    if draw < faults.error_rate:
        message = "injected fault, nothing was applied; fix: retry later"
        body = {"error": "injected", "status": faults.error_status, "message": message}
        return Reply(faults.error_status, body, "injected_errors")
    if draw < faults.error_rate + faults.rate_limit_rate:
        seconds = faults.retry_after_s
        message = f"rate limited, nothing was applied; fix: retry after {seconds} s"
        body = {"error": "rate_limited", "retry_after_s": seconds, "message": message}
        return Reply(429, body, "rate_limited", {"Retry-After": str(seconds)})
    return None


def _page_parameters(query: dict[str, list[str]]) -> tuple[int | None, int]:
    try:
        cursor = int(query["cursor"][-1]) if "cursor" in query else None
        limit = int(query.get("limit", [DEFAULT_PAGE])[-1])
    except ValueError:
        raise refusal(
            400, "invalid_parameter", "cursor and limit must be integers", field="cursor/limit"
        ) from None
    if not 1 <= limit <= MAX_PAGE:
        raise refusal(
            400, "invalid_parameter", f"limit must be 1 to {MAX_PAGE}, not {limit}", field="limit"
        )
    return cursor, limit


def _match_parameter(query: dict[str, list[str]]) -> dict[str, Scalar]:
    """The `match` query parameter: a JSON object of column: value, as a write's `match`."""
    if "match" not in query:
        raise refusal(
            400, "invalid_parameter", 'name the record: ?match={"column": value}', field="match"
        )
    try:
        parsed = json.loads(query["match"][-1])
    except ValueError:
        raise refusal(400, "invalid_parameter", "match must be JSON", field="match") from None
    match = _columns_object({"match": parsed}, "match")
    if not match:
        raise _bad_body("match", "match must name at least one column; fix: match on a key")
    return match


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise refusal(400, "invalid_json", f"the body is not JSON: {exc}", field="body") from None


# -- HTTP -----------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """Tracks open connections, so that stop() can cut keep-alive ones a client still holds."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # 50 writers connecting at once must not wait for SYN retries

    def __init__(self, address: tuple[str, int], service: PlatformService) -> None:
        self.service = service
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can take seconds without DNS.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            logger.debug("connection ended: %s", type(exc).__name__)
        elif exc is not None:
            _log_unexpected("on a connection", exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SyncfabricPlatform/1"
    timeout = 30  # an idle or stalled client does not hold a thread forever
    # Headers and body are two sends: without TCP_NODELAY, Nagle and the client's delayed ACK
    # add about 40 ms to every keep-alive answer.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines and bodies may carry PII; errors are logged where they occur."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        service = self.server.service
        try:
            body = self._read_body()
        except Refused as refused:
            if url.path.startswith("/v1/"):
                service._count("requests")
                service._count("rejected")
            self._send(refused.reply, close=True)  # the unread body would poison the connection
            return
        request = Request(
            self.command,
            url.path,
            parse_qs(url.query),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        try:
            reply = service._respond(request)
        except Exception as exc:
            _log_unexpected(f"serving {self.command} {url.path}", exc)
            service._count("server_errors")
            message = f"unexpected {type(exc).__name__}; fix: see the platform service's log"
            reply = Reply(500, {"error": "internal", "message": message})
        if reply is None:
            self.close_connection = True
        else:
            self._send(reply)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise refusal(411, "length_required", "send a Content-Length, not a chunked body")
        try:
            length = int(self.headers.get("Content-Length", 0))
        except ValueError:
            raise refusal(400, "invalid_content_length", "Content-Length is not a number") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise refusal(413, "body_too_large", f"bodies are limited to {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _send(self, reply: Reply, *, close: bool = False) -> None:
        payload = json.dumps(reply.body, separators=(",", ":")).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


def _log_unexpected(context: str, exc: BaseException) -> None:
    """The type and the stack only: an exception's message may quote a request's values."""
    stack = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("unexpected %s %s\n%s", type(exc).__name__, context, stack)


def serve_forever(database: Path | str, host: str = "127.0.0.1", port: int = 0) -> None:
    """Run the platform in the foreground until Ctrl-C (for a command line)."""
    with PlatformService(database, host=host, port=port) as service:
        print(f"platform service on {service.url} over {database}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """`python -m examples.demo.seed.platform --system support`: serve a demo system's database
    (in the data folder, SYNCFABRIC_HOME) as a no-code platform's records API on 127.0.0.1."""
    import argparse

    from sync_assets.settings import DataFolder

    parser = argparse.ArgumentParser(prog="python -m examples.demo.seed.platform")
    parser.add_argument("--system", default="support", help="the demo system to serve")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    database = DataFolder.from_env().system_database(args.system)
    if not database.exists():
        parser.exit(2, f"no {args.system} database in {database.parent}: run syncctl demo first\n")
    # Stop on Ctrl-C or a plain kill, even when started with SIGINT ignored (in the background).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    serve_forever(database, "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
