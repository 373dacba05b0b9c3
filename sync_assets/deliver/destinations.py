"""Opening a system as a destination: its URL says SQL (SQLAlchemy) or HTTP (a platform API)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sync_assets.connectors.platform_api import is_platform_url
from sync_assets.connectors.sources import open_writer
from sync_assets.deliver.engine import Destination
from sync_assets.deliver.http import HttpDestination
from sync_assets.deliver.retry import RetryPolicy
from sync_assets.deliver.sql import SqlDestination
from sync_assets.project import current


@dataclass(frozen=True)
class DestinationSettings:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    batch_size: int = 500
    """Corrections per transaction (SQL) or per round of concurrent requests (HTTP)."""
    concurrency: int = 8
    """Requests in flight at once, for an HTTP destination."""
    timeout_s: float = 10.0


def open_destination(system: str, url: str, settings: DestinationSettings) -> Destination:
    mappings = {m.entity: m for m in current().mappings.values() if m.system == system}
    if is_platform_url(url):
        return HttpDestination(
            system,
            url,
            mappings,
            concurrency=settings.concurrency,
            timeout_s=settings.timeout_s,
            batch_size=settings.batch_size,
        )
    return SqlDestination(
        system, open_writer(url, settings.timeout_s), mappings, settings.batch_size
    )
