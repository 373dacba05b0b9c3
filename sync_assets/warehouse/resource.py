"""The warehouse as a Dagster resource: a connection per step, its operator errors as the step's."""

import contextlib
from collections.abc import Iterator

import dagster as dg
import duckdb

from sync_assets import warehouse
from sync_assets.operate.failures import as_step_failure


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB file that holds raw events, dead letters, golden records and the batch ledger."""

    path: str

    @contextlib.contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for the step; an operator's situation inside it (the warehouse held by
        another process, say) fails the step with its message, no traceback needed."""
        with as_step_failure(), warehouse.connect(self.path, read_only=read_only) as con:
            yield con
