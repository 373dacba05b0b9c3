"""The resources a code location gets, each from the stage that owns it: the warehouse, the
landing zone, the project's systems and delivery's settings.

Their settings are locked: they come from the project and the environment when the code location
loads, and a run's config cannot replace them. Without the lock, anyone who can reach the UI could
launch a run (the launchpad, GraphQL's `launchRun`) whose config points the warehouse, the landing
zone or a system's URL (its reader's or its writer's) elsewhere, redirecting reads and deliveries.
A run config that names a resource's settings is refused before the run starts ("unexpected
config entry").
"""

import dagster as dg

from sync_assets.connectors.resource import SystemsResource, system_url, system_write_urls
from sync_assets.deliver.ops import IN_MEMORY
from sync_assets.deliver.resources import DeliveryResource, DestinationConfig
from sync_assets.ingest.resources import LandingZoneResource
from sync_assets.project import Project, current
from sync_assets.settings import DataFolder
from sync_assets.warehouse.resource import WarehouseResource


def locked(resource: dg.ConfigurableResource) -> dg.ResourceDefinition:
    """The resource with the settings it was built with, accepting no config from a run.

    `EnvVar` settings stay references (`{"env": VAR}`), resolved inside the run only."""
    # Dagster's own form of the settings (EnvVar as {"env": ...}), as its resources keep them.
    settings = resource._convert_to_config_dictionary()
    return resource.get_resource_definition().configured(
        lambda _: settings, config_schema={}, description=type(resource).__doc__
    )


def default_resources(
    folder: DataFolder | None = None, project: Project | None = None
) -> dict[str, dg.ResourceDefinition]:
    folder = folder or DataFolder.from_env()
    project = project or current()
    resources: dict[str, dg.ConfigurableResource] = {
        "warehouse": WarehouseResource(path=str(folder.warehouse)),
        "landing_zone": LandingZoneResource(root=str(folder.landing)),
        "systems": SystemsResource(
            urls={name: system_url(folder, name, project) for name in project.system_names},
            write_urls=system_write_urls(project),
        ),
        "delivery": DeliveryResource(
            destinations={
                name: DestinationConfig(**system.delivery)
                for name, system in project.systems.items()
            }
        ),
    }
    return {name: locked(resource) for name, resource in resources.items()} | {
        IN_MEMORY: dg.mem_io_manager
    }
