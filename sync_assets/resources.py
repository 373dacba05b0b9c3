"""Dagster resources: the DuckDB warehouse, the landing zone and the source systems."""

import contextlib
import os
from collections.abc import Iterator

import dagster as dg
import duckdb
import sqlalchemy as sa

from sync_assets import warehouse
from sync_assets.connectors.sources import open_source, sqlite_url
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


class SystemsResource(dg.ConfigurableResource):
    """Where each source system is, as a SQLAlchemy URL; every connection is read-only.

    On the embedded default these are the demo's SQLite files. A real deployment names them in
    SYNCFABRIC_<SYSTEM>_URL (credentials included), passed through `dg.EnvVar` so they never show
    in the UI.
    """

    crm_url: str
    billing_url: str
    support_url: str

    def url(self, system: str) -> str:
        urls = {"crm": self.crm_url, "billing": self.billing_url, "support": self.support_url}
        try:
            return urls[system]
        except KeyError:
            raise KeyError(f"no URL configured for system {system!r}") from None

    def engine(self, system: str) -> sa.Engine:
        return open_source(self.url(system))


def system_url(folder: DataFolder, system: str) -> str | dg.EnvVar:
    variable = f"SYNCFABRIC_{system.upper()}_URL"
    if os.environ.get(variable):
        return dg.EnvVar(variable)
    return sqlite_url(folder.system_database(system))


def default_resources(folder: DataFolder | None = None) -> dict[str, dg.ConfigurableResource]:
    folder = folder or DataFolder.from_env()
    return {
        "warehouse": WarehouseResource(path=str(folder.warehouse)),
        "landing_zone": LandingZoneResource(root=str(folder.landing)),
        "systems": SystemsResource(
            crm_url=system_url(folder, "crm"),
            billing_url=system_url(folder, "billing"),
            support_url=system_url(folder, "support"),
        ),
    }
