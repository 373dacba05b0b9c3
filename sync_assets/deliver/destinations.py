"""Opening a system as a destination: its URL says SQL (SQLAlchemy) or HTTP (a platform API)."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from sync_assets.connectors.platform_api import is_platform_url
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


def open_writer(url: str | sa.URL, timeout_s: float) -> sa.Engine:
    """A read-write engine that notices a dead connection before using it. Its errors never
    quote a statement's parameters: they are the records' values, PII included."""
    parsed = sa.make_url(url)
    connect_args = {"timeout": timeout_s} if parsed.get_backend_name() == "sqlite" else {}
    return sa.create_engine(
        parsed, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True
    )
