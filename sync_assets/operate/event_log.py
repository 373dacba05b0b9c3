"""syncctl's Dagster event log: Dagster's SQLite one, with its connections kept open.

Dagster's `SqliteEventLogStorage` makes a new engine and connection for every read and write and
closes them after, about seven per event, and closing a file's last connection checkpoints its
write-ahead log: about 10 ms per event, some 280 events and 2 s of CPU in `syncctl run` on the
demo. This subclass keeps one engine per database file (the index and the latest runs' files),
whose pool keeps its connection open, so each write is a transaction on an open connection.

The files, tables and transactions are Dagster's own, so the UI and the daemon read and write the
same files with the stock class, and every transaction still commits before the next step: a
crash loses nothing committed. Only syncctl's process uses this class (`runner.open_instance`);
dagster.yaml is not changed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine

RUN_FILES_KEPT_OPEN = 2
"""Runs' files kept open besides the index: a command's runs go one after the other."""


class KeptOpenSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: dict[str, Engine] = {}
        """Open engines by file (shard), the most recently used last."""
        self._engines_lock = threading.Lock()
        """Not Dagster's `_db_lock`: `has_table` is asked while a `_connect` holds that."""
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> KeptOpenSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        """As Dagster's, but on the shard's open engine (see the module's docstring)."""
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """As Dagster's (asked of the index before each asset check event), on its open engine."""
        engine = self._engine(INDEX_SHARD_NAME)
        with engine.connect() as conn:
            return bool(engine.dialect.has_table(conn, table_name))

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.pop(shard, None) or create_engine(
                self.conn_string_for_shard(shard),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            self._engines[shard] = engine
            runs = [name for name in self._engines if name != INDEX_SHARD_NAME]
            for name in runs[:-RUN_FILES_KEPT_OPEN]:
                self._engines.pop(name).dispose()
            return engine

    def dispose(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
        super().dispose()


def keep_open(ref: InstanceRef) -> InstanceRef:
    """The instance `ref` with this storage in place of Dagster's SQLite event log, configured
    as Dagster configured it; an instance on other storage (PostgreSQL) as it is."""
    stock = ref.event_storage_data
    unified = ref.storage_data
    if (
        stock is None
        or stock.class_name != SqliteEventLogStorage.__name__
        or not stock.module_name.startswith("dagster.")
        or (unified is not None and unified.class_name != DagsterSqliteStorage.__name__)
    ):
        return ref
    # Dagster builds the storages from the unified one when it is there: leave it out, the run
    # and schedule storages are named beside it.
    return ref._replace(
        storage_data=None,
        event_storage_data=stock._replace(
            module_name=__name__, class_name=KeptOpenSqliteEventLogStorage.__name__
        ),
    )
