"""The PII functions of a warehouse connection, so sealing runs inside the existing SQL.

`warehouse.connect` installs them on every connection, with the keyring of the warehouse's data
folder:

| SQL                        | what                                                       |
| -------------------------- | ---------------------------------------------------------- |
| `pii_seal(field, value)`   | the value sealed under the current key (crypto.py)        |
| `pii_open(field, value)`   | a token opened (a clear value read as it is)               |
| `pii_mask(value)`          | the keyed fingerprint (fingerprint.py)                     |

`pii_seal` and `pii_open` are vectorized (Arrow in, Arrow out: one Python call per chunk of 2,048
rows, not per row; a field's values are sealed in one loop). `pii_mask` is a plain Python
function, a call per value that is not NULL: a keyed hash per value either way (500k values:
1.0 s both ways), and DuckDB imports pandas on the first call of an Arrow function (0.25 s, a
sixteenth of `syncctl check`, which masks the values of its findings and seals nothing).
DuckDB reports an exception raised inside one as its own `InvalidInputException` text; the
`SyncfabricError` behind it (an unknown key id, a tampered token) is kept on the connection's
`Pii` and `warehouse.connect` raises it instead, with its message and exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
from duckdb import sqltypes
from duckdb.func import PythonUDFType

from sync_assets.errors import SyncfabricError
from sync_assets.security.crypto import Sealer
from sync_assets.security.fingerprint import fingerprint
from sync_assets.security.keys import keyring


class Pii:
    """A connection's sealer and fingerprint key, and the last error its SQL functions met."""

    def __init__(self, folder: Path | None) -> None:
        self.sealer = Sealer(keyring(folder))
        self.failure: SyncfabricError | None = None

    @property
    def keyring(self):
        return self.sealer.keyring

    def mask(self, value: object) -> str:
        return fingerprint(self.keyring.fingerprint_key, value)

    def take_failure(self) -> SyncfabricError | None:
        failure, self.failure = self.failure, None
        return failure


_INSTALLED: dict[int, tuple[duckdb.DuckDBPyConnection, Pii]] = {}
"""By connection: the connection is held too, so its id is not reused while it is listed."""


def _database_folder(con: duckdb.DuckDBPyConnection) -> Path | None:
    found = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return Path(found[0][0]).resolve().parent if found and found[0][0] else None


def install(con: duckdb.DuckDBPyConnection, folder: Path | None = None) -> Pii:
    """Register the PII functions on `con` (once); `folder` defaults to the database file's."""
    found = _INSTALLED.get(id(con))
    if found is not None and found[0] is con:
        return found[1]
    pii = Pii(folder if folder is not None else _database_folder(con))
    if folder is None and _has_functions(con):
        # A wrapper of a connection that has them (a test's): the same folder, the same keys.
        _INSTALLED[id(con)] = (con, pii)
        return pii
    varchar = sqltypes.VARCHAR
    con.create_function(
        "pii_seal", _sealing(pii), [varchar, varchar], varchar,
        type=PythonUDFType.ARROW, side_effects=True,  # a fresh nonce per call: never folded or cached
    )  # fmt: skip
    con.create_function(
        "pii_open",
        _opening(pii),
        [varchar, varchar],
        varchar,
        type=PythonUDFType.ARROW,
    )
    con.create_function("pii_mask", pii.mask, [varchar], varchar, type=PythonUDFType.NATIVE)
    _INSTALLED[id(con)] = (con, pii)
    return pii


def _has_functions(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_functions() WHERE function_name = 'pii_seal'"
        ).fetchall()[0][0]
    )


def pii_of(con: duckdb.DuckDBPyConnection) -> Pii:
    """The connection's PII functions, installed if they were not (a connection of a test)."""
    return install(con)


def forget(con: duckdb.DuckDBPyConnection) -> None:
    _INSTALLED.pop(id(con), None)


def raise_failure(con: duckdb.DuckDBPyConnection, error: BaseException) -> None:
    """Raise the SyncfabricError a PII function met, if `error` is DuckDB's report of it."""
    found = _INSTALLED.get(id(con))
    if found is None or not isinstance(error, duckdb.Error):
        return
    failure = found[1].take_failure()
    if failure is not None:
        raise failure from None


def _vectorized(pii: Pii, function: Callable[[str, str], str]):
    def call(fields: pa.ChunkedArray, values: pa.ChunkedArray) -> pa.Array:
        try:
            out = [
                None if v is None else function(f, v)
                for f, v in zip(fields.to_pylist(), values.to_pylist(), strict=True)
            ]
        except SyncfabricError as error:
            pii.failure = error
            raise
        return pa.array(out, pa.string())

    return call


def _sealing(pii: Pii):
    return _per_field(pii, pii.sealer.seal_many, pii.sealer.seal)


def _opening(pii: Pii):
    return _per_field(pii, pii.sealer.open_many, pii.sealer.open)


def _per_field(pii: Pii, many: Callable[[str, list], list], one: Callable[[str, str], str]):
    """One field per call in practice (a constant in the SQL): its values go in one loop."""
    each = _vectorized(pii, one)

    def call(fields: pa.ChunkedArray, values: pa.ChunkedArray) -> pa.Array:
        names = fields.unique().to_pylist()
        if len(names) != 1 or names[0] is None:
            return each(fields, values)
        try:
            return pa.array(many(names[0], values.to_pylist()), pa.string())
        except SyncfabricError as error:
            pii.failure = error
            raise

    return call
