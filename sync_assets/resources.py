"""Dagster resources: the DuckDB warehouse, the landing zone, the systems and delivery."""

import contextlib
import os
from collections.abc import Iterator

import dagster as dg
import duckdb
import pyarrow as pa

from sync_assets import warehouse
from sync_assets.connectors.mappings import Mapping
from sync_assets.connectors.platform_api import is_platform_url, read_records
from sync_assets.connectors.problems import reading
from sync_assets.connectors.sources import open_source, sqlite_url, stream_batches
from sync_assets.deliver.destinations import DestinationSettings
from sync_assets.deliver.outbox import Policy
from sync_assets.deliver.retry import RetryPolicy
from sync_assets.ingest.landing import LandingZone
from sync_assets.operate.failures import as_step_failure
from sync_assets.project import Project, current
from sync_assets.settings import DataFolder


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB file that holds raw events, dead letters, golden records and the batch ledger."""

    path: str

    @contextlib.contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for the step; an operator's situation inside it (the warehouse held by
        another process, say) fails the step with its message, no traceback needed."""
        with as_step_failure(), warehouse.connect(self.path, read_only=read_only) as con:
            yield con


class LandingZoneResource(dg.ConfigurableResource):
    """Where source systems drop their batches of change events, one folder per system."""

    root: str

    def zone(self) -> LandingZone:
        return LandingZone(self.root)


class SystemsResource(dg.ConfigurableResource):
    """Where each system of the project is: a SQLAlchemy URL (every connection read-only), or the
    URL of a no-code platform's records API (http or https).

    Each system's URL comes from the environment variable its `systems/<system>.yaml` names
    (`url_env`, credentials included), passed through `dg.EnvVar` so it never shows in the UI. On
    the embedded default, a system whose variable is not set is the SQLite file
    `systems/<system>.sqlite` in the data folder (the demo builds them).
    """

    urls: dict[str, str]

    def url(self, system: str) -> str:
        try:
            return self.urls[system]
        except KeyError:
            raise KeyError(f"no URL configured for system {system!r}") from None

    @contextlib.contextmanager
    def rows(self, mapping: Mapping) -> Iterator[Iterator[pa.RecordBatch]]:
        """The mapping's raw rows in Arrow chunks: from a database read-only, or from a
        no-code platform's records API when the system's URL is http(s)."""
        url = self.url(mapping.system)
        with as_step_failure(), reading(mapping.system, url):
            if is_platform_url(url):
                yield read_records(url, mapping.table)
                return
            engine = open_source(url)
            try:
                yield stream_batches(engine, mapping)
            finally:
                engine.dispose()


class DestinationConfig(dg.Config):
    """How corrections are delivered to one system."""

    base_s: float = 0.05
    cap_s: float = 2.0
    max_attempts: int = 6
    batch_size: int = 500
    concurrency: int = 8
    timeout_s: float = 10.0


class DeliveryResource(dg.ConfigurableResource):
    """Retries per destination (exponential backoff with full jitter: base, cap, attempts) and
    what to do per entity when a correction cannot be delivered (`hold` or `compensate`)."""

    default: DestinationConfig = DestinationConfig()
    destinations: dict[str, DestinationConfig] = {}
    compensation: dict[str, str] = {}
    """Entity -> hold | compensate; the catalog's choice where not named."""

    def settings(self, system: str) -> DestinationSettings:
        c = self.destinations.get(system, self.default)
        return DestinationSettings(
            RetryPolicy(c.base_s, c.cap_s, c.max_attempts), c.batch_size, c.concurrency, c.timeout_s
        )

    def policies(self) -> dict[str, Policy]:
        chosen: dict[str, Policy] = {}
        for entity in current().entities.values():
            policy = self.compensation.get(entity.name, entity.on_undeliverable)
            if policy not in ("hold", "compensate"):
                raise ValueError(
                    f"compensation for {entity.name}: {policy!r}; use hold or compensate"
                )
            chosen[entity.name] = policy  # type: ignore[assignment]
        return chosen


def system_url(folder: DataFolder, system: str, project: Project | None = None) -> str | dg.EnvVar:
    variable = (project or current()).systems[system].url_env
    if os.environ.get(variable):
        return dg.EnvVar(variable)
    return sqlite_url(folder.system_database(system))


def default_resources(
    folder: DataFolder | None = None, project: Project | None = None
) -> dict[str, dg.ConfigurableResource]:
    folder = folder or DataFolder.from_env()
    project = project or current()
    return {
        "warehouse": WarehouseResource(path=str(folder.warehouse)),
        "landing_zone": LandingZoneResource(root=str(folder.landing)),
        "systems": SystemsResource(
            urls={name: system_url(folder, name, project) for name in project.system_names}
        ),
        "delivery": DeliveryResource(),
    }
