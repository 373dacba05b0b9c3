"""Delivery's settings as a Dagster resource: retries per destination, compensation per entity."""

import dagster as dg

from sync_assets.deliver.destinations import DestinationSettings
from sync_assets.deliver.outbox import Policy
from sync_assets.deliver.retry import RetryPolicy
from sync_assets.project import current
from sync_assets.project.files import DeliveryFile

_DEFAULTS = DeliveryFile()
"""The defaults are the project file's (one home): a system's file that says nothing gets them."""


class DestinationConfig(dg.Config):
    """How corrections are delivered to one system: the `delivery:` of its file in the project
    (sync_assets/project/files.py: DeliveryFile, whose fields these are)."""

    base_s: float = _DEFAULTS.base_s
    cap_s: float = _DEFAULTS.cap_s
    max_attempts: int = _DEFAULTS.max_attempts
    batch_size: int = _DEFAULTS.batch_size
    concurrency: int = _DEFAULTS.concurrency
    timeout_s: float = _DEFAULTS.timeout_s


class DeliveryResource(dg.ConfigurableResource):
    """Retries per destination (exponential backoff with full jitter: base, cap, attempts) and
    what to do per entity when a correction cannot be delivered (`hold` or `compensate`).

    Built from the project (each system's `delivery:`, each entity's `on_undeliverable`) and
    locked: a run's config cannot change them (sync_assets/resources.py)."""

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
