"""The project's systems as a Dagster resource: one URL per system, kept as the `EnvVar` its
`systems/<system>.yaml` names, read-only rows for snapshots."""

import contextlib
import os
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa

from sync_assets.connectors.mappings import Mapping
from sync_assets.connectors.platform_api import is_platform_url, read_records
from sync_assets.connectors.problems import reading
from sync_assets.connectors.sources import open_source, sqlite_url, stream_batches
from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.operate.failures import as_step_failure
from sync_assets.project import Project, current
from sync_assets.settings import DataFolder


class SystemsResource(dg.ConfigurableResource):
    """Where each system of the project is: a SQLAlchemy URL (every connection read-only), or the
    URL of a no-code platform's records API (http or https).

    Each system's URL comes from the environment variable its `systems/<system>.yaml` names
    (`url_env`, credentials included), passed through `dg.EnvVar` so it never shows in the UI. On
    the embedded default, a system whose variable is not set is the SQLite file
    `systems/<system>.sqlite` in the data folder (the demo builds them).

    A system whose file names a `write_url_env` is written (deliveries) through that URL, and only
    read through `url_env`: the two can log in as a writer and a read-only role
    (`syncctl grants`). `write_urls` holds those; a system not in it is written through its URL.
    """

    urls: dict[str, str]
    write_urls: dict[str, str] = {}

    def url(self, system: str) -> str:
        """The URL snapshots read the system through."""
        try:
            return self.urls[system]
        except KeyError:
            raise KeyError(f"no URL configured for system {system!r}") from None

    def write_url(self, system: str) -> str:
        """The URL deliveries write the system through: its writer's, else its only one."""
        return self.write_urls.get(system) or self.url(system)

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


def system_url(folder: DataFolder, system: str, project: Project | None = None) -> str | dg.EnvVar:
    """The system's URL for the resource: its variable as an `EnvVar` (resolved only inside a
    run, never shown), else the embedded default's SQLite file."""
    variable = (project or current()).systems[system].url_env
    if os.environ.get(variable):
        return dg.EnvVar(variable)
    return sqlite_url(folder.system_database(system))


def system_write_urls(project: Project | None = None) -> dict[str, str | dg.EnvVar]:
    """The writer URLs of the systems whose file names a `write_url_env`, each as its `EnvVar`.

    With neither variable set, the system is the embedded SQLite file, read and written alike.
    With the read URL set and the writer's not, the resources are not built (a SyncfabricError
    naming both variables): writing through the read-only role would only fail row by row."""
    found: dict[str, str | dg.EnvVar] = {}
    for name, system in (project or current()).systems.items():
        writer = system.write_url_env
        if writer is None or not (os.environ.get(writer) or os.environ.get(system.url_env)):
            continue
        if not os.environ.get(writer):
            raise SyncfabricError(
                f"systems/{name}.yaml names write_url_env: {writer} for deliveries, but {writer} "
                f"is not set while {system.url_env} is. Fix: set {writer} to the URL of the "
                f"{name} system's writer role (syncctl grants --system {name}), or remove "
                f"write_url_env to write through {system.url_env}",
                exit_code=EXIT_USAGE,
            )
        found[name] = dg.EnvVar(writer)
    return found
