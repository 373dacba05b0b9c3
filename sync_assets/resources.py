"""Dagster resources: the DuckDB warehouse and the landing zone, both under the data folder."""

import contextlib
from collections.abc import Iterator

import dagster as dg
import duckdb

from sync_assets import warehouse
from sync_assets.ingest.landing import LandingZone
from sync_assets.settings import DataFolder


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB file that holds raw events, dead letters, golden records and the batch ledger."""

    path: str

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.path) as con:
            yield con


class LandingZoneResource(dg.ConfigurableResource):
    """Where source systems drop their batches of change events, one folder per system."""

    root: str

    def zone(self) -> LandingZone:
        return LandingZone(self.root)


def default_resources(folder: DataFolder | None = None) -> dict[str, dg.ConfigurableResource]:
    folder = folder or DataFolder.from_env()
    return {
        "warehouse": WarehouseResource(path=str(folder.warehouse)),
        "landing_zone": LandingZoneResource(root=str(folder.landing)),
    }
