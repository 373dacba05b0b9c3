"""The resources a code location gets, each from the stage that owns it: the warehouse, the
landing zone, the project's systems and delivery's settings."""

import dagster as dg

from sync_assets.connectors.resource import SystemsResource, system_url, system_write_urls
from sync_assets.deliver.resources import DeliveryResource
from sync_assets.ingest.resources import LandingZoneResource
from sync_assets.project import Project, current
from sync_assets.settings import DataFolder
from sync_assets.warehouse.resource import WarehouseResource


def default_resources(
    folder: DataFolder | None = None, project: Project | None = None
) -> dict[str, dg.ConfigurableResource]:
    folder = folder or DataFolder.from_env()
    project = project or current()
    return {
        "warehouse": WarehouseResource(path=str(folder.warehouse)),
        "landing_zone": LandingZoneResource(root=str(folder.landing)),
        "systems": SystemsResource(
            urls={name: system_url(folder, name, project) for name in project.system_names},
            write_urls=system_write_urls(project),
        ),
        "delivery": DeliveryResource(),
    }
