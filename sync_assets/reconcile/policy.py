"""How a reconciliation check judges what the diff found, and what it may show of it.

- pass: no discrepancy;
- WARN: some, up to `error_rate` of the rows compared (at least `error_floor`): drift to correct;
- ERROR: more: a broken connector or integration, which must stop the work downstream.

Values of attributes the catalog marks PII never reach UI metadata or logs: they are replaced by a
keyed fingerprint (sync_assets/security/fingerprint.py), enough to see whether two values are the
same without reading them, and not reversible by hashing guessed values without the key. The
discrepancies table stores PII values masked already (reconcile/diff.py: `display`); a mask is
shown as it is.
"""

from __future__ import annotations

from typing import Literal

from sync_assets.project import Thresholds, current
from sync_assets.security.fingerprint import fingerprint, is_mask
from sync_assets.security.keys import keyring
from sync_assets.settings import DataFolder

Verdict = Literal["pass", "warn", "error"]


def verdict(discrepancies: int, rows_compared: int, thresholds: Thresholds) -> Verdict:
    if discrepancies == 0:
        return "pass"
    if discrepancies <= thresholds.error_above(rows_compared):
        return "warn"
    return "error"


def masked(
    entity_name: str, attribute: str | None, value: object, *, key: bytes | None = None
) -> object:
    """The value as UI metadata may show it: PII becomes its keyed fingerprint.

    `key`: the fingerprint key; by default the data folder's (sync_assets/security/keys.py).
    """
    if value is None or attribute is None:
        return value
    if attribute not in current().entity(entity_name).pii_attributes or is_mask(value):
        return value
    if key is None:
        key = keyring(DataFolder.from_env().root).fingerprint_key
    return fingerprint(key, value)


def masked_row(row: dict[str, object]) -> dict[str, object]:
    """A discrepancy as UI metadata may show it: its values, and the other systems' (views)."""
    entity_name, attribute = str(row["entity"]), row.get("attribute")
    attribute = str(attribute) if attribute is not None else None
    views = row.get("views")
    if isinstance(views, dict):
        views = {system: masked(entity_name, attribute, v) for system, v in views.items()}
    return {
        **row,
        "expected": masked(entity_name, attribute, row.get("expected")),
        "actual": masked(entity_name, attribute, row.get("actual")),
        "views": views,
    }
