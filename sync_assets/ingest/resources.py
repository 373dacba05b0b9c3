"""The landing zone as a Dagster resource."""

import dagster as dg

from sync_assets.ingest.landing import LandingZone


class LandingZoneResource(dg.ConfigurableResource):
    """Where source systems drop their batches of change events, one folder per system."""

    root: str

    def zone(self) -> LandingZone:
        return LandingZone(self.root)
